//! Checks that stored PEM files are a usable certificate: the leaf parses, the key matches
//! it, the wanted names are covered, and `fullchain.pem` is `cert.pem` + `chain.pem`.

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::scan::inspect::{self, InspectError};

use crate::cert::KeyType;
use crate::store::StoreError;
use crate::store::versions::VersionFiles;

/// What a stored leaf certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFacts {
    /// Serial number, lowercase hex without leading zeros.
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// DNS names from subjectAltName.
    pub dns_names: Vec<String>,
    /// Public key type.
    pub key_type: KeyType,
    /// Issuer distinguished name, as [`inspect::CertFacts::issuer`] writes it.
    pub issuer: String,
}

/// Why a certificate and key are not usable. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No `CERTIFICATE` PEM block was found.
    #[error("no PEM certificate found")]
    NoCertificate,
    /// A certificate block does not parse.
    #[error("certificate {position} does not parse: {detail}")]
    Certificate {
        /// Index in the chain (0 is the leaf).
        position: usize,
        /// Parser message.
        detail: String,
    },
    /// The private key does not parse (its content is never quoted).
    #[error("private key does not parse: {0}")]
    Key(String),
    /// The private key's public half is not the certificate's public key.
    #[error("private key does not match the certificate's public key")]
    KeyMismatch,
    /// Some wanted names are not in the certificate.
    #[error("certificate does not cover {}", missing.join(", "))]
    NamesNotCovered {
        /// The uncovered names.
        missing: Vec<String>,
    },
    /// `fullchain.pem` is not `cert.pem` followed by `chain.pem`.
    #[error("fullchain.pem is not cert.pem followed by chain.pem")]
    FullchainMismatch,
}

/// Why one PEM certificate block does not decode; [`VerifyError::Certificate`] quotes the
/// message with the block's position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum DecodeError {
    /// The PEM armour or its base64 does not parse.
    #[error("{0}")]
    Pem(String),
    /// The DER does not parse as an X.509 certificate.
    #[error("{0}")]
    Der(String),
}

/// Reads a version's files and checks them with [`check_pems`], also requiring that
/// `fullchain.pem` is exactly `cert.pem` + `chain.pem`.
pub fn check_version(
    files: &VersionFiles,
    wanted_names: &[String],
) -> Result<VersionFacts, StoreError> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| StoreError::io("read", path, e))
    };
    let cert = read(&files.cert)?;
    let chain = read(&files.chain)?;
    let fullchain = read(&files.fullchain)?;
    let key = read(&files.key)?;
    if format!("{cert}{chain}") != fullchain {
        return Err(VerifyError::FullchainMismatch.into());
    }
    Ok(check_pems(&fullchain, &key, wanted_names)?)
}

/// Checks a PEM chain (leaf first) against a PEM private key and the wanted names.
pub fn check_pems(
    chain_pem: &str,
    key_pem: &str,
    wanted_names: &[String],
) -> Result<VersionFacts, VerifyError> {
    let blocks = certificate_blocks(chain_pem);
    let leaf_block = blocks.first().ok_or(VerifyError::NoCertificate)?;
    for (position, block) in blocks.iter().enumerate().skip(1) {
        pem_to_der(block)
            .and_then(|der| parse_facts(&der).map(|_| ()))
            .map_err(|error| VerifyError::certificate(position, error))?;
    }
    let leaf_der = pem_to_der(leaf_block).map_err(|error| VerifyError::certificate(0, error))?;
    let (facts, leaf_public_key) =
        parse_facts(&leaf_der).map_err(|error| VerifyError::certificate(0, error))?;
    // rcgen's messages describe the format, never the key bytes.
    let key_pair =
        rcgen::KeyPair::from_pem(key_pem).map_err(|e| VerifyError::Key(e.to_string()))?;
    if key_pair.public_key_raw() != leaf_public_key.as_slice() {
        return Err(VerifyError::KeyMismatch);
    }
    let missing: Vec<String> = wanted_names
        .iter()
        .filter(|name| !name_covered(name, &facts.dns_names))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(VerifyError::NamesNotCovered { missing });
    }
    Ok(facts)
}

/// Facts about the leaf (first) certificate of a PEM chain.
pub fn leaf_facts(chain_pem: &str) -> Result<VersionFacts, VerifyError> {
    let blocks = certificate_blocks(chain_pem);
    let leaf = blocks.first().ok_or(VerifyError::NoCertificate)?;
    pem_to_der(leaf)
        .and_then(|der| parse_facts(&der))
        .map(|(facts, _)| facts)
        .map_err(|error| VerifyError::certificate(0, error))
}

/// The `CERTIFICATE` PEM blocks of `text`, verbatim, each ending in a newline.
pub fn certificate_blocks(text: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let stop = start + end + END.len();
        blocks.push(format!("{}\n", &rest[start..stop]));
        rest = &rest[stop..];
    }
    blocks
}

/// Whether `name` is covered by one of `dns_names` (exactly, or by a `*.` wildcard matching
/// exactly one label), ignoring ASCII case.
pub fn name_covered(name: &str, dns_names: &[String]) -> bool {
    let name = name.to_ascii_lowercase();
    dns_names.iter().any(|san| {
        let san = san.to_ascii_lowercase();
        if san == name {
            return true;
        }
        match (san.strip_prefix("*."), name.split_once('.')) {
            (Some(base), Some((label, rest))) => !label.is_empty() && label != "*" && rest == base,
            _ => false,
        }
    })
}

