//! Account keys written by other ACME clients (certbot's JWK, lego's PEM), read into the
//! PKCS#8 form certinel stores. Pure: bytes in, key out; nothing here touches the network.
//!
//! certinel signs with ECDSA P-256 only (instant-acme's one account key type). A P-256 key
//! is used as it is; an RSA key (certbot's only kind) is kept so that
//! [`super::adopt::adopt_account`] can sign one key rollover with it, to a new P-256 key.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::PrivateKeyDer;
use serde::Deserialize;

/// An account private key from another client, checked by the crypto library.
#[derive(Clone, PartialEq, Eq)]
pub struct ForeignKey {
    kind: ForeignKeyKind,
    /// PKCS#8 DER; secret, never logged.
    pkcs8: Vec<u8>,
}

/// What kind of key a [`ForeignKey`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignKeyKind {
    /// ECDSA P-256: certinel signs with it as it is.
    EcdsaP256,
    /// RSA: rolled over to a new P-256 key when the account is adopted.
    Rsa,
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForeignKeyError {
    /// The JWK is not JSON of the expected shape.
    #[error("not a JSON Web Key: {0}")]
    Json(#[from] serde_json::Error),
    /// A JWK member is not base64url.
    #[error("JWK member {member:?} is not base64url")]
    Base64 {
        /// The member (`n`, `d`, ...).
        member: &'static str,
    },
    /// The PEM text holds no private key.
    #[error("no PEM private key found (expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)")]
    NoPemKey,
    /// A key type certinel cannot sign with nor roll over from.
    #[error("unsupported account key: {0} (certinel uses ECDSA P-256 and can adopt RSA keys)")]
    Unsupported(String),
    /// The crypto library refused the key (inconsistent or malformed).
    #[error("the key is not a valid {kind} private key: {reason}")]
    Rejected {
        /// `RSA` or `ECDSA P-256`.
        kind: &'static str,
        /// The library's words (never key material).
        reason: String,
    },
}

/// The members of a private JWK (RFC 7517, RFC 7518 §6) that certinel reads.
#[derive(Deserialize)]
struct PrivateJwk {
    kty: String,
    crv: Option<String>,
    // RSA
    n: Option<String>,
    e: Option<String>,
    d: Option<String>,
    p: Option<String>,
    q: Option<String>,
    dp: Option<String>,
    dq: Option<String>,
    qi: Option<String>,
    // EC
    x: Option<String>,
    y: Option<String>,
}

impl ForeignKey {
    /// Reads a private JSON Web Key (certbot's `private_key.json`): RSA or EC P-256.
    pub fn from_jwk(json: &[u8]) -> Result<Self, ForeignKeyError> {
        let jwk: PrivateJwk = serde_json::from_slice(json)?;
        match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => {
                let members = [
                    ("n", &jwk.n),
                    ("e", &jwk.e),
                    ("d", &jwk.d),
                    ("p", &jwk.p),
                    ("q", &jwk.q),
                    ("dp", &jwk.dp),
                    ("dq", &jwk.dq),
                    ("qi", &jwk.qi),
                ];
                let mut integers = vec![der_unsigned_integer(&[0])];
                for (member, value) in members {
                    integers.push(der_unsigned_integer(&jwk_bytes(member, value)?));
                }
                let pkcs1 = der_tlv(TAG_SEQUENCE, &integers.concat());
                Self::from_rsa_pkcs1(&pkcs1)
            }
            ("EC", Some("P-256")) => {
                let d = jwk_bytes("d", &jwk.d)?;
                let x = jwk_bytes("x", &jwk.x)?;
                let y = jwk_bytes("y", &jwk.y)?;
                Self::from_ec_sec1(&sec1_p256(&d, &x, &y))
            }
            ("EC", curve) => Err(ForeignKeyError::Unsupported(format!(
                "EC key on curve {}",
                curve.unwrap_or("(none)")
            ))),
            (kty, _) => Err(ForeignKeyError::Unsupported(format!("key type {kty:?}"))),
        }
    }

    /// Reads a PEM private key (lego's `keys/EMAIL.key`): PKCS#8, SEC1 (`EC PRIVATE KEY`)
    /// or PKCS#1 (`RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, ForeignKeyError> {
        let key = rustls_pemfile::private_key(&mut pem.as_bytes())
            .ok()
            .flatten()
            .ok_or(ForeignKeyError::NoPemKey)?;
        match key {
            PrivateKeyDer::Pkcs1(der) => Self::from_rsa_pkcs1(der.secret_pkcs1_der()),
            PrivateKeyDer::Sec1(der) => Self::from_ec_sec1(der.secret_sec1_der()),
            PrivateKeyDer::Pkcs8(der) => {
                let pkcs8 = der.secret_pkcs8_der();
                if let Ok(ec) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8) {
                    return Self::ecdsa(&ec);
                }
                match RsaKeyPair::from_pkcs8(pkcs8) {
                    Ok(_) => Ok(Self {
                        kind: ForeignKeyKind::Rsa,
                        pkcs8: pkcs8.to_vec(),
                    }),
                    Err(_) => Err(ForeignKeyError::Unsupported(
                        "a PKCS#8 key that is neither ECDSA P-256 nor RSA".into(),
                    )),
                }
            }
            _ => Err(ForeignKeyError::NoPemKey),
        }
    }

    /// RSA or ECDSA P-256.
    pub fn kind(&self) -> ForeignKeyKind {
        self.kind
    }

    /// The key as PKCS#8 DER (secret).
    pub(crate) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    fn from_rsa_pkcs1(pkcs1: &[u8]) -> Result<Self, ForeignKeyError> {
        let rejected = |reason: String| ForeignKeyError::Rejected {
            kind: "RSA",
            reason,
        };
        let key = RsaKeyPair::from_der(pkcs1).map_err(|error| rejected(error.to_string()))?;
        let pkcs8 = key
            .as_der()
            .map_err(|error| rejected(error.to_string()))?
            .as_ref()
            .to_vec();
        Ok(Self {
            kind: ForeignKeyKind::Rsa,
            pkcs8,
        })
    }

    fn from_ec_sec1(sec1: &[u8]) -> Result<Self, ForeignKeyError> {
        let key = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, sec1)
            .map_err(|error| ForeignKeyError::Rejected {
                kind: "ECDSA P-256",
                reason: error.to_string(),
            })?;
        Self::ecdsa(&key)
    }

    fn ecdsa(key: &EcdsaKeyPair) -> Result<Self, ForeignKeyError> {
        let pkcs8 = key
            .to_pkcs8v1()
            .map_err(|error| ForeignKeyError::Rejected {
                kind: "ECDSA P-256",
                reason: error.to_string(),
            })?;
        Ok(Self {
            kind: ForeignKeyKind::EcdsaP256,
            pkcs8: pkcs8.as_ref().to_vec(),
        })
    }
}

