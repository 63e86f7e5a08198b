//! The CRL watch end to end: a test CA whose CRL an HTTP server on 127.0.0.1 serves, TLS
//! endpoints presenting leaves whose CRL Distribution Point names it, and scheduled probes
//! that fetch, verify and look up the serial.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use certinel::config::model::{Endpoint, Host, Target};
use certinel::metrics::render::{Snapshot, render_snapshot, render_targets};
use certinel::report::{self, Status, Thresholds};
use certinel::scan::budget::ConnectionBudget;
use certinel::scan::crl::fetch::CrlFetcher;
use certinel::scan::crl::verdict::{CrlCheckError, CrlVerdict};
use certinel::scan::crl::watch::{RevocationError, RevocationStatus, check_files};
use certinel::scan::files::inspect_file;
use certinel::scan::probe::{EndpointReport, ProbeContext, probe_endpoint};
use certinel::scan::resolve::Resolver;
use certinel::scan::sweep::sweep_endpoints;
use certinel::scan::trust::TrustCache;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

use crate::common::crl::{CrlCa, CrlServer, NAME, pem};
use crate::common::service::promtool_check;
use crate::common::tls_server::{ServerHandle, ServerOptions, bind, spawn_tls};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn tls_endpoint(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    interval: Duration,
) -> (ServerHandle, Endpoint) {
    let server = spawn_tls(
        bind(LOCALHOST).await,
        ServerOptions::new(chain, key).acceptor(),
    );
    let endpoint = endpoint_at(server.addr, interval);
    (server, endpoint)
}

fn endpoint_at(addr: SocketAddr, interval: Duration) -> Endpoint {
    let target = Target {
        host: Host::Ip(addr.ip()),
        port: addr.port(),
    };
    let mut endpoint = Endpoint::new(target, Duration::from_secs(5));
    endpoint.probe.sni = Some(NAME.to_owned());
    endpoint.interval = interval;
    endpoint
}

fn context_with_crl() -> ProbeContext {
    let budget = ConnectionBudget::new(256);
    ProbeContext::new(Resolver::system(), TrustCache::empty(), budget.clone())
        .with_crl(Arc::new(CrlFetcher::new(Resolver::system(), budget)))
}

fn revocation(report: &EndpointReport) -> RevocationStatus {
    assert_eq!(report.addresses.len(), 1, "{report:#?}");
    let handshake = report.addresses[0].outcome.as_ref().expect("a handshake");
    handshake.revocation.clone().expect("a revocation status")
}

/// A CA and a CRL server publishing the CA's CRL that lists `revoked`.
async fn ca_publishing(revoked: &[u64]) -> (CrlCa, CrlServer) {
    let ca = CrlCa::new();
    let crl_server = CrlServer::start().await;
    crl_server.publish(ca.crl(revoked));
    (ca, crl_server)
}

#[tokio::test]
async fn a_certificate_revoked_after_the_first_scan_is_revoked_at_the_next() {
    let (ca, crl_server) = ca_publishing(&[99]).await;
    let (leaf, key) = ca.leaf(0x1234, &crl_server.url);
    // Every probe may fetch again: the interval is over as soon as it starts.
    let (_server, endpoint) = tls_endpoint(vec![leaf, ca.cert.clone()], key, Duration::ZERO).await;
    let context = context_with_crl();

    let first = probe_endpoint(&endpoint, &context).await;
    assert!(
        matches!(
            revocation(&first).outcome,
            Ok(CrlVerdict::NotRevoked {
                next_update: Some(_)
            })
        ),
        "{:?}",
        revocation(&first)
    );

    crl_server.publish(ca.crl(&[99, 0x1234]));
    let second = probe_endpoint(&endpoint, &context).await;

    let status = revocation(&second);
    assert_eq!(status.url, crl_server.url);
    assert!(
        matches!(
            status.outcome,
            Ok(CrlVerdict::Revoked {
                reason_code: Some(1),
                ..
            })
        ),
        "{status:?}"
    );
    let now = OffsetDateTime::now_utc();
    let rows = report::endpoint_rows(&second, Thresholds::default(), now);
    assert_eq!(rows[0].status, Status::Critical);
    assert_eq!(rows[0].reason, "revoked");
    assert!(
        rows[0].detail.contains("keyCompromise"),
        "{}",
        rows[0].detail
    );
    let snapshot = Snapshot {
        crl: context.crl.as_ref().expect("CRL checking on").summary(),
        ..Snapshot::with_endpoints(vec![second])
    };
    let page = render_snapshot(&snapshot, now).unwrap();
    let next_update = format!(
        "certinel_crl_next_update_timestamp_seconds{{url=\"{}\"}}",
        crl_server.url
    );
    assert!(page.contains(&next_update), "{page}");
    assert!(
        page.lines().any(|line| line.starts_with("certinel_endpoint_cert_revoked{")
            && line.ends_with(" 1")),
        "{page}"
    );
    assert!(page.contains("reason_code=\"1\""), "{page}");
    let (code, problems) = promtool_check(&page);
    assert_eq!(code, 0, "promtool check metrics: {problems}\n{page}");
    assert_eq!(crl_server.requests(), 2);
}

