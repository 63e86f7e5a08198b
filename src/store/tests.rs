//! Store behaviour on a real directory: versions, promote/rollback/prune, and recovery
//! after a crash at every point of the renewal sequence.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use time::macros::datetime;

use crate::store::atomic::replace_symlink_atomic;
use crate::store::testing::{Issued, issue};
use crate::store::{
    CertStore, NewVersion, NextStep, Origin, Stage, StoreError, VersionId, VersionState,
    check_version, recover,
};

const NAME: &str = "www";
const ORDER: &str = "https://ca.invalid/order/7";

fn origin() -> Origin {
    Origin {
        created_at: datetime!(2025-01-01 0:05 UTC),
        source: "https://ca.invalid/directory".into(),
    }
}

fn cert() -> Issued {
    issue(&["example.com"], &rcgen::PKCS_ECDSA_P256_SHA256)
}

fn stage(store: &CertStore) -> VersionId {
    let issued = cert();
    store
        .stage_pending(NAME, issued.new_version(&origin()))
        .unwrap()
        .version
}

fn live(store: &CertStore) -> (Option<u32>, Option<u32>) {
    (
        store.current(NAME).unwrap().map(|v| v.0),
        store.previous(NAME).unwrap().map(|v| v.0),
    )
}

#[test]
fn stage_pending_writes_a_complete_version_that_is_not_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    let issued = cert();
    let meta = store
        .stage_pending(NAME, issued.new_version(&origin()))
        .unwrap();
    assert_eq!(meta.version, VersionId(1));
    assert_eq!(meta.state, VersionState::Pending);
    assert_eq!(meta.dns_names, ["example.com"]);
    assert_eq!(live(&store), (None, None));
    let files = store.files(NAME, VersionId(1)).unwrap();
    assert_eq!(
        std::fs::read_to_string(&files.fullchain).unwrap(),
        issued.fullchain
    );
    let key_mode = std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);
    let facts = check_version(&files, &["example.com".into()]).unwrap();
    assert_eq!(facts.serial, meta.serial);
    assert_eq!(store.versions(NAME).unwrap(), [meta]);
}

#[test]
fn stage_pending_refuses_a_key_that_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    let err = store
        .stage_pending(
            NAME,
            NewVersion {
                key_pem: &cert().key_pem,
                chain_pem: &cert().fullchain,
                origin: &origin(),
            },
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Verify(_)), "{err}");
    assert!(store.versions(NAME).unwrap().is_empty());
}

