//! Tests of the probe: names of versions and suites, error keywords, and the one deadline
//! over setup, resolution and the addresses.

use super::*;

#[test]
fn versions_use_openssl_style_names() {
    assert_eq!(version_name(Some(ProtocolVersion::TLSv1_3)), "TLSv1.3");
    assert_eq!(version_name(Some(ProtocolVersion::TLSv1_2)), "TLSv1.2");
}

#[test]
fn cipher_suites_use_iana_names() {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let names: Vec<String> = provider
        .cipher_suites
        .iter()
        .map(|suite| suite_name(Some(*suite)))
        .collect();
    assert!(
        names.contains(&"TLS_AES_128_GCM_SHA256".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_string()),
        "{names:?}"
    );
    assert!(
        names.iter().all(|name| name.starts_with("TLS_")),
        "{names:?}"
    );
}

#[test]
fn every_probe_error_has_a_distinct_keyword() {
    let errors = [
        ProbeError::Dns {
            host: "h".into(),
            detail: "d".into(),
        },
        ProbeError::Connect("c".into()),
        ProbeError::Timeout {
            stage: "connect",
            after: Duration::from_secs(1),
        },
        ProbeError::StartTls("s".into()),
        ProbeError::Handshake("h".into()),
        ProbeError::Config("c".into()),
        ProbeError::Internal("i".into()),
    ];
    let mut keywords: Vec<&str> = errors.iter().map(ProbeError::keyword).collect();
    keywords.sort_unstable();
    keywords.dedup();
    assert_eq!(keywords.len(), errors.len());
}

#[tokio::test(start_paused = true)]
async fn a_stalled_resolver_counts_against_the_probe_deadline() {
    let target = crate::config::model::Target {
        host: crate::config::model::Host::Name("slow.test".into()),
        port: 443,
    };
    let endpoint = Endpoint::new(target, Duration::from_secs(3));
    let ctx = ProbeContext::new(
        crate::scan::resolve::Resolver::stalling(),
        crate::scan::trust::TrustCache::empty(),
        crate::scan::budget::ConnectionBudget::new(8),
    );
    let started = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(60), probe_endpoint(&endpoint, &ctx))
        .await
        .expect("the probe outlived its deadline");
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    let error = report.resolve_error.expect("no resolve error");
    assert_eq!(error.keyword(), "timeout");
    assert_eq!(error.to_string(), "timed out after 3s during resolve");
}

/// Makes a named pipe at `path`: opening it for reading blocks until a writer comes.
fn fifo(path: &std::path::Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_bits_truncate(0o600),
        0,
    )
    .unwrap();
}

#[tokio::test]
async fn trust_roots_that_never_load_count_against_the_probe_deadline() {
    let temp = tempfile::tempdir().unwrap();
    let ca_file = temp.path().join("ca.pem");
    fifo(&ca_file);
    let target = crate::config::model::Target {
        host: crate::config::model::Host::Name("stuck.test".into()),
        port: 443,
    };
    let mut endpoint = Endpoint::new(target, Duration::from_millis(300));
    endpoint.probe.ca_file = Some(ca_file.clone());
    let ctx = ProbeContext::new(
        crate::scan::resolve::Resolver::stalling(),
        crate::scan::trust::TrustCache::empty(),
        crate::scan::budget::ConnectionBudget::new(8),
    );
    let report = tokio::time::timeout(Duration::from_secs(10), probe_endpoint(&endpoint, &ctx))
        .await
        .expect("loading the trust roots outlived the probe deadline");
    // A writer lets the blocked loader finish, so the runtime can shut down.
    drop(
        std::fs::OpenOptions::new()
            .write(true)
            .open(&ca_file)
            .unwrap(),
    );
    let error = report.resolve_error.expect("no error");
    assert_eq!(error.keyword(), "timeout");
    assert_eq!(error.to_string(), "timed out after 300ms during setup");
}
