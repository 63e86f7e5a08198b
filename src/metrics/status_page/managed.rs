//! The "Managed certificates" section of the status page: one row per `[[certificate]]`
//! with its readiness, current version, days left, next renewal, last outcome and what its
//! verify targets serve. Pure, like the rest of the page: the snapshot and the time come in.

use std::fmt::Write;

use time::OffsetDateTime;

use super::{CRITICAL_DAYS, WARNING_DAYS, rfc3339};
use crate::escape::markup;
use crate::metrics::certificates::{CertificateSnapshot, ServedSample};
use crate::report::days_between;

/// Serials longer than this many hex digits are shortened on the page (the full serial is
/// in the cell's tooltip and in `certinel_certificate_info`).
const SERIAL_SHOWN: usize = 12;

/// The section's HTML (heading and table), or nothing when no certificate is managed.
pub(super) fn render_section(
    certificates: &[CertificateSnapshot],
    served: &[ServedSample],
    now: OffsetDateTime,
) -> String {
    if certificates.is_empty() {
        return String::new();
    }
    let mut ordered: Vec<&CertificateSnapshot> = certificates.iter().collect();
    // Certificates without a version first (nothing is served yet), then soonest expiry,
    // the same order as the table of endpoints and files.
    ordered.sort_by(|a, b| {
        match (days_left(a, now), days_left(b, now)) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.total_cmp(&y),
        }
        .then_with(|| a.name.cmp(&b.name))
    });
    let mut section = String::from(
        "<h2>Managed certificates</h2>\n<table>\n<tr><th>Days left</th><th>Certificate</th>\
         <th>Ready</th><th>Version</th><th>Serial</th><th>Next renewal</th>\
         <th>Last outcome</th><th>Served</th></tr>\n",
    );
    for certificate in ordered {
        let samples: Vec<&ServedSample> = served
            .iter()
            .filter(|sample| sample.name == certificate.name)
            .collect();
        section.push_str(&row(certificate, &samples, now));
    }
    section.push_str("</table>\n");
    section
}

/// One `<tr>` for `certificate`, whose verify targets produced `samples`.
fn row(
    certificate: &CertificateSnapshot,
    samples: &[&ServedSample],
    now: OffsetDateTime,
) -> String {
    let ready = certificate.is_ready(now);
    let days = days_left(certificate, now);
    // A revoked version is as bad as one an address does not serve: clients refuse it.
    let revoked = certificate
        .revocation
        .is_some_and(|revocation| revocation.revoked_at.is_some());
    let stale = samples.iter().any(|sample| !sample.current);
    let (version, serial, serial_title) = match &certificate.current {
        Some(current) => (
            current.version.as_str(),
            short_serial(&current.serial),
            current.serial.as_str(),
        ),
        None => ("none", String::new(), ""),
    };
    let mut html = String::new();
    let _ = writeln!(
        html,
        "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        class(
            days,
            ready,
            stale || revoked,
            certificate.consecutive_failures
        ),
        days.map_or_else(|| "?".to_owned(), |days| format!("{days:.1}")),
        markup(&certificate.name),
        match (revoked, ready) {
            (true, _) => "revoked",
            (false, true) => "yes",
            (false, false) => "no",
        },
        markup(version),
        markup(serial_title),
        markup(&serial),
        lines(&next_renewal(certificate)),
        lines(&last_outcome(certificate)),
        lines(&served_summary(samples)),
    );
    html
}

fn days_left(certificate: &CertificateSnapshot, now: OffsetDateTime) -> Option<f64> {
    let current = certificate.current.as_ref()?;
    Some(days_between(now, current.not_after))
}

/// Red below [`CRITICAL_DAYS`], when not ready, or when clients are `refused` it (an
/// address serves a stale version, or the current one is revoked); amber below
/// [`WARNING_DAYS`] or while renewals fail; grey without a version.
fn class(days: Option<f64>, ready: bool, refused: bool, failures: u32) -> &'static str {
    match days {
        None => "unknown",
        Some(days) if days < CRITICAL_DAYS || !ready || refused => "critical",
        Some(days) if days < WARNING_DAYS || failures > 0 => "warning",
        Some(_) => "ok",
    }
}

/// The first [`SERIAL_SHOWN`] hex digits and an ellipsis, or the whole serial if short.
fn short_serial(serial: &str) -> String {
    match serial.char_indices().nth(SERIAL_SHOWN) {
        Some((cut, _)) => format!("{}…", &serial[..cut]),
        None => serial.to_owned(),
    }
}

/// The planned time and the rule that placed it, or why nothing is scheduled.
fn next_renewal(certificate: &CertificateSnapshot) -> Vec<String> {
    let Some(at) = certificate.renewal_scheduled else {
        return vec!["not scheduled".to_owned()];
    };
    let mut lines = vec![rfc3339(at)];
    lines.extend(certificate.renewal_rule.map(|rule| format!("by {rule}")));
    lines
}

