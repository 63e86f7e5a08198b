//! Every crash point: the state a dead process left on disk, and the action the restarted
//! renewal takes (through `store::recover`).

use super::*;

#[test]
fn every_crash_point_resumes_with_the_step_it_was_interrupted_before() {
    // A pending version newer than current, stored before the record said so.
    let mut orphan = World::current(60);
    orphan.add_version(version(2, VersionState::Pending, 0));
    let orphan = orphan.inflight(inflight(Stage::Ordering, None));
    let mut failed = World::current(60);
    failed.add_version(version(2, VersionState::Failed, 0));
    let failed = failed.inflight(inflight(Stage::Pending, Some(2)));
    let mut pending = World::current(60);
    pending.add_version(version(2, VersionState::Pending, 0));
    let mut live = World::current(60);
    live.add_version(version(2, VersionState::Active, 0));
    live.disk.current = Some(V2);
    live.disk.previous = Some(V1);
    let mut moved = World::current(60);
    moved.add_version(version(2, VersionState::Active, 0));

    let starts = vec![
        (
            "after begin",
            World::empty().inflight(inflight(Stage::Ordering, None)),
        ),
        ("after the order was recorded", {
            let mut record = inflight(Stage::Ordering, None);
            record.order_url = Some(ORDER.into());
            World::empty().inflight(record)
        }),
        ("after stage_pending, before advance", orphan),
        ("after advance(Pending)", {
            let mut world = World::current(60);
            world.add_version(version(2, VersionState::Pending, 0));
            world.inflight(inflight(Stage::Pending, Some(2)))
        }),
        ("after advance(Deployed)", {
            let mut world = World::current(60);
            world.add_version(version(2, VersionState::Active, 0));
            world.disk.current = Some(V2);
            world.inflight(inflight(Stage::Deployed, Some(2)))
        }),
    ];
    for (row, world) in starts {
        assert_eq!(world.next(Event::Started), resuming(), "{row}");
    }

    let (with_url, with_key) = placed_order();
    check(vec![
        (
            "after begin: load the account, then order anew",
            World::empty().inflight(inflight(Stage::Ordering, None)),
            Event::CleanedUp,
            Action::LoadAccount,
        ),
        (
            "after begin, account loaded: a new order",
            World::empty().inflight(inflight(Stage::Ordering, None)),
            Event::AccountLoaded,
            Action::PlaceOrder,
        ),
        (
            "after the order was recorded: resume it, never order again",
            World::empty().inflight(with_url.clone()),
            Event::AccountLoaded,
            Action::ResumeOrder {
                order_url: ORDER.into(),
            },
        ),
        (
            "after the key was saved: resume the order",
            World::empty().inflight(with_key.clone()),
            Event::AccountLoaded,
            Action::ResumeOrder {
                order_url: ORDER.into(),
            },
        ),
        (
            "the recorded order still validates, no key yet: save one",
            World::empty().inflight(with_url.clone()),
            Event::OrderReady,
            Action::SaveKey,
        ),
        (
            "the recorded order with its saved key: finalize with that key",
            World::empty().inflight(with_key.clone()),
            Event::OrderReady,
            Action::Finalize {
                order_url: ORDER.into(),
            },
        ),
        (
            "finalized by the CA, the key saved: resume it (download, pair the key)",
            World::empty().inflight(with_key),
            Event::RecordedOrderUsable { finalized: true },
            Action::RecordResumed { finalized: true },
        ),
        (
            "finalized by the CA with a key that was never saved: order anew",
            World::empty().inflight(with_url.clone()),
            Event::RecordedOrderUsable { finalized: true },
            Action::PlaceOrder,
        ),
        (
            "ready, not finalized: resume it",
            World::empty().inflight(with_url.clone()),
            Event::RecordedOrderUsable { finalized: false },
            Action::RecordResumed { finalized: false },
        ),
        (
            "the recorded order expired or became invalid: order anew",
            World::empty().inflight(with_url),
            Event::RecordedOrderUnusable,
            Action::PlaceOrder,
        ),
        (
            "after stage_pending, before advance: adopt the stored version",
            orphan_world(),
            Event::CleanedUp,
            Action::Adopt { version: V2 },
        ),
        (
            "after advance(Pending): promote and deploy",
            pending.inflight(inflight(Stage::Pending, Some(2))),
            Event::CleanedUp,
            Action::Deploy { version: V2 },
        ),
        (
            "after advance(Deployed): check what is served",
            live.clone().inflight(inflight(Stage::Deployed, Some(2))),
            Event::CleanedUp,
            Action::CheckServed { version: V2 },
        ),
        (
            "after advance(Verified): finish",
            live.inflight(inflight(Stage::Verified, Some(2))),
            Event::CleanedUp,
            Action::Finish { version: V2 },
        ),
        (
            "deployed but current moved away: abandon",
            moved.inflight(inflight(Stage::Deployed, Some(2))),
            Event::CleanedUp,
            Action::Abandon {
                version: Some(V2),
                reason: "current no longer points at it".into(),
            },
        ),
        (
            "its version was marked failed: abandon",
            failed,
            Event::CleanedUp,
            Action::Abandon {
                version: Some(V2),
                reason: "its version was marked failed".into(),
            },
        ),
        (
            "its version directory is missing: abandon",
            World::current(60).inflight(inflight(Stage::Pending, Some(7))),
            Event::CleanedUp,
            Action::Abandon {
                version: Some(VersionId(7)),
                reason: "its version directory is missing".into(),
            },
        ),
    ]);
}

fn orphan_world() -> World {
    let mut world = World::current(60);
    world.add_version(version(2, VersionState::Pending, 0));
    world.inflight(inflight(Stage::Ordering, None))
}

#[test]
fn a_deploy_command_left_running_and_leftovers_are_cleaned_up_first() {
    let hook = crate::store::HookProcess {
        id: "abc".into(),
        group: None,
    };
    let mut record = inflight(Stage::Pending, Some(2));
    record.hook = Some(hook.clone());
    let mut running = World::current(60);
    running.add_version(version(2, VersionState::Pending, 0));
    let running = running.inflight(record);
    let mut leftovers = World::current(10);
    leftovers.disk.leftovers = vec![".v0002.tmp".into()];
    check(vec![
        (
            "a deploy command recorded as running is stopped",
            running,
            Event::Started,
            Action::CleanUp {
                stop_hook: Some(hook),
                remove_leftovers: false,
                resuming: true,
            },
        ),
        (
            "leftovers of an interrupted write are removed, nothing resumes",
            leftovers,
            Event::Started,
            Action::CleanUp {
                stop_hook: None,
                remove_leftovers: true,
                resuming: false,
            },
        ),
    ]);
}

#[test]
fn a_recorded_order_waits_for_the_cas_retry_after() {
    let mut record = inflight(Stage::Ordering, None);
    record.order_url = Some(ORDER.into());
    let mut world = World::empty().inflight(record);
    world.plan.schedule.retry_after = Some(NOW + Duration::hours(1));
    assert_eq!(
        world.next(Event::CleanedUp),
        Action::Refuse {
            until: NOW + Duration::hours(1),
            reason: Reason::RetryAfter,
        }
    );
}