impl fmt::Debug for ForeignKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForeignKey")
            .field("kind", &self.kind)
            .field("pkcs8", &"<redacted>")
            .finish()
    }
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// The DER of OID 1.2.840.10045.3.1.7 (prime256v1) without its tag and length.
const OID_PRIME256V1: [u8; 8] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A JWK member's bytes; a missing member is an error naming it.
fn jwk_bytes(member: &'static str, value: &Option<String>) -> Result<Vec<u8>, ForeignKeyError> {
    let text = value.as_deref().ok_or(ForeignKeyError::Base64 { member })?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| ForeignKeyError::Base64 { member })
}

/// SEC1 `ECPrivateKey` (RFC 5915) for a P-256 scalar and public point.
fn sec1_p256(d: &[u8], x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut scalar = vec![0; 32usize.saturating_sub(d.len())];
    scalar.extend_from_slice(d);
    let mut point = vec![0x00, 0x04];
    for coordinate in [x, y] {
        point.extend(std::iter::repeat_n(
            0,
            32usize.saturating_sub(coordinate.len()),
        ));
        point.extend_from_slice(coordinate);
    }
    let body = [
        der_unsigned_integer(&[1]),
        der_tlv(TAG_OCTET_STRING, &scalar),
        der_tlv(0xa0, &der_tlv(TAG_OID, &OID_PRIME256V1)),
        der_tlv(0xa1, &der_tlv(TAG_BIT_STRING, &point)),
    ]
    .concat();
    der_tlv(TAG_SEQUENCE, &body)
}

/// A DER INTEGER holding the unsigned big-endian `bytes` (leading zeros dropped, one zero
/// added when the high bit is set, so the value stays positive).
fn der_unsigned_integer(bytes: &[u8]) -> Vec<u8> {
    let first = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    let mut content = Vec::with_capacity(bytes.len() + 1);
    match bytes.get(first) {
        None => content.push(0),
        Some(high) if *high & 0x80 != 0 => content.push(0),
        Some(_) => {}
    }
    content.extend_from_slice(&bytes[first..]);
    der_tlv(TAG_INTEGER, &content)
}

