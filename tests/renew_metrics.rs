//! The renewal metrics of an in-process `certinel run` against a real Pebble issuing
//! short-lived certificates: renewals when the window opens, failures while the CA hangs and
//! recovery after, certificate tasks following configuration reloads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use certinel::acme::RetryPolicy;
use certinel::renew::Renewer;
use certinel::service::{ServiceOptions, run_with_options};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::common::config_text::{http01_certificate, pebble_acme_table, write_config_file};
use crate::common::pebble::{Pebble, PebbleOptions};
use crate::common::service::{metrics_until, promtool_check, sample};

/// How long one awaited change of `/metrics` may take.
const PATIENCE: Duration = Duration::from_secs(90);

/// One managed certificate of a test configuration.
struct Managed<'a> {
    name: &'a str,
    renew_before: &'a str,
}

/// Writes (or rewrites) `dir/certinel.toml` with http-01 `certificates` from `pebble`.
fn write_config(dir: &Path, pebble: &Pebble, certificates: &[Managed<'_>]) -> PathBuf {
    let mut text = pebble_acme_table(&dir.join("state"), pebble);
    for certificate in certificates {
        let extra = format!("renew_before = {:?}\n", certificate.renew_before);
        text += &http01_certificate(certificate.name, pebble.http_addr(), &extra);
    }
    write_config_file(dir, &text)
}

/// `certinel run` inside the test, its renewers retrying fast; stopped when dropped.
struct InProcess {
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl InProcess {
    async fn start(config: &Path) -> InProcess {
        let config = certinel::config::load(config).expect("test configuration loads");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shutdown = CancellationToken::new();
        let options = ServiceOptions {
            renewer: Arc::new(|config| {
                // A hung CA costs about a second per attempt, and a failure is retried after
                // 1 s, 2 s, 4 s... instead of 5 min, 10 min...
                Renewer::new(config)
                    .with_retry_policy(RetryPolicy {
                        max_attempts: 2,
                        base_delay: Duration::from_millis(100),
                        max_delay: Duration::from_millis(200),
                        max_retry_after: Duration::from_secs(1),
                        request_timeout: Duration::from_secs(1),
                    })
                    .with_backoff_base(Duration::from_secs(1))
            }),
            ..ServiceOptions::default()
        };
        tokio::spawn(run_with_options(
            config,
            listener,
            shutdown.clone(),
            Arc::new(Notify::new()),
            options,
        ));
        InProcess { addr, shutdown }
    }

    /// Polls `/metrics` until `condition` holds for its body, which is returned.
    async fn metrics_until(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        metrics_until(self.addr, PATIENCE, what, condition).await
    }
}

/// `certinel run` in process with certificate `api` (renewed 50 s before expiry) in
/// `dir`, once its first issuance shows in /metrics.
async fn api_issued_in_process(pebble: &Pebble, dir: &Path) -> InProcess {
    let api = Managed {
        name: "api",
        renew_before: "50s",
    };
    let config = write_config(dir, pebble, &[api]);
    let service = InProcess::start(&config).await;
    service
        .metrics_until("first issuance", |body| {
            renewals(body, "api", "success") == 1.0
        })
        .await;
    service
}

fn value(body: &str, series: &str) -> f64 {
    sample(body, series).unwrap_or(-1.0)
}

fn renewals(body: &str, name: &str, outcome: &str) -> f64 {
    value(
        body,
        &format!("certinel_certificate_renewals_total{{name=\"{name}\",outcome=\"{outcome}\"}}"),
    )
}

fn consecutive_failures(body: &str, name: &str) -> f64 {
    value(
        body,
        &format!("certinel_certificate_renewal_consecutive_failures{{name=\"{name}\"}}"),
    )
}

fn ready(body: &str, name: &str) -> f64 {
    value(
        body,
        &format!("certinel_certificate_ready{{name=\"{name}\"}}"),
    )
}

async fn short_lived_pebble(validity_seconds: u64) -> Pebble {
    Pebble::start(PebbleOptions {
        validity_seconds: Some(validity_seconds),
        ..PebbleOptions::default()
    })
    .await
}

fn assert_promtool_accepts(body: &str) {
    let (code, output) = promtool_check(body);
    assert_eq!(code, 0, "promtool check metrics:\n{output}\n{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_renews_when_the_window_opens_and_metrics_show_two_successes() {
    // 40 s certificates renewed 30 s before expiry: the window opens 7 to 10 s after issue.
    let pebble = short_lived_pebble(40).await;
    let dir = tempfile::tempdir().unwrap();
    let api = Managed {
        name: "api",
        renew_before: "30s",
    };
    let config = write_config(dir.path(), &pebble, &[api]);
    let service = InProcess::start(&config).await;

    let body = service
        .metrics_until("two successful renewals", |body| {
            renewals(body, "api", "success") >= 2.0 && ready(body, "api") == 1.0
        })
        .await;
    assert_eq!(renewals(&body, "api", "failure"), 0.0, "{body}");
    assert_eq!(consecutive_failures(&body, "api"), 0.0, "{body}");
    for family in [
        "certinel_certificate_not_after_timestamp_seconds{name=\"api\"}",
        "certinel_certificate_expiry_seconds{name=\"api\"}",
        "certinel_certificate_lifetime_seconds{name=\"api\"}",
        "certinel_certificate_renewal_scheduled_timestamp_seconds{name=\"api\"}",
        "certinel_certificate_last_renewal_success_timestamp_seconds{name=\"api\"}",
        "certinel_certificate_last_renewal_attempt_timestamp_seconds{name=\"api\"}",
    ] {
        assert!(sample(&body, family).is_some(), "{family} missing:\n{body}");
    }
    assert!(
        body.lines().any(
            |line| line.starts_with("certinel_certificate_info{name=\"api\",serial=")
                && line.contains("dns_names=\"api.certinel.test\"")
                && line.contains("version=\"v0002\"")
        ),
        "info names the second version:\n{body}"
    );
    assert!(
        value(
            &body,
            "certinel_acme_requests_total{endpoint=\"new_order\",status=\"201\",ca=\"acme\"}"
        ) >= 2.0,
        "{body}"
    );
    assert!(
        body.contains(
            "certinel_acme_request_duration_seconds_bucket{endpoint=\"finalize\",ca=\"acme\",le=\"+Inf\"}"
        ),
        "{body}"
    );
    assert_promtool_accepts(&body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_ca_shows_failures_then_a_success_resets_the_streak() {
    // 60 s certificates renewed 50 s before expiry: the first renewal is due 5 to 10 s
    // after issue, while Pebble is frozen.
    let pebble = short_lived_pebble(60).await;
    let dir = tempfile::tempdir().unwrap();
    let service = api_issued_in_process(&pebble, dir.path()).await;

    pebble.pause();
    let body = service
        .metrics_until("failed renewals while Pebble is frozen", |body| {
            renewals(body, "api", "failure") >= 2.0 && consecutive_failures(body, "api") >= 2.0
        })
        .await;
    let failures: Vec<&str> = body
        .lines()
        .filter(|line| {
            line.starts_with("certinel_certificate_renewal_failures_total{name=\"api\",stage=")
                && line.contains(",problem=")
        })
        .collect();
    assert!(
        !failures.is_empty(),
        "no failure by stage and problem:\n{body}"
    );
    assert_eq!(
        ready(&body, "api"),
        1.0,
        "the first version still serves:\n{body}"
    );
    assert!(
        body.lines()
            .any(|line| line.starts_with("certinel_acme_requests_total{")
                && line.contains("status=\"network\"")),
        "{body}"
    );
    assert_promtool_accepts(&body);

    pebble.resume();
    let body = service
        .metrics_until("a success after Pebble is back", |body| {
            renewals(body, "api", "success") >= 2.0 && consecutive_failures(body, "api") == 0.0
        })
        .await;
    assert_eq!(ready(&body, "api"), 1.0, "{body}");
    let last_success = value(
        &body,
        "certinel_certificate_last_renewal_success_timestamp_seconds{name=\"api\"}",
    );
    let last_attempt = value(
        &body,
        "certinel_certificate_last_renewal_attempt_timestamp_seconds{name=\"api\"}",
    );
    assert_eq!(
        last_success, last_attempt,
        "the last attempt succeeded:\n{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_added_by_a_reload_is_issued_and_a_removed_one_leaves_metrics() {
    let pebble = short_lived_pebble(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let api = || Managed {
        name: "api",
        renew_before: "20m",
    };
    let config = write_config(dir.path(), &pebble, &[api()]);
    let service = InProcess::start(&config).await;
    service
        .metrics_until("api issued", |body| ready(body, "api") == 1.0)
        .await;

    let extra = Managed {
        name: "extra",
        renew_before: "20m",
    };
    write_config(dir.path(), &pebble, &[api(), extra]);
    let body = service
        .metrics_until("extra issued after the reload", |body| {
            ready(body, "extra") == 1.0 && renewals(body, "extra", "success") == 1.0
        })
        .await;
    assert_eq!(
        renewals(&body, "api", "success"),
        1.0,
        "api untouched:\n{body}"
    );
    assert!(
        dir.path()
            .join("state/certs/extra/current/fullchain.pem")
            .is_file()
    );

    write_config(dir.path(), &pebble, &[api()]);
    let body = service
        .metrics_until("extra gone after the second reload", |body| {
            !body.contains("name=\"extra\"")
        })
        .await;
    assert_eq!(ready(&body, "api"), 1.0, "{body}");
    assert_promtool_accepts(&body);
}

/// The one ACME credentials file under `state/acme/`: its text and permission bits.
fn account_file(dir: &Path) -> (String, u32) {
    use std::os::unix::fs::PermissionsExt;
    let acme = dir.join("state/acme");
    let files: Vec<PathBuf> = std::fs::read_dir(&acme)
        .expect("state/acme exists")
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one credentials file, no temporary: {files:?}"
    );
    let text = std::fs::read_to_string(&files[0]).expect("read credentials");
    let mode = std::fs::metadata(&files[0])
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    (text, mode)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_ca_that_forgot_the_account_gets_a_new_one_and_renewals_resume() {
    // 60 s certificates renewed 50 s before expiry: the first renewal is due 5 to 10 s
    // after issue, while Pebble is down.
    let mut pebble = short_lived_pebble(60).await;
    let dir = tempfile::tempdir().unwrap();
    let service = api_issued_in_process(&pebble, dir.path()).await;
    let (credentials_before, _) = account_file(dir.path());

    pebble.kill();
    let body = service
        .metrics_until("a failed renewal while Pebble is down", |body| {
            renewals(body, "api", "failure") >= 1.0 && consecutive_failures(body, "api") >= 1.0
        })
        .await;
    assert!(
        body.lines().any(|line| line.starts_with(
            "certinel_certificate_renewal_failures_total{name=\"api\",stage=\"order\",problem=\"network\",ca=\"acme\"}"
        )),
        "the failure is labelled with its stage, problem and CA:\n{body}"
    );

    // Same ports and API certificate; no accounts, a new issuing CA.
    pebble.restart().await;
    let body = service
        .metrics_until("a success with a new account", |body| {
            renewals(body, "api", "success") >= 2.0 && consecutive_failures(body, "api") == 0.0
        })
        .await;
    assert_eq!(ready(&body, "api"), 1.0, "{body}");
    let (credentials_after, mode) = account_file(dir.path());
    assert_ne!(
        credentials_after, credentials_before,
        "the credentials file holds the new account"
    );
    assert_eq!(mode, 0o600, "credentials stay private");
    let audit = std::fs::read_to_string(dir.path().join("state/audit.jsonl")).expect("audit");
    assert!(
        audit
            .lines()
            .any(|line| line.contains("no longer knew account") && line.contains("\"ok\"")),
        "the re-registration is audited:\n{audit}"
    );
    assert!(
        !audit.contains("PRIVATE KEY"),
        "no key material in the audit log"
    );
}
