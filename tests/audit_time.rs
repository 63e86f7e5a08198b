//! The audit log stamps each renewal step with the moment it happened, in order: with the
//! renewer's injected clock (deterministic), and through the real binary, where a slow
//! deploy command separates the steps.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use certinel::renew::{Clock, RenewOptions, RenewOutcome, Renewer};
use time::{Duration, OffsetDateTime};

use crate::common::cli::{output_text, run_certinel};
use crate::common::config_text::{http01_certificate, pebble_acme_table, write_config_file};
use crate::common::pebble::Pebble;

/// A clock that moves one minute forward every time it is read.
struct MinutePerRead(Mutex<OffsetDateTime>);

impl Clock for MinutePerRead {
    fn now(&self) -> OffsetDateTime {
        let mut next = self.0.lock().unwrap();
        let now = *next;
        *next += Duration::minutes(1);
        now
    }
}

/// A configuration with one http-01 certificate `api` running `deploy`.
fn write_config(dir: &Path, pebble: &Pebble, deploy: &[&str]) -> PathBuf {
    let extra = format!("deploy = {deploy:?}\ndeploy_timeout = \"10s\"\n");
    let text = pebble_acme_table(&dir.join("state"), pebble)
        + &http01_certificate("api", pebble.http_addr(), &extra);
    write_config_file(dir, &text)
}

/// The audit log as (step, time) pairs.
fn stamped_steps(state_dir: &Path) -> Vec<(String, OffsetDateTime)> {
    let text = std::fs::read_to_string(state_dir.join("audit.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            let time = OffsetDateTime::parse(
                event["time"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            (event["step"].as_str().unwrap().to_owned(), time)
        })
        .collect()
}

#[tokio::test]
async fn each_audit_line_carries_the_injected_clock_at_its_step() {
    let pebble = Pebble::start_with_validity(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let config = certinel::config::load(&write_config(dir.path(), &pebble, &[])).unwrap();
    let run_now = OffsetDateTime::now_utc();
    let clock = Arc::new(MinutePerRead(Mutex::new(run_now)));
    let renewer = Renewer::new(&config).with_clock(clock);

    let outcome = renewer.renew("api", RenewOptions::default(), run_now).await;
    assert!(
        matches!(outcome, Ok(RenewOutcome::Renewed { .. })),
        "{outcome:?}"
    );
    let steps = stamped_steps(&config.state_dir);
    let names: Vec<&str> = steps.iter().map(|(step, _)| step.as_str()).collect();
    assert_eq!(
        names,
        ["begin", "order", "pending", "deployed", "verified", "done"]
    );
    for pair in steps.windows(2) {
        assert!(pair[0].1 < pair[1].1, "in time order: {steps:?}");
    }
    for (step, time) in &steps {
        let offset = *time - run_now;
        assert!(
            offset > Duration::ZERO && offset.whole_seconds() % 60 == 0,
            "{step} at whole clock minutes after the run began: {steps:?}"
        );
    }
}

#[tokio::test]
async fn audit_lines_of_one_renewal_are_stamped_when_each_step_happened() {
    let pebble = Pebble::start_with_validity(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &pebble, &["sleep 1.2"]);
    let output = run_certinel(&["renew", "api"], &config).await;
    assert!(output.status.success(), "{}", output_text(&output));
    let steps = stamped_steps(&dir.path().join("state"));
    for pair in steps.windows(2) {
        assert!(pair[0].1 <= pair[1].1, "in time order: {steps:?}");
    }
    let at = |wanted: &str| {
        steps
            .iter()
            .find(|(step, _)| step == wanted)
            .map(|(_, time)| *time)
            .unwrap_or_else(|| panic!("no {wanted} line: {steps:?}"))
    };
    assert!(
        at("deployed") - at("pending") >= Duration::seconds(1),
        "the deploy command took over a second: {steps:?}"
    );
}
