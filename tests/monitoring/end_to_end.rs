//! A real Prometheus, configured from the shipped prometheus.yml and alerts.yml, scrapes a
//! real `certinel run` watching live loopback TLS servers and files chosen so that every
//! alert fires; then every dashboard query and every alert expression must return data.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{load_dashboard, panels, substitute_variables};
use crate::common::pki::{Ca, Leaf, LeafSpec, Validity, write_pem};
use crate::common::prometheus::{Prometheus, config_dir, encode, free_loopback_port};
use crate::common::service::{Service, write_config};
use crate::common::tls_server::{ServerHandle, ServerOptions, bind, bind_pair, spawn_tls};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// How long Prometheus may take to scrape, evaluate and fire (it ticks every second).
const PATIENCE: Duration = Duration::from_secs(60);

/// The `for:` every alert gets in the test, so none makes the test wait minutes; the real
/// durations are covered by the promtool unit tests (alerts_test.yml).
const TEST_FOR: &str = "for: 1s";

/// The live servers, files and certinel of the test, one per alert.
struct Setup {
    dir: tempfile::TempDir,
    service: Service,
    soon: SocketAddr,
    late: SocketAddr,
    self_signed: SocketAddr,
    closed: SocketAddr,
    disagree_port: u16,
    soon_file: PathBuf,
    late_file: PathBuf,
    missing_file: PathBuf,
    _servers: Vec<ServerHandle>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_returns_data_for_every_dashboard_query_and_fires_every_alert() {
    let setup = Setup::start().await;
    let dead_certinel = free_loopback_port();
    let prometheus = Prometheus::start(
        setup.dir.path(),
        &prometheus_config(
            setup.dir.path(),
            setup.service.addr,
            dead_certinel,
            setup.soon,
        ),
    )
    .await;
    let scrapes = format!(
        "count_over_time(up{{job=\"certinel\",instance=\"{}\"}}[1m]) >= 3",
        setup.service.addr
    );
    prometheus
        .poll("three scrapes of certinel", PATIENCE, async || {
            let result = prometheus.query(&scrapes).await;
            (!result.is_empty()).then_some(())
        })
        .await;

    let expected = expected_alerts(&setup, dead_certinel);
    let rules = alerting_rules(&prometheus).await;
    let rule_names: Vec<&String> = rules.keys().collect();
    let expected_names: Vec<&String> = expected.keys().collect();
    assert_eq!(
        rule_names, expected_names,
        "every alert in alerts.yml needs a case in this test's setup"
    );
    prometheus
        .poll("every alert firing", PATIENCE, async || {
            let firing = firing_alerts(&prometheus).await;
            let missing: Vec<&String> = expected
                .iter()
                .filter(|(name, labels)| {
                    !firing.iter().any(|alert| {
                        alert["labels"]["alertname"] == name.as_str()
                            && labels
                                .iter()
                                .all(|(key, value)| alert["labels"][key] == value.as_str())
                    })
                })
                .map(|(name, _)| name)
                .collect();
            if missing.is_empty() {
                Some(())
            } else {
                eprintln!("not firing yet: {missing:?}");
                None
            }
        })
        .await;

    for (name, expr) in &rules {
        let result = prometheus.query(expr).await;
        assert!(!result.is_empty(), "alert {name}: no data for {expr}");
    }
    check_dashboard_queries(&prometheus, &setup).await;
    check_dashboard_variables(&prometheus, &setup).await;
    let probed = prometheus
        .query("certinel_probe_success{job=\"certinel-probe\"} == 1")
        .await;
    assert_eq!(probed.len(), 1, "the /probe relabeling example works");
}

impl Setup {
    /// Starts the TLS servers, writes the files and starts certinel; then makes it reject a
    /// new configuration, so the reload alert has something to say.
    async fn start() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Ca::root("certinel monitoring test root", Validity::current());
        let soon_leaf =
            root.leaf(&LeafSpec::new(&["localhost"]).validity(Validity::current_for_days(3)));
        let late_leaf =
            root.leaf(&LeafSpec::new(&["localhost"]).validity(Validity::current_for_days(14)));
        let self_signed_leaf = Leaf::self_signed(&LeafSpec::new(&["localhost"]));
        let mut servers = vec![
            serve_leaf(bind(LOCALHOST).await, &soon_leaf),
            serve_leaf(bind(LOCALHOST).await, &late_leaf),
            serve_leaf(bind(LOCALHOST).await, &self_signed_leaf),
        ];
        let [soon, late, self_signed] = [0, 1, 2].map(|index| servers[index].addr);
        // Two addresses of one name, each serving its own (trusted, long-lived) leaf.
        let (first_ip, second_ip) = (
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
        );
        let (first, second) = bind_pair(first_ip, second_ip).await;
        let disagree_port = first.local_addr().expect("bound address").port();
        for listener in [first, second] {
            let leaf = root.leaf(&LeafSpec::new(&["disagree.test"]));
            servers.push(serve_leaf(listener, &leaf));
        }
        let closed = bind(LOCALHOST).await.local_addr().expect("bound address");

