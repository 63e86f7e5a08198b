//! The renewal state machine: from what a renewal of one certificate observed (the store's
//! view, the schedule and ARI state, the certificate's configuration, the moment, a random
//! draw) and the result of its previous action, the next action. Pure: no clock,
//! randomness, files or sockets; the driver (`lifecycle/driver.rs`) performs each action
//! and feeds its result back as an [`Event`].
//!
//! A crash anywhere leaves the store in a state [`Event::Started`] maps to the action that
//! resumes it (through `store::recover`), so a restart never orders twice.

use time::{Duration, OffsetDateTime};

use crate::config::model::{CertificateConfig, OnVerifyFailure};
use crate::renew::decision::PlanFacts;
use crate::renew::rollout_check::Verdict;
use crate::schedule::ari::{AriAnswer, AriFetchError, AriState};
use crate::schedule::plan::{Reason, Rule};
use crate::store::{DiskState, HookProcess, NextStep, VersionId, VersionMetadata, recover};
use planning::{absorb_answer, ask_ca_or_decide, ca_refusal, decide_when, when_idle};

mod planning;

pub(crate) use planning::next_wake_up;

/// What the driver observed just before asking for the next action.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed<'a> {
    /// The certificate's configuration.
    pub(crate) certificate: &'a CertificateConfig,
    /// The store's view: links, versions and their states, the in-flight record, leftovers.
    pub(crate) disk: &'a DiskState,
    /// The metadata of every stored version, ascending.
    pub(crate) versions: &'a [VersionMetadata],
    /// The current version's metadata and the schedule state (failures, jitter, ARI).
    pub(crate) plan: &'a PlanFacts,
    /// `--force`: skip the renewal window and the backoff, never the CA's limits.
    pub(crate) force: bool,
    /// The configured ACME directory, the CA renewal information is asked of.
    pub(crate) directory: Option<&'a str>,
    /// The ARI identifier of the current certificate, when it came from that CA and the
    /// identifier could be read.
    pub(crate) current_ari_id: Option<&'a str>,
    /// The first retry delay after a failed renewal.
    pub(crate) backoff_base: Duration,
    /// The moment of this event, from the driver's clock.
    pub(crate) now: OffsetDateTime,
    /// A random value in [0, 1) from the driver's random source, for a jitter draw.
    pub(crate) draw: f64,
}

/// The result of the previous action, as the state machine needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The renewal begins: nothing has been done in this process yet.
    Started,
    /// The leftovers of an interrupted renewal were cleaned up ([`Action::CleanUp`]).
    CleanedUp,
    /// An interrupted renewal that could not continue was given up.
    Abandoned,
    /// The jitter draw for the current certificate was persisted.
    JitterSaved,
    /// The CA answered a renewal information request (`Err`: no usable answer, why).
    RenewalInfo {
        /// The identifier asked about.
        cert_id: String,
        /// The answer.
        answer: Result<AriAnswer, AriFetchError>,
        /// The page the CA linked to explain its window.
        explanation_url: Option<String>,
    },
    /// The CA's directory does not offer renewal information.
    RenewalInfoUnsupported,
    /// The renewal information state was persisted.
    RenewalInfoSaved,
    /// The ACME account is loaded.
    AccountLoaded,
    /// The ACME account could not be loaded (audited; the driver holds the error).
    AccountFailed,
    /// The certificate's profile was checked against the CA's directory.
    ProfileChecked {
        /// Whether the directory advertises it.
        available: bool,
    },
    /// A new in-flight record was begun.
    Begun,
    /// The recorded order can still deliver a certificate.
    RecordedOrderUsable {
        /// The CA already finalized it.
        finalized: bool,
    },
    /// The recorded order cannot deliver a certificate (invalid, expired).
    RecordedOrderUnusable,
    /// The order (recorded in the in-flight record) is validated and waits for the CSR.
    OrderReady,
    /// The new key is saved in the in-flight record.
    KeySaved,
    /// `version` is stored and recorded as pending.
    Staged {
        /// The new version.
        version: VersionId,
    },
    /// Obtaining the certificate from the CA failed (the driver holds the error).
    OrderFailed {
        /// The failure may pass (network, timeout, 5xx, 429).
        transient: bool,
    },
    /// The certificate came but could not be stored.
    StageFailed,
    /// `version` is current and its deploy commands ran.
    Deployed {
        /// The deployed version.
        version: VersionId,
    },
    /// A deploy command for `version` failed (audited).
    DeployFailed {
        /// The version being deployed.
        version: VersionId,
    },
    /// The `verify` endpoints serve `version`, or there is nothing to probe.
    Served {
        /// The new version.
        version: VersionId,
    },
    /// The `verify` endpoints did not all serve `version` in time.
    NotServed {
        /// The new version.
        version: VersionId,
        /// What the last round saw.
        verdict: Verdict,
    },
    /// A version not served was kept as current for now (audited).
    UnservedAccepted {
        /// The kept version.
        version: VersionId,
    },
    /// The live files of `version` check out.
    FilesChecked {
        /// The live version.
        version: VersionId,
        /// It was kept although the endpoints did not serve it.
        unserved_kept: bool,
    },
    /// The live files of `version` do not check out (audited).
    FilesFailed {
        /// The live version.
        version: VersionId,
    },
    /// `version` was recorded as verified.
    Verified {
        /// The verified version.
        version: VersionId,
    },
    /// A failed rollout was rolled back (or the new version left current).
    RolledBack {
        /// The version current again, if any.
        restored: Option<VersionId>,
    },
}

