//! Turns DER certificate chains into facts. Pure: no clock, no sockets, no files.

use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{self, Oid};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::X509Name;

use crate::cert::KeyType;

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
    /// The certificate's facts; shared, so the service state can keep one copy of a
    /// certificate many endpoints present (see `service::state`'s interner).
    pub facts: std::sync::Arc<CertFacts>,
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
    inspect_at(der, 0)
}

/// Facts about a presented chain (leaf first, as sent by the server).
pub fn inspect_chain(chain: &[CertificateDer<'_>]) -> Result<ChainFacts, InspectError> {
    if chain.is_empty() {
        return Err(InspectError::Empty);
    }
    let entries = chain
        .iter()
        .enumerate()
        .map(|(position, der)| {
            let facts = inspect_at(der.as_ref(), position)?;
            let role = role_at(position, &facts);
            Ok(ChainEntry {
                position,
                role,
                facts: facts.into(),
            })
        })
        .collect::<Result<Vec<_>, InspectError>>()?;
    // A root sent along is never what stops the chain from working: clients that trust
    // it use their own copy, and clients that do not fail regardless of its dates.
    let earliest_not_after = entries
        .iter()
        .filter(|entry| entry.role != Role::Root)
        .map(|entry| entry.facts.not_after)
        .min()
        .unwrap_or(entries[0].facts.not_after);
    let in_order = entries
        .windows(2)
        .all(|pair| issued_by(&pair[0].facts, &pair[1].facts));
    Ok(ChainFacts {
        entries,
        earliest_not_after,
        in_order,
    })
}

/// Whether `issuer` looks like the issuer of `cert`: names line up, and key identifiers
/// too when both certificates carry them. Signatures are not checked here; that is
/// `verify`'s job.
pub fn issued_by(cert: &CertFacts, issuer: &CertFacts) -> bool {
    if cert.issuer != issuer.subject {
        return false;
    }
    match (&cert.authority_key_id, &issuer.subject_key_id) {
        (Some(authority), Some(subject)) => authority == subject,
        _ => true,
    }
}

fn role_at(position: usize, facts: &CertFacts) -> Role {
    match (position, facts.self_signed) {
        (0, _) => Role::Leaf,
        (_, true) => Role::Root,
        (_, false) => Role::Intermediate,
    }
}

fn inspect_at(der: &[u8], position: usize) -> Result<CertFacts, InspectError> {
    let malformed = |detail: String| InspectError::Malformed { position, detail };
    let (rest, cert) = X509Certificate::from_der(der).map_err(|err| malformed(err.to_string()))?;
    if !rest.is_empty() {
        return Err(malformed(format!(
            "{} bytes of trailing data after the certificate",
            rest.len()
        )));
    }
    let validity = cert.validity();
    let out_of_range = |error: DateOutOfRange| malformed(error.to_string());
    let not_before = unix_time(validity.not_before.timestamp()).map_err(out_of_range)?;
    let not_after = unix_time(validity.not_after.timestamp()).map_err(out_of_range)?;

    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    let mut subject_key_id = None;
    let mut authority_key_id = None;
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                        GeneralName::IPAddress(bytes) => {
                            if let Some(ip) = ip_from_bytes(bytes) {
                                ip_addresses.push(ip);
                            }
                        }
                        _ => {}
                    }
                }
            }
            ParsedExtension::SubjectKeyIdentifier(id) => subject_key_id = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            _ => {}
        }
    }

    let subject = dn_string(cert.subject());
    let issuer = dn_string(cert.issuer());
    // A certificate is self-signed only when its own key verifies its signature: a
    // matching name alone is what an attacker or a misconfigured CA can produce.
    let self_signed =
        cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_ok();

    Ok(CertFacts {
        subject,
        issuer,
        serial: serial_hex(cert.raw_serial()),
        dns_names,
        ip_addresses,
        key: key_type(&cert),
        signature_algorithm: signature_algorithm_name(&cert.signature_algorithm.algorithm),
        not_before,
        not_after,
        fingerprint_sha256: hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref()),
        self_signed,
        is_ca: cert.is_ca(),
        subject_key_id,
        authority_key_id,
    })
}

