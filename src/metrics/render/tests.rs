//! Unit tests of the metric renderer, on hand-built reports.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use time::macros::datetime;

use super::*;
use crate::cert::KeyType;
use crate::config::model::{Endpoint, Target};
use crate::scan::files::FileError;
use crate::scan::inspect::{ChainEntry, Role};
use crate::scan::probe::{AddressReport, ProbeError};
use crate::scan::verify::{Reason, Verification};

const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

pub(crate) fn facts(subject: &str, not_after: OffsetDateTime) -> CertFacts {
    CertFacts {
        subject: format!("CN={subject}"),
        issuer: "CN=Test CA".to_owned(),
        serial: "1a2b".to_owned(),
        dns_names: vec![subject.to_owned(), format!("www.{subject}")],
        ip_addresses: Vec::new(),
        key: KeyType::EcdsaP256,
        signature_algorithm: "ecdsa-with-SHA256".to_owned(),
        not_before: datetime!(2025-10-01 00:00 UTC),
        not_after,
        fingerprint_sha256: "ab".repeat(32),
        self_signed: false,
        is_ca: false,
        subject_key_id: None,
        authority_key_id: None,
    }
}

pub(crate) fn chain(subject: &str, not_after: OffsetDateTime) -> ChainFacts {
    let mut intermediate = facts("Test CA", datetime!(2027-01-01 00:00 UTC));
    intermediate.is_ca = true;
    ChainFacts {
        entries: vec![
            ChainEntry {
                position: 0,
                role: Role::Leaf,
                facts: facts(subject, not_after).into(),
            },
            ChainEntry {
                position: 1,
                role: Role::Intermediate,
                facts: intermediate.into(),
            },
        ],
        earliest_not_after: not_after,
        in_order: true,
    }
}

pub(crate) fn handshake(subject: &str, not_after: OffsetDateTime) -> Result<Handshake, ProbeError> {
    Ok(Handshake {
        tls_version: "TLSv1.3".to_owned(),
        cipher_suite: "TLS13_AES_128_GCM_SHA256".to_owned(),
        chain: chain(subject, not_after),
        verification: Verification {
            verified: true,
            reason: None,
            detail: String::new(),
        },
        revocation: None,
    })
}

pub(crate) fn report(
    target: &str,
    outcomes: Vec<(&str, Result<Handshake, ProbeError>)>,
) -> EndpointReport {
    let target: Target = Target {
        host: crate::config::model::Host::Name(target.split(':').next().unwrap_or("").to_owned()),
        port: target
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(443),
    };
    EndpointReport {
        endpoint: Endpoint::new(target, Duration::from_secs(5)),
        started_at: datetime!(2025-12-31 23:59 UTC),
        resolve_error: None,
        addresses: outcomes
            .into_iter()
            .map(|(ip, outcome)| AddressReport {
                ip: ip.parse::<IpAddr>().unwrap(),
                duration: Duration::from_millis(250),
                outcome,
            })
            .collect(),
        addresses_truncated: 0,
        addresses_disagree: false,
        client_cert: None,
    }
}

/// A report of `target` (`host:port`) whose one address `ip` completed a handshake and
/// served a leaf for `host` expiring at `not_after`.
pub(crate) fn served(target: &str, ip: &str, not_after: OffsetDateTime) -> EndpointReport {
    let host = target.split(':').next().unwrap_or(target);
    report(target, vec![(ip, handshake(host, not_after))])
}

/// Replaces the subject of the leaf `report`'s first address served.
pub(crate) fn set_leaf_subject(report: &mut EndpointReport, subject: &str) {
    if let Ok(handshake) = &mut report.addresses[0].outcome {
        Arc::make_mut(&mut handshake.chain.entries[0].facts).subject = subject.to_owned();
    }
}

