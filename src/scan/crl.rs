//! Revocation watch over CRLs: `verdict` (pure) decides what a CRL says about a leaf.

pub mod verdict;
