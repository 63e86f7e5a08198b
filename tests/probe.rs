//! Probing live TLS endpoints end to end against real loopback servers: what the probe
//! reports (reason keyword, leaf notAfter, earliest notAfter, version, errors) per case.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certinel::config::model::{
    ClientAuth, Endpoint, Host, IpFamily, ResolveMode, StartTls, Target,
};
use certinel::scan::inspect::KeyType;
use certinel::scan::probe::{EndpointReport, Handshake, ProbeContext, ProbeError, probe_endpoint};
use certinel::scan::resolve::Resolver;
use certinel::scan::sweep::sweep_endpoints;
use certinel::scan::trust::TrustCache;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tempfile::TempDir;
use time::OffsetDateTime;

use crate::common::pki::{Ca, KeyKind, Leaf, LeafSpec, Validity, write_key, write_pem};
use crate::common::tls_server::{
    ServerHandle, ServerOptions, bind, bind_pair, spawn_closing, spawn_garbage, spawn_silent,
    spawn_tls,
};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const NAME: &str = "service.test";

/// A root and an intermediate, with the root written as the endpoints' `ca_file`.
struct TestPki {
    dir: TempDir,
    root: Ca,
    intermediate: Ca,
    ca_file: PathBuf,
}

impl TestPki {
    fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Ca::root("Test Root", Validity::days(-10, 3650));
        let intermediate = root.intermediate("Test Intermediate", Validity::days(-5, 1000));
        let ca_file = write_pem(dir.path(), "root.pem", &root.pem);
        TestPki {
            dir,
            root,
            intermediate,
            ca_file,
        }
    }

    /// A leaf for [`NAME`] issued by the intermediate.
    fn leaf(&self, validity: Validity) -> Leaf {
        self.intermediate
            .leaf(&LeafSpec::new(&[NAME]).validity(validity))
    }

    /// The usual served chain: leaf, then intermediate.
    fn chain_with(&self, leaf: &Leaf) -> Vec<CertificateDer<'static>> {
        vec![leaf.cert.clone(), self.intermediate.cert.clone()]
    }
}

/// An endpoint at `addr`, named [`NAME`], trusting only `ca_file`, with a 5 s deadline.
fn endpoint_at(addr: SocketAddr, ca_file: &Path) -> Endpoint {
    let target = Target {
        host: Host::Ip(addr.ip()),
        port: addr.port(),
    };
    let mut endpoint = Endpoint::new(target, Duration::from_secs(5));
    endpoint.sni = Some(NAME.to_string());
    endpoint.ca_file = Some(ca_file.to_path_buf());
    endpoint
}

fn context() -> ProbeContext {
    ProbeContext::new(Resolver::system(), TrustCache::empty())
}

