//! Unit tests of the certificate and ACME families, on hand-built snapshots: each case
//! states the exact sample lines it expects.

use std::time::Duration;

use time::macros::datetime;

use super::*;
use crate::metrics::render::{Snapshot, render_snapshot};

const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

/// `api`, issued once and due inside its renewal window; no ARI, no profile.
pub(crate) fn issued() -> CertificateSnapshot {
    CertificateSnapshot {
        name: "api".to_owned(),
        current: Some(CurrentVersion {
            version: "v0002".to_owned(),
            serial: "1a2b".to_owned(),
            issuer: "CN=Pebble Intermediate CA".to_owned(),
            ca: "acme".to_owned(),
            key_type: "ecdsa-p256".to_owned(),
            dns_names: vec!["api.test".to_owned(), "www.api.test".to_owned()],
            not_before: datetime!(2025-12-01 00:00 UTC),
            not_after: datetime!(2026-01-31 00:00 UTC),
        }),
        matches_config: true,
        renewal_scheduled: Some(datetime!(2026-01-11 00:00 UTC)),
        last_success_at: Some(datetime!(2025-12-01 00:00 UTC)),
        last_attempt_at: Some(datetime!(2025-12-01 00:00 UTC)),
        consecutive_failures: 0,
        renewals_succeeded: 1,
        renewals_failed: 0,
        failures: BTreeMap::new(),
        ..CertificateSnapshot::default()
    }
}

/// [`issued`], scheduled by the CA's ARI window (2026-01-10 to 01-12, next poll 01-01
/// 06:00), asking for profile `shortlived`, which the CA's directory advertises when
/// `advertised`.
pub(crate) fn on_ari_window(advertised: bool) -> CertificateSnapshot {
    CertificateSnapshot {
        renewal_rule: Some("ari"),
        ari_window: Some((
            datetime!(2026-01-10 00:00 UTC),
            datetime!(2026-01-12 00:00 UTC),
        )),
        ari_next_poll: Some(datetime!(2026-01-01 06:00 UTC)),
        profile: Some(("shortlived".to_owned(), advertised)),
        ..issued()
    }
}

/// Renders `certificates` and `acme` at [`NOW`] and compares the sample lines of the
/// families under test (comments and other families left out) with `expected`.
fn check(certificates: Vec<CertificateSnapshot>, acme: AcmeSnapshot, expected: &str) {
    let snapshot = Snapshot {
        certificates,
        acme,
        ..Snapshot::default()
    };
    let body = render_snapshot(&snapshot, NOW).unwrap();
    let samples: Vec<&str> = body
        .lines()
        .filter(|line| {
            line.starts_with("certinel_certificate_") || line.starts_with("certinel_acme_")
        })
        .collect();
    let expected: Vec<&str> = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(samples, expected, "\n{body}");
}

#[test]
fn an_issued_certificate_renders_every_family_with_expiry_at_scrape_time() {
    check(
        vec![issued()],
        AcmeSnapshot::default(),
        r#"
        certinel_certificate_ready{name="api"} 1
        certinel_certificate_not_after_timestamp_seconds{name="api"} 1769817600
        certinel_certificate_expiry_seconds{name="api"} 2592000
        certinel_certificate_lifetime_seconds{name="api"} 5270400
        certinel_certificate_info{name="api",serial="1a2b",issuer="CN=Pebble Intermediate CA",key_type="ecdsa-p256",dns_names="api.test,www.api.test",version="v0002",ca="acme"} 1
        certinel_certificate_renewal_scheduled_timestamp_seconds{name="api"} 1768089600
        certinel_certificate_renewals_total{name="api",outcome="success"} 1
        certinel_certificate_renewals_total{name="api",outcome="failure"} 0
        certinel_certificate_last_renewal_success_timestamp_seconds{name="api"} 1764547200
        certinel_certificate_last_renewal_attempt_timestamp_seconds{name="api"} 1764547200
        certinel_certificate_renewal_consecutive_failures{name="api"} 0
        "#,
    );
}