/// `success` or `failure (3 consecutive)`, then when; or `none yet`.
fn last_outcome(certificate: &CertificateSnapshot) -> Vec<String> {
    let (outcome, at) = match certificate.consecutive_failures {
        0 => ("success".to_owned(), certificate.last_success_at),
        failures => (
            format!("failure ({failures} consecutive)"),
            certificate.last_attempt_at,
        ),
    };
    match at {
        Some(at) => vec![outcome, rfc3339(at)],
        None if certificate.consecutive_failures == 0 => vec!["none yet".to_owned()],
        None => vec![outcome],
    }
}

/// `served: 2/2 addresses current`, then one line per stale address saying what it serves;
/// nothing without samples.
fn served_summary(samples: &[&ServedSample]) -> Vec<String> {
    if samples.is_empty() {
        return Vec::new();
    }
    let current = samples.iter().filter(|sample| sample.current).count();
    let noun = if samples.len() == 1 {
        "address"
    } else {
        "addresses"
    };
    let mut lines = vec![format!(
        "served: {current}/{} {noun} current",
        samples.len()
    )];
    for sample in samples.iter().filter(|sample| !sample.current) {
        lines.push(format!(
            "stale: {} [{}] serves {}",
            sample.target,
            sample.ip,
            short_serial(&sample.served_serial)
        ));
    }
    lines
}

