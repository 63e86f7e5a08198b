//! The shipped monitoring files: alert rules and Prometheus config pass promtool and their
//! unit tests, the Grafana dashboard is importable and well formed, and (end_to_end) every
//! dashboard and alert query returns data from a real Prometheus scraping a real certinel;
//! (docs) docs/metrics.md documents exactly the metrics certinel defines.

use std::path::Path;

use serde_json::Value;

use crate::common::prometheus::{assert_promtool_ok, config_dir, promtool};

mod docs;
mod end_to_end;
mod expected;
mod setup;

/// The variables a dashboard query may use, and what the end-to-end test puts in their place.
const DASHBOARD_VARIABLES: &[(&str, &str)] = &[
    ("$__rate_interval", "1m"),
    ("$instance", ".+"),
    ("$job", "certinel"),
];

/// The datasource every panel and query must use: the `DS_PROMETHEUS` import input.
const DATASOURCE_UID: &str = "${DS_PROMETHEUS}";

/// The rule files prometheus.yml loads, each with its promtool unit tests.
const RULE_FILES: &[(&str, &str)] = &[
    ("alerts.yml", "alerts_test.yml"),
    ("alerts-renewal.yml", "alerts-renewal_test.yml"),
];

/// The cluster's rule file and unit tests, loaded by `prometheus-cluster.yml` (not by
/// `prometheus.yml`: without `[cluster]` its series never exist, and the end-to-end test
/// here runs a single certinel).
const CLUSTER_RULE_FILES: &[(&str, &str)] = &[("alerts-cluster.yml", "alerts-cluster_test.yml")];

/// Runs `promtool ARGS` in config/ and requires it to succeed; a failure names the command.
fn promtool_passes(args: &[&str]) {
    let output = promtool(&config_dir(), args);
    assert_promtool_ok(&output, &args.join(" "));
}

#[test]
fn cluster_alert_rules_and_prometheus_config_pass_promtool_check_and_their_unit_tests() {
    for (rules, tests) in CLUSTER_RULE_FILES {
        promtool_passes(&["check", "rules", rules]);
        promtool_passes(&["test", "rules", tests]);
    }
    promtool_passes(&["check", "config", "prometheus-cluster.yml"]);
}

#[test]
fn alert_rules_and_prometheus_config_pass_promtool_check() {
    for (rules, _) in RULE_FILES {
        promtool_passes(&["check", "rules", rules]);
    }
    promtool_passes(&["check", "config", "prometheus.yml"]);
}

#[test]
fn alert_rule_unit_tests_fire_and_stay_quiet_as_expected() {
    for (_, tests) in RULE_FILES {
        promtool_passes(&["test", "rules", tests]);
    }
}

#[test]
fn prometheus_config_loads_every_rule_file_and_nothing_else() {
    let config =
        std::fs::read_to_string(config_dir().join("prometheus.yml")).expect("read prometheus.yml");
    let rule_files: Vec<&str> = config
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .filter(|entry| entry.ends_with(".yml"))
        .collect();
    let expected: Vec<&str> = RULE_FILES.iter().map(|(rules, _)| *rules).collect();
    assert_eq!(rule_files, expected, "{config}");
}

#[test]
fn dashboard_is_importable_with_a_datasource_input_and_job_and_instance_variables() {
    let dashboard = load_dashboard();
    let inputs = dashboard["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs.iter().any(|input| input["name"] == "DS_PROMETHEUS"
            && input["type"] == "datasource"
            && input["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS datasource input: {inputs:?}"
    );
    assert!(dashboard["id"].is_null(), "an exported dashboard has no id");
    assert!(dashboard["schemaVersion"].as_u64().expect("schemaVersion") >= 39);
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|variable| {
            assert_eq!(variable["datasource"]["uid"], DATASOURCE_UID, "{variable}");
            variable["name"].as_str().expect("variable name")
        })
        .collect();
    assert_eq!(variables, ["job", "instance"]);
}

#[test]
fn dashboard_panels_have_unique_ids_and_do_not_overlap() {
    let dashboard = load_dashboard();
    let panels = panels(&dashboard);
    assert!(!panels.is_empty());
    let mut ids = std::collections::BTreeSet::new();
    let mut boxes: Vec<(&str, [u64; 4])> = Vec::new();
    for panel in &panels {
        let title = panel["title"].as_str().expect("panel title");
        let id = panel["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} used twice ({title})");
        let position = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|key| {
            position[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{key}"))
        });
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: {position}");
        for (other, [ox, oy, ow, oh]) in &boxes {
            let apart = x + w <= *ox || *ox + ow <= x || y + h <= *oy || *oy + oh <= y;
            assert!(apart, "{title} overlaps {other}");
        }
        boxes.push((title, [x, y, w, h]));
    }
}

#[test]
fn every_dashboard_query_uses_the_datasource_input_and_known_variables() {
    let dashboard = load_dashboard();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("panel title");
        assert_eq!(panel["datasource"]["uid"], DATASOURCE_UID, "panel {title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            assert_eq!(
                target["datasource"]["uid"], DATASOURCE_UID,
                "{title}: {target}"
            );
            let expr = target["expr"].as_str().expect("expr");
            assert!(
                expr.contains("job=~\"$job\"") && expr.contains("instance=~\"$instance\""),
                "{title}: every query filters by $job and $instance: {expr}"
            );
            let substituted = substitute_variables(expr);
            assert!(
                !substituted.contains('$'),
                "{title}: unknown variable in {expr}"
            );
        }
    }
}

#[test]
fn grafana_provisioning_loads_the_directory_the_dashboard_readme_writes_the_dashboard_to() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let provisioning = std::fs::read_to_string(root.join("dashboards/provisioning/certinel.yaml"))
        .expect("provisioning file");
    // No YAML parser among the dependencies: the file is flat enough to read by key.
    let value = |key: &str| {
        provisioning
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .find_map(|line| line.trim().trim_start_matches("- ").strip_prefix(key))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("no {key} in:\n{provisioning}"))
    };
    assert_eq!(value("apiVersion:"), "1");
    assert_eq!(value("type:"), "file");
    let path = value("path:");
    let readme = std::fs::read_to_string(root.join("dashboards/README.md")).expect("README");
    assert!(
        readme.contains(&format!("> {path}/certinel.json")),
        "dashboards/README.md does not write the dashboard into {path}"
    );
}

/// The dashboard JSON as shipped.
fn load_dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/certinel.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every panel, including those folded inside rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            all.extend(inner);
        }
    }
    all.retain(|panel| panel["type"] != "row");
    all
}

/// `expr` with the dashboard's variables replaced as the end-to-end test runs them.
fn substitute_variables(expr: &str) -> String {
    DASHBOARD_VARIABLES
        .iter()
        .fold(expr.to_owned(), |expr, (name, value)| {
            expr.replace(name, value)
        })
}
