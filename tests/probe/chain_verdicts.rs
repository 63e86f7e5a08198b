//! What the probe reports about presented chains: verdict reason, leaf and earliest
//! notAfter, protocol version and key type.

use super::*;

#[tokio::test]
async fn valid_chain_verifies_and_reports_the_negotiated_protocol_and_suite() {
    let pki = test_pki();
    let leaf = pki.leaf(Validity::current());
    // (the server, whether it offers only TLS 1.2, the version and the suite's prefix)
    let cases = [
        ("a TLS 1.2 and 1.3 server", false, "TLSv1.3", "TLS_"),
        (
            "a TLS 1.2-only server",
            true,
            "TLSv1.2",
            "TLS_ECDHE_ECDSA_WITH_",
        ),
    ];
    for (case, tls12_only, version, suite) in cases {
        let mut options = ServerOptions::new(pki.chain_with(&leaf), leaf.key.clone_key());
        options.tls12_only = tls12_only;
        let server = spawn_tls(bind(LOCALHOST).await, options.acceptor());

        let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

        let handshake = only_handshake(&report);
        check_case(
            case,
            handshake,
            Expect::leaf_first(true, None, leaf.not_after),
        );
        assert_eq!(handshake.tls_version, version, "{case}");
        let cipher_suite = &handshake.cipher_suite;
        assert!(cipher_suite.starts_with(suite), "{case}: {cipher_suite}");
        assert_eq!(handshake.chain.entries.len(), 2, "{case}");
        assert!(!report.addresses_disagree, "{case}");
        assert_eq!(report.client_cert, None, "{case}");
    }
}

#[tokio::test]
async fn chains_that_do_not_verify_are_reported_with_their_reason_and_leaf_not_after() {
    let pki = test_pki();
    let current = pki.leaf(Validity::current());
    let expired = pki.leaf(Validity::expired());
    let not_yet_valid = pki.leaf(Validity::not_yet_valid());
    let self_signed = Leaf::self_signed(&LeafSpec::new(&[NAME]));
    // (what the server presents, its leaf, the chain it serves, the name asked for, reason)
    let cases = [
        (
            "an expired leaf",
            &expired,
            pki.chain_with(&expired),
            NAME,
            "expired",
        ),
        (
            "a leaf valid only in the future",
            &not_yet_valid,
            pki.chain_with(&not_yet_valid),
            NAME,
            "not_yet_valid",
        ),
        (
            "a leaf for another name",
            &current,
            pki.chain_with(&current),
            "other.test",
            "hostname_mismatch",
        ),
        (
            "a self-signed leaf",
            &self_signed,
            vec![self_signed.cert.clone()],
            NAME,
            "self_signed",
        ),
        (
            "a leaf without its intermediate",
            &current,
            vec![current.cert.clone()],
            NAME,
            "missing_intermediate",
        ),
    ];
    for (case, leaf, chain, sni, reason) in cases {
        let server = serve(chain, leaf.key.clone_key()).await;
        let mut endpoint = endpoint_at(server.addr, &pki.ca_file);
        endpoint.probe.sni = Some(sni.to_string());

        let report = probe(&endpoint).await;

        let expect = Expect::leaf_first(false, Some(reason), leaf.not_after);
        check_case(case, only_handshake(&report), expect);
    }
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
