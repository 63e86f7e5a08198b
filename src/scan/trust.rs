//! Trust roots for verification: webpki-roots, the platform store and per-endpoint CA files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A set of trust anchors.
#[derive(Debug, Clone)]
pub struct TrustRoots {}

/// Trust roots that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot load trust roots from {path}: {detail}")]
pub struct TrustError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub detail: String,
}

/// Loads the base roots once and each `ca_file` once, shared by every probe.
#[derive(Debug)]
pub struct TrustCache {}

impl TrustCache {
    /// A cache whose base roots are the platform store plus webpki-roots.
    pub fn system() -> TrustCache {
        todo!("inspect helper")
    }

    /// A cache whose base set is empty: only `ca_file`s are trusted (tests, private PKI).
    pub fn empty() -> TrustCache {
        todo!("inspect helper")
    }

    /// The base roots plus those in `ca_file`, loaded once per path.
    pub fn get(&self, ca_file: Option<&Path>) -> Result<Arc<TrustRoots>, TrustError> {
        let _ = ca_file;
        todo!("inspect helper")
    }
}
