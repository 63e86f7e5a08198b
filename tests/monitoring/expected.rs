//! What the end-to-end monitoring test expects from its setup: the alerts that must fire
//! (with labels naming their cause), the few alert expressions that must stay empty and
//! why, and the numbers the dashboard's count panels must show.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use super::setup::Setup;

/// Alerts whose expression the setup cannot make true, each with the reason; the test
/// asserts they return nothing, so an entry that starts firing must leave this list.
/// Their logic is covered by the promtool unit tests (alerts-renewal_test.yml).
pub const EXPECTED_EMPTY: &[(&str, &str)] = &[
    (
        "CertinelCrlStale",
        "the test's CRL is current (nextUpdate a day ahead); alerts_test.yml fires the rule",
    ),
    (
        "CertinelManagedCertificateRevoked",
        "Pebble's certificates name no CRL, and a revoked one is renewed at once; \
         alerts_test.yml fires the rule, managed_revocation tests the renewal",
    ),
    (
        "CertinelManagedCertificateExpiresIn7Days",
        "Pebble's certificates live 3 days, so the lifetime rules judge them, not days",
    ),
    (
        "CertinelManagedCertificateLifetimeLow",
        "every managed certificate is freshly issued, with most of its lifetime left",
    ),
    (
        "CertinelManagedCertificateLifetimeCritical",
        "every managed certificate is freshly issued, with most of its lifetime left",
    ),
    (
        "CertinelManagedCertificateExpiresIn21Days",
        "Pebble's certificates live 3 days, so the lifetime rules judge them, not days",
    ),
    (
        "CertinelRenewalFailing",
        "needs 3 failures in a row; certinel's backoff (5 min, doubling) puts the third \
         15 minutes after the first",
    ),
    (
        "CertinelRenewalBehind",
        "needs an issued certificate whose renewal then fails with a third of its lifetime \
         left, a day into a 3-day certificate",
    ),
    (
        "CertinelRenewalOverdue",
        "needs a renewal planned more than an hour ago and never attempted",
    ),
    (
        "CertinelAcmeServerErrors",
        "Pebble answers every request, never with a 5xx status",
    ),
    (
        "CertinelAcmeClockSkew",
        "the CA is Pebble on the same host, so its Date header agrees with certinel's clock",
    ),
    (
        "CertinelAcmeRequestsSlow",
        "Pebble answers on loopback in milliseconds, far from a 10 s 95th percentile",
    ),
];

/// The managed certificate certinel has Pebble issue at start, and the one it never can
/// (fixture monitoring.toml).
pub const ISSUED: &str = "short-lived";
/// See [`ISSUED`].
pub const UNISSUABLE: &str = "unissuable";
/// The managed certificate issued before certinel starts, whose verify target serves
/// another certificate.
pub const DRIFTED: &str = "drifted";
/// The managed certificate adopted from the CRL test CA (not revoked).
pub const ADOPTED: &str = "adopted";
/// The profile the ARI front advertises ([`ISSUED`] asks for it); [`UNISSUABLE`] asks for
/// `tlsclient`, which it does not advertise.
pub const ADVERTISED_PROFILE: &str = "shortlived";

