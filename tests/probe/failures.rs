//! Probes that produce no handshake: each failure carries its stage keyword.

use tokio::net::TcpListener;

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
async fn silent_server_times_out_in_the_stage_it_was_waiting_in() {
    let pki = test_pki();
    // (what the probe speaks first, the stage it times out in)
    let cases = [(None, "handshake"), (Some(StartTls::Smtp), "starttls")];
    for (starttls, stage) in cases {
        let server = spawn_silent(bind(LOCALHOST).await);
        let mut endpoint = endpoint_at(server.addr, &pki.ca_file);
        endpoint.probe.starttls = starttls;
        endpoint.probe.timeout = Duration::from_millis(300);

        let report = probe(&endpoint).await;

        let after = Duration::from_millis(300);
        let error = only_error(&report);
        assert_eq!(error, &ProbeError::Timeout { stage, after }, "{starttls:?}");
        // The deadline also covers the setup before the address (reading `ca_file` on a
        // blocking thread), which takes a few milliseconds on a loaded machine.
        let duration = report.addresses[0].duration;
        assert!(
            duration >= Duration::from_millis(250),
            "{starttls:?}: {duration:?}"
        );
    }
}

#[tokio::test]
async fn server_that_does_not_speak_tls_is_a_handshake_error() {
    let pki = test_pki();
    type Spawn = fn(TcpListener) -> ServerHandle;
    let cases: [(&str, Spawn); 2] = [
        ("a server sending garbage", spawn_garbage),
        ("a server closing at once", spawn_closing),
    ];
    for (case, spawn) in cases {
        let server = spawn(bind(LOCALHOST).await);

        let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

        assert_eq!(only_error(&report).keyword(), "handshake", "{case}");
    }
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
    endpoint.probe.ca_file = Some(pki.ca_file.clone());

    let report = probe(&endpoint).await;

    let error = report.resolve_error.as_ref().expect("resolve error");
    assert_eq!(error.keyword(), "dns", "{error}");
    assert!(report.addresses.is_empty());
}
