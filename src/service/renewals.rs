//! One task per managed certificate inside `certinel run`: sleep until the planned renewal,
//! renew through [`Renewer::renew`] (which recovers an interrupted renewal first), re-plan.
//!
//! A failure is logged with the certificate's name and the loop goes on, waiting for the
//! backoff the renewer persisted in the schedule state.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::renew::{RenewOptions, RenewOutcome, Renewer};

/// The shortest wait after a failure, so a failure that records no backoff (another
/// process holding the certificate's lock) does not spin.
const MINIMUM_RETRY: Duration = Duration::from_secs(30);

/// Starts one renewal task per certificate of `renewer` on `tracker`, stopped by `shutdown`.
pub fn spawn_all(renewer: Arc<Renewer>, tracker: &TaskTracker, shutdown: &CancellationToken) {
    for name in renewer.names() {
        tracker.spawn(certificate_loop(renewer.clone(), name, shutdown.clone()));
    }
}

async fn certificate_loop(renewer: Arc<Renewer>, name: String, shutdown: CancellationToken) {
    loop {
        let now = OffsetDateTime::now_utc();
        let wait = match renewer.renew(&name, RenewOptions::default(), now).await {
            Ok(RenewOutcome::Renewed {
                version, serial, ..
            }) => {
                tracing::info!(certificate = %name, %version, %serial, "certificate renewed");
                // Re-plan at once: the next `renew` answers NotDue with the new window.
                continue;
            }
            Ok(RenewOutcome::NotDue { next_check, .. }) => {
                until(next_check, Duration::from_secs(1))
            }
            Err(error) => {
                tracing::warn!(
                    certificate = %name,
                    stage = error.stage(),
                    problem = error.problem(),
                    error = %super::reload::error_chain(&error),
                    "renewal failed"
                );
                let retry_at = renewer
                    .status(OffsetDateTime::now_utc())
                    .ok()
                    .and_then(|all| all.into_iter().find(|status| status.name == name))
                    .map(|status| status.next_renewal);
                match retry_at {
                    Some(at) => until(at, MINIMUM_RETRY),
                    None => MINIMUM_RETRY,
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// How long until `at`, at least `minimum`.
fn until(at: OffsetDateTime, minimum: Duration) -> Duration {
    let left = at - OffsetDateTime::now_utc();
    Duration::try_from(left)
        .unwrap_or(Duration::ZERO)
        .max(minimum)
}
