//! What the CA's directory advertises (ACME Renewal Information, profiles) and the
//! renewal information of one certificate (RFC 9773), fetched through the instrumented
//! HTTP client because instant-acme refuses an answer without Retry-After.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, Request};
use instant_acme::{BodyWrapper, HttpClient};
use serde::Deserialize;
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;

use crate::acme::{AcmeAccount, AcmeError, Stage, retry};

/// What the CA's directory advertises beyond the core resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryFacts {
    /// The `renewalInfo` URL, when the CA supports ARI.
    pub renewal_info: Option<String>,
    /// `meta.profiles`: profile name → description.
    pub profiles: BTreeMap<String, String>,
    /// `meta.caaIdentities`: the issuer domain names CAA records name this CA by.
    pub caa_identities: Vec<String>,
}

impl DirectoryFacts {
    /// Reads the facts from a directory document.
    pub fn from_directory(directory: &serde_json::Value) -> DirectoryFacts {
        let renewal_info = directory
            .get("renewalInfo")
            .and_then(|url| url.as_str())
            .map(str::to_owned);
        let meta = |field: &str| directory.get("meta").and_then(|meta| meta.get(field));
        let profiles = meta("profiles")
            .and_then(serde_json::Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, description)| {
                let description = description.as_str().unwrap_or_default();
                (name.clone(), description.to_owned())
            })
            .collect();
        let caa_identities = meta("caaIdentities")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .map(str::to_owned)
            .collect();
        DirectoryFacts {
            renewal_info,
            profiles,
            caa_identities,
        }
    }
}

/// The CA's answer about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalInfo {
    /// Start of the suggested window.
    pub window_start: OffsetDateTime,
    /// End of the suggested window (not checked to be after the start).
    pub window_end: OffsetDateTime,
    /// The Retry-After delay, when the header was present and valid.
    pub retry_after: Option<Duration>,
    /// A page explaining the window (RFC 9773 section 4.2, `explanationURL`).
    pub explanation_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RenewalInfoDocument {
    suggested_window: WindowDocument,
    #[serde(rename = "explanationURL", default)]
    explanation_url: Option<String>,
}

#[derive(Deserialize)]
struct WindowDocument {
    #[serde(deserialize_with = "utc_timestamp")]
    start: OffsetDateTime,
    #[serde(deserialize_with = "utc_timestamp")]
    end: OffsetDateTime,
}

/// An RFC 3339 timestamp, moved to UTC. The schedule computes inside the window (a moment
/// between start and end) and saves it as RFC 3339 in `schedule.json`, so a time whose
/// offset puts it outside the years 0000 to 9999 in UTC (`9999-12-31T23:59:59-23:59`) is
/// refused here.
fn utc_timestamp<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<OffsetDateTime, D::Error> {
    let written = time::serde::rfc3339::deserialize(deserializer)?;
    written
        .checked_to_offset(time::UtcOffset::UTC)
        .filter(|utc| (0..=9999).contains(&utc.year()))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{written} lies outside the years 0000 to 9999 in UTC"
            ))
        })
}

/// The ARI certificate identifier of the leaf (the first certificate) in `chain_pem`:
/// base64url of the Authority Key Identifier's keyIdentifier, a dot, base64url of the DER
/// serial number bytes (a leading zero byte kept).
pub fn ari_certificate_id(chain_pem: &str) -> Result<String, AcmeError> {
    let invalid = |message: String| AcmeError::Invalid {
        stage: Stage::Order,
        message: format!("ARI certificate identifier: {message}"),
    };
    let pem = x509_parser::pem::Pem::iter_from_buffer(chain_pem.as_bytes())
        .next()
        .ok_or_else(|| invalid("no PEM certificate".into()))?
        .map_err(|error| invalid(error.to_string()))?;
    let cert = pem
        .parse_x509()
        .map_err(|error| invalid(error.to_string()))?;
    let key_identifier = cert
        .iter_extensions()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
            _ => None,
        })
        .ok_or_else(|| invalid("the certificate has no Authority Key Identifier".into()))?;
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(key_identifier.0),
        URL_SAFE_NO_PAD.encode(cert.tbs_certificate.raw_serial())
    ))
}

/// Fetches the directory again (the CA may have added or withdrawn ARI or a profile) and
/// returns what it advertises; the account's facts are updated too.
pub async fn refresh_directory(account: &AcmeAccount) -> Result<DirectoryFacts, AcmeError> {
    let (status, _, body) = get(account, account.directory(), Stage::Order).await?;
    if !status.is_success() {
        return Err(AcmeError::Protocol {
            stage: Stage::Order,
            message: format!("the directory answered HTTP {status}"),
        });
    }
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|error| AcmeError::Protocol {
            stage: Stage::Order,
            message: format!("the directory is not JSON: {error}"),
        })?;
    account.reload_when_renewal_info_appeared().await?;
    Ok(DirectoryFacts::from_directory(&json))
}

