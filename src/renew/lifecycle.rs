//! The stages of one renewal of one certificate, each recorded by the store before the next
//! begins. Around them: the account (`account.rs`), failure bookkeeping in the schedule
//! state (`failure.rs`), rollbacks (`rollback.rs`) and the served check (`rollout.rs`).

use std::sync::Arc;

use time::OffsetDateTime;

use crate::config::model::CertificateConfig;
use crate::hook::{HookError, HookKind};
use crate::renew::clock::StepClock;
use crate::renew::decision::PlanFacts;
use crate::renew::deploy::{self, DeployEnv, DeployError};
use crate::renew::hook_group;
use crate::renew::{RenewError, RenewOutcome, Renewer};
use crate::schedule::history as schedule_state;
use crate::schedule::plan::ca_gate;
use crate::store::{AuditEvent, HookProcess, Outcome, Stage, Step, Store, StoreError, VersionId};

mod account;
mod driver;
mod failure;
mod fleet_wait;
mod observe;
mod obtain;
mod reroll;
mod rollback;
mod rollout;

pub(crate) use account::AccountCache;
pub(crate) use observe::wake_up;
pub(crate) use reroll::reusable_version;

/// One renewal (or rollback) of one certificate at one moment.
pub(crate) struct Run<'a> {
    pub(super) renewer: &'a Renewer,
    pub(super) certificate: &'a CertificateConfig,
    pub(super) store: Arc<dyn Store>,
    /// The moment the run decides with (what is due, what is expired).
    pub(super) now: OffsetDateTime,
    /// The moments its steps happen, for the audit log and the schedule state.
    steps: StepClock<'a>,
}

