//! certinel's integration tests: one binary, one module per area.

/// Shared harnesses: Debian's Pebble ACME test CA.
mod common;

/// The ACME client against a real Pebble: challenges, key types, accounts, EAB, failures.
mod acme;
