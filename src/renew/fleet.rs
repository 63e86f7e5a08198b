//! Fleet-wide rollout: with `[cluster]`, every replica that deploys a certificate reports
//! what happened when a new version became current on its machine (its deploy commands and
//! its own `verify` endpoints), and the replica that renewed waits for a report from every
//! live member that carries the certificate before it calls the version served.
//!
//! [`MemberReport`] is the document each replica stores per version (the store keeps it as
//! bytes); [`judge`] turns the reports and the live member list into a [`FleetVerdict`].
//! [`Fleet`] is this replica's handle on the rest: its name, the live members (from
//! `cluster::membership`) and the version it last rolled out of each certificate. Pure: no
//! clock, files or sockets.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::store::VersionId;

/// Lists the live members that roll a certificate out, given its name.
type LiveMembers = Box<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// This replica's place in the fleet, shared by its renewer (which waits for the others'
/// reports) and its followers (which roll out what another replica renewed).
pub struct Fleet {
    member: String,
    live: LiveMembers,
    applied: Mutex<HashMap<String, VersionId>>,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("member", &self.member)
            .finish()
    }
}

impl Fleet {
    /// The fleet as replica `member` sees it; `live(certificate)` lists the live members
    /// that roll that certificate out (including `member` itself) each time it is called.
    pub fn new(member: &str, live: impl Fn(&str) -> Vec<String> + Send + Sync + 'static) -> Fleet {
        Fleet {
            member: member.to_owned(),
            live: Box::new(live),
            applied: Mutex::new(HashMap::new()),
        }
    }

    /// This replica's name.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// The live members rolling out `certificate` now, this one included.
    pub fn live_members(&self, certificate: &str) -> Vec<String> {
        (self.live)(certificate)
    }

    /// The version of `name` this replica last rolled out (deployed and checked), if any
    /// since it started.
    pub fn applied(&self, name: &str) -> Option<VersionId> {
        self.applied_versions().get(name).copied()
    }

    /// Records that this replica rolled out `version` of `name`.
    pub fn mark_applied(&self, name: &str, version: VersionId) {
        self.applied_versions().insert(name.to_owned(), version);
    }

    /// Forgets that this replica rolled out `version` of `name` (when that is the one it
    /// last rolled out), so that its follower rolls it out again.
    pub fn forget_applied(&self, name: &str, version: VersionId) {
        let mut applied = self.applied_versions();
        if applied.get(name) == Some(&version) {
            applied.remove(name);
        }
    }

    fn applied_versions(&self) -> std::sync::MutexGuard<'_, HashMap<String, VersionId>> {
        // The map holds plain values; a panic elsewhere cannot leave it half-updated.
        self.applied
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// What one replica reports about one version of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberReport {
    /// The reporting replica (`[cluster] member`).
    pub member: String,
    /// The version it materialised.
    pub version: VersionId,
    /// What happened.
    pub outcome: MemberOutcome,
    /// One line for people: the failing command, the stale endpoint, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The result of rolling one version out on one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberOutcome {
    /// The files are in place, the deploy commands succeeded and every `verify` endpoint of
    /// this replica serves the version (or it has none).
    Served,
    /// A deploy command failed.
    DeployFailed,
    /// A `verify` endpoint of this replica still serves an older certificate.
    Stale,
    /// A `verify` endpoint of this replica did not answer in time.
    Unreachable,
}

/// Where the rollout of one version stands across the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetVerdict {
    /// Every live member other than the renewing one reported `Served`.
    Served,
    /// Some members have not reported yet.
    Waiting {
        /// The live members without a report, sorted.
        missing: Vec<String>,
    },
    /// A member reported a failure; the first by severity (deploy failure, then stale, then
    /// unreachable) and member name.
    Failed(MemberReport),
}

/// Judges the rollout of `version` from the `reports` stored so far. `live` is the member
/// list the renewing replica sees now and `me` the renewing replica, whose own deploy and
/// `verify` checks the renewal ran itself. Reports for other versions, and from members no
/// longer live, do not count: a member that left cannot hold the fleet back, and a failure
/// it reported before leaving stays its own.
pub fn judge(
    live: &[String],
    me: &str,
    version: VersionId,
    reports: &[MemberReport],
) -> FleetVerdict {
    let relevant: Vec<&MemberReport> = reports
        .iter()
        .filter(|report| report.version == version && report.member != me)
        .filter(|report| live.iter().any(|member| member == &report.member))
        .collect();
    let failure = relevant
        .iter()
        .filter(|report| report.outcome != MemberOutcome::Served)
        .min_by_key(|report| (severity(report.outcome), report.member.clone()));
    if let Some(failure) = failure {
        return FleetVerdict::Failed((*failure).clone());
    }
    let mut missing: Vec<String> = live
        .iter()
        .filter(|member| member.as_str() != me)
        .filter(|member| !relevant.iter().any(|report| &report.member == *member))
        .cloned()
        .collect();
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        FleetVerdict::Served
    } else {
        FleetVerdict::Waiting { missing }
    }
}

