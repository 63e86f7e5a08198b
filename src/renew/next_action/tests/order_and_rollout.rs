//! The state machine from a loaded account to the end: ordering, keeping or abandoning an
//! order, deploying, the served and files checks, rollbacks.

use super::*;

#[test]
fn a_new_order_checks_the_account_the_profile_and_begins() {
    let mut profiled = World::empty();
    profiled.certificate = certificate("profile = \"shortlived\"\n");
    check(vec![
        (
            "no profile: begin",
            World::empty(),
            Event::AccountLoaded,
            Action::Begin,
        ),
        (
            "a profile: check the directory first",
            profiled,
            Event::AccountLoaded,
            Action::CheckProfile,
        ),
        (
            "profile advertised",
            World::empty(),
            Event::ProfileChecked { available: true },
            Action::Begin,
        ),
        (
            "profile withdrawn",
            World::empty(),
            Event::ProfileChecked { available: false },
            Action::Fail { restored: None },
        ),
        (
            "account unreachable: no in-flight record was begun",
            World::empty(),
            Event::AccountFailed,
            Action::Fail { restored: None },
        ),
        ("begun", World::empty(), Event::Begun, Action::PlaceOrder),
    ]);
}

#[test]
fn a_placed_order_gets_a_saved_key_before_it_is_finalized() {
    let (placed, keyed) = placed_order();
    check(vec![
        (
            "placed and validated: save the key first",
            World::empty().inflight(placed),
            Event::OrderReady,
            Action::SaveKey,
        ),
        (
            "key saved: finalize",
            World::empty().inflight(keyed),
            Event::KeySaved,
            Action::Finalize {
                order_url: ORDER.into(),
            },
        ),
    ]);
}

#[test]
fn a_failed_order_is_kept_only_when_it_has_a_saved_key_and_may_pass() {
    let (without_key, with_key) = placed_order();
    check(vec![
        (
            "transient, with order and key",
            World::empty().inflight(with_key.clone()),
            Event::OrderFailed { transient: true },
            Action::KeepOrder,
        ),
        (
            "transient, no key saved yet",
            World::empty().inflight(without_key),
            Event::OrderFailed { transient: true },
            Action::AbandonOrder,
        ),
        (
            "permanent, with order and key",
            World::empty().inflight(with_key),
            Event::OrderFailed { transient: false },
            Action::AbandonOrder,
        ),
        (
            "the certificate could not be stored",
            World::empty(),
            Event::StageFailed,
            Action::AbandonOrder,
        ),
    ]);
}

#[test]
fn a_staged_version_is_deployed_checked_and_finished() {
    check(vec![
        (
            "staged",
            World::empty(),
            Event::Staged { version: V2 },
            Action::Deploy { version: V2 },
        ),
        (
            "deployed",
            World::empty(),
            Event::Deployed { version: V2 },
            Action::CheckServed { version: V2 },
        ),
        (
            "served",
            World::empty(),
            Event::Served { version: V2 },
            Action::CheckFiles { version: V2 },
        ),
        (
            "files check out",
            World::empty(),
            Event::FilesChecked {
                version: V2,
                unserved_kept: false,
            },
            Action::MarkVerified { version: V2 },
        ),
        (
            "verified",
            World::empty(),
            Event::Verified { version: V2 },
            Action::Finish { version: V2 },
        ),
    ]);
}

#[test]
fn failed_rollouts_roll_back_or_keep_the_version_as_configured() {
    let mut keep = World::empty();
    keep.certificate = certificate("on_verify_failure = \"keep\"\n");
    let mut keep_stale = World::empty();
    keep_stale.certificate = keep.certificate.clone();
    assert_eq!(
        keep.certificate.on_verify_failure,
        OnVerifyFailure::Keep,
        "fixture"
    );
    check(vec![
        (
            "a deploy command failed: roll back, park the version",
            World::empty(),
            Event::DeployFailed { version: V2 },
            Action::RollBack {
                version: V2,
                rollout_only: true,
            },
        ),
        (
            "an endpoint serves an older certificate: roll back",
            World::empty(),
            Event::NotServed {
                version: V2,
                verdict: Verdict::Stale,
            },
            Action::RollBack {
                version: V2,
                rollout_only: true,
            },
        ),
        (
            "an endpoint does not answer: a rollback would not help",
            World::empty(),
            Event::NotServed {
                version: V2,
                verdict: Verdict::Unreachable,
            },
            Action::AcceptUnserved {
                version: V2,
                why: "unreachable: a rollback would not help",
            },
        ),
        (
            "on_verify_failure = keep, unreachable",
            keep,
            Event::NotServed {
                version: V2,
                verdict: Verdict::Unreachable,
            },
            Action::AcceptUnserved {
                version: V2,
                why: "on_verify_failure = \"keep\"",
            },
        ),
        (
            "on_verify_failure = keep, stale",
            keep_stale,
            Event::NotServed {
                version: V2,
                verdict: Verdict::Stale,
            },
            Action::AcceptUnserved {
                version: V2,
                why: "on_verify_failure = \"keep\"",
            },
        ),
        (
            "kept unserved: its files are still checked",
            World::empty(),
            Event::UnservedAccepted { version: V2 },
            Action::CheckFiles { version: V2 },
        ),
        (
            "kept unserved and the files check out: park it, count the failure",
            World::empty(),
            Event::FilesChecked {
                version: V2,
                unserved_kept: true,
            },
            Action::ParkUnserved { version: V2 },
        ),
        (
            "the files do not check out: roll back, the version is not parked",
            World::empty(),
            Event::FilesFailed { version: V2 },
            Action::RollBack {
                version: V2,
                rollout_only: false,
            },
        ),
        (
            "rolled back: count the failure with what was restored",
            World::empty(),
            Event::RolledBack { restored: Some(V1) },
            Action::Fail { restored: Some(V1) },
        ),
        (
            "nothing to restore",
            World::empty(),
            Event::RolledBack { restored: None },
            Action::Fail { restored: None },
        ),
    ]);
}
