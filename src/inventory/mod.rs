//! The rotation inventory: for each managed certificate, the answers to the rotation
//! checklist, plus the scanned certificates no `[[certificate]]` manages.
//!
//! This module holds the data model and the pure helpers that derive its fields; the
//! text renderings live in [`format`]. Nothing here reads the clock, sockets or files:
//! the caller gathers the facts and passes `now` in.

pub mod alerts;
pub mod format;
pub mod gather;

use serde::Serialize;
use time::{Duration, OffsetDateTime};

/// Everything `certinel inventory` reports, as of `generated_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// The moment the facts were gathered.
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    /// Certificates certinel renews, in configuration order.
    pub managed: Vec<ManagedCertificate>,
    /// Scanned endpoints and files whose certificate no `[[certificate]]` manages.
    pub monitored_not_managed: Vec<MonitoredCertificate>,
}

/// The rotation checklist of one `[[certificate]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagedCertificate {
    /// The certificate's configured name.
    pub name: String,
    /// The DNS names it covers.
    pub dns_names: Vec<String>,
    /// The key type, as named in the configuration (`ecdsa-p256`, `rsa-2048`, ...).
    pub key_type: String,
    /// Issuer distinguished name of the current version; `None` before the first issuance.
    pub issuer: Option<String>,
    /// Where consumers find the live files (`state_dir/certs/NAME/current`).
    pub stored_at: String,
    /// Validity of the current version (`not_after - not_before`), in seconds.
    #[serde(with = "optional_seconds")]
    pub lifetime: Option<Duration>,
    /// The configured renewal rule.
    pub renewal_rule: RenewalRule,
    /// When the next renewal is due, when a current version exists.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_renewal: Option<OffsetDateTime>,
    /// How renewal is automated.
    pub automation: Automation,
    /// The deploy commands that tell consumers about a new version, in order.
    pub deploy_commands: Vec<String>,
    /// What happens when a renewal fails.
    pub on_failure: FailurePolicy,
    /// How long both the previous and the current version are valid, in seconds.
    #[serde(with = "optional_seconds")]
    pub overlap: Option<Duration>,
    /// The audit log that records every rotation step.
    pub audit_log: String,
    /// The last completed rotation, from the audit log.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_rotation: Option<OffsetDateTime>,
    /// What the last CRL check of the current version found (`certinel run` checks it);
    /// `None` before a verdict, or when its leaf names no CRL.
    pub revocation: Option<Revocation>,
}

/// The verdict of the last CRL check of a managed certificate's current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revocation {
    /// The CRL lists it (it is renewed at once).
    pub revoked: bool,
    /// When the CA revoked it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// The CRL entry's reasonCode, when the CA gave one.
    pub reason_code: Option<u8>,
    /// The distribution point whose CRL decided.
    pub crl: String,
    /// When this verdict was first reached.
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
}

/// When a certificate is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RenewalRule {
    /// Renew this long before `not_after`.
    RenewBefore {
        /// The period before expiry, in seconds.
        #[serde(with = "seconds")]
        before: Duration,
    },
    /// Renew when this percentage of the lifetime remains (cert-manager
    /// `renewBeforePercentage`).
    Percentage {
        /// Percent of the lifetime remaining, in (0, 100).
        percent: u8,
    },
    /// The default: one third of the lifetime before expiry (one half for lifetimes of ten
    /// days or less).
    Default,
}

/// How a certificate is obtained without a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Automation {
    /// The ACME directory URL of the first CA in `ca`.
    pub directory: String,
    /// The challenge type (`http-01`, `tls-alpn-01`, `dns-01`).
    pub challenge: String,
    /// The CAs it is obtained from, in order of preference (`acme`, `[ca.NAME]` names).
    pub ca: Vec<String>,
    /// The CA that issued the current version, when it is still configured.
    pub issued_by: Option<String>,
}

/// What certinel does when a renewal fails, and who hears about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailurePolicy {
    /// The first retry delay, in seconds.
    #[serde(with = "seconds")]
    pub backoff_min: Duration,
    /// The longest retry delay, in seconds.
    #[serde(with = "seconds")]
    pub backoff_max: Duration,
    /// Whether a failed deploy switches `current` back to `previous`.
    pub rollback_on_deploy_failure: bool,
    /// The Prometheus alerts that fire, by name.
    pub alerts: Vec<String>,
}

/// A scanned endpoint or file whose certificate certinel watches but does not renew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonitoredCertificate {
    /// `endpoint` or `file`.
    pub kind: MonitoredKind,
    /// The endpoint (`host:port`) or file path.
    pub target: String,
    /// The DNS names of the leaf.
    pub dns_names: Vec<String>,
    /// End of validity of the leaf.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: i64,
}

/// Where a monitored certificate was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitoredKind {
    /// A live TLS endpoint.
    Endpoint,
    /// A certificate file on disk.
    File,
}

/// The time during which both the previous and the current version are valid:
/// `previous_not_after - current_not_before`, or zero when they do not overlap.
pub fn overlap(previous_not_after: OffsetDateTime, current_not_before: OffsetDateTime) -> Duration {
    (previous_not_after - current_not_before).max(Duration::ZERO)
}

/// Whole days from `now` until `not_after`, rounded down (negative once expired).
pub fn days_left(not_after: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (not_after - now).whole_seconds().div_euclid(86_400)
}

/// Whether a scanned leaf is one certinel manages: its serial (lowercase hex, no leading
/// zeros) matches a stored version, or every one of its DNS names is a configured name.
pub fn is_managed(
    leaf_serial: &str,
    leaf_dns_names: &[String],
    stored_serials: &[String],
    managed_names: &[String],
) -> bool {
    let serial = leaf_serial.trim_start_matches('0').to_ascii_lowercase();
    if stored_serials.contains(&serial) {
        return true;
    }
    !leaf_dns_names.is_empty()
        && leaf_dns_names.iter().all(|name| {
            managed_names
                .iter()
                .any(|managed| managed.eq_ignore_ascii_case(name))
        })
}

/// Serde helpers writing a [`Duration`] as whole seconds.
mod seconds {
    use serde::Serializer;
    use time::Duration;

    pub fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(duration.whole_seconds())
    }
}

/// Serde helpers writing an optional [`Duration`] as whole seconds or `null`.
mod optional_seconds {
    use serde::Serializer;
    use time::Duration;

    pub fn serialize<S: Serializer>(duration: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => s.serialize_some(&duration.whole_seconds()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests;
