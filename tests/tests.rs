//! The integration tests, in one binary: real servers on loopback, fixtures as files.

/// Shared helpers: test PKI and loopback TLS servers.
mod common;
/// Configuration files: bad fixtures and their one-line messages, good fixtures and the model.
mod config_files;
/// Probing live TLS endpoints end to end: handshake, chain facts, verification, failures.
mod probe;
/// `certinel run`: the real binary's /metrics, /probe, reloads and shutdown.
mod service;
