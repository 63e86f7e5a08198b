//! The one etcd watch per replica: the store's view follows another replica's lock,
//! renewal and promotion and survives an etcd restart; a `certinel run` replica with many
//! certificates sends etcd (almost) no reads at rest; `certinel_certificate_lock_held`
//! names the replica holding a renewal's lock while its deploy runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certinel::store::sealed::{Kek, Keyring};
use certinel::store::{LockHolder, NewVersion, Store, VersionId, Watched};
use time::macros::datetime;
use tokio::sync::watch::Receiver;

use crate::cluster_replicas::{Fleet, MEMBERS, PATIENCE};
use crate::common::etcd::EtcdCluster;
use crate::common::eventually::eventually;
use crate::common::ports::free_port;
use crate::common::service::{Service, get, sample};
use crate::store_behaviour::{issued, origin, stage};
use crate::store_etcd::{etcd_store, etcd_store_with};

/// Waits until `view` satisfies `condition` (the first look may be the current value).
async fn view_until(view: &mut Receiver<Watched>, condition: impl Fn(&Watched) -> bool) -> Watched {
    let wait = async {
        loop {
            let seen = *view.borrow_and_update();
            if condition(&seen) {
                return seen;
            }
            view.changed().await.expect("the store is alive");
        }
    };
    match tokio::time::timeout(Duration::from_secs(20), wait).await {
        Ok(seen) => seen,
        Err(_) => panic!("the view never got there; it says {:?}", *view.borrow()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stores_watch_follows_another_replicas_renewal_and_notifies_after_etcd_restarts() {
    let cluster = EtcdCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(10);
    let watcher = etcd_store(&cluster, &dir.path().join("r1"), "r1", ttl);
    let writer = etcd_store(&cluster, &dir.path().join("r2"), "r2", ttl);
    let mut view = watcher.watch("web").expect("the etcd store watches");
    let files = certinel::store::FsStore::new(&dir.path().join("fs"));
    assert!(
        files.watch("web").is_none(),
        "nobody else changes a state directory"
    );

    let lock = writer.lock("web").unwrap();
    view_until(&mut view, |seen| seen.lock == LockHolder::OtherMember).await;
    writer.begin("web", datetime!(2025-01-01 0:00 UTC)).unwrap();
    view_until(&mut view, |seen| seen.inflight).await;
    let staged = stage(&writer, "web");
    writer.promote("web", staged).unwrap();
    writer.finish("web").unwrap();
    drop(lock);
    let seen = view_until(&mut view, |seen| seen.lock == LockHolder::Free).await;
    assert_eq!(
        seen,
        Watched {
            current: Some(VersionId(1)),
            inflight: false,
            lock: LockHolder::Free,
        }
    );
    let own = watcher.lock("web").unwrap();
    view_until(&mut view, |seen| seen.lock == LockHolder::ThisMember).await;
    drop(own);
    view_until(&mut view, |seen| seen.lock == LockHolder::Free).await;

    // The watch is lost with etcd: read again, every certificate is told, and changes
    // made afterwards still arrive.
    let cluster = cluster.restarted(&[0]).await;
    tokio::time::timeout(Duration::from_secs(20), view.changed())
        .await
        .expect("notified after etcd came back")
        .unwrap();
    let _again = writer.lock("web").unwrap();
    view_until(&mut view, |seen| seen.lock == LockHolder::OtherMember).await;
    drop(cluster);
}

/// The value of `etcd_debugging_mvcc_range_total` at the etcd member at `endpoint`.
async fn etcd_ranges(endpoint: &str) -> f64 {
    let addr: SocketAddr = endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("a loopback endpoint");
    let reply = get(addr, "/metrics", &[]).await;
    sample(&reply.body, "etcd_debugging_mvcc_range_total").expect("etcd counts ranges")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_forty_certificates_sends_etcd_almost_no_reads_at_rest() {
    const CERTIFICATES: usize = 40;
    let cluster = EtcdCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("cluster.kek");
    Kek::generate_file(&kek).unwrap();
    // Every certificate has a current version valid for months (nothing is due) and
    // nobody listens on the directory's port: a fleet with nothing to do.
    seed(&cluster, dir.path(), &kek, CERTIFICATES);
    let mut text = format!(
        "state_dir = {state:?}\n[acme]\ndirectory = \"https://127.0.0.1:{closed}/dir\"\n\
         [cluster]\netcd = {etcd:?}\nmember = \"r1\"\nlease_ttl = \"5s\"\n\
         key_encryption_key_file = {kek:?}\n",
        state = dir.path().join("state"),
        closed = free_port(),
        etcd = cluster.endpoints(),
    );
    let http = free_port();
    for index in 0..CERTIFICATES {
        text += &format!(
            "[[certificate]]\nname = \"c{index:02}\"\ndns_names = [\"c{index:02}.certinel.test\"]\n\
             challenge = {{ type = \"http-01\", listen = \"127.0.0.1:{http}\" }}\n"
        );
    }
    let config = dir.path().join("certinel.toml");
    std::fs::write(&config, text).unwrap();
    let service = Service::start(Some(&config)).await;
    service
        .metrics_until("every certificate rolled out", |body| {
            (0..CERTIFICATES).all(|index| {
                let series = format!("certinel_certificate_local_version{{name=\"c{index:02}\"}}");
                sample(body, &series) == Some(1.0)
            })
        })
        .await;
    let endpoint = &cluster.endpoints()[0];
    let before = etcd_ranges(endpoint).await;
    // A rate needs a length of real time: three seconds, in which per-certificate polling
    // (two reads per certificate per second) would read 240 times.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reads = etcd_ranges(endpoint).await - before;
    assert!(
        reads < CERTIFICATES as f64,
        "{reads} etcd reads in 3 s at rest with {CERTIFICATES} certificates"
    );
    drop(service);
}

/// Issues `count` certificates `c00`, `c01`, ... into `cluster` as a renewal would (lock,
/// stage, promote), valid for 90 days, sealed under the key-encryption key in `kek`.
fn seed(cluster: &EtcdCluster, dir: &std::path::Path, kek: &std::path::Path, count: usize) {
    let keyring = Keyring::new(Kek::load(kek).unwrap(), Vec::new());
    let ttl = Duration::from_secs(10);
    let store = etcd_store_with(cluster, &dir.join("seed"), "seed", ttl, Arc::new(keyring));
    for index in 0..count {
        let name = format!("c{index:02}");
        let _lock = store.lock(&name).unwrap();
        let (key, chain) = issued(&[&format!("{name}.certinel.test")]);
        let new = NewVersion {
            key_pem: &key,
            chain_pem: &chain,
            origin: &origin(),
        };
        let staged = store.stage_pending(&name, new).unwrap();
        store.promote(&name, staged.version).unwrap();
    }
}

/// A deploy command that, when this replica holds the renewal lock (asked of etcd), marks
/// `MEMBER.blocked` and waits until the test creates `release`.
fn block_while_holding(fleet: &Fleet, member: &str) -> String {
    let dir = fleet.dir.path();
    format!(
        "if [ \"$(ETCDCTL_API=3 etcdctl --endpoints={endpoints} get --print-value-only /certinel/locks/api)\" = {member} ]; \
         then touch {blocked}; while [ ! -e {release} ]; do sleep 0.05; done; fi",
        endpoints = fleet.etcd.endpoints().join(","),
        blocked = dir.join(format!("{member}.blocked")).display(),
        release = dir.join("release").display(),
    )
}

/// Each replica's `certinel_certificate_lock_held{name="api"}`.
async fn lock_held(services: &[Service]) -> Vec<Option<f64>> {
    let mut held = Vec::new();
    for service in services {
        let body = service.get("/metrics").await.body;
        held.push(sample(
            &body,
            "certinel_certificate_lock_held{name=\"api\"}",
        ));
    }
    held
}

#[tokio::test]
async fn while_a_renewal_deploys_only_its_lock_holder_exports_lock_held_and_none_after() {
    let fleet = Fleet::start(None).await;
    let mut services = Vec::new();
    for member in MEMBERS {
        let hook = block_while_holding(&fleet, member);
        services.push(fleet.replica(member, &hook, "").await);
    }
    let holder = eventually(PATIENCE, async || {
        MEMBERS
            .iter()
            .position(|member| fleet.dir.path().join(format!("{member}.blocked")).exists())
            .ok_or("no replica blocks in its deploy yet")
    })
    .await;
    let mut expected = vec![Some(0.0); MEMBERS.len()];
    expected[holder] = Some(1.0);
    eventually(Duration::from_secs(10), async || {
        let held = lock_held(&services).await;
        if held == expected {
            return Ok(());
        }
        Err(format!("lock_held {held:?}, want {expected:?}"))
    })
    .await;
    std::fs::write(fleet.dir.path().join("release"), "").unwrap();
    eventually(PATIENCE, async || {
        let held = lock_held(&services).await;
        if held.iter().all(|value| *value == Some(0.0)) {
            return Ok(());
        }
        Err(format!("lock_held {held:?} after the renewal"))
    })
    .await;
    drop(services);
}

#[test]
fn two_processes_on_one_state_directory_materialise_the_same_new_version_at_once() {
    let cluster = EtcdCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(10);
    let writer = etcd_store(&cluster, &dir.path().join("writer"), "r2", ttl);
    // `certinel run` and a `certinel renew` beside it: two stores, one state directory.
    let local = dir.path().join("state");
    let readers = [
        etcd_store(&cluster, &local, "r1", ttl),
        etcd_store(&cluster, &local, "r1", ttl),
    ];
    for _ in 0..10 {
        let staged = stage(&writer, "web");
        writer.promote("web", staged).unwrap();
        let start = std::sync::Barrier::new(readers.len());
        std::thread::scope(|scope| {
            let racing: Vec<_> = readers
                .iter()
                .map(|reader| {
                    let start = &start;
                    scope.spawn(move || {
                        start.wait();
                        reader.current_files("web")
                    })
                })
                .collect();
            for race in racing {
                let files = race.join().unwrap().expect("both materialise it");
                assert!(files.cert.is_file());
            }
        });
    }
}
