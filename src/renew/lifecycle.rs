//! The stages of one renewal of one certificate, each recorded by the store before the next
//! begins. Around them: the account (`account.rs`), failure bookkeeping in the schedule
//! state (`failure.rs`), rollbacks (`rollback.rs`) and the served check (`rollout.rs`).

use time::OffsetDateTime;

use crate::acme::{AcmeAccount, IssueRequest};
use crate::config::model::CertificateConfig;
use crate::hook::{HookError, HookKind};
use crate::renew::clock::StepClock;
use crate::renew::deploy::{self, DeployEnv};
use crate::renew::hook_group;
use crate::renew::{RenewError, RenewOutcome, Renewer};
use crate::schedule::history as schedule_state;
use crate::schedule::plan::ca_gate;
use crate::store::{
    AuditEvent, AuditLog, CertStore, NextStep, Origin, Outcome, Stage, Step, StoreError, VersionId,
    check_version, recover,
};

mod account;
mod failure;
mod obtain;
mod reroll;
mod rollback;
mod rollout;

pub(crate) use account::AccountCache;

/// One renewal (or rollback) of one certificate at one moment.
pub(crate) struct Run<'a> {
    pub(super) renewer: &'a Renewer,
    pub(super) certificate: &'a CertificateConfig,
    pub(super) store: CertStore,
    audit: AuditLog,
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
        let store_error = |source| RenewError::Store {
            name: certificate.name.clone(),
            source,
        };
        let store = CertStore::open(&renewer.state_dir).map_err(store_error)?;
        let audit = AuditLog::open(&renewer.state_dir.join("audit.jsonl")).map_err(store_error)?;
        Ok(Run {
            renewer,
            certificate,
            store,
            audit,
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
        RenewError::Store {
            name: self.name().to_owned(),
            source,
        }
    }

    /// Resumes whatever was in flight, then renews if due (or `force`).
    pub(crate) async fn renew(self, force: bool) -> Result<RenewOutcome, RenewError> {
        let name = self.name();
        let disk = self
            .store
            .disk_state(name)
            .map_err(|e| self.store_error(e))?;
        let recovery = recover(&disk);
        if let Some(hook) = recovery.stop_hook {
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
        if recovery.remove_leftovers {
            self.store
                .remove_leftovers(name)
                .map_err(|e| self.store_error(e))?;
        }
        if recovery.next != NextStep::Idle {
            tracing::info!(next = ?recovery.next, "resuming an interrupted renewal");
            self.record(Step::Recover, None, None, None);
        }
        match recovery.next {
            NextStep::Idle => {}
            NextStep::ResumeOrder { order_url } => {
                // An order kept across a rate limit or a server error waits for the CA's
                // Retry-After like a new one would.
                self.check_ca_gate()?;
                let account = self.account().await?;
                return self.issue_and_roll_out(&account, order_url).await;
            }
            NextStep::Adopt { version } => {
                self.store
                    .advance(name, Stage::Pending, version)
                    .map_err(|e| self.store_error(e))?;
                return self.roll_out(version).await;
            }
            NextStep::Deploy { version } => return self.roll_out(version).await,
            NextStep::Verify { version } => return self.verify_and_finish(version).await,
            NextStep::Finish { version } => return self.finish(version),
            NextStep::Abandon { version, reason } => self.abandon(version, &reason).await?,
        }

        if force {
            self.check_ca_gate()?;
        } else {
            let (decision, next_check) = self.decide_with_renewal_info().await?;
            if decision.renew_at > self.now {
                tracing::info!(
                    renew_at = %decision.renew_at,
                    reason = ?decision.reason,
                    rule = decision.rule.as_str(),
                    %next_check,
                    "not due"
                );
                return Ok(RenewOutcome::NotDue {
                    renew_at: decision.renew_at,
                    reason: decision.reason,
                    next_check,
                });
            }
        }
        // A version whose rollout failed is rolled out again rather than ordered anew:
        // every order spends the CA's duplicate-certificate limit.
        if let Some(version) = self.parked_version()? {
            return self.reroll(version).await;
        }
        // The account comes first: an unreachable CA leaves no in-flight record behind.
        let account = self.account().await?;
        self.check_profile(&account).await?;
        self.store
            .begin(name, self.now)
            .map_err(|e| self.store_error(e))?;
        self.record(Step::Begin, None, None, None);
        self.issue_and_roll_out(&account, None).await
    }

    /// Refuses an attempt the CA's limits do not allow yet (its Retry-After, the
    /// failed-authorization limit), whatever `--force` says. Not counted as a failure: no
    /// request was made.
    pub(crate) fn check_ca_gate(&self) -> Result<(), RenewError> {
        let path = self
            .store
            .schedule_path(self.name())
            .map_err(|e| self.store_error(e))?;
        let state = schedule_state::load(&path).map_err(|e| self.store_error(e))?;
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

    /// Orders (or resumes `order_url`), stores the result as pending and rolls it out.
    async fn issue_and_roll_out(
        &self,
        account: &AcmeAccount,
        order_url: Option<String>,
    ) -> Result<RenewOutcome, RenewError> {
        let request = IssueRequest {
            names: self.certificate.identifiers.clone(),
            key: self.certificate.key,
            challenge: self.certificate.challenge.clone(),
            profile: self.certificate.profile.clone(),
            replaces: self.replaces(account),
        };
        let issued = match self.obtain(account, &request, order_url).await {
            Ok(issued) => issued,
            Err(source) => {
                let keep = source.is_transient() && self.order_finalizable()?;
                let error = RenewError::Acme {
                    name: self.name().to_owned(),
                    source,
                };
                if keep {
                    // The order has a saved key: the next attempt resumes it (recovery
                    // sees the recorded order) instead of ordering a second certificate.
                    self.record(Step::Order, None, None, Some(&error));
                    tracing::warn!("keeping the order and its key for the next attempt");
                    return Err(self.count_failure(error));
                }
                self.record(Step::Abandon, None, None, Some(&error));
                self.store
                    .finish(self.name())
                    .map_err(|e| self.store_error(e))?;
                return Err(self.count_failure(error));
            }
        };
        let origin = Origin {
            created_at: self.event_time(),
            source: account.directory().to_owned(),
        };
        let staged = self.store.stage_pending(
            self.name(),
            &issued.key_pem,
            &issued.cert_chain_pem,
            &origin,
        );
        let meta = match staged {
            Ok(meta) => meta,
            Err(source) => {
                // A certificate that cannot be stored (it does not match the saved key, it
                // does not parse, the disk failed) must not be downloaded again and again:
                // the order is given up and the next attempt orders anew.
                let error = self.store_error(source);
                self.record(Step::Abandon, None, None, Some(&error));
                self.store
                    .finish(self.name())
                    .map_err(|e| self.store_error(e))?;
                return Err(self.count_failure(error));
            }
        };
        self.store
            .advance(self.name(), Stage::Pending, meta.version)
            .map_err(|e| self.store_error(e))?;
        self.record(Step::Pending, Some(meta.version), Some(&meta.serial), None);
        self.roll_out(meta.version).await
    }

    /// Whether the in-flight record holds an order and the key saved for it: from there a
    /// transient failure is worth resuming rather than abandoning.
    fn order_finalizable(&self) -> Result<bool, RenewError> {
        let record = self
            .store
            .inflight(self.name())
            .map_err(|e| self.store_error(e))?;
        Ok(record.is_some_and(|record| record.order_url.is_some() && record.key_pem.is_some()))
    }

    /// Makes `version` current, runs the deploy commands, verifies and finishes.
    async fn roll_out(&self, version: VersionId) -> Result<RenewOutcome, RenewError> {
        let name = self.name();
        self.store
            .promote(name, version)
            .map_err(|e| self.store_error(e))?;
        let serial = self.serial(version);
        if let Err(source) = self.deploy(version).await {
            let detail = source.to_string();
            return self
                .fail_step(
                    Step::Deployed,
                    true,
                    version,
                    serial.as_deref(),
                    detail,
                    |restored| RenewError::Hook {
                        name: name.to_owned(),
                        version,
                        restored,
                        source,
                    },
                )
                .await;
        }
        self.pass_step(Stage::Deployed, Step::Deployed, version, serial.as_deref())?;
        self.verify_and_finish(version).await
    }

    /// Checks that the `verify` endpoints serve `version`, then the live files; finishes.
    /// Recovery of a renewal interrupted after its deploy commands resumes here.
    async fn verify_and_finish(&self, version: VersionId) -> Result<RenewOutcome, RenewError> {
        let name = self.name();
        let serial = self.serial(version);
        let kept_unserved = self.check_served(version).await?;
        let files = self
            .store
            .current_files(name)
            .map_err(|e| self.store_error(e))?;
        if let Err(source) = check_version(&files, &self.certificate.dns_names()) {
            let detail = source.to_string();
            return self
                .fail_step(
                    Step::Verified,
                    false,
                    version,
                    serial.as_deref(),
                    detail,
                    |restored| RenewError::Verify {
                        name: name.to_owned(),
                        version,
                        restored,
                        source,
                    },
                )
                .await;
        }
        if let Some(source) = kept_unserved {
            return Err(self.keep_unserved(version, source));
        }
        self.pass_step(Stage::Verified, Step::Verified, version, serial.as_deref())?;
        self.finish(version)
    }

    /// Records a completed stage: the in-flight record advances, then the audit line.
    fn pass_step(
        &self,
        stage: Stage,
        step: Step,
        version: VersionId,
        serial: Option<&str>,
    ) -> Result<(), RenewError> {
        self.store
            .advance(self.name(), stage, version)
            .map_err(|e| self.store_error(e))?;
        self.record(step, Some(version), serial, None);
        Ok(())
    }

    /// Records a failed stage, rolls back to the previous version (redeploying it) and
    /// counts the failure built by `error` from what was restored. `rollout_only`: the
    /// version's files are good (see [`Run::roll_back_failed`]).
    async fn fail_step<T>(
        &self,
        step: Step,
        rollout_only: bool,
        version: VersionId,
        serial: Option<&str>,
        detail: String,
        error: impl FnOnce(Option<VersionId>) -> RenewError,
    ) -> Result<T, RenewError> {
        self.record_text(step, Some(version), serial, Some(detail));
        let restored = self.roll_back_failed(rollout_only).await?;
        Err(self.count_failure(error(restored)))
    }

    fn finish(&self, version: VersionId) -> Result<RenewOutcome, RenewError> {
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

    pub(super) async fn deploy(&self, version: VersionId) -> Result<(), HookError> {
        let files = match self.store.current_files(self.name()) {
            Ok(files) => files,
            Err(e) => {
                return Err(HookError::Spawn {
                    kind: HookKind::Deploy,
                    command: String::new(),
                    message: e.to_string(),
                });
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
            &hook_group::Recorder::new(&self.store, self.name()),
        )
        .await
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
        if let Err(e) = self.audit.append_stamped(event, || self.event_time()) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}
