//! certinel's vocabulary: the nouns several layers share (identifiers, key types, renewal
//! windows, challenge kinds), as plain data. It depends on nothing else in the crate.

mod challenge;

pub use challenge::{
    DEFAULT_PROPAGATION_TIMEOUT, Dns01Spec, DnsProvider, Rfc2136Settings, TsigAlgorithm,
    TsigSecret, UnknownTsigAlgorithm,
};
