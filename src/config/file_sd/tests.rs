//! file_sd parsing: groups, label rules, modules, duplicates and scale.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

fn source() -> EndpointSource {
    EndpointSource {
        files: vec!["targets/*.json".to_owned()],
        interval: Duration::from_secs(30),
        probe: ProbeModule::with_timeout(Duration::from_secs(10)),
    }
}

fn modules() -> BTreeMap<String, ProbeModule> {
    let mut smtp = ProbeModule::with_timeout(Duration::from_secs(5));
    smtp.starttls = Some(StartTls::Smtp);
    [
        (
            "default".to_owned(),
            ProbeModule::with_timeout(Duration::from_secs(10)),
        ),
        ("smtp".to_owned(), smtp),
    ]
    .into_iter()
    .collect()
}

fn error_of(text: &str, format: Format) -> String {
    parse(text, format)
        .and_then(|groups| endpoints(&groups, &source(), &modules()))
        .expect_err("rejected")
        .to_string()
}

/// An endpoint's target, extra labels and interval.
type Summary = (String, Vec<(String, String)>, Duration);

#[test]
fn json_and_yaml_groups_become_endpoints_with_sorted_labels_and_the_sources_interval() {
    let json = r#"[
        {"targets": ["a.example:443", "[::1]:8443"], "labels": {"team": "web", "env": "prod"}},
        {"targets": ["https://b.example"]}
    ]"#;
    let yaml = "- targets: ['a.example:443', '[::1]:8443']\n  labels:\n    team: web\n    env: prod\n\
                - targets: ['https://b.example']\n";
    for (text, format) in [(json, Format::Json), (yaml, Format::Yaml)] {
        let groups = parse(text, format).expect("valid");
        let endpoints = endpoints(&groups, &source(), &modules()).expect("valid");
        let summary: Vec<Summary> = endpoints
            .iter()
            .map(|e| (e.target.to_string(), e.labels.clone(), e.interval))
            .collect();
        let labels = vec![
            ("env".to_owned(), "prod".to_owned()),
            ("team".to_owned(), "web".to_owned()),
        ];
        let thirty = Duration::from_secs(30);
        assert_eq!(
            summary,
            vec![
                ("a.example:443".to_owned(), labels.clone(), thirty),
                ("[::1]:8443".to_owned(), labels, thirty),
                ("b.example:443".to_owned(), Vec::new(), thirty),
            ],
            "{format:?}"
        );
    }
}

#[test]
fn param_module_selects_the_modules_settings_and_other_reserved_labels_are_ignored() {
    let text = r#"[{"targets": ["mx.example:25"],
        "labels": {"__param_module": "smtp", "__meta_x": "y", "site": "a"}}]"#;
    let groups = parse(text, Format::Json).expect("valid");
    let endpoints = endpoints(&groups, &source(), &modules()).expect("valid");
    assert_eq!(endpoints[0].probe.starttls, Some(StartTls::Smtp));
    assert_eq!(endpoints[0].probe.timeout, Duration::from_secs(5));
    assert_eq!(endpoints[0].interval, Duration::from_secs(30));
    assert_eq!(
        endpoints[0].labels,
        vec![("site".to_owned(), "a".to_owned())]
    );
}

#[test]
fn a_yaml_group_with_empty_labels_has_none() {
    let groups = parse("- targets: ['a.example:443']\n  labels:\n", Format::Yaml).expect("valid");
    assert!(groups[0].labels.is_empty());
}

#[test]
fn empty_files_have_no_groups() {
    assert_eq!(parse("", Format::Json), Ok(Vec::new()));
    assert_eq!(parse(" \n", Format::Yaml), Ok(Vec::new()));
    assert_eq!(parse("[]", Format::Json), Ok(Vec::new()));
}

#[test]
fn each_violation_is_rejected_with_the_group_and_what_to_do() {
    let seventeen: String = (0..17)
        .map(|i| format!("\"l{i}\": \"v\""))
        .collect::<Vec<_>>()
        .join(",");
    let cases = [
        (
            "[{\"targets\": [\"a.example\"]}]".to_owned(),
            "group[0].targets[0]: invalid target \"a.example\": no port; add a port, e.g. a.example:443",
        ),
        (
            r#"[{"targets": ["a:1"]}, {"targets": ["b:1"], "labels": {"1x": "v"}}]"#.to_owned(),
            "group[1]: label name \"1x\" is not a Prometheus label name (letters, digits and '_', \
             not starting with a digit)",
        ),
        (
            r#"[{"targets": ["a:1"], "labels": {"team-name": "v"}}]"#.to_owned(),
            "group[0]: label name \"team-name\" is not a Prometheus label name (letters, digits \
             and '_', not starting with a digit)",
        ),
        (
            r#"[{"targets": ["a:1"], "labels": {"target": "v"}}]"#.to_owned(),
            "group[0]: label \"target\" is one of certinel's own labels; rename it",
        ),
        (
            format!("[{{\"targets\": [\"a:1\"], \"labels\": {{{seventeen}}}}}]"),
            "group[0]: 17 labels; at most 16 are allowed (labels starting with __ do not count)",
        ),
        (
            r#"[{"targets": ["a:1"], "labels": {"__param_module": "imap"}}]"#.to_owned(),
            "group[0]: __param_module \"imap\" names no [exporter.module.imap]; known modules: \
             default, smtp",
        ),
        (
            r#"[{"targets": ["a:1"], "extra": 1}]"#.to_owned(),
            "line 1, column 29: unknown field `extra`, expected `targets` or `labels`",
        ),
        (
            "[{\"targets\": [\"a:1\"]},\n {\"targets\": 7}]".to_owned(),
            "line 2, column 14: invalid type: integer `7`, expected a sequence",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error_of(&text, Format::Json), expected, "{text}");
    }
}

