//! JSON lines: one object per endpoint address or file, times as RFC 3339 and Unix seconds.

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::report::{Row, Subject, rfc3339};
use crate::scan::inspect::CertFacts;

/// The JSON object of one row. Field names are part of certinel's interface.
pub fn row_to_json(row: &Row) -> Value {
    let mut object = match &row.subject {
        Subject::Endpoint {
            target,
            ip,
            sni,
            addresses_truncated,
        } => {
            let mut endpoint = json!({
                "kind": "endpoint",
                "target": target,
                "ip": ip.map(|ip| ip.to_string()),
                "sni": sni,
            });
            if *addresses_truncated > 0 {
                endpoint["addresses_truncated"] = json!(addresses_truncated);
            }
            endpoint
        }
        Subject::File { path } => json!({ "kind": "file", "path": path }),
    };
    let fields = object
        .as_object_mut()
        .expect("json! of an object literal is an object");
    fields.insert("status".into(), json!(row.status.label()));
    fields.insert("reason".into(), json!(row.reason));
    fields.insert("detail".into(), json!(row.detail));
    fields.insert("days_left".into(), json!(row.days_left));
    if let Some(ms) = row.duration_ms {
        fields.insert("duration_ms".into(), json!(ms));
    }
    if let Some(handshake) = &row.handshake {
        fields.insert("tls_version".into(), json!(handshake.tls_version));
        fields.insert("cipher_suite".into(), json!(handshake.cipher_suite));
        fields.insert("verified".into(), json!(handshake.verified));
    }
    if let Some(chain) = &row.chain {
        insert_time(fields, "earliest_not_after", chain.earliest_not_after);
        fields.insert("leaf".into(), cert_to_json(chain.leaf()));
        let entries: Vec<Value> = chain
            .entries
            .iter()
            .map(|entry| {
                let mut cert = cert_to_json(&entry.facts);
                let map = cert.as_object_mut().expect("cert_to_json builds an object");
                map.insert("position".into(), json!(entry.position));
                map.insert("role".into(), json!(entry.role.label()));
                cert
            })
            .collect();
        fields.insert("chain".into(), Value::Array(entries));
    }
    object
}

fn cert_to_json(facts: &CertFacts) -> Value {
    let mut object = json!({
        "subject": facts.subject,
        "issuer": facts.issuer,
        "serial": facts.serial,
        "dns_names": facts.dns_names,
        "ip_addresses": facts.ip_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "key_type": facts.key.label(),
        "signature_algorithm": facts.signature_algorithm,
        "fingerprint_sha256": facts.fingerprint_sha256,
        "self_signed": facts.self_signed,
    });
    let fields = object
        .as_object_mut()
        .expect("json! of an object literal is an object");
    insert_time(fields, "not_before", facts.not_before);
    insert_time(fields, "not_after", facts.not_after);
    object
}

fn insert_time(fields: &mut serde_json::Map<String, Value>, name: &str, at: OffsetDateTime) {
    fields.insert(name.to_owned(), json!(rfc3339(at)));
    fields.insert(format!("{name}_unix"), json!(at.unix_timestamp()));
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;

    use super::*;
    use crate::cert::KeyType;
    use crate::report::{HandshakeSummary, Status};
    use crate::scan::inspect::{ChainEntry, ChainFacts, Role};

    fn facts(subject: &str, issuer: &str, not_after: i64) -> Arc<CertFacts> {
        Arc::new(CertFacts {
            subject: subject.to_owned(),
            issuer: issuer.to_owned(),
            serial: "0a:1b".to_owned(),
            dns_names: vec!["a.example.test".to_owned(), "b.example.test".to_owned()],
            ip_addresses: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            key: KeyType::Rsa(2048),
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
                 \"issuer\":\"CN=Bench CA\",\"key_type\":\"rsa-2048\",\
                 \"not_after\":\"{not_after}\",\"not_after_unix\":{not_after_unix},\
                 \"not_before\":\"2023-11-14T22:13:20Z\",\"not_before_unix\":1700000000,\
                 {tail}\"serial\":\"0a:1b\",\
                 \"signature_algorithm\":\"ecdsa-with-SHA256\",\"subject\":\"{subject}\"}}",
                "ab".repeat(32)
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
        assert_eq!(row_to_json(&endpoint_row()).to_string(), expected);
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
            row_to_json(&unresolved).to_string(),
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
            row_to_json(&file).to_string(),
            r#"{"days_left":null,"detail":"no such name","kind":"file","path":"/etc/ssl/a.pem","reason":"dns","status":"UNKNOWN"}"#
        );
    }
}