impl<'a> Run<'a> {
    /// Opens the state directory for a run.
    pub(crate) fn open(
        renewer: &'a Renewer,
        certificate: &'a CertificateConfig,
        now: OffsetDateTime,
    ) -> Result<Run<'a>, RenewError> {
        Ok(Run {
            renewer,
            certificate,
            store: renewer.store.clone(),
            now,
            steps: StepClock::start(&*renewer.clock, now),
        })
    }

    /// The moment of a step happening now, from the renewer's clock.
    pub(super) fn event_time(&self) -> OffsetDateTime {
        self.steps.stamp()
    }

    pub(super) fn name(&self) -> &'a str {
        &self.certificate.name
    }

    pub(super) fn store_error(&self, source: StoreError) -> RenewError {
        RenewError::store(self.name(), source)
    }

    /// Stops a deploy command left running by a dead process, removes leftovers of
    /// interrupted writes and audits that an interrupted renewal resumes.
    fn clean_up(
        &self,
        stop_hook: Option<HookProcess>,
        remove_leftovers: bool,
        resuming: bool,
    ) -> Result<(), RenewError> {
        let name = self.name();
        if let Some(hook) = stop_hook {
            let stopped = hook_group::stop(&hook);
            if stopped > 0 {
                tracing::warn!(
                    groups = stopped,
                    "stopped a deploy command left running by an interrupted renewal"
                );
            }
            self.store
                .record_hook(name, None)
                .map_err(|e| self.store_error(e))?;
        }
        if remove_leftovers {
            self.store
                .remove_leftovers(name)
                .map_err(|e| self.store_error(e))?;
        }
        if resuming {
            tracing::info!("resuming an interrupted renewal");
            self.record(Step::Recover, None, None, None);
        }
        Ok(())
    }

    /// Refuses an attempt the CA's limits do not allow yet (its Retry-After, the
    /// failed-authorization limit), whatever `--force` says. Not counted as a failure: no
    /// request was made.
    pub(crate) fn check_ca_gate(&self) -> Result<(), RenewError> {
        let state = schedule_state::load_from(&*self.store, self.name())
            .map_err(|e| self.store_error(e))?;
        match ca_gate(self.now, &state, &self.certificate.dns_names()) {
            None => Ok(()),
            Some(gate) => {
                let error = RenewError::Gated {
                    name: self.name().to_owned(),
                    until: gate.until,
                    reason: gate.reason,
                };
                tracing::warn!("{error}");
                Err(error)
            }
        }
    }

    /// `revoked: ...` when the current version was found revoked, for the audit line of
    /// the renewal that replaces it.
    pub(super) fn revocation_reason(&self) -> Option<String> {
        let facts = PlanFacts::read(&*self.store, self.name()).ok()?;
        let serial = &facts.current.as_ref()?.serial;
        let check = facts.schedule.revocation_of(serial)?;
        check.revoked_at?;
        Some(format!("revoked: {}", check.describe()))
    }

    /// Records a completed stage: the in-flight record advances, then the audit line.
    fn pass_step(&self, stage: Stage, step: Step, version: VersionId) -> Result<(), RenewError> {
        self.store
            .advance(self.name(), stage, version)
            .map_err(|e| self.store_error(e))?;
        let serial = self.serial(version);
        self.record(step, Some(version), serial.as_deref(), None);
        Ok(())
    }

    pub(super) fn finish(&self, version: VersionId) -> Result<RenewOutcome, RenewError> {
        let name = self.name();
        let meta = self
            .store
            .metadata(name, version)
            .map_err(|e| self.store_error(e))?;
        // The record goes last: a crash before it finishes again (one more `done` line)
        // instead of leaving the success unrecorded.
        let pruned = self
            .store
            .prune(name, self.certificate.history)
            .map_err(|e| self.store_error(e))?;
        if !pruned.is_empty() {
            tracing::info!(?pruned, "removed old versions");
        }
        self.update_schedule(|state, now| state.record_success(now))
            .map_err(|e| self.store_error(e))?;
        self.record(Step::Done, Some(version), Some(&meta.serial), None);
        self.store.finish(name).map_err(|e| self.store_error(e))?;
        Ok(RenewOutcome::Renewed {
            version,
            serial: meta.serial,
            not_after: meta.not_after,
            dry_run: self.renewer.dry_run,
        })
    }

    pub(super) async fn deploy(&self, version: VersionId) -> Result<(), DeployError> {
        let files = match self.store.current_files(self.name()) {
            Ok(files) => files,
            Err(e) => {
                return Err(DeployError::Hook(HookError::Spawn {
                    kind: HookKind::Deploy,
                    command: String::new(),
                    message: e.to_string(),
                }));
            }
        };
        let env = DeployEnv {
            name: self.name(),
            version,
            files: &files,
            dry_run: self.renewer.dry_run,
            hook_env: &self.certificate.env,
        };
        deploy::run_all_tracked(
            &self.certificate.deploy,
            &env,
            self.certificate.deploy_timeout,
            &hook_group::Recorder::new(&*self.store, self.name()),
        )
        .await
    }

    /// The hook error of a failed deploy; a command the store refused to start (this
    /// replica was fenced) is the store's error instead, which ends the renewal.
    pub(super) fn hook_failure(&self, failure: DeployError) -> Result<HookError, RenewError> {
        match failure {
            DeployError::Hook(error) => Ok(error),
            DeployError::NotStarted { source, .. } => Err(self.store_error(source)),
        }
    }

    pub(super) fn serial(&self, version: VersionId) -> Option<String> {
        self.store
            .metadata(self.name(), version)
            .ok()
            .map(|meta| meta.serial)
    }

    pub(super) fn record(
        &self,
        step: Step,
        version: Option<VersionId>,
        serial: Option<&str>,
        error: Option<&RenewError>,
    ) {
        self.record_text(step, version, serial, error.map(ToString::to_string));
    }

    /// The audit line of a step of `version` that failed with `error`, naming the
    /// version's serial (looked up in the store).
    pub(super) fn record_version_error(&self, step: Step, version: VersionId, error: String) {
        let serial = self.serial(version);
        self.record_text(step, Some(version), serial.as_deref(), Some(error));
    }

    /// One audit line, and the same as a log event. An audit write failure is logged, not
    /// fatal: stopping halfway would leave the certificate in a worse state.
    pub(super) fn record_text(
        &self,
        step: Step,
        version: Option<VersionId>,
        serial: Option<&str>,
        error: Option<String>,
    ) {
        self.record_with_detail(step, version, serial, error, None);
    }

    /// [`record_text`](Self::record_text) with a `detail` for a step that worked.
    pub(super) fn record_with_detail(
        &self,
        step: Step,
        version: Option<VersionId>,
        serial: Option<&str>,
        error: Option<String>,
        detail: Option<String>,
    ) {
        let outcome = if error.is_some() {
            Outcome::Error
        } else {
            Outcome::Ok
        };
        match &error {
            Some(error) => tracing::warn!(?step, version = ?version, %error, "renewal step failed"),
            None => tracing::info!(?step, version = ?version, serial, detail, "renewal step"),
        }
        let event = AuditEvent {
            // Replaced by the moment the line is written.
            time: self.now,
            certificate: self.name().to_owned(),
            version,
            serial: serial.map(str::to_owned),
            step,
            outcome,
            error,
            detail,
        };
        if let Err(e) = self
            .store
            .append_audit_stamped(event, &|| self.event_time())
        {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}