impl VerifyError {
    fn certificate(position: usize, error: DecodeError) -> Self {
        VerifyError::Certificate {
            position,
            detail: error.to_string(),
        }
    }
}

fn pem_to_der(block: &str) -> Result<Vec<u8>, DecodeError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(block.as_bytes())
        .map_err(|e| DecodeError::Pem(e.to_string()))?;
    Ok(pem.contents)
}

/// The leaf's facts, as [`crate::scan::inspect`] reads any certificate, and the raw public
/// key bytes of its SPKI.
fn parse_facts(der: &[u8]) -> Result<(VersionFacts, Vec<u8>), DecodeError> {
    let facts = inspect::inspect_certificate(der).map_err(|e| match e {
        InspectError::Malformed { detail, .. } => DecodeError::Der(detail),
        other => DecodeError::Der(other.to_string()),
    })?;
    // inspect reports the key's type, not its bytes; the key match needs the bytes.
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| DecodeError::Der(e.to_string()))?;
    let public_key = cert.public_key().subject_public_key.data.to_vec();
    let facts = VersionFacts {
        serial: facts.serial,
        not_before: facts.not_before,
        not_after: facts.not_after,
        dns_names: facts.dns_names,
        key_type: facts.key,
        issuer: facts.issuer,
    };
    Ok((facts, public_key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{issue, key_pem_of};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_matching_key_and_covered_names_pass_and_report_facts() {
        let issued = issue(
            &["example.com", "www.example.com"],
            &rcgen::PKCS_ECDSA_P256_SHA256,
        );
        let facts = check_pems(
            &issued.fullchain,
            &issued.key_pem,
            &names(&["www.example.com"]),
        )
        .unwrap();
        assert_eq!(facts.dns_names, names(&["example.com", "www.example.com"]));
        assert_eq!(facts.key_type, KeyType::EcdsaP256);
        assert!(
            facts.issuer.contains("certinel test CA"),
            "{}",
            facts.issuer
        );
        assert!(!facts.serial.starts_with('0'));
    }

    #[test]
    fn a_key_from_another_certificate_is_a_mismatch() {
        let issued = issue(&["example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let other = key_pem_of(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            check_pems(&issued.fullchain, &other, &[]),
            Err(VerifyError::KeyMismatch)
        );
    }

    #[test]
    fn ed25519_and_p384_keys_match_their_certificates() {
        for (alg, key_type) in [
            (&rcgen::PKCS_ED25519, KeyType::Ed25519),
            (&rcgen::PKCS_ECDSA_P384_SHA384, KeyType::EcdsaP384),
        ] {
            let issued = issue(&["example.com"], alg);
            let facts = check_pems(&issued.fullchain, &issued.key_pem, &[]).unwrap();
            assert_eq!(facts.key_type, key_type);
        }
    }

    #[test]
    fn an_uncovered_name_is_reported_by_name() {
        let issued = issue(&["example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            check_pems(
                &issued.fullchain,
                &issued.key_pem,
                &names(&["example.com", "api.example.com"])
            ),
            Err(VerifyError::NamesNotCovered {
                missing: names(&["api.example.com"])
            })
        );
    }

    #[test]
    fn a_garbage_key_error_does_not_quote_the_key() {
        let issued = issue(&["example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let bad = "-----BEGIN PRIVATE KEY-----\nTUFHSUNTRUNSRVQ=\n-----END PRIVATE KEY-----\n";
        let err = check_pems(&issued.fullchain, bad, &[]).unwrap_err();
        assert!(matches!(err, VerifyError::Key(_)), "{err:?}");
        assert!(!err.to_string().contains("TUFHSUNTRUNSRVQ"), "{err}");
    }

    #[test]
    fn text_without_certificates_is_rejected() {
        assert_eq!(leaf_facts("hello"), Err(VerifyError::NoCertificate));
    }

    #[test]
    fn wildcards_cover_exactly_one_label() {
        let sans = names(&["*.example.com", "Example.org"]);
        assert!(name_covered("a.example.com", &sans));
        assert!(name_covered("example.ORG", &sans));
        assert!(!name_covered("example.com", &sans));
        assert!(!name_covered("a.b.example.com", &sans));
        assert!(name_covered("*.example.com", &sans));
    }

    #[test]
    fn facts_match_what_the_scanner_reports_for_the_same_certificate() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name = rcgen::DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc.");
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Example CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["example.com".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let facts = check_pems(&leaf.pem(), &key.serialize_pem(), &[]).unwrap();
        let scanned = inspect::inspect_certificate(leaf.der()).unwrap();
        assert_eq!(facts.issuer, scanned.issuer);
        assert_eq!(facts.issuer, "CN=Example CA, O=Example\\, Inc.");
        assert_eq!(facts.serial, scanned.serial);
        assert_eq!(facts.key_type, scanned.key);
        assert_eq!(facts.dns_names, scanned.dns_names);
    }
}
