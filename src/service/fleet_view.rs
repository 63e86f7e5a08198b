//! What a waiting certificate task does with its view of the fleet (`[cluster]`): the
//! store's watch says when the certificate's `current` version, in-flight record or lock
//! changed; the task then rolls out a version another replica made current, resumes a
//! renewal whose holder is gone, and keeps `certinel_certificate_lock_held` current.
//! The decisions ([`needs_follow`], [`resume_due`]) are pure; the waiting itself is in
//! `renewals.rs`.

use std::sync::Arc;
use std::time::Duration;

use crate::renew::Renewer;
use crate::service::error_chain::error_chain;
use crate::service::renewals::refresh;
use crate::service::state::State;
use crate::store::{LockHolder, VersionId, Watched};

/// With a watched store: how soon a rollout that failed before it started is tried again.
pub(super) const FOLLOW_RETRY: Duration = Duration::from_secs(5);

/// The certificate's view from the store's watch.
pub(super) type Changes = tokio::sync::watch::Receiver<Watched>;

/// What one look at a certificate's fleet state found.
pub(super) struct Looked {
    /// A renewal is in flight and nobody holds its lock: attempt (and so resume it).
    pub(super) attempt: bool,
    /// Rolling out the current version failed, or `/metrics` could not be brought up to
    /// date with what this replica rolled out: look again soon.
    pub(super) look_again: bool,
}

/// The fleet duties of a waiting task: roll out the version another replica made current
/// (after which the holder of a renewal may be waiting for this replica's report), then say
/// whether to attempt now. With a view (`changes`), etcd is read only when the view's
/// current version is not the one this replica rolled out, and an attempt is due when a
/// renewal is in flight whose lock is gone (its holder died or was paused past its lease);
/// without one, the store is read each time and any renewal in flight means an attempt
/// (which finds the lock held while its holder lives).
///
/// The certificate's status in `state` is read again whenever it does not show the version
/// this replica rolled out: after a rollout, also one whose report could not be stored
/// (its files are deployed all the same), and at the next look after a read that failed.
pub(super) async fn look(
    renewer: &Arc<Renewer>,
    name: &str,
    state: &State,
    changes: Option<&mut Changes>,
) -> Looked {
    let seen = changes.map(|changes| *changes.borrow_and_update());
    if let Some(seen) = &seen {
        state.set_lock_held(name, Some(seen.lock == LockHolder::ThisMember));
    }
    let mut follow_failed = false;
    if seen.is_none_or(|seen| needs_follow(&seen, renewer.applied_version(name)))
        && let Err(error) = renewer.follow(name).await
    {
        follow_failed = true;
        tracing::warn!(
            certificate = %name,
            error = %error_chain(&error),
            "rolling out another replica's version failed"
        );
    }
    let applied = renewer.applied_version(name);
    let shown = applied.is_none() || state.local_version(name) == applied;
    let refreshed = shown || refresh(renewer, name, state).await;
    let attempt = match &seen {
        Some(seen) => resume_due(seen),
        None => renewer.renewal_in_flight(name),
    };
    Looked {
        attempt,
        look_again: follow_failed || !refreshed,
    }
}

/// Whether the view's current version is one this replica has not rolled out.
fn needs_follow(seen: &Watched, applied: Option<VersionId>) -> bool {
    seen.current.is_some() && seen.current != applied
}

/// Whether a renewal is in flight that nobody holds the lock of: the next attempt resumes
/// it (without a second order).
fn resume_due(seen: &Watched) -> bool {
    seen.inflight && seen.lock == LockHolder::Free
}

