//! What to do after a restart: a pure decision over what was found on disk.
//!
//! The renewal sequence, and the record each step leaves behind:
//!
//! ```text
//! begin ─► record_order ─► record_key ─► finalize ─► stage_pending ─► advance(Pending)
//!   Ordering   Ordering+url   Ordering+url+key          (version dir)      Pending
//!   ─► promote + deploy (record_hook while each command runs)
//!   ─► advance(Deployed) ─► verify ─► advance(Verified) ─► prune + success ─► finish
//!         Deployed                        Verified                           (no record)
//! ```
//!
//! A deploy command still running when the process died is stopped before anything else
//! (`Recovery::stop_hook`), so it never runs alongside the restarted renewal's deploy.
//!
//! A failed deploy or verification rolls back (which marks the version failed) and then
//! abandons the renewal; a version marked failed is never resumed.

use crate::store::StoreError;
use crate::store::inflight::{HookProcess, Inflight, Stage};
use crate::store::metadata::{VersionId, VersionState};
use crate::store::versions::CertStore;

/// What was found on disk for one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskState {
    /// Where `current` points.
    pub current: Option<VersionId>,
    /// Where `previous` points.
    pub previous: Option<VersionId>,
    /// The in-flight record.
    pub inflight: Option<Inflight>,
    /// Every complete version and its state, ascending.
    pub versions: Vec<(VersionId, VersionState)>,
    /// Dot-prefixed leftovers of interrupted writes.
    pub leftovers: Vec<String>,
}

/// The decision: clean up, then take one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Call [`CertStore::remove_leftovers`] first.
    pub remove_leftovers: bool,
    /// A deploy command that was running when the process died: stop its process group
    /// (when it is still that command's) and clear it with [`CertStore::record_hook`].
    pub stop_hook: Option<HookProcess>,
    /// Where to pick the renewal up.
    pub next: NextStep,
}

/// The step to resume with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// No renewal in flight: schedule as usual.
    Idle,
    /// Poll the recorded order and download its certificate; with no URL recorded, no order
    /// is known and a new one may be placed. An order the CA already finalized is
    /// downloaded and paired with the saved key (in the in-flight record), never ordered
    /// again.
    ResumeOrder {
        /// The order to poll.
        order_url: Option<String>,
    },
    /// The certificate was stored but not yet recorded: `advance(Pending, version)`, then
    /// deploy it.
    Adopt {
        /// The stored version.
        version: VersionId,
    },
    /// `promote(version)` (idempotent) and run the deploy commands, then `advance(Deployed)`.
    Deploy {
        /// The version to make live.
        version: VersionId,
    },
    /// Check the live files with `check_version`, then `advance(Verified)`.
    Verify {
        /// The live version.
        version: VersionId,
    },
    /// `finish`, prune and reset the failure count: the renewal succeeded.
    Finish {
        /// The new current version.
        version: VersionId,
    },
    /// The renewal cannot continue: mark `version` failed (when given), roll back if it is
    /// still current, `finish`, and count a failed renewal.
    Abandon {
        /// The version to mark failed.
        version: Option<VersionId>,
        /// Why, for the audit log.
        reason: String,
    },
}

/// Decides how to resume from `disk`. Pure.
pub fn recover(disk: &DiskState) -> Recovery {
    Recovery {
        remove_leftovers: !disk.leftovers.is_empty(),
        stop_hook: disk
            .inflight
            .as_ref()
            .and_then(|inflight| inflight.hook.clone()),
        next: next_step(disk),
    }
}

fn next_step(disk: &DiskState) -> NextStep {
    let Some(inflight) = &disk.inflight else {
        return NextStep::Idle;
    };
    let state_of = |v: VersionId| {
        disk.versions
            .iter()
            .find(|(id, _)| *id == v)
            .map(|(_, s)| *s)
    };
    let Some(version) = inflight
        .version
        .filter(|_| inflight.stage != Stage::Ordering)
    else {
        return match orphan(disk) {
            Some(version) => NextStep::Adopt { version },
            None => NextStep::ResumeOrder {
                order_url: inflight.order_url.clone(),
            },
        };
    };
    let abandon = |reason: &str| NextStep::Abandon {
        version: Some(version),
        reason: reason.to_string(),
    };
    match state_of(version) {
        None => return abandon("its version directory is missing"),
        Some(VersionState::Failed) => return abandon("its version was marked failed"),
        Some(_) => {}
    }
    let live = disk.current == Some(version);
    match inflight.stage {
        Stage::Ordering | Stage::Pending => NextStep::Deploy { version },
        Stage::Deployed if live => NextStep::Verify { version },
        Stage::Verified if live => NextStep::Finish { version },
        Stage::Deployed | Stage::Verified => abandon("current no longer points at it"),
    }
}

