//! The served-certificate step of a renewal: wait until the `verify` endpoints serve the new
//! serial; when they do not in time, roll back (which runs the deploy commands for the restored
//! version; `on_verify_failure = "rollback"`, and only when an endpoint serves an older
//! certificate) or keep the new version (`"keep"`, or when an endpoint did not answer).

use std::time::Duration;

use super::Run;
use crate::config::model::OnVerifyFailure;
use crate::renew::RenewError;
use crate::renew::rollout_check::{ServedError, ServedProber, Verdict, describe};
use crate::store::{Step, VersionId};

impl Run<'_> {
    /// Probes the `verify` endpoints for `version`'s serial. `Ok(None)`: served, or nothing
    /// to check. `Ok(Some(error))`: not served and kept, for the caller to finish. `Err`: not
    /// served and rolled back (failure counted), or the state could not be read.
    pub(super) async fn check_served(
        &self,
        version: VersionId,
    ) -> Result<Option<ServedError>, RenewError> {
        let certificate = self.certificate;
        if certificate.verify.is_empty() {
            return Ok(None);
        }
        if self.renewer.dry_run {
            // The endpoints serve the real certificate, never the scratch one.
            tracing::info!("dry run: the verify endpoints are not probed");
            return Ok(None);
        }
        let expected = self
            .store
            .metadata(self.name(), version)
            .map_err(|e| self.store_error(e))?
            .serial;
        let result = match ServedProber::new(&self.renewer.scanner) {
            Ok(prober) => {
                prober
                    .wait_until_served(certificate, &expected, certificate.verify_timeout)
                    .await
            }
            Err(error) => Err(ServedError {
                verdict: Verdict::Unreachable,
                waited: Duration::ZERO,
                detail: format!("cannot read the hosts file: {error}"),
            }),
        };
        let source = match result {
            Ok(observed) => {
                let detail = describe(&expected, &observed);
                self.record_with_detail(
                    Step::Served,
                    Some(version),
                    Some(&expected),
                    None,
                    Some(detail),
                );
                return Ok(None);
            }
            Err(source) => source,
        };
        // Only an endpoint serving an older certificate is something a rollback can fix; one
        // that does not answer would not answer with the older version either.
        let keep_why = match (certificate.on_verify_failure, source.verdict) {
            (OnVerifyFailure::Keep, _) => Some("on_verify_failure = \"keep\""),
            (OnVerifyFailure::Rollback, Verdict::Stale) => None,
            (OnVerifyFailure::Rollback, _) => Some("unreachable: a rollback would not help"),
        };
        match keep_why {
            Some(why) => {
                let text = format!("{source}; kept as current ({why})");
                self.record_text(Step::Served, Some(version), Some(&expected), Some(text));
                Ok(Some(source))
            }
            None => {
                self.record_text(
                    Step::Served,
                    Some(version),
                    Some(&expected),
                    Some(source.to_string()),
                );
                let restored = self.roll_back_failed(true).await?;
                Err(self.count_failure(RenewError::Served {
                    name: self.name().to_owned(),
                    version,
                    restored,
                    kept: false,
                    source,
                }))
            }
        }
    }

    /// Ends a renewal whose new version was not served but is kept current: the in-flight
    /// record goes, the failure is counted, and the version is parked so the next due
    /// attempt (after the backoff) rolls it out and checks it again instead of ordering;
    /// once an endpoint serves it, that attempt records the success.
    pub(super) fn keep_unserved(&self, version: VersionId, source: ServedError) -> RenewError {
        if let Err(error) = self.park(version) {
            return error;
        }
        if let Err(error) = self.update_schedule(|state, _| state.record_failed_rollout()) {
            return self.store_error(error);
        }
        if let Err(error) = self.store.finish(self.name()) {
            return self.store_error(error);
        }
        self.count_failure(RenewError::Served {
            name: self.name().to_owned(),
            version,
            restored: None,
            kept: true,
            source,
        })
    }
}