/// Asks the CA for the renewal information of the certificate `cert_id` (from
/// [`ari_certificate_id`]). Fails with stage `order` when the CA has no `renewalInfo`,
/// answers with an error status or with a document that is not a suggested window.
pub async fn renewal_info(account: &AcmeAccount, cert_id: &str) -> Result<RenewalInfo, AcmeError> {
    let base = account
        .directory_facts()
        .renewal_info
        .ok_or_else(|| AcmeError::Invalid {
            stage: Stage::Order,
            message: "the ACME server does not offer renewal information (ARI)".into(),
        })?;
    let url = format!("{}/{cert_id}", base.trim_end_matches('/'));
    let (status, headers, body) = get(account, &url, Stage::Order).await?;
    if !status.is_success() {
        return Err(AcmeError::Protocol {
            stage: Stage::Order,
            message: format!("renewal information for {cert_id}: HTTP {status}"),
        });
    }
    let document: RenewalInfoDocument =
        serde_json::from_slice(&body).map_err(|error| AcmeError::Protocol {
            stage: Stage::Order,
            message: format!("renewal information for {cert_id}: {error}"),
        })?;
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| retry::parse_retry_after(value, SystemTime::now()));
    Ok(RenewalInfo {
        window_start: document.suggested_window.start,
        window_end: document.suggested_window.end,
        retry_after,
        explanation_url: document.explanation_url,
    })
}

/// A plain GET through the account's client (retries, observer, Date header included).
async fn get(
    account: &AcmeAccount,
    url: &str,
    stage: Stage,
) -> Result<(http::StatusCode, http::HeaderMap, Bytes), AcmeError> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(url)
        .body(BodyWrapper::<Bytes>::default())
        .map_err(|error| AcmeError::Invalid {
            stage,
            message: format!("{url}: {error}"),
        })?;
    let mut response = account
        .http_client()
        .request(request)
        .await
        .map_err(|error| AcmeError::from_acme(stage, error))?;
    let body = response
        .body
        .into_bytes()
        .await
        .map_err(|error| AcmeError::Protocol {
            stage,
            message: format!("{url}: {error}"),
        })?;
    Ok((response.parts.status, response.parts.headers, body))
}

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_facts_read_profiles_and_caa_identities_from_meta() {
        let directory = serde_json::json!({
            "renewalInfo": "https://ca.test/ari",
            "meta": {
                "profiles": {"classic": "the usual", "odd": 5},
                "caaIdentities": ["ca.test", 3, "ca.example"],
            },
        });
        let facts = DirectoryFacts::from_directory(&directory);
        assert_eq!(facts.renewal_info.as_deref(), Some("https://ca.test/ari"));
        let profiles: Vec<(&str, &str)> = facts
            .profiles
            .iter()
            .map(|(name, description)| (name.as_str(), description.as_str()))
            .collect();
        // A description that is not a string is kept as an empty one.
        assert_eq!(profiles, [("classic", "the usual"), ("odd", "")]);
        // Identities that are not strings are skipped.
        assert_eq!(facts.caa_identities, ["ca.test", "ca.example"]);
        let bare = DirectoryFacts::from_directory(&serde_json::json!({}));
        assert!(bare.profiles.is_empty() && bare.caa_identities.is_empty());
    }

    #[test]
    fn directory_facts_read_renewal_info_and_profiles() {
        let directory = serde_json::json!({
            "newOrder": "https://ca/new-order",
            "renewalInfo": "https://ca/renewal-info",
            "meta": {"profiles": {"classic": "90 days", "shortlived": "6 days"}}
        });
        let facts = DirectoryFacts::from_directory(&directory);
        assert_eq!(
            facts.renewal_info.as_deref(),
            Some("https://ca/renewal-info")
        );
        assert_eq!(
            facts.profiles.keys().collect::<Vec<_>>(),
            ["classic", "shortlived"]
        );
        let bare = DirectoryFacts::from_directory(&serde_json::json!({"newOrder": "x"}));
        assert_eq!(bare, DirectoryFacts::default());
    }

    #[test]
    fn the_ari_identifier_is_the_key_identifier_and_the_der_serial() {
        // RFC 9773 section 4.1's example: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:
        // 7B:A0:AE:2C:DE:01:C8:D4, serial 00:87:65:43:21.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(vec![
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0,
            0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4,
        ]);
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        leaf.serial_number = Some(rcgen::SerialNumber::from_slice(&[
            0x00, 0x87, 0x65, 0x43, 0x21,
        ]));
        leaf.use_authority_key_identifier_extension = true;
        let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();
        assert_eq!(
            ari_certificate_id(&leaf.pem()).unwrap(),
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
        );
        assert!(ari_certificate_id("no pem").is_err());
    }
}
