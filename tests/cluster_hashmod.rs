//! `config/prometheus/prometheus-cluster.yml` in a real Prometheus: its `hashmod`
//! relabelling sends each `/probe` target to exactly one of two `certinel run` replicas.
//!
//! Each replica resolves the targets' names through its own hosts file to its own loopback
//! address (replica 0 to 127.0.0.2, replica 1 to 127.0.0.3), and one TLS server listening on
//! both records which address each handshake for each name arrived at: so the server counts
//! every target's probes per replica, whatever Prometheus says it scraped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::eventually::eventually;
use crate::common::pki::{Leaf, LeafSpec, Validity};
use crate::common::prometheus::{Prometheus, config_dir};
use crate::common::service::Service;
use crate::common::tls_server::{ServerHandle, ServerOptions, accept_tls, bind_pair, serve};

/// The two replica addresses `prometheus-cluster.yml` names, replaced by the test's.
const EXAMPLE_REPLICAS: [&str; 2] = ["10.0.0.11:9798", "10.0.0.12:9798"];

/// The example's `/probe` targets, replaced by the test's.
const EXAMPLE_TARGETS: &str = "          - \"a.example.net:443\"\n          - \"b.example.net:443\"\n          - \"c.example.net:443\"\n";

/// How many targets Prometheus probes; with 20, both replicas get some but for a 2^-19
/// chance, and a split that went wrong shows on many of them.
const TARGETS: usize = 20;

/// Each target must be probed this many times before the counts are judged.
const ROUNDS: usize = 3;

/// Where each replica's hosts file sends the targets' names.
const REPLICA_ADDRESSES: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];

/// Handshakes seen by the fixture server: (address it arrived at, SNI name).
type Seen = Arc<Mutex<Vec<(IpAddr, String)>>>;

/// A TLS server on both replica addresses (one port) presenting a `*.shard.test` leaf and
/// recording each handshake.
async fn recording_server(leaf: &Leaf, seen: &Seen) -> (ServerHandle, ServerHandle, u16) {
    let acceptor = ServerOptions::new(vec![leaf.cert.clone()], leaf.key.clone_key()).acceptor();
    let (first, second) = bind_pair(
        IpAddr::V4(REPLICA_ADDRESSES[0]),
        IpAddr::V4(REPLICA_ADDRESSES[1]),
    )
    .await;
    let port = first.local_addr().expect("bound address").port();
    let handles = [first, second].map(|listener| {
        let acceptor = acceptor.clone();
        let seen = seen.clone();
        serve(listener, move |stream| {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            async move {
                let Ok(local) = stream.local_addr() else {
                    return;
                };
                if let Ok(mut tls) = accept_tls(&acceptor, stream).await {
                    let name = tls.get_ref().1.server_name().unwrap_or_default().to_owned();
                    seen.lock().expect("seen lock").push((local.ip(), name));
                    let _ = tokio::io::copy(&mut tls, &mut tokio::io::sink()).await;
                }
            }
        })
    });
    let [first, second] = handles;
    (first, second, port)
}

/// A replica whose hosts file maps every target name to `address`.
async fn replica(dir: &Path, index: usize, names: &[String]) -> Service {
    let hosts: String = names
        .iter()
        .map(|name| format!("{} {name}\n", REPLICA_ADDRESSES[index]))
        .collect();
    let hosts_file = dir.join(format!("hosts-{index}"));
    std::fs::write(&hosts_file, hosts).expect("write hosts file");
    let config = format!(
        "[scanner]\nhosts_file = {hosts:?}\ncrl = false\n\n[exporter]\n\
         probe_allow = [\"127.0.0.0/8\", \"*.shard.test\"]\n",
        hosts = hosts_file.display().to_string(),
    );
    let path = dir.join(format!("certinel-{index}.toml"));
    std::fs::write(&path, config).expect("write certinel.toml");
    Service::start(Some(&path)).await
}

