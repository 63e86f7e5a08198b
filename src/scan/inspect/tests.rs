//! Tests for certificate and chain inspection: fixture files, then in-memory certificates.

use std::net::IpAddr;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use time::macros::datetime;

use super::*;
use crate::scan::testing::{Minted, expected, fixture_chain};

fn chain_facts(name: &str) -> ChainFacts {
    inspect_chain(&fixture_chain(name)).unwrap()
}

#[test]
fn valid_leaf_facts_describe_the_fixture() {
    let chain = fixture_chain("valid.pem");
    let facts = inspect_certificate(chain[0].as_ref()).unwrap();
    assert_eq!(facts.subject, "CN=valid.test, O=Certinel Test");
    assert_eq!(
        facts.issuer,
        "CN=Certinel Test Intermediate, O=Certinel Test"
    );
    assert_eq!(facts.serial, "1001");
    assert_eq!(facts.dns_names, ["valid.test", "www.valid.test"]);
    assert_eq!(facts.ip_addresses, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(facts.key, KeyType::EcdsaP256);
    assert_eq!(facts.signature_algorithm, "ecdsa-with-SHA256");
    assert_eq!(facts.not_before, datetime!(2024-01-01 00:00:00 UTC));
    assert_eq!(facts.not_after, datetime!(2099-01-01 00:00:00 UTC));
    assert!(!facts.self_signed);
    assert!(!facts.is_ca);
}

#[test]
fn fingerprint_is_lowercase_hex_sha256_of_the_der() {
    let chain = fixture_chain("valid.pem");
    let facts = inspect_certificate(chain[0].as_ref()).unwrap();
    let digest = Sha256::digest(chain[0].as_ref());
    let expected: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(facts.fingerprint_sha256, expected);
}

#[test]
fn leaf_authority_key_id_is_the_intermediate_subject_key_id() {
    let facts = chain_facts("valid.pem");
    let intermediate = &facts.entries[1].facts;
    assert!(intermediate.subject_key_id.is_some());
    assert_eq!(facts.leaf().authority_key_id, intermediate.subject_key_id);
}

#[test]
fn root_is_a_self_signed_ca_with_a_subject_key_id() {
    let root = chain_facts("root.pem");
    let facts = root.leaf();
    assert!(facts.is_ca);
    assert!(facts.self_signed);
    assert!(facts.subject_key_id.is_some());
    assert_eq!(facts.serial, "1");
    // Alone, even a root is at position 0 and so the leaf.
    assert_eq!(root.entries[0].role, Role::Leaf);
}

#[test]
fn every_fixture_leaf_and_earliest_not_after_match_expected_toml() {
    for (file, expectation) in expected().files {
        let facts = chain_facts(&file);
        assert_eq!(
            facts.leaf().not_after.unix_timestamp(),
            expectation.leaf_not_after,
            "{file}"
        );
        assert_eq!(
            facts.earliest_not_after.unix_timestamp(),
            expectation.earliest_not_after,
            "{file}"
        );
    }
}

#[test]
fn intermediate_expiring_before_the_leaf_sets_earliest_not_after() {
    let facts = chain_facts("short-intermediate.pem");
    assert_eq!(facts.leaf().not_after, datetime!(2099-01-01 00:00:00 UTC));
    assert_eq!(facts.earliest_not_after, datetime!(2026-01-01 00:00:00 UTC));
}

#[test]
fn chain_roles_follow_position_and_self_signature() {
    let facts = chain_facts("wrong-order.pem");
    let roles: Vec<Role> = facts.entries.iter().map(|entry| entry.role).collect();
    assert_eq!(roles, [Role::Leaf, Role::Root, Role::Intermediate]);
    let positions: Vec<usize> = facts.entries.iter().map(|entry| entry.position).collect();
    assert_eq!(positions, [0, 1, 2]);
}

#[test]
fn fixture_chains_in_issuing_order_are_in_order_and_the_shuffled_one_is_not() {
    assert!(chain_facts("valid.pem").in_order);
    assert!(chain_facts("leaf-only.pem").in_order);
    assert!(chain_facts("untrusted-root.pem").in_order);
    assert!(!chain_facts("wrong-order.pem").in_order);
}

#[test]
fn intermediate_and_leaf_swapped_is_not_in_order() {
    let root = Minted::root("Swap Root");
    let intermediate = Minted::ca(
        "Swap Intermediate",
        Some(&root),
        KeyPair::generate().unwrap(),
    );
    let leaf = intermediate.leaf(&["swap.test"]);
    let swapped = [intermediate.der.clone(), leaf.der.clone()];
    assert!(!inspect_chain(&swapped).unwrap().in_order);
    let ordered = [leaf.der, intermediate.der, root.der];
    assert!(inspect_chain(&ordered).unwrap().in_order);
}

#[test]
fn same_issuer_name_with_another_key_id_is_not_in_order() {
    let root = Minted::root("Twin Root");
    let twin = Minted::root("Twin Root");
    let leaf = root.leaf(&["twin.test"]);
    assert!(!inspect_chain(&[leaf.der, twin.der]).unwrap().in_order);
}

#[test]
fn presented_root_expiring_first_is_ignored_by_earliest_not_after() {
    let root = Minted::ca("Short Root", None, KeyPair::generate().unwrap());
    let mut short_root_params = root.params.clone();
    short_root_params.not_after = datetime!(2030-01-01 00:00:00 UTC);
    let short_root_der = short_root_params
        .self_signed(&root.key)
        .unwrap()
        .der()
        .clone();
    let leaf = root.leaf_with(&["late.test"], |params| {
        params.not_after = datetime!(2035-01-01 00:00:00 UTC);
    });
    let facts = inspect_chain(&[leaf.der, short_root_der]).unwrap();
    assert_eq!(facts.entries[1].role, Role::Root);
    assert_eq!(facts.earliest_not_after, datetime!(2035-01-01 00:00:00 UTC));
}

#[test]
fn self_signed_ed25519_leaf_is_detected() {
    let facts = chain_facts("self-signed.pem");
    let leaf = facts.leaf();
    assert!(leaf.self_signed);
    assert!(!leaf.is_ca);
    assert_eq!(leaf.key, KeyType::Ed25519);
    assert_eq!(leaf.signature_algorithm, "ED25519");
    assert_eq!(leaf.subject, leaf.issuer);
}

/// The facts of a leaf `issuer` issues for `subject.test` with this subject name.
fn leaf_with_subject(issuer: &Minted, subject: &[(DnType, &str)]) -> CertFacts {
    let leaf = issuer.leaf_with(&["subject.test"], |params| {
        let mut name = DistinguishedName::new();
        for (kind, value) in subject {
            name.push(kind.clone(), *value);
        }
        params.distinguished_name = name;
    });
    inspect_certificate(leaf.der.as_ref()).unwrap()
}

/// The facts of a certificate for `self-signed.test` that `key` signs itself.
fn self_signed_with(key: &KeyPair) -> CertFacts {
    let cert = CertificateParams::new(vec!["self-signed.test".to_owned()])
        .unwrap()
        .self_signed(key)
        .unwrap();
    inspect_certificate(cert.der().as_ref()).unwrap()
}

#[test]
fn subject_equal_to_issuer_without_own_signature_is_not_self_signed() {
    let impostor = Minted::root("Same Name");
    let facts = leaf_with_subject(&impostor, &[(DnType::CommonName, "Same Name")]);
    assert_eq!(facts.subject, facts.issuer);
    assert!(!facts.self_signed);
}

#[test]
fn key_types_of_the_fixtures() {
    assert_eq!(chain_facts("expired.pem").leaf().key, KeyType::EcdsaP384);
    assert_eq!(
        chain_facts("not-yet-valid.pem").leaf().key,
        KeyType::Rsa(2048)
    );
}

#[test]
fn rsa_self_signed_certificate_reports_modulus_bits_and_rsa_signature() {
    let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    let facts = self_signed_with(&key);
    assert_eq!(facts.key, KeyType::Rsa(2048));
    assert_eq!(facts.signature_algorithm, "sha256WithRSAEncryption");
    assert!(facts.self_signed);
}

#[test]
fn p384_signed_certificate_names_its_signature_algorithm() {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let facts = self_signed_with(&key);
    assert_eq!(facts.signature_algorithm, "ecdsa-with-SHA384");
}

#[test]
fn ipv4_and_ipv6_subject_alt_names_are_reported_apart_from_dns_names() {
    let root = Minted::root("IP Root");
    let leaf = root.leaf(&["ip.test", "10.0.0.1", "::1"]);
    let facts = inspect_certificate(leaf.der.as_ref()).unwrap();
    assert_eq!(facts.dns_names, ["ip.test"]);
    let expected: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    assert_eq!(facts.ip_addresses, expected);
}

#[test]
fn special_characters_in_names_are_escaped_rfc4514_style() {
    let root = Minted::root("Escape Root");
    let subject = [
        (DnType::OrganizationName, "Acme, Inc."),
        (DnType::CommonName, "a+b \"quoted\""),
    ];
    let facts = leaf_with_subject(&root, &subject);
    assert_eq!(facts.subject, r#"CN=a\+b \"quoted\", O=Acme\, Inc."#);
}

#[test]
fn serial_is_lowercase_hex_without_leading_zeros() {
    assert_eq!(serial_hex(&[0x00, 0x8f, 0x0a]), "8f0a");
    assert_eq!(serial_hex(&[0x01, 0xab]), "1ab");
    assert_eq!(serial_hex(&[0x00]), "0");
}

#[test]
fn modulus_bits_ignore_the_sign_byte() {
    assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
    assert_eq!(modulus_bits(&[0x7f, 0xff]), 15);
    assert_eq!(modulus_bits(&[0x00]), 0);
}

#[test]
fn empty_chain_is_an_error() {
    assert_eq!(inspect_chain(&[]), Err(InspectError::Empty));
}

#[test]
fn unparsable_certificate_error_names_its_position() {
    let mut chain = fixture_chain("valid.pem");
    chain[1] = CertificateDer::from(b"not a certificate".to_vec());
    match inspect_chain(&chain) {
        Err(InspectError::Malformed { position, .. }) => assert_eq!(position, 1),
        other => panic!("expected a malformed certificate, got {other:?}"),
    }
}

#[test]
fn trailing_bytes_after_a_certificate_are_malformed() {
    let mut der = fixture_chain("valid.pem")[0].to_vec();
    der.push(0);
    assert!(matches!(
        inspect_certificate(&der),
        Err(InspectError::Malformed { position: 0, .. })
    ));
}
