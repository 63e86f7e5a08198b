//! What the probe reports about presented chains: verdict reason, leaf and earliest
//! notAfter, protocol version and key type, one case per test.

use super::*;

#[tokio::test]
async fn valid_chain_verifies_and_reports_leaf_expiry_over_tls13() {
    let pki = test_pki();
    let leaf = pki.leaf(Validity::current());
    let server = serve(pki.chain_with(&leaf), leaf.key.clone_key()).await;

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    let handshake = only_handshake(&report);
    check(handshake, Expect::leaf_first(true, None, leaf.not_after));
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
    let pki = test_pki();
    let leaf = pki.leaf(Validity::expired());
    let server = serve(pki.chain_with(&leaf), leaf.key.clone_key()).await;

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    check(
        only_handshake(&report),
        Expect::leaf_first(false, Some("expired"), leaf.not_after),
    );
}

#[tokio::test]
async fn leaf_valid_only_in_the_future_is_reported_not_yet_valid() {
    let pki = test_pki();
    let leaf = pki.leaf(Validity::not_yet_valid());
    let server = serve(pki.chain_with(&leaf), leaf.key.clone_key()).await;

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    check(
        only_handshake(&report),
        Expect::leaf_first(false, Some("not_yet_valid"), leaf.not_after),
    );
}

#[tokio::test]
async fn leaf_for_another_name_is_a_hostname_mismatch() {
    let pki = test_pki();
    let leaf = pki.leaf(Validity::current());
    let server = serve(pki.chain_with(&leaf), leaf.key.clone_key()).await;
    let mut endpoint = endpoint_at(server.addr, &pki.ca_file);
    endpoint.sni = Some("other.test".to_string());

    let report = probe(&endpoint).await;

    check(
        only_handshake(&report),
        Expect::leaf_first(false, Some("hostname_mismatch"), leaf.not_after),
    );
}

#[tokio::test]
async fn self_signed_leaf_is_reported_self_signed() {
    let pki = test_pki();
    let leaf = Leaf::self_signed(&LeafSpec::new(&[NAME]));
    let server = serve(vec![leaf.cert.clone()], leaf.key.clone_key()).await;

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    check(
        only_handshake(&report),
        Expect::leaf_first(false, Some("self_signed"), leaf.not_after),
    );
}

#[tokio::test]
async fn leaf_served_without_its_intermediate_is_missing_intermediate() {
    let pki = test_pki();
    let leaf = pki.leaf(Validity::current());
    let server = serve(vec![leaf.cert.clone()], leaf.key.clone_key()).await;

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    check(
        only_handshake(&report),
        Expect::leaf_first(false, Some("missing_intermediate"), leaf.not_after),
    );
}

#[tokio::test]
async fn intermediate_expiring_before_the_leaf_sets_the_earliest_not_after() {
    let pki = test_pki();
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
    let pki = test_pki();
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
        Expect::leaf_first(true, Some("wrong_chain_order"), leaf.not_after),
    );
    assert!(!handshake.chain.in_order);
}

#[tokio::test]
async fn tls12_only_server_reports_tls12_and_an_ecdhe_suite() {
    let pki = test_pki();
    let leaf = pki.leaf(Validity::current());
    let options = ServerOptions::new(pki.chain_with(&leaf), leaf.key.clone_key()).tls12_only();
    let server = spawn_tls(bind(LOCALHOST).await, options.acceptor());

    let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

    let handshake = only_handshake(&report);
    check(handshake, Expect::leaf_first(true, None, leaf.not_after));
    assert_eq!(handshake.tls_version, "TLSv1.2");
    assert!(
        handshake.cipher_suite.starts_with("TLS_ECDHE_ECDSA_WITH_"),
        "{}",
        handshake.cipher_suite
    );
}

#[tokio::test]
async fn leaves_of_every_key_type_are_probed_and_their_key_reported() {
    let pki = test_pki();
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
        check(handshake, Expect::leaf_first(true, None, leaf.not_after));
        assert_eq!(handshake.chain.leaf().key, expected_key, "{kind:?}");
    }
}