/// The shipped `prometheus-cluster.yml`, pointed at the test's replicas and targets and
/// scraping every second.
fn prometheus_config(replicas: [SocketAddr; 2], targets: &[String]) -> String {
    let shipped = std::fs::read_to_string(config_dir().join("prometheus-cluster.yml"))
        .expect("read prometheus-cluster.yml");
    assert!(shipped.contains(EXAMPLE_TARGETS), "{shipped}");
    let listed: String = targets
        .iter()
        .map(|target| format!("          - \"{target}\"\n"))
        .collect();
    let mut config = shipped
        .replace(EXAMPLE_TARGETS, &listed)
        .replace("scrape_interval: 1m", "scrape_interval: 1s");
    for (example, replica) in EXAMPLE_REPLICAS.iter().zip(replicas) {
        assert!(config.contains(example), "{example} not in the example");
        config = config.replace(example, &replica.to_string());
    }
    config
}

#[tokio::test]
async fn hashmod_sends_each_probe_target_to_exactly_one_of_two_replicas() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let leaf = Leaf::self_signed(&LeafSpec::new(&["*.shard.test"]).validity(Validity::current()));
    let seen: Seen = Arc::default();
    let (_first, _second, port) = recording_server(&leaf, &seen).await;
    let names: Vec<String> = (0..TARGETS).map(|n| format!("t{n}.shard.test")).collect();
    let targets: Vec<String> = names.iter().map(|name| format!("{name}:{port}")).collect();
    let replicas = [
        replica(dir.path(), 0, &names).await,
        replica(dir.path(), 1, &names).await,
    ];

    let prometheus_dir = dir.path().join("prometheus");
    std::fs::create_dir(&prometheus_dir).expect("create prometheus dir");
    for rules in ["alerts.yml", "alerts-renewal.yml", "alerts-cluster.yml"] {
        std::fs::copy(config_dir().join(rules), prometheus_dir.join(rules)).expect("copy rules");
    }
    let config = prometheus_config([replicas[0].addr, replicas[1].addr], &targets);
    let prometheus = Prometheus::start(&prometheus_dir, &config).await;

    let counts = eventually(Duration::from_secs(60), async || {
        let mut counts: BTreeMap<String, BTreeMap<IpAddr, usize>> = BTreeMap::new();
        for (address, name) in seen.lock().expect("seen lock").iter() {
            *counts
                .entry(name.clone())
                .or_default()
                .entry(*address)
                .or_default() += 1;
        }
        let rounds_done = names.iter().all(|name| {
            counts
                .get(name)
                .is_some_and(|by_replica| by_replica.values().sum::<usize>() >= ROUNDS)
        });
        if rounds_done {
            Ok(counts)
        } else {
            Err(format!(
                "not every target probed {ROUNDS} times yet: {counts:?}\n{}",
                prometheus.log_tail()
            ))
        }
    })
    .await;

    let mut used = BTreeSet::new();
    for (name, by_replica) in &counts {
        assert_eq!(
            by_replica.len(),
            1,
            "{name} was probed by more than one replica: {by_replica:?}"
        );
        used.extend(by_replica.keys().copied());
    }
    assert_eq!(used.len(), 2, "both replicas probe a share: {counts:?}");

    // And the replica that probed each target is the one Prometheus scrapes it through.
    let active = prometheus.api("/api/v1/targets?state=active").await;
    let scraped_through: BTreeMap<String, String> = active["activeTargets"]
        .as_array()
        .expect("activeTargets")
        .iter()
        .filter(|target| target["labels"]["job"] == "certinel-probe")
        .map(|target| {
            let instance = target["labels"]["instance"].as_str().expect("instance");
            let url = target["scrapeUrl"].as_str().expect("scrapeUrl");
            (instance.to_owned(), url.to_owned())
        })
        .collect();
    assert_eq!(scraped_through.len(), TARGETS, "{active}");
    for (index, replica) in replicas.iter().enumerate() {
        let address = IpAddr::V4(REPLICA_ADDRESSES[index]);
        for (target, url) in &scraped_through {
            let name = target.split(':').next().unwrap_or_default();
            let through_this = url.contains(&format!("//{}/", replica.addr));
            let probed_here = counts[name].contains_key(&address);
            assert_eq!(
                through_this, probed_here,
                "{target}: scraped through {url}, probed at {:?}",
                counts[name]
            );
        }
    }
}
