//! Rollbacks: after a failed deploy or verification (the restored version is deployed
//! again, and only when it is fit to serve), `certinel rollback NAME`, and giving up a
//! renewal recovery cannot continue.

use time::OffsetDateTime;

use super::Run;
use crate::cert::KeyType;
use crate::renew::{RenewError, RollbackOutcome};
use crate::store::metadata::parse_key_type;
use crate::store::version_check::name_covered;
use crate::store::{Step, StoreError, VersionId, VersionMetadata, VersionState, check_version};

/// Why the version `meta` must not replace a newer one on disk at `now`, if it must not: it
/// has expired, or no longer covers the wanted names with the wanted key type. Restoring it
/// would swap a working certificate for a worse one.
pub(crate) fn unfit_rollback_target(
    meta: &VersionMetadata,
    now: OffsetDateTime,
    wanted_names: &[String],
    wanted_key_type: Option<KeyType>,
) -> Option<String> {
    let version = meta.version;
    if now >= meta.not_after {
        return Some(format!("previous version {version} has expired"));
    }
    if let Some(missing) = wanted_names
        .iter()
        .find(|name| !name_covered(name, &meta.dns_names))
    {
        return Some(format!(
            "previous version {version} does not cover {missing}"
        ));
    }
    if wanted_key_type.is_some_and(|wanted| wanted != meta.key_type) {
        return Some(format!(
            "previous version {version} has another key type than configured"
        ));
    }
    None
}

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
        now: OffsetDateTime,
    ) -> Result<Option<VersionId>, RenewError> {
        let name = self.name();
        let abandoned = self.store.current(name).map_err(|e| self.store_error(e))?;
        if let Some(why) = self.unfit_previous(now)? {
            // Like `on_verify_failure = "keep"`: the new version stays live and its rollout
            // is retried after the backoff.
            self.record_text(
                Step::Rollback,
                None,
                None,
                Some(format!(
                    "not rolled back: {why}; the new version stays current"
                )),
            );
            self.update_schedule(|state, _| state.record_failed_rollout())
                .map_err(|e| self.store_error(e))?;
            if rollout_only && let Some(abandoned) = abandoned {
                self.park(abandoned)?;
            }
            self.store.finish(name).map_err(|e| self.store_error(e))?;
            return Ok(None);
        }
        // Before `current` moves back, so this replica's follower leaves the restored
        // version's deploy to this rollback.
        if let Some(fleet) = &self.renewer.fleet
            && let Ok(Some(previous)) = self.store.previous(name)
        {
            fleet.mark_applied(name, previous);
        }
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

    /// Why `previous` must not be restored, if it exists and must not: see
    /// [`unfit_rollback_target`], and its files must still check out.
    fn unfit_previous(&self, now: OffsetDateTime) -> Result<Option<String>, RenewError> {
        let name = self.name();
        let Some(previous) = self.store.previous(name).map_err(|e| self.store_error(e))? else {
            return Ok(None);
        };
        let wanted_names = self.certificate.dns_names();
        let meta = match self.store.metadata(name, previous) {
            Ok(meta) => meta,
            Err(e) => return Ok(Some(format!("previous version {previous}: {e}"))),
        };
        let wanted_key_type = parse_key_type(self.certificate.key.as_str());
        if let Some(why) = unfit_rollback_target(&meta, now, &wanted_names, wanted_key_type) {
            return Ok(Some(why));
        }
        let files = self
            .store
            .files(name, previous)
            .map_err(|e| self.store_error(e))?;
        Ok(check_version(&files, &wanted_names)
            .err()
            .map(|e| format!("previous version {previous} does not check out: {e}")))
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
        if let Err(failure) = self.deploy(to).await {
            let source = self.hook_failure(failure)?;
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

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn previous() -> VersionMetadata {
        VersionMetadata {
            version: VersionId(1),
            serial: "01".into(),
            not_before: NOW - Duration::days(60),
            not_after: NOW + Duration::days(30),
            dns_names: vec!["api.example".into()],
            key_type: KeyType::EcdsaP256,
            issuer: "CN=Test CA".into(),
            created_at: NOW - Duration::days(60),
            source: "https://ca.test/directory".into(),
            state: VersionState::Active,
        }
    }

    fn unfit(meta: &VersionMetadata, names: &[&str]) -> Option<String> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        unfit_rollback_target(meta, NOW, &names, Some(KeyType::EcdsaP256))
    }

    #[test]
    fn a_valid_matching_previous_version_may_be_restored() {
        assert_eq!(unfit(&previous(), &["api.example"]), None);
    }

    #[test]
    fn an_expired_previous_version_is_never_restored() {
        let mut expired = previous();
        expired.not_after = NOW;
        let why = unfit(&expired, &["api.example"]).unwrap();
        assert!(why.contains("v0001 has expired"), "{why}");
    }

    #[test]
    fn a_previous_version_missing_a_configured_name_is_never_restored() {
        let why = unfit(&previous(), &["api.example", "www.example"]).unwrap();
        assert!(why.contains("does not cover www.example"), "{why}");
    }

    #[test]
    fn a_previous_version_with_another_key_type_is_never_restored() {
        let mut rsa = previous();
        rsa.key_type = KeyType::Rsa(2048);
        assert!(unfit(&rsa, &["api.example"]).unwrap().contains("key type"));
    }
}
