//! Probes that produce no handshake: each failure carries its stage keyword.

use super::*;

#[tokio::test]
async fn missing_ca_file_is_a_config_error_not_a_panic() {
    let pki = test_pki();
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
    let pki = test_pki();
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
    // The deadline also covers the setup before the address (reading `ca_file` on a
    // blocking thread), which takes a few milliseconds on a loaded machine.
    assert!(report.addresses[0].duration >= Duration::from_millis(250));
}

#[tokio::test]
async fn silent_server_behind_starttls_times_out_during_starttls() {
    let pki = test_pki();
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
    let pki = test_pki();
    let server = spawn_garbage(bind(LOCALHOST).await);

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    assert_eq!(only_error(&report).keyword(), "handshake");
}

#[tokio::test]
async fn server_closing_at_once_is_a_handshake_error() {
    let pki = test_pki();
    let server = spawn_closing(bind(LOCALHOST).await);

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    assert_eq!(only_error(&report).keyword(), "handshake");
}

#[tokio::test]
async fn closed_port_is_a_connect_error() {
    let pki = test_pki();
    let listener = bind(LOCALHOST).await;
    let addr = listener.local_addr().expect("bound address");
    drop(listener);

    let report = probe(&endpoint_at(addr, &pki.ca_file)).await;

    assert_eq!(only_error(&report).keyword(), "connect");
}

#[tokio::test]
async fn unresolvable_name_is_a_dns_error_with_no_address_probed() {
    let pki = test_pki();
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
