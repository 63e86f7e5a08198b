//! Tests for chain verification: every fixture against expected.toml, then the details,
//! the precedence of reasons and in-memory edge cases.

use rcgen::KeyPair;
use rustls::pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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

/// Fixture files verified against the fixtures' root, one case a line:
/// `what it proves | file | server name (- for none) | when | verified or failed, and the
/// reason | the detail`. The detail is exact, or a prefix where it ends in "…".
const FIXTURE_CASES: &str = r#"
a valid chain verifies without a reason | valid.pem | valid.test | 2026-06-01T00:00:00Z | verified none | leaf "CN=valid.test, O=Certinel Test" verified
a valid chain verifies without a server name | valid.pem | - | 2026-06-01T00:00:00Z | verified none | leaf "CN=valid.test, O=Certinel Test" verified
an IP literal is matched against IP subject alt names | valid.pem | 127.0.0.1 | 2026-06-01T00:00:00Z | verified none | leaf "CN=valid.test, O=Certinel Test" verified
an expired leaf's detail names the leaf and the second | expired.pem | expired.test | 2026-06-01T00:00:00Z | failed expired | leaf "CN=expired.test, O=Certinel Test" expired at 2026-03-01T12:00:00Z
a leaf is valid on its not_after second | expired.pem | expired.test | 2026-03-01T12:00:00Z | verified none | leaf "CN=expired.test, O=Certinel Test" verified
a leaf has expired the second after its not_after | expired.pem | expired.test | 2026-03-01T12:00:01Z | failed expired | leaf "CN=expired.test, O=Certinel Test" expired at 2026-03-01T12:00:00Z
an expired intermediate is named although the leaf is valid | short-intermediate.pem | short-intermediate.test | 2026-06-01T00:00:00Z | failed expired | intermediate "CN=Certinel Short Intermediate, O=Certinel Test" expired at 2026-01-01T00:00:00Z
a chain with a short intermediate verifies before it expires | short-intermediate.pem | short-intermediate.test | 2025-12-31T23:59:59Z | verified none | leaf "CN=short-intermediate.test, O=Certinel Test" verified
a not yet valid leaf's detail gives the start | not-yet-valid.pem | future.test | 2026-06-01T00:00:00Z | failed not_yet_valid | leaf "CN=future.test, O=Certinel Test" is not valid before 2027-01-01T00:00:00Z
an expired leaf without intermediate lists the missing intermediate too | leaf-only.pem | valid.test | 2099-02-01T00:00:00Z | failed expired | leaf "CN=valid.test, O=Certinel Test" expired at 2099-01-01T00:00:00Z; also: issuer "CN=Certinel Test Intermediate, O=Certinel Test" of leaf "CN=valid.test, O=Certinel Test" is neither presented nor trusted; the server must also send the intermediate certificate
a hostname mismatch lists the names the leaf covers | valid.pem | other.test | 2026-06-01T00:00:00Z | failed hostname_mismatch | leaf "CN=valid.test, O=Certinel Test" is not valid for "other.test"; it covers DNS:valid.test, DNS:www.valid.test, IP:127.0.0.1
an IP literal the leaf does not list is a mismatch | valid.pem | 127.0.0.2 | 2026-06-01T00:00:00Z | failed hostname_mismatch | leaf "CN=valid.test, O=Certinel Test" is not valid for "127.0.0.2"; it covers DNS:valid.test, DNS:www.valid.test, IP:127.0.0.1
an unparsable server name is a hostname mismatch | valid.pem | not a name | 2026-06-01T00:00:00Z | failed hostname_mismatch | leaf "CN=valid.test, O=Certinel Test" is not valid for "not a name" (not a DNS name or IP address); it covers DNS:valid.test, DNS:www.valid.test, IP:127.0.0.1
expiry outranks a hostname mismatch, which is listed second | expired.pem | other.test | 2026-06-01T00:00:00Z | failed expired | leaf "CN=expired.test, O=Certinel Test" expired at 2026-03-01T12:00:00Z; also: leaf "CN=expired.test, O=Certinel Test" is not valid for "other.test"; it covers DNS:expired.test
a self-signed leaf names itself | self-signed.pem | self-signed.test | 2026-06-01T00:00:00Z | failed self_signed | leaf "CN=self-signed.test, O=Certinel Test" is self-signed and not a trusted root
a leaf without its intermediate is a missing intermediate | leaf-only.pem | valid.test | 2026-06-01T00:00:00Z | failed missing_intermediate | issuer "CN=Certinel Test Intermediate, O=Certinel Test" of leaf "CN=valid.test, O=Certinel Test" is neither presented nor trusted; the server must also send the intermediate certificate
a chain up to an untrusted root is an unknown issuer | untrusted-root.pem | untrusted.test | 2026-06-01T00:00:00Z | failed unknown_issuer | the chain ends at root "CN=Certinel Other Root, O=Certinel Test", which is not a trusted root
a CA certificate served as leaf is invalid | intermediate.pem | - | 2026-06-01T00:00:00Z | failed invalid | leaf "CN=Certinel Test Intermediate, O=Certinel Test" does not verify: …
wrong order verifies but is flagged | wrong-order.pem | valid.test | 2026-06-01T00:00:00Z | verified wrong_chain_order | certificates are not sent leaf first in issuing order; strict clients may reject the chain
wrong order is secondary to a failure | wrong-order.pem | other.test | 2026-06-01T00:00:00Z | failed hostname_mismatch | leaf "CN=valid.test, O=Certinel Test" is not valid for "other.test"; it covers DNS:valid.test, DNS:www.valid.test, IP:127.0.0.1; also: certificates are not sent leaf first in issuing order; strict clients may reject the chain
"#;

