//! certinel keeps TLS certificates from expiring.
//!
//! The library is organised around one data flow:
//!
//! ```text
//!   config file ──► config::load ──► Config (validated model)
//!                                        │
//!            ┌───────────────────────────┘
//!            ▼
//!   scan::sweep ──► scan::probe (I/O: resolve, connect, STARTTLS, TLS handshake)
//!            │            │ presented chain (DER)
//!            │            ▼
//!            │      scan::inspect (pure: DER ─► CertFacts, chain roles, earliest expiry)
//!            │      scan::verify  (pure: chain + roots + name + now ─► Verification)
//!            ▼
//!   Vec<EndpointReport> / Vec<FileReport> ──► report (pure: status, table, JSON lines)
//! ```
//!
//! The binary (`src/main.rs`) is a thin shell over [`cli`].
#![warn(missing_docs)]

/// The git commit this binary was built from: 12 hex digits, `-dirty` when the work tree
/// had changes, or `unknown` for a build outside a git checkout (see `build.rs`).
pub const COMMIT: &str = env!("CERTINEL_COMMIT");

/// What `certinel --version` prints after the program name: `0.1.0 (0123456789ab)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("CERTINEL_COMMIT"),
    ")"
);

pub mod acme;
pub mod cert;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod disk;
pub mod escape;
pub mod hook;
pub mod import;
pub mod inventory;
pub mod metrics;
mod redact;
pub mod renew;
pub mod report;
pub mod scan;
pub mod schedule;
pub mod service;
pub mod store;
