//! certinel's integration tests: one binary, one module per area.

/// Shared helpers: scripted servers, certificates, external programs.
mod common;
/// STARTTLS upgrades against scripted servers and a real PostgreSQL.
mod starttls;
