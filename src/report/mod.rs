//! Turns scan results into one row per endpoint address or file, each with a
//! monitoring-plugin status and a stable reason keyword. Pure: `now` is a parameter.
//!
//! Rendering lives in [`table`] (for people) and [`json`] (one object per line).

pub mod json;
pub mod table;

use std::time::Duration;

use time::OffsetDateTime;

use crate::scan::files::FileReport;
use crate::scan::inspect::{CertFacts, ChainFacts};
use crate::scan::probe::{EndpointReport, Handshake};
use crate::scan::verify::Reason;

mod revocation;

/// Monitoring-plugin status of one row, and of a whole run.
///
/// Ordered by severity for the overall result: OK < WARNING < UNKNOWN < CRITICAL. A
/// certificate we could not read is less alarming than one we know is broken, and more
/// alarming than one that merely expires soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Everything is fine.
    Ok,
    /// Expires within the warning threshold, or a lint such as wrong chain order.
    Warning,
    /// No certificate could be obtained (DNS, connect, timeout, STARTTLS, handshake, file).
    Unknown,
    /// Expired, untrusted, wrong name, or expires within the critical threshold.
    Critical,
}

impl Status {
    /// The process exit code of the monitoring-plugin convention.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    /// `OK`, `WARNING`, `CRITICAL` or `UNKNOWN`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

/// When a valid certificate counts as expiring soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// WARNING when the chain expires within this.
    pub warn: Duration,
    /// CRITICAL when the chain expires within this.
    pub crit: Duration,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            warn: Duration::from_secs(21 * 86_400),
            crit: Duration::from_secs(7 * 86_400),
        }
    }
}

/// What a row describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// One address of a live endpoint (no address when resolution failed).
    Endpoint {
        /// `host:port` as configured.
        target: String,
        /// The address probed.
        ip: Option<std::net::IpAddr>,
        /// The SNI name, when set explicitly.
        sni: Option<String>,
        /// Addresses of the target left unprobed beyond `[scanner] max_addresses`.
        addresses_truncated: usize,
    },
    /// A certificate file.
    File {
        /// The file's path.
        path: String,
    },
}

/// One line of output: an endpoint address or a file, with its verdict.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was checked.
    pub subject: Subject,
    /// The verdict.
    pub status: Status,
    /// Stable keyword: `ok`, `expiring_soon`, a verification [`Reason`] keyword, a probe
    /// error keyword (`dns`, `connect`, `timeout`, `starttls`, `handshake`), `addresses_disagree`,
    /// `client_cert_expiring_soon`, `client_cert_expired`, `file`, or from the CRL watch
    /// `revoked` (critical), `crl_stale` or `crl_error` (warnings).
    pub reason: &'static str,
    /// Human-readable detail.
    pub detail: String,
    /// Fractional days until the chain's earliest notAfter (negative once expired).
    pub days_left: Option<f64>,
    /// The chain as presented or stored, when one was obtained.
    pub chain: Option<ChainFacts>,
    /// The handshake, for endpoint rows that completed one.
    pub handshake: Option<HandshakeSummary>,
    /// Probe time in milliseconds, for endpoint rows.
    pub duration_ms: Option<u64>,
}

impl Row {
    /// An `unknown` row: nothing was obtained to judge, `reason` and `detail` say why.
    fn unknown(
        subject: Subject,
        reason: &'static str,
        detail: String,
        duration_ms: Option<u64>,
    ) -> Row {
        Row {
            subject,
            status: Status::Unknown,
            reason,
            detail,
            days_left: None,
            chain: None,
            handshake: None,
            duration_ms,
        }
    }
}

/// The parts of a handshake the outputs show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeSummary {
    /// `TLSv1.3`, `TLSv1.2`.
    pub tls_version: String,
    /// IANA cipher suite name.
    pub cipher_suite: String,
    /// Whether the chain verified for the name.
    pub verified: bool,
}

/// The worst status among `rows`; OK for no rows.
pub fn overall(rows: &[Row]) -> Status {
    rows.iter()
        .map(|row| row.status)
        .max()
        .unwrap_or(Status::Ok)
}

