//! Sharded scanning across three `certinel run` replicas with `[cluster]` over a real
//! three-member etcd: 300 scheduled endpoints, each in exactly one replica's `/metrics`;
//! when a replica is killed, its endpoints re-appear on the other two within a lease TTL
//! (plus the first-run spread and a probe); losing the etcd quorum shows as
//! `certinel_cluster_connected 0` while the replica keeps its share, and recovers.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use crate::common::etcd::EtcdCluster;
use crate::common::eventually::eventually;
use crate::common::pki::{Leaf, LeafSpec, Validity};
use crate::common::service::{Service, get, sample};
use crate::common::tls_server::{ServerOptions, bind, spawn_tls};

/// How many `[[endpoint]]`s the replicas share.
const ENDPOINTS: usize = 300;

/// The replicas' `lease_ttl`: the shortest `[cluster]` accepts.
const LEASE_TTL: Duration = Duration::from_secs(2);

/// After the lease of a dead replica expires, the others re-shard at once (the watch on
/// `P/members/`), spread the new jobs' first runs over a second and probe on loopback.
const TAKEOVER_MARGIN: Duration = Duration::from_secs(3);

/// The endpoint names; the replicas' hosts file sends them all to 127.0.0.1.
fn names() -> Vec<String> {
    (0..ENDPOINTS).map(|n| format!("e{n}.shard.test")).collect()
}

/// Writes replica `index`'s configuration into `dir` and starts it.
async fn replica(dir: &Path, index: usize, etcd: &EtcdCluster, port: u16) -> Service {
    let state_dir = dir.join(format!("state-{index}"));
    let kek = dir.join("kek");
    if !kek.exists() {
        certinel::store::sealed::Kek::generate_file(&kek).expect("write the KEK file");
    }
    let hosts = dir.join("hosts");
    if !hosts.exists() {
        let lines: String = names()
            .iter()
            .map(|name| format!("127.0.0.1 {name}\n"))
            .collect();
        std::fs::write(&hosts, lines).expect("write hosts file");
    }
    let endpoints: String = names()
        .iter()
        .map(|name| format!("\n[[endpoint]]\ntarget = \"{name}:{port}\"\ninterval = \"1m\"\n"))
        .collect();
    let config = format!(
        "state_dir = {state:?}\n\n[scanner]\nhosts_file = {hosts:?}\ncrl = false\n\n\
         [cluster]\netcd = {etcd:?}\nmember = \"replica-{index}\"\nlease_ttl = \"{ttl}s\"\n\
         key_encryption_key_file = {kek:?}\n{endpoints}",
        state = state_dir.display().to_string(),
        hosts = hosts.display().to_string(),
        etcd = etcd.endpoints(),
        ttl = LEASE_TTL.as_secs(),
        kek = kek.display().to_string(),
    );
    let path = dir.join(format!("certinel-{index}.toml"));
    std::fs::write(&path, config).expect("write certinel.toml");
    Service::start(Some(&path)).await
}

/// The endpoint names each replica's `/metrics` shows (`certinel_endpoint_up` series).
async fn shown(replicas: &[&Service]) -> Vec<Vec<String>> {
    let mut shown = Vec::new();
    for replica in replicas {
        let body = get(replica.addr, "/metrics", &[]).await.body;
        let mut names: Vec<String> = body
            .lines()
            .filter(|line| line.starts_with("certinel_endpoint_up{"))
            .filter_map(|line| {
                let target = line.split("target=\"").nth(1)?;
                Some(target.split(':').next()?.to_owned())
            })
            .collect();
        names.sort();
        names.dedup();
        shown.push(names);
    }
    shown
}

/// `Ok` when every endpoint is in exactly one of `shown`; else what is missing or doubled.
fn each_exactly_once(shown: &[Vec<String>]) -> Result<(), String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for names in shown {
        for name in names {
            *seen.entry(name).or_default() += 1;
        }
    }
    let doubled: Vec<&&str> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    let first_doubled = &doubled[..doubled.len().min(5)];
    let missing = ENDPOINTS - seen.len();
    let sizes: Vec<usize> = shown.iter().map(Vec::len).collect();
    if doubled.is_empty() && missing == 0 {
        Ok(())
    } else {
        Err(format!(
            "{missing} endpoints in no /metrics, {} in several (first: {first_doubled:?}); \
             shares {sizes:?}",
            doubled.len()
        ))
    }
}

