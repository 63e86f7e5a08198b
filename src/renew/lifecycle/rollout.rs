//! The served-certificate step of a renewal: wait until the `verify` endpoints serve the new
//! serial. When they do not in time, the state machine (`next_action`) rolls back
//! (`on_verify_failure = "rollback"`, and only when an endpoint serves an older certificate)
//! or keeps the new version (`"keep"`, or when an endpoint did not answer), which ends here
//! in [`Run::keep_unserved`].

use std::time::Duration;

use super::Run;
use crate::renew::RenewError;
use crate::renew::rollout_check::{ServedError, ServedProber, Verdict, describe};
use crate::store::{Step, VersionId};

impl Run<'_> {
    /// Probes the `verify` endpoints for `version`'s serial. `Ok(None)`: served (audited),
    /// or nothing to check. `Ok(Some(error))`: not served; whether the version is kept or
    /// rolled back is the state machine's decision (`next_action`), and so is the audit
    /// line. `Err`: the state could not be read.
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
        match result {
            Ok(observed) => {
                let detail = describe(&expected, &observed);
                self.record_with_detail(
                    Step::Served,
                    Some(version),
                    Some(&expected),
                    None,
                    Some(detail),
                );
                Ok(None)
            }
            Err(source) => Ok(Some(source)),
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
