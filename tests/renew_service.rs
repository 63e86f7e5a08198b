//! Renewals inside `certinel run` and the per-certificate lock, against a real Pebble.

use std::path::{Path, PathBuf};

use certinel::renew::RenewalLock;

use crate::common::pebble::{Pebble, PebbleOptions};
use crate::common::service::Service;

/// Writes a configuration with one http-01 certificate `api` into `dir`; returns its path
/// and the state directory.
fn write_config(dir: &Path, pebble: &Pebble, deploy: &[&str]) -> (PathBuf, PathBuf) {
    let state_dir = dir.join("state");
    let text = format!(
        "state_dir = {state:?}\n\n[acme]\ndirectory = {directory:?}\nca_file = {ca:?}\n\
         contact = [\"mailto:ops@certinel.test\"]\npoll_timeout = \"60s\"\n\n\
         [[certificate]]\nname = \"api\"\ndns_names = [\"api.certinel.test\"]\n\
         challenge = {{ type = \"http-01\", listen = \"{addr}\" }}\n\
         deploy = {deploy:?}\ndeploy_timeout = \"60s\"\n",
        state = state_dir.display().to_string(),
        directory = pebble.directory_url,
        ca = pebble.api_root.display().to_string(),
        addr = pebble.http_addr(),
    );
    let config = dir.join("certinel.toml");
    std::fs::write(&config, text).unwrap();
    (config, state_dir)
}

async fn pebble() -> Pebble {
    Pebble::start(PebbleOptions {
        validity_seconds: Some(3600),
        ..PebbleOptions::default()
    })
    .await
}

#[tokio::test]
async fn run_issues_a_missing_certificate_at_start() {
    let pebble = pebble().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, state_dir) = write_config(dir.path(), &pebble, &[]);

    let mut service = Service::start(Some(&config)).await;
    let renewed = service.wait_for_log("certificate renewed").await;
    assert_eq!(renewed["fields"]["version"], "v0001", "{renewed}");
    assert!(
        state_dir.join("certs/api/current/fullchain.pem").is_file(),
        "current/ holds the new version"
    );
}

#[tokio::test]
async fn renew_cli_reports_renewal_in_progress_while_the_lock_is_held() {
    let pebble = pebble().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, state_dir) = write_config(dir.path(), &pebble, &[]);

    let held = RenewalLock::try_acquire(&state_dir, "api").unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_certinel"))
        .args(["renew", "api", "--config"])
        .arg(&config)
        .output()
        .await
        .expect("run certinel");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("renewal already in progress"), "{text}");
    assert!(
        !state_dir.join("certs/api/current").exists(),
        "nothing was issued"
    );
    drop(held);
}

/// The audit steps of `api`, as "step:outcome".
fn steps(state_dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(state_dir.join("audit.jsonl")).unwrap_or_default();
    text.lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            format!(
                "{}:{}",
                event["step"].as_str().unwrap_or_default(),
                event["outcome"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn renew_killed_during_its_deploy_hook_resumes_without_a_second_order() {
    let pebble = pebble().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("hook-started");
    let hook = format!("touch {} && sleep 30", marker.display());
    let (config, state_dir) = write_config(dir.path(), &pebble, &[&hook]);

    let mut first = tokio::process::Command::new(env!("CARGO_BIN_EXE_certinel"))
        .args(["renew", "api", "--config"])
        .arg(&config)
        .kill_on_drop(true)
        .spawn()
        .expect("run certinel");
    // The hook announces itself through the marker file; poll it, bounded.
    let started = async {
        while !marker.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), started)
        .await
        .expect("the deploy hook started");
    // SIGKILL: no cleanup runs, exactly like kill -9.
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let orders_before = steps(&state_dir)
        .iter()
        .filter(|s| s.starts_with("order:"))
        .count();
    assert_eq!(orders_before, 1, "{:?}", steps(&state_dir));

    // The second run must not sleep in the hook again.
    let (config, _) = write_config(dir.path(), &pebble, &[]);
    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_certinel"))
        .args(["renew", "api", "--config"])
        .arg(&config)
        .output()
        .await
        .expect("run certinel");
    assert!(
        second.status.success(),
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    let steps = steps(&state_dir);
    assert_eq!(
        steps.iter().filter(|s| s.starts_with("order:")).count(),
        1,
        "{steps:?}"
    );
    assert_eq!(
        steps.last().map(String::as_str),
        Some("done:ok"),
        "{steps:?}"
    );
    assert!(state_dir.join("certs/api/current/fullchain.pem").is_file());
}
