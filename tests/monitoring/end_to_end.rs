//! A real Prometheus, configured from the shipped prometheus.yml and rule files, scrapes a
//! real `certinel run` watching live loopback TLS servers and files, and renewing three
//! certificates from a real Pebble behind the ARI front (one issued at start, one that
//! cannot be, one issued before and served stale by its verify target), chosen so that
//! every alert fires (setup.rs); then every dashboard query and every alert expression
//! must return data, except the few alerts `expected::EXPECTED_EMPTY` names with a reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::expected::{self, DRIFTED, EXPECTED_EMPTY, ISSUED, UNISSUABLE};
use super::setup::Setup;
use super::{RULE_FILES, load_dashboard, panels, substitute_variables};
use crate::common::prometheus::{Prometheus, config_dir, encode, free_loopback_port};

/// How long Prometheus may take to scrape, evaluate and fire (it ticks every second).
const PATIENCE: Duration = Duration::from_secs(60);

/// The `for:` every alert gets in the test, so none makes the test wait minutes; the real
/// durations are covered by the promtool unit tests (alerts_test.yml).
const TEST_FOR: &str = "for: 1s";

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

    // Misses are collected and reported together, so one run shows every query that
    // lacks data rather than the first.
    let mut problems = Vec::new();
    wait_for_renewal_outcomes(&prometheus, &mut problems).await;

    let expected = expected::firing_alerts(&setup, dead_certinel);
    let rules = alerting_rules(&prometheus).await;
    let rule_names: Vec<&str> = rules.keys().map(String::as_str).collect();
    let mut accounted: Vec<&str> = expected
        .keys()
        .map(String::as_str)
        .chain(EXPECTED_EMPTY.iter().map(|(name, _)| *name))
        .collect();
    accounted.sort_unstable();
    assert_eq!(
        rule_names, accounted,
        "every alert of the rule files needs a case in this test's setup or a reason in \
         expected::EXPECTED_EMPTY (and no alert both)"
    );
    wait_for_firing(&prometheus, &expected, &mut problems).await;

    for (name, expr) in &rules {
        let result = prometheus.query(expr).await;
        match EXPECTED_EMPTY.iter().find(|(quiet, _)| quiet == name) {
            Some((_, reason)) if !result.is_empty() => problems.push(format!(
                "alert {name} returned data though it should not ({reason}): {result:?}"
            )),
            Some(_) => {}
            None if result.is_empty() => problems.push(format!("alert {name}: no data for {expr}")),
            None => {}
        }
        check_metrics_exist(&prometheus, name, expr, &mut problems).await;
    }
    check_dashboard_queries(&prometheus, &setup, &mut problems).await;
    check_dashboard_variables(&prometheus, &setup).await;
    let probed = prometheus
        .query("certinel_probe_success{job=\"certinel-probe\"} == 1")
        .await;
    assert_eq!(probed.len(), 1, "the /probe relabeling example works");
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The shipped prometheus.yml, pointed at this test's certinel (plus a dead one, for
/// CertinelDown) and TLS server, ticking every second, loading copies of the rule files
/// whose `for:` durations are shortened to [`TEST_FOR`]. Each edit must apply exactly once,
/// so the test notices when the shipped file changes shape.
fn prometheus_config(
    dir: &Path,
    certinel: SocketAddr,
    dead: SocketAddr,
    probed: SocketAddr,
) -> String {
    let mut edits = vec![
        (
            "scrape_interval: 1m".to_owned(),
            "scrape_interval: 1s".to_owned(),
        ),
        (
            "evaluation_interval: 1m".to_owned(),
            "evaluation_interval: 1s".to_owned(),
        ),
    ];
    for (rules, _) in RULE_FILES {
        let copy = shortened_rules(dir, rules);
        edits.push((
            format!("  - {rules}\n"),
            format!("  - {}\n", copy.display()),
        ));
    }
    let mut config =
        std::fs::read_to_string(config_dir().join("prometheus.yml")).expect("read prometheus.yml");
    edits.extend([
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
    ]);
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

/// Writes a copy of the shipped rule file `name` into `dir`, every `for:` shortened to
/// [`TEST_FOR`]; returns its path.
fn shortened_rules(dir: &Path, name: &str) -> PathBuf {
    let rules = std::fs::read_to_string(config_dir().join(name))
        .unwrap_or_else(|error| panic!("read {name}: {error}"));
    let rules: Vec<String> = rules
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                format!("{indent}{TEST_FOR}")
            }
            None => line.to_owned(),
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, rules.join("\n")).unwrap_or_else(|error| panic!("write {name}: {error}"));
    path
}

