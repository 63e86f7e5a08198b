//! JSON lines: one object per endpoint address or file, times as RFC 3339 and Unix seconds.
//!
//! Rows are written through borrowed, typed views whose fields are declared in the order
//! the keys appear (alphabetical, the order certinel has always written), so a row costs
//! no intermediate `serde_json::Value` tree.

use std::io;
use std::net::IpAddr;

use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};
use serde_json::Value;

use crate::report::{Row, Subject, rfc3339};
use crate::scan::inspect::{CertFacts, ChainEntry};

/// Writes the JSON object of one row (no newline). Field names are part of certinel's
/// interface.
pub fn write_row(out: &mut impl io::Write, row: &Row) -> serde_json::Result<()> {
    serde_json::to_writer(out, &RowJson::of(row))
}

/// The JSON object of one row as a value (what [`write_row`] writes).
pub fn row_to_json(row: &Row) -> Value {
    // Serializing plain fields into a Value cannot fail: every map key is a string.
    serde_json::to_value(RowJson::of(row)).unwrap_or(Value::Null)
}

/// One row's keys in the order they are written; `None` of a `skip` field omits the key,
/// an inner `None` writes `null`.
#[derive(Serialize)]
struct RowJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    addresses_truncated: Option<usize>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "chain_entries"
    )]
    chain: Option<&'a [ChainEntry]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cipher_suite: Option<&'a str>,
    days_left: Option<f64>,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    earliest_not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    earliest_not_after_unix: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<Option<IpAddr>>,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    leaf: Option<CertJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sni: Option<Option<&'a str>>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<bool>,
}

impl<'a> RowJson<'a> {
    fn of(row: &'a Row) -> RowJson<'a> {
        let (kind, target, ip, sni, addresses_truncated, path) = match &row.subject {
            Subject::Endpoint {
                target,
                ip,
                sni,
                addresses_truncated,
            } => (
                "endpoint",
                Some(target.as_str()),
                Some(*ip),
                Some(sni.as_deref()),
                Some(*addresses_truncated).filter(|count| *count > 0),
                None,
            ),
            Subject::File { path } => ("file", None, None, None, None, Some(path.as_str())),
        };
        let handshake = row.handshake.as_ref();
        let chain = row.chain.as_ref();
        RowJson {
            addresses_truncated,
            chain: chain.map(|chain| chain.entries.as_slice()),
            cipher_suite: handshake.map(|handshake| handshake.cipher_suite.as_str()),
            days_left: row.days_left,
            detail: &row.detail,
            duration_ms: row.duration_ms,
            earliest_not_after: chain.map(|chain| rfc3339(chain.earliest_not_after)),
            earliest_not_after_unix: chain.map(|chain| chain.earliest_not_after.unix_timestamp()),
            ip,
            kind,
            leaf: chain.map(|chain| CertJson::of(chain.leaf(), None)),
            path,
            reason: row.reason,
            sni,
            status: row.status.label(),
            target,
            tls_version: handshake.map(|handshake| handshake.tls_version.as_str()),
            verified: handshake.map(|handshake| handshake.verified),
        }
    }
}

fn chain_entries<S: Serializer>(
    entries: &Option<&[ChainEntry]>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let entries = entries.unwrap_or_default();
    let mut seq = serializer.serialize_seq(Some(entries.len()))?;
    for entry in entries {
        seq.serialize_element(&CertJson::of(&entry.facts, Some(entry)))?;
    }
    seq.end()
}

/// One certificate's keys in the order they are written; `position` and `role` only for
/// the entries of `chain`, not for `leaf`.
#[derive(Serialize)]
struct CertJson<'a> {
    dns_names: &'a [String],
    fingerprint_sha256: &'a str,
    ip_addresses: &'a [IpAddr],
    issuer: &'a str,
    key_type: String,
    not_after: String,
    not_after_unix: i64,
    not_before: String,
    not_before_unix: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    self_signed: bool,
    serial: &'a str,
    signature_algorithm: &'a str,
    subject: &'a str,
}