/// `count` endpoints `host{index}.test:443`, each served the same healthy leaf.
pub(crate) fn bulk_endpoints(count: usize) -> Vec<EndpointReport> {
    (0..count)
        .map(|index| {
            report(
                &format!("host{index}.test:443"),
                vec![(
                    "127.0.0.1",
                    handshake("bulk.test", datetime!(2026-02-01 00:00 UTC)),
                )],
            )
        })
        .collect()
}

fn snapshot(endpoints: Vec<EndpointReport>) -> Snapshot {
    Snapshot {
        reload: ReloadStatus {
            last_success: Some(datetime!(2025-12-31 00:00 UTC)),
            last_successful: true,
        },
        ..Snapshot::with_endpoints(endpoints)
    }
}

fn assert_lines(body: &str, expected: &[&str]) {
    for line in expected {
        assert!(
            body.lines().any(|actual| actual == *line),
            "missing line {line:?} in:\n{body}"
        );
    }
}

#[test]
fn healthy_endpoint_renders_expiry_chain_and_identity_gauges() {
    let body = render_snapshot(
        &snapshot(vec![served(
            "example.test:443",
            "127.0.0.1",
            datetime!(2026-01-31 12:00 UTC),
        )]),
        NOW,
    )
    .unwrap();
    let labels = r#"target="example.test:443",ip="127.0.0.1""#;
    assert_lines(
        &body,
        &[
            &format!("certinel_endpoint_up{{{labels}}} 1"),
            &format!("certinel_endpoint_cert_not_after_timestamp_seconds{{{labels}}} 1769860800"),
            &format!("certinel_endpoint_cert_not_before_timestamp_seconds{{{labels}}} 1759276800"),
            &format!("certinel_endpoint_cert_expiry_seconds{{{labels}}} 2635200"),
            &format!(
                "certinel_endpoint_chain_earliest_not_after_timestamp_seconds{{{labels}}} 1769860800"
            ),
            &format!(
                "certinel_endpoint_chain_cert_not_after_timestamp_seconds{{{labels},position=\"0\",role=\"leaf\"}} 1769860800"
            ),
            &format!(
                "certinel_endpoint_chain_cert_not_after_timestamp_seconds{{{labels},position=\"1\",role=\"intermediate\"}} 1798761600"
            ),
            &format!("certinel_endpoint_cert_verified{{{labels}}} 1"),
            &format!(
                "certinel_endpoint_cert_info{{{labels},subject=\"CN=example.test\",issuer=\"CN=Test CA\",serial=\"1a2b\",fingerprint_sha256=\"{}\",key_type=\"ecdsa-p256\",dns_names=\"example.test,www.example.test\"}} 1",
                "ab".repeat(32)
            ),
            &format!("certinel_endpoint_tls_version_info{{{labels},version=\"TLSv1.3\"}} 1"),
            &format!("certinel_endpoint_probe_duration_seconds{{{labels}}} 0.25"),
            &format!("certinel_endpoint_last_probe_timestamp_seconds{{{labels}}} 1767225540"),
            r#"certinel_endpoint_addresses_disagree{target="example.test:443"} 0"#,
        ],
    );
    assert!(!body.contains("certinel_endpoint_cert_error_info"));
    assert_lines(
        &body,
        &[
            "certinel_config_last_reload_success_timestamp_seconds 1767139200",
            "certinel_config_last_reload_successful 1",
            &format!(
                "certinel_build_info{{version=\"{}\",commit=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION"),
                crate::COMMIT
            ),
        ],
    );
}

#[test]
fn expiry_seconds_is_negative_once_expired_and_reason_is_labelled() {
    let mut expired = handshake("old.test", datetime!(2025-12-30 00:00 UTC));
    if let Ok(handshake) = &mut expired {
        handshake.verification = Verification {
            verified: false,
            reason: Some(Reason::Expired),
            detail: "expired".to_owned(),
        };
    }
    let body = render_snapshot(
        &snapshot(vec![report("old.test:443", vec![("10.0.0.1", expired)])]),
        NOW,
    )
    .unwrap();
    let labels = r#"target="old.test:443",ip="10.0.0.1""#;
    assert_lines(
        &body,
        &[
            &format!("certinel_endpoint_cert_expiry_seconds{{{labels}}} -172800"),
            &format!("certinel_endpoint_cert_verified{{{labels}}} 0"),
            &format!("certinel_endpoint_cert_error_info{{{labels},reason=\"expired\"}} 1"),
        ],
    );
}

