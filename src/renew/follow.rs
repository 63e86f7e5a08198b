//! The follower side of a fleet-wide rollout (`[cluster]`): when another replica makes a
//! new version of a certificate current, this replica materialises it into its own
//! `state_dir/certs/NAME/current/`, runs its own deploy commands, checks its own `verify`
//! endpoints, and stores a [`MemberReport`] the renewing replica waits for.
//!
//! A follower's deploy command is not recorded for crash recovery: no renewal is in flight
//! on this replica. A follower that dies mid-rollout rolls the version out again when it
//! starts (it has applied nothing yet).

use tracing::Instrument;

use crate::renew::RenewError;
use crate::renew::Renewer;
use crate::renew::deploy::{self, DeployEnv, Untracked};
use crate::renew::fleet::{MemberOutcome, MemberReport};
use crate::renew::rollout_check::{ServedProber, Verdict};
use crate::store::{ReportOn, VersionId, Watched};

impl Renewer {
    /// Whether a renewal of `name` is in flight in the shared store: one another replica is
    /// doing now, or one a replica that died left behind, which the next attempt (once the
    /// dead holder's lease expired) resumes without a second order. A store that cannot be
    /// read counts as nothing in flight.
    /// From the store's watch when it keeps one (no etcd read).
    pub fn renewal_in_flight(&self, name: &str) -> bool {
        match self.store.watch(name) {
            Some(changes) => changes.borrow().inflight,
            None => matches!(self.store.inflight(name), Ok(Some(_))),
        }
    }

    /// What the shared store's watch knows about `name`, notified on every change; `None`
    /// when the store keeps no watch (the filesystem store).
    pub fn watch(&self, name: &str) -> Option<tokio::sync::watch::Receiver<Watched>> {
        self.store.watch(name)
    }

    /// With a fleet: the version of `name` this replica last rolled out, if any since it
    /// started.
    pub fn applied_version(&self, name: &str) -> Option<VersionId> {
        self.fleet.as_ref().and_then(|fleet| fleet.applied(name))
    }

    /// Rolls out on this replica the version of `name` that is current in the shared store,
    /// unless this replica already did (or deployed it itself as the renewing replica).
    /// `Ok(None)`: nothing to do (no fleet, no current version, already applied).
    pub async fn follow(&self, name: &str) -> Result<Option<MemberReport>, RenewError> {
        let Some(fleet) = self.fleet.clone() else {
            return Ok(None);
        };
        let certificate = self.certificate(name)?;
        let store_error = |source| RenewError::store(name, source);
        let Some(version) = self.store.current(name).map_err(store_error)? else {
            return Ok(None);
        };
        if fleet.applied(name) == Some(version) {
            return Ok(None);
        }
        let span = tracing::info_span!("follow", certificate = name, %version);
        async {
            // Marked first: a failed rollout is reported once, not retried every poll; the
            // next version (or a rollback) is rolled out again.
            fleet.mark_applied(name, version);
            let files = self.store.current_files(name).map_err(store_error)?;
            let env = DeployEnv {
                name,
                version,
                files: &files,
                dry_run: false,
                hook_env: &certificate.env,
            };
            let deployed = deploy::run_all_tracked(
                &certificate.deploy,
                &env,
                certificate.deploy_timeout,
                &Untracked,
            )
            .await;
            let (outcome, detail) = match deployed {
                Err(error) => (MemberOutcome::DeployFailed, error.to_string()),
                Ok(()) if certificate.verify.is_empty() => (MemberOutcome::Served, String::new()),
                Ok(()) => {
                    let serial = self.store.metadata(name, version).map_err(store_error)?.serial;
                    match ServedProber::new(&self.scanner) {
                        Err(error) => (
                            MemberOutcome::Unreachable,
                            format!("cannot read the hosts file: {error}"),
                        ),
                        Ok(prober) => match prober
                            .wait_until_served(certificate, &serial, certificate.verify_timeout)
                            .await
                        {
                            Ok(_) => (MemberOutcome::Served, String::new()),
                            Err(error) if error.verdict == Verdict::Stale => {
                                (MemberOutcome::Stale, error.to_string())
                            }
                            Err(error) => (MemberOutcome::Unreachable, error.to_string()),
                        },
                    }
                }
            };
            let report = MemberReport {
                member: fleet.member().to_owned(),
                version,
                outcome,
                detail,
            };
            // A report is plain data: serialising it cannot fail.
            let bytes = serde_json::to_vec(&report).unwrap_or_default();
            self.store
                .save_rollout_report(
                    ReportOn {
                        name,
                        version,
                        member: fleet.member(),
                    },
                    &bytes,
                )
                .map_err(store_error)?;
            match report.outcome {
                MemberOutcome::Served => tracing::info!("rolled out on this replica"),
                _ => tracing::warn!(outcome = ?report.outcome, detail = %report.detail, "rollout failed on this replica"),
            }
            Ok(Some(report))
        }
        .instrument(span)
        .await
    }
}
