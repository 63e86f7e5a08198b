//! Mutual TLS: a configured client certificate is presented and described; a missing or
//! refused one is a handshake error, an unreadable one a config error.

use super::*;

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
    let pki = test_pki();
    let mtls = mutual_tls_server(&pki).await;
    let mut endpoint = endpoint_at(mtls.server.addr, &pki.ca_file);
    endpoint.probe.client_auth = Some(mtls.client_auth.clone());

    let report = probe(&endpoint).await;

    check(
        only_handshake(&report),
        Expect::leaf_first(true, None, mtls.server_leaf.not_after),
    );
    let client_cert = report.client_cert.as_ref().expect("client cert facts");
    assert_eq!(client_cert.not_after, mtls.client_leaf.not_after);
    assert_eq!(client_cert.dns_names, vec!["probe-client.test".to_string()]);
}

#[tokio::test]
async fn mutual_tls_without_a_client_certificate_is_a_handshake_error() {
    let pki = test_pki();
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
    let pki = test_pki();
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
    let pki = test_pki();
    let mtls = mutual_tls_server(&pki).await;
    let mut endpoint = endpoint_at(mtls.server.addr, &pki.ca_file);
    endpoint.probe.client_auth = Some(ClientAuth {
        cert: mtls.client_auth.cert.clone(),
        key: pki.dir.path().join("no-such.key"),
    });

    let report = probe(&endpoint).await;

    let error = report.resolve_error.as_ref().expect("endpoint-level error");
    assert_eq!(error.keyword(), "config", "{error}");
    assert!(report.addresses.is_empty());
}
