//! Capacity: a name with thousands of addresses neither exhausts file descriptors nor
//! starves the configured endpoints, and `/probe` waits for capacity instead of shedding
//! requests it could serve.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use certinel::config::model::{AllowRule, ExporterSettings};
use certinel::metrics::http::{HttpShared, ProbeSetup};
use certinel::metrics::probe_handler::{self, ProbeLimiter};
use futures::StreamExt;

use super::*;
use crate::common::eventually::eventually;
use crate::common::service::NoState;

/// The name the hosts file gives thousands of addresses.
const MANY: &str = "many.test";

/// The `/probe` routes' shared state: `context`, and an allow-list of loopback and `names`.
fn shared(context: ProbeContext, names: &[&str]) -> Arc<HttpShared> {
    let mut probe_allow: Vec<AllowRule> = vec!["127.0.0.0/8".parse().expect("network")];
    probe_allow.extend(names.iter().map(|name| name.parse().expect("name rule")));
    let exporter = ExporterSettings {
        listen: "127.0.0.1:0".parse().expect("address"),
        probe_allow,
        modules: Default::default(),
        connections: Default::default(),
    };
    Arc::new(HttpShared {
        state: Arc::new(NoState),
        probe: std::sync::RwLock::new(ProbeSetup {
            exporter,
            context: Arc::new(context),
        }),
    })
}

/// `GET /probe?target=TARGET&hostname=SNI`, with Prometheus' scrape-timeout header when given.
async fn get_probe(
    shared: Arc<HttpShared>,
    limiter: ProbeLimiter,
    target: String,
    sni: Option<&str>,
    scrape_timeout: Option<&'static str>,
) -> StatusCode {
    let mut query = HashMap::from([("target".to_owned(), target)]);
    if let Some(sni) = sni {
        query.insert("hostname".to_owned(), sni.to_owned());
    }
    let mut headers = HeaderMap::new();
    if let Some(seconds) = scrape_timeout {
        headers.insert(
            probe_handler::SCRAPE_TIMEOUT_HEADER,
            HeaderValue::from_static(seconds),
        );
    }
    probe_handler::probe(Extension(limiter), State(shared), Query(query), headers)
        .await
        .status()
}

/// How many of this process's descriptors are TCP sockets connected to an address each
/// of `peers` accepts: the probes' own sockets, whatever else the test binary's other
/// tests open meanwhile. (Counting every descriptor of the process, as this test once
/// did, failed when concurrent tests held more; matching the port alone also counts
/// sockets to the same port number on other addresses, and failed once in 60 runs.)
fn probe_sockets<const N: usize>(peers: [&dyn Fn(SocketAddrV4) -> bool; N]) -> [usize; N] {
    let own: std::collections::HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    // The kernel writes the table in pieces while sockets come and go, so one socket may
    // be listed twice: count inodes, not lines.
    let mut sockets: [std::collections::HashSet<u64>; N] =
        std::array::from_fn(|_| Default::default());
    for line in table.lines().skip(1) {
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(remote), Some(inode)) =
            (fields.get(2).and_then(|f| table_address(f)), fields.get(9))
        else {
            continue;
        };
        let Some(inode) = inode.parse().ok().filter(|inode: &u64| own.contains(inode)) else {
            continue;
        };
        for (accepts, sockets) in peers.iter().zip(sockets.iter_mut()) {
            if accepts(remote) {
                sockets.insert(inode);
            }
        }
    }
    sockets.map(|sockets| sockets.len())
}

/// An address as `/proc/net/tcp` writes it: the address's four bytes in memory order as
/// one hexadecimal number, a colon, and the port in hexadecimal.
fn table_address(field: &str) -> Option<SocketAddrV4> {
    let (ip, port) = field.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddrV4::new(Ipv4Addr::from(ip.to_ne_bytes()), port))
}

