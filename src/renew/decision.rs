//! The renewal decision for one certificate: its facts as the store holds them
//! ([`PlanFacts`], read without writing) and the configuration, given to the pure
//! `schedule::plan`. The renewer acts on it; `certinel status` shows it.

use time::{Duration, OffsetDateTime};

use crate::config::model::CertificateConfig;
use crate::schedule::ari::AriState;
use crate::schedule::history::{self, ScheduleState};
use crate::schedule::plan::{CurrentCert, Decision, PlanInput, Policy, plan};
use crate::store::metadata::VersionMetadata;
use crate::store::{Store, StoreError};

/// Up to this share of the renew-before period is taken off at random per certificate,
/// so a fleet does not renew at one instant.
const JITTER_FRACTION: f64 = 0.1;

/// What the decision reads from the store for one certificate.
#[derive(Debug, Clone)]
pub(crate) struct PlanFacts {
    /// The current version's metadata, if there is one.
    pub(crate) current: Option<VersionMetadata>,
    /// The persisted schedule state.
    pub(crate) schedule: ScheduleState,
}

impl PlanFacts {
    /// Reads the current version and the schedule state of `name`; writes nothing.
    pub(crate) fn read(store: &dyn Store, name: &str) -> Result<PlanFacts, StoreError> {
        let current = match store.current(name)? {
            Some(version) => Some(store.metadata(name, version)?),
            None => None,
        };
        let schedule = history::load_from(store, name)?;
        Ok(PlanFacts { current, schedule })
    }

    /// Whether the last CRL check found the current version revoked.
    pub(crate) fn current_revoked(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|meta| self.schedule.is_revoked(&meta.serial))
    }

    /// The jitter drawn for the current certificate, or 0 (the latest moment of the
    /// policy's window) before the renewer has drawn one.
    pub(crate) fn stored_jitter(&self) -> f64 {
        match (&self.current, &self.schedule.jitter) {
            (Some(meta), Some(draw)) if draw.serial == meta.serial => draw.value,
            _ => 0.0,
        }
    }
}

/// The ARI state when it is about the certificate `meta` describes.
pub(crate) fn applicable_ari<'a>(
    schedule: &'a ScheduleState,
    meta: &VersionMetadata,
) -> Option<&'a AriState> {
    schedule
        .ari
        .as_ref()
        .filter(|ari| ari.is_for_serial(&meta.serial))
}

/// The renewal decision for `certificate` at `now` from `facts`, with `random` as the
/// policy's jitter draw. Pure: the caller reads the facts and persists any draw.
pub(crate) fn decide(
    certificate: &CertificateConfig,
    facts: &PlanFacts,
    now: OffsetDateTime,
    random: f64,
    backoff_base: Duration,
) -> Decision {
    let current_cert = facts.current.as_ref().map(CurrentCert::from);
    let ari = facts
        .current
        .as_ref()
        .and_then(|meta| applicable_ari(&facts.schedule, meta))
        .and_then(AriState::choice);
    let policy = Policy {
        renew_before: certificate.renew_before,
        jitter_fraction: JITTER_FRACTION,
        backoff_base,
    };
    let wanted_names = certificate.dns_names();
    plan(&PlanInput {
        now,
        current: current_cert.as_ref(),
        policy: &policy,
        wanted_names: &wanted_names,
        wanted_key_type: certificate.key.key_type(),
        state: &facts.schedule,
        ari,
        random,
        revoked: facts.current_revoked(),
    })
}
