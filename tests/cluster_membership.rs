//! `cluster::membership` against a real three-member etcd: replicas see each other, a
//! leaving or dead replica drops out of the others' lists within a lease TTL, and losing
//! etcd's quorum turns `connected` false until it returns, when the replica is listed again.
//! Each replica's certificate list reaches the others' rosters and follows its changes.

use std::collections::BTreeSet;
use std::time::Duration;

use certinel::cluster::membership::{self, Membership, MembershipSettings};
use tokio_util::sync::CancellationToken;

use crate::common::etcd::EtcdCluster;
use crate::common::eventually::eventually;

/// Short, so a dead member's lease expires quickly; etcd's floor with the fixture's
/// 500 ms election timeout is under a second.
const LEASE_TTL: Duration = Duration::from_secs(2);

/// How long a view may take to follow a change that needs nothing to expire.
const PROMPTLY: Duration = Duration::from_secs(5);

struct Replica {
    view: Membership,
    /// The certificates the replica carries (empty unless a test sets them).
    carried: tokio::sync::watch::Sender<BTreeSet<String>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn replica(cluster: &EtcdCluster, name: &str) -> Replica {
    replica_with_ttl(cluster, name, LEASE_TTL).await
}

async fn replica_with_ttl(cluster: &EtcdCluster, name: &str, lease_ttl: Duration) -> Replica {
    let client = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .expect("connect to etcd");
    let settings = MembershipSettings {
        prefix: "/certinel-test/".to_owned(),
        member: name.to_owned(),
        lease_ttl,
    };
    let shutdown = CancellationToken::new();
    let (carried, carried_view) = tokio::sync::watch::channel(BTreeSet::new());
    let (view, task) = membership::join(client, settings, carried_view, shutdown.clone());
    Replica {
        view,
        carried,
        shutdown,
        task: tokio::spawn(task),
    }
}

async fn wait_for_members(replica: &Replica, expected: &[&str], within: Duration) {
    let members = replica.view.members.clone();
    eventually(within, async || {
        let seen = members.borrow().clone();
        if seen == expected {
            Ok(())
        } else {
            Err(format!("{seen:?}, expected {expected:?}"))
        }
    })
    .await;
}

async fn wait_for_connected(replica: &Replica, expected: bool, within: Duration) {
    let connected = replica.view.connected.clone();
    eventually(within, async || {
        let seen = *connected.borrow();
        if seen == expected {
            Ok(())
        } else {
            Err(format!("connected = {seen}"))
        }
    })
    .await;
}

#[tokio::test]
async fn three_replicas_see_each_other_and_a_leaving_one_drops_out_at_once() {
    let cluster = EtcdCluster::start(3);
    let a = replica(&cluster, "a").await;
    let b = replica(&cluster, "b").await;
    let c = replica(&cluster, "c").await;
    for replica in [&a, &b, &c] {
        wait_for_members(replica, &["a", "b", "c"], PROMPTLY).await;
        assert!(*replica.view.connected.borrow());
    }
    // Leaving revokes the lease: the watch tells the others well before the TTL.
    c.shutdown.cancel();
    c.task.await.expect("membership task");
    for replica in [&a, &b] {
        wait_for_members(replica, &["a", "b"], LEASE_TTL).await;
    }
}

#[tokio::test]
async fn a_replica_that_stops_renewing_drops_out_within_its_lease_ttl() {
    let cluster = EtcdCluster::start(3);
    let a = replica(&cluster, "a").await;
    let b = replica(&cluster, "b").await;
    wait_for_members(&a, &["a", "b"], PROMPTLY).await;
    wait_for_members(&b, &["a", "b"], PROMPTLY).await;
    // Aborted, the task neither renews nor revokes: a crash, as far as etcd can tell.
    b.task.abort();
    let _ = b.task.await;
    let died = tokio::time::Instant::now();
    // The last renewal was at most a heartbeat before the abort; etcd checks expiry
    // about every half second, so allow that on top of the TTL.
    wait_for_members(&a, &["a"], LEASE_TTL + Duration::from_secs(1)).await;
    assert!(died.elapsed() <= LEASE_TTL + Duration::from_secs(1));
}

#[tokio::test]
async fn losing_the_etcd_quorum_disconnects_and_its_return_lists_the_replica_again() {
    let mut cluster = EtcdCluster::start(3);
    // Longer than the others: a heartbeat (a third of it) must outlast the election that
    // follows killing the leader, as the default 15 s does by far.
    let lease_ttl = Duration::from_secs(6);
    let a = replica_with_ttl(&cluster, "a", lease_ttl).await;
    let watcher = replica_with_ttl(&cluster, "watcher", lease_ttl).await;
    wait_for_members(&a, &["a", "watcher"], PROMPTLY).await;
    wait_for_connected(&a, true, PROMPTLY).await;

    // One member down (perhaps the leader): quorum holds, nothing changes, not even for a
    // moment.
    let mut connected = a.view.connected.clone();
    connected.mark_unchanged();
    cluster.kill(2);
    tokio::time::sleep(lease_ttl).await;
    assert!(
        !connected.has_changed().expect("membership running") && *connected.borrow(),
        "one etcd member down of three"
    );
    wait_for_members(&a, &["a", "watcher"], PROMPTLY).await;

    // Two down: no quorum, no lease renewal, no linearizable read.
    cluster.kill(1);
    wait_for_connected(&a, false, lease_ttl).await;
    assert_eq!(
        *a.view.members.borrow(),
        ["a", "watcher"],
        "the last list is kept while disconnected"
    );

    let cluster = cluster.restarted(&[1, 2]).await;
    wait_for_connected(&a, true, Duration::from_secs(15)).await;
    wait_for_members(&a, &["a", "watcher"], PROMPTLY).await;
    wait_for_members(&watcher, &["a", "watcher"], PROMPTLY).await;
    let mut client = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .expect("connect to etcd");
    let listed = client
        .get("/certinel-test/members/a", None)
        .await
        .expect("read a's key");
    assert_eq!(listed.kvs().len(), 1, "a's key is in etcd again");
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

/// Waits until `replica`'s roster lists `expected` as the carriers of `certificate`.
async fn wait_for_carriers(replica: &Replica, certificate: &str, expected: &[&str]) {
    let roster = replica.view.roster.clone();
    eventually(PROMPTLY, async || {
        let seen = roster.borrow().carriers(certificate);
        if seen == expected {
            Ok(())
        } else {
            Err(format!(
                "carriers of {certificate}: {seen:?}, expected {expected:?}"
            ))
        }
    })
    .await;
}

#[tokio::test]
async fn each_replicas_certificates_reach_the_others_and_follow_a_reload() {
    let cluster = EtcdCluster::start(1);
    let a = replica(&cluster, "a").await;
    a.carried.send_replace(names(&["shop", "www"]));
    let b = replica(&cluster, "b").await;
    b.carried.send_replace(names(&["api"]));
    for replica in [&a, &b] {
        wait_for_carriers(replica, "www", &["a"]).await;
        wait_for_carriers(replica, "api", &["b"]).await;
    }
    // b's reload adds `www`: a sees it without either replica restarting.
    b.carried.send_replace(names(&["api", "www"]));
    wait_for_carriers(&a, "www", &["a", "b"]).await;
    // A member whose key holds a plain value (a replica of an older certinel) carries
    // every certificate.
    let mut client = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .expect("connect to etcd");
    let lease = client.lease_grant(30, None).await.expect("lease").id();
    let options = etcd_client::PutOptions::new().with_lease(lease);
    client
        .put("/certinel-test/members/old", "old", Some(options))
        .await
        .expect("put an older replica's key");
    wait_for_carriers(&a, "api", &["b", "old"]).await;
}

/// Whether `member`'s key is in etcd now.
fn listed_in_etcd(cluster: &EtcdCluster, member: &str) -> bool {
    let key = format!("/certinel-test/members/{member}");
    let output = cluster.etcdctl(&["get", &key, "--keys-only"]);
    String::from_utf8_lossy(&output.stdout).contains(&key)
}

/// The service's async workers can be busy for seconds (a blocking store call, a burst
/// of rollouts at start); the membership lease must not depend on them. Here the test's
/// runtime, its only thread, is blocked for three lease TTLs while the membership runs on
/// its own thread (`join_on_own_thread`, as the service does).
#[tokio::test]
async fn a_replica_whose_async_workers_are_blocked_stays_a_member() {
    let cluster = EtcdCluster::start(1);
    let endpoints = cluster.endpoints();
    let settings = MembershipSettings {
        prefix: "/certinel-test/".to_owned(),
        member: "busy".to_owned(),
        lease_ttl: LEASE_TTL,
    };
    let shutdown = CancellationToken::new();
    let (_carried, carried_view) = tokio::sync::watch::channel(BTreeSet::new());
    let connect = move || async move {
        let client = etcd_client::Client::connect(endpoints, None).await;
        Ok(client.expect("connect to etcd"))
    };
    let (view, left) =
        certinel::cluster::join_on_own_thread(connect, settings, carried_view, shutdown.clone())
            .await
            .expect("joined");
    let mut connected = view.connected.clone();
    tokio::time::timeout(PROMPTLY, connected.wait_for(|c| *c))
        .await
        .expect("joined")
        .unwrap();
    assert!(listed_in_etcd(&cluster, "busy"));
    std::thread::sleep(LEASE_TTL * 3);
    assert!(
        listed_in_etcd(&cluster, "busy"),
        "the lease expired while the runtime was blocked"
    );
    shutdown.cancel();
    left.await;
    assert!(!listed_in_etcd(&cluster, "busy"), "it left when it stopped");
}