#[test]
fn a_revoked_certificate_says_so_with_when_and_why_and_a_clean_one_says_zero() {
    let mut revoked = issued();
    revoked.revocation = Some(ManagedRevocation {
        revoked_at: Some(datetime!(2025-12-31 00:00 UTC)),
        reason_code: Some(1),
    });
    let mut clean = issued();
    clean.name = "web".to_owned();
    clean.revocation = Some(ManagedRevocation {
        revoked_at: None,
        reason_code: None,
    });
    let unchecked = CertificateSnapshot {
        name: "new".to_owned(),
        ..CertificateSnapshot::default()
    };
    let body = render_snapshot(
        &Snapshot {
            certificates: vec![revoked, clean, unchecked],
            ..Snapshot::default()
        },
        NOW,
    )
    .unwrap();
    let samples: Vec<&str> = body
        .lines()
        .filter(|line| line.starts_with("certinel_certificate_revo"))
        .collect();
    assert_eq!(
        samples,
        [
            r#"certinel_certificate_revoked{name="api"} 1"#,
            r#"certinel_certificate_revoked{name="web"} 0"#,
            r#"certinel_certificate_revocation_timestamp_seconds{name="api",reason_code="1"} 1767139200"#,
        ],
        "{body}"
    );
}

#[test]
fn a_missing_certificate_is_not_ready_and_has_only_zeroed_counters() {
    let missing = CertificateSnapshot {
        name: "new".to_owned(),
        renewal_scheduled: Some(NOW),
        ..CertificateSnapshot::default()
    };
    check(
        vec![missing],
        AcmeSnapshot::default(),
        r#"
        certinel_certificate_ready{name="new"} 0
        certinel_certificate_renewal_scheduled_timestamp_seconds{name="new"} 1767225600
        certinel_certificate_renewals_total{name="new",outcome="success"} 0
        certinel_certificate_renewals_total{name="new",outcome="failure"} 0
        certinel_certificate_renewal_consecutive_failures{name="new"} 0
        "#,
    );
}

#[test]
fn failures_are_counted_by_stage_problem_and_ca_and_an_expired_certificate_is_not_ready() {
    let mut failing = issued();
    if let Some(current) = failing.current.as_mut() {
        current.not_after = datetime!(2025-12-31 00:00 UTC);
    }
    failing.renewal_scheduled = None;
    failing.last_success_at = None;
    failing.last_attempt_at = None;
    failing.consecutive_failures = 3;
    failing.renewals_succeeded = 0;
    failing.renewals_failed = 3;
    failing.failures.insert(
        ("acme".to_owned(), "order".to_owned(), "network".to_owned()),
        2,
    );
    failing.failures.insert(
        ("backup".to_owned(), "deploy".to_owned(), "hook".to_owned()),
        1,
    );
    let samples = render_snapshot(
        &Snapshot {
            certificates: vec![failing],
            ..Snapshot::default()
        },
        NOW,
    )
    .unwrap();
    for line in [
        r#"certinel_certificate_ready{name="api"} 0"#,
        r#"certinel_certificate_expiry_seconds{name="api"} -86400"#,
        r#"certinel_certificate_renewals_total{name="api",outcome="failure"} 3"#,
        r#"certinel_certificate_renewal_failures_total{name="api",stage="deploy",problem="hook",ca="backup"} 1"#,
        r#"certinel_certificate_renewal_failures_total{name="api",stage="order",problem="network",ca="acme"} 2"#,
        r#"certinel_certificate_renewal_consecutive_failures{name="api"} 3"#,
    ] {
        assert!(
            samples.lines().any(|l| l == line),
            "{line} missing in\n{samples}"
        );
    }
    assert!(!samples.contains("last_renewal_success"), "{samples}");
}

#[test]
fn a_certificate_with_other_names_than_configured_is_not_ready() {
    let mut stale = issued();
    stale.matches_config = false;
    assert!(!stale.is_ready(NOW));
    assert!(issued().is_ready(NOW));
    assert!(
        !issued().is_ready(datetime!(2025-11-30 00:00 UTC)),
        "not yet valid"
    );
}