#[tokio::test]
async fn a_crl_with_a_bad_signature_is_an_error_not_a_verdict() {
    let ca = CrlCa::new();
    // Same name as the CA, another key: it lists the leaf, but cannot speak for the CA.
    let impostor = CrlCa::new();
    let crl_server = CrlServer::start().await;
    crl_server.publish(impostor.crl(&[0x77]));
    let (leaf, key) = ca.leaf(0x77, &crl_server.url);
    let (_server, endpoint) =
        tls_endpoint(vec![leaf, ca.cert.clone()], key, Duration::from_secs(3600)).await;

    let report = probe_endpoint(&endpoint, &context_with_crl()).await;

    assert_eq!(
        revocation(&report).outcome,
        Err(RevocationError::Check(CrlCheckError::BadSignature))
    );
    let now = OffsetDateTime::now_utc();
    let rows = report::endpoint_rows(&report, Thresholds::default(), now);
    assert_ne!(rows[0].reason, "revoked");
    let page = render_targets(&[report], &[], now).unwrap();
    assert!(!page.contains("certinel_endpoint_cert_revoked{"), "{page}");
    assert!(
        page.contains("certinel_endpoint_crl_error_info{")
            && page.contains("reason=\"bad_signature\""),
        "{page}"
    );
}

#[tokio::test]
async fn many_endpoints_sharing_a_crl_fetch_it_once_per_interval() {
    let (ca, crl_server) = ca_publishing(&[]).await;
    let mut servers = Vec::new();
    let mut endpoints = Vec::new();
    for serial in 1..=12u64 {
        let (leaf, key) = ca.leaf(serial, &crl_server.url);
        let (server, endpoint) =
            tls_endpoint(vec![leaf, ca.cert.clone()], key, Duration::from_secs(3600)).await;
        servers.push(server);
        endpoints.push(endpoint);
    }
    let context = Arc::new(context_with_crl());

    let reports = sweep_endpoints(&endpoints, context.clone(), 12, &|_, _| {}).await;
    let again = sweep_endpoints(&endpoints, context, 12, &|_, _| {}).await;

    for report in reports.iter().chain(&again) {
        assert!(
            matches!(
                revocation(report).outcome,
                Ok(CrlVerdict::NotRevoked { .. })
            ),
            "{report:#?}"
        );
    }
    assert_eq!(crl_server.requests(), 1);
}

#[tokio::test]
async fn without_crl_checking_nothing_is_fetched() {
    let (ca, crl_server) = ca_publishing(&[5]).await;
    let (leaf, key) = ca.leaf(5, &crl_server.url);
    let (_server, endpoint) = tls_endpoint(vec![leaf, ca.cert.clone()], key, Duration::ZERO).await;
    let context = ProbeContext::new(
        Resolver::system(),
        TrustCache::empty(),
        ConnectionBudget::new(16),
    );

    let report = probe_endpoint(&endpoint, &context).await;

    let handshake = report.addresses[0].outcome.as_ref().expect("a handshake");
    assert_eq!(handshake.revocation, None);
    assert_eq!(crl_server.requests(), 0);
}

#[tokio::test]
async fn a_revoked_certificate_file_with_its_issuer_is_revoked_and_a_bare_leaf_is_not_checked() {
    let (ca, crl_server) = ca_publishing(&[0x4242]).await;
    let (leaf, _key) = ca.leaf(0x4242, &crl_server.url);
    let dir = tempfile::tempdir().unwrap();
    let with_issuer = dir.path().join("fullchain.pem");
    std::fs::write(
        &with_issuer,
        pem("CERTIFICATE", &leaf) + &pem("CERTIFICATE", &ca.cert),
    )
    .unwrap();
    let bare = dir.path().join("cert.pem");
    std::fs::write(&bare, pem("CERTIFICATE", &leaf)).unwrap();
    let fetcher = CrlFetcher::new(Resolver::system(), ConnectionBudget::new(16));
    let mut reports = vec![inspect_file(&with_issuer), inspect_file(&bare)];
    let now = OffsetDateTime::now_utc();

    check_files(&fetcher, &mut reports, now, Duration::from_secs(3600)).await;

    assert!(
        matches!(
            reports[0].revocation.as_ref().map(|status| &status.outcome),
            Some(Ok(CrlVerdict::Revoked { .. }))
        ),
        "{:?}",
        reports[0].revocation
    );
    assert_eq!(reports[1].revocation, None);
    let row = report::file_row(&reports[0], Thresholds::default(), now);
    assert_eq!((row.status, row.reason), (Status::Critical, "revoked"));
    let page = render_targets(&[], &reports, now).unwrap();
    assert!(
        page.lines()
            .any(|line| line.starts_with("certinel_file_cert_revoked{")
                && line.contains("fullchain.pem")
                && line.ends_with(" 1")),
        "{page}"
    );
    assert_eq!(crl_server.requests(), 1);

    // `certinel check` on the same file: CRITICAL, exit code 2, with the reason code.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_certinel"))
        .args(["check", "--output", "json"])
        .arg(&with_issuer)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("\"revoked\""), "{stdout}");
    assert!(stdout.contains("keyCompromise"), "{stdout}");
}
