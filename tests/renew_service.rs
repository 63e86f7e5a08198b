//! Renewals inside `certinel run` and the per-certificate lock, against a real Pebble.

use std::path::{Path, PathBuf};

use certinel::store::{FsStore, Store};

use crate::common::cli::{certinel_command, output_text, run_certinel};
use crate::common::config_text::{http01_certificate, pebble_acme_table, write_config_file};
use crate::common::eventually::eventually;
use crate::common::pebble::Pebble;
use crate::common::service::Service;

/// Writes a configuration with one http-01 certificate `api` into `dir`; returns its path
/// and the state directory.
fn write_config(dir: &Path, pebble: &Pebble, deploy: &[&str]) -> (PathBuf, PathBuf) {
    let state_dir = dir.join("state");
    let extra = format!("deploy = {deploy:?}\ndeploy_timeout = \"60s\"\n");
    let text = pebble_acme_table(&state_dir, pebble)
        + &http01_certificate("api", pebble.http_addr(), &extra);
    (write_config_file(dir, &text), state_dir)
}

#[tokio::test]
async fn run_issues_a_missing_certificate_at_start() {
    let pebble = Pebble::start_with_validity(3600).await;
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
    let pebble = Pebble::start_with_validity(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, state_dir) = write_config(dir.path(), &pebble, &[]);

    let held = FsStore::new(&state_dir).lock("api").unwrap();
    let output = run_certinel(&["renew", "api"], &config).await;
    let text = output_text(&output);
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
    let pebble = Pebble::start_with_validity(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("hook-started");
    let hook = format!("touch {} && sleep 30", marker.display());
    let (config, state_dir) = write_config(dir.path(), &pebble, &[&hook]);

    let mut first = certinel_command(&["renew", "api"], &config)
        .kill_on_drop(true)
        .spawn()
        .expect("run certinel");
    // The hook announces itself through the marker file; poll it, bounded.
    eventually(std::time::Duration::from_secs(60), async || {
        marker
            .exists()
            .then_some(())
            .ok_or("the deploy hook has not started")
    })
    .await;
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
    let second = run_certinel(&["renew", "api"], &config).await;
    assert!(second.status.success(), "{}", output_text(&second));
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

/// Writes a configuration with `count` http-01 certificates `c0`, `c1`... that all answer on
/// Pebble's one http-01 address, as `listen = "0.0.0.0:80"` does in production.
fn write_shared_listen_config(dir: &Path, pebble: &Pebble, count: usize) -> PathBuf {
    let mut text = pebble_acme_table(&dir.join("state"), pebble);
    for index in 0..count {
        text += &http01_certificate(&format!("c{index}"), pebble.http_addr(), "");
    }
    write_config_file(dir, &text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_issues_five_certificates_sharing_one_http01_listener_concurrently() {
    use std::time::Duration;

    use crate::common::service::{get, sample};

    const CERTIFICATES: usize = 5;
    let pebble = Pebble::start_with_validity(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_shared_listen_config(dir.path(), &pebble, CERTIFICATES);
    let config = certinel::config::load(&config).expect("test configuration loads");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    // The default renewer: a collision on the address would back off for minutes, far
    // beyond this test's patience.
    let service = tokio::spawn(certinel::service::run(config, listener, shutdown.clone()));

    let value = |body: &str, series: String| sample(body, &series).unwrap_or(-1.0);
    let all_current = |body: &str| {
        (0..CERTIFICATES).all(|index| {
            value(
                body,
                format!("certinel_certificate_ready{{name=\"c{index}\"}}"),
            ) == 1.0
        })
    };
    let body = eventually(Duration::from_secs(90), async || {
        let reply = get(addr, "/metrics", &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        if all_current(&reply.body) {
            return Ok(reply.body);
        }
        Err(format!(
            "not every certificate is current; Pebble:\n{}\n/metrics:\n{}",
            pebble.log(),
            reply.body
        ))
    })
    .await;
    for index in 0..CERTIFICATES {
        let renewals = |outcome: &str| {
            value(
                &body,
                format!(
                    "certinel_certificate_renewals_total{{name=\"c{index}\",outcome=\"{outcome}\"}}"
                ),
            )
        };
        assert_eq!(renewals("success"), 1.0, "c{index}:\n{body}");
        assert!(
            renewals("failure") <= 0.0,
            "c{index} failed before succeeding:\n{body}"
        );
        let current = dir
            .path()
            .join(format!("state/certs/c{index}/current/fullchain.pem"));
        assert!(current.is_file(), "{}", current.display());
    }
    // The shared listener is gone once every order is done.
    tokio::net::TcpStream::connect(pebble.http_addr())
        .await
        .expect_err("the http-01 listener closed after the last order");

    shutdown.cancel();
    service.await.unwrap().expect("the service stops cleanly");
}