/// One DER tag-length-value.
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = content.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let first = bytes
            .iter()
            .position(|byte| *byte != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - first) as u8);
        out.extend_from_slice(&bytes[first..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private RSA JWK as certbot 2.1 writes it (`accounts/.../private_key.json`),
    /// generated for this test only.
    const CERTBOT_RSA_JWK: &str =
        include_str!("../../../tests/fixtures/import/certbot-private-key.json");

    /// lego's account key (`keys/EMAIL.key`), SEC1 P-256, generated for this test only.
    const LEGO_EC_PEM: &str = include_str!("../../../tests/fixtures/import/lego-account.key");

    #[test]
    fn der_integers_stay_positive_and_minimal() {
        assert_eq!(der_unsigned_integer(&[0, 0, 1]), [0x02, 0x01, 0x01]);
        assert_eq!(der_unsigned_integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_unsigned_integer(&[]), [0x02, 0x01, 0x00]);
        let long = der_tlv(TAG_OCTET_STRING, &[7; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn a_certbot_rsa_jwk_becomes_an_rsa_key_whose_signatures_verify_with_its_n_and_e() {
        let key = ForeignKey::from_jwk(CERTBOT_RSA_JWK.as_bytes()).unwrap();
        assert_eq!(key.kind(), ForeignKeyKind::Rsa);
        let pair = RsaKeyPair::from_pkcs8(key.pkcs8()).unwrap();
        let mut signature = vec![0; pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        pair.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &rng,
            b"message",
            &mut signature,
        )
        .unwrap();
        let jwk: PrivateJwk = serde_json::from_str(CERTBOT_RSA_JWK).unwrap();
        let public = aws_lc_rs::signature::RsaPublicKeyComponents {
            n: jwk_bytes("n", &jwk.n).unwrap(),
            e: jwk_bytes("e", &jwk.e).unwrap(),
        };
        public
            .verify(
                &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
                b"message",
                &signature,
            )
            .unwrap();
    }

    #[test]
    fn a_lego_sec1_key_and_its_jwk_give_the_same_p256_key() {
        let from_pem = ForeignKey::from_pem(LEGO_EC_PEM).unwrap();
        assert_eq!(from_pem.kind(), ForeignKeyKind::EcdsaP256);
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, from_pem.pkcs8()).unwrap();
        use aws_lc_rs::signature::KeyPair;
        let point = pair.public_key().as_ref();
        use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};
        let scalar: EcPrivateKeyBin = pair.private_key().as_be_bytes().unwrap();
        let jwk = serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
            "d": URL_SAFE_NO_PAD.encode(scalar.as_ref()),
        });
        let from_jwk = ForeignKey::from_jwk(jwk.to_string().as_bytes()).unwrap();
        let again =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, from_jwk.pkcs8()).unwrap();
        assert_eq!(again.public_key().as_ref(), point);
    }

    #[test]
    fn unsupported_and_damaged_keys_say_what_is_wrong() {
        let p384 = r#"{"kty":"EC","crv":"P-384","x":"AA","y":"AA","d":"AA"}"#;
        assert!(matches!(
            ForeignKey::from_jwk(p384.as_bytes()),
            Err(ForeignKeyError::Unsupported(_))
        ));
        let missing = r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#;
        let error = ForeignKey::from_jwk(missing.as_bytes()).unwrap_err();
        assert_eq!(error.to_string(), "JWK member \"d\" is not base64url");
        let mut damaged: serde_json::Value = serde_json::from_str(CERTBOT_RSA_JWK).unwrap();
        damaged["q"] = "AQAB".into();
        assert!(matches!(
            ForeignKey::from_jwk(damaged.to_string().as_bytes()),
            Err(ForeignKeyError::Rejected { kind: "RSA", .. })
        ));
        assert!(matches!(
            ForeignKey::from_pem("not a key"),
            Err(ForeignKeyError::NoPemKey)
        ));
    }

    #[test]
    fn a_lego_pkcs1_rsa_account_key_is_read_as_rsa() {
        let pem = include_str!("../../../tests/fixtures/import/lego-rsa-account.key");
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let key = ForeignKey::from_pem(pem).unwrap();
        assert_eq!(key.kind(), ForeignKeyKind::Rsa);
        RsaKeyPair::from_pkcs8(key.pkcs8()).unwrap();
    }

    #[test]
    fn debug_redacts_the_key() {
        let key = ForeignKey::from_pem(LEGO_EC_PEM).unwrap();
        let shown = format!("{key:?}");
        assert!(
            shown.contains("redacted") && !shown.contains('['),
            "{shown}"
        );
    }
}
