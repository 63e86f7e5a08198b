//! The managed-certificate and ACME-client families of `/metrics`: the per-certificate
//! snapshot the service state keeps, the ACME request counters, and how both render.
//! Pure: the scrape time is a parameter; nothing here reads the store or the network.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;

use crate::metrics::names::{self, ACME_DURATION_BUCKETS};
use crate::metrics::render::{Sink, flag, timestamp};

/// What `/metrics` shows about one managed certificate: facts read from the store at start
/// and after every renewal attempt, plus counters kept in memory since start.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CertificateSnapshot {
    /// The `[[certificate]]` name (the `name` label).
    pub name: String,
    /// The current version, when there is one.
    pub current: Option<CurrentVersion>,
    /// The current version covers the configured names and has the configured key type.
    pub matches_config: bool,
    /// When the next renewal attempt is planned.
    pub renewal_scheduled: Option<OffsetDateTime>,
    /// When a renewal last succeeded (persisted, so it survives restarts).
    pub last_success_at: Option<OffsetDateTime>,
    /// When a renewal was last attempted (persisted).
    pub last_attempt_at: Option<OffsetDateTime>,
    /// Failed attempts since the last success (persisted).
    pub consecutive_failures: u32,
    /// Renewals that succeeded since start.
    pub renewals_succeeded: u64,
    /// Renewals that failed since start.
    pub renewals_failed: u64,
    /// Failed renewals since start by (CA, stage, problem).
    pub failures: BTreeMap<(String, String, String), u64>,
    /// Which rule placed the renewal window: `ari` or `renew_before`.
    pub renewal_rule: Option<&'static str>,
    /// The CA's suggested renewal window (ARI) for the current version, start and end.
    pub ari_window: Option<(OffsetDateTime, OffsetDateTime)>,
    /// When the renewer asks the CA for renewal information again.
    pub ari_next_poll: Option<OffsetDateTime>,
    /// The configured ACME profile and whether the CA's directory advertises it, once the
    /// renewer has loaded the directory.
    pub profile: Option<(String, bool)>,
    /// What the last CRL check of the current version found, once one reached a verdict.
    pub revocation: Option<ManagedRevocation>,
    /// With `[cluster]`: the version number this replica last rolled out, once it did.
    pub local_version: Option<u32>,
    /// With `[cluster]`: whether this replica holds the certificate's renewal lock per
    /// etcd, once its watch said.
    pub lock_held: Option<bool>,
}

/// The verdict of the last CRL check of a managed certificate's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagedRevocation {
    /// When the CA revoked it; `None`: not revoked.
    pub revoked_at: Option<OffsetDateTime>,
    /// The CRL entry's reasonCode, when the CA gave one.
    pub reason_code: Option<u8>,
}

/// What one address of one verify target of one managed certificate served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedSample {
    /// The certificate's name.
    pub name: String,
    /// The verify target as configured (`host:port`).
    pub target: String,
    /// The address probed.
    pub ip: IpAddr,
    /// Whether it served the serial of the certificate's current version.
    pub current: bool,
    /// The serial it served (lowercase hex).
    pub served_serial: String,
}

/// Facts about the current version of a managed certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentVersion {
    /// The version directory name (`v0003`).
    pub version: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// The configured CA that issued it (`acme` or a `[ca.NAME]`), `unknown` when its
    /// directory is no longer configured.
    pub ca: String,
    /// Key type (`ecdsa-p256`, `rsa-2048`, ...).
    pub key_type: String,
    /// Names it covers.
    pub dns_names: Vec<String>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

/// ACME requests since start, by CA and endpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AcmeSnapshot {
    /// Requests by (CA name, endpoint, status).
    pub requests: BTreeMap<(String, &'static str, String), u64>,
    /// Request durations by (CA name, endpoint).
    pub durations: BTreeMap<(String, &'static str), DurationHistogram>,
    /// The CA's clock minus the local clock in seconds, from its last `Date` header.
    pub clock_skew: Option<f64>,
    /// Order slots by CA name: (held, waited for).
    pub orders: BTreeMap<String, (usize, usize)>,
}

/// Counts of observed durations per bucket of [`ACME_DURATION_BUCKETS`], not cumulative.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DurationHistogram {
    /// `counts[i]` observations fell into bucket `i`; the last entry is beyond every bound.
    pub counts: [u64; ACME_DURATION_BUCKETS.len() + 1],
    /// The sum of the observations, in seconds.
    pub sum: f64,
}

