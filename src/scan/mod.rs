//! The scanner: probes live TLS endpoints and certificate files and reports facts about them.
//!
//! `probe`, `starttls`, `resolve` and `files` do I/O; `inspect` and `verify` are pure.

pub mod budget;
pub mod crl;
pub mod files;
pub mod inspect;
pub mod labels;
pub mod probe;
pub mod resolve;
pub mod starttls;
pub mod sweep;
pub mod trust;
pub mod verify;

#[cfg(test)]
pub(crate) mod testing;
