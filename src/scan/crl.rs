//! Revocation watch over CRLs: `verdict` (pure) decides what a CRL says about a leaf;
//! `fetch` downloads and caches CRLs per URL; `watch` checks a presented chain.

pub mod fetch;
pub mod verdict;
pub mod watch;
