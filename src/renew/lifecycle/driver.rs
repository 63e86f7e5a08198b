//! The driver of one renewal: observes the store, asks the pure state machine
//! (`renew::next_action`) for the next action, performs it (store, CA, deploy commands,
//! served check) and feeds the result back as an event, until an action ends the renewal.
//! Every decision is taken at the renewal's `now`; each step is stamped (audit line,
//! failure record) with the renewer's injected clock as it happens, and each random draw
//! comes from its injected random source.

use time::OffsetDateTime;

use super::Run;
use super::fleet_wait::FleetWait;
use crate::acme::{AcmeAccount, AcmeError, OrderPermit, OrderProgress};
use crate::renew::next_action::{Action, Event, next_action};
use crate::renew::rollout_check::ServedError;
use crate::renew::{RenewError, RenewOutcome};
use crate::store::{NewVersion, Origin, Stage, Step, StoreError, VersionId, check_version};

/// What one renewal carries from one action to the next besides the store: the account,
/// and the failure an action met, until the state machine decides how it ends.
#[derive(Default)]
struct Progress {
    account: Option<AcmeAccount>,
    /// The CA's order slot, held from the first order action until the chain is downloaded
    /// (or the renewal ends), never while deploying or checking the rollout.
    order_permit: Option<OrderPermit>,
    /// The failure to count when the renewal ends (after a rollback, with what it restored).
    failure: Option<RenewError>,
    /// The served check's failure, until the state machine keeps or rolls back the version.
    not_served: Option<ServedError>,
    /// A version kept current although not served: counted once its files check out.
    kept_unserved: Option<ServedError>,
    /// With a fleet: the version this renewal marked as rolled out on this replica (before
    /// promoting it) while its own rollout report is not stored yet.
    unreported: Option<VersionId>,
}

/// Whether the renewal goes on after an action.
enum Flow {
    Next(Event),
    Ended(RenewOutcome),
}