/// What the driver does next. `Sleep`, `Refuse`, `KeepOrder`, `AbandonOrder`, `Finish`,
/// `ParkUnserved` and `Fail` end the renewal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Stop a deploy command left running by a dead process, remove dot-prefixed leftovers,
    /// and audit that an interrupted renewal resumes (`resuming`).
    CleanUp {
        /// The deploy command to stop.
        stop_hook: Option<HookProcess>,
        /// Whether leftovers are to be removed.
        remove_leftovers: bool,
        /// Whether an interrupted renewal resumes.
        resuming: bool,
    },
    /// Give up an interrupted renewal: mark `version` failed, roll back if it is live,
    /// finish the record, count a failure.
    Abandon {
        /// The version to mark failed.
        version: Option<VersionId>,
        /// Why, for the audit log.
        reason: String,
    },
    /// Persist the jitter drawn for the current certificate.
    SaveJitter {
        /// The current certificate's serial.
        serial: String,
        /// The draw.
        value: f64,
    },
    /// Ask the CA for renewal information about the current certificate.
    PollRenewalInfo {
        /// Its ARI identifier.
        cert_id: String,
    },
    /// Persist the renewal information state (`None`: forget it, the CA cannot know this
    /// certificate or offers no renewal information).
    SaveRenewalInfo {
        /// The new state.
        state: Option<AriState>,
    },
    /// Not due: look again at `next_check`. Final.
    Sleep {
        /// When the renewal is planned.
        renew_at: OffsetDateTime,
        /// Why then.
        reason: Reason,
        /// Which rule placed the renewal window.
        rule: Rule,
        /// `renew_at`, or the next ARI poll when that comes first.
        next_check: OffsetDateTime,
    },
    /// The CA's limits forbid an attempt before `until`; not counted as a failure. Final.
    Refuse {
        /// The earliest moment the CA allows another attempt.
        until: OffsetDateTime,
        /// [`Reason::RetryAfter`] or [`Reason::RateLimited`].
        reason: Reason,
    },
    /// Load (or create) the ACME account.
    LoadAccount,
    /// Check that the CA still advertises the configured profile.
    CheckProfile,
    /// Begin the in-flight record of a new renewal.
    Begin,
    /// Ask the CA whether the recorded order can still deliver.
    ResumeOrder {
        /// The recorded order.
        order_url: String,
    },
    /// Audit that the recorded order is resumed.
    RecordResumed {
        /// The CA already finalized it.
        finalized: bool,
    },
    /// Place a new order, record its URL, validate it (challenges).
    PlaceOrder,
    /// Generate the new key and save it in the in-flight record before any CSR leaves.
    SaveKey,
    /// Finalize the order with the saved key (unless the CA already did), download the
    /// chain, store it and record it as pending.
    Finalize {
        /// The recorded order.
        order_url: String,
    },
    /// Keep the order and its saved key for the next attempt; count the failure. Final.
    KeepOrder,
    /// Give the order up, finish the record, count the failure. Final.
    AbandonOrder,
    /// Record the stored but unrecorded `version` as pending.
    Adopt {
        /// The orphan version.
        version: VersionId,
    },
    /// Begin a renewal that rolls the parked `version` out again instead of ordering.
    Reroll {
        /// The parked version.
        version: VersionId,
    },
    /// Make `version` current and run the deploy commands.
    Deploy {
        /// The version to make live.
        version: VersionId,
    },
    /// Wait until the `verify` endpoints serve `version`.
    CheckServed {
        /// The live version.
        version: VersionId,
    },
    /// Keep `version` current although it is not served (audited with `why`).
    AcceptUnserved {
        /// The live version.
        version: VersionId,
        /// Why it is kept.
        why: &'static str,
    },
    /// Check the live files of `version`.
    CheckFiles {
        /// The live version.
        version: VersionId,
    },
    /// Record `version` as verified.
    MarkVerified {
        /// The verified version.
        version: VersionId,
    },
    /// Roll back from the failed `version` to `previous` when it is fit, redeploying it.
    RollBack {
        /// The failed version.
        version: VersionId,
        /// Only the rollout failed (its files are good): park the version.
        rollout_only: bool,
    },
    /// Prune, record the success, finish the record. Final.
    Finish {
        /// The new current version.
        version: VersionId,
    },
    /// Park `version` (kept current but not served) and count the failure. Final.
    ParkUnserved {
        /// The kept version.
        version: VersionId,
    },
    /// Count the failure the driver holds (with what a rollback `restored`). Final.
    Fail {
        /// The version made current again, if any.
        restored: Option<VersionId>,
    },
}

