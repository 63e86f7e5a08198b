//! Rollbacks: after a failed deploy or verification (the restored version is deployed
//! again), `certinel rollback NAME`, and giving up a renewal recovery cannot continue.

use super::Run;
use crate::renew::{RenewError, RollbackOutcome};
use crate::store::{Step, StoreError, VersionId, VersionState};

impl Run<'_> {
    /// After a failed deploy or verification: `current` back to `previous` (which marks the
    /// new version failed), renewal ended, then the deploy commands for the restored version
    /// so the servers load it again. Every automatic rollback goes through here.
    ///
    /// `rollout_only`: only the rollout failed (a deploy command or the served check), not
    /// the files, so the abandoned version is parked (`VersionState::Parked`) for the next
    /// due attempt to roll out again instead of ordering a new certificate.
    pub(super) async fn roll_back_failed(
        &self,
        rollout_only: bool,
    ) -> Result<Option<VersionId>, RenewError> {
        let name = self.name();
        let abandoned = self.store.current(name).map_err(|e| self.store_error(e))?;
        let restored = match self.store.rollback(name) {
            Ok(restored) => {
                self.record(
                    Step::Rollback,
                    Some(restored),
                    self.serial(restored).as_deref(),
                    None,
                );
                Some(restored)
            }
            Err(StoreError::NoPrevious(_)) => {
                // Nothing older to serve: the new version stays live rather than none, and
                // the schedule retries its rollout (after the backoff) until one works.
                self.record_text(
                    Step::Rollback,
                    None,
                    None,
                    Some("no previous version; the new version stays current".to_owned()),
                );
                self.update_schedule(|state, _| state.record_failed_rollout())
                    .map_err(|e| self.store_error(e))?;
                None
            }
            Err(e) => return Err(self.store_error(e)),
        };
        if rollout_only && let Some(abandoned) = abandoned {
            self.park(abandoned)?;
        }
        self.store.finish(name).map_err(|e| self.store_error(e))?;
        if let Some(restored) = restored {
            self.redeploy(restored).await;
        }
        Ok(restored)
    }

    /// Marks `version` parked: its rollout failed, its files did not.
    pub(super) fn park(&self, version: VersionId) -> Result<(), RenewError> {
        self.store
            .set_state(self.name(), version, VersionState::Parked)
            .map_err(|e| self.store_error(e))
    }

    /// Runs the deploy commands for a version restored by a rollback; a failure is audited
    /// and logged, the renewal has failed already.
    async fn redeploy(&self, restored: VersionId) {
        let serial = self.serial(restored);
        let error = self.deploy(restored).await.err().map(|e| e.to_string());
        self.record_text(Step::Deployed, Some(restored), serial.as_deref(), error);
    }

    /// `certinel rollback NAME`.
    pub(crate) async fn manual_rollback(self) -> Result<RollbackOutcome, RenewError> {
        let name = self.name();
        let from = self.store.current(name).map_err(|e| self.store_error(e))?;
        let to = match self.store.rollback(name) {
            Ok(to) => to,
            Err(source) => {
                self.record_text(Step::Rollback, from, None, Some(source.to_string()));
                return Err(self.store_error(source));
            }
        };
        self.record(Step::Rollback, Some(to), self.serial(to).as_deref(), None);
        if let Err(source) = self.deploy(to).await {
            self.record_text(
                Step::Deployed,
                Some(to),
                self.serial(to).as_deref(),
                Some(source.to_string()),
            );
            return Err(RenewError::Hook {
                name: name.to_owned(),
                version: to,
                restored: Some(to),
                source,
            });
        }
        self.record(Step::Deployed, Some(to), self.serial(to).as_deref(), None);
        Ok(RollbackOutcome { from, to })
    }

    /// Gives up a renewal recovery cannot continue: its version is marked failed (and
    /// rolled back if live), the record removed, a failure counted.
    pub(super) async fn abandon(
        &self,
        version: Option<VersionId>,
        reason: &str,
    ) -> Result<(), RenewError> {
        let name = self.name();
        if let Some(version) = version {
            let current = self.store.current(name).map_err(|e| self.store_error(e))?;
            let mut restored = None;
            if current == Some(version) {
                match self.store.rollback(name) {
                    Ok(to) => restored = Some(to),
                    Err(StoreError::NoPrevious(_)) => {
                        self.update_schedule(|state, _| state.record_failed_rollout())
                            .map_err(|e| self.store_error(e))?;
                    }
                    Err(e) => return Err(self.store_error(e)),
                }
            }
            match self.store.set_state(name, version, VersionState::Failed) {
                Ok(()) | Err(StoreError::NoSuchVersion { .. }) => {}
                Err(e) => return Err(self.store_error(e)),
            }
            if let Some(restored) = restored {
                self.record(
                    Step::Rollback,
                    Some(restored),
                    self.serial(restored).as_deref(),
                    None,
                );
                self.redeploy(restored).await;
            }
        }
        self.store.finish(name).map_err(|e| self.store_error(e))?;
        self.record_text(Step::Abandon, version, None, Some(reason.to_owned()));
        let message = format!("interrupted renewal abandoned: {reason}");
        self.update_schedule(|state, now| state.record_failure(now, &message, None, &[]))
            .map_err(|e| self.store_error(e))
    }
}
