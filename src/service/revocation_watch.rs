//! The revocation watch of one managed certificate's task: between renewal attempts, the
//! current version is checked against its CRLs every `[scanner] crl_interval`, and a
//! certificate found revoked ends the wait so the next attempt renews it at once (the
//! planner decides that from the persisted verdict, `renew::check_revocation`).

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::renew::{Renewer, RevocationOutcome, check_revocation};
use crate::service::error_chain::error_chain;
use crate::service::renewals::refresh;
use crate::service::state::State;

/// What the watch of one certificate needs.
pub(super) struct RevocationWatch<'a> {
    pub(super) renewer: &'a Arc<Renewer>,
    pub(super) name: &'a str,
    pub(super) state: &'a Arc<State>,
    /// How often to check; `None` when CRL checking is off.
    pub(super) interval: Option<Duration>,
}

impl RevocationWatch<'_> {
    /// Checks the current version now; whether it was found revoked. Errors are logged
    /// with the certificate's name: the loop goes on.
    pub(super) async fn check(&self) -> bool {
        let (Some(interval), Some(fetcher)) = (self.interval, self.state.crl_fetcher()) else {
            return false;
        };
        let now: OffsetDateTime = self.renewer.now();
        match check_revocation(self.renewer.clone(), self.name, &fetcher, now, interval).await {
            Ok(outcome) => {
                if let RevocationOutcome::Checked { status, .. } = &outcome
                    && let Err(error) = &status.outcome
                {
                    tracing::warn!(
                        target: "certinel::crl",
                        certificate = %self.name,
                        url = %status.url,
                        reason = error.keyword(),
                        %error,
                        "no revocation verdict for the managed certificate"
                    );
                }
                outcome.is_revoked()
            }
            Err(error) => {
                tracing::warn!(
                    target: "certinel::crl",
                    certificate = %self.name,
                    error = %error_chain(&error),
                    "checking the managed certificate against its CRLs failed"
                );
                false
            }
        }
    }

    /// Waits `wait`, checking the CRLs every interval on the way; ends early when the
    /// certificate is found revoked. `false` when `stop` asked the task to end.
    pub(super) async fn wait(&self, wait: Duration, stop: &CancellationToken) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let step = match self.interval {
                Some(interval) => deadline
                    .saturating_duration_since(tokio::time::Instant::now())
                    .min(interval),
                None => deadline.saturating_duration_since(tokio::time::Instant::now()),
            };
            tokio::select! {
                () = tokio::time::sleep(step) => {}
                () = stop.cancelled() => return false,
            }
            if tokio::time::Instant::now() >= deadline {
                return true;
            }
            let revoked = self.check().await;
            // The verdict shows in `/metrics` and `status` before any renewal.
            refresh(self.renewer, self.name, self.state).await;
            if revoked {
                return true;
            }
        }
    }
}
