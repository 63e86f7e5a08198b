//! Failed rollouts against a real Pebble, through the library API with `now` as an input:
//! a first version whose deploy failed stays current and is rolled out again (no new order)
//! after the backoff, and every automatic rollback runs the deploy commands for the version it
//! restores.

use std::path::{Path, PathBuf};

use certinel::renew::{RenewError, RenewOptions, RenewOutcome, Renewer};
use certinel::store::{CertStore, VersionId};
use time::{Duration, OffsetDateTime};

use crate::common::ari_setup::forced;
use crate::common::config_text::{http01_certificate, pebble_acme_table, write_config_file};
use crate::common::pebble::{Pebble, PebbleOptions};

/// A configuration with the certificate `api` answering http-01, whose deploy command is
/// `hook`, in `dir`; its state directory is `dir/state`.
fn write_config(dir: &Path, pebble: &Pebble, hook: &str) -> PathBuf {
    let extra = format!("deploy = [{hook:?}]\ndeploy_timeout = \"10s\"\n");
    let text = pebble_acme_table(&dir.join("state"), pebble)
        + &http01_certificate("api", pebble.http_addr(), &extra);
    write_config_file(dir, &text)
}

fn renewer(config: &Path) -> Renewer {
    let config = certinel::config::load(config).unwrap_or_else(|e| panic!("{e}"));
    Renewer::new(&config)
}

/// Pebble and a renewer for `api` in a scratch directory whose deploy command logs every
/// version it deploys to `log` and refuses v0002; v0001 is issued and deployed at `now`.
struct DeployRefusingV0002 {
    renewer: Renewer,
    log: PathBuf,
    now: OffsetDateTime,
    state_dir: PathBuf,
    _dir: tempfile::TempDir,
    _pebble: Pebble,
}

/// A deploy command appending each version it deploys to `log`, failing for v0002.
fn logging_deploy_refusing_v0002(log: &Path) -> String {
    let log = log.display();
    format!("echo $CERTINEL_VERSION >> {log}; [ \"$CERTINEL_VERSION\" != v0002 ]")
}

impl DeployRefusingV0002 {
    async fn issued() -> DeployRefusingV0002 {
        let pebble = Pebble::start(PebbleOptions::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("deployed.log");
        let hook = logging_deploy_refusing_v0002(&log);
        let renewer = renewer(&write_config(dir.path(), &pebble, &hook));
        let now = OffsetDateTime::now_utc();
        renewer
            .renew("api", RenewOptions::default(), now)
            .await
            .expect("first issuance");
        DeployRefusingV0002 {
            renewer,
            log,
            now,
            state_dir: dir.path().join("state"),
            _dir: dir,
            _pebble: pebble,
        }
    }

    /// Forces the renewal whose deploy of v0002 fails; returns the version restored.
    async fn renew_to_v0002(&self) -> Option<VersionId> {
        restored_after_a_failed_deploy(self.renewer.renew("api", forced(), self.now).await)
    }
}

/// Fails unless `failed` is a failed deploy; returns the version it restored.
fn restored_after_a_failed_deploy(failed: Result<RenewOutcome, RenewError>) -> Option<VersionId> {
    match failed {
        Err(RenewError::Hook { restored, .. }) => restored,
        other => panic!("the second deploy fails: {other:?}"),
    }
}

/// The versions the deploy command logged to `log`, in order.
fn deployed_versions(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The audit log of `api` as `step:outcome`, with the version when there is one.
fn steps(state_dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(state_dir.join("audit.jsonl")).unwrap_or_default();
    text.lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            let field = |key: &str| event[key].as_str().unwrap_or_default().to_owned();
            match event["version"].as_str() {
                Some(version) => format!("{}:{}@{version}", field("step"), field("outcome")),
                None => format!("{}:{}", field("step"), field("outcome")),
            }
        })
        .collect()
}

