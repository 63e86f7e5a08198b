//! Turns DER certificate chains into facts. Pure: no clock, no sockets, no files.

use time::OffsetDateTime;

/// Everything certinel reports about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Subject distinguished name, RFC 4514 style (`CN=example.com, O=Example`).
    pub subject: String,
    /// Issuer distinguished name, same format.
    pub issuer: String,
    /// Serial number as lowercase hex without separators, leading zeros stripped.
    pub serial: String,
    /// DNS names from the subjectAltName extension.
    pub dns_names: Vec<String>,
    /// IP addresses from the subjectAltName extension.
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// Public key algorithm and size.
    pub key: KeyType,
    /// Signature algorithm name (`ecdsa-with-SHA256`, `sha256WithRSAEncryption`, ...).
    pub signature_algorithm: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER encoding, lowercase hex.
    pub fingerprint_sha256: String,
    /// Subject equals issuer and the signature verifies with the certificate's own key.
    pub self_signed: bool,
    /// basicConstraints cA=true.
    pub is_ca: bool,
    /// subjectKeyIdentifier, when present.
    pub subject_key_id: Option<Vec<u8>>,
    /// authorityKeyIdentifier keyIdentifier, when present.
    pub authority_key_id: Option<Vec<u8>>,
}

/// The public key of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// RSA with its modulus size in bits.
    Rsa(u32),
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// ECDSA on NIST P-521.
    EcdsaP521,
    /// Ed25519.
    Ed25519,
    /// Anything else.
    Other,
}

/// The role a certificate plays in a presented chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end-entity certificate (position 0).
    Leaf,
    /// A CA certificate that is not self-signed.
    Intermediate,
    /// A self-signed CA certificate (a trust anchor sent along).
    Root,
}

/// One certificate of a chain, with its place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    /// Index in the chain as presented (0 is the leaf).
    pub position: usize,
    /// Leaf, intermediate or root.
    pub role: Role,
    /// The certificate's facts.
    pub facts: CertFacts,
}

/// Facts about a whole presented chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainFacts {
    /// Every presented certificate, in presented order.
    pub entries: Vec<ChainEntry>,
    /// The earliest notAfter among the presented certificates, excluding a self-signed
    /// trust anchor: the moment the chain as served stops working.
    pub earliest_not_after: OffsetDateTime,
    /// Each certificate is issued by the next one (subject/issuer and key ids line up).
    pub in_order: bool,
}

impl ChainFacts {
    /// The leaf certificate's facts.
    pub fn leaf(&self) -> &CertFacts {
        // Invariant: `inspect_chain` never builds a ChainFacts from an empty chain.
        &self.entries[0].facts
    }
}

/// A certificate or chain that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// No certificate at all.
    #[error("no certificate presented")]
    Empty,
    /// DER that does not parse as X.509.
    #[error("certificate {position} does not parse: {detail}")]
    Malformed {
        /// Index in the chain.
        position: usize,
        /// Parser message.
        detail: String,
    },
}

/// Facts about one DER certificate.
pub fn inspect_certificate(der: &[u8]) -> Result<CertFacts, InspectError> {
    let _ = der;
    todo!("inspect helper")
}

/// Facts about a presented chain (leaf first, as sent by the server).
pub fn inspect_chain(
    chain: &[rustls::pki_types::CertificateDer<'_>],
) -> Result<ChainFacts, InspectError> {
    let _ = chain;
    todo!("inspect helper")
}