#[test]
fn names_that_are_not_one_safe_path_component_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    for bad in ["", "..", ".hidden", "a/b", "a b"] {
        assert!(
            matches!(store.current(bad), Err(StoreError::InvalidName(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn promote_moves_current_to_previous_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    let v1 = stage(&store);
    store.promote(NAME, v1).unwrap();
    assert_eq!(live(&store), (Some(1), None));
    let v2 = stage(&store);
    store.promote(NAME, v2).unwrap();
    store.promote(NAME, v2).unwrap();
    assert_eq!(live(&store), (Some(2), Some(1)));
    assert_eq!(
        store.metadata(NAME, v2).unwrap().state,
        VersionState::Active
    );
    let served = store.current_files(NAME).unwrap().fullchain;
    assert!(served.ends_with("www/current/fullchain.pem"));
    assert_eq!(
        std::fs::read(&served).unwrap(),
        std::fs::read(store.files(NAME, v2).unwrap().fullchain).unwrap()
    );
}

#[test]
fn rollback_restores_previous_marks_the_bad_version_failed_and_finds_an_older_previous() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_promoted_versions(dir.path(), 3);
    assert_eq!(live(&store), (Some(3), Some(2)));
    assert_eq!(store.rollback(NAME).unwrap(), VersionId(2));
    assert_eq!(live(&store), (Some(2), Some(1)));
    assert_eq!(
        store.metadata(NAME, VersionId(3)).unwrap().state,
        VersionState::Failed
    );
    assert_eq!(store.rollback(NAME).unwrap(), VersionId(1));
    assert_eq!(live(&store), (Some(1), None));
    assert!(matches!(
        store.rollback(NAME),
        Err(StoreError::NoPrevious(_))
    ));
}

#[test]
fn prune_keeps_the_newest_and_never_current_previous_or_inflight() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_promoted_versions(dir.path(), 3);
    store.rollback(NAME).unwrap(); // current v2, previous v1, v3 failed
    for _ in 0..4 {
        stage(&store); // v4..v7, pending
    }
    store.begin(NAME, datetime!(2025-02-01 0:00 UTC)).unwrap();
    store.advance(NAME, Stage::Pending, VersionId(4)).unwrap();
    let removed = store.prune(NAME, 2).unwrap();
    assert_eq!(removed, [VersionId(3), VersionId(5)]);
    let left: Vec<u32> = store
        .versions(NAME)
        .unwrap()
        .iter()
        .map(|m| m.version.0)
        .collect();
    assert_eq!(left, [1, 2, 4, 6, 7]);
}

#[test]
fn prune_spares_a_version_stored_by_a_renewal_that_has_not_recorded_it_yet() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_live_v1(dir.path());
    store.begin(NAME, datetime!(2025-02-01 0:00 UTC)).unwrap();
    stage(&store); // v2, stored by the ordering renewal; the crash came before `advance`
    assert_eq!(store.prune(NAME, 0).unwrap(), []);
    assert_eq!(store.versions(NAME).unwrap().len(), 2);
}

/// One store call of the renewal sequence.
type StoreStep = fn(&CertStore);

/// The whole renewal of v2 over a live v1, one store call per step, so a crash can be
/// simulated after any prefix.
fn renewal_steps() -> Vec<(&'static str, StoreStep)> {
    vec![
        ("begin", |s| {
            s.begin(NAME, datetime!(2025-02-01 0:00 UTC)).unwrap();
        }),
        ("record order", |s| {
            s.record_order(NAME, ORDER).unwrap();
        }),
        ("half-written version", |s| {
            let partial = s.cert_dir(NAME).unwrap().join(".v0002.partial");
            std::fs::create_dir(&partial).unwrap();
            std::fs::write(partial.join("key.pem"), "half").unwrap();
        }),
        ("stage pending", |s| {
            stage(s);
        }),
        ("advance pending", |s| {
            s.advance(NAME, Stage::Pending, VersionId(2)).unwrap();
        }),
        ("previous switched", |s| {
            let dir = s.cert_dir(NAME).unwrap();
            replace_symlink_atomic(&dir.join("previous"), Path::new("v0001")).unwrap();
        }),
        ("promote", |s| s.promote(NAME, VersionId(2)).unwrap()),
        ("advance deployed", |s| {
            s.advance(NAME, Stage::Deployed, VersionId(2)).unwrap();
        }),
        ("advance verified", |s| {
            s.advance(NAME, Stage::Verified, VersionId(2)).unwrap();
        }),
        ("finish", |s| s.finish(NAME).unwrap()),
    ]
}

fn store_with_live_v1(dir: &Path) -> CertStore {
    store_with_promoted_versions(dir, 1)
}

/// A store in `dir` with v1 live, left as a crash leaves it after the first `done`
/// [`renewal_steps`] of the renewal to v2.
fn crashed_after_steps(dir: &Path, done: usize) -> CertStore {
    let store = store_with_live_v1(dir);
    for (_, step) in &renewal_steps()[..done] {
        step(&store);
    }
    store
}

/// A store in `dir` where `count` versions were staged and promoted one after another.
fn store_with_promoted_versions(dir: &Path, count: u32) -> CertStore {
    let store = CertStore::open(dir).unwrap();
    for _ in 0..count {
        let version = stage(&store);
        store.promote(NAME, version).unwrap();
    }
    store
}

#[test]
fn recovery_after_a_crash_at_every_step_of_a_renewal() {
    let v2 = VersionId(2);
    let expected = [
        ("nothing", NextStep::Idle),
        ("begin", NextStep::ResumeOrder { order_url: None }),
        (
            "record order",
            NextStep::ResumeOrder {
                order_url: Some(ORDER.into()),
            },
        ),
        (
            "half-written version",
            NextStep::ResumeOrder {
                order_url: Some(ORDER.into()),
            },
        ),
        ("stage pending", NextStep::Adopt { version: v2 }),
        ("advance pending", NextStep::Deploy { version: v2 }),
        ("previous switched", NextStep::Deploy { version: v2 }),
        ("promote", NextStep::Deploy { version: v2 }),
        ("advance deployed", NextStep::Verify { version: v2 }),
        ("advance verified", NextStep::Finish { version: v2 }),
        ("finish", NextStep::Idle),
    ];
    assert_eq!(renewal_steps().len() + 1, expected.len());
    for (done, (label, want)) in expected.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let store = crashed_after_steps(dir.path(), done);
        let recovery = recover(&store.disk_state(NAME).unwrap());
        assert_eq!(&recovery.next, want, "crash after {label}");
        assert_eq!(
            recovery.remove_leftovers,
            *label == "half-written version",
            "{label}"
        );
    }
}

