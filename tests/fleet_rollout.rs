//! Fleet-wide rollout through the library API against a real Pebble: a renewing replica
//! waits for every other live replica's report; a follower rolls out what the renewer made
//! current; a replica whose deploy fails rolls the whole fleet back; a replica that never
//! reports keeps the new version (like an endpoint that did not answer). The replicas share
//! one store here (the filesystem store; the etcd store is the same trait), so the test
//! exercises the rollout protocol, not etcd.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use certinel::renew::fleet::Fleet;
use certinel::renew::{RenewError, RenewOptions, Renewer};
use certinel::store::{FsStore, Store, VersionId};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::common::ari_setup::forced;
use crate::common::config_text::{http01_certificate, pebble_acme_table, write_config_file};
use crate::common::pebble::{Pebble, PebbleOptions};

/// How often a follower looks at `current` in these tests.
const FOLLOW_EVERY: Duration = Duration::from_millis(50);

/// A replica's renewer for certificate `api` in `dir/NAME/` over the shared `state`, whose
/// deploy command logs each version to `dir/NAME.log` and then runs `check`.
fn replica(
    pebble: &Pebble,
    dir: &Path,
    state: &Path,
    name: &str,
    check: &str,
    live: &[&str],
) -> Renewer {
    let log = dir.join(format!("{name}.log"));
    let hook = format!("echo $CERTINEL_VERSION >> {}; {check}", log.display());
    let extra = format!("deploy = [{hook:?}]\ndeploy_timeout = \"10s\"\nverify_timeout = \"2s\"\n");
    let config_dir = dir.join(name);
    std::fs::create_dir_all(&config_dir).unwrap();
    let text =
        pebble_acme_table(state, pebble) + &http01_certificate("api", pebble.http_addr(), &extra);
    let config = certinel::config::load(&write_config_file(&config_dir, &text))
        .unwrap_or_else(|e| panic!("{e}"));
    let members: Vec<String> = live.iter().map(|member| (*member).to_owned()).collect();
    let fleet = Fleet::new(name, move |_certificate| members.clone());
    Renewer::new(&config).with_fleet(Arc::new(fleet))
}

/// Runs `renewer`'s follower for `api` until `stop` is cancelled.
fn follow(renewer: Renewer, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            if let Err(error) = renewer.follow("api").await {
                panic!("follower: {error}");
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    })
}

/// The versions a replica's deploy command logged, in order.
fn deployed(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(format!("{name}.log")))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn state_dir(dir: &Path) -> PathBuf {
    dir.join("state")
}

#[tokio::test]
async fn a_replica_whose_deploy_fails_rolls_the_fleet_back_and_redeploys_the_previous_version() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path());
    let a = replica(&pebble, dir.path(), &state, "a", "true", &["a", "b"]);
    let b = replica(
        &pebble,
        dir.path(),
        &state,
        "b",
        "[ \"$CERTINEL_VERSION\" != v0002 ]",
        &["a", "b"],
    );
    let stop = CancellationToken::new();
    let follower = follow(b, stop.clone());

    let now = OffsetDateTime::now_utc();
    a.renew("api", RenewOptions::default(), now)
        .await
        .expect("v0001 is served by both replicas");
    let failed = a.renew("api", forced(), now).await;
    match failed {
        Err(RenewError::FleetDeploy {
            member, restored, ..
        }) => {
            assert_eq!(member, "b");
            assert_eq!(restored, Some(VersionId(1)));
        }
        other => panic!("replica b's failed deploy fails the renewal: {other:?}"),
    }
    let store = FsStore::new(&state);
    assert_eq!(store.current("api").unwrap(), Some(VersionId(1)));
    // b rolls out the restored version once the rollback made it current again.
    crate::common::eventually::eventually(Duration::from_secs(10), async || {
        let versions = deployed(dir.path(), "b");
        (versions == ["v0001", "v0002", "v0001"])
            .then_some(())
            .ok_or(format!("{versions:?}"))
    })
    .await;
    assert_eq!(deployed(dir.path(), "a"), ["v0001", "v0002", "v0001"]);
    stop.cancel();
    follower.await.unwrap();
}

#[tokio::test]
async fn a_replica_that_never_reports_leaves_the_new_version_current() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path());
    let live = ["a", "b", "silent"];
    let a = replica(&pebble, dir.path(), &state, "a", "true", &live);
    let b = replica(&pebble, dir.path(), &state, "b", "true", &live);
    let stop = CancellationToken::new();
    let follower = follow(b, stop.clone());

    let outcome = a
        .renew("api", RenewOptions::default(), OffsetDateTime::now_utc())
        .await;
    match outcome {
        Err(RenewError::Served { kept, source, .. }) => {
            assert!(kept, "an unanswered rollout keeps the version");
            assert!(
                source
                    .to_string()
                    .contains("no rollout report from replica silent"),
                "{source}"
            );
        }
        other => panic!("the silent replica fails the served check: {other:?}"),
    }
    let store = FsStore::new(&state);
    assert_eq!(store.current("api").unwrap(), Some(VersionId(1)));
    let reports = store.rollout_reports("api", VersionId(1)).unwrap();
    assert_eq!(reports.len(), 2, "a's and b's reports");
    stop.cancel();
    follower.await.unwrap();
}

#[tokio::test]
async fn a_replica_whose_renewal_stops_after_its_deploy_reports_the_version_to_the_replica_that_resumes()
 {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path());
    let live = ["a", "b"];
    // a's first deploy puts a directory where the in-flight record goes (keeping the record
    // aside), so its renewal stops right after the deploy, unable to record it: what a
    // replica sees when etcd loses its quorum at that moment.
    let record = state.join("certs/api/inflight.json");
    let kept = state.join("inflight.kept");
    let once = dir.path().join("sabotaged");
    let sabotage = format!(
        "[ -e {once:?} ] || {{ touch {once:?}; mv {record:?} {kept:?}; mkdir {record:?}; }}"
    );
    let a = replica(&pebble, dir.path(), &state, "a", &sabotage, &live);
    let b = replica(&pebble, dir.path(), &state, "b", "true", &live);

    let now = OffsetDateTime::now_utc();
    let stopped = a.renew("api", RenewOptions::default(), now).await;
    assert!(
        matches!(stopped, Err(RenewError::Store { .. })),
        "a's renewal stops at the store: {stopped:?}"
    );
    std::fs::remove_dir(&record).unwrap();
    std::fs::rename(&kept, &record).unwrap();
    // What a's certificate task does next: it looks at the fleet and rolls out what is
    // current, reporting it.
    let report = a.follow("api").await.expect("a's follower");
    assert!(
        report.is_some(),
        "a rolls out and reports the version its stopped renewal deployed"
    );
    // b resumes the renewal a left in flight and finds a's report.
    let resumed = b.renew("api", RenewOptions::default(), now).await;
    assert!(
        resumed.is_ok(),
        "b's resumed renewal sees every replica serve v0001: {resumed:?}"
    );
    assert_eq!(deployed(dir.path(), "a"), ["v0001", "v0001"]);
    assert_eq!(deployed(dir.path(), "b"), ["v0001"]);
}
