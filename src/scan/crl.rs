//! Revocation watch over CRLs: `verdict` (pure) decides what a CRL says about a leaf;
//! `fetch` downloads and caches CRLs per URL.

pub mod fetch;
pub mod verdict;