/// A validity date `time` cannot represent.
#[derive(Debug, thiserror::Error)]
#[error("validity date out of range: {0}")]
struct DateOutOfRange(#[source] time::error::ComponentRange);

fn unix_time(seconds: i64) -> Result<OffsetDateTime, DateOutOfRange> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(DateOutOfRange)
}

/// Formats a distinguished name the RFC 4514 way: most specific RDN first (the reverse of
/// the encoded order), `, ` between RDNs, `+` between the attributes of a multi-valued
/// RDN, and special characters escaped. Written into one string, without a string per
/// attribute.
fn dn_string(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<_> = name.iter().collect();
    let mut text = String::new();
    for (rdn_index, rdn) in rdns.iter().rev().enumerate() {
        if rdn_index > 0 {
            text.push_str(", ");
        }
        for (index, attribute) in rdn.iter().enumerate() {
            if index > 0 {
                text.push('+');
            }
            let attribute_type = attribute.attr_type();
            match x509_parser::objects::oid2abbrev(attribute_type, registry) {
                Ok(label) => text.push_str(label),
                Err(_) => text.push_str(&attribute_type.to_id_string()),
            }
            text.push('=');
            match attribute.as_str() {
                Ok(value) => escape_dn_value(&mut text, value),
                // RFC 4514: values that are not strings are written as #hex of their BER
                // encoding.
                Err(_) => {
                    text.push('#');
                    text.push_str(&hex(attribute.attr_value().data));
                }
            }
        }
    }
    text
}

/// Appends `value` to `escaped` with RFC 4514's specials escaped.
fn escape_dn_value(escaped: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (index, character) in value.chars().enumerate() {
        let special = matches!(character, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (index == 0 && matches!(character, ' ' | '#'))
            || (index == last && character == ' ');
        if special {
            escaped.push('\\');
        }
        escaped.push(character);
    }
}

fn serial_hex(raw: &[u8]) -> String {
    let digits = hex(raw);
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Lowercase hex, two digits a byte.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

fn key_type(cert: &X509Certificate<'_>) -> KeyType {
    let spki = cert.public_key();
    if spki.algorithm.algorithm == oid_registry::OID_SIG_ED25519 {
        return KeyType::Ed25519;
    }
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => KeyType::Rsa(modulus_bits(rsa.modulus)),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.as_oid().ok());
            match curve {
                Some(oid) if oid == oid_registry::OID_EC_P256 => KeyType::EcdsaP256,
                Some(oid) if oid == oid_registry::OID_NIST_EC_P384 => KeyType::EcdsaP384,
                Some(oid) if oid == oid_registry::OID_NIST_EC_P521 => KeyType::EcdsaP521,
                _ => KeyType::Other,
            }
        }
        _ => KeyType::Other,
    }
}

/// The size of an RSA modulus in bits, ignoring the sign byte and any leading zeros.
fn modulus_bits(modulus: &[u8]) -> u32 {
    let significant = match modulus.iter().position(|&byte| byte != 0) {
        Some(start) => &modulus[start..],
        None => return 0,
    };
    let whole_bytes = u32::try_from(significant.len() - 1).unwrap_or(u32::MAX / 8);
    whole_bytes * 8 + (8 - significant[0].leading_zeros())
}

/// OpenSSL's short names, which operators know, where the OID registry differs.
fn signature_algorithm_name(oid: &Oid<'_>) -> String {
    if *oid == oid_registry::OID_SIG_ED25519 {
        return "ED25519".to_owned();
    }
    if *oid == oid_registry::OID_SIG_ED448 {
        return "ED448".to_owned();
    }
    if *oid == oid_registry::OID_PKCS1_RSASSAPSS {
        return "RSASSA-PSS".to_owned();
    }
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string())
}

#[cfg(test)]
mod tests;
