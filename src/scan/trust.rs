//! Trust roots for verification: webpki-roots, the platform store and per-endpoint CA files.

/// A set of trust anchors.
#[derive(Debug, Clone)]
pub struct TrustRoots {}
