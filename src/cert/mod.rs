//! certinel's vocabulary: the nouns several layers share, as plain data — the identifiers a
//! certificate is for, the key it should have and the key it has, when to renew it, how
//! control of its names is proven, what a hook's environment adds, and the external
//! account binding a CA may ask for. `config` parses
//! them, `scan` reads them from certificates, `store`, `schedule`, `acme` and `renew` pass
//! them around.
//!
//! Invariant: `cert` depends on nothing else in the crate, and nothing here reads the clock,
//! randomness, files or sockets.

mod challenge;
mod eab;
mod hook_env;
mod identifier;
mod key;
mod name;
mod renew_before;

pub use challenge::{
    ChallengeSpec, DEFAULT_PROPAGATION_TIMEOUT, Dns01Spec, DnsProvider, Rfc2136Settings,
    TsigAlgorithm, TsigSecret, UnknownTsigAlgorithm,
};
pub use eab::Eab;
pub use hook_env::HookEnv;
pub use identifier::Identifier;
pub use key::{KeyAlgorithm, KeyType, UnknownKeyAlgorithm};
pub use name::is_safe_name;
#[cfg(test)]
pub(crate) use renew_before::compact_duration;
pub use renew_before::{RenewBefore, RenewBeforeError};
