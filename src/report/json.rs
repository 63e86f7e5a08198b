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