        let hosts = write_pem(
            dir.path(),
            "hosts",
            &format!("{first_ip} disagree.test\n{second_ip} disagree.test\n"),
        );
        let ca_file = write_pem(dir.path(), "root.pem", &root.pem);
        let soon_file = write_pem(dir.path(), "soon.pem", &soon_leaf.pem);
        let late_file = write_pem(dir.path(), "late.pem", &late_leaf.pem);
        let missing_file = dir.path().join("missing.pem");
        let path = |path: &Path| path.display().to_string();
        let config = write_config(
            dir.path(),
            "monitoring.toml",
            &[
                ("HOSTS_FILE", path(&hosts)),
                ("CA_FILE", path(&ca_file)),
                ("SOON_PORT", soon.port().to_string()),
                ("LATE_PORT", late.port().to_string()),
                ("SELF_SIGNED_PORT", self_signed.port().to_string()),
                ("CLOSED_PORT", closed.port().to_string()),
                ("DISAGREE_PORT", disagree_port.to_string()),
                ("SOON_FILE", path(&soon_file)),
                ("LATE_FILE", path(&late_file)),
                ("MISSING_FILE", path(&missing_file)),
            ],
        );
        let mut service = Service::start(Some(&config)).await;
        service.wait_ready().await;
        write_config(
            dir.path(),
            "broken.toml",
            &[("PORT", closed.port().to_string())],
        );
        service.signal("HUP");
        service
            .wait_for_log("configuration rejected; the previous one keeps running")
            .await;
        Setup {
            dir,
            service,
            soon,
            late,
            self_signed,
            closed,
            disagree_port,
            soon_file,
            late_file,
            missing_file,
            _servers: servers,
        }
    }
}

/// A TLS server on `listener` presenting `leaf` alone.
fn serve_leaf(listener: tokio::net::TcpListener, leaf: &Leaf) -> ServerHandle {
    let options = ServerOptions::new(vec![leaf.cert.clone()], leaf.key.clone_key());
    spawn_tls(listener, options.acceptor())
}

/// The shipped prometheus.yml, pointed at this test's certinel (plus a dead one, for
/// CertinelDown) and TLS server, ticking every second, loading a copy of alerts.yml whose
/// `for:` durations are shortened to [`TEST_FOR`]. Each edit must apply exactly once, so
/// the test notices when the shipped file changes shape.
fn prometheus_config(
    dir: &Path,
    certinel: SocketAddr,
    dead: SocketAddr,
    probed: SocketAddr,
) -> String {
    let rules = std::fs::read_to_string(config_dir().join("alerts.yml")).expect("read alerts.yml");
    let mut shortened = 0;
    let rules: Vec<String> = rules
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => {
                shortened += 1;
                let indent = &line[..line.len() - line.trim_start().len()];
                format!("{indent}{TEST_FOR}")
            }
            None => line.to_owned(),
        })
        .collect();
    assert!(shortened > 0, "no `for:` in alerts.yml");
    let rules_path = dir.join("alerts.yml");
    std::fs::write(&rules_path, rules.join("\n")).expect("write alerts.yml");

    let mut config =
        std::fs::read_to_string(config_dir().join("prometheus.yml")).expect("read prometheus.yml");
    let edits = [
        (
            "scrape_interval: 1m".to_owned(),
            "scrape_interval: 1s".to_owned(),
        ),
        (
            "evaluation_interval: 1m".to_owned(),
            "evaluation_interval: 1s".to_owned(),
        ),
        (
            "  - alerts.yml".to_owned(),
            format!("  - {}", rules_path.display()),
        ),
        (
            "- targets: [\"127.0.0.1:9798\"]".to_owned(),
            format!("- targets: [\"{certinel}\", \"{dead}\"]"),
        ),
        (
            "replacement: \"127.0.0.1:9798\"".to_owned(),
            format!("replacement: \"{certinel}\""),
        ),
        (
            "          - \"localhost:8443\"\n          - \"127.0.0.1:6443\"\n".to_owned(),
            format!("          - \"{probed}\"\n"),
        ),
    ];
    for (from, to) in edits {
        assert_eq!(
            config.matches(&from).count(),
            1,
            "prometheus.yml should contain {from:?} once"
        );
        config = config.replace(&from, &to);
    }
    config
}

