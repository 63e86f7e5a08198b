//! The fleet step of a renewal (`[cluster]` only): after this replica deployed the new
//! version and its own `verify` endpoints serve it, wait for the rollout report of every
//! other live replica that carries the certificate. A replica whose deploy failed rolls
//! the version back like a local deploy failure; one whose endpoint serves an older
//! certificate counts as a stale endpoint; a replica that does not report within
//! `verify_timeout` as an endpoint that did not answer.

use std::time::Duration;

use tokio::time::Instant;

use super::Run;
use crate::renew::RenewError;
use crate::renew::fleet::{FleetVerdict, MemberOutcome, MemberReport, judge};
use crate::renew::rollout_check::{ServedError, Verdict};
use crate::store::{ReportOn, Step, VersionId};

/// The first pause between two reads of the reports; it doubles up to [`SLOWEST_READ`].
const FIRST_READ: Duration = Duration::from_millis(100);
/// The longest pause between two reads of the reports.
const SLOWEST_READ: Duration = Duration::from_secs(1);

/// How the rest of the fleet took a new version.
pub(super) enum FleetWait {
    /// Every live replica reported it served (or this replica is alone).
    Served,
    /// A replica could not deploy it: roll back, like a local deploy failure.
    DeployFailed(RenewError),
    /// A replica's endpoint serves another certificate, or a replica did not report.
    NotServed(ServedError),
}

impl Run<'_> {
    /// Reports this replica's own success for `version` and waits for the others'.
    pub(super) async fn await_fleet(&self, version: VersionId) -> Result<FleetWait, RenewError> {
        let Some(fleet) = self.renewer.fleet.as_ref() else {
            return Ok(FleetWait::Served);
        };
        if self.renewer.dry_run {
            return Ok(FleetWait::Served);
        }
        let name = self.name();
        let own = MemberReport {
            member: fleet.member().to_owned(),
            version,
            outcome: MemberOutcome::Served,
            detail: String::new(),
        };
        self.save_report(&own)?;
        let started = Instant::now();
        let deadline = started + self.certificate.verify_timeout;
        let mut pause = FIRST_READ;
        loop {
            let reports = self.reports(version)?;
            let live = fleet.live_members(name);
            match judge(&live, fleet.member(), version, &reports) {
                FleetVerdict::Served => {
                    if live.len() > 1 {
                        let detail =
                            format!("every replica serves {version} ({})", live.join(", "));
                        let serial = self.serial(version);
                        self.record_with_detail(
                            Step::Served,
                            Some(version),
                            serial.as_deref(),
                            None,
                            Some(detail),
                        );
                    }
                    return Ok(FleetWait::Served);
                }
                FleetVerdict::Failed(report) => {
                    return Ok(self.failed(version, report, started.elapsed()));
                }
                FleetVerdict::Waiting { missing } => {
                    if Instant::now() >= deadline {
                        return Ok(FleetWait::NotServed(ServedError {
                            verdict: Verdict::Unreachable,
                            waited: started.elapsed(),
                            detail: format!(
                                "no rollout report from replica {}",
                                missing.join(", ")
                            ),
                        }));
                    }
                    tracing::debug!(certificate = name, missing = ?missing, "waiting for the fleet");
                }
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(SLOWEST_READ);
        }
    }

    fn failed(&self, version: VersionId, report: MemberReport, waited: Duration) -> FleetWait {
        let MemberReport {
            member,
            detail,
            outcome,
            ..
        } = report;
        let verdict = match outcome {
            MemberOutcome::DeployFailed => {
                let text = format!("replica {member}: {detail}");
                self.record_version_error(Step::Deployed, version, text);
                return FleetWait::DeployFailed(RenewError::FleetDeploy {
                    name: self.name().to_owned(),
                    version,
                    member,
                    detail,
                    restored: None,
                });
            }
            MemberOutcome::Stale => Verdict::Stale,
            MemberOutcome::Unreachable | MemberOutcome::Served => Verdict::Unreachable,
        };
        FleetWait::NotServed(ServedError {
            verdict,
            waited,
            detail: format!("replica {member}: {detail}"),
        })
    }

    fn save_report(&self, report: &MemberReport) -> Result<(), RenewError> {
        // A report is plain data: serialising it cannot fail.
        let bytes = serde_json::to_vec(report).unwrap_or_default();
        self.store
            .save_rollout_report(
                ReportOn {
                    name: self.name(),
                    version: report.version,
                    member: &report.member,
                },
                &bytes,
            )
            .map_err(|e| self.store_error(e))
    }

    /// The reports stored for `version`; one that does not parse is logged and skipped.
    fn reports(&self, version: VersionId) -> Result<Vec<MemberReport>, RenewError> {
        let records = self
            .store
            .rollout_reports(self.name(), version)
            .map_err(|e| self.store_error(e))?;
        Ok(records
            .into_iter()
            .filter_map(|record| match serde_json::from_slice(&record.bytes) {
                Ok(report) => Some(report),
                Err(error) => {
                    tracing::warn!(
                        certificate = self.name(),
                        location = %record.location.display(),
                        %error,
                        "ignoring an unreadable rollout report"
                    );
                    None
                }
            })
            .collect())
    }
}