/// Each alert that must fire, with labels that show it fired for the right cause.
pub fn firing_alerts(
    setup: &Setup,
    dead_certinel: SocketAddr,
) -> BTreeMap<String, Vec<(&'static str, String)>> {
    let target = |addr: SocketAddr| ("target", addr.to_string());
    let path = |path: &Path| ("path", path.display().to_string());
    let certinel = ("job", "certinel".to_owned());
    let certificate = |name: &str| ("name", name.to_owned());
    [
        (
            "CertinelEndpointCertificateExpiresIn7Days",
            vec![certinel.clone(), target(setup.soon)],
        ),
        (
            "CertinelEndpointCertificateExpiresIn21Days",
            vec![certinel.clone(), target(setup.late)],
        ),
        (
            "CertinelEndpointCertificateLifetimeLow",
            vec![certinel.clone(), target(setup.short_low)],
        ),
        (
            "CertinelEndpointCertificateLifetimeCritical",
            vec![certinel.clone(), target(setup.short_critical)],
        ),
        (
            "CertinelFileCertificateLifetimeLow",
            vec![path(&setup.short_low_file)],
        ),
        (
            "CertinelFileCertificateLifetimeCritical",
            vec![path(&setup.short_critical_file)],
        ),
        (
            "CertinelEndpointCertificateRevoked",
            vec![certinel.clone(), target(setup.revoked)],
        ),
        (
            "CertinelFileCertificateRevoked",
            vec![path(&setup.revoked_file)],
        ),
        (
            "CertinelFileCertificateExpiresIn7Days",
            vec![path(&setup.soon_file)],
        ),
        (
            "CertinelFileCertificateExpiresIn21Days",
            vec![path(&setup.late_file)],
        ),
        (
            "CertinelEndpointCertificateNotVerified",
            vec![certinel.clone(), target(setup.self_signed)],
        ),
        ("CertinelEndpointProbeFailing", vec![target(setup.closed)]),
        (
            "CertinelEndpointAddressesDisagree",
            vec![("target", format!("disagree.test:{}", setup.disagree_port))],
        ),
        ("CertinelFileUnreadable", vec![path(&setup.missing_file)]),
        (
            "CertinelEndpointSourceFileRejected",
            vec![("file", setup.broken_targets_file.display().to_string())],
        ),
        (
            "CertinelDown",
            vec![("instance", dead_certinel.to_string())],
        ),
        (
            "CertinelConfigReloadFailed",
            vec![("instance", setup.service.addr.to_string())],
        ),
        (
            "CertinelCertificateNotReady",
            vec![certinel.clone(), certificate(UNISSUABLE)],
        ),
        (
            "CertinelEndpointServingStaleCertificate",
            vec![certinel.clone(), certificate(DRIFTED), target(setup.soon)],
        ),
        (
            "CertinelAcmeProfileUnavailable",
            vec![certinel, ("profile", "tlsclient".to_owned())],
        ),
    ]
    .into_iter()
    .map(|(name, labels)| (name.to_owned(), labels))
    .collect()
}

/// The value each single-number panel must show, by title.
pub fn stat_values() -> BTreeMap<&'static str, f64> {
    [
        // 7 endpoints with a certificate (not the closed port), 5 readable files (the
        // revoked leaf of each included), and the issued, drifted and adopted managed
        // certificates (the unissuable one has no certificate).
        ("Certificates", 15.0),
        // The 3-day and two short-lived endpoints and files, and the two 3-day managed
        // certificates.
        ("Expire within 7 days", 8.0),
        ("Expire within 21 days", 10.0),
        ("Expire within 30 days", 10.0),
        ("Not verified", 1.0),
        ("Probes failing", 1.0),
        ("Addresses disagree", 1.0),
        ("certinel up", 1.0),
        ("Last configuration change", 0.0),
        ("Managed certificates", 4.0),
        ("Managed not ready", 1.0),
        ("Renewals failing", 1.0),
        ("ACME errors (30m)", 0.0),
        // The revoked endpoint and the revoked file; the adopted managed one is not.
        ("Revoked (CRL)", 2.0),
    ]
    .into_iter()
    .collect()
}

/// The `certinel_*` metric names in a PromQL expression, in order of appearance.
pub fn metric_names(expr: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("certinel_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(&tail[..end]);
        rest = &tail[end..];
    }
    names
}

#[test]
fn metric_names_finds_every_certinel_metric_and_nothing_else() {
    let expr = "time() - certinel_a_seconds{job=\"certinel\"} > 3 and on (name) up \
                unless certinel_b_total offset 30m";
    assert_eq!(
        metric_names(expr),
        ["certinel_a_seconds", "certinel_b_total"]
    );
}