/// Lower is worse: the failure a person must look at first.
fn severity(outcome: MemberOutcome) -> u8 {
    match outcome {
        MemberOutcome::DeployFailed => 0,
        MemberOutcome::Stale => 1,
        MemberOutcome::Unreachable => 2,
        MemberOutcome::Served => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    fn report(member: &str, version: u32, outcome: MemberOutcome) -> MemberReport {
        MemberReport {
            member: member.to_owned(),
            version: VersionId(version),
            outcome,
            detail: String::new(),
        }
    }

    /// One case: the live members, the reports, and the verdict for version 2 judged by `a`.
    fn check(live: &[&str], reports: &[MemberReport], expected: FleetVerdict) {
        let verdict = judge(&members(live), "a", VersionId(2), reports);
        assert_eq!(verdict, expected, "live {live:?}, reports {reports:?}");
    }

    #[test]
    fn a_fleet_of_one_is_served_by_the_renewing_replica_alone() {
        check(&["a"], &[], FleetVerdict::Served);
    }

    #[test]
    fn the_rollout_waits_for_every_other_live_member() {
        use MemberOutcome::Served;
        check(
            &["a", "c", "b"],
            &[report("b", 2, Served)],
            FleetVerdict::Waiting {
                missing: members(&["c"]),
            },
        );
        check(
            &["a", "b", "c"],
            &[report("b", 2, Served), report("c", 2, Served)],
            FleetVerdict::Served,
        );
    }

    #[test]
    fn reports_for_another_version_or_from_departed_members_do_not_count() {
        use MemberOutcome::{DeployFailed, Served};
        check(
            &["a", "b"],
            &[report("b", 1, Served), report("gone", 2, DeployFailed)],
            FleetVerdict::Waiting {
                missing: members(&["b"]),
            },
        );
    }

    #[test]
    fn the_worst_failure_is_reported_even_while_others_are_missing() {
        use MemberOutcome::{DeployFailed, Stale, Unreachable};
        check(
            &["a", "b", "c", "d", "e"],
            &[
                report("b", 2, Unreachable),
                report("c", 2, Stale),
                report("d", 2, DeployFailed),
            ],
            FleetVerdict::Failed(report("d", 2, DeployFailed)),
        );
        check(
            &["a", "b", "c"],
            &[report("c", 2, Stale), report("b", 2, Stale)],
            FleetVerdict::Failed(report("b", 2, Stale)),
        );
    }

    #[test]
    fn each_certificate_waits_only_for_the_live_members_that_carry_it() {
        use MemberOutcome::Served;
        // Tier one (a, b) carries `www`; tier two (c) carries `api`, which a renews too.
        let fleet = Fleet::new("a", |certificate| match certificate {
            "www" => members(&["a", "b"]),
            "api" => members(&["a", "c"]),
            _ => members(&["a"]),
        });
        let judge_for = |certificate: &str, reports: &[MemberReport]| {
            judge(
                &fleet.live_members(certificate),
                fleet.member(),
                VersionId(2),
                reports,
            )
        };
        assert_eq!(
            judge_for("www", &[report("b", 2, Served)]),
            FleetVerdict::Served
        );
        assert_eq!(
            judge_for("api", &[report("b", 2, Served)]),
            FleetVerdict::Waiting {
                missing: members(&["c"]),
            }
        );
        assert_eq!(judge_for("local", &[]), FleetVerdict::Served);
    }

    #[test]
    fn only_the_version_last_rolled_out_is_forgotten() {
        let fleet = Fleet::new("a", |_| members(&["a"]));
        fleet.mark_applied("api", VersionId(2));
        fleet.forget_applied("api", VersionId(1));
        assert_eq!(fleet.applied("api"), Some(VersionId(2)), "an older version");
        fleet.forget_applied("api", VersionId(2));
        assert_eq!(fleet.applied("api"), None);
    }

    #[test]
    fn a_report_round_trips_through_its_stored_form() {
        let stored = MemberReport {
            detail: "nginx -s reload exited 1".to_owned(),
            ..report("b", 7, MemberOutcome::DeployFailed)
        };
        let bytes = serde_json::to_vec(&stored).unwrap();
        assert!(String::from_utf8_lossy(&bytes).contains("\"deploy_failed\""));
        let read: MemberReport = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(read, stored);
    }
}
