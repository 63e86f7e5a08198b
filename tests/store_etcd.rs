//! The etcd store against a real etcd: one behaviour function over `&dyn Store` run on the
//! filesystem store and on the etcd store, secrets never in plaintext in etcd, and fencing
//! shown on the wire (the stale holder's transaction fails).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use certinel::store::sealed::{Kek, Keyring};
use certinel::store::{
    Aside, EtcdSettings, EtcdStore, FsStore, LockError, SecretPem, Store, StoreError, VersionState,
};
use time::macros::datetime;

use crate::common::etcd::EtcdCluster;
use crate::store_behaviour::{ACCOUNT, CA_URL, behaves_like_a_store, issued, live, stage};

fn keyring() -> Arc<Keyring> {
    Arc::new(Keyring::new(Kek::from_bytes(&[7; 32]), Vec::new()))
}

/// After a rotation: a new current key, the test's usual one as the previous.
fn rotated_keyring() -> Arc<Keyring> {
    Arc::new(Keyring::new(
        Kek::from_bytes(&[8; 32]),
        vec![Kek::from_bytes(&[7; 32])],
    ))
}

/// An etcd store of member `member` on `cluster`, its files under `local`.
pub(crate) fn etcd_store(
    cluster: &EtcdCluster,
    local: &Path,
    member: &str,
    lease_ttl: Duration,
) -> EtcdStore {
    etcd_store_with(cluster, local, member, lease_ttl, keyring())
}

/// A one-member etcd cluster and the store of member `m1` on it (lease TTL 5 s), its files
/// in the temporary directory that comes with it.
pub(crate) fn store_on_one_member() -> (EtcdCluster, tempfile::TempDir, EtcdStore) {
    let cluster = EtcdCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let store = etcd_store(&cluster, dir.path(), "m1", Duration::from_secs(5));
    (cluster, dir, store)
}

/// [`etcd_store`] sealing with `keyring`.
pub(crate) fn etcd_store_with(
    cluster: &EtcdCluster,
    local: &Path,
    member: &str,
    lease_ttl: Duration,
    keyring: Arc<Keyring>,
) -> EtcdStore {
    let settings = EtcdSettings {
        prefix: "/certinel/".into(),
        member: member.into(),
        lease_ttl,
        local_dir: local.to_path_buf(),
        keyring,
    };
    EtcdStore::connect(settings, cluster.endpoints(), None).expect("connect to the test etcd")
}

#[test]
fn the_filesystem_store_passes_the_store_behaviour() {
    let dir = tempfile::tempdir().unwrap();
    behaves_like_a_store(&FsStore::new(dir.path()));
}

#[test]
fn the_etcd_store_passes_the_store_behaviour_and_materialises_the_same_layout() {
    let (_cluster, dir, store) = store_on_one_member();
    behaves_like_a_store(&store);
    let current = dir.path().join("certs/www/current");
    assert_eq!(std::fs::read_link(&current).unwrap(), Path::new("v0001"));
    for file in [
        "cert.pem",
        "chain.pem",
        "fullchain.pem",
        "key.pem",
        "meta.json",
    ] {
        assert!(current.join(file).is_file(), "{file}");
    }
    // Pruned versions (v0002 was materialised before) are gone locally too.
    assert!(!dir.path().join("certs/www/v0002").exists());
    assert!(dir.path().join("certs/www/v0001").is_dir());
    assert_eq!(store.rejected_writes(), 0);
}

/// Every key and value under the prefix, read with a client of the test's own.
pub(crate) fn everything_in_etcd(cluster: &EtcdCluster) -> Vec<(String, Vec<u8>)> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = etcd_client::Client::connect(cluster.endpoints(), None)
            .await
            .unwrap();
        let options = etcd_client::GetOptions::new().with_prefix();
        let response = client.get("/certinel/", Some(options)).await.unwrap();
        response
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().unwrap().to_owned(), kv.value().to_vec()))
            .collect()
    })
}