async fn serve(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> ServerHandle {
    spawn_tls(
        bind(LOCALHOST).await,
        ServerOptions::new(chain, key).acceptor(),
    )
}

async fn probe(endpoint: &Endpoint) -> EndpointReport {
    probe_endpoint(endpoint, &context()).await
}

/// The handshake of a report that probed exactly one address successfully.
fn only_handshake(report: &EndpointReport) -> &Handshake {
    assert_eq!(report.resolve_error, None);
    assert_eq!(report.addresses.len(), 1, "{report:#?}");
    match &report.addresses[0].outcome {
        Ok(handshake) => handshake,
        Err(error) => panic!("expected a handshake, got: {error}"),
    }
}

/// The error of a report that probed exactly one address and failed.
fn only_error(report: &EndpointReport) -> &ProbeError {
    assert_eq!(report.resolve_error, None);
    assert_eq!(report.addresses.len(), 1, "{report:#?}");
    match &report.addresses[0].outcome {
        Ok(handshake) => panic!("expected an error, got a handshake: {handshake:#?}"),
        Err(error) => error,
    }
}

/// What a handshake's chain verdict and expiry facts must be.
struct Expect {
    verified: bool,
    reason: Option<&'static str>,
    leaf_not_after: OffsetDateTime,
    earliest_not_after: OffsetDateTime,
}

fn check(handshake: &Handshake, expect: Expect) {
    let verification = &handshake.verification;
    assert_eq!(
        (
            verification.verified,
            verification.reason.map(|reason| reason.keyword())
        ),
        (expect.verified, expect.reason),
        "verification detail: {}",
        verification.detail
    );
    assert_eq!(handshake.chain.leaf().not_after, expect.leaf_not_after);
    assert_eq!(
        handshake.chain.earliest_not_after,
        expect.earliest_not_after
    );
}

#[tokio::test]
async fn valid_chain_verifies_and_reports_leaf_expiry_over_tls13() {
    let pki = TestPki::new();
    let leaf = pki.leaf(Validity::current());
    let server = serve(pki.chain_with(&leaf), leaf.key.clone_key()).await;

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    let handshake = only_handshake(&report);
    check(
        handshake,
        Expect {
            verified: true,
            reason: None,
            leaf_not_after: leaf.not_after,
            earliest_not_after: leaf.not_after,
        },
    );
    assert_eq!(handshake.tls_version, "TLSv1.3");
    assert!(
        handshake.cipher_suite.starts_with("TLS_"),
        "{}",
        handshake.cipher_suite
    );
    assert_eq!(handshake.chain.entries.len(), 2);
    assert!(!report.addresses_disagree);
    assert_eq!(report.client_cert, None);
}

#[tokio::test]
async fn expired_leaf_is_reported_expired_with_its_past_not_after() {
    let pki = TestPki::new();
    let leaf = pki.leaf(Validity::expired());
    let server = serve(pki.chain_with(&leaf), leaf.key.clone_key()).await;

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    check(
        only_handshake(&report),
        Expect {
            verified: false,
            reason: Some("expired"),
            leaf_not_after: leaf.not_after,
            earliest_not_after: leaf.not_after,
        },
    );
}

#[tokio::test]
async fn leaf_valid_only_in_the_future_is_reported_not_yet_valid() {
    let pki = TestPki::new();
    let leaf = pki.leaf(Validity::not_yet_valid());
    let server = serve(pki.chain_with(&leaf), leaf.key.clone_key()).await;

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    check(
        only_handshake(&report),
        Expect {
            verified: false,
            reason: Some("not_yet_valid"),
            leaf_not_after: leaf.not_after,
            earliest_not_after: leaf.not_after,
        },
    );
}

#[tokio::test]
async fn leaf_for_another_name_is_a_hostname_mismatch() {
    let pki = TestPki::new();
    let leaf = pki.leaf(Validity::current());
    let server = serve(pki.chain_with(&leaf), leaf.key.clone_key()).await;
    let mut endpoint = endpoint_at(server.addr, &pki.ca_file);
    endpoint.sni = Some("other.test".to_string());

    let report = probe(&endpoint).await;

    check(
        only_handshake(&report),
        Expect {
            verified: false,
            reason: Some("hostname_mismatch"),
            leaf_not_after: leaf.not_after,
            earliest_not_after: leaf.not_after,
        },
    );
}

#[tokio::test]
async fn self_signed_leaf_is_reported_self_signed() {
    let pki = TestPki::new();
    let leaf = Leaf::self_signed(&LeafSpec::new(&[NAME]));
    let server = serve(vec![leaf.cert.clone()], leaf.key.clone_key()).await;

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    check(
        only_handshake(&report),
        Expect {
            verified: false,
            reason: Some("self_signed"),
            leaf_not_after: leaf.not_after,
            earliest_not_after: leaf.not_after,
        },
    );
}

#[tokio::test]
async fn leaf_served_without_its_intermediate_is_missing_intermediate() {
    let pki = TestPki::new();
    let leaf = pki.leaf(Validity::current());
    let server = serve(vec![leaf.cert.clone()], leaf.key.clone_key()).await;

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    check(
        only_handshake(&report),
        Expect {
            verified: false,
            reason: Some("missing_intermediate"),
            leaf_not_after: leaf.not_after,
            earliest_not_after: leaf.not_after,
        },
    );
}

#[tokio::test]
async fn intermediate_expiring_before_the_leaf_sets_the_earliest_not_after() {
    let pki = TestPki::new();
    let short_intermediate = pki
        .root
        .intermediate("Short Intermediate", Validity::current_for_days(30));
    let leaf = short_intermediate.leaf(&LeafSpec::new(&[NAME]).validity(Validity::current()));
    let chain = vec![leaf.cert.clone(), short_intermediate.cert.clone()];
    let server = serve(chain, leaf.key.clone_key()).await;

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    assert!(short_intermediate.not_after < leaf.not_after);
    check(
        only_handshake(&report),
        Expect {
            verified: true,
            reason: None,
            leaf_not_after: leaf.not_after,
            earliest_not_after: short_intermediate.not_after,
        },
    );
}

#[tokio::test]
async fn intermediates_out_of_order_still_verify_with_a_wrong_order_lint() {
    let pki = TestPki::new();
    // root -> upper -> lower -> leaf, served as [leaf, upper, lower].
    let upper = pki.root.intermediate("Upper", Validity::days(-5, 900));
    let lower = upper.intermediate("Lower", Validity::days(-5, 800));
    let leaf = lower.leaf(&LeafSpec::new(&[NAME]));
    let chain = vec![leaf.cert.clone(), upper.cert.clone(), lower.cert.clone()];
    let server = serve(chain, leaf.key.clone_key()).await;

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    let handshake = only_handshake(&report);
    check(
        handshake,
        Expect {
            verified: true,
            reason: Some("wrong_chain_order"),
            leaf_not_after: leaf.not_after,
            earliest_not_after: leaf.not_after,
        },
    );
    assert!(!handshake.chain.in_order);
}

#[tokio::test]
async fn tls12_only_server_reports_tls12_and_an_ecdhe_suite() {
    let pki = TestPki::new();
    let leaf = pki.leaf(Validity::current());
    let options = ServerOptions::new(pki.chain_with(&leaf), leaf.key.clone_key()).tls12_only();
    let server = spawn_tls(bind(LOCALHOST).await, options.acceptor());

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    let handshake = only_handshake(&report);
    check(
        handshake,
        Expect {
            verified: true,
            reason: None,
            leaf_not_after: leaf.not_after,
            earliest_not_after: leaf.not_after,
        },
    );
    assert_eq!(handshake.tls_version, "TLSv1.2");
    assert!(
        handshake.cipher_suite.starts_with("TLS_ECDHE_ECDSA_WITH_"),
        "{}",
        handshake.cipher_suite
    );
}

#[tokio::test]
async fn leaves_of_every_key_type_are_probed_and_their_key_reported() {
    let pki = TestPki::new();
    let cases = [
        (KeyKind::EcdsaP256, KeyType::EcdsaP256),
        (KeyKind::EcdsaP384, KeyType::EcdsaP384),
        (KeyKind::Ed25519, KeyType::Ed25519),
        (KeyKind::Rsa2048, KeyType::Rsa(2048)),
    ];
    for (kind, expected_key) in cases {
        let leaf = pki.intermediate.leaf(&LeafSpec::new(&[NAME]).key(kind));
        let server = serve(pki.chain_with(&leaf), leaf.key.clone_key()).await;

        let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

        let handshake = only_handshake(&report);
        check(
            handshake,
            Expect {
                verified: true,
                reason: None,
                leaf_not_after: leaf.not_after,
                earliest_not_after: leaf.not_after,
            },
        );
        assert_eq!(handshake.chain.leaf().key, expected_key, "{kind:?}");
    }
}

/// A server that demands a client certificate from `client_ca`, and that CA's client leaf
/// written to files.
struct MutualTls {
    server: ServerHandle,
    server_leaf: Leaf,
    client_leaf: Leaf,
    client_auth: ClientAuth,
}

async fn mutual_tls_server(pki: &TestPki) -> MutualTls {
    let client_ca = Ca::root("Client CA", Validity::days(-10, 365));
    let client_leaf = client_ca.leaf(
        &LeafSpec::new(&["probe-client.test"])
            .validity(Validity::current_for_days(45))
            .client(),
    );
    let client_auth = ClientAuth {
        cert: write_pem(pki.dir.path(), "client.pem", &client_leaf.pem),
        key: write_key(pki.dir.path(), "client.key", &client_leaf.key_pem),
    };
    let server_leaf = pki.leaf(Validity::current());
    let options = ServerOptions::new(pki.chain_with(&server_leaf), server_leaf.key.clone_key())
        .require_client_cert(client_ca.cert.clone());
    let server = spawn_tls(bind(LOCALHOST).await, options.acceptor());
    MutualTls {
        server,
        server_leaf,
        client_leaf,
        client_auth,
    }
}

#[tokio::test]
async fn mutual_tls_with_a_client_certificate_succeeds_and_reports_its_facts() {
    let pki = TestPki::new();
    let mtls = mutual_tls_server(&pki).await;
    let mut endpoint = endpoint_at(mtls.server.addr, &pki.ca_file);
    endpoint.client_auth = Some(mtls.client_auth.clone());

    let report = probe(&endpoint).await;

    check(
        only_handshake(&report),
        Expect {
            verified: true,
            reason: None,
            leaf_not_after: mtls.server_leaf.not_after,
            earliest_not_after: mtls.server_leaf.not_after,
        },
    );
    let client_cert = report.client_cert.as_ref().expect("client cert facts");
    assert_eq!(client_cert.not_after, mtls.client_leaf.not_after);
    assert_eq!(client_cert.dns_names, vec!["probe-client.test".to_string()]);
}

#[tokio::test]
async fn mutual_tls_without_a_client_certificate_is_a_handshake_error() {
    let pki = TestPki::new();
    let mtls = mutual_tls_server(&pki).await;

    let report = probe(&endpoint_at(mtls.server.addr, &pki.ca_file)).await;

    let error = only_error(&report);
    assert_eq!(error.keyword(), "handshake", "{error}");
    // TLS 1.3: the refusal arrives after the client finished its side of the handshake.
    assert!(
        error.to_string().contains("refused client authentication"),
        "{error}"
    );
    assert_eq!(report.client_cert, None);
}

#[tokio::test]
async fn mutual_tls_over_tls12_without_a_client_certificate_is_a_handshake_error() {
    let pki = TestPki::new();
    let client_ca = Ca::root("Client CA", Validity::current());
    let leaf = pki.leaf(Validity::current());
    let options = ServerOptions::new(pki.chain_with(&leaf), leaf.key.clone_key())
        .tls12_only()
        .require_client_cert(client_ca.cert.clone());
    let server = spawn_tls(bind(LOCALHOST).await, options.acceptor());

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    assert_eq!(only_error(&report).keyword(), "handshake");
}

#[tokio::test]
async fn unreadable_client_key_is_a_config_error_before_any_connection() {
    let pki = TestPki::new();
    let mtls = mutual_tls_server(&pki).await;
    let mut endpoint = endpoint_at(mtls.server.addr, &pki.ca_file);
    endpoint.client_auth = Some(ClientAuth {
        cert: mtls.client_auth.cert.clone(),
        key: pki.dir.path().join("no-such.key"),
    });

    let report = probe(&endpoint).await;

    let error = report.resolve_error.as_ref().expect("endpoint-level error");
    assert_eq!(error.keyword(), "config", "{error}");
    assert!(report.addresses.is_empty());
}

#[tokio::test]
async fn missing_ca_file_is_a_config_error_not_a_panic() {
    let pki = TestPki::new();
    let leaf = pki.leaf(Validity::current());
    let server = serve(pki.chain_with(&leaf), leaf.key.clone_key()).await;
    let missing = pki.dir.path().join("no-such-ca.pem");

    let report = probe(&endpoint_at(server.addr, &missing)).await;

    let error = report.resolve_error.as_ref().expect("endpoint-level error");
    assert_eq!(error.keyword(), "config", "{error}");
    assert!(report.addresses.is_empty());
}

#[tokio::test]
async fn silent_server_times_out_during_the_handshake() {
    let pki = TestPki::new();
    let server = spawn_silent(bind(LOCALHOST).await);
    let mut endpoint = endpoint_at(server.addr, &pki.ca_file);
    endpoint.timeout = Duration::from_millis(300);

    let report = probe(&endpoint).await;

    assert_eq!(
        only_error(&report),
        &ProbeError::Timeout {
            stage: "handshake",
            after: Duration::from_millis(300)
        }
    );
    assert!(report.addresses[0].duration >= Duration::from_millis(300));
}

#[tokio::test]
async fn silent_server_behind_starttls_times_out_during_starttls() {
    let pki = TestPki::new();
    let server = spawn_silent(bind(LOCALHOST).await);
    let mut endpoint = endpoint_at(server.addr, &pki.ca_file);
    endpoint.starttls = Some(StartTls::Smtp);
    endpoint.timeout = Duration::from_millis(300);

    let report = probe(&endpoint).await;

    assert_eq!(
        only_error(&report),
        &ProbeError::Timeout {
            stage: "starttls",
            after: Duration::from_millis(300)
        }
    );
}

#[tokio::test]
async fn server_sending_garbage_is_a_handshake_error() {
    let pki = TestPki::new();
    let server = spawn_garbage(bind(LOCALHOST).await);

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    assert_eq!(only_error(&report).keyword(), "handshake");
}

#[tokio::test]
async fn server_closing_at_once_is_a_handshake_error() {
    let pki = TestPki::new();
    let server = spawn_closing(bind(LOCALHOST).await);

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    assert_eq!(only_error(&report).keyword(), "handshake");
}

#[tokio::test]
async fn closed_port_is_a_connect_error() {
    let pki = TestPki::new();
    let listener = bind(LOCALHOST).await;
    let addr = listener.local_addr().expect("bound address");
    drop(listener);

    let report = probe(&endpoint_at(addr, &pki.ca_file)).await;

    assert_eq!(only_error(&report).keyword(), "connect");
}

#[tokio::test]
async fn unresolvable_name_is_a_dns_error_with_no_address_probed() {
    let pki = TestPki::new();
    let target = Target {
        host: Host::Name("nonexistent.invalid".to_string()),
        port: 443,
    };
    let mut endpoint = Endpoint::new(target, Duration::from_secs(2));
    endpoint.ca_file = Some(pki.ca_file.clone());

    let report = probe(&endpoint).await;

    let error = report.resolve_error.as_ref().expect("resolve error");
    assert_eq!(error.keyword(), "dns", "{error}");
    assert!(report.addresses.is_empty());
}

#[tokio::test]
async fn name_on_two_addresses_serving_different_leaves_is_reported_as_disagreeing() {
    let pki = TestPki::new();
    let first_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let second_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let (first_listener, second_listener) = bind_pair(first_ip, second_ip).await;
    let port = first_listener.local_addr().expect("bound address").port();
    let first_leaf = pki.leaf(Validity::current_for_days(60));
    let second_leaf = pki.leaf(Validity::current_for_days(20));
    let _first = spawn_tls(
        first_listener,
        ServerOptions::new(pki.chain_with(&first_leaf), first_leaf.key.clone_key()).acceptor(),
    );
    let _second = spawn_tls(
        second_listener,
        ServerOptions::new(pki.chain_with(&second_leaf), second_leaf.key.clone_key()).acceptor(),
    );
    let hosts = write_pem(
        pki.dir.path(),
        "hosts",
        &format!("# test hosts file\n{first_ip} {NAME}\n{second_ip} {NAME}\n"),
    );
    let ctx = ProbeContext::new(
        Resolver::with_hosts_file(&hosts).expect("hosts file"),
        TrustCache::empty(),
    );
    let target = Target {
        host: Host::Name(NAME.to_string()),
        port,
    };
    let mut endpoint = Endpoint::new(target, Duration::from_secs(5));
    endpoint.ca_file = Some(pki.ca_file.clone());

    let report = probe_endpoint(&endpoint, &ctx).await;

    let ips: Vec<IpAddr> = report.addresses.iter().map(|address| address.ip).collect();
    assert_eq!(ips, vec![first_ip, second_ip]);
    let handshakes: Vec<&Handshake> = report
        .addresses
        .iter()
        .map(|address| address.outcome.as_ref().expect("handshake"))
        .collect();
    for (handshake, leaf) in handshakes.iter().zip([&first_leaf, &second_leaf]) {
        check(
            handshake,
            Expect {
                verified: true,
                reason: None,
                leaf_not_after: leaf.not_after,
                earliest_not_after: leaf.not_after,
            },
        );
    }
    assert_ne!(
        handshakes[0].chain.leaf().fingerprint_sha256,
        handshakes[1].chain.leaf().fingerprint_sha256
    );
    assert!(report.addresses_disagree);

    endpoint.resolve = ResolveMode::First;
    let first_only = probe_endpoint(&endpoint, &ctx).await;
    assert_eq!(first_only.addresses.len(), 1);
    assert!(!first_only.addresses_disagree);
}

#[tokio::test]
async fn ipv6_loopback_literal_is_probed_without_sni_and_verified_by_ip() {
    let pki = TestPki::new();
    let ipv6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    // This machine has ::1 on lo: failing to bind it is a broken environment, not a skip.
    let listener = bind(ipv6).await;
    let leaf = pki.intermediate.leaf(&LeafSpec::new(&["::1"]));
    let server = spawn_tls(
        listener,
        ServerOptions::new(pki.chain_with(&leaf), leaf.key.clone_key()).acceptor(),
    );
    let mut endpoint = endpoint_at(server.addr, &pki.ca_file);
    endpoint.sni = None;
    endpoint.ip_family = IpFamily::Ipv6;

    let report = probe(&endpoint).await;

    assert_eq!(report.addresses[0].ip, ipv6);
    check(
        only_handshake(&report),
        Expect {
            verified: true,
            reason: None,
            leaf_not_after: leaf.not_after,
            earliest_not_after: leaf.not_after,
        },
    );
}

#[tokio::test]
async fn sweep_of_200_endpoints_with_concurrency_16_returns_every_result_in_order() {
    let pki = TestPki::new();
    let leaf = pki.intermediate.leaf(&LeafSpec::new(&["*.sweep.test"]));
    let server = serve(pki.chain_with(&leaf), leaf.key.clone_key()).await;
    let closed = {
        let listener = bind(LOCALHOST).await;
        listener.local_addr().expect("bound address")
    };
    let endpoints: Vec<Endpoint> = (0..200)
        .map(|index| {
            // Every tenth endpoint points at a closed port: failures must not disturb order.
            let addr = if index % 10 == 9 { closed } else { server.addr };
            let mut endpoint = endpoint_at(addr, &pki.ca_file);
            endpoint.sni = Some(format!("host{index}.sweep.test"));
            endpoint
        })
        .collect();
    let progress = Mutex::new(Vec::new());

    let reports = sweep_endpoints(&endpoints, Arc::new(context()), 16, &|done, total| {
        progress.lock().expect("progress lock").push((done, total))
    })
    .await;

    assert_eq!(reports.len(), 200);
    for (index, (report, endpoint)) in reports.iter().zip(&endpoints).enumerate() {
        assert_eq!(&report.endpoint, endpoint, "report {index} out of place");
        if index % 10 == 9 {
            assert_eq!(only_error(report).keyword(), "connect");
        } else {
            check(
                only_handshake(report),
                Expect {
                    verified: true,
                    reason: None,
                    leaf_not_after: leaf.not_after,
                    earliest_not_after: leaf.not_after,
                },
            );
        }
    }
    let progress = progress.into_inner().expect("progress lock");
    assert_eq!(progress.len(), 200);
    assert_eq!(progress.last(), Some(&(200, 200)));
}