impl<'a> CertJson<'a> {
    fn of(facts: &'a CertFacts, entry: Option<&ChainEntry>) -> CertJson<'a> {
        CertJson {
            dns_names: &facts.dns_names,
            fingerprint_sha256: &facts.fingerprint_sha256,
            ip_addresses: &facts.ip_addresses,
            issuer: &facts.issuer,
            key_type: facts.key.label(),
            not_after: rfc3339(facts.not_after),
            not_after_unix: facts.not_after.unix_timestamp(),
            not_before: rfc3339(facts.not_before),
            not_before_unix: facts.not_before.unix_timestamp(),
            position: entry.map(|entry| entry.position),
            role: entry.map(|entry| entry.role.label()),
            self_signed: facts.self_signed,
            serial: &facts.serial,
            signature_algorithm: &facts.signature_algorithm,
            subject: &facts.subject,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;

    use time::OffsetDateTime;

    use super::*;
    use crate::report::{HandshakeSummary, Status};
    use crate::scan::inspect::{ChainEntry, ChainFacts, Role, inspect_chain};
    use crate::scan::testing::fixture_chain;

    /// The fixtures' leaf, for its key type (report may not name `cert::KeyType` itself).
    fn fixture_leaf() -> CertFacts {
        let chain = inspect_chain(&fixture_chain("valid.pem")).unwrap();
        chain.leaf().clone()
    }

    fn facts(subject: &str, issuer: &str, not_after: i64) -> Arc<CertFacts> {
        Arc::new(CertFacts {
            subject: subject.to_owned(),
            issuer: issuer.to_owned(),
            serial: "0a:1b".to_owned(),
            dns_names: vec!["a.example.test".to_owned(), "b.example.test".to_owned()],
            ip_addresses: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            key: fixture_leaf().key,
            signature_algorithm: "ecdsa-with-SHA256".to_owned(),
            not_before: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            not_after: OffsetDateTime::from_unix_timestamp(not_after).unwrap(),
            fingerprint_sha256: "ab".repeat(32),
            self_signed: subject == issuer,
            is_ca: subject == issuer,
            subject_key_id: None,
            authority_key_id: None,
        })
    }

    /// The row as `certinel check --output json` writes it, checked against the value form.
    fn written(row: &Row) -> String {
        let mut out = Vec::new();
        write_row(&mut out, row).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, row_to_json(row).to_string());
        text
    }

    fn endpoint_row() -> Row {
        let leaf = facts("CN=a \"quoted\" \\ name", "CN=Bench CA", 1_800_000_000);
        let root = facts("CN=Bench CA", "CN=Bench CA", 2_000_000_000);
        Row {
            subject: Subject::Endpoint {
                target: "a.example.test:443".to_owned(),
                ip: Some(IpAddr::from([127, 0, 0, 1])),
                sni: Some("a.example.test".to_owned()),
                addresses_truncated: 3,
            },
            status: Status::Warning,
            reason: "expiring_soon",
            detail: "expires in 12 days\ttab\u{1}".to_owned(),
            days_left: Some(12.345_678_9),
            chain: Some(ChainFacts {
                entries: vec![
                    ChainEntry {
                        position: 0,
                        role: Role::Leaf,
                        facts: leaf,
                    },
                    ChainEntry {
                        position: 1,
                        role: Role::Root,
                        facts: root,
                    },
                ],
                earliest_not_after: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
                in_order: true,
            }),
            handshake: Some(HandshakeSummary {
                tls_version: "TLSv1.3".to_owned(),
                cipher_suite: "TLS13_AES_256_GCM_SHA384".to_owned(),
                verified: true,
            }),
            duration_ms: Some(42),
        }
    }

    #[test]
    fn endpoint_row_with_chain_and_handshake_is_written_byte_for_byte() {
        let cert = |subject: &str, not_after: &str, not_after_unix: &str, tail: &str| {
            format!(
                "{{\"dns_names\":[\"a.example.test\",\"b.example.test\"],\
                 \"fingerprint_sha256\":\"{}\",\"ip_addresses\":[\"127.0.0.1\",\"::1\"],\
                 \"issuer\":\"CN=Bench CA\",\"key_type\":\"{}\",\
                 \"not_after\":\"{not_after}\",\"not_after_unix\":{not_after_unix},\
                 \"not_before\":\"2023-11-14T22:13:20Z\",\"not_before_unix\":1700000000,\
                 {tail}\"serial\":\"0a:1b\",\
                 \"signature_algorithm\":\"ecdsa-with-SHA256\",\"subject\":\"{subject}\"}}",
                "ab".repeat(32),
                fixture_leaf().key.label()
            )
        };
        let leaf = |tail: &str| {
            cert(
                r#"CN=a \"quoted\" \\ name"#,
                "2027-01-15T08:00:00Z",
                "1800000000",
                tail,
            )
        };
        let root = cert(
            "CN=Bench CA",
            "2033-05-18T03:33:20Z",
            "2000000000",
            r#""position":1,"role":"root","self_signed":true,"#,
        );
        let expected = format!(
            "{{\"addresses_truncated\":3,\"chain\":[{},{root}],\
             \"cipher_suite\":\"TLS13_AES_256_GCM_SHA384\",\"days_left\":12.3456789,\
             \"detail\":\"expires in 12 days\\ttab\\u0001\",\"duration_ms\":42,\
             \"earliest_not_after\":\"2027-01-15T08:00:00Z\",\
             \"earliest_not_after_unix\":1800000000,\"ip\":\"127.0.0.1\",\"kind\":\"endpoint\",\
             \"leaf\":{},\"reason\":\"expiring_soon\",\"sni\":\"a.example.test\",\
             \"status\":\"WARNING\",\"target\":\"a.example.test:443\",\"tls_version\":\"TLSv1.3\",\
             \"verified\":true}}",
            leaf(r#""position":0,"role":"leaf","self_signed":false,"#),
            leaf(r#""self_signed":false,"#),
        );
        assert_eq!(written(&endpoint_row()), expected);
    }

    #[test]
    fn rows_without_chain_or_address_keep_their_nulls_and_omit_the_rest() {
        let unresolved = Row {
            subject: Subject::Endpoint {
                target: "gone.example.test:443".to_owned(),
                ip: None,
                sni: None,
                addresses_truncated: 0,
            },
            status: Status::Unknown,
            reason: "dns",
            detail: "no such name".to_owned(),
            days_left: None,
            chain: None,
            handshake: None,
            duration_ms: None,
        };
        assert_eq!(
            written(&unresolved),
            r#"{"days_left":null,"detail":"no such name","ip":null,"kind":"endpoint","reason":"dns","sni":null,"status":"UNKNOWN","target":"gone.example.test:443"}"#
        );
        let file = Row {
            subject: Subject::File {
                path: "/etc/ssl/a.pem".to_owned(),
            },
            days_left: Some(f64::NAN),
            ..unresolved
        };
        assert_eq!(
            written(&file),
            r#"{"days_left":null,"detail":"no such name","kind":"file","path":"/etc/ssl/a.pem","reason":"dns","status":"UNKNOWN"}"#
        );
    }
}
