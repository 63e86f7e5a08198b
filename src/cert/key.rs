//! Key types: the one a certificate should have ([`KeyAlgorithm`], from the configuration)
//! and the one a certificate has ([`KeyType`], read from its public key).

use std::fmt;
use std::str::FromStr;

/// The type of a certificate's private key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 (the usual choice).
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// RSA with a 2048-bit modulus.
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
    /// RSA with a 4096-bit modulus (generation takes a second or more).
    Rsa4096,
    /// Ed25519 (not accepted by every CA).
    Ed25519,
}

/// A key type name that is not one of [`KeyAlgorithm::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown key type {0:?}: expected ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519"
)]
pub struct UnknownKeyAlgorithm(pub String);

impl KeyAlgorithm {
    /// Every supported key type.
    pub const ALL: [Self; 6] = [
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
        Self::Ed25519,
    ];

    /// The configuration spelling: `ecdsa-p256`, `rsa-2048`, `ed25519`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
            Self::Rsa4096 => "rsa-4096",
            Self::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = UnknownKeyAlgorithm;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.as_str() == text)
            .ok_or_else(|| UnknownKeyAlgorithm(text.to_owned()))
    }
}

impl KeyAlgorithm {
    /// The key type a certificate made with this algorithm has.
    pub fn key_type(self) -> KeyType {
        match self {
            Self::EcdsaP256 => KeyType::EcdsaP256,
            Self::EcdsaP384 => KeyType::EcdsaP384,
            Self::Rsa2048 => KeyType::Rsa(2048),
            Self::Rsa3072 => KeyType::Rsa(3072),
            Self::Rsa4096 => KeyType::Rsa(4096),
            Self::Ed25519 => KeyType::Ed25519,
        }
    }
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

impl KeyType {
    /// `ecdsa-p256`, `rsa-2048`, `ed25519`, ... (the same spelling as the renewer's `key`).
    pub fn label(self) -> String {
        match self {
            KeyType::Rsa(bits) => format!("rsa-{bits}"),
            KeyType::EcdsaP256 => "ecdsa-p256".to_owned(),
            KeyType::EcdsaP384 => "ecdsa-p384".to_owned(),
            KeyType::EcdsaP521 => "ecdsa-p521".to_owned(),
            KeyType::Ed25519 => "ed25519".to_owned(),
            KeyType::Other => "other".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_algorithm_names_round_trip() {
        for algorithm in KeyAlgorithm::ALL {
            assert_eq!(algorithm.as_str().parse::<KeyAlgorithm>(), Ok(algorithm));
        }
        assert!("rsa-1024".parse::<KeyAlgorithm>().is_err());
    }

    #[test]
    fn an_algorithm_and_its_key_type_share_their_spelling() {
        for algorithm in KeyAlgorithm::ALL {
            assert_eq!(algorithm.key_type().label(), algorithm.as_str());
        }
    }
}
