//! When to renew: `plan` is the pure decision, `state` the failures it remembers, `ari`
//! what the CA's renewal information does to it.

pub mod ari;
pub mod history;
pub mod plan;