/// Each alert of alerts.yml, with labels that show it fired for the right cause.
fn expected_alerts(
    setup: &Setup,
    dead_certinel: SocketAddr,
) -> BTreeMap<String, Vec<(&'static str, String)>> {
    let target = |addr: SocketAddr| ("target", addr.to_string());
    let path = |path: &Path| ("path", path.display().to_string());
    let certinel = ("job", "certinel".to_owned());
    [
        (
            "CertinelEndpointCertificateExpiresIn7Days",
            vec![certinel.clone(), target(setup.soon)],
        ),
        (
            "CertinelEndpointCertificateExpiresIn21Days",
            vec![certinel.clone(), target(setup.late)],
        ),
        (
            "CertinelFileCertificateExpiresIn7Days",
            vec![path(&setup.soon_file)],
        ),
        (
            "CertinelFileCertificateExpiresIn21Days",
            vec![path(&setup.late_file)],
        ),
        (
            "CertinelEndpointCertificateNotVerified",
            vec![certinel.clone(), target(setup.self_signed)],
        ),
        ("CertinelEndpointProbeFailing", vec![target(setup.closed)]),
        (
            "CertinelEndpointAddressesDisagree",
            vec![("target", format!("disagree.test:{}", setup.disagree_port))],
        ),
        ("CertinelFileUnreadable", vec![path(&setup.missing_file)]),
        (
            "CertinelDown",
            vec![("instance", dead_certinel.to_string())],
        ),
        (
            "CertinelConfigReloadFailed",
            vec![("instance", setup.service.addr.to_string())],
        ),
    ]
    .into_iter()
    .map(|(name, labels)| (name.to_owned(), labels))
    .collect()
}

/// Every alerting rule Prometheus loaded: name and expression, as Prometheus parsed them.
async fn alerting_rules(prometheus: &Prometheus) -> BTreeMap<String, String> {
    let data = prometheus.api("/api/v1/rules?type=alert").await;
    let mut rules = BTreeMap::new();
    for group in data["groups"].as_array().expect("rule groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["name"].as_str().expect("rule name").to_owned();
            let query = rule["query"].as_str().expect("rule query").to_owned();
            assert!(rules.insert(name.clone(), query).is_none(), "{name} twice");
        }
    }
    rules
}

/// The alerts now firing (not pending).
async fn firing_alerts(prometheus: &Prometheus) -> Vec<Value> {
    let data = prometheus.api("/api/v1/alerts").await;
    let alerts = data["alerts"].as_array().expect("alerts").clone();
    alerts
        .into_iter()
        .filter(|alert| alert["state"] == "firing")
        .collect()
}

/// Runs every dashboard query; each must return data, and the counts must match the setup.
async fn check_dashboard_queries(prometheus: &Prometheus, setup: &Setup) {
    let expected_stats: BTreeMap<&str, f64> = [
        ("Certificates", 6.0),
        ("Expire within 7 days", 2.0),
        ("Expire within 21 days", 4.0),
        ("Expire within 30 days", 4.0),
        ("Not verified", 1.0),
        ("Probes failing", 1.0),
        ("Addresses disagree", 1.0),
        ("certinel up", 1.0),
        ("Last configuration change", 0.0),
    ]
    .into_iter()
    .collect();
    let dashboard = load_dashboard();
    let mut queried = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("panel title");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = substitute_variables(target["expr"].as_str().expect("expr"));
            let result = prometheus.query(&expr).await;
            assert!(!result.is_empty(), "panel {title}: no data for {expr}");
            queried += 1;
            if let Some(expected) = expected_stats.get(title) {
                assert_eq!(result.len(), 1, "{title}: {result:?}");
                assert_eq!(value(&result[0]), *expected, "panel {title}: {expr}");
            }
            if title == "Certificates by days left" && target["refId"] == "A" {
                let soon = result
                    .iter()
                    .find(|row| row["metric"]["target"] == setup.soon.to_string())
                    .unwrap_or_else(|| panic!("{title}: no row for {}: {result:?}", setup.soon));
                let days = value(soon);
                assert!((2.9..=3.0).contains(&days), "{title}: {days} days left");
                assert_eq!(soon["metric"]["subject"], "CN=localhost", "{soon}");
            }
        }
    }
    let missing: Vec<&&str> = expected_stats
        .keys()
        .filter(|title| {
            !panels(&dashboard)
                .iter()
                .any(|panel| panel["title"] == **title)
        })
        .collect();
    assert!(missing.is_empty(), "no panels titled {missing:?}");
    assert!(queried >= 15, "only {queried} queries");
}

/// The template variables' `label_values()` queries, through the label values API.
async fn check_dashboard_variables(prometheus: &Prometheus, setup: &Setup) {
    let values = |data: Value| -> Vec<String> {
        serde_json::from_value(data).expect("label values are strings")
    };
    let jobs = values(
        prometheus
            .api(&format!(
                "/api/v1/label/job/values?match%5B%5D={}",
                encode("certinel_build_info")
            ))
            .await,
    );
    assert_eq!(jobs, ["certinel"]);
    let selector = encode("certinel_build_info{job=~\"certinel\"}");
    let instances = values(
        prometheus
            .api(&format!(
                "/api/v1/label/instance/values?match%5B%5D={selector}"
            ))
            .await,
    );
    assert_eq!(instances, [setup.service.addr.to_string()]);
}

/// The number in an instant-vector sample.
fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("no value in {sample}"))
}