impl Run<'_> {
    /// Resumes whatever was in flight, then renews if due (or `force`).
    pub(crate) async fn renew(self, force: bool) -> Result<RenewOutcome, RenewError> {
        match self.drive(force, false).await? {
            Some(outcome) => Ok(outcome),
            // Only `drive(_, true)` stops before ordering.
            None => Err(RenewError::NoAcme),
        }
    }

    /// Runs the renewal (not forced) until it would load the account to order: the outcome
    /// when it ended before (not due, after the CA's renewal information was asked), `None`
    /// when it is due. The multi-CA renewal asks the CA that issued the current certificate
    /// this way, then orders from its own list.
    pub(crate) async fn plan_until_due(self) -> Result<Option<RenewOutcome>, RenewError> {
        self.drive(false, true).await
    }

    /// [`drive_steps`](Self::drive_steps); a write the store rejected because another
    /// replica holds the lock now ends the renewal at once, audited `fenced`.
    async fn drive(
        self,
        force: bool,
        stop_before_ordering: bool,
    ) -> Result<Option<RenewOutcome>, RenewError> {
        let mut progress = Progress::default();
        let result = self
            .drive_steps(force, stop_before_ordering, &mut progress)
            .await;
        if let Err(error @ RenewError::Store { source, .. }) = &result {
            if matches!(source, StoreError::Fenced { .. }) {
                tracing::warn!(certificate = self.name(), "{error}; renewal stopped");
                self.record(Step::Fenced, None, None, Some(error));
            }
            self.forget_unreported(&progress);
        }
        result
    }

    /// A renewal the store stopped midway leaves its in-flight record, and whoever resumes
    /// it (another replica, once this one's lock is gone) waits for every replica's rollout
    /// report. One this renewal deployed here but did not report is forgotten as rolled
    /// out, so this replica's follower rolls it out again and stores the report.
    fn forget_unreported(&self, progress: &Progress) {
        if let (Some(fleet), Some(version)) = (&self.renewer.fleet, progress.unreported) {
            fleet.forget_applied(self.name(), version);
        }
    }

    async fn drive_steps(
        &self,
        force: bool,
        stop_before_ordering: bool,
        progress: &mut Progress,
    ) -> Result<Option<RenewOutcome>, RenewError> {
        let mut event = Event::Started;
        loop {
            let snapshot = self.observe()?;
            // Decisions are taken at the moment the renewal was asked to decide at (what is
            // due, what is expired, when the CA is asked again); each step is stamped by
            // the clock when it happens (`event_time`).
            let now = self.now;
            let observed = self.observed(&snapshot, force, now);
            let action = next_action(&observed, &event);
            tracing::debug!(?event, ?action, "renewal state machine");
            if stop_before_ordering && matches!(action, Action::LoadAccount) {
                return Ok(None);
            }
            match self.perform(action, now, progress).await? {
                Flow::Next(next) => event = next,
                Flow::Ended(outcome) => return Ok(Some(outcome)),
            }
        }
    }

    /// Performs `action` at `now`.
    async fn perform(
        &self,
        action: Action,
        now: OffsetDateTime,
        progress: &mut Progress,
    ) -> Result<Flow, RenewError> {
        let name = self.name();
        let event = match action {
            Action::CleanUp {
                stop_hook,
                remove_leftovers,
                resuming,
            } => {
                self.clean_up(stop_hook, remove_leftovers, resuming)?;
                Event::CleanedUp
            }
            Action::Abandon { version, reason } => {
                self.abandon(version, &reason).await?;
                Event::Abandoned
            }
            Action::SaveJitter { serial, value } => {
                self.update_schedule(|state, _| {
                    state.jitter_for(&serial, value);
                })
                .map_err(|e| self.store_error(e))?;
                Event::JitterSaved
            }
            Action::PollRenewalInfo { cert_id } => self.ask_renewal_info(&cert_id).await,
            Action::SaveRenewalInfo { state } => {
                self.save_renewal_info(state)?;
                Event::RenewalInfoSaved
            }
            Action::Sleep {
                renew_at,
                reason,
                rule,
                next_check,
            } => {
                tracing::info!(
                    %renew_at,
                    ?reason,
                    rule = rule.as_str(),
                    %next_check,
                    "not due"
                );
                return Ok(Flow::Ended(RenewOutcome::NotDue {
                    renew_at,
                    reason,
                    next_check,
                }));
            }
            Action::Refuse { until, reason } => {
                let error = RenewError::Gated {
                    name: name.to_owned(),
                    until,
                    reason,
                };
                tracing::warn!("{error}");
                return Err(error);
            }
            Action::LoadAccount => {
                self.renewer.acme.as_ref().ok_or(RenewError::NoAcme)?;
                match self.load_account().await {
                    Ok(account) => {
                        progress.account = Some(account);
                        Event::AccountLoaded
                    }
                    Err(source) => {
                        let error = RenewError::Acme {
                            name: name.to_owned(),
                            source,
                        };
                        self.record(Step::Begin, None, None, Some(&error));
                        progress.failure = Some(error);
                        Event::AccountFailed
                    }
                }
            }
            Action::CheckProfile => {
                let account = self.account_of(progress).await?;
                match self.profile_unavailable(&account).await {
                    None => Event::ProfileChecked { available: true },
                    Some(error) => {
                        self.record(Step::Order, None, None, Some(&error));
                        progress.failure = Some(error);
                        Event::ProfileChecked { available: false }
                    }
                }
            }
            Action::Begin => {
                self.store
                    .begin(name, now)
                    .map_err(|e| self.store_error(e))?;
                // Why this renewal began, when it is not the usual window: a revocation.
                let detail = self.revocation_reason();
                self.record_with_detail(Step::Begin, None, None, None, detail);
                Event::Begun
            }
            Action::ResumeOrder { order_url } => {
                let account = self.account_of(progress).await?;
                self.hold_order_permit(&account, &mut progress.order_permit)
                    .await;
                let request = self.issue_request(&account);
                match self
                    .check_recorded_order(&account, &request, &order_url)
                    .await
                {
                    Ok(None) => Event::RecordedOrderUnusable,
                    Ok(Some(progress)) => Event::RecordedOrderUsable {
                        finalized: progress == OrderProgress::Finalized,
                    },
                    Err(source) => order_failed(progress, name, source),
                }
            }
            Action::RecordResumed { finalized } => {
                self.record_resumed(finalized);
                Event::OrderReady
            }
            Action::PlaceOrder => {
                let account = self.account_of(progress).await?;
                let request = self.issue_request(&account);
                let permit = &mut progress.order_permit;
                match self.place_and_validate(&account, &request, permit).await {
                    Ok(()) => Event::OrderReady,
                    Err(source) => order_failed(progress, name, source),
                }
            }
            Action::SaveKey => {
                let account = self.account_of(progress).await?;
                match self.save_new_key(&self.issue_request(&account)).await {
                    Ok(()) => Event::KeySaved,
                    Err(source) => order_failed(progress, name, source),
                }
            }
            Action::Finalize { order_url } => {
                let account = self.account_of(progress).await?;
                self.hold_order_permit(&account, &mut progress.order_permit)
                    .await;
                let staged = self
                    .finalize_and_stage(&account, &order_url, progress)
                    .await;
                // The CA is done with this order: the next renewal may order.
                progress.order_permit = None;
                staged?
            }
            Action::KeepOrder => {
                let error = failure(progress, name);
                self.record(Step::Order, None, None, Some(&error));
                tracing::warn!("keeping the order and its key for the next attempt");
                return Err(self.count_failure(error));
            }
            Action::AbandonOrder => {
                let error = failure(progress, name);
                self.record(Step::Abandon, None, None, Some(&error));
                self.store.finish(name).map_err(|e| self.store_error(e))?;
                return Err(self.count_failure(error));
            }
            Action::Adopt { version } => {
                self.store
                    .advance(name, Stage::Pending, version)
                    .map_err(|e| self.store_error(e))?;
                Event::Staged { version }
            }
            Action::Reroll { version } => {
                self.reroll(version, now)?;
                Event::Staged { version }
            }
            Action::Deploy { version } => self.deploy_step(version, progress).await?,
            Action::CheckServed { version } => match self.check_served(version).await? {
                None => {
                    let fleet = self.await_fleet(version).await?;
                    // Whatever the fleet said, this replica's own report is stored by now.
                    progress.unreported = None;
                    match fleet {
                        FleetWait::Served => Event::Served { version },
                        FleetWait::DeployFailed(failure) => {
                            progress.failure = Some(failure);
                            Event::DeployFailed { version }
                        }
                        FleetWait::NotServed(source) => {
                            let verdict = source.verdict;
                            progress.not_served = Some(source);
                            Event::NotServed { version, verdict }
                        }
                    }
                }
                Some(source) => {
                    let verdict = source.verdict;
                    progress.not_served = Some(source);
                    Event::NotServed { version, verdict }
                }
            },
            Action::AcceptUnserved { version, why } => {
                if let Some(source) = progress.not_served.take() {
                    let text = format!("{source}; kept as current ({why})");
                    self.record_version_error(Step::Served, version, text);
                    progress.kept_unserved = Some(source);
                }
                Event::UnservedAccepted { version }
            }
            Action::CheckFiles { version } => self.check_files(version, progress)?,
            Action::MarkVerified { version } => {
                self.pass_step(Stage::Verified, Step::Verified, version)?;
                Event::Verified { version }
            }
            Action::RollBack {
                version,
                rollout_only,
            } => {
                if let Some(source) = progress.not_served.take() {
                    self.record_version_error(Step::Served, version, source.to_string());
                    progress.failure = Some(RenewError::Served {
                        name: name.to_owned(),
                        version,
                        restored: None,
                        kept: false,
                        source,
                    });
                }
                let restored = self.roll_back_failed(rollout_only, now).await?;
                Event::RolledBack { restored }
            }
            Action::Finish { version } => return Ok(Flow::Ended(self.finish(version)?)),
            Action::ParkUnserved { version } => {
                let Some(source) = progress.kept_unserved.take() else {
                    return Err(missing_failure(name));
                };
                return Err(self.keep_unserved(version, source));
            }
            Action::Fail { restored } => {
                let error = failure(progress, name).with_restored(restored);
                return Err(self.count_failure(error));
            }
        };
        Ok(Flow::Next(event))
    }

    /// The account loaded by [`Action::LoadAccount`], or loaded now.
    async fn account_of(&self, progress: &mut Progress) -> Result<AcmeAccount, RenewError> {
        if let Some(account) = &progress.account {
            return Ok(account.clone());
        }
        let account = self.account().await?;
        progress.account = Some(account.clone());
        Ok(account)
    }

    /// Finalizes the order at `order_url` and downloads the chain, stores it and records
    /// it as pending.
    async fn finalize_and_stage(
        &self,
        account: &AcmeAccount,
        order_url: &str,
        progress: &mut Progress,
    ) -> Result<Event, RenewError> {
        let name = self.name();
        let request = self.issue_request(account);
        let (key_pem, cert_chain_pem) = match self
            .finalize_and_download(account, &request, order_url)
            .await
        {
            Ok(issued) => issued,
            Err(source) => return Ok(order_failed(progress, name, source)),
        };
        let origin = Origin {
            created_at: self.event_time(),
            source: account.directory().to_owned(),
        };
        let staged = self.store.stage_pending(
            name,
            NewVersion {
                key_pem: key_pem.expose(),
                chain_pem: &cert_chain_pem,
                origin: &origin,
            },
        );
        let meta = match staged {
            Ok(meta) => meta,
            Err(source) => {
                progress.failure = Some(self.store_error(source));
                return Ok(Event::StageFailed);
            }
        };
        self.store
            .advance(name, Stage::Pending, meta.version)
            .map_err(|e| self.store_error(e))?;
        // The audit says which CA issued the version (its metadata keeps the directory).
        let ca = self.renewer.cas.name_of_source(&origin.source);
        let detail = format!(
            "issued by CA {} ({})",
            ca.unwrap_or("unknown"),
            origin.source
        );
        self.record_with_detail(
            Step::Pending,
            Some(meta.version),
            Some(&meta.serial),
            None,
            Some(detail),
        );
        Ok(Event::Staged {
            version: meta.version,
        })
    }

    /// Makes `version` current and runs the deploy commands.
    async fn deploy_step(
        &self,
        version: VersionId,
        progress: &mut Progress,
    ) -> Result<Event, RenewError> {
        let name = self.name();
        // Before `current` moves, so this replica's follower never rolls out what this
        // renewal deploys itself.
        if let Some(fleet) = &self.renewer.fleet {
            fleet.mark_applied(name, version);
            progress.unreported = Some(version);
        }
        self.store
            .promote(name, version)
            .map_err(|e| self.store_error(e))?;
        if let Err(failure) = self.deploy(version).await {
            let source = self.hook_failure(failure)?;
            self.record_version_error(Step::Deployed, version, source.to_string());
            progress.failure = Some(RenewError::Hook {
                name: name.to_owned(),
                version,
                restored: None,
                source,
            });
            return Ok(Event::DeployFailed { version });
        }
        self.pass_step(Stage::Deployed, Step::Deployed, version)?;
        Ok(Event::Deployed { version })
    }

    /// Checks the live files of `version`.
    fn check_files(
        &self,
        version: VersionId,
        progress: &mut Progress,
    ) -> Result<Event, RenewError> {
        let name = self.name();
        let files = self
            .store
            .current_files(name)
            .map_err(|e| self.store_error(e))?;
        if let Err(source) = check_version(&files, &self.certificate.dns_names()) {
            self.record_version_error(Step::Verified, version, source.to_string());
            progress.kept_unserved = None;
            progress.failure = Some(RenewError::Verify {
                name: name.to_owned(),
                version,
                restored: None,
                source,
            });
            return Ok(Event::FilesFailed { version });
        }
        Ok(Event::FilesChecked {
            version,
            unserved_kept: progress.kept_unserved.is_some(),
        })
    }
}

/// Holds the CA's `source` as the renewal's failure; whether the order is kept is the
/// state machine's decision.
fn order_failed(progress: &mut Progress, name: &str, source: AcmeError) -> Event {
    let transient = source.is_transient();
    progress.failure = Some(RenewError::Acme {
        name: name.to_owned(),
        source,
    });
    Event::OrderFailed { transient }
}

/// The failure an earlier action met. The state machine only ends a renewal with a failure
/// after an event that reported one, so it is there.
fn failure(progress: &mut Progress, name: &str) -> RenewError {
    progress
        .failure
        .take()
        .unwrap_or_else(|| missing_failure(name))
}

/// A failure-ending action with no failure held: a bug in the state machine, reported as a
/// state error rather than a panic.
fn missing_failure(name: &str) -> RenewError {
    RenewError::Store {
        name: name.to_owned(),
        source: StoreError::io(
            "end the renewal",
            "",
            std::io::Error::other("the renewal ended with a failure it did not record"),
        ),
    }
}

#[cfg(test)]
mod tests;