#[test]
fn no_private_key_or_account_credential_is_stored_in_plaintext_in_etcd() {
    let (cluster, _dir, store) = store_on_one_member();
    behaves_like_a_store(&store);
    // A renewal left with its saved key and a registered account.
    store.begin("kept", datetime!(2025-02-01 0:00 UTC)).unwrap();
    let (key, _) = issued(&["kept.example.com"]);
    store
        .record_key("kept", &SecretPem::new(key.clone()))
        .unwrap();
    store.accounts().save_account(CA_URL, ACCOUNT).unwrap();
    store
        .accounts()
        .save_account_aside(Aside::rollover(CA_URL), ACCOUNT)
        .unwrap();
    let key_body = key.lines().nth(1).unwrap().to_owned();

    let values = everything_in_etcd(&cluster);
    let keys: Vec<&str> = values.iter().map(|(key, _)| key.as_str()).collect();
    assert!(keys.contains(&"/certinel/certs/kept/inflight"), "{keys:?}");
    assert!(keys.contains(&"/certinel/certs/www/v/v0001"), "{keys:?}");
    assert!(
        keys.iter()
            .any(|key| key.starts_with("/certinel/accounts/account-")),
        "{keys:?}"
    );
    for (key, value) in &values {
        let text = String::from_utf8_lossy(value);
        assert!(
            !text.contains("PRIVATE KEY"),
            "{key} holds a private key in plaintext"
        );
        assert!(
            !text.contains(&key_body),
            "{key} holds the saved key's body"
        );
        assert!(
            !text.contains("ACCOUNT-KEY-MATERIAL"),
            "{key} holds account credentials"
        );
    }
}

/// The lease of the lock of `name`, revoked with a client of the test's own: what etcd does
/// when the holder is paused or cut off past its TTL.
pub(crate) fn revoke_lock_lease(cluster: &EtcdCluster, name: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = etcd_client::Client::connect(cluster.endpoints(), None)
            .await
            .unwrap();
        let lock = client
            .get(format!("/certinel/locks/{name}"), None)
            .await
            .unwrap();
        let lease = lock.kvs()[0].lease();
        client.lease_revoke(lease).await.unwrap();
    });
}

#[test]
fn a_holder_whose_lease_expired_is_fenced_on_the_wire_and_the_new_holders_state_is_intact() {
    let cluster = EtcdCluster::start(3);
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = etcd_store(&cluster, a_dir.path(), "replica-a", Duration::from_secs(2));
    let b = etcd_store(&cluster, b_dir.path(), "replica-b", Duration::from_secs(2));

    let a_lock = a.lock("web").unwrap();
    assert!(matches!(b.lock("web"), Err(LockError::Held)));
    a.begin("web", datetime!(2025-02-01 0:00 UTC)).unwrap();
    let v1 = stage(&a, "web");
    a.promote("web", v1).unwrap();

    // A is paused past its lease: etcd lets the lease go, B takes over.
    revoke_lock_lease(&cluster, "web");
    let b_lock = b.lock("web").unwrap();
    b.record_order("web", "https://127.0.0.1:14000/order/b")
        .unwrap();
    let v2 = stage(&b, "web");

    // A wakes up and writes: every write is a transaction etcd refuses.
    let rejected = a.record_order("web", "https://127.0.0.1:14000/order/a");
    let Err(StoreError::Fenced {
        name, held, found, ..
    }) = rejected
    else {
        panic!("A's write was not fenced: {rejected:?}");
    };
    assert_eq!(name, "web");
    assert!(found.is_some_and(|found| found > held), "{held} {found:?}");
    assert_eq!(
        a.rejected_writes(),
        1,
        "one transaction answered succeeded == false"
    );
    assert!(matches!(
        a.promote("web", v2),
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(a.finish("web"), Err(StoreError::Fenced { .. })));
    assert_eq!(a.rejected_writes(), 3);
    let message = a
        .set_state("web", v1, VersionState::Failed)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("another replica holds the renewal of web now"),
        "{message}"
    );

    // Without its lock A still cannot write while B holds it.
    drop(a_lock);
    assert!(matches!(
        a.save_schedule_record("web", b"{}"),
        Err(StoreError::Fenced { .. })
    ));

    // B's state is intact.
    let inflight = b.inflight("web").unwrap().unwrap();
    assert_eq!(
        inflight.order_url.as_deref(),
        Some("https://127.0.0.1:14000/order/b")
    );
    assert_eq!(live(&b, "web"), (Some(1), None));
    assert_eq!(b.metadata("web", v1).unwrap().state, VersionState::Active);
    assert_eq!(b.versions("web").unwrap().len(), 2);
    b.promote("web", v2).unwrap();
    assert_eq!(b.rejected_writes(), 0);
    drop(b_lock);
    // Released: A may take it again.
    drop(a.lock("web").unwrap());
}