#[test]
fn failed_address_is_down_without_certificate_gauges() {
    let mut endpoint = report(
        "down.test:8443",
        vec![("::1", Err(ProbeError::Connect("refused".to_owned())))],
    );
    endpoint.endpoint.probe.sni = Some("alias.test".to_owned());
    let body = render_snapshot(&snapshot(vec![endpoint]), NOW).unwrap();
    assert_lines(
        &body,
        &[r#"certinel_endpoint_up{target="down.test:8443",ip="::1",sni="alias.test"} 0"#],
    );
    assert!(!body.contains("certinel_endpoint_cert_not_after"));
}

#[test]
fn unresolvable_name_has_one_down_series_with_empty_ip() {
    let mut endpoint = report("gone.test:443", vec![]);
    endpoint.resolve_error = Some(ProbeError::Dns {
        host: "gone.test".to_owned(),
        detail: "NXDOMAIN".to_owned(),
    });
    let body = render_snapshot(&snapshot(vec![endpoint]), NOW).unwrap();
    assert_lines(
        &body,
        &[r#"certinel_endpoint_up{target="gone.test:443",ip=""} 0"#],
    );
}

#[test]
fn extra_labels_of_a_file_sd_target_follow_sni_on_every_endpoint_series() {
    let mut endpoint = served(
        "labelled.test:443",
        "192.0.2.1",
        datetime!(2026-03-01 00:00 UTC),
    );
    endpoint.endpoint.probe.sni = Some("alias.test".to_owned());
    endpoint.endpoint.labels = vec![
        ("env".to_owned(), "prod".to_owned()),
        ("team".to_owned(), "web".to_owned()),
    ];
    let body = render_snapshot(&snapshot(vec![endpoint]), NOW).unwrap();
    assert_lines(
        &body,
        &[
            r#"certinel_endpoint_up{target="labelled.test:443",ip="192.0.2.1",sni="alias.test",env="prod",team="web"} 1"#,
            r#"certinel_endpoint_addresses_disagree{target="labelled.test:443",sni="alias.test",env="prod",team="web"} 0"#,
        ],
    );
    let endpoint_lines: Vec<&str> = body
        .lines()
        .filter(|line| line.contains("target=\"labelled.test:443\""))
        .collect();
    assert!(endpoint_lines.len() > 10, "{body}");
    for line in endpoint_lines {
        assert!(
            line.contains(r#"sni="alias.test",env="prod",team="web""#),
            "{line}"
        );
    }
}

#[test]
fn counters_files_and_client_certificates_are_rendered() {
    let mut endpoint = served(
        "mtls.test:443",
        "127.0.0.1",
        datetime!(2026-02-01 00:00 UTC),
    );
    endpoint.client_cert = Some(facts("client", datetime!(2026-03-01 00:00 UTC)));
    endpoint.addresses_disagree = true;
    let mut snapshot = snapshot(vec![endpoint]);
    snapshot.probe_errors.insert("timeout", 3);
    snapshot.files = vec![
        Arc::new(FileReport {
            revocation: None,
            path: PathBuf::from("/etc/ssl/site.pem"),
            outcome: Ok(chain("site.test", datetime!(2026-01-11 00:00 UTC))),
        }),
        Arc::new(FileReport {
            revocation: None,
            path: PathBuf::from("/etc/ssl/broken.pem"),
            outcome: Err(FileError::Parse {
                path: PathBuf::from("/etc/ssl/broken.pem"),
                detail: "no certificate".to_owned(),
            }),
        }),
    ];
    snapshot
        .file_read_errors
        .insert("/etc/ssl/broken.pem".to_owned(), 2);
    let body = render_snapshot(&snapshot, NOW).unwrap();
    assert_lines(
        &body,
        &[
            r#"certinel_client_cert_not_after_timestamp_seconds{target="mtls.test:443"} 1772323200"#,
            r#"certinel_endpoint_addresses_disagree{target="mtls.test:443"} 1"#,
            r#"certinel_probe_errors_total{reason="timeout"} 3"#,
            "# TYPE certinel_probe_errors_total counter",
            r#"certinel_file_cert_expiry_seconds{path="/etc/ssl/site.pem"} 864000"#,
            r#"certinel_file_cert_not_after_timestamp_seconds{path="/etc/ssl/site.pem"} 1768089600"#,
            r#"certinel_file_read_errors_total{path="/etc/ssl/broken.pem"} 2"#,
        ],
    );
    assert!(!body.contains(r#"path="/etc/ssl/broken.pem"} 1"#));
}

#[test]
fn label_values_are_escaped() {
    let mut endpoint = served("odd.test:443", "127.0.0.1", datetime!(2026-02-01 00:00 UTC));
    set_leaf_subject(&mut endpoint, "CN=a \"quoted\" \\ name\nx");
    let body = render_snapshot(&snapshot(vec![endpoint]), NOW).unwrap();
    assert!(
        body.contains(r#"subject="CN=a \"quoted\" \\ name\nx""#),
        "{body}"
    );
}

#[test]
fn probe_body_has_success_and_only_that_endpoint() {
    let ok = served("one.test:443", "127.0.0.1", datetime!(2026-02-01 00:00 UTC));
    let body = render_probe(&ok, NOW).unwrap();
    assert_lines(&body, &["certinel_probe_success 1"]);
    assert!(!body.contains("certinel_build_info"));
    let failed = report(
        "one.test:443",
        vec![
            (
                "127.0.0.1",
                handshake("one.test", datetime!(2026-02-01 00:00 UTC)),
            ),
            ("127.0.0.2", Err(ProbeError::Handshake("alert".to_owned()))),
        ],
    );
    assert_lines(
        &render_probe(&failed, NOW).unwrap(),
        &["certinel_probe_success 0"],
    );
}

#[test]
fn ten_thousand_endpoints_render_every_series() {
    let snapshot = snapshot(bulk_endpoints(10_000));
    let started = std::time::Instant::now();
    let body = render_snapshot(&snapshot, NOW).unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "rendered 10,000 endpoints ({} bytes) in {elapsed:?}",
        body.len()
    );
    let up_lines = body
        .lines()
        .filter(|line| line.starts_with("certinel_endpoint_up{"))
        .count();
    assert_eq!(up_lines, 10_000);
    assert!(body.contains(r#"certinel_endpoint_up{target="host9999.test:443",ip="127.0.0.1"} 1"#));
}

#[test]
fn the_cluster_families_name_each_live_member_and_only_exist_with_a_cluster() {
    let now = datetime!(2026-01-01 00:00 UTC);
    let alone = render_snapshot(&snapshot(Vec::new()), now).expect("render");
    assert!(!alone.contains("certinel_cluster_"), "{alone}");
    let clustered = Snapshot {
        cluster: Some(crate::metrics::cluster::ClusterSnapshot {
            connected: false,
            members: vec!["web-1".to_owned(), "web-2".to_owned()],
            endpoints_owned: 17,
        }),
        ..snapshot(Vec::new())
    };
    let body = render_snapshot(&clustered, now).expect("render");
    assert_lines(
        &body,
        &[
            "# TYPE certinel_cluster_connected gauge",
            "certinel_cluster_connected 0",
            "# TYPE certinel_cluster_member_up gauge",
            "certinel_cluster_member_up{member=\"web-1\"} 1",
            "certinel_cluster_member_up{member=\"web-2\"} 1",
            "certinel_cluster_endpoints_owned 17",
        ],
    );
}