#[test]
fn yaml_syntax_errors_name_the_line() {
    let error = error_of("- targets: ['a:1']\n- targets: [b:1\n", Format::Yaml);
    assert!(error.starts_with("line 3, "), "{error}");
    assert!(!error.ends_with("column 1"), "position said once: {error}");
}

#[test]
fn a_literal_address_outside_the_modules_ip_family_is_rejected() {
    let mut source = source();
    source.probe.ip_family = IpFamily::Ipv6;
    let groups = parse(r#"[{"targets": ["127.0.0.1:443"]}]"#, Format::Json).expect("valid");
    assert_eq!(
        endpoints(&groups, &source, &modules())
            .expect_err("rejected")
            .to_string(),
        "group[0]: target 127.0.0.1:443 is an IPv4 address but ip_family is ipv6"
    );
}

#[test]
fn the_format_follows_the_extension() {
    assert_eq!(Format::for_path(Path::new("a/t.json")), Ok(Format::Json));
    assert_eq!(Format::for_path(Path::new("t.yml")), Ok(Format::Yaml));
    assert_eq!(Format::for_path(Path::new("t.yaml")), Ok(Format::Yaml));
    assert_eq!(
        Format::for_path(Path::new("t.txt")),
        Err(FileSdError::UnsupportedExtension)
    );
}

fn endpoint(target: &str, labels: &[(&str, &str)]) -> Endpoint {
    let mut endpoint = Endpoint::new(target.parse().expect("target"), Duration::from_secs(5));
    endpoint.labels = labels
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    endpoint
}

#[test]
fn merge_keeps_the_first_of_duplicate_targets_configured_endpoints_first() {
    let configured = [endpoint("a.example:443", &[])];
    let first = [
        endpoint("b.example:443", &[("team", "one")]),
        endpoint("a.example:443", &[("team", "one")]),
    ];
    let second = [
        endpoint("b.example:443", &[("team", "two")]),
        endpoint("c.example:443", &[]),
    ];
    let merged = merge(&configured, [&first[..], &second[..]]);
    let kept: Vec<(String, Vec<(String, String)>)> = merged
        .endpoints
        .iter()
        .map(|e| (e.target.to_string(), e.labels.clone()))
        .collect();
    assert_eq!(
        kept,
        vec![
            ("a.example:443".to_owned(), Vec::new()),
            (
                "b.example:443".to_owned(),
                vec![("team".to_owned(), "one".to_owned())]
            ),
            ("c.example:443".to_owned(), Vec::new()),
        ]
    );
    assert_eq!(
        merged.duplicates,
        vec![
            Duplicate {
                target: "a.example:443".to_owned(),
                file: 0,
                kept: Origin::Config,
            },
            Duplicate {
                target: "b.example:443".to_owned(),
                file: 1,
                kept: Origin::File(0),
            },
        ]
    );
}

#[test]
fn merge_keeps_the_same_target_with_another_sni() {
    let first = [endpoint("a.example:443", &[])];
    let mut other = endpoint("a.example:443", &[]);
    other.probe.sni = Some("b.example".to_owned());
    let merged = merge(&[], [&first[..], &[other][..]]);
    assert_eq!(merged.endpoints.len(), 2);
    assert!(merged.duplicates.is_empty());
}

#[test]
fn a_hundred_thousand_targets_parse_and_merge_in_well_under_a_second() {
    let targets: Vec<String> = (0..100_000)
        .map(|i| format!("\"h{}.example:{}\"", i / 1000, 1 + i % 1000))
        .collect();
    let text = format!(
        "[{{\"targets\": [{}], \"labels\": {{\"env\": \"prod\"}}}}]",
        targets.join(",")
    );
    let started = std::time::Instant::now();
    let groups = parse(&text, Format::Json).expect("valid");
    let endpoints = endpoints(&groups, &source(), &modules()).expect("valid");
    let merged = merge(&[], [&endpoints[..], &endpoints[..]]);
    let elapsed = started.elapsed();
    assert_eq!(merged.endpoints.len(), 100_000);
    assert_eq!(merged.duplicates.len(), 100_000);
    // Debug builds are several times slower than release; quadratic work would take hours.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}