#[test]
fn two_replicas_registering_at_once_keep_one_account() {
    let cluster = EtcdCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let a = etcd_store(&cluster, dir.path(), "a", Duration::from_secs(5)).accounts();
    let b = etcd_store(&cluster, dir.path(), "b", Duration::from_secs(5)).accounts();
    assert_eq!(a.account(CA_URL).unwrap(), None);
    assert_eq!(b.account(CA_URL).unwrap(), None);
    a.save_account(CA_URL, b"{\"id\":\"a\"}").unwrap();
    let lost = b.save_account(CA_URL, b"{\"id\":\"b\"}");
    assert!(matches!(lost, Err(StoreError::Conflict { .. })), "{lost:?}");
    assert_eq!(b.account(CA_URL).unwrap().unwrap().bytes, b"{\"id\":\"a\"}");
}

#[test]
fn an_unreachable_etcd_is_an_error_naming_etcd_not_a_hang() {
    let (mut cluster, _dir, store) = store_on_one_member();
    cluster.kill(0);
    let started = std::time::Instant::now();
    let error = store.current("www").unwrap_err();
    assert!(matches!(error, StoreError::Etcd { .. }), "{error}");
    assert!(error.to_string().starts_with("etcd: "), "{error}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_held_lock_outlives_its_lease_ttl_while_its_keep_alive_runs() {
    let cluster = EtcdCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let a = etcd_store(&cluster, dir.path(), "a", Duration::from_secs(1));
    let b = etcd_store(&cluster, dir.path(), "b", Duration::from_secs(1));
    let _held = a.lock("web").unwrap();
    // Real etcd leases expire in real time: three TTLs pass.
    std::thread::sleep(Duration::from_secs(3));
    assert!(matches!(b.lock("web"), Err(LockError::Held)));
    a.begin("web", datetime!(2025-02-01 0:00 UTC)).unwrap();
    assert_eq!(a.rejected_writes(), 0);
}

#[test]
fn after_a_key_encryption_key_rotation_a_rewritten_version_is_sealed_with_the_new_key() {
    let cluster = EtcdCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let local = |replica: &str| dir.path().join(replica);
    let ttl = Duration::from_secs(5);
    let old = etcd_store(&cluster, &local("old"), "old", ttl);
    let v1 = stage(&old, "www");
    let rotated = etcd_store_with(
        &cluster,
        &local("rotated"),
        "rotated",
        ttl,
        rotated_keyring(),
    );
    // The previous key still opens it; rewriting its state seals it with the new one.
    let before = std::fs::read(rotated.files("www", v1).unwrap().key).unwrap();
    rotated.promote("www", v1).unwrap();
    let new_only = Arc::new(Keyring::new(Kek::from_bytes(&[8; 32]), Vec::new()));
    let without_old = etcd_store_with(&cluster, &local("new-only"), "new-only", ttl, new_only);
    assert_eq!(
        std::fs::read(without_old.files("www", v1).unwrap().key).unwrap(),
        before
    );
    let stale = etcd_store(&cluster, &local("elsewhere"), "old-again", ttl);
    let refused = stale.files("www", v1).unwrap_err();
    assert!(
        refused.to_string().contains("key-encryption key"),
        "{refused}"
    );
}
