//! The revocation watch of one managed certificate's task: between renewal attempts, the
//! current version is checked against its CRLs every `[scanner] crl_interval`, and a
//! certificate found revoked ends the wait so the next attempt renews it at once (the
//! planner decides that from the persisted verdict, `renew::check_revocation`). The wait
//! itself is the task's (`renewals::wait_between_attempts`).

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::renew::{Renewer, RevocationOutcome, check_revocation};
use crate::service::error_chain::error_chain;
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
}
