//! The `/` status page: every certificate certinel watches, soonest expiry first, coloured
//! by urgency. Pure: a snapshot and the time in, self-contained HTML out (no external
//! assets; every piece of text is escaped). The managed-certificates section is in
//! [`managed`].

use std::fmt::Write;

use time::OffsetDateTime;

use crate::escape::markup;
use crate::metrics::render::Snapshot;
use crate::report::days_between;

mod managed;

/// Days left below which a row is red.
pub const CRITICAL_DAYS: f64 = 7.0;
/// Days left below which a row is amber.
pub const WARNING_DAYS: f64 = 21.0;

/// One line of the page.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    /// `host:port [ip]` or the file path.
    source: String,
    /// Leaf subject, or what went wrong.
    subject: String,
    /// Days until expiry; `None` when no certificate could be read.
    days: Option<f64>,
    /// The leaf's notAfter, RFC 3339.
    not_after: String,
    /// Verification problem, if any.
    problem: Option<String>,
}

/// The whole page for `snapshot` at `now`.
pub fn render_page(snapshot: &Snapshot, now: OffsetDateTime) -> String {
    let mut rows = rows(snapshot, now);
    // Unreadable certificates first (we do not know how bad they are), then soonest expiry.
    rows.sort_by(|a, b| match (a.days, b.days) {
        (None, None) => a.source.cmp(&b.source),
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => x.total_cmp(&y).then_with(|| a.source.cmp(&b.source)),
    });
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>certinel</title><style>\
         body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{padding:.3em .8em;white-space:nowrap;border-bottom:1px solid #ddd;text-align:left}\
         .critical{background:#f8d0d0}.warning{background:#fbe9b7}.ok{background:#d8f0d8}\
         .unknown{background:#e0e0e0}</style></head><body>\n<h1>certinel</h1>\n",
    );
    let _ = writeln!(
        page,
        "<p>{} managed certificates, {} certificates seen on endpoints and in files; \
         <a href=\"/metrics\">metrics</a>.</p>",
        snapshot.certificates.len(),
        rows.len()
    );
    page.push_str(&managed::render_section(
        &snapshot.certificates,
        &snapshot.served,
        now,
    ));
    page.push_str(
        "<h2>Endpoints and files</h2>\n<table>\n<tr><th>Days left</th><th>Source</th><th>Subject</th><th>Not after</th>\
         <th>Problem</th></tr>\n",
    );
    for row in &rows {
        let days = match row.days {
            Some(days) => format!("{days:.1}"),
            None => "?".to_owned(),
        };
        let _ = writeln!(
            page,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            class(row),
            markup(&days),
            markup(&row.source),
            markup(&row.subject),
            markup(&row.not_after),
            markup(row.problem.as_deref().unwrap_or("")),
        );
    }
    page.push_str("</table>\n</body></html>\n");
    page
}

fn rows(snapshot: &Snapshot, now: OffsetDateTime) -> Vec<Row> {
    let mut rows = Vec::new();
    for report in &snapshot.endpoints {
        let target = report.endpoint.target.to_string();
        if let Some(error) = &report.resolve_error {
            rows.push(unreadable(target.clone(), error.to_string()));
        }
        for address in &report.addresses {
            let source = format!("{target} [{}]", address.ip);
            match &address.outcome {
                Ok(handshake) => {
                    let leaf = handshake.chain.leaf();
                    rows.push(Row {
                        source,
                        subject: leaf.subject.clone(),
                        days: Some(days_between(now, leaf.not_after)),
                        not_after: rfc3339(leaf.not_after),
                        problem: handshake
                            .verification
                            .reason
                            .map(|reason| reason.keyword().to_owned()),
                    });
                }
                Err(error) => rows.push(unreadable(source, error.to_string())),
            }
        }
    }
    for report in &snapshot.files {
        let source = report.path.display().to_string();
        match &report.outcome {
            Ok(chain) => {
                let leaf = chain.leaf();
                rows.push(Row {
                    source,
                    subject: leaf.subject.clone(),
                    days: Some(days_between(now, leaf.not_after)),
                    not_after: rfc3339(leaf.not_after),
                    problem: None,
                });
            }
            Err(error) => rows.push(unreadable(source, error.to_string())),
        }
    }
    rows
}

fn unreadable(source: String, problem: String) -> Row {
    Row {
        source,
        subject: String::new(),
        days: None,
        not_after: String::new(),
        problem: Some(problem),
    }
}

fn class(row: &Row) -> &'static str {
    match row.days {
        None => "unknown",
        Some(days) if days < CRITICAL_DAYS || row.problem.is_some() => "critical",
        Some(days) if days < WARNING_DAYS => "warning",
        Some(_) => "ok",
    }
}

/// `at` in RFC 3339 to the second (fractions would only add noise to the page).
fn rfc3339(at: OffsetDateTime) -> String {
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {

    use time::macros::datetime;

    use super::*;
    use crate::metrics::render::tests::{report, served, set_leaf_subject};
    use crate::scan::probe::ProbeError;

    const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    fn page(endpoints: Vec<crate::scan::probe::EndpointReport>) -> String {
        let snapshot = Snapshot::with_endpoints(endpoints);
        render_page(&snapshot, NOW)
    }

    #[test]
    fn rows_are_sorted_by_days_left_and_coloured() {
        let body = page(vec![
            served(
                "late.test:443",
                "127.0.0.1",
                datetime!(2026-06-01 00:00 UTC),
            ),
            served(
                "soon.test:443",
                "127.0.0.1",
                datetime!(2026-01-03 00:00 UTC),
            ),
            served("mid.test:443", "127.0.0.1", datetime!(2026-01-15 00:00 UTC)),
            report(
                "down.test:443",
                vec![("127.0.0.1", Err(ProbeError::Connect("refused".to_owned())))],
            ),
        ]);
        let order: Vec<usize> = ["down.test", "soon.test", "mid.test", "late.test"]
            .iter()
            .map(|name| body.find(name).unwrap())
            .collect();
        assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{body}");
        assert!(body.contains("<tr class=\"critical\"><td>2.0</td><td>soon.test:443 [127.0.0.1]"));
        assert!(body.contains("<tr class=\"warning\"><td>14.0</td>"));
        assert!(body.contains("<tr class=\"ok\"><td>151.0</td>"));
        assert!(body.contains("<tr class=\"unknown\"><td>?</td>"));
    }

    #[test]
    fn all_text_is_escaped() {
        let mut hostile = served("x.test:443", "127.0.0.1", datetime!(2026-06-01 00:00 UTC));
        set_leaf_subject(&mut hostile, "CN=<script>alert('x')</script>&\"");
        let body = page(vec![hostile]);
        assert!(!body.contains("<script>"));
        assert!(body.contains("CN=&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
    }

    #[test]
    fn managed_certificates_come_above_endpoints_and_files() {
        let snapshot = Snapshot {
            certificates: vec![crate::metrics::certificates::CertificateSnapshot {
                name: "api".to_owned(),
                ..Default::default()
            }],
            ..Snapshot::default()
        };
        let body = render_page(&snapshot, NOW);
        let managed = body.find("<h2>Managed certificates</h2>").unwrap();
        let endpoints = body.find("<h2>Endpoints and files</h2>").unwrap();
        assert!(managed < endpoints, "{body}");
        assert!(body.contains("<p>1 managed certificates, 0 certificates seen"));
    }

    #[test]
    fn page_has_no_external_assets() {
        let body = page(Vec::new());
        assert!(!body.contains("http://") && !body.contains("https://") && !body.contains("src="));
    }
}
