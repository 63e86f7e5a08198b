//! Certificate private keys and the CSR certinel sends at finalization: our own key of
//! the configured type, never one chosen by the ACME library.

use std::fmt;

use rcgen::{
    CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    PKCS_ED25519, PKCS_RSA_SHA256, RsaKeySize, SanType,
};

use crate::acme::AcmeError;
use crate::cert::{Identifier, KeyAlgorithm};

/// A new private key and the DER CSR for `names` signed with it.
pub(crate) struct KeyAndCsr {
    pub(crate) key_pem: String,
    pub(crate) csr_der: Vec<u8>,
}

impl fmt::Debug for KeyAndCsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAndCsr")
            .field("key_pem", &"<redacted>")
            .field("csr_der_len", &self.csr_der.len())
            .finish()
    }
}

/// Generates a key of type `algorithm` and a CSR for `names` with an empty subject
/// (CAs take the names from the subjectAltName extension only).
pub(crate) fn generate_key_and_csr(
    algorithm: KeyAlgorithm,
    names: &[Identifier],
) -> Result<KeyAndCsr, AcmeError> {
    let key = generate_key(algorithm)?;
    let csr_der = csr_der(&key, names).map_err(|error| AcmeError::Key {
        algorithm: algorithm.as_str(),
        message: error.to_string(),
    })?;
    Ok(KeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_der,
    })
}

/// Generates a key of type `algorithm` as PKCS#8 PEM, for a CSR made later from it.
pub(crate) fn generate_key_pem(algorithm: KeyAlgorithm) -> Result<String, AcmeError> {
    Ok(generate_key(algorithm)?.serialize_pem())
}

fn generate_key(algorithm: KeyAlgorithm) -> Result<KeyPair, AcmeError> {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        KeyAlgorithm::Ed25519 => KeyPair::generate_for(&PKCS_ED25519),
        KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyAlgorithm::Rsa3072 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072),
        KeyAlgorithm::Rsa4096 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096),
    }
    .map_err(|error| AcmeError::Key {
        algorithm: algorithm.as_str(),
        message: error.to_string(),
    })
}

/// The CSR for `names` signed with a key saved earlier (PKCS#8 PEM), for an order that is
/// finalized after a restart with the key its renewal already stored.
pub(crate) fn csr_for_saved_key(key_pem: &str, names: &[Identifier]) -> Result<Vec<u8>, AcmeError> {
    let key_error = |error: rcgen::Error| AcmeError::Key {
        algorithm: "saved",
        message: error.to_string(),
    };
    let key = KeyPair::from_pem(key_pem).map_err(key_error)?;
    csr_der(&key, names).map_err(key_error)
}

fn csr_der(key: &KeyPair, names: &[Identifier]) -> Result<Vec<u8>, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = names
        .iter()
        .map(|name| match name {
            Identifier::Dns(dns) => dns.clone().try_into().map(SanType::DnsName),
            Identifier::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        })
        .collect::<Result<_, _>>()?;
    Ok(params.serialize_request(key)?.der().to_vec())
}

#[cfg(test)]
mod tests {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;

    use super::*;

    #[test]
    fn csr_has_empty_subject_and_every_name_as_san_for_every_key_type() {
        let names = [
            Identifier::Dns("a.example".into()),
            Identifier::Ip("192.0.2.7".parse().unwrap()),
        ];
        for algorithm in KeyAlgorithm::ALL {
            let generated = generate_key_and_csr(algorithm, &names).unwrap();
            assert!(generated.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let (_, csr) = X509CertificationRequest::from_der(&generated.csr_der).unwrap();
            csr.verify_signature().unwrap();
            let info = &csr.certification_request_info;
            assert_eq!(info.subject.iter().count(), 0, "{algorithm}");
            let sans: Vec<String> = csr
                .requested_extensions()
                .into_iter()
                .flatten()
                .filter_map(|ext| match ext {
                    ParsedExtension::SubjectAlternativeName(san) => Some(san),
                    _ => None,
                })
                .flat_map(|san| san.general_names.iter())
                .map(|name| match name {
                    GeneralName::DNSName(dns) => dns.to_string(),
                    GeneralName::IPAddress(ip) => format!("{ip:?}"),
                    other => format!("{other}"),
                })
                .collect();
            assert_eq!(sans, ["a.example", "[192, 0, 2, 7]"], "{algorithm}");
        }
    }

    #[test]
    fn a_saved_key_signs_a_csr_for_the_same_public_key_for_every_key_type() {
        let names = [Identifier::Dns("a.example".into())];
        for algorithm in KeyAlgorithm::ALL {
            let generated = generate_key_and_csr(algorithm, &names).unwrap();
            let again = csr_for_saved_key(&generated.key_pem, &names).unwrap();
            let (_, first) = X509CertificationRequest::from_der(&generated.csr_der).unwrap();
            let (_, second) = X509CertificationRequest::from_der(&again).unwrap();
            second.verify_signature().unwrap();
            assert_eq!(
                first.certification_request_info.subject_pki.raw,
                second.certification_request_info.subject_pki.raw,
                "{algorithm}"
            );
        }
    }

    #[test]
    fn debug_of_key_and_csr_redacts_the_key() {
        let generated = generate_key_and_csr(
            KeyAlgorithm::EcdsaP256,
            &[Identifier::Dns("a.example".into())],
        )
        .unwrap();
        assert!(!format!("{generated:?}").contains("PRIVATE"));
    }
}