#[test]
fn resuming_after_the_half_written_version_leaves_no_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = crashed_after_steps(dir.path(), 3);
    assert_eq!(store.remove_leftovers(NAME).unwrap(), [".v0002.partial"]);
    let v2 = stage(&store);
    assert_eq!(v2, VersionId(2));
    assert!(store.disk_state(NAME).unwrap().leftovers.is_empty());
}

#[test]
fn resuming_deploy_after_a_half_promotion_ends_with_v1_as_previous() {
    let dir = tempfile::tempdir().unwrap();
    let store = crashed_after_steps(dir.path(), 6);
    assert_eq!(live(&store), (Some(1), Some(1)));
    store.promote(NAME, VersionId(2)).unwrap();
    assert_eq!(live(&store), (Some(2), Some(1)));
}

#[test]
fn a_crash_after_rolling_back_a_failed_deploy_abandons_instead_of_redeploying() {
    let dir = tempfile::tempdir().unwrap();
    let store = crashed_after_steps(dir.path(), 7);
    // The deploy command failed: roll back, then crash before `finish`.
    store.rollback(NAME).unwrap();
    let recovery = recover(&store.disk_state(NAME).unwrap());
    assert!(
        matches!(
            recovery.next,
            NextStep::Abandon {
                version: Some(VersionId(2)),
                ..
            }
        ),
        "{recovery:?}"
    );
}

#[test]
fn begin_refuses_a_second_renewal_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::open(dir.path()).unwrap();
    store.begin(NAME, datetime!(2025-02-01 0:00 UTC)).unwrap();
    assert!(matches!(
        store.begin(NAME, datetime!(2025-02-01 0:01 UTC)),
        Err(StoreError::InflightExists {
            stage: Stage::Ordering,
            ..
        })
    ));
    assert!(matches!(store.finish("other"), Ok(())));
    assert!(matches!(
        store.record_order("other", ORDER),
        Err(StoreError::NoInflight(_))
    ));
}

#[test]
fn a_temporary_file_left_inside_a_version_directory_is_a_leftover_and_removed() {
    // kill -9 while a version's metadata was being rewritten (a state change) leaves the
    // writer's temporary file inside the version directory.
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_live_v1(dir.path());
    let version_dir = dir.path().join("certs").join(NAME).join("v0001");
    std::fs::write(version_dir.join(".metadata.json.tmp.4242.7"), "{").unwrap();
    let leftovers = store.disk_state(NAME).unwrap().leftovers;
    assert_eq!(leftovers, ["v0001/.metadata.json.tmp.4242.7"]);
    assert!(recover(&store.disk_state(NAME).unwrap()).remove_leftovers);
    assert_eq!(
        store.remove_leftovers(NAME).unwrap(),
        ["v0001/.metadata.json.tmp.4242.7"]
    );
    assert!(store.disk_state(NAME).unwrap().leftovers.is_empty());
    assert!(
        version_dir.join("cert.pem").exists(),
        "the version itself is kept"
    );
}
