//! Renewals through the etcd store against a real Pebble: a full issuance leaves no private
//! key or account credential in plaintext in etcd, and a replica whose lock was taken over
//! in the middle of a renewal is fenced: its next write fails, it stops, the audit says
//! `fenced`, the new holder's state is intact, and it finishes the renewal without a
//! second order.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use certinel::renew::{RenewError, RenewOptions, RenewOutcome, Renewer};
use certinel::store::{EtcdStore, Stage, Step, Store, StoreError};
use time::OffsetDateTime;

use crate::common::config_text::{http01_certificate, pebble_acme_table, write_config_file};
use crate::common::etcd::pebble_and_etcd;
use crate::common::eventually::eventually_blocking;
use crate::common::pebble::Pebble;
use crate::store_etcd::{etcd_store, everything_in_etcd, revoke_lock_lease};

/// A renewer for certificate `api` (deploy command `hook`) keeping its state in `store`.
fn renewer(dir: &Path, pebble: &Pebble, hook: &str, store: &EtcdStore) -> Renewer {
    let extra = format!("deploy = [{hook:?}]\ndeploy_timeout = \"30s\"\n");
    let text = pebble_acme_table(&dir.join("state"), pebble)
        + &http01_certificate("api", pebble.http_addr(), &extra);
    let config =
        certinel::config::load(&write_config_file(dir, &text)).unwrap_or_else(|e| panic!("{e}"));
    Renewer::new(&config).with_store(Arc::new(store.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_issuance_leaves_no_private_key_or_account_credential_in_plaintext() {
    let (pebble, cluster, dir) = pebble_and_etcd(1).await;
    let store = etcd_store(
        &cluster,
        &dir.path().join("state"),
        "m1",
        Duration::from_secs(5),
    );
    let renewer = renewer(dir.path(), &pebble, "true", &store);
    renewer
        .renew("api", RenewOptions::default(), OffsetDateTime::now_utc())
        .await
        .expect("issued through the etcd store");

    let served = store.current_files("api").unwrap();
    assert!(
        served
            .fullchain
            .starts_with(dir.path().join("state/certs/api/current"))
    );
    let key_pem = std::fs::read_to_string(&served.key).unwrap();
    let key_body = key_pem.lines().nth(1).unwrap().to_owned();
    let account = store
        .accounts()
        .account(&pebble.directory_url)
        .unwrap()
        .expect("the account is stored in etcd");
    let credentials: serde_json::Value = serde_json::from_slice(&account.bytes).unwrap();
    let account_key = credentials
        .pointer("/credentials/key_pkcs8")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("no account key in {credentials}"))
        .to_owned();
    assert!(account_key.len() > 20, "{credentials}");

    let values = tokio::task::spawn_blocking(move || everything_in_etcd(&cluster))
        .await
        .unwrap();
    assert!(
        values
            .iter()
            .any(|(key, _)| key == "/certinel/certs/api/v/v0001")
    );
    for (key, value) in &values {
        let text = String::from_utf8_lossy(value);
        assert!(!text.contains("PRIVATE KEY"), "{key} holds a private key");
        assert!(
            !text.contains(&key_body),
            "{key} holds the certificate's key"
        );
        assert!(!text.contains(&account_key), "{key} holds the account key");
        assert!(
            !text.contains("key_pkcs8"),
            "{key} holds account credentials"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_whose_lock_was_taken_over_is_fenced_and_the_new_holder_finishes_it() {
    let (pebble, cluster, dir) = pebble_and_etcd(3).await;
    let started = dir.path().join("deploy-started");
    let go = dir.path().join("go");
    rustix::fs::mkfifoat(rustix::fs::CWD, &go, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
    // The deploy command says it started, then waits until the test lets it finish.
    let hook = format!(
        "touch {started}; cat {go} > /dev/null",
        started = started.display(),
        go = go.display()
    );
    let a = etcd_store(
        &cluster,
        &dir.path().join("state"),
        "replica-a",
        Duration::from_secs(2),
    );
    let b_dir = tempfile::tempdir().unwrap();
    let b = etcd_store(&cluster, b_dir.path(), "replica-b", Duration::from_secs(2));
    let a_renewer = renewer(dir.path(), &pebble, &hook, &a);
    let renewal = tokio::spawn(async move {
        a_renewer
            .renew("api", RenewOptions::default(), OffsetDateTime::now_utc())
            .await
    });

    // A is paused inside its deploy command past its lease; B takes the lock over.
    let b_lock = tokio::task::spawn_blocking(move || {
        eventually_blocking(Duration::from_secs(60), || {
            started
                .exists()
                .then_some(())
                .ok_or("the deploy command has not started")
        });
        revoke_lock_lease(&cluster, "api");
        let b_lock = b
            .lock("api")
            .expect("B takes the lock once A's lease is gone");
        b.record_hook("api", None).unwrap();
        std::fs::write(&go, b"go").unwrap();
        (cluster, b, b_lock)
    })
    .await
    .unwrap();

    let outcome = renewal.await.unwrap();
    assert!(
        matches!(
            &outcome,
            Err(RenewError::Store {
                source: StoreError::Fenced { .. },
                ..
            })
        ),
        "{outcome:?}"
    );
    assert!(a.rejected_writes() >= 1, "etcd refused A's transaction");
    let (_cluster, b, _b_lock) = b_lock;
    let history = b.audit_history().unwrap();
    let fenced: Vec<_> = history
        .events
        .iter()
        .filter(|event| event.step == Step::Fenced)
        .collect();
    assert_eq!(fenced.len(), 1, "{:?}", history.events);
    let error = fenced[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("another replica holds the renewal of api now"),
        "{error}"
    );
    // B's view is what A left before it was fenced: the version live, not yet recorded
    // as deployed, for B to resume.
    let inflight = b
        .inflight("api")
        .unwrap()
        .expect("the renewal is still in flight");
    assert_eq!(inflight.stage, Stage::Pending);
    assert_eq!(b.current("api").unwrap(), inflight.version);

    // B resumes the renewal A left in flight: A's version is rolled out, no second order.
    drop(_b_lock);
    let b_renewer = renewer(b_dir.path(), &pebble, "true", &b);
    let resumed = b_renewer
        .renew("api", RenewOptions::default(), OffsetDateTime::now_utc())
        .await;
    assert!(
        matches!(&resumed, Ok(RenewOutcome::Renewed { version, .. }) if Some(*version) == inflight.version),
        "{resumed:?}"
    );
    assert_eq!(b.inflight("api").unwrap(), None);
    assert_eq!(b.versions("api").unwrap().len(), 1, "no second certificate");
    assert_eq!(b.rejected_writes(), 0);
}
