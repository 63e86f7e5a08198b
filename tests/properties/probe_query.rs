//! The `/probe` request parsing on arbitrary input: the query string as axum extracts it,
//! the `target` parameter, allow-list rules and the verdict they give before any network
//! I/O, and the `X-Prometheus-Scrape-Timeout-Seconds` header. No panic, and the deadline
//! always lies between the minimum and the module's timeout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::Query;
use certinel::config::model::{AllowRule, Target};
use certinel::metrics::allow::{Precheck, host_pattern_matches, ip_allowed, precheck};
use certinel::metrics::probe_handler::{MINIMUM_DEADLINE, probe_deadline};
use proptest::prelude::*;

use certinel_testkit::fuzz::{config, within_time_limit};

/// Pieces of targets, so generated strings reach every branch of the target parser.
const TARGET_PIECES: &[&str] = &[
    "https://",
    "http://",
    "[",
    "]",
    ":",
    "443",
    "0",
    "65535",
    "65536",
    "+443",
    "-1",
    "::1",
    "127.0.0.1",
    "example.com",
    ".",
    "..",
    "-",
    "*",
    "@",
    "/",
    "%",
    "%00",
    "?",
    "#",
    "é",
    "xn--",
    "1.2.3",
    "999.1.1.1",
    "fe80::1%eth0",
    " ",
    "\t",
    "localhost",
];

const RULE_PIECES: &[&str] = &[
    "127.0.0.0/8",
    "::1/128",
    "0.0.0.0/0",
    "::/0",
    "/",
    "/33",
    "/129",
    "/255",
    "/-1",
    "*.example.com",
    "*",
    "*.",
    "example.com",
    "10.0.0.1",
    "::ffff:10.0.0.0/104",
    "é",
];

/// Mostly `count` of `pieces` run together, sometimes any string at all.
fn pieces_or_any(
    pieces: &'static [&'static str],
    count: std::ops::Range<usize>,
) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(prop::sample::select(pieces), count)
            .prop_map(|pieces| pieces.concat()),
        1 => any::<String>(),
    ]
}

/// Probe targets: up to eight pieces, or any string.
fn target_text() -> impl Strategy<Value = String> {
    pieces_or_any(TARGET_PIECES, 0..8)
}

/// `allow` rules: one or two pieces, or any string.
fn rule_text() -> impl Strategy<Value = String> {
    pieces_or_any(RULE_PIECES, 1..3)
}

fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(&[
            "10", "0", "-0", "0.5", "0.0000001", "1e300", "-1e300", "inf", "-inf", "NaN",
            "1e-400", "18446744073709551616", " 7 ", "", "5s", "0x10", "+3",
        ][..]).prop_map(str::to_owned),
        1 => any::<f64>().prop_map(|seconds| seconds.to_string()),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config(3_000))]

    #[test]
    fn probe_query_strings_extract_or_refuse_without_panic(
        query in prop::collection::vec(
            prop_oneof![
                Just("target=".to_owned()),
                Just("module=".to_owned()),
                Just("hostname=".to_owned()),
                Just("&".to_owned()),
                Just("=".to_owned()),
                Just("%".to_owned()),
                Just("%zz".to_owned()),
                Just("%ff%fe".to_owned()),
                Just("+".to_owned()),
                "[ -~]{0,12}",
            ],
            0..10,
        ),
    ) {
        let Ok(uri) = format!("/probe?{}", query.concat()).parse::<http::Uri>() else {
            return Ok(());
        };
        within_time_limit("query extraction", || {
            if let Ok(Query(parameters)) = Query::<HashMap<String, String>>::try_from_uri(&uri) {
                if let Some(target) = parameters.get("target") {
                    let _ = target.parse::<Target>();
                }
            }
        });
    }

    #[test]
    fn probe_targets_parse_or_refuse_and_print_as_they_parse(text in target_text()) {
        let parsed = within_time_limit("target parse", || text.parse::<Target>());
        match parsed {
            Ok(target) => {
                let printed = target.to_string();
                let reparsed = printed.parse::<Target>();
                prop_assert_eq!(
                    reparsed.as_ref().ok(),
                    Some(&target),
                    "{:?} parsed as {} which parses as {:?}",
                    text,
                    printed,
                    reparsed
                );
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    #[test]
    fn allow_rules_and_prechecks_never_panic(
        rules in prop::collection::vec(rule_text(), 0..4),
        target in target_text(),
        address in any::<IpAddr>(),
        pattern in rule_text(),
        name in target_text(),
    ) {
        let rules: Vec<AllowRule> = rules.iter().filter_map(|rule| rule.parse().ok()).collect();
        let _ = ip_allowed(address, &rules);
        let _ = host_pattern_matches(&pattern, &name);
        if let Ok(target) = target.parse::<Target>() {
            if let Precheck::Denied(reason) = precheck(&target.host, &rules) {
                prop_assert!(!reason.contains('\n'), "{}", reason);
            }
        }
    }

    #[test]
    fn scrape_timeout_header_gives_a_deadline_within_bounds(
        header in header_text(),
        module_millis in 0u64..120_000,
    ) {
        let module_timeout = Duration::from_millis(module_millis);
        let deadline = probe_deadline(module_timeout, Some(&header));
        prop_assert!(deadline >= MINIMUM_DEADLINE, "{:?} for {:?}", deadline, header);
        prop_assert!(
            deadline <= module_timeout.max(MINIMUM_DEADLINE),
            "{:?} beyond the module's {:?} for {:?}",
            deadline,
            module_timeout,
            header
        );
    }
}