/// A pending version newer than `current`: stored by a renewal that crashed before it could
/// record the version. Abandoned versions are marked failed, so they never qualify.
fn orphan(disk: &DiskState) -> Option<VersionId> {
    let (newest, state) = disk.versions.last()?;
    let newer = disk.current.is_none_or(|c| *newest > c);
    (newer && *state == VersionState::Pending).then_some(*newest)
}

impl CertStore {
    /// Reads everything [`recover`] needs for `name`.
    pub fn disk_state(&self, name: &str) -> Result<DiskState, StoreError> {
        let versions = self
            .versions(name)?
            .into_iter()
            .map(|m| (m.version, m.state))
            .collect();
        let leftovers = self.leftovers(name)?;
        Ok(DiskState {
            current: self.current(name)?,
            previous: self.previous(name)?,
            inflight: self.inflight(name)?,
            versions,
            leftovers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::inflight::HookGroup;

    fn inflight(stage: Stage, version: Option<u32>, order_url: Option<&str>) -> Option<Inflight> {
        Some(Inflight {
            version: version.map(VersionId),
            stage,
            order_url: order_url.map(String::from),
            started_at: time::macros::datetime!(2025-01-01 0:00 UTC),
            key_pem: None,
            hook: None,
        })
    }

    fn disk(
        current: Option<u32>,
        versions: &[(u32, VersionState)],
        inflight: Option<Inflight>,
    ) -> DiskState {
        DiskState {
            current: current.map(VersionId),
            previous: None,
            inflight,
            versions: versions.iter().map(|(v, s)| (VersionId(*v), *s)).collect(),
            leftovers: Vec::new(),
        }
    }

    #[test]
    fn a_pending_version_older_than_current_is_not_adopted() {
        let state = disk(
            Some(2),
            &[(1, VersionState::Pending), (2, VersionState::Active)],
            inflight(Stage::Ordering, None, Some("https://ca/order/1")),
        );
        assert_eq!(
            recover(&state).next,
            NextStep::ResumeOrder {
                order_url: Some("https://ca/order/1".into())
            }
        );
    }

    #[test]
    fn a_failed_newest_version_is_not_adopted() {
        let state = disk(
            Some(1),
            &[(1, VersionState::Active), (2, VersionState::Failed)],
            inflight(Stage::Ordering, None, None),
        );
        assert_eq!(
            recover(&state).next,
            NextStep::ResumeOrder { order_url: None }
        );
    }

    #[test]
    fn a_recorded_version_that_vanished_is_abandoned() {
        let state = disk(
            Some(1),
            &[(1, VersionState::Active)],
            inflight(Stage::Pending, Some(2), None),
        );
        assert!(matches!(
            recover(&state).next,
            NextStep::Abandon {
                version: Some(VersionId(2)),
                ..
            }
        ));
    }

    #[test]
    fn leftovers_are_removed_whatever_the_step() {
        let mut state = disk(None, &[], None);
        state.leftovers = vec![".v0001.partial".into()];
        assert_eq!(
            recover(&state),
            Recovery {
                remove_leftovers: true,
                stop_hook: None,
                next: NextStep::Idle
            }
        );
    }

    #[test]
    fn a_deploy_command_recorded_as_running_is_stopped_before_resuming() {
        let hook = HookProcess {
            id: "5f1c".into(),
            group: Some(HookGroup {
                pgid: 4242,
                start_ticks: 99,
            }),
        };
        let mut record = inflight(Stage::Pending, Some(2), None);
        if let Some(record) = record.as_mut() {
            record.hook = Some(hook.clone());
        }
        let state = disk(
            Some(2),
            &[(1, VersionState::Active), (2, VersionState::Pending)],
            record,
        );
        let recovery = recover(&state);
        assert_eq!(recovery.stop_hook, Some(hook));
        assert_eq!(
            recovery.next,
            NextStep::Deploy {
                version: VersionId(2)
            }
        );
    }
}