impl CertificateSnapshot {
    /// A current version exists, matches the configuration and is valid at `now`.
    pub fn is_ready(&self, now: OffsetDateTime) -> bool {
        self.matches_config
            && self
                .current
                .as_ref()
                .is_some_and(|current| current.not_before <= now && now < current.not_after)
    }
}

impl DurationHistogram {
    /// Counts one observation.
    pub fn observe(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = ACME_DURATION_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(ACME_DURATION_BUCKETS.len());
        self.counts[bucket] += 1;
        self.sum += seconds;
    }

    /// Observations in total.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Adds the `certinel_certificate_*` series of one certificate, at scrape time `now`.
pub(super) fn push_certificate(
    families: &mut impl Sink,
    certificate: &CertificateSnapshot,
    now: OffsetDateTime,
) {
    let labels = [("name", certificate.name.as_str())];
    families.push(
        names::CERTIFICATE_READY,
        &labels,
        flag(certificate.is_ready(now)),
    );
    if let Some(current) = &certificate.current {
        push_current(families, &certificate.name, current, now);
    }
    if let Some(at) = certificate.renewal_scheduled {
        families.push(names::CERTIFICATE_RENEWAL_SCHEDULED, &labels, timestamp(at));
    }
    if let Some(version) = certificate.local_version {
        families.push(
            names::CERTIFICATE_LOCAL_VERSION,
            &labels,
            f64::from(version),
        );
    }
    if let Some(held) = certificate.lock_held {
        families.push(names::CERTIFICATE_LOCK_HELD, &labels, flag(held));
    }
    for (outcome, count) in [
        ("success", certificate.renewals_succeeded),
        ("failure", certificate.renewals_failed),
    ] {
        let labels = [("name", certificate.name.as_str()), ("outcome", outcome)];
        families.push(names::CERTIFICATE_RENEWALS, &labels, count as f64);
    }
    for ((ca, stage, problem), count) in &certificate.failures {
        let labels = [
            ("name", certificate.name.as_str()),
            ("stage", stage.as_str()),
            ("problem", problem.as_str()),
            ("ca", ca.as_str()),
        ];
        families.push(names::CERTIFICATE_RENEWAL_FAILURES, &labels, *count as f64);
    }
    if let Some(at) = certificate.last_success_at {
        families.push(
            names::CERTIFICATE_LAST_RENEWAL_SUCCESS,
            &labels,
            timestamp(at),
        );
    }
    if let Some(at) = certificate.last_attempt_at {
        families.push(
            names::CERTIFICATE_LAST_RENEWAL_ATTEMPT,
            &labels,
            timestamp(at),
        );
    }
    families.push(
        names::CERTIFICATE_RENEWAL_CONSECUTIVE_FAILURES,
        &labels,
        f64::from(certificate.consecutive_failures),
    );
    push_renewal_window(families, certificate);
    push_revocation(families, certificate);
}

/// `certinel_certificate_revoked{name}` and, when revoked, the revocation time.
fn push_revocation(families: &mut impl Sink, certificate: &CertificateSnapshot) {
    let Some(revocation) = certificate.revocation else {
        return;
    };
    let labels = [("name", certificate.name.as_str())];
    families.push(
        names::CERTIFICATE_REVOKED,
        &labels,
        flag(revocation.revoked_at.is_some()),
    );
    if let Some(revoked_at) = revocation.revoked_at {
        let code = revocation
            .reason_code
            .map(|code| code.to_string())
            .unwrap_or_default();
        let labels = [
            ("name", certificate.name.as_str()),
            ("reason_code", code.as_str()),
        ];
        families.push(
            names::CERTIFICATE_REVOCATION_TIME,
            &labels,
            timestamp(revoked_at),
        );
    }
}

/// The rule that placed the window and, with ARI, the CA's window and next poll.
fn push_renewal_window(families: &mut impl Sink, certificate: &CertificateSnapshot) {
    let labels = [("name", certificate.name.as_str())];
    if let Some(rule) = certificate.renewal_rule {
        let info = [("name", certificate.name.as_str()), ("source", rule)];
        families.push(names::CERTIFICATE_RENEWAL_WINDOW_INFO, &info, 1.0);
    }
    if let Some((start, end)) = certificate.ari_window {
        families.push(
            names::CERTIFICATE_ARI_WINDOW_START,
            &labels,
            timestamp(start),
        );
        families.push(names::CERTIFICATE_ARI_WINDOW_END, &labels, timestamp(end));
    }
    if let Some(at) = certificate.ari_next_poll {
        families.push(names::CERTIFICATE_ARI_NEXT_POLL, &labels, timestamp(at));
    }
}

/// `certinel_acme_profile_available{profile}`, once per configured profile: certificates
/// asking for the same profile ask the same directory.
pub(super) fn push_profiles(families: &mut impl Sink, certificates: &[CertificateSnapshot]) {
    let profiles: BTreeMap<&str, bool> = certificates
        .iter()
        .filter_map(|certificate| certificate.profile.as_ref())
        .map(|(profile, available)| (profile.as_str(), *available))
        .collect();
    for (profile, available) in profiles {
        families.push(
            names::ACME_PROFILE_AVAILABLE,
            &[("profile", profile)],
            flag(available),
        );
    }
}

/// `certinel_certificate_served_current{name,target,ip}`.
pub(super) fn push_served(families: &mut impl Sink, served: &[ServedSample]) {
    for sample in served {
        let ip = sample.ip.to_string();
        let labels = [
            ("name", sample.name.as_str()),
            ("target", sample.target.as_str()),
            ("ip", ip.as_str()),
        ];
        families.push(
            names::CERTIFICATE_SERVED_CURRENT,
            &labels,
            flag(sample.current),
        );
    }
}

fn push_current(
    families: &mut impl Sink,
    name: &str,
    current: &CurrentVersion,
    now: OffsetDateTime,
) {
    let labels = [("name", name)];
    families.push(
        names::CERTIFICATE_NOT_AFTER,
        &labels,
        timestamp(current.not_after),
    );
    families.push(
        names::CERTIFICATE_EXPIRY,
        &labels,
        (current.not_after - now).as_seconds_f64(),
    );
    families.push(
        names::CERTIFICATE_LIFETIME,
        &labels,
        (current.not_after - current.not_before).as_seconds_f64(),
    );
    let dns_names = crate::metrics::label_values::name_list(&current.dns_names);
    let info = [
        ("name", name),
        ("serial", current.serial.as_str()),
        ("issuer", current.issuer.as_str()),
        ("key_type", current.key_type.as_str()),
        ("dns_names", dns_names.as_str()),
        ("version", current.version.as_str()),
        ("ca", current.ca.as_str()),
    ];
    families.push(names::CERTIFICATE_INFO, &info, 1.0);
}

/// Adds `certinel_acme_requests_total`, `certinel_acme_request_duration_seconds` and the
/// order slot gauges `certinel_acme_orders_{in_flight,waiting}`.
pub(super) fn push_acme(families: &mut impl Sink, acme: &AcmeSnapshot) {
    for ((ca, endpoint, status), count) in &acme.requests {
        let labels = [
            ("endpoint", *endpoint),
            ("status", status.as_str()),
            ("ca", ca.as_str()),
        ];
        families.push(names::ACME_REQUESTS, &labels, *count as f64);
    }
    for ((ca, endpoint), histogram) in &acme.durations {
        families.push_histogram(
            names::ACME_REQUEST_DURATION,
            &[("endpoint", endpoint), ("ca", ca.as_str())],
            histogram,
        );
    }
    for (ca, (in_flight, waiting)) in &acme.orders {
        let labels = [("ca", ca.as_str())];
        families.push(names::ACME_ORDERS_IN_FLIGHT, &labels, *in_flight as f64);
        families.push(names::ACME_ORDERS_WAITING, &labels, *waiting as f64);
    }
    if let Some(skew) = acme.clock_skew {
        families.push(names::CLOCK_SKEW, &[("source", "acme")], skew);
    }
}

#[cfg(test)]
pub(crate) mod tests;
