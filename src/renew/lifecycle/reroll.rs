//! Rolling out again a version whose rollout failed (a deploy command or the served check),
//! instead of ordering a new certificate: a server that never reloads would otherwise make
//! every retry place a new order and exhaust the CA's duplicate-certificate limit.

use time::OffsetDateTime;

use super::Run;
use crate::cert::KeyType;
use crate::renew::RenewError;
use crate::store::version_check::name_covered;
use crate::store::{Stage, Step, VersionId, VersionMetadata, VersionState};

/// The newest parked version worth rolling out again at `now`: unexpired, covering every
/// wanted name with the wanted key type, and not older than `current` (the current version
/// itself when it was left live unconfirmed). `None`: order a new certificate.
pub(crate) fn reusable_version(
    versions: &[VersionMetadata],
    current: Option<VersionId>,
    now: OffsetDateTime,
    wanted_names: &[String],
    wanted_key_type: KeyType,
) -> Option<VersionId> {
    versions
        .iter()
        .filter(|meta| meta.state == VersionState::Parked)
        .filter(|meta| current.is_none_or(|current| meta.version >= current))
        .filter(|meta| meta.not_before <= now && now < meta.not_after)
        .filter(|meta| meta.key_type == wanted_key_type)
        .filter(|meta| {
            wanted_names
                .iter()
                .all(|name| name_covered(name, &meta.dns_names))
        })
        .map(|meta| meta.version)
        .max()
}

impl Run<'_> {
    /// Begins a renewal that rolls `version` out again (promote, deploy commands, served
    /// and files checks, driven by the state machine), so a crash halfway resumes like any
    /// other.
    pub(super) fn reroll(&self, version: VersionId, now: OffsetDateTime) -> Result<(), RenewError> {
        let name = self.name();
        self.store
            .begin(name, now)
            .map_err(|e| self.store_error(e))?;
        let serial = self.serial(version);
        self.record_with_detail(
            Step::Begin,
            Some(version),
            serial.as_deref(),
            None,
            Some(format!("re-rolling out {version}")),
        );
        self.store
            .advance(name, Stage::Pending, version)
            .map(|_| ())
            .map_err(|e| self.store_error(e))
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::datetime;

    use super::*;
    use crate::store::VersionState::{Active, Failed, Parked, Pending};

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn version(number: u32, state: VersionState) -> VersionMetadata {
        VersionMetadata {
            version: VersionId(number),
            serial: format!("{number:02x}"),
            not_before: NOW - Duration::days(1),
            not_after: NOW + Duration::days(89),
            dns_names: vec!["api.example".into(), "*.api.example".into()],
            key_type: KeyType::EcdsaP256,
            issuer: "CN=Test CA".into(),
            created_at: NOW - Duration::days(1),
            source: "https://ca.test/directory".into(),
            state,
        }
    }

    fn names() -> Vec<String> {
        vec!["api.example".into(), "www.api.example".into()]
    }

    fn choose(versions: &[VersionMetadata], current: u32) -> Option<VersionId> {
        reusable_version(
            versions,
            Some(VersionId(current)),
            NOW,
            &names(),
            KeyType::EcdsaP256,
        )
    }

    /// Versions 1, 2, ... in these states, all matching the config and valid now.
    fn versions_in(states: &[VersionState]) -> Vec<VersionMetadata> {
        (1..)
            .zip(states)
            .map(|(id, state)| version(id, *state))
            .collect()
    }

    #[test]
    fn a_parked_version_newer_than_current_is_rolled_out_again() {
        let versions = versions_in(&[Active, Parked]);
        assert_eq!(choose(&versions, 1), Some(VersionId(2)));
    }

    #[test]
    fn a_current_version_left_live_unconfirmed_is_rolled_out_again() {
        let versions = versions_in(&[Parked]);
        assert_eq!(choose(&versions, 1), Some(VersionId(1)));
    }

    #[test]
    fn the_newest_of_several_parked_versions_wins() {
        let versions = versions_in(&[Active, Parked, Parked]);
        assert_eq!(choose(&versions, 1), Some(VersionId(3)));
    }

    #[test]
    fn failed_pending_active_and_older_parked_versions_are_never_reused() {
        let versions = versions_in(&[Parked, Active, Failed, Pending]);
        assert_eq!(choose(&versions, 2), None);
    }

    #[test]
    fn an_expired_or_not_yet_valid_parked_version_means_a_new_order() {
        let mut expired = version(2, VersionState::Parked);
        expired.not_after = NOW;
        assert_eq!(
            choose(&[version(1, VersionState::Active), expired], 1),
            None
        );
        let mut early = version(2, VersionState::Parked);
        early.not_before = NOW + Duration::minutes(1);
        assert_eq!(choose(&[version(1, VersionState::Active), early], 1), None);
    }

    #[test]
    fn a_parked_version_that_no_longer_matches_the_config_means_a_new_order() {
        let mut other_names = version(2, VersionState::Parked);
        other_names.dns_names = vec!["api.example".into()];
        assert_eq!(choose(&[other_names], 1), None);
        let mut other_key = version(2, VersionState::Parked);
        other_key.key_type = KeyType::Rsa(2048);
        assert_eq!(choose(&[other_key], 1), None);
    }

    #[test]
    fn without_a_current_version_any_matching_parked_version_is_reused() {
        let versions = [version(1, VersionState::Parked)];
        assert_eq!(
            reusable_version(&versions, None, NOW, &names(), KeyType::EcdsaP256),
            Some(VersionId(1))
        );
    }
}
