//! Version numbers and the small `meta.json` describing each stored version.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::cert::KeyType;

/// A version number of one certificate: `v0001`, `v0002`, ... in issuance order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct VersionId(pub u32);

/// Where a version is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Stored, never made `current`.
    Pending,
    /// Has been made `current` (it may since have become `previous` or older).
    Active,
    /// Its renewal failed or was rolled back; never chosen as a rollback target.
    Failed,
    /// Was made `current`, but only its rollout failed (a deploy command or the served
    /// check), so its files are good: rolled back (or left live unconfirmed), it is rolled
    /// out again by the next due attempt instead of ordering a new certificate. Never a
    /// rollback target.
    Parked,
}

/// What the caller knows about an issuance that the certificate itself does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// When the certificate was obtained.
    pub created_at: OffsetDateTime,
    /// Where it came from: the ACME directory URL.
    pub source: String,
}

/// The contents of `meta.json` in a version directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMetadata {
    /// This version's number.
    pub version: VersionId,
    /// Serial number, lowercase hex without leading zeros.
    pub serial: String,
    /// Start of validity of the leaf.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity of the leaf.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// DNS names in the subjectAltName extension.
    pub dns_names: Vec<String>,
    /// The key type, as named by [`key_type_name`].
    #[serde(with = "key_type_serde")]
    pub key_type: KeyType,
    /// Issuer distinguished name.
    pub issuer: String,
    /// When the certificate was obtained.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The ACME directory URL it came from.
    pub source: String,
    /// Pending, active, failed or parked.
    pub state: VersionState,
}

/// An unparsable version directory name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a version name like v0001")]
pub struct BadVersionName(String);

/// A stable, human-readable name for a key type: `rsa-2048`, `ecdsa-p256`, `ed25519`, ...
pub fn key_type_name(key_type: KeyType) -> String {
    match key_type {
        KeyType::Rsa(bits) => format!("rsa-{bits}"),
        KeyType::EcdsaP256 => "ecdsa-p256".into(),
        KeyType::EcdsaP384 => "ecdsa-p384".into(),
        KeyType::EcdsaP521 => "ecdsa-p521".into(),
        KeyType::Ed25519 => "ed25519".into(),
        KeyType::Other => "other".into(),
    }
}

/// The inverse of [`key_type_name`].
pub fn parse_key_type(name: &str) -> Option<KeyType> {
    Some(match name {
        "ecdsa-p256" => KeyType::EcdsaP256,
        "ecdsa-p384" => KeyType::EcdsaP384,
        "ecdsa-p521" => KeyType::EcdsaP521,
        "ed25519" => KeyType::Ed25519,
        "other" => KeyType::Other,
        _ => KeyType::Rsa(name.strip_prefix("rsa-")?.parse().ok()?),
    })
}

impl VersionId {
    /// The version after this one.
    pub fn next(self) -> VersionId {
        VersionId(self.0.saturating_add(1))
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{:04}", self.0)
    }
}

impl FromStr for VersionId {
    type Err = BadVersionName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s
            .strip_prefix('v')
            .filter(|d| d.len() >= 4 && d.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| BadVersionName(s.to_string()))?;
        digits
            .parse()
            .map(VersionId)
            .map_err(|_| BadVersionName(s.to_string()))
    }
}

impl From<VersionId> for String {
    fn from(v: VersionId) -> String {
        v.to_string()
    }
}

impl TryFrom<String> for VersionId {
    type Error = BadVersionName;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

mod key_type_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{KeyType, key_type_name, parse_key_type};

    pub fn serialize<S: Serializer>(key_type: &KeyType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&key_type_name(*key_type))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KeyType, D::Error> {
        let name = String::deserialize(d)?;
        parse_key_type(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown key type {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_print_and_parse_with_four_digits() {
        assert_eq!(VersionId(7).to_string(), "v0007");
        assert_eq!("v0007".parse(), Ok(VersionId(7)));
        assert_eq!("v12345".parse(), Ok(VersionId(12345)));
        assert!("v7".parse::<VersionId>().is_err());
        assert!("current".parse::<VersionId>().is_err());
        assert!(".v0001.partial".parse::<VersionId>().is_err());
    }

    #[test]
    fn key_type_names_round_trip() {
        for key_type in [
            KeyType::Rsa(2048),
            KeyType::EcdsaP256,
            KeyType::EcdsaP384,
            KeyType::EcdsaP521,
            KeyType::Ed25519,
            KeyType::Other,
        ] {
            assert_eq!(parse_key_type(&key_type_name(key_type)), Some(key_type));
        }
        assert_eq!(parse_key_type("rsa-"), None);
    }

    #[test]
    fn metadata_serialises_times_as_rfc3339_and_key_type_as_a_name() {
        let meta = VersionMetadata {
            version: VersionId(1),
            serial: "0a".into(),
            not_before: time::macros::datetime!(2025-01-01 0:00 UTC),
            not_after: time::macros::datetime!(2025-04-01 0:00 UTC),
            dns_names: vec!["example.com".into()],
            key_type: KeyType::EcdsaP256,
            issuer: "CN=Test CA".into(),
            created_at: time::macros::datetime!(2025-01-01 0:05 UTC),
            source: "https://acme.invalid/directory".into(),
            state: VersionState::Pending,
        };
        let json = serde_json::to_string(&meta).unwrap();
        assert!(json.contains(r#""version":"v0001""#), "{json}");
        assert!(
            json.contains(r#""not_after":"2025-04-01T00:00:00Z""#),
            "{json}"
        );
        assert!(json.contains(r#""key_type":"ecdsa-p256""#), "{json}");
        assert!(json.contains(r#""state":"pending""#), "{json}");
        assert_eq!(
            serde_json::from_str::<VersionMetadata>(&json).unwrap(),
            meta
        );
    }
}