#[tokio::test]
async fn three_hundred_endpoints_are_each_scanned_by_one_replica_and_a_dead_ones_move() {
    let etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().expect("temporary directory");
    let leaf = Leaf::self_signed(&LeafSpec::new(&["*.shard.test"]).validity(Validity::current()));
    let server = spawn_tls(
        bind(IpAddr::V4(Ipv4Addr::LOCALHOST)).await,
        ServerOptions::new(vec![leaf.cert.clone()], leaf.key.clone_key()).acceptor(),
    );
    let port = server.addr.port();
    let first = replica(dir.path(), 0, &etcd, port).await;
    let second = replica(dir.path(), 1, &etcd, port).await;
    let third = replica(dir.path(), 2, &etcd, port).await;

    eventually(Duration::from_secs(30), async || {
        each_exactly_once(&shown(&[&first, &second, &third]).await)
    })
    .await;
    let mut owned = 0.0;
    for replica in [&first, &second, &third] {
        let body = get(replica.addr, "/metrics", &[]).await.body;
        assert_eq!(sample(&body, "certinel_cluster_connected"), Some(1.0));
        for member in ["replica-0", "replica-1", "replica-2"] {
            let series = format!("certinel_cluster_member_up{{member=\"{member}\"}}");
            assert_eq!(sample(&body, &series), Some(1.0), "{series}");
        }
        let share = sample(&body, "certinel_cluster_endpoints_owned").expect("owned");
        assert!((60.0..=140.0).contains(&share), "a share of {share}");
        owned += share;
    }
    assert_eq!(owned, ENDPOINTS as f64);

    // SIGKILL: no leave, the lease has to expire.
    drop(third);
    let killed = tokio::time::Instant::now();
    eventually(LEASE_TTL + TAKEOVER_MARGIN, async || {
        each_exactly_once(&shown(&[&first, &second]).await)
    })
    .await;
    tracing::info!(elapsed = ?killed.elapsed(), "the dead replica's endpoints moved");
    for replica in [&first, &second] {
        let body = get(replica.addr, "/metrics", &[]).await.body;
        assert_eq!(
            sample(&body, "certinel_cluster_member_up{member=\"replica-2\"}"),
            None,
            "the dead replica is no longer listed"
        );
    }
}

#[tokio::test]
async fn losing_the_etcd_quorum_shows_as_disconnected_keeps_the_share_and_recovers() {
    let mut etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().expect("temporary directory");
    let leaf = Leaf::self_signed(&LeafSpec::new(&["*.shard.test"]).validity(Validity::current()));
    let server = spawn_tls(
        bind(IpAddr::V4(Ipv4Addr::LOCALHOST)).await,
        ServerOptions::new(vec![leaf.cert.clone()], leaf.key.clone_key()).acceptor(),
    );
    let alone = replica(dir.path(), 0, &etcd, server.addr.port()).await;
    let connected = |body: &str| sample(body, "certinel_cluster_connected");
    let scanned = |body: &str| {
        body.lines()
            .filter(|line| line.starts_with("certinel_endpoint_up{"))
            .count()
    };
    alone
        .metrics_until("connected, all endpoints scanned", |body| {
            connected(body) == Some(1.0)
                && sample(body, "certinel_cluster_endpoints_owned") == Some(ENDPOINTS as f64)
                && scanned(body) == ENDPOINTS
        })
        .await;

    etcd.kill(1);
    etcd.kill(2);
    let body = alone
        .metrics_until("disconnected", |body| connected(body) == Some(0.0))
        .await;
    assert_eq!(scanned(&body), ENDPOINTS, "the last share is kept");
    assert_eq!(
        sample(&body, "certinel_cluster_member_up{member=\"replica-0\"}"),
        Some(1.0)
    );

    let _etcd = etcd.restarted(&[1, 2]).await;
    alone
        .metrics_until("connected again", |body| connected(body) == Some(1.0))
        .await;
}
