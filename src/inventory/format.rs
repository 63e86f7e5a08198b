//! Renders an [`Inventory`] as a plain-text table, JSON or Markdown. Pure: text in memory.

use std::fmt::Write as _;

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::escape::{Escaped, escape};
use crate::inventory::{
    Automation, Inventory, ManagedCertificate, MonitoredKind, RenewalRule, Revocation,
};

/// The output formats of `certinel inventory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned plain text for a terminal.
    Table,
    /// One pretty-printed JSON document.
    Json,
    /// Markdown tables, for a runbook or a ticket.
    Markdown,
}

/// Renders `inventory` in `format`; the text ends with a newline.
pub fn render(inventory: &Inventory, format: OutputFormat) -> String {
    match format {
        OutputFormat::Table => render_table(inventory),
        OutputFormat::Json => render_json(inventory),
        OutputFormat::Markdown => render_markdown(inventory),
    }
}

/// The inventory as pretty-printed JSON.
pub fn render_json(inventory: &Inventory) -> String {
    // Serialising plain structs with string keys cannot fail; fall back to an empty object
    // rather than panicking should that ever change.
    let mut text = serde_json::to_string_pretty(inventory).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

/// The inventory as aligned plain text: one block per managed certificate, then a table of
/// the monitored but unmanaged certificates.
pub fn render_table(inventory: &Inventory) -> String {
    let mut out = String::new();
    for certificate in &inventory.managed {
        let _ = writeln!(out, "certificate {}", certificate.name);
        let rows = checklist(certificate);
        let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
        for (label, answer) in rows {
            let _ = writeln!(
                out,
                "  {:<width$}  {}",
                format!("{label}:"),
                Escaped(&answer),
                width = width + 1
            );
        }
        out.push('\n');
    }
    out.push_str("monitored, not managed\n");
    if inventory.monitored_not_managed.is_empty() {
        out.push_str("  (none)\n");
        return out;
    }
    let mut rows = vec![monitored_header()];
    rows.extend(monitored_rows(inventory));
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    out
}

/// The inventory as Markdown: a two-column table per managed certificate, then a table of
/// the monitored but unmanaged certificates.
pub fn render_markdown(inventory: &Inventory) -> String {
    let mut out = String::from("# Certificate inventory\n\n");
    let _ = writeln!(out, "Generated {}.\n", timestamp(inventory.generated_at));
    for certificate in &inventory.managed {
        let _ = writeln!(out, "## {}\n", certificate.name);
        out.push_str("| Question | Answer |\n|---|---|\n");
        for (label, answer) in checklist(certificate) {
            let _ = writeln!(out, "| {label} | {} |", markdown_cell(&escape(&answer)));
        }
        out.push('\n');
    }
    out.push_str("## Monitored, not managed\n\n");
    if inventory.monitored_not_managed.is_empty() {
        out.push_str("None.\n");
        return out;
    }
    let header = monitored_header();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in monitored_rows(inventory) {
        let cells: Vec<String> = row.iter().map(|cell| markdown_cell(cell)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// A duration in the largest unit that divides it: `90d`, `36h`, `5m`, `17s`.
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.whole_seconds();
    match seconds {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The checklist questions and their answers for one certificate, in reading order.
fn checklist(certificate: &ManagedCertificate) -> Vec<(&'static str, String)> {
    let rule = match certificate.renewal_rule {
        RenewalRule::RenewBefore { before } => {
            format!("renew {} before expiry", human_duration(before))
        }
        RenewalRule::Percentage { percent } => {
            format!("renew when {percent}% of the lifetime remains")
        }
        RenewalRule::Default => {
            "renew when a third of the lifetime remains (half if ≤ 10d)".to_owned()
        }
    };
    let next_renewal = match certificate.next_renewal {
        Some(at) => format!("{rule}; next renewal {}", timestamp(at)),
        None => format!("{rule}; next renewal at once (no certificate yet)"),
    };
    let failure = &certificate.on_failure;
    let mut on_failure = format!(
        "retry with backoff {} → {}",
        human_duration(failure.backoff_min),
        human_duration(failure.backoff_max)
    );
    if failure.rollback_on_deploy_failure {
        on_failure.push_str("; rollback to previous on deploy failure");
    }
    if !failure.alerts.is_empty() {
        let _ = write!(on_failure, "; alerts: {}", failure.alerts.join(", "));
    }
    vec![
        ("names", certificate.dns_names.join(", ")),
        ("key type", certificate.key_type.clone()),
        (
            "issuer",
            certificate
                .issuer
                .clone()
                .unwrap_or_else(|| "(not issued yet)".to_owned()),
        ),
        ("stored at", certificate.stored_at.clone()),
        (
            "lifetime",
            certificate
                .lifetime
                .map_or_else(|| "(not issued yet)".to_owned(), human_duration),
        ),
        ("renewal", next_renewal),
        ("automated", automated(&certificate.automation)),
        ("revocation", revocation(certificate.revocation.as_ref())),
        (
            "consumers notified by",
            if certificate.deploy_commands.is_empty() {
                "nothing (no deploy commands)".to_owned()
            } else {
                certificate.deploy_commands.join("; ")
            },
        ),
        ("on failure", on_failure),
        (
            "overlap",
            certificate.overlap.map_or_else(
                || "(no previous version)".to_owned(),
                |overlap| format!("{} with both versions valid", human_duration(overlap)),
            ),
        ),
        ("rotation log", certificate.audit_log.clone()),
        (
            "last rotation",
            certificate
                .last_rotation
                .map_or_else(|| "never".to_owned(), timestamp),
        ),
    ]
}

fn monitored_header() -> Vec<String> {
    ["target", "kind", "names", "not after", "days left"]
        .map(str::to_owned)
        .to_vec()
}

fn monitored_rows(inventory: &Inventory) -> Vec<Vec<String>> {
    inventory
        .monitored_not_managed
        .iter()
        .map(|monitored| {
            let kind = match monitored.kind {
                MonitoredKind::Endpoint => "endpoint",
                MonitoredKind::File => "file",
            };
            // Names come from scanned certificates: never let their control bytes through.
            vec![
                escape(&monitored.target),
                kind.to_owned(),
                escape(&monitored.dns_names.join(", ")),
                timestamp(monitored.not_after),
                monitored.days_left.to_string(),
            ]
        })
        .collect()
}

fn timestamp(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// Escapes the characters that would break a Markdown table cell.
fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
/// The "revocation" answer: the last CRL verdict about the current version.
fn revocation(revocation: Option<&Revocation>) -> String {
    let Some(revocation) = revocation else {
        return "not checked (no CRL verdict yet, or the leaf names no CRL)".to_owned();
    };
    let checked = format!(
        "per {} (since {})",
        revocation.crl,
        timestamp(revocation.checked_at)
    );
    match revocation.revoked_at {
        None => format!("not revoked {checked}"),
        Some(at) => {
            let reason = revocation
                .reason_code
                .map(|code| format!(", reason code {code}"))
                .unwrap_or_default();
            format!(
                "REVOKED at {}{reason} {checked}; renewed at once",
                timestamp(at)
            )
        }
    }
}

/// The "automated" answer: the first CA's directory and the challenge, then for several
/// CAs their order, and which one issued the current version.
fn automated(automation: &Automation) -> String {
    let mut text = format!(
        "yes: ACME {} ({})",
        automation.directory, automation.challenge
    );
    if automation.ca.len() > 1 {
        text.push_str(&format!("; CAs in order: {}", automation.ca.join(", ")));
    }
    if let Some(issued_by) = &automation.issued_by {
        text.push_str(&format!("; current issued by {issued_by}"));
    }
    text
}
