//! `certinel status`: every managed certificate's version, expiry, next renewal, the rule
//! that placed it (`ari` or `renew_before`) with the CA's window and next poll, and the last
//! outcome, as a table or as JSON. Reads the state directory and writes nothing.

use std::path::PathBuf;

use anyhow::Context;
use time::OffsetDateTime;

use crate::cli::ExitCode;
use crate::cli::renew::rfc3339;
use crate::config;
use crate::renew::{CertificateStatus, LastOutcome};

/// Arguments of `certinel status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = StatusOutput::Table)]
    pub output: StatusOutput,
}

/// Output formats of `certinel status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusOutput {
    /// A table for people.
    Table,
    /// A JSON array, one object per certificate.
    Json,
}

/// Runs `certinel status`.
pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = config::load(&args.config)?;
    let statuses = crate::cli::state_store::renewer(&config)?
        .status(OffsetDateTime::now_utc())
        .context("cannot read the certificate state")?;
    match args.output {
        StatusOutput::Json => println!("{}", json(statuses)?),
        StatusOutput::Table => print!("{}", table(&statuses)),
    }
    Ok(ExitCode(0))
}

/// The statuses as a pretty JSON array, times in RFC 3339 at second precision.
pub fn json(mut statuses: Vec<CertificateStatus>) -> serde_json::Result<String> {
    for status in &mut statuses {
        status.next_renewal = whole_seconds(status.next_renewal);
        status.not_after = status.not_after.map(whole_seconds);
    }
    serde_json::to_string_pretty(&statuses)
}

/// `time` without its fraction of a second.
fn whole_seconds(time: OffsetDateTime) -> OffsetDateTime {
    time.replace_nanosecond(0).unwrap_or(time)
}

