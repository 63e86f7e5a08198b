//! What `certinel status` shows per certificate: the stored facts and the renewal decision
//! the renewer would take (`decision`). Nothing is written here: only the renewer persists
//! a jitter draw or renewal information.

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::model::CertificateConfig;
use crate::renew::decision::{PlanFacts, applicable_ari, decide};
use crate::renew::{RenewError, Renewer};
use crate::schedule::history::RevocationCheck;
use crate::schedule::plan::{CurrentCert, Reason, Rule};
use crate::store::metadata::key_type_name;
use crate::store::version_check::name_covered;
use crate::store::{StoreError, VersionId};

/// The state of one managed certificate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertificateStatus {
    /// Certificate name.
    pub name: String,
    /// The current version, if any.
    pub version: Option<VersionId>,
    /// Its serial number.
    pub serial: Option<String>,
    /// Its start of validity.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    /// Its expiry.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// Its issuer's distinguished name.
    pub issuer: Option<String>,
    /// The configured CA (`"acme"` or a `[ca.NAME]`) whose directory issued the current
    /// version (its metadata's `source`); `None` without a version, or when that directory
    /// is no longer configured.
    pub ca: Option<String>,
    /// Its key type (`ecdsa-p256`, `rsa-2048`, ...).
    pub key_type: Option<String>,
    /// The DNS names and IP addresses it covers.
    pub dns_names: Vec<String>,
    /// It covers every configured name and has the configured key type.
    pub matches_config: bool,
    /// It matches the configuration and is valid at the time of the status.
    pub ready: bool,
    /// Whole days until expiry (negative once expired).
    pub days_left: Option<i64>,
    /// When the next renewal is planned.
    #[serde(with = "time::serde::rfc3339")]
    pub next_renewal: OffsetDateTime,
    /// Why then (`scheduled`, `window_open`, `backoff`, ...: [`Reason::as_str`]).
    pub next_renewal_reason: Reason,
    /// Which rule placed the renewal window: `ari` or `renew_before`.
    pub renewal_rule: Rule,
    /// Start of the CA's suggested window (ARI), when it sent one for this certificate.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ari_window_start: Option<OffsetDateTime>,
    /// End of the CA's suggested window.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ari_window_end: Option<OffsetDateTime>,
    /// When the renewer asks the CA for renewal information again.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ari_next_poll: Option<OffsetDateTime>,
    /// Why the last renewal information request gave no usable answer, if it did not.
    pub ari_error: Option<String>,
    /// The page the CA linked to explain its suggested window (`explanationURL`).
    pub ari_explanation_url: Option<String>,
    /// `success` or `failure`; none before the first renewal.
    pub last_outcome: Option<LastOutcome>,
    /// Renewals failed in a row.
    pub consecutive_failures: u32,
    /// The last failure's message, until a renewal works.
    pub last_error: Option<String>,
    /// The stage of an interrupted renewal, if one is in flight.
    pub inflight: Option<String>,
    /// When a renewal last succeeded.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success_at: Option<OffsetDateTime>,
    /// When a renewal was last attempted.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
    /// What the last CRL check of the current version found; `None` before one reached a
    /// verdict (or when its leaf names no CRL).
    pub revocation: Option<RevocationCheck>,
}

/// How the last renewal of a certificate ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LastOutcome {
    /// The certificate is current: no failure since the last renewal.
    Success,
    /// Renewals have failed since the last success.
    Failure,
}

impl LastOutcome {
    /// `success` or `failure`, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            LastOutcome::Success => "success",
            LastOutcome::Failure => "failure",
        }
    }
}

impl Renewer {
    /// The state of every configured certificate at `now`.
    pub fn status(&self, now: OffsetDateTime) -> Result<Vec<CertificateStatus>, RenewError> {
        self.certificates
            .iter()
            .map(|certificate| {
                one(self, certificate, now).map_err(|source| RenewError::Store {
                    name: certificate.name.clone(),
                    source,
                })
            })
            .collect()
    }

    /// The state of the certificate `name` at `now`.
    pub fn status_of(
        &self,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<CertificateStatus, RenewError> {
        let certificate = self.certificate(name)?;
        let store_error = |source| RenewError::store(name, source);
        one(self, certificate, now).map_err(store_error)
    }
}

fn one(
    renewer: &Renewer,
    certificate: &CertificateConfig,
    now: OffsetDateTime,
) -> Result<CertificateStatus, StoreError> {
    let store = &*renewer.store;
    let backoff_base = renewer.backoff_base;
    let name = &certificate.name;
    let facts = PlanFacts::read(store, name)?;
    let decision = decide(
        certificate,
        &facts,
        now,
        facts.stored_jitter(),
        backoff_base,
    );
    let PlanFacts { current, schedule } = facts;
    let matches_config = current
        .as_ref()
        .is_some_and(|meta| matches_config(certificate, &CurrentCert::from(meta)));
    let ready = matches_config
        && current
            .as_ref()
            .is_some_and(|meta| meta.not_before <= now && now < meta.not_after);
    let last_outcome = if schedule.consecutive_failures > 0 {
        Some(LastOutcome::Failure)
    } else {
        current.as_ref().map(|_| LastOutcome::Success)
    };
    let ari = current
        .as_ref()
        .and_then(|meta| applicable_ari(&schedule, meta));
    Ok(CertificateStatus {
        name: name.clone(),
        version: current.as_ref().map(|m| m.version),
        serial: current.as_ref().map(|m| m.serial.clone()),
        not_before: current.as_ref().map(|m| m.not_before),
        not_after: current.as_ref().map(|m| m.not_after),
        issuer: current.as_ref().map(|m| m.issuer.clone()),
        ca: current
            .as_ref()
            .and_then(|m| renewer.cas.name_of_source(&m.source))
            .map(str::to_owned),
        key_type: current.as_ref().map(|m| key_type_name(m.key_type)),
        dns_names: current
            .as_ref()
            .map(|m| m.dns_names.clone())
            .unwrap_or_default(),
        matches_config,
        ready,
        days_left: current.as_ref().map(|m| (m.not_after - now).whole_days()),
        next_renewal: decision.renew_at,
        next_renewal_reason: decision.reason,
        renewal_rule: decision.rule,
        ari_window_start: ari.and_then(|a| a.window()).map(|w| w.start),
        ari_window_end: ari.and_then(|a| a.window()).map(|w| w.end),
        ari_next_poll: ari.map(|a| a.next_poll),
        ari_error: ari.and_then(|a| a.last_error.clone()),
        ari_explanation_url: ari.and_then(|a| a.explanation_url.clone()),
        last_outcome,
        consecutive_failures: schedule.consecutive_failures,
        last_error: schedule.last_error.clone(),
        inflight: store
            .inflight(name)?
            .map(|record| format!("{:?}", record.stage).to_ascii_lowercase()),
        last_success_at: schedule.last_success_at,
        last_attempt_at: schedule.last_attempt_at,
        revocation: current
            .as_ref()
            .and_then(|meta| schedule.revocation_of(&meta.serial))
            .cloned(),
    })
}

/// `current` covers every configured name and has the configured key type.
fn matches_config(certificate: &CertificateConfig, current: &CurrentCert) -> bool {
    let names_covered = certificate
        .dns_names()
        .iter()
        .all(|name| name_covered(name, &current.dns_names));
    names_covered && current.key_type == certificate.key.key_type()
}
