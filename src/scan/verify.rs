//! Decides whether a presented chain is trusted for a name at a moment, and says why not.
//! Pure: the trust roots, the name and the time are parameters.

/// Why a chain is not (fully) acceptable. The keyword is stable: it is a metric label,
/// a JSON field and a CLI status reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A certificate in the chain is past its notAfter.
    Expired,
    /// A certificate in the chain is before its notBefore.
    NotYetValid,
    /// The leaf is not valid for the requested name.
    HostnameMismatch,
    /// The leaf is self-signed and not a trusted root.
    SelfSigned,
    /// The leaf's issuer is neither presented nor trusted, but a trusted root could exist
    /// above a missing intermediate.
    MissingIntermediate,
    /// No path to a trusted root can be built.
    UnknownIssuer,
    /// The chain verifies, but certificates are not presented leaf-first in issuing order.
    WrongChainOrder,
    /// A signature in the chain does not verify.
    BadSignature,
    /// The certificate is not usable for TLS server authentication, or is malformed.
    Invalid,
}

impl Reason {
    /// The stable keyword (`expired`, `hostname_mismatch`, ...).
    pub fn keyword(self) -> &'static str {
        match self {
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::HostnameMismatch => "hostname_mismatch",
            Reason::SelfSigned => "self_signed",
            Reason::MissingIntermediate => "missing_intermediate",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::WrongChainOrder => "wrong_chain_order",
            Reason::BadSignature => "bad_signature",
            Reason::Invalid => "invalid",
        }
    }
}

/// The outcome of verifying one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// A path to a trusted root was built and the leaf is valid for the name.
    pub verified: bool,
    /// The most important problem; may be set on a verified chain for a lint such as
    /// [`Reason::WrongChainOrder`].
    pub reason: Option<Reason>,
    /// Human-readable detail for logs and the table output.
    pub detail: String,
}

/// Verifies `chain` (whose facts are `facts`) against `roots` at `now`; checks the leaf
/// against `server_name` when given (DNS name or IP literal).
pub fn verify_chain(
    chain: &[rustls::pki_types::CertificateDer<'_>],
    facts: &crate::scan::inspect::ChainFacts,
    server_name: Option<&str>,
    roots: &crate::scan::trust::TrustRoots,
    now: rustls::pki_types::UnixTime,
) -> Verification {
    let _ = (chain, facts, server_name, roots, now);
    todo!("inspect helper")
}
