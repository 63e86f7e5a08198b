//! The renewer against a real Pebble: `certinel renew`, `status` and `rollback` as a user
//! runs them, and the library API where time or crashes are simulated (`now` is an input;
//! an interrupted renewal is left behind through the store API).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certinel::acme::{
    AcmeObserver, AcmeSettings, IssueRequest, NoopObserver, OrderProgress, RetryPolicy,
    finalize_order, issue, load_or_create_account, new_private_key, place_order, prepare_order,
};
use certinel::config::model::CertificateConfig;
use certinel::renew::{RenewError, RenewOptions, RenewOutcome, Renewer};
use certinel::store::{CertStore, FsStore, NewVersion, Origin, SecretPem, Stage, Store, VersionId};
use time::OffsetDateTime;

use crate::common::config_text::{acme_table, http01_certificate, write_config_file};
use crate::common::pebble::{Pebble, PebbleOptions, free_port};

/// Counts the ACME requests a renewer makes, by endpoint.
#[derive(Default)]
struct Recorder {
    endpoints: Mutex<Vec<&'static str>>,
}

impl AcmeObserver for Recorder {
    fn request_done(&self, endpoint: &'static str, _status: &str, _elapsed: Duration) {
        self.endpoints.lock().unwrap().push(endpoint);
    }
}

impl Recorder {
    fn count(&self, endpoint: &str) -> usize {
        let endpoints = self.endpoints.lock().unwrap();
        endpoints.iter().filter(|e| **e == endpoint).count()
    }
}

/// A configuration file with one `[[certificate]]` per entry of `certificates`
/// (name, deploy commands), all answering http-01 where Pebble's validator connects.
struct Setup {
    /// Holds the files; removed when the test ends.
    _dir: tempfile::TempDir,
    config: PathBuf,
    state_dir: PathBuf,
}

impl Setup {
    fn new(directory: &str, pebble: &Pebble, certificates: &[(&str, &[&str])]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let mut text = acme_table(&state_dir, directory, &pebble.api_root);
        for (name, deploy) in certificates {
            let extra = format!("deploy = {deploy:?}\ndeploy_timeout = \"10s\"\n");
            text += &http01_certificate(name, pebble.http_addr(), &extra);
        }
        let config = write_config_file(dir.path(), &text);
        Setup {
            _dir: dir,
            config,
            state_dir,
        }
    }

    fn renewer(&self) -> Renewer {
        let config = certinel::config::load(&self.config).unwrap_or_else(|e| panic!("{e}"));
        Renewer::new(&config)
    }

    fn certificate(&self, name: &str) -> CertificateConfig {
        let config = certinel::config::load(&self.config).unwrap();
        config
            .certificates
            .into_iter()
            .find(|c| c.name == name)
            .unwrap()
    }

    fn store(&self) -> CertStore {
        CertStore::open(&self.state_dir).unwrap()
    }

    /// Runs the real binary with `args` and `--config`.
    async fn certinel(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_certinel"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .output()
            .await
            .expect("run certinel")
    }

    /// The audit log as (certificate, step, outcome) triples.
    fn audit(&self) -> Vec<(String, String, String)> {
        let text = std::fs::read_to_string(self.state_dir.join("audit.jsonl")).unwrap_or_default();
        assert!(
            !text.contains("PRIVATE KEY"),
            "no key material in the audit log"
        );
        text.lines()
            .map(|line| {
                let event: serde_json::Value = serde_json::from_str(line).expect("JSON line");
                let field = |key: &str| event[key].as_str().unwrap_or_default().to_owned();
                (field("certificate"), field("step"), field("outcome"))
            })
            .collect()
    }

    fn steps(&self, name: &str) -> Vec<String> {
        self.audit()
            .into_iter()
            .filter(|(certificate, _, _)| certificate == name)
            .map(|(_, step, outcome)| format!("{step}:{outcome}"))
            .collect()
    }