/// Waits until Prometheus has scraped the issued certificate as ready and the unissuable
/// one's failure twice (so increase() over it has two samples).
async fn wait_for_renewal_outcomes(prometheus: &Prometheus, problems: &mut Vec<String>) {
    let outcomes = format!(
        "certinel_certificate_ready{{name=\"{ISSUED}\"}} == 1 and on (job, instance) \
         count_over_time(certinel_certificate_renewal_failures_total{{name=\"{UNISSUABLE}\"}}[1m]) >= 2"
    );
    let seen = prometheus
        .try_poll(PATIENCE, async || {
            (!prometheus.query(&outcomes).await.is_empty()).then_some(())
        })
        .await;
    if seen.is_none() {
        problems.push(format!(
            "renewal outcomes never scraped within {PATIENCE:?}: {outcomes}"
        ));
    }
}

/// Waits until every expected alert fires with its labels; records those that never do.
async fn wait_for_firing(
    prometheus: &Prometheus,
    expected: &BTreeMap<String, Vec<(&'static str, String)>>,
    problems: &mut Vec<String>,
) {
    let mut missing = Vec::new();
    let all_fired = prometheus
        .try_poll(PATIENCE, async || {
            let firing = firing_alerts(prometheus).await;
            missing = expected
                .iter()
                .filter(|(name, labels)| {
                    !firing.iter().any(|alert| {
                        alert["labels"]["alertname"] == name.as_str()
                            && labels
                                .iter()
                                .all(|(key, value)| alert["labels"][key] == value.as_str())
                    })
                })
                .map(|(name, labels)| format!("{name} {labels:?}"))
                .collect();
            missing.is_empty().then_some(())
        })
        .await;
    if all_fired.is_none() {
        problems.extend(
            missing
                .into_iter()
                .map(|alert| format!("not firing: {alert}")),
        );
    }
}

/// Records every `certinel_*` metric `expr` reads that has no data at all.
async fn check_metrics_exist(
    prometheus: &Prometheus,
    alert: &str,
    expr: &str,
    problems: &mut Vec<String>,
) {
    let metrics: std::collections::BTreeSet<&str> =
        expected::metric_names(expr).into_iter().collect();
    for metric in metrics {
        if prometheus.query(metric).await.is_empty() {
            problems.push(format!("alert {alert} reads {metric}, which has no data"));
        }
    }
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
async fn check_dashboard_queries(
    prometheus: &Prometheus,
    setup: &Setup,
    problems: &mut Vec<String>,
) {
    let expected_stats = expected::stat_values();
    let dashboard = load_dashboard();
    let mut queried = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("panel title");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = substitute_variables(target["expr"].as_str().expect("expr"));
            let result = prometheus.query(&expr).await;
            queried += 1;
            if result.is_empty() {
                problems.push(format!("panel {title}: no data for {expr}"));
                continue;
            }
            if let Some(expected) = expected_stats.get(title) {
                let values: Vec<f64> = result.iter().map(value).collect();
                if values != [*expected] {
                    problems.push(format!("panel {title}: {values:?}, not {expected}: {expr}"));
                }
            }
            if title == "Certificates by days left" {
                let soon = result
                    .iter()
                    .find(|row| row["metric"]["target"] == setup.soon.to_string())
                    .unwrap_or_else(|| panic!("{title}: no row for {}: {result:?}", setup.soon));
                if target["refId"] == "A" {
                    let days = value(soon);
                    assert!((2.9..=3.0).contains(&days), "{title}: {days} days left");
                    assert_eq!(soon["metric"]["subject"], "CN=localhost", "{soon}");
                }
                if target["refId"] == "B" {
                    // 3 of the 91 days of the soon endpoint's certificate are left.
                    let percent = value(soon);
                    assert!((3.2..=3.3).contains(&percent), "{title}: {percent} % left");
                }
            }
            if title == "Managed certificates by days left" && target["refId"] == "A" {
                check_managed_row(&result, problems);
            }
            let drifted_row = |key: &str, value: &str| {
                result
                    .iter()
                    .any(|row| row["metric"]["name"] == DRIFTED && row["metric"][key] == value)
            };
            if title == "Endpoints not serving the current certificate"
                && !drifted_row("target", &setup.soon.to_string())
            {
                problems.push(format!("{title}: no row for {DRIFTED}: {result:?}"));
            }
            if title == "Renewal rule and ARI window" && !drifted_row("source", "ari") {
                problems.push(format!(
                    "{title} ({}): {DRIFTED} is not placed by ARI: {result:?}",
                    target["refId"]
                ));
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
    assert!(queried >= 25, "only {queried} queries");
}

/// The issued certificate's row of the managed table: 3 days left, first version, and a
/// serial from the info join.
fn check_managed_row(result: &[Value], problems: &mut Vec<String>) {
    let Some(row) = result.iter().find(|row| row["metric"]["name"] == ISSUED) else {
        problems.push(format!("managed table: no row for {ISSUED}: {result:?}"));
        return;
    };
    let days = value(row);
    let serial = row["metric"]["serial"].as_str().unwrap_or_default();
    if !(2.9..=3.0).contains(&days) || row["metric"]["version"] != "v0001" || serial.is_empty() {
        problems.push(format!(
            "managed table: {ISSUED} should have 3 days left, version v0001 and a serial: {row}"
        ));
    }
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