/// Escapes each line and separates them with `<br>`, keeping the columns narrow.
fn lines(lines: &[String]) -> String {
    lines
        .iter()
        .map(|line| markup(line))
        .collect::<Vec<_>>()
        .join("<br>")
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::metrics::certificates::CurrentVersion;

    const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    /// A ready certificate `name`, version v0002, expiring `days` after [`NOW`], renewed
    /// successfully, next renewal planned by `renew_before`.
    fn certificate(name: &str, days: i64) -> CertificateSnapshot {
        CertificateSnapshot {
            name: name.to_owned(),
            current: Some(CurrentVersion {
                version: "v0002".to_owned(),
                serial: "0a1b2c3d4e5f60718293a4b5c6d7e8f9".to_owned(),
                issuer: "CN=test CA".to_owned(),
                ca: "acme".to_owned(),
                key_type: "ecdsa-p256".to_owned(),
                dns_names: vec![format!("{name}.test")],
                not_before: NOW - time::Duration::days(30),
                not_after: NOW + time::Duration::days(days),
            }),
            matches_config: true,
            renewal_scheduled: Some(datetime!(2026-02-01 12:30:15.25 UTC)),
            renewal_rule: Some("renew_before"),
            last_success_at: Some(datetime!(2025-12-02 00:00 UTC)),
            last_attempt_at: Some(datetime!(2025-12-02 00:00 UTC)),
            ..CertificateSnapshot::default()
        }
    }

    fn sample(name: &str, ip: &str, current: bool) -> ServedSample {
        ServedSample {
            name: name.to_owned(),
            target: format!("{name}.test:443"),
            ip: ip.parse().unwrap(),
            current,
            served_serial: if current {
                "0a1b2c3d4e5f60718293a4b5c6d7e8f9".to_owned()
            } else {
                "ffeeddccbbaa99887766".to_owned()
            },
        }
    }

    /// Renders the section and asserts that every fragment of `expected` is in it.
    fn check(certificates: &[CertificateSnapshot], served: &[ServedSample], expected: &[&str]) {
        check_case("the section", certificates, served, expected);
    }

    /// [`check`], naming `case` when a fragment is missing.
    fn check_case(
        case: &str,
        certificates: &[CertificateSnapshot],
        served: &[ServedSample],
        expected: &[&str],
    ) {
        let section = render_section(certificates, served, NOW);
        for fragment in expected {
            assert!(
                section.contains(fragment),
                "{case}: missing {fragment:?} in:\n{section}"
            );
        }
    }

    /// One certificate, changed from [`certificate`], and what its row must show.
    struct Row {
        /// What the case shows; printed when it fails.
        name: &'static str,
        certificate: CertificateSnapshot,
        expected: &'static [&'static str],
    }

    #[test]
    fn ready_certificate_shows_version_short_serial_next_renewal_and_last_success() {
        check(
            &[certificate("api", 60)],
            &[],
            &[
                "<h2>Managed certificates</h2>",
                "<tr class=\"ok\"><td>60.0</td><td>api</td><td>yes</td><td>v0002</td>",
                "<td title=\"0a1b2c3d4e5f60718293a4b5c6d7e8f9\">0a1b2c3d4e5f…</td>",
                "<td>2026-02-01T12:30:15Z<br>by renew_before</td>",
                "<td>success<br>2025-12-02T00:00:00Z</td><td></td></tr>",
            ],
        );
    }

    #[test]
    fn days_left_use_the_endpoint_thresholds() {
        let mut unissued = certificate("new", 0);
        unissued.current = None;
        unissued.renewal_scheduled = None;
        unissued.last_success_at = None;
        unissued.last_attempt_at = None;
        check(
            &[
                certificate("late", 60),
                certificate("soon", 3),
                certificate("mid", 14),
                unissued,
            ],
            &[],
            &[
                "<tr class=\"critical\"><td>3.0</td><td>soon</td>",
                "<tr class=\"warning\"><td>14.0</td><td>mid</td>",
                "<tr class=\"ok\"><td>60.0</td><td>late</td>",
                "<tr class=\"unknown\"><td>?</td><td>new</td><td>no</td><td>none</td>\
                 <td title=\"\"></td><td>not scheduled</td><td>none yet</td>",
            ],
        );
    }

    #[test]
    fn rows_are_sorted_unissued_first_then_by_days_left() {
        let mut unissued = certificate("zz-new", 0);
        unissued.current = None;
        let section = render_section(
            &[
                certificate("a-late", 60),
                certificate("b-soon", 3),
                unissued,
            ],
            &[],
            NOW,
        );
        let order: Vec<usize> = ["zz-new", "b-soon", "a-late"]
            .iter()
            .map(|name| section.find(name).unwrap())
            .collect();
        assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{section}");
    }

    #[test]
    fn a_revoked_failing_or_drifted_certificate_says_so_and_colours_its_row() {
        let rows = [
            Row {
                name: "a revoked current version: revoked, red",
                certificate: CertificateSnapshot {
                    revocation: Some(crate::metrics::certificates::ManagedRevocation {
                        revoked_at: Some(datetime!(2025-12-31 23:00 UTC)),
                        reason_code: Some(1),
                    }),
                    ..certificate("api", 60)
                },
                expected: &["<tr class=\"critical\"><td>60.0</td><td>api</td><td>revoked</td>"],
            },
            Row {
                name: "failing renewals: consecutive failures, amber",
                certificate: CertificateSnapshot {
                    consecutive_failures: 3,
                    last_attempt_at: Some(datetime!(2025-12-31 23:00 UTC)),
                    renewal_rule: Some("ari"),
                    ..certificate("api", 60)
                },
                expected: &[
                    "<tr class=\"warning\"><td>60.0</td>",
                    "<td>2026-02-01T12:30:15Z<br>by ari</td>",
                    "<td>failure (3 consecutive)<br>2025-12-31T23:00:00Z</td>",
                ],
            },
            Row {
                name: "not matching the config: not ready, red",
                certificate: CertificateSnapshot {
                    matches_config: false,
                    ..certificate("api", 60)
                },
                expected: &["<tr class=\"critical\"><td>60.0</td><td>api</td><td>no</td>"],
            },
        ];
        for row in rows {
            check_case(row.name, &[row.certificate], &[], row.expected);
        }
    }

    #[test]
    fn served_samples_count_current_addresses() {
        check(
            &[certificate("api", 60), certificate("web", 60)],
            &[
                sample("api", "127.0.0.1", true),
                sample("api", "::1", true),
                sample("web", "127.0.0.1", true),
            ],
            &[
                "<td>served: 2/2 addresses current</td>",
                "<td>served: 1/1 address current</td>",
            ],
        );
    }

    #[test]
    fn stale_addresses_are_listed_and_turn_the_row_red() {
        check(
            &[certificate("api", 60)],
            &[
                sample("api", "127.0.0.1", true),
                sample("api", "127.0.0.2", false),
            ],
            &[
                "<tr class=\"critical\"><td>60.0</td>",
                "<td>served: 1/2 addresses current<br>\
                 stale: api.test:443 [127.0.0.2] serves ffeeddccbbaa…</td>",
            ],
        );
    }

    #[test]
    fn names_versions_and_verify_targets_are_escaped() {
        let mut hostile = certificate("<script>alert('x')</script>", 60);
        if let Some(current) = &mut hostile.current {
            current.version = "v\"1&".to_owned();
        }
        let mut served = sample("<script>alert('x')</script>", "127.0.0.1", false);
        served.target = "<b>:443".to_owned();
        let section = render_section(&[hostile], &[served], NOW);
        assert!(
            !section.contains("<script>") && !section.contains("<b>"),
            "{section}"
        );
        assert!(
            section.contains("stale: &lt;b&gt;:443 [127.0.0.1]"),
            "{section}"
        );
        assert!(section.contains("<td>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</td>"));
        assert!(section.contains("<td>v&quot;1&amp;</td>"));
    }

    #[test]
    fn no_managed_certificates_no_section() {
        assert_eq!(render_section(&[], &[sample("api", "::1", true)], NOW), "");
    }
}