/// Runs every line of [`FIXTURE_CASES`]; a failure names the case's line.
fn check_fixture_cases(cases: &str) {
    for case in cases.lines().filter(|line| !line.is_empty()) {
        let columns: Vec<&str> = case.split(" | ").collect();
        let [proves, file, server_name, when, outcome, detail] = columns[..] else {
            panic!("a case has six columns: {case}");
        };
        let server_name = Some(server_name).filter(|name| *name != "-");
        let when = OffsetDateTime::parse(when, &Rfc3339).unwrap();
        let verification = check(file, server_name, at(when));
        let verified = if verification.verified {
            "verified"
        } else {
            "failed"
        };
        let reason = verification.reason.map_or("none", Reason::keyword);
        assert_eq!(format!("{verified} {reason}"), outcome, "{proves}");
        match detail.strip_suffix('…') {
            Some(prefix) => assert!(
                verification.detail.starts_with(prefix),
                "{proves}: {}",
                verification.detail
            ),
            None => assert_eq!(verification.detail, detail, "{proves}"),
        }
    }
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
fn fixture_files_verify_to_the_expected_reason_and_detail() {
    check_fixture_cases(FIXTURE_CASES);
}

#[test]
fn in_memory_leaves_match_only_the_names_they_cover() {
    // (what it proves, the leaf's names, a name it covers, a name it does not cover)
    let cases: [(&str, &[&str], &str, &str); 2] = [
        (
            "an IP literal does not match a DNS name spelling it",
            &["ip.test", "::1"],
            "::1",
            "10.0.0.1",
        ),
        (
            "a wildcard covers one label only",
            &["*.example.test"],
            "www.example.test",
            "a.b.example.test",
        ),
    ];
    for (proves, names, covered, not_covered) in cases {
        let root = Minted::root("Names Root");
        let leaf = root.leaf(names);
        let roots = root.as_roots();
        let chain = std::slice::from_ref(&leaf.der);
        let outcome = check_chain(chain, Some(covered), &roots, fixture_now());
        assert!(outcome.verified, "{proves}: {}", outcome.detail);
        let outcome = check_chain(chain, Some(not_covered), &roots, fixture_now());
        assert_eq!(outcome.reason, Some(Reason::HostnameMismatch), "{proves}");
    }
}

#[test]
fn hostname_mismatch_of_an_in_memory_leaf_lists_its_ip_names_as_ip() {
    let root = Minted::root("IP Root");
    let leaf = root.leaf(&["ip.test", "::1"]);
    let outcome = check_chain(
        &[leaf.der],
        Some("10.0.0.1"),
        &root.as_roots(),
        fixture_now(),
    );
    assert!(
        outcome.detail.ends_with("DNS:ip.test, IP:::1"),
        "{}",
        outcome.detail
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
fn chains_webpki_cannot_read_are_invalid_without_panicking() {
    let facts = inspect_chain(&fixture_chain("valid.pem")).unwrap();
    let cases = [
        ("an empty chain", vec![]),
        (
            "a leaf webpki cannot parse",
            vec![CertificateDer::from(b"garbage".to_vec())],
        ),
    ];
    for (case, chain) in cases {
        let roots = fixture_roots();
        let outcome = verify_chain(&chain, &facts, Some("valid.test"), &roots, fixture_now());
        assert!(!outcome.verified, "{case}");
        assert_eq!(outcome.reason, Some(Reason::Invalid), "{case}");
    }
}

#[test]
fn reason_keywords_are_stable() {
    let keywords = [
        (Reason::Expired, "expired"),
        (Reason::NotYetValid, "not_yet_valid"),
        (Reason::HostnameMismatch, "hostname_mismatch"),
        (Reason::SelfSigned, "self_signed"),
        (Reason::MissingIntermediate, "missing_intermediate"),
        (Reason::UnknownIssuer, "unknown_issuer"),
        (Reason::WrongChainOrder, "wrong_chain_order"),
        (Reason::BadSignature, "bad_signature"),
        (
            Reason::UnsupportedCriticalExtension,
            "unsupported_critical_extension",
        ),
        (Reason::Invalid, "invalid"),
    ];
    for (reason, keyword) in keywords {
        assert_eq!(reason.keyword(), keyword, "{reason:?}");
    }
}
