//! Property-test support: the case count (`CERTINEL_FUZZ_CASES` overrides it), the
//! per-case time limit, and generators of the edge-case values parsers meet.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::Config;

/// The environment variable that overrides every property's case count.
pub const CASES_VARIABLE: &str = "CERTINEL_FUZZ_CASES";

/// The most one case may take before it counts as a hang. Cases take milliseconds; the
/// margin is for CI running the whole suite on two shared cores with an unoptimised build.
/// The quadratic STARTTLS read this caught took 10.7 s for one case.
pub const CASE_TIME_LIMIT: Duration = Duration::from_secs(5);

/// The proptest configuration of one property: `default_cases` cases unless
/// `CERTINEL_FUZZ_CASES` says otherwise. Failures are not persisted to files: a failure
/// found here becomes a named regression test next to the code it breaks.
pub fn config(default_cases: u32) -> Config {
    let cases = std::env::var(CASES_VARIABLE)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        // Shrinking a slow case can take long; a bounded number of steps still gives a
        // small input to keep as a regression test.
        max_shrink_iters: 2_000,
        ..Config::default()
    }
}

/// Runs `case`, failing when it takes longer than [`CASE_TIME_LIMIT`] of wall-clock time.
pub fn within_time_limit<T>(what: &str, case: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = case();
    let elapsed = started.elapsed();
    assert!(
        elapsed < CASE_TIME_LIMIT,
        "{what} took {elapsed:?}, more than the {CASE_TIME_LIMIT:?} case limit"
    );
    result
}

/// HTTP dates (and near misses) at the edges of what `time` can represent.
pub const HTTP_DATES: &[&str] = &[
    "Fri, 27 Nov 2026 04:00:00 GMT",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Mon, 01 Jan 0001 00:00:00 GMT",
    "Thu, 01 Jan 1970 00:00:00 GMT",
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "Sun, 06 Nov 1994 08:49:37 +2359",
    "Sun, 06 Nov 1994 08:49:37 -2359",
    "Sunday, 06-Nov-94 08:49:37 GMT",
    "Sun Nov  6 08:49:37 1994",
    "31 Feb 2026 00:00:00 GMT",
    "",
];

/// Timestamps (RFC 3339 and near misses) at the edges of what `time` can represent.
pub const TIMESTAMPS: &[&str] = &[
    "2026-12-03T07:00:00Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999999-23:59",
    "0000-01-01T00:00:00+23:59",
    "0000-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-12-03T07:00:60Z",
    "2026-12-03 07:00:00Z",
    "2026-12-03T07:00:00",
    "",
];

/// Arbitrary JSON: scalars (with edge-case strings) nested in arrays and objects.
pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        prop::sample::select(TIMESTAMPS).prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
        "[a-zA-Z:/._-]{0,24}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-zA-Z]{0,12}", inner, 0..6)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}
