//! When to renew: `plan` is the pure decision, `state` the failures it remembers.

pub mod plan;
pub mod state;