#[test]
fn acme_requests_render_as_a_counter_and_a_cumulative_histogram() {
    let mut acme = AcmeSnapshot::default();
    acme.requests
        .insert(("acme".to_owned(), "new_order", "201".to_owned()), 2);
    acme.requests
        .insert(("acme".to_owned(), "new_order", "network".to_owned()), 1);
    let mut histogram = DurationHistogram::default();
    for millis in [20, 300, 45_000] {
        histogram.observe(Duration::from_millis(millis));
    }
    acme.durations
        .insert(("acme".to_owned(), "new_order"), histogram);
    check(
        Vec::new(),
        acme,
        r#"
        certinel_acme_requests_total{endpoint="new_order",status="201",ca="acme"} 2
        certinel_acme_requests_total{endpoint="new_order",status="network",ca="acme"} 1
        certinel_acme_request_duration_seconds_bucket{endpoint="new_order",ca="acme",le="0.05"} 1
        certinel_acme_request_duration_seconds_bucket{endpoint="new_order",ca="acme",le="0.1"} 1
        certinel_acme_request_duration_seconds_bucket{endpoint="new_order",ca="acme",le="0.25"} 1
        certinel_acme_request_duration_seconds_bucket{endpoint="new_order",ca="acme",le="0.5"} 2
        certinel_acme_request_duration_seconds_bucket{endpoint="new_order",ca="acme",le="1"} 2
        certinel_acme_request_duration_seconds_bucket{endpoint="new_order",ca="acme",le="2.5"} 2
        certinel_acme_request_duration_seconds_bucket{endpoint="new_order",ca="acme",le="5"} 2
        certinel_acme_request_duration_seconds_bucket{endpoint="new_order",ca="acme",le="10"} 2
        certinel_acme_request_duration_seconds_bucket{endpoint="new_order",ca="acme",le="20"} 2
        certinel_acme_request_duration_seconds_bucket{endpoint="new_order",ca="acme",le="30"} 2
        certinel_acme_request_duration_seconds_bucket{endpoint="new_order",ca="acme",le="+Inf"} 3
        certinel_acme_request_duration_seconds_sum{endpoint="new_order",ca="acme"} 45.32
        certinel_acme_request_duration_seconds_count{endpoint="new_order",ca="acme"} 3
        "#,
    );
}

#[test]
fn ari_window_profile_clock_skew_and_served_addresses_render() {
    let certificate = on_ari_window(false);
    let snapshot = Snapshot {
        certificates: vec![certificate],
        acme: AcmeSnapshot {
            clock_skew: Some(-1.5),
            ..AcmeSnapshot::default()
        },
        served: vec![
            ServedSample {
                name: "api".to_owned(),
                target: "api.test:443".to_owned(),
                ip: "127.0.0.1".parse().unwrap(),
                current: true,
                served_serial: "1a2b".to_owned(),
            },
            ServedSample {
                name: "api".to_owned(),
                target: "api.test:443".to_owned(),
                ip: "::1".parse().unwrap(),
                current: false,
                served_serial: "0f".to_owned(),
            },
        ],
        ..Snapshot::default()
    };
    let body = render_snapshot(&snapshot, NOW).unwrap();
    for line in [
        r#"certinel_certificate_renewal_window_info{name="api",source="ari"} 1"#,
        r#"certinel_certificate_ari_window_start_timestamp_seconds{name="api"} 1768003200"#,
        r#"certinel_certificate_ari_window_end_timestamp_seconds{name="api"} 1768176000"#,
        r#"certinel_certificate_ari_next_poll_timestamp_seconds{name="api"} 1767247200"#,
        r#"certinel_acme_profile_available{profile="shortlived"} 0"#,
        r#"certinel_clock_skew_seconds{source="acme"} -1.5"#,
        r#"certinel_certificate_served_current{name="api",target="api.test:443",ip="127.0.0.1"} 1"#,
        r#"certinel_certificate_served_current{name="api",target="api.test:443",ip="::1"} 0"#,
    ] {
        assert!(body.lines().any(|l| l == line), "missing {line}\n{body}");
    }
}
