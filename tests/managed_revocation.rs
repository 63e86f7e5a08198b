//! A managed certificate found revoked is renewed at once, against a real Pebble: the
//! current version (v0001) is a certificate adopted from the in-test CA whose CRL
//! Distribution Point is the in-test CRL server, so that CRL is authoritative for it.
//! `certinel run` checks it (not revoked, its window decades away), the CA revokes it,
//! and the next check renews it from Pebble (v0002) with the revocation in the audit log.

use std::path::Path;

use crate::common::cli::{output_text, run_certinel};
use crate::common::config_text::{pebble_acme_table, write_config_file};
use crate::common::crl::{CrlCa, CrlServer, NAME, adopt_leaf};
use crate::common::eventually::eventually;
use crate::common::pebble::Pebble;
use crate::common::service::{PATIENCE, Service, sample};

/// The JSON a `certinel` subcommand prints.
async fn json_of(args: &[&str], config: &Path) -> serde_json::Value {
    let output = run_certinel(args, config).await;
    assert!(output.status.success(), "{}", output_text(&output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", output_text(&output)))
}

#[tokio::test]
async fn a_managed_certificate_revoked_at_its_ca_is_renewed_at_once_from_pebble() {
    let pebble = Pebble::start_with_validity(3600).await;
    let ca = CrlCa::new();
    let crl_server = CrlServer::start().await;
    crl_server.publish(ca.crl(&[]));
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    adopt_leaf(&state_dir, "api", &ca, 7, &crl_server.url);
    let text = pebble_acme_table(&state_dir, &pebble)
        + &format!(
            "\n[scanner]\ncrl_interval = \"1s\"\n\n[[certificate]]\nname = \"api\"\n\
             dns_names = [{NAME:?}]\n\
             challenge = {{ type = \"http-01\", listen = \"{}\" }}\n",
            pebble.http_addr()
        );
    let config = write_config_file(dir.path(), &text);

    let service = Service::start(Some(&config)).await;
    let clean = service
        .metrics_until("the first CRL check", |body| {
            sample(body, r#"certinel_certificate_revoked{name="api"}"#) == Some(0.0)
        })
        .await;
    assert!(
        clean.contains(r#"version="v0001""#),
        "still the adopted version:\n{clean}"
    );

    // `inventory` and `status` show the verdict the service persisted.
    let inventory = json_of(&["inventory", "--output", "json"], &config).await;
    let managed = &inventory["managed"][0];
    assert_eq!(managed["revocation"]["revoked"], false, "{inventory}");
    assert_eq!(managed["revocation"]["crl"], crl_server.url.as_str());
    assert_eq!(managed["automation"]["ca"], serde_json::json!(["acme"]));
    let status = json_of(&["status", "--output", "json"], &config).await;
    assert_eq!(
        status[0]["revocation"]["revoked_at"],
        serde_json::Value::Null
    );

    crl_server.publish(ca.crl(&[7]));
    let current = state_dir.join("certs/api/current");
    eventually(PATIENCE, async || match std::fs::read_link(&current) {
        Ok(target) if target.ends_with("v0002") => Ok(()),
        other => Err(format!("current is {other:?}")),
    })
    .await;
    let audit = std::fs::read_to_string(state_dir.join("audit.jsonl")).unwrap();
    let begin = audit
        .lines()
        .find(|line| line.contains(r#""step":"begin""#))
        .unwrap_or_else(|| panic!("no begin line in\n{audit}"));
    assert!(
        begin.contains("revoked: serial ") && begin.contains(&crl_server.url),
        "the renewal says why it began: {begin}"
    );
    // The new version comes from Pebble and names no CRL: no verdict, no series.
    let renewed = service
        .metrics_until("the renewed version in /metrics", |body| {
            body.contains(r#"version="v0002""#)
        })
        .await;
    assert_eq!(
        sample(&renewed, r#"certinel_certificate_revoked{name="api"}"#),
        None,
        "{renewed}"
    );
}