#[tokio::test]
async fn a_failed_first_rollout_stays_current_and_is_rolled_out_again_after_the_backoff_without_a_new_order()
 {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // Fails the first time it runs, works afterwards.
    let marker = dir.path().join("deployed-once");
    let hook = format!(
        "if [ -e {m} ]; then exit 0; fi; touch {m}; echo not yet >&2; exit 4",
        m = marker.display()
    );
    let config = write_config(dir.path(), &pebble, &hook);
    let renewer = renewer(&config);
    let state_dir = dir.path().join("state");
    let store = CertStore::open(&state_dir).unwrap();
    let start = OffsetDateTime::now_utc();

    let first = renewer.renew("api", RenewOptions::default(), start).await;
    let Err(RenewError::Hook { restored, .. }) = &first else {
        panic!("the first deploy fails: {first:?}");
    };
    assert_eq!(*restored, None, "nothing to roll back to");
    assert_eq!(
        store.current("api").unwrap(),
        Some(VersionId(1)),
        "kept live"
    );
    let audit = steps(&state_dir);
    assert_eq!(
        audit[audit.len() - 2..],
        ["deployed:error@v0001", "rollback:error"],
        "{audit:?}"
    );

    // A valid, matching certificate; still not left alone until its window.
    let waiting = renewer
        .renew("api", RenewOptions::default(), start + Duration::minutes(1))
        .await
        .unwrap();
    let RenewOutcome::NotDue { renew_at, .. } = waiting else {
        panic!("held by the backoff: {waiting:?}");
    };
    assert!(renew_at <= start + Duration::minutes(6), "{renew_at}");

    let retried = renewer
        .renew("api", RenewOptions::default(), start + Duration::minutes(6))
        .await
        .unwrap();
    assert!(
        matches!(
            retried,
            RenewOutcome::Renewed {
                version: VersionId(1),
                ..
            }
        ),
        "the same version, not a new order: {retried:?}"
    );
    assert!(
        store.metadata("api", VersionId(2)).is_err(),
        "nothing ordered"
    );
    let settled = renewer
        .renew(
            "api",
            RenewOptions::default(),
            start + Duration::minutes(30),
        )
        .await
        .unwrap();
    assert!(
        matches!(settled, RenewOutcome::NotDue { .. }),
        "a rolled-out version waits for its window: {settled:?}"
    );
}

#[tokio::test]
async fn a_failed_deploy_rolls_back_and_deploys_the_restored_version_again() {
    let issued = DeployRefusingV0002::issued().await;

    let restored = issued.renew_to_v0002().await;
    assert_eq!(restored, Some(VersionId(1)));
    assert_eq!(
        deployed_versions(&issued.log),
        ["v0001", "v0002", "v0001"],
        "the restored version is deployed again"
    );
    let audit = steps(&issued.state_dir);
    assert_eq!(
        audit[audit.len() - 3..],
        [
            "deployed:error@v0002",
            "rollback:ok@v0001",
            "deployed:ok@v0001"
        ],
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_failed_deploy_never_restores_a_previous_version_whose_files_are_broken() {
    let issued = DeployRefusingV0002::issued().await;
    // The old version's chain no longer matches its fullchain: restoring it would serve junk.
    let chain = issued.state_dir.join("certs/api/v0001/chain.pem");
    std::fs::write(chain, "junk\n").unwrap();

    let restored = issued.renew_to_v0002().await;
    assert_eq!(restored, None, "not rolled back");
    let store = CertStore::open(&issued.state_dir).unwrap();
    assert_eq!(store.current("api").unwrap(), Some(VersionId(2)));
    assert_eq!(
        deployed_versions(&issued.log),
        ["v0001", "v0002"],
        "the broken version is not deployed again"
    );
    let text = std::fs::read_to_string(issued.state_dir.join("audit.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"], "rollback");
    let why = last["error"].as_str().unwrap();
    assert!(
        why.contains("not rolled back: previous version v0001 does not check out"),
        "{why}"
    );
}