/// 3,000 loopback addresses for [`MANY`] on one port, each with a listener that never
/// accepts: the kernel completes the TCP handshake and the TLS handshake then hangs until
/// the deadline, so every probed address holds its socket for the whole request.
fn many_silent_addresses(dir: &Path) -> (u16, Vec<std::net::TcpListener>, PathBuf) {
    let first = std::net::TcpListener::bind((Ipv4Addr::new(127, 0, 1, 1), 0)).expect("bind");
    let port = first.local_addr().expect("bound address").port();
    let mut listeners = vec![first];
    let mut hosts = String::new();
    for third in 1..=12u8 {
        for fourth in 1..=250u8 {
            let ip = Ipv4Addr::new(127, 0, third, fourth);
            // A port taken on one address only makes that address refuse connections.
            if let Ok(listener) = std::net::TcpListener::bind((ip, port)) {
                listeners.push(listener);
            }
            hosts.push_str(&format!("{ip} {MANY}\n"));
        }
    }
    let hosts_file = write_pem(dir, "hosts", &hosts);
    (port, listeners, hosts_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_addresses_stay_inside_the_budget_and_configured_endpoints_keep_working() {
    let pki = test_pki();
    let leaf = pki.leaf(Validity::current());
    let configured_server = serve(pki.chain_with(&leaf), leaf.key.clone_key()).await;
    let configured = endpoint_at(configured_server.addr, &pki.ca_file);
    let (port, _listeners, hosts_file) = many_silent_addresses(pki.dir.path());
    let budget = 64;
    let context = ProbeContext::new(
        Resolver::with_hosts_file(&hosts_file).expect("hosts file"),
        TrustCache::empty(),
        ConnectionBudget::new(budget),
    );
    let shared = shared(context, &[MANY]);
    let limiter = ProbeLimiter::new(probe_handler::PROBE_CONCURRENCY_LIMIT);

    // Sampled on a thread of its own, so the runtime's two workers stay the probes'.
    // Peaks of the sockets to the many addresses, and of all probe sockets.
    let peaks = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peaks, sampling) = (peaks.clone(), sampling.clone());
        let configured = configured_server.addr;
        std::thread::spawn(move || {
            let many = |peer: SocketAddrV4| {
                let [a, b, c, _] = peer.ip().octets();
                (a, b, peer.port()) == (127, 0, port) && (1..=12).contains(&c)
            };
            let configured = |peer: SocketAddrV4| SocketAddr::V4(peer) == configured;
            while sampling.load(Ordering::Relaxed) {
                let [many, configured] = probe_sockets([&many, &configured]);
                peaks[0].fetch_max(many, Ordering::Relaxed);
                peaks[1].fetch_max(many + configured, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..12 {
        requests.spawn(get_probe(
            shared.clone(),
            limiter.clone(),
            format!("{MANY}:{port}"),
            None,
            Some("2.5"),
        ));
    }
    // Once the requests hold their share of the budget (half of it) until their 2 s
    // deadline, the configured endpoint is probed through the same context, as the
    // scheduler does, and keeps succeeding.
    let started = tokio::time::Instant::now();
    let context = shared.probe_setup().context;
    eventually(Duration::from_secs(2), async || {
        match context.budget.in_use() {
            in_use if in_use >= budget / 2 => Ok(()),
            in_use => Err(format!(
                "the requests hold {in_use} of {budget} connections"
            )),
        }
    })
    .await;
    for _round in 0..10 {
        let report = probe_endpoint(&configured, &context).await;
        only_handshake(&report);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the configured probes waited for the /probe requests"
    );
    while let Some(status) = requests.join_next().await {
        let status = status.expect("request task");
        assert!(
            matches!(status, StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE),
            "{status}"
        );
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler thread");
    let [on_request, used] = [0, 1].map(|which| peaks[which].load(Ordering::Relaxed));
    assert!(on_request > 0, "the sampler saw no probe socket");
    assert!(
        on_request <= budget / 2,
        "/probe requests held {on_request} sockets, more than their half of {budget}"
    );
    assert!(
        used <= budget,
        "probes held {used} sockets with a budget of {budget}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_probes_at_concurrency_128_all_succeed() {
    let pki = test_pki();
    let leaf = pki.leaf(Validity::current());
    let server = serve(pki.chain_with(&leaf), leaf.key.clone_key()).await;
    let context = ProbeContext::new(
        Resolver::system(),
        TrustCache::empty(),
        ConnectionBudget::new(256),
    );
    let shared = shared(context, &[]);
    let limiter = ProbeLimiter::new(probe_handler::PROBE_CONCURRENCY_LIMIT);
    let target = server.addr.to_string();
    let statuses = futures::stream::iter(0..1000)
        .map(|_| {
            get_probe(
                shared.clone(),
                limiter.clone(),
                target.clone(),
                Some(NAME),
                Some("10"),
            )
        })
        .buffer_unordered(128)
        .collect::<Vec<StatusCode>>()
        .await;
    let served = statuses
        .iter()
        .filter(|status| **status == StatusCode::OK)
        .count();
    assert_eq!(
        served,
        1000,
        "{:?}",
        statuses.iter().find(|s| **s != StatusCode::OK)
    );
}

#[tokio::test]
async fn addresses_beyond_max_addresses_are_reported_as_truncated_in_metrics_and_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hosts: String = (1..=20u8)
        .map(|last| format!("127.0.0.{last} {MANY}\n"))
        .collect();
    let hosts_file = write_pem(dir.path(), "hosts", &hosts);
    // A port nobody listens on: every address refuses at once.
    let port = bind(LOCALHOST).await.local_addr().expect("address").port();
    let context = ProbeContext::new(
        Resolver::with_hosts_file(&hosts_file).expect("hosts file"),
        TrustCache::empty(),
        ConnectionBudget::new(64),
    )
    .with_max_addresses(16);
    let target = Target {
        host: Host::Name(MANY.to_owned()),
        port,
    };
    let report = probe_endpoint(&Endpoint::new(target, Duration::from_secs(5)), &context).await;
    assert_eq!(report.addresses.len(), 16);
    assert_eq!(report.addresses_truncated, 4);

    let now = OffsetDateTime::now_utc();
    let metrics = certinel::metrics::render::render_probe(&report, now).expect("render");
    let line = format!("certinel_endpoint_addresses_truncated{{target=\"{MANY}:{port}\"}} 4");
    assert!(metrics.lines().any(|l| l == line), "{metrics}");
    let rows = certinel::report::endpoint_rows(&report, Default::default(), now);
    let json = certinel::report::json::row_to_json(&rows[0]);
    assert_eq!(json["addresses_truncated"], 4, "{json}");
}
