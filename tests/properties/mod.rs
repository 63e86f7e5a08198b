//! Property tests: arbitrary and mutated input never makes a parser or reader panic, hang or
//! buffer without bound. A fixed number of cases per property keeps CI fast;
//! `CERTINEL_FUZZ_CASES` asks for more (`scripts/fuzz` runs them long).

use std::time::{Duration, Instant};

use proptest::test_runner::Config as ProptestConfig;

/// The configuration loader on arbitrary bytes, arbitrary TOML and mutated shipped configs.
mod config;
/// PEM/DER certificate files and chain inspection on mutated real chains.
mod files;
/// The real `/probe` route over loopback HTTP with arbitrary queries and headers.
mod probe_http;
/// The `/probe` query: target, module and hostname parameters and the scrape-timeout header.
mod probe_query;
/// Every STARTTLS reader against arbitrary server bytes over an in-memory stream.
mod starttls;

/// The environment variable that overrides every property's case count.
pub const CASES_VARIABLE: &str = "CERTINEL_FUZZ_CASES";

/// The proptest configuration of one property: `default_cases` cases unless
/// `CERTINEL_FUZZ_CASES` says otherwise. Failures are not persisted to files: a failure
/// found here becomes a named regression test next to the code it breaks.
pub fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var(CASES_VARIABLE)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        // Shrinking a slow case can take long; a bounded number of steps still gives a
        // small input to keep as a regression test.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// The most one case may take before it counts as a hang. Cases take milliseconds; the
/// margin is for CI running the whole suite on two shared cores with an unoptimised build.
/// The quadratic STARTTLS read this caught took 10.7 s for one case.
pub const CASE_TIME_LIMIT: Duration = Duration::from_secs(5);

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
