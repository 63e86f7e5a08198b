//! Tests for chain verification: every fixture against expected.toml, then the details,
//! the precedence of reasons and in-memory edge cases.

use rcgen::KeyPair;
use rustls::pki_types::{CertificateDer, UnixTime};
use time::macros::datetime;

use super::*;
use crate::scan::inspect::inspect_chain;
use crate::scan::testing::{Minted, at, expected, fixture_chain, fixture_roots, unix};

/// Verifies a fixture file against the fixtures' root.
fn check(file: &str, server_name: Option<&str>, now: UnixTime) -> Verification {
    check_chain(&fixture_chain(file), server_name, &fixture_roots(), now)
}

fn check_chain(
    chain: &[CertificateDer<'_>],
    server_name: Option<&str>,
    roots: &TrustRoots,
    now: UnixTime,
) -> Verification {
    let facts = inspect_chain(chain).unwrap();
    verify_chain(chain, &facts, server_name, roots, now)
}

fn fixture_now() -> UnixTime {
    unix(expected().now)
}

#[test]
fn every_fixture_verifies_as_expected_toml_says() {
    let expected = expected();
    for (file, expectation) in expected.files {
        let outcome = check(
            &file,
            expectation.server_name.as_deref(),
            unix(expected.now),
        );
        let keyword = outcome.reason.map_or("none", Reason::keyword);
        assert_eq!(keyword, expectation.reason, "{file}: {}", outcome.detail);
        assert_eq!(
            outcome.verified, expectation.verified,
            "{file}: {}",
            outcome.detail
        );
    }
}

#[test]
fn valid_chain_verifies_without_reason() {
    let outcome = check("valid.pem", Some("valid.test"), fixture_now());
    assert!(outcome.verified, "{}", outcome.detail);
    assert_eq!(outcome.reason, None);
}

#[test]
fn valid_chain_verifies_without_a_server_name() {
    let outcome = check("valid.pem", None, fixture_now());
    assert!(outcome.verified, "{}", outcome.detail);
}

#[test]
fn expired_leaf_detail_names_the_leaf_and_the_second() {
    let outcome = check("expired.pem", Some("expired.test"), fixture_now());
    assert_eq!(outcome.reason, Some(Reason::Expired));
    assert_eq!(
        outcome.detail,
        r#"leaf "CN=expired.test, O=Certinel Test" expired at 2026-03-01T12:00:00Z"#
    );
}

#[test]
fn leaf_is_valid_up_to_and_including_its_not_after_second() {
    let last_second = at(datetime!(2026-03-01 12:00:00 UTC));
    assert!(check("expired.pem", Some("expired.test"), last_second).verified);
    let next_second = at(datetime!(2026-03-01 12:00:01 UTC));
    let outcome = check("expired.pem", Some("expired.test"), next_second);
    assert_eq!(outcome.reason, Some(Reason::Expired));
}

#[test]
fn expired_intermediate_is_named_although_the_leaf_is_valid() {
    let outcome = check(
        "short-intermediate.pem",
        Some("short-intermediate.test"),
        fixture_now(),
    );
    assert!(!outcome.verified);
    assert_eq!(outcome.reason, Some(Reason::Expired));
    assert_eq!(
        outcome.detail,
        r#"intermediate "CN=Certinel Short Intermediate, O=Certinel Test" expired at 2026-01-01T00:00:00Z"#
    );
}

#[test]
fn chain_with_short_intermediate_verifies_before_it_expires() {
    let before = at(datetime!(2025-12-31 23:59:59 UTC));
    let outcome = check(
        "short-intermediate.pem",
        Some("short-intermediate.test"),
        before,
    );
    assert!(outcome.verified, "{}", outcome.detail);
}

#[test]
fn not_yet_valid_leaf_detail_gives_the_start() {
    let outcome = check("not-yet-valid.pem", Some("future.test"), fixture_now());
    assert_eq!(outcome.reason, Some(Reason::NotYetValid));
    assert_eq!(
        outcome.detail,
        r#"leaf "CN=future.test, O=Certinel Test" is not valid before 2027-01-01T00:00:00Z"#
    );
}

#[test]
fn expired_leaf_without_intermediate_lists_the_missing_intermediate_too() {
    let after_expiry = at(datetime!(2099-02-01 00:00:00 UTC));
    let outcome = check("leaf-only.pem", Some("valid.test"), after_expiry);
    assert_eq!(outcome.reason, Some(Reason::Expired));
    assert!(
        outcome.detail.contains("also: issuer"),
        "{}",
        outcome.detail
    );
    assert!(
        outcome.detail.contains("neither presented nor trusted"),
        "{}",
        outcome.detail
    );
}

#[test]
fn hostname_mismatch_lists_the_names_the_leaf_covers() {
    let outcome = check("valid.pem", Some("other.test"), fixture_now());
    assert!(!outcome.verified);
    assert_eq!(outcome.reason, Some(Reason::HostnameMismatch));
    assert_eq!(
        outcome.detail,
        r#"leaf "CN=valid.test, O=Certinel Test" is not valid for "other.test"; it covers DNS:valid.test, DNS:www.valid.test, IP:127.0.0.1"#
    );
}

#[test]
fn ip_literal_is_matched_against_ip_subject_alt_names() {
    assert!(check("valid.pem", Some("127.0.0.1"), fixture_now()).verified);
    let outcome = check("valid.pem", Some("127.0.0.2"), fixture_now());
    assert_eq!(outcome.reason, Some(Reason::HostnameMismatch));
}

#[test]
fn ip_literal_does_not_match_a_dns_name_spelling_it() {
    let root = Minted::root("IP Root");
    let leaf = root.leaf(&["ip.test", "::1"]);
    let roots = root.as_roots();
    let now = fixture_now();
    assert!(check_chain(std::slice::from_ref(&leaf.der), Some("::1"), &roots, now).verified);
    let outcome = check_chain(&[leaf.der], Some("10.0.0.1"), &roots, now);
    assert_eq!(outcome.reason, Some(Reason::HostnameMismatch));
    assert!(
        outcome.detail.ends_with("DNS:ip.test, IP:::1"),
        "{}",
        outcome.detail
    );
}

#[test]
fn wildcard_covers_one_label_only() {
    let root = Minted::root("Wildcard Root");
    let leaf = root.leaf(&["*.example.test"]);
    let roots = root.as_roots();
    let now = fixture_now();
    assert!(
        check_chain(
            std::slice::from_ref(&leaf.der),
            Some("www.example.test"),
            &roots,
            now
        )
        .verified
    );
    let outcome = check_chain(&[leaf.der], Some("a.b.example.test"), &roots, now);
    assert_eq!(outcome.reason, Some(Reason::HostnameMismatch));
}

#[test]
fn unparsable_server_name_is_a_hostname_mismatch() {
    let outcome = check("valid.pem", Some("not a name"), fixture_now());
    assert_eq!(outcome.reason, Some(Reason::HostnameMismatch));
    assert!(outcome.detail.contains("not a DNS name or IP address"));
}

#[test]
fn expiry_outranks_hostname_mismatch_which_is_listed_second() {
    let outcome = check("expired.pem", Some("other.test"), fixture_now());
    assert_eq!(outcome.reason, Some(Reason::Expired));
    assert!(
        outcome.detail.contains(
            r#"; also: leaf "CN=expired.test, O=Certinel Test" is not valid for "other.test""#
        ),
        "{}",
        outcome.detail
    );
}

#[test]
fn self_signed_leaf_names_itself() {
    let outcome = check("self-signed.pem", Some("self-signed.test"), fixture_now());
    assert_eq!(outcome.reason, Some(Reason::SelfSigned));
    assert_eq!(
        outcome.detail,
        r#"leaf "CN=self-signed.test, O=Certinel Test" is self-signed and not a trusted root"#
    );
}

#[test]
fn self_signed_leaf_that_is_trusted_verifies() {
    let chain = fixture_chain("self-signed.pem");
    let mut roots = TrustRoots::empty();
    roots.add_certificate(&chain[0]).unwrap();
    let outcome = check_chain(&chain, Some("self-signed.test"), &roots, fixture_now());
    assert!(outcome.verified, "{}", outcome.detail);
}

#[test]
fn leaf_without_its_intermediate_is_a_missing_intermediate() {
    let outcome = check("leaf-only.pem", Some("valid.test"), fixture_now());
    assert_eq!(outcome.reason, Some(Reason::MissingIntermediate));
    assert!(
        outcome.detail.starts_with(r#"issuer "CN=Certinel Test Intermediate, O=Certinel Test" of leaf "CN=valid.test, O=Certinel Test" is neither presented nor trusted"#),
        "{}",
        outcome.detail
    );
}

#[test]
fn chain_up_to_an_untrusted_root_is_an_unknown_issuer() {
    let outcome = check("untrusted-root.pem", Some("untrusted.test"), fixture_now());
    assert_eq!(outcome.reason, Some(Reason::UnknownIssuer));
    assert_eq!(
        outcome.detail,
        r#"the chain ends at root "CN=Certinel Other Root, O=Certinel Test", which is not a trusted root"#
    );
}

#[test]
fn complete_chain_with_no_trusted_root_reports_the_issuer_of_the_top() {
    let outcome = check_chain(
        &fixture_chain("valid.pem"),
        Some("valid.test"),
        &TrustRoots::empty(),
        fixture_now(),
    );
    assert_eq!(outcome.reason, Some(Reason::MissingIntermediate));
    assert!(
        outcome
            .detail
            .contains(r#"issuer "CN=Certinel Test Root, O=Certinel Test""#)
    );
}

#[test]
fn wrong_order_verifies_but_is_flagged() {
    let outcome = check("wrong-order.pem", Some("valid.test"), fixture_now());
    assert!(outcome.verified);
    assert_eq!(outcome.reason, Some(Reason::WrongChainOrder));
    assert!(
        outcome
            .detail
            .contains("not sent leaf first in issuing order")
    );
}

#[test]
fn wrong_order_is_secondary_to_a_failure() {
    let outcome = check("wrong-order.pem", Some("other.test"), fixture_now());
    assert!(!outcome.verified);
    assert_eq!(outcome.reason, Some(Reason::HostnameMismatch));
    assert!(
        outcome
            .detail
            .contains("also: certificates are not sent leaf first")
    );
}

#[test]
fn intermediates_swapped_in_memory_verify_with_wrong_order() {
    let root = Minted::root("Order Root");
    let upper = Minted::ca("Order Upper", Some(&root), KeyPair::generate().unwrap());
    let lower = Minted::ca("Order Lower", Some(&upper), KeyPair::generate().unwrap());
    let leaf = lower.leaf(&["order.test"]);
    let chain = [leaf.der, upper.der, lower.der];
    let outcome = check_chain(&chain, Some("order.test"), &root.as_roots(), fixture_now());
    assert!(outcome.verified, "{}", outcome.detail);
    assert_eq!(outcome.reason, Some(Reason::WrongChainOrder));
}

#[test]
fn ca_certificate_served_as_leaf_is_invalid() {
    let outcome = check("intermediate.pem", None, fixture_now());
    assert_eq!(outcome.reason, Some(Reason::Invalid));
    assert!(
        outcome
            .detail
            .starts_with(r#"leaf "CN=Certinel Test Intermediate"#)
    );
}

#[test]
fn tampered_leaf_signature_is_a_bad_signature() {
    let root = Minted::root("Tamper Root");
    let leaf = root.leaf(&["tamper.test"]);
    let mut der = leaf.der.to_vec();
    // The DER ends with the ECDSA signature's s value: changing its last byte keeps the
    // certificate well-formed but breaks the signature.
    if let Some(last) = der.last_mut() {
        *last ^= 0x01;
    }
    let chain = [CertificateDer::from(der)];
    let outcome = check_chain(&chain, Some("tamper.test"), &root.as_roots(), fixture_now());
    assert!(!outcome.verified);
    assert_eq!(
        outcome.reason,
        Some(Reason::BadSignature),
        "{}",
        outcome.detail
    );
}

#[test]
fn empty_chain_is_invalid_without_panicking() {
    let facts = inspect_chain(&fixture_chain("valid.pem")).unwrap();
    let outcome = verify_chain(
        &[],
        &facts,
        Some("valid.test"),
        &fixture_roots(),
        fixture_now(),
    );
    assert!(!outcome.verified);
    assert_eq!(outcome.reason, Some(Reason::Invalid));
}

#[test]
fn leaf_that_webpki_cannot_parse_is_invalid_without_panicking() {
    let facts = inspect_chain(&fixture_chain("valid.pem")).unwrap();
    let chain = [CertificateDer::from(b"garbage".to_vec())];
    let outcome = verify_chain(
        &chain,
        &facts,
        Some("valid.test"),
        &fixture_roots(),
        fixture_now(),
    );
    assert!(!outcome.verified);
    assert_eq!(outcome.reason, Some(Reason::Invalid));
}

#[test]
fn reason_keywords_are_stable() {
    let keywords: Vec<&str> = [
        Reason::Expired,
        Reason::NotYetValid,
        Reason::HostnameMismatch,
        Reason::SelfSigned,
        Reason::MissingIntermediate,
        Reason::UnknownIssuer,
        Reason::WrongChainOrder,
        Reason::BadSignature,
        Reason::UnsupportedCriticalExtension,
        Reason::Invalid,
    ]
    .into_iter()
    .map(Reason::keyword)
    .collect();
    assert_eq!(
        keywords,
        [
            "expired",
            "not_yet_valid",
            "hostname_mismatch",
            "self_signed",
            "missing_intermediate",
            "unknown_issuer",
            "wrong_chain_order",
            "bad_signature",
            "unsupported_critical_extension",
            "invalid"
        ]
    );
}
