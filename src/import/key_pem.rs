//! Certificate private keys in the PKCS#8 PEM form certinel stores: lego writes SEC1
//! (`EC PRIVATE KEY`) and PKCS#1 (`RSA PRIVATE KEY`) files, certbot PKCS#8 already. Pure.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::PrivateKeyDer;

use crate::store::SecretPem;

/// Why a key file cannot be converted. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyPemError {
    /// No private key PEM block.
    #[error("no PEM private key found")]
    NoKey,
    /// A key the crypto library refuses or certinel cannot store.
    #[error("unsupported or damaged private key ({0})")]
    Unsupported(&'static str),
}

/// The first private key of `pem` as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
pub fn to_pkcs8_pem(pem: &str) -> Result<SecretPem, KeyPemError> {
    let key = rustls_pemfile::private_key(&mut pem.as_bytes())
        .ok()
        .flatten()
        .ok_or(KeyPemError::NoKey)?;
    let pkcs8 = match key {
        PrivateKeyDer::Pkcs8(der) => der.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
            .ok()
            .and_then(|pair| pair.as_der().ok())
            .map(|der| der.as_ref().to_vec())
            .ok_or(KeyPemError::Unsupported("RSA PRIVATE KEY"))?,
        PrivateKeyDer::Sec1(der) => [
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &ECDSA_P384_SHA384_ASN1_SIGNING,
        ]
        .into_iter()
        .find_map(|curve| EcdsaKeyPair::from_private_key_der(curve, der.secret_sec1_der()).ok())
        .and_then(|pair| pair.to_pkcs8v1().ok())
        .map(|document| document.as_ref().to_vec())
        .ok_or(KeyPemError::Unsupported("EC PRIVATE KEY"))?,
        _ => return Err(KeyPemError::Unsupported("unknown key format")),
    };
    Ok(SecretPem::new(pem_encode("PRIVATE KEY", &pkcs8)))
}

/// `der` as a PEM block with 64-character lines.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let base64 = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in base64.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sec1_pkcs1_and_pkcs8_keys_all_become_pkcs8_that_rcgen_reads() {
        for algorithm in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
        ] {
            let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
            let pkcs8 = key.serialize_der();
            let sec1 = EcdsaKeyPair::from_pkcs8(
                if algorithm == &rcgen::PKCS_ECDSA_P256_SHA256 {
                    &ECDSA_P256_SHA256_ASN1_SIGNING
                } else {
                    &ECDSA_P384_SHA384_ASN1_SIGNING
                },
                &pkcs8,
            )
            .unwrap();
            let sec1_der: aws_lc_rs::encoding::EcPrivateKeyRfc5915Der =
                sec1.private_key().as_der().unwrap();
            let sec1_pem = pem_encode("EC PRIVATE KEY", sec1_der.as_ref());
            let converted = to_pkcs8_pem(&sec1_pem).unwrap();
            let again = rcgen::KeyPair::from_pem(converted.expose()).unwrap();
            assert_eq!(again.public_key_raw(), key.public_key_raw());
        }
        let rsa =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        // PKCS#8 wraps PKCS#1 in an OCTET STRING after a fixed 26-byte header for a
        // 2048-bit key: SEQUENCE, version, rsaEncryption AlgorithmIdentifier, OCTET STRING.
        let pkcs8 = rsa.serialize_der();
        assert_eq!(
            &pkcs8[22..24],
            &[0x04, 0x82],
            "OCTET STRING with a two-byte length"
        );
        let converted = to_pkcs8_pem(&pem_encode("RSA PRIVATE KEY", &pkcs8[26..])).unwrap();
        let again = rcgen::KeyPair::from_pem(converted.expose()).unwrap();
        assert_eq!(again.public_key_raw(), rsa.public_key_raw());
        let pkcs8 = to_pkcs8_pem(&rsa.serialize_pem()).unwrap();
        assert_eq!(pkcs8.expose(), rsa.serialize_pem());
    }

    #[test]
    fn text_without_a_key_is_refused() {
        assert_eq!(to_pkcs8_pem("hello").unwrap_err(), KeyPemError::NoKey);
    }
}