/// The next action of a renewal after `event`, given what was `observed`.
pub(crate) fn next_action(observed: &Observed<'_>, event: &Event) -> Action {
    match event {
        Event::Started => {
            let recovery = recover(observed.disk);
            let resuming = recovery.next != NextStep::Idle;
            if resuming || recovery.stop_hook.is_some() || recovery.remove_leftovers {
                Action::CleanUp {
                    stop_hook: recovery.stop_hook,
                    remove_leftovers: recovery.remove_leftovers,
                    resuming,
                }
            } else {
                when_idle(observed)
            }
        }
        Event::CleanedUp => resume(observed, recover(observed.disk).next),
        Event::Abandoned => when_idle(observed),
        Event::JitterSaved => ask_ca_or_decide(observed),
        Event::RenewalInfo {
            cert_id,
            answer,
            explanation_url,
        } => absorb_answer(observed, cert_id, answer, explanation_url),
        // Nothing to forget: nothing to write.
        Event::RenewalInfoUnsupported if observed.plan.schedule.ari.is_none() => {
            decide_when(observed)
        }
        Event::RenewalInfoUnsupported => Action::SaveRenewalInfo { state: None },
        Event::RenewalInfoSaved => decide_when(observed),
        Event::AccountLoaded => match recover(observed.disk).next {
            NextStep::ResumeOrder {
                order_url: Some(order_url),
            } => Action::ResumeOrder { order_url },
            NextStep::ResumeOrder { order_url: None } => Action::PlaceOrder,
            _ if observed.certificate.profile.is_some() => Action::CheckProfile,
            _ => Action::Begin,
        },
        Event::ProfileChecked { available: true } => Action::Begin,
        Event::AccountFailed | Event::ProfileChecked { available: false } => {
            Action::Fail { restored: None }
        }
        Event::Begun | Event::RecordedOrderUnusable => Action::PlaceOrder,
        Event::RecordedOrderUsable { finalized } => {
            if *finalized && !key_saved(observed) {
                // Only a record written before keys were saved gets here: the certificate
                // is for a key we do not have.
                Action::PlaceOrder
            } else {
                Action::RecordResumed {
                    finalized: *finalized,
                }
            }
        }
        Event::OrderReady => match recorded_order(observed) {
            Some(order_url) if key_saved(observed) => Action::Finalize { order_url },
            Some(_) => Action::SaveKey,
            None => Action::PlaceOrder,
        },
        Event::KeySaved => match recorded_order(observed) {
            Some(order_url) => Action::Finalize { order_url },
            None => Action::PlaceOrder,
        },
        Event::OrderFailed { transient } => {
            // From the moment the order has a saved key, a failure that may pass resumes
            // that order next time instead of spending another one.
            let finalizable = recorded_order(observed).is_some() && key_saved(observed);
            if *transient && finalizable {
                Action::KeepOrder
            } else {
                Action::AbandonOrder
            }
        }
        // A certificate that cannot be stored must not be downloaded again and again.
        Event::StageFailed => Action::AbandonOrder,
        Event::Staged { version } => Action::Deploy { version: *version },
        Event::Deployed { version } => Action::CheckServed { version: *version },
        Event::DeployFailed { version } => Action::RollBack {
            version: *version,
            rollout_only: true,
        },
        Event::Served { version } | Event::UnservedAccepted { version } => {
            Action::CheckFiles { version: *version }
        }
        Event::NotServed { version, verdict } => {
            // Only an endpoint serving an older certificate is something a rollback can
            // fix; one that does not answer would not answer with the older one either.
            let keep_why = match (observed.certificate.on_verify_failure, verdict) {
                (OnVerifyFailure::Keep, _) => Some("on_verify_failure = \"keep\""),
                (OnVerifyFailure::Rollback, Verdict::Stale) => None,
                (OnVerifyFailure::Rollback, _) => Some("unreachable: a rollback would not help"),
            };
            match keep_why {
                Some(why) => Action::AcceptUnserved {
                    version: *version,
                    why,
                },
                None => Action::RollBack {
                    version: *version,
                    rollout_only: true,
                },
            }
        }
        Event::FilesChecked {
            version,
            unserved_kept: true,
        } => Action::ParkUnserved { version: *version },
        Event::FilesChecked {
            version,
            unserved_kept: false,
        } => Action::MarkVerified { version: *version },
        Event::FilesFailed { version } => Action::RollBack {
            version: *version,
            rollout_only: false,
        },
        Event::Verified { version } => Action::Finish { version: *version },
        Event::RolledBack { restored } => Action::Fail {
            restored: *restored,
        },
    }
}

/// The order URL in the in-flight record.
fn recorded_order(observed: &Observed<'_>) -> Option<String> {
    observed.disk.inflight.as_ref()?.order_url.clone()
}

/// Whether the in-flight record holds the key the order is finalized with.
fn key_saved(observed: &Observed<'_>) -> bool {
    observed
        .disk
        .inflight
        .as_ref()
        .is_some_and(|record| record.key_pem.is_some())
}

/// Where an interrupted renewal picks up after the clean-up.
fn resume(observed: &Observed<'_>, next: NextStep) -> Action {
    match next {
        NextStep::Idle => when_idle(observed),
        // An order kept across a rate limit or a server error waits for the CA's
        // Retry-After like a new one would.
        NextStep::ResumeOrder { .. } => ca_refusal(observed).unwrap_or(Action::LoadAccount),
        NextStep::Adopt { version } => Action::Adopt { version },
        NextStep::Deploy { version } => Action::Deploy { version },
        NextStep::Verify { version } => Action::CheckServed { version },
        NextStep::Finish { version } => Action::Finish { version },
        NextStep::Abandon { version, reason } => Action::Abandon { version, reason },
    }
}

#[cfg(test)]
mod tests;