/// Resolves when `changes` has a new view; never without a view (or once its store is
/// gone).
pub(super) async fn changed(changes: &mut Option<Changes>) {
    if let Some(changes) = changes
        && changes.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// Runs `attempt` while keeping the lock-ownership metric current from `changes` (a
/// renewal holds the lock for its whole length, deploy commands included).
pub(super) async fn publishing_lock<T>(
    changes: &mut Option<Changes>,
    name: &str,
    state: &State,
    attempt: impl std::future::Future<Output = T>,
) -> T {
    let Some(changes) = changes else {
        return attempt.await;
    };
    tokio::pin!(attempt);
    loop {
        state.set_lock_held(
            name,
            Some(changes.borrow_and_update().lock == LockHolder::ThisMember),
        );
        tokio::select! {
            result = &mut attempt => return result,
            changed = changes.changed() => {
                if changed.is_err() {
                    return attempt.await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::renew::fleet::Fleet;
    use crate::store::testing::issue;
    use crate::store::{CertStore, Origin};

    use super::*;

    /// A replica `b` of fleet {a, b} carrying `api`, whose store in `state_dir` has v0001
    /// current (made current by replica `a`), and the state its `/metrics` shows.
    fn replica_b_with_v0001_current(state_dir: &std::path::Path) -> (Arc<Renewer>, State) {
        let text = format!(
            "state_dir = {:?}\n[acme]\ndirectory = \"https://127.0.0.1:9/dir\"\n\
             [[certificate]]\nname = \"api\"\ndns_names = [\"api.test\"]\n\
             challenge = {{ type = \"http-01\", listen = \"127.0.0.1:0\" }}\n",
            state_dir.display().to_string()
        );
        let config = crate::config::parse(&text, None).expect("test config");
        let store = CertStore::open(state_dir).unwrap();
        let issued = issue(&["api.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let origin = Origin {
            created_at: time::OffsetDateTime::now_utc(),
            source: "imported".into(),
        };
        let v0001 = store
            .stage_pending("api", issued.new_version(&origin))
            .unwrap();
        store.promote("api", v0001.version).unwrap();
        let fleet = Fleet::new("b", |_| vec!["a".to_owned(), "b".to_owned()]);
        let renewer = Renewer::new(&config).with_fleet(Arc::new(fleet));
        let state = State::new();
        state.add_certificate("api");
        (Arc::new(renewer), state)
    }

    #[tokio::test]
    async fn a_rollout_whose_report_cannot_be_stored_still_shows_the_version_rolled_out() {
        let dir = tempfile::tempdir().unwrap();
        let (renewer, state) = replica_b_with_v0001_current(dir.path());
        // The report cannot be stored: a file stands where its directory goes.
        std::fs::write(dir.path().join("certs/api/rollout"), "").unwrap();

        let looked = look(&renewer, "api", &state, None).await;

        assert_eq!(renewer.applied_version("api"), Some(VersionId(1)));
        assert_eq!(state.local_version("api"), Some(VersionId(1)));
        assert!(looked.look_again, "a failed rollout is looked at again");
    }

    #[tokio::test]
    async fn a_status_read_that_failed_after_a_rollout_is_read_again_at_the_next_look() {
        let dir = tempfile::tempdir().unwrap();
        let (renewer, state) = replica_b_with_v0001_current(dir.path());
        let schedule = dir.path().join("certs/api/schedule.json");
        std::fs::write(&schedule, "{").unwrap();

        let looked = look(&renewer, "api", &state, None).await;
        assert_eq!(renewer.applied_version("api"), Some(VersionId(1)));
        assert_eq!(
            state.local_version("api"),
            None,
            "the status could not be read"
        );
        assert!(looked.look_again, "the status is read again soon");

        std::fs::remove_file(&schedule).unwrap();
        let looked = look(&renewer, "api", &state, None).await;
        assert_eq!(state.local_version("api"), Some(VersionId(1)));
        assert!(!looked.look_again);
    }

    fn seen(current: Option<u32>, inflight: bool, lock: LockHolder) -> Watched {
        Watched {
            current: current.map(VersionId),
            inflight,
            lock,
        }
    }

    #[test]
    fn a_version_is_followed_only_when_it_is_not_the_one_rolled_out_here() {
        let v2 = Some(VersionId(2));
        assert!(needs_follow(&seen(Some(2), false, LockHolder::Free), None));
        assert!(needs_follow(
            &seen(Some(2), false, LockHolder::Free),
            Some(VersionId(1))
        ));
        assert!(!needs_follow(&seen(Some(2), false, LockHolder::Free), v2));
        assert!(!needs_follow(&seen(None, false, LockHolder::Free), v2));
    }

    #[test]
    fn only_a_renewal_in_flight_whose_lock_is_gone_is_resumed() {
        assert!(resume_due(&seen(Some(1), true, LockHolder::Free)));
        assert!(!resume_due(&seen(Some(1), true, LockHolder::OtherMember)));
        assert!(!resume_due(&seen(Some(1), true, LockHolder::ThisMember)));
        assert!(!resume_due(&seen(Some(1), false, LockHolder::Free)));
    }
}
