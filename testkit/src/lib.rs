//! Test helpers that certinel's unit tests (inside the crate, `#[cfg(test)]`) and its
//! integration tests (`tests/`) share. A `pub(crate)` item in certinel is invisible to the
//! integration tests and `tests/common` is invisible to the unit tests; what both need lives
//! here once instead of twice.

#![warn(missing_docs)]

pub mod fuzz;
pub mod http;