/// The status table, one row per certificate, columns padded to their widest cell.
pub fn table(statuses: &[CertificateStatus]) -> String {
    let header = [
        "NAME",
        "VERSION",
        "SERIAL",
        "NOT AFTER",
        "DAYS LEFT",
        "NEXT RENEWAL",
        "REASON",
        "RULE",
        "ARI WINDOW",
        "ARI NEXT POLL",
        "LAST",
        "FAILURES",
        "REVOKED",
        "CA",
    ];
    let dash = || "-".to_owned();
    let rows: Vec<[String; 14]> = statuses
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.version.map_or_else(dash, |v| v.to_string()),
                s.serial.clone().unwrap_or_else(dash),
                s.not_after.map_or_else(dash, rfc3339),
                s.days_left.map_or_else(dash, |d| d.to_string()),
                rfc3339(s.next_renewal),
                s.next_renewal_reason.as_str().to_owned(),
                s.renewal_rule.as_str().to_owned(),
                match (s.ari_window_start, s.ari_window_end) {
                    (Some(start), Some(end)) => format!("{}..{}", rfc3339(start), rfc3339(end)),
                    _ => dash(),
                },
                s.ari_next_poll.map_or_else(dash, rfc3339),
                s.last_outcome.map_or("-", LastOutcome::as_str).to_owned(),
                s.consecutive_failures.to_string(),
                revoked_cell(s),
                s.ca.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

/// `-` before a CRL verdict, `no`, or `yes` with the revocation time.
fn revoked_cell(status: &CertificateStatus) -> String {
    match &status.revocation {
        None => "-".to_owned(),
        Some(check) => match check.revoked_at {
            None => "no".to_owned(),
            Some(at) => format!("yes@{}", rfc3339(at)),
        },
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::schedule::plan::{Reason, Rule};

    fn jittered_status() -> CertificateStatus {
        CertificateStatus {
            name: "api".to_owned(),
            version: None,
            serial: None,
            not_before: None,
            not_after: None,
            issuer: None,
            ca: None,
            key_type: None,
            dns_names: Vec::new(),
            matches_config: false,
            ready: false,
            days_left: None,
            next_renewal: datetime!(2026-05-01 12:00:07.123456789 UTC),
            next_renewal_reason: Reason::Expired,
            renewal_rule: Rule::RenewBefore,
            ari_window_start: None,
            ari_window_end: None,
            ari_next_poll: None,
            ari_error: None,
            ari_explanation_url: None,
            last_outcome: None,
            consecutive_failures: 0,
            last_error: None,
            inflight: None,
            last_success_at: None,
            last_attempt_at: None,
            revocation: None,
        }
    }

    #[test]
    fn table_prints_the_next_renewal_in_rfc3339_at_second_precision() {
        let table = table(&[jittered_status()]);
        let row = table.lines().nth(1).unwrap();
        assert!(row.contains(" 2026-05-01T12:00:07Z "), "{row}");
    }

    #[test]
    fn reason_rule_and_outcome_print_as_the_same_words_in_the_table_and_json() {
        let status = CertificateStatus {
            next_renewal_reason: Reason::RateLimited,
            renewal_rule: Rule::Ari,
            last_outcome: Some(LastOutcome::Failure),
            ..jittered_status()
        };
        let row = table(std::slice::from_ref(&status));
        let row: Vec<&str> = row.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[6..8], ["rate_limited", "ari"], "{row:?}");
        assert_eq!(row[10], "failure", "{row:?}");
        let json = json(vec![status]).unwrap();
        for field in [
            "\"next_renewal_reason\": \"rate_limited\"",
            "\"renewal_rule\": \"ari\"",
            "\"last_outcome\": \"failure\"",
        ] {
            assert!(json.contains(field), "{field} in {json}");
        }
    }

    #[test]
    fn the_issuing_ca_prints_in_the_last_column_and_in_json() {
        let status = CertificateStatus {
            ca: Some("backup".to_owned()),
            ..jittered_status()
        };
        let table = table(std::slice::from_ref(&status));
        let mut lines = table.lines();
        assert!(lines.next().unwrap().ends_with(" CA"), "{table}");
        assert!(lines.next().unwrap().ends_with(" backup"), "{table}");
        let json = json(vec![status]).unwrap();
        assert!(json.contains("\"ca\": \"backup\""), "{json}");
    }

    #[test]
    fn a_revoked_current_version_prints_in_the_revoked_column_and_in_json() {
        let status = CertificateStatus {
            revocation: Some(crate::schedule::history::RevocationCheck {
                serial: "0a".to_owned(),
                url: "http://crl.test/1.crl".to_owned(),
                checked_at: datetime!(2026-05-01 12:00 UTC),
                revoked_at: Some(datetime!(2026-05-01 11:00 UTC)),
                reason_code: Some(1),
            }),
            next_renewal_reason: Reason::Revoked,
            ..jittered_status()
        };
        let table = table(std::slice::from_ref(&status));
        let mut lines = table.lines();
        assert!(lines.next().unwrap().contains(" REVOKED "), "{table}");
        let row = lines.next().unwrap();
        assert!(row.contains(" yes@2026-05-01T11:00:00Z "), "{table}");
        assert!(row.contains(" revoked "), "{table}");
        let json = json(vec![status]).unwrap();
        assert!(json.contains("\"reason_code\": 1"), "{json}");
        assert!(
            json.contains("\"next_renewal_reason\": \"revoked\""),
            "{json}"
        );
    }

    #[test]
    fn every_plan_reason_serialises_as_its_stable_name() {
        for reason in [
            Reason::Missing,
            Reason::Expired,
            Reason::NamesChanged,
            Reason::KeyTypeChanged,
            Reason::WindowOpen,
            Reason::Scheduled,
            Reason::Backoff,
            Reason::RetryAfter,
            Reason::RateLimited,
            Reason::RolloutFailed,
            Reason::Revoked,
        ] {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
        }
        for rule in [Rule::Ari, Rule::RenewBefore] {
            let json = serde_json::to_string(&rule).unwrap();
            assert_eq!(json, format!("\"{}\"", rule.as_str()));
        }
    }

    #[test]
    fn json_prints_the_next_renewal_in_rfc3339_at_second_precision() {
        let json = json(vec![jittered_status()]).unwrap();
        assert!(
            json.contains("\"next_renewal\": \"2026-05-01T12:00:07Z\""),
            "{json}"
        );
    }
}