/// One row per probed address of `report` (one row when resolution failed).
pub fn endpoint_rows(
    report: &EndpointReport,
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> Vec<Row> {
    let target = report.endpoint.target.to_string();
    let sni = report.endpoint.probe.sni.clone();
    let subject = |ip| Subject::Endpoint {
        target: target.clone(),
        ip,
        sni: sni.clone(),
        addresses_truncated: report.addresses_truncated,
    };
    if let Some(error) = &report.resolve_error {
        return vec![Row::unknown(
            subject(None),
            error.keyword(),
            error.to_string(),
            None,
        )];
    }
    report
        .addresses
        .iter()
        .map(|address| {
            let duration_ms = Some(u64::try_from(address.duration.as_millis()).unwrap_or(u64::MAX));
            match &address.outcome {
                Err(error) => Row::unknown(
                    subject(Some(address.ip)),
                    error.keyword(),
                    error.to_string(),
                    duration_ms,
                ),
                Ok(handshake) => {
                    let (status, reason, detail) = judge_handshake(
                        handshake,
                        report.client_cert.as_ref(),
                        report.addresses_disagree,
                        thresholds,
                        now,
                    );
                    Row {
                        subject: subject(Some(address.ip)),
                        status,
                        reason,
                        detail,
                        days_left: Some(days_between(now, handshake.chain.earliest_not_after)),
                        chain: Some(handshake.chain.clone()),
                        handshake: Some(HandshakeSummary {
                            tls_version: handshake.tls_version.clone(),
                            cipher_suite: handshake.cipher_suite.clone(),
                            verified: handshake.verification.verified,
                        }),
                        duration_ms,
                    }
                }
            }
        })
        .collect()
}

/// The row of one certificate file. Files are judged on validity dates only: there is no
/// server name to check and no handshake.
pub fn file_row(report: &FileReport, thresholds: Thresholds, now: OffsetDateTime) -> Row {
    let subject = Subject::File {
        path: report.path.display().to_string(),
    };
    match &report.outcome {
        Err(error) => Row::unknown(subject, "file", error.to_string(), None),
        Ok(chain) => {
            let revocation = report.revocation.as_ref().map(revocation::judge);
            let (status, reason, detail) =
                match (revocation, judge_validity(chain, thresholds, now)) {
                    (Some(revoked @ (Status::Critical, ..)), _) => revoked,
                    (_, validity) if validity.0 != Status::Ok => validity,
                    (Some(crl_warning @ (Status::Warning, ..)), _) => crl_warning,
                    (_, (Status::Ok, ..)) if !chain.in_order => (
                        Status::Warning,
                        Reason::WrongChainOrder.keyword(),
                        "certificates are not in issuing order (leaf first)".to_owned(),
                    ),
                    (_, validity) => validity,
                };
            Row {
                subject,
                status,
                reason,
                detail,
                days_left: Some(days_between(now, chain.earliest_not_after)),
                chain: Some(chain.clone()),
                handshake: None,
                duration_ms: None,
            }
        }
    }
}

/// Fractional days from `now` to `then` (negative when `then` has passed).
pub fn days_between(now: OffsetDateTime, then: OffsetDateTime) -> f64 {
    (then - now).as_seconds_f64() / 86_400.0
}

type Verdict = (Status, &'static str, String);

fn judge_handshake(
    handshake: &Handshake,
    client_cert: Option<&CertFacts>,
    addresses_disagree: bool,
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> Verdict {
    let revocation = handshake.revocation.as_ref().map(revocation::judge);
    if let Some(verdict @ (Status::Critical, ..)) = revocation {
        return verdict;
    }
    let verification = &handshake.verification;
    if !verification.verified {
        let reason = verification.reason.unwrap_or(Reason::Invalid);
        return (
            Status::Critical,
            reason.keyword(),
            verification.detail.clone(),
        );
    }
    let chain_verdict = judge_validity(&handshake.chain, thresholds, now);
    if chain_verdict.0 != Status::Ok {
        return chain_verdict;
    }
    if let Some(client) = client_cert {
        let left = client.not_after - now;
        if left.is_negative() {
            let detail = format!(
                "client certificate expired at {}",
                rfc3339(client.not_after)
            );
            return (Status::Critical, "client_cert_expired", detail);
        }
        if let Some(status) = threshold_status(left, thresholds) {
            let detail = format!(
                "client certificate expires at {}",
                rfc3339(client.not_after)
            );
            return (status, "client_cert_expiring_soon", detail);
        }
    }
    if let Some(verdict @ (Status::Warning, ..)) = revocation {
        return verdict;
    }
    if addresses_disagree {
        let detail = "the addresses of this name serve different certificates".to_owned();
        return (Status::Warning, "addresses_disagree", detail);
    }
    if let Some(lint) = verification.reason {
        return (Status::Warning, lint.keyword(), verification.detail.clone());
    }
    chain_verdict
}

fn judge_validity(chain: &ChainFacts, thresholds: Thresholds, now: OffsetDateTime) -> Verdict {
    let expiry = chain.earliest_not_after;
    let left = expiry - now;
    if left.is_negative() {
        return (
            Status::Critical,
            "expired",
            format!("expired at {}", rfc3339(expiry)),
        );
    }
    if let Some(entry) = chain
        .entries
        .iter()
        .find(|entry| entry.facts.not_before > now)
    {
        let detail = format!("not valid before {}", rfc3339(entry.facts.not_before));
        return (Status::Critical, "not_yet_valid", detail);
    }
    match threshold_status(left, thresholds) {
        Some(status) => (
            status,
            "expiring_soon",
            format!("expires at {}", rfc3339(expiry)),
        ),
        None => (Status::Ok, "ok", format!("expires at {}", rfc3339(expiry))),
    }
}

fn threshold_status(left: time::Duration, thresholds: Thresholds) -> Option<Status> {
    if left < thresholds.crit {
        Some(Status::Critical)
    } else if left < thresholds.warn {
        Some(Status::Warning)
    } else {
        None
    }
}

/// RFC 3339 in UTC, seconds precision (`2026-11-26T23:20:05Z`).
pub fn rfc3339(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    // Formatting a UTC date with a fixed description only fails for years beyond 9999,
    // which X.509 GeneralizedTime cannot express.
    at.format(&format)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}