    async fn status_json(&self) -> serde_json::Value {
        let output = self.certinel(&["status", "--output", "json"]).await;
        assert!(output.status.success(), "{}", text(&output));
        serde_json::from_slice(&output.stdout).expect("status JSON")
    }
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts that a certinel run exited 0 and its standard output starts with `first_words`.
#[track_caller]
fn assert_succeeded_saying(output: &Output, first_words: &str) {
    assert_eq!(output.status.code(), Some(0), "{}", text(output));
    assert!(stdout(output).starts_with(first_words), "{}", text(output));
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn pebble(validity_seconds: u64) -> Pebble {
    Pebble::start(PebbleOptions {
        validity_seconds: Some(validity_seconds),
        ..PebbleOptions::default()
    })
    .await
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

const FULL_RENEWAL: [&str; 6] = [
    "begin:ok",
    "order:ok",
    "pending:ok",
    "deployed:ok",
    "verified:ok",
    "done:ok",
];

#[tokio::test]
async fn renew_cli_issues_over_http01_then_is_not_due_and_status_shows_it() {
    let pebble = pebble(3600).await;
    let setup = Setup::new(&pebble.directory_url, &pebble, &[("api", &[])]);

    let first = setup.certinel(&["renew", "api"]).await;
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}\n{}",
        text(&first),
        pebble.log()
    );
    assert!(
        stdout(&first).starts_with("api: renewed to v0001"),
        "{}",
        text(&first)
    );

    let current = setup.state_dir.join("certs/api/current");
    for file in ["cert.pem", "chain.pem", "fullchain.pem", "key.pem"] {
        assert!(current.join(file).is_file(), "{file} in current/");
    }
    let mode = std::fs::metadata(current.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key.pem is private");
    assert_eq!(setup.steps("api"), FULL_RENEWAL);

    let second = setup.certinel(&["renew", "api"]).await;
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert!(stdout(&second).contains("not due"), "{}", text(&second));
    assert!(stdout(&second).contains("(scheduled)"), "{}", text(&second));
    assert_eq!(
        setup.steps("api").len(),
        FULL_RENEWAL.len(),
        "NotDue is no step"
    );

    let status = setup.status_json().await;
    let api = &status[0];
    assert_eq!(api["name"], "api");
    assert_eq!(api["version"], "v0001");
    assert_eq!(api["last_outcome"], "success");
    assert_eq!(api["consecutive_failures"], 0);
    assert_eq!(api["next_renewal_reason"], "scheduled");
    assert_eq!(api["days_left"], 0, "a one-hour certificate");
    assert!(api["serial"].as_str().is_some_and(|s| !s.is_empty()));

    let table = setup.certinel(&["status"]).await;
    let table = stdout(&table);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("NEXT RENEWAL"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("api") && lines[1].contains("v0001"),
        "{table}"
    );
    assert!(lines[1].contains("success"), "{table}");
}

#[tokio::test]
async fn force_renews_and_rollback_restores_the_previous_version() {
    let pebble = pebble(3600).await;
    let setup = Setup::new(&pebble.directory_url, &pebble, &[("api", &[])]);
    assert!(setup.certinel(&["renew", "api"]).await.status.success());

    let forced = setup.certinel(&["renew", "api", "--force"]).await;
    assert_succeeded_saying(&forced, "api: renewed to v0002");
    let store = setup.store();
    assert_eq!(store.current("api").unwrap(), Some(VersionId(2)));
    assert_eq!(store.previous("api").unwrap(), Some(VersionId(1)));

    let rollback = setup.certinel(&["rollback", "api"]).await;
    assert_eq!(rollback.status.code(), Some(0), "{}", text(&rollback));
    assert_eq!(
        stdout(&rollback).trim(),
        "api: rolled back from v0002 to v0001"
    );
    assert_eq!(store.current("api").unwrap(), Some(VersionId(1)));
    let steps = setup.steps("api");
    assert_eq!(steps[steps.len() - 2..], ["rollback:ok", "deployed:ok"]);
}

#[tokio::test]
async fn renewal_window_opening_renews_and_previous_points_at_the_old_version() {
    // One hour of validity: the default policy renews at half the lifetime, minus at most
    // a tenth of that as jitter, so 35 minutes later the window is open.
    let pebble = pebble(3600).await;
    let setup = Setup::new(&pebble.directory_url, &pebble, &[("api", &[])]);
    let renewer = setup.renewer();
    let start = now();

    let first = renewer.renew("api", RenewOptions::default(), start).await;
    assert_eq!(renewed_version(&first), Some(VersionId(1)), "{first:?}");
    let early = start + time::Duration::minutes(20);
    let not_due = renewer.renew("api", RenewOptions::default(), early).await;
    let Ok(RenewOutcome::NotDue { renew_at, .. }) = not_due else {
        panic!("not due 20 minutes in: {not_due:?}");
    };
    assert!(renew_at > early && renew_at <= start + time::Duration::minutes(31));

    let later = start + time::Duration::minutes(35);
    let second = renewer.renew("api", RenewOptions::default(), later).await;
    assert_eq!(renewed_version(&second), Some(VersionId(2)), "{second:?}");
    let store = setup.store();
    assert_eq!(store.current("api").unwrap(), Some(VersionId(2)));
    assert_eq!(store.previous("api").unwrap(), Some(VersionId(1)));
}

#[tokio::test]
async fn failing_deploy_command_rolls_back_and_counts_a_failure() {
    let pebble = pebble(3600).await;
    // The command fails for the second version only, so the restored one deploys fine.
    let hook = "if [ \"$CERTINEL_VERSION\" = v0002 ]; then echo refused >&2; exit 3; fi";
    let setup = Setup::new(&pebble.directory_url, &pebble, &[("api", &[hook])]);
    assert!(setup.certinel(&["renew", "api"]).await.status.success());

    let failed = setup.certinel(&["renew", "api", "--force"]).await;
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let line = stdout(&failed);
    assert!(
        line.starts_with("api: renew failed at stage deploy (problem hook): ")
            && line.contains("exit status 3: refused")
            && line.contains("rolled back to v0001"),
        "{line}"
    );
    let store = setup.store();
    assert_eq!(store.current("api").unwrap(), Some(VersionId(1)));
    assert!(store.inflight("api").unwrap().is_none());
    let steps = setup.steps("api");
    // The restored version is deployed again, so the servers load it back.
    assert_eq!(
        steps[steps.len() - 3..],
        ["deployed:error", "rollback:ok", "deployed:ok"]
    );

    let status = setup.status_json().await;
    assert_eq!(status[0]["version"], "v0001");
    assert_eq!(status[0]["last_outcome"], "failure");
    assert_eq!(status[0]["consecutive_failures"], 1);
    // The 5-minute backoff ends before v0001's window opens, so the window decides.
    assert_eq!(status[0]["next_renewal_reason"], "scheduled");
}

#[tokio::test]
async fn dry_run_runs_the_hook_with_dry_run_set_and_keeps_only_a_reused_account_in_the_state_dir() {
    let pebble = pebble(3600).await;
    let env_file = tempfile::tempdir().unwrap();
    let env_path = env_file.path().join("env");
    let hook = format!("env | grep ^CERTINEL_ | sort > {}", env_path.display());
    let setup = Setup::new(&pebble.directory_url, &pebble, &[("api", &[hook.as_str()])]);

    let dry = setup.certinel(&["renew", "api", "--dry-run"]).await;
    assert_succeeded_saying(&dry, "api: dry run issued v0001");
    // Only the dry-run account is kept, and a second dry run reuses it.
    let accounts = setup.state_dir.join("dry-run/accounts");
    let account_files = || {
        let mut names: Vec<_> = std::fs::read_dir(&accounts)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let after_first = account_files();
    assert_eq!(after_first.len(), 1, "{after_first:?}");
    assert_eq!(
        std::fs::read_dir(&setup.state_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect::<Vec<_>>(),
        ["dry-run"],
        "the dry run wrote nothing else into the state directory"
    );
    let again = setup.certinel(&["renew", "api", "--dry-run"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(
        account_files(),
        after_first,
        "the second dry run made a new account"
    );
    let env = std::fs::read_to_string(&env_path).expect("the hook ran");
    assert!(env.contains("CERTINEL_DRY_RUN=1\n"), "{env}");
    assert!(env.contains("CERTINEL_NAME=api\n"), "{env}");
    assert!(env.contains("CERTINEL_VERSION=v0001\n"), "{env}");
    let key_line = env
        .lines()
        .find(|l| l.starts_with("CERTINEL_KEY="))
        .unwrap();
    assert!(!key_line.starts_with(&format!("CERTINEL_KEY={}", setup.state_dir.display())));
    let scratch = Path::new(key_line.trim_start_matches("CERTINEL_KEY="));
    assert!(
        !scratch.exists(),
        "the scratch directory is removed afterwards"
    );
}

#[tokio::test]
async fn unreachable_ca_fails_at_account_with_network_then_renews_when_back() {
    let pebble = pebble(3600).await;
    let nowhere = format!("https://127.0.0.1:{}/dir", free_port());
    let down = Setup::new(&nowhere, &pebble, &[("api", &[])]);
    let renewer = down.renewer().with_retry_policy(RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(50),
        ..RetryPolicy::default()
    });
    let start = now();
    let error = renewer
        .renew("api", RenewOptions::default(), start)
        .await
        .expect_err("nothing listens there");
    assert_eq!(
        (error.stage(), error.problem()),
        ("account", "network"),
        "{error}"
    );
    assert!(
        down.store().inflight("api").unwrap().is_none(),
        "no in-flight record"
    );

    // The CLI says the same in one line and exits 1 (a second failure, in backoff: forced).
    let failed = down.certinel(&["renew", "api", "--force"]).await;
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(
        stdout(&failed).starts_with("api: renew failed at stage account (problem network): "),
        "{}",
        text(&failed)
    );
    let status = down.status_json().await;
    assert_eq!(status[0]["consecutive_failures"], 2);
    assert_eq!(status[0]["next_renewal_reason"], "backoff");

    // The CA is back (here: the configuration points at it); the backoff holds until it
    // ends, then the renewal succeeds and the failure count resets.
    let text_back = std::fs::read_to_string(&down.config)
        .unwrap()
        .replace(&nowhere, &pebble.directory_url);
    std::fs::write(&down.config, text_back).unwrap();
    let back = down.renewer();
    let held = back.renew("api", RenewOptions::default(), start).await;
    assert!(matches!(held, Ok(RenewOutcome::NotDue { .. })), "{held:?}");
    let after_backoff = start + time::Duration::minutes(11);
    let renewed = back
        .renew("api", RenewOptions::default(), after_backoff)
        .await;
    assert!(
        matches!(renewed, Ok(RenewOutcome::Renewed { .. })),
        "{renewed:?}"
    );
    let status = down.status_json().await;
    assert_eq!(status[0]["consecutive_failures"], 0);
    assert_eq!(status[0]["last_outcome"], "success");
}

/// The version a renewal produced; `None` for any other outcome or an error.
fn renewed_version(outcome: &Result<RenewOutcome, RenewError>) -> Option<VersionId> {
    match outcome {
        Ok(RenewOutcome::Renewed { version, .. }) => Some(*version),
        _ => None,
    }
}

/// Issues a certificate for `certificate` outside the renewer and stores it as pending,
/// as a renewal that crashed right after `stage_pending` would have.
async fn stage_issued(
    setup: &Setup,
    pebble: &Pebble,
    certificate: &CertificateConfig,
) -> VersionId {
    let account = load_or_create_account(
        &settings(pebble),
        FsStore::new(&setup.state_dir).accounts(),
        Arc::new(NoopObserver),
    )
    .await
    .unwrap();
    let issued = issue(&account, &request(certificate)).await.unwrap();
    let origin = Origin {
        created_at: now(),
        source: pebble.directory_url.clone(),
    };
    setup
        .store()
        .stage_pending(
            &certificate.name,
            NewVersion {
                key_pem: &issued.key_pem,
                chain_pem: &issued.cert_chain_pem,
                origin: &origin,
            },
        )
        .unwrap()
        .version
}

fn settings(pebble: &Pebble) -> AcmeSettings {
    AcmeSettings {
        ca_file: Some(pebble.api_root.clone()),
        contact: vec!["mailto:ops@certinel.test".into()],
        ..AcmeSettings::new(&pebble.directory_url)
    }
}

fn request(certificate: &CertificateConfig) -> IssueRequest {
    IssueRequest {
        names: certificate.identifiers.clone(),
        key: certificate.key,
        challenge: certificate.challenge.clone(),
        profile: None,
        replaces: None,
    }
}

#[tokio::test]
async fn interrupted_renewals_resume_at_every_stage_without_a_second_order() {
    let pebble = pebble(3600).await;
    let names = [
        "ordered",
        "ordering",
        "keyed",
        "finalized",
        "orphan",
        "pending",
        "deployed",
        "verified",
    ];
    let certificates: Vec<(&str, &[&str])> = names.iter().map(|n| (*n, &[][..])).collect();
    let setup = Setup::new(&pebble.directory_url, &pebble, &certificates);
    let store = setup.store();
    let started = now();

    // Ordering, with the order placed and its URL recorded.
    let ordered = setup.certificate("ordered");
    let account = load_or_create_account(
        &settings(&pebble),
        FsStore::new(&setup.state_dir).accounts(),
        Arc::new(NoopObserver),
    )
    .await
    .unwrap();
    let url = place_order(&account, &request(&ordered)).await.unwrap();
    store.begin("ordered", started).unwrap();
    store.record_order("ordered", &url).unwrap();
    // Ordering, crashed before the order existed.
    store.begin("ordering", started).unwrap();
    // Ordering, the order validated and its key saved; crashed before finalizing, or after
    // finalizing and before the download.
    let mut saved_keys = Vec::new();
    for (name, finalize) in [("keyed", false), ("finalized", true)] {
        let certificate = setup.certificate(name);
        let url = place_order(&account, &request(&certificate)).await.unwrap();
        store.begin(name, started).unwrap();
        store.record_order(name, &url).unwrap();
        let progress = prepare_order(&account, &url, &request(&certificate)).await;
        assert_eq!(progress.unwrap(), OrderProgress::Ready, "{name}");
        let key = SecretPem::new(new_private_key(certificate.key).await.unwrap());
        store.record_key(name, &key).unwrap();
        let record = setup.state_dir.join(format!("certs/{name}/inflight.json"));
        let mode = std::fs::metadata(&record).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}: the record holding the key is private");
        if finalize {
            finalize_order(&account, &url, &request(&certificate), key.expose())
                .await
                .unwrap();
        }
        saved_keys.push((name, key));
    }
    // Ordering, crashed after storing the version but before recording it.
    store.begin("orphan", started).unwrap();
    stage_issued(&setup, &pebble, &setup.certificate("orphan")).await;
    // Pending, deployed and verified, each recorded.
    for (name, stage) in [
        ("pending", Stage::Pending),
        ("deployed", Stage::Deployed),
        ("verified", Stage::Verified),
    ] {
        store.begin(name, started).unwrap();
        let version = stage_issued(&setup, &pebble, &setup.certificate(name)).await;
        if stage >= Stage::Deployed {
            store.promote(name, version).unwrap();
        }
        store.advance(name, stage, version).unwrap();
    }

    let recorder = Arc::new(Recorder::default());
    let renewer = setup.renewer().with_observer(recorder.clone());
    for name in names {
        let before = recorder.count("new_order");
        let outcome = renewer.renew(name, RenewOptions::default(), now()).await;
        assert_eq!(
            renewed_version(&outcome),
            Some(VersionId(1)),
            "{name}: {outcome:?}
{}",
            pebble.log()
        );
        let orders = recorder.count("new_order") - before;
        assert_eq!(
            orders,
            usize::from(name == "ordering"),
            "{name}: new orders placed"
        );
        assert_eq!(store.current(name).unwrap(), Some(VersionId(1)), "{name}");
        assert!(store.inflight(name).unwrap().is_none(), "{name}: finished");
        let steps = setup.steps(name);
        assert_eq!(
            steps.first().map(String::as_str),
            Some("recover:ok"),
            "{name}"
        );
        assert_eq!(steps.last().map(String::as_str), Some("done:ok"), "{name}");
    }
    for (name, key) in saved_keys {
        let live = std::fs::read_to_string(store.current_files(name).unwrap().key).unwrap();
        assert_eq!(
            live,
            key.expose(),
            "{name}: the certificate pairs with the saved key"
        );
    }
}
