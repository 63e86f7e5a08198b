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
    /// Rolling out the current version failed before it was marked applied: look again.
    pub(super) follow_failed: bool,
}

/// The fleet duties of a waiting task: roll out the version another replica made current
/// (after which the holder of a renewal may be waiting for this replica's report), then say
/// whether to attempt now. With a view (`changes`), etcd is read only when the view's
/// current version is not the one this replica rolled out, and an attempt is due when a
/// renewal is in flight whose lock is gone (its holder died or was paused past its lease);
/// without one, the store is read each time and any renewal in flight means an attempt
/// (which finds the lock held while its holder lives).
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
    if seen.is_none_or(|seen| needs_follow(&seen, renewer.applied_version(name))) {
        match renewer.follow(name).await {
            Ok(Some(_)) => refresh(renewer, name, state).await,
            Ok(None) => {}
            Err(error) => {
                follow_failed = true;
                tracing::warn!(
                    certificate = %name,
                    error = %error_chain(&error),
                    "rolling out another replica's version failed"
                );
            }
        }
    }
    let attempt = match &seen {
        Some(seen) => resume_due(seen),
        None => renewer.renewal_in_flight(name),
    };
    Looked {
        attempt,
        follow_failed,
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
    use super::*;

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
