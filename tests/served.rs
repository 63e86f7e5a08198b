//! Served-certificate verification against a real nginx and a real Pebble: a deploy that
//! reloads nginx passes; one that does not is caught, rolled back on disk (nginx then still
//! serves the restored version) or kept, and the drift check reports what is served.
//!
//! Each test issues a first version, starts nginx on `current/fullchain.pem`, then forces a
//! renewal with `verify` pointing at nginx (or renews inside the first version's window).
//! `served_retry.rs` uses the same setup for what later attempts do.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use certinel::config::model::{Config, OnVerifyFailure};
use certinel::renew::rollout_check::{Served, ServedProber};
use certinel::renew::{RenewError, RenewOptions, RenewOutcome, Renewer};
use certinel::service::drift::{ServedStore, check_once};
use certinel::store::{CertStore, NewVersion, Origin, Stage, VersionId};
use time::OffsetDateTime;

use crate::common::config_text::{http01_certificate, pebble_acme_table, write_config_file};
use crate::common::eventually::eventually;
use crate::common::nginx::Nginx;
use crate::common::pebble::{Pebble, PebbleOptions};

/// A state directory with one issued certificate `api`, served by nginx.
pub(crate) struct Setup {
    _dir: tempfile::TempDir,
    _pebble: Pebble,
    config: Config,
    pub(crate) nginx: Nginx,
    first_serial: String,
}

impl Setup {
    pub(crate) async fn new() -> Setup {
        let pebble = Pebble::start(PebbleOptions::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let text = pebble_acme_table(&state_dir, &pebble)
            + &http01_certificate("api", pebble.http_addr(), "deploy_timeout = \"10s\"\n");
        let path = write_config_file(dir.path(), &text);
        let config = certinel::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let first = Renewer::new(&config)
            .renew("api", RenewOptions::default(), OffsetDateTime::now_utc())
            .await
            .unwrap_or_else(|e| panic!("first issuance: {e}\n{}", pebble.log()));
        let RenewOutcome::Renewed { serial, .. } = first else {
            panic!("first issuance: {first:?}");
        };
        let current = state_dir.join("certs/api/current");
        let nginx = Nginx::start(&current.join("fullchain.pem"), &current.join("key.pem")).await;
        Setup {
            _dir: dir,
            _pebble: pebble,
            config,
            nginx,
            first_serial: serial,
        }
    }

    /// The configuration with `verify` on nginx, `deploy` and the failure policy set.
    pub(crate) fn verifying(
        &self,
        deploy: &str,
        timeout: Duration,
        policy: OnVerifyFailure,
    ) -> Config {
        let mut config = self.config.clone();
        let certificate = &mut config.certificates[0];
        certificate.verify = vec![self.nginx.target().parse().unwrap()];
        certificate.deploy = vec![deploy.to_owned()];
        certificate.verify_timeout = timeout;
        certificate.on_verify_failure = policy;
        config
    }

    /// The serial nginx serves now.
    pub(crate) async fn served_serial(&self) -> String {
        let config = self.verifying("true", Duration::from_secs(1), OnVerifyFailure::Keep);
        let prober = ServedProber::new(&config.scanner).unwrap();
        let observed = prober.observe(&config.certificates[0], None).await;
        assert_eq!(observed.len(), 1, "{observed:?}");
        match &observed[0].served {
            Served::Serial(serial) => serial.clone(),
            Served::NoAnswer(error) => {
                panic!("nginx did not answer: {error}\n{}", self.nginx.log())
            }
        }
    }

    /// Waits (at most 10 s) until every new connection gets `expected`: after a reload,
    /// nginx's old worker may still accept a connection or two while it shuts down.
    /// Waits until nginx serves `expected` on five connections in a row: right after a
    /// reload the old worker may still accept a connection or two until it has handled its
    /// quit signal, so one new serial does not mean every connection gets it yet.
    pub(crate) async fn served_serial_settles_on(&self, expected: &str) {
        eventually(Duration::from_secs(10), async || {
            for _ in 0..5 {
                let served = self.served_serial().await;
                if served != expected {
                    return Err(format!(
                        "nginx still serves {served}, not {expected}\n{}",
                        self.nginx.log()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(())
        })
        .await;
    }

    pub(crate) fn store(&self) -> CertStore {
        CertStore::open(&self.config.state_dir).unwrap()
    }

    pub(crate) fn serial_of(&self, version: VersionId) -> String {
        self.store().metadata("api", version).unwrap().serial
    }

    /// The audit log as `step:outcome` lines, and the raw JSON lines.
    pub(crate) fn audit(&self) -> (Vec<String>, Vec<serde_json::Value>) {
        let path: PathBuf = self.config.state_dir.join("audit.jsonl");
        let events: Vec<serde_json::Value> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let steps = events
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["step"].as_str().unwrap(),
                    e["outcome"].as_str().unwrap()
                )
            })
            .collect();
        (steps, events)
    }
}

/// Fails unless `error` says v0002 was not served and v0001 was restored.
pub(crate) fn assert_rolled_back_from_v2(error: &RenewError) {
    assert!(
        matches!(
            error,
            RenewError::Served {
                version: VersionId(2),
                restored: Some(VersionId(1)),
                kept: false,
                ..
            }
        ),
        "{error:?}"
    );
}

/// The failures in a row of the one certificate, as `renewer`'s status says at `at`.
pub(crate) fn consecutive_failures(renewer: &Renewer, at: OffsetDateTime) -> u32 {
    renewer.status(at).unwrap()[0].consecutive_failures
}

/// Now, for status reads that do not depend on the exact moment.
pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

impl Setup {
    /// Fails with the error and nginx's log unless `renewed` stored version `expected`.
    pub(crate) fn assert_renewed_to(
        &self,
        renewed: Result<RenewOutcome, RenewError>,
        expected: VersionId,
    ) {
        match renewed {
            Ok(RenewOutcome::Renewed { version, .. }) if version == expected => {}
            other => panic!(
                "expected v{expected:?}, got {other:?}\n{}",
                self.nginx.log()
            ),
        }
    }
}

/// Fails unless `renewed` failed because nginx does not serve the new version and that
/// version was kept; returns the error.
pub(crate) fn assert_kept_unserved(renewed: Result<RenewOutcome, RenewError>) -> RenewError {
    let error = renewed.expect_err("the new serial is not served");
    assert!(
        matches!(error, RenewError::Served { kept: true, .. }),
        "{error:?}"
    );
    error
}

pub(crate) fn force() -> RenewOptions {
    RenewOptions {
        force: true,
        ..RenewOptions::default()
    }
}

#[tokio::test]
async fn a_deploy_that_reloads_nginx_passes_and_nginx_serves_the_new_serial() {
    let setup = Setup::new().await;
    assert_eq!(setup.served_serial().await, setup.first_serial);
    let config = setup.verifying(
        &setup.nginx.reload_command(),
        Duration::from_secs(30),
        OnVerifyFailure::Rollback,
    );

    let outcome = Renewer::new(&config)
        .renew("api", force(), OffsetDateTime::now_utc())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", setup.nginx.log()));
    let RenewOutcome::Renewed {
        version, serial, ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(version, VersionId(2));
    assert_ne!(serial, setup.first_serial);
    setup.served_serial_settles_on(&serial).await;

    let (steps, events) = setup.audit();
    let tail = &steps[steps.len() - 4..];
    assert_eq!(tail, ["deployed:ok", "served:ok", "verified:ok", "done:ok"]);
    let served = events.iter().find(|e| e["step"] == "served").unwrap();
    let expected = format!("{} 127.0.0.1 serves {serial} (new)", setup.nginx.target());
    assert_eq!(served["detail"], expected.as_str());

    let store = ServedStore::default();
    check_once(&config, &store).await;
    let samples = store.snapshot();
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert!(samples[0].current && samples[0].served_serial == serial);
}

#[tokio::test]
async fn a_deploy_that_does_not_reload_is_caught_and_rolled_back_to_what_nginx_serves() {
    let setup = Setup::new().await;
    let config = setup.verifying("true", Duration::from_secs(3), OnVerifyFailure::Rollback);

    let started = Instant::now();
    let error = Renewer::new(&config)
        .renew("api", force(), OffsetDateTime::now_utc())
        .await
        .expect_err("nginx never reloaded, so the new serial is not served");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (error.stage(), error.problem()),
        ("verify", "stale"),
        "{error}"
    );
    assert_rolled_back_from_v2(&error);
    let message = error.to_string();
    assert!(message.contains("rolled back to v0001"), "{message}");

    let store = setup.store();
    assert_eq!(store.current("api").unwrap(), Some(VersionId(1)));
    assert!(store.inflight("api").unwrap().is_none());
    // nginx never reloaded: it serves the version now current again on disk.
    let restored = setup.serial_of(VersionId(1));
    assert_eq!(restored, setup.first_serial);
    assert_eq!(setup.served_serial().await, restored);

    let (steps, events) = setup.audit();
    assert_eq!(
        steps[steps.len() - 4..],
        ["deployed:ok", "served:error", "rollback:ok", "deployed:ok"]
    );
    let served = events.iter().find(|e| e["step"] == "served").unwrap();
    let new_serial = setup.serial_of(VersionId(2));
    let error_text = served["error"].as_str().unwrap();
    assert!(
        error_text.contains(&format!(
            "{} 127.0.0.1 serves {restored} (not {new_serial})",
            setup.nginx.target()
        )),
        "{error_text}"
    );
    assert_eq!(events.last().unwrap()["version"], "v0001");

    assert_eq!(consecutive_failures(&Renewer::new(&config), now()), 1);
}

#[tokio::test]
async fn with_keep_the_unserved_version_stays_current_and_the_drift_check_reports_it() {
    let setup = Setup::new().await;
    let config = setup.verifying("true", Duration::from_secs(2), OnVerifyFailure::Keep);

    let error = assert_kept_unserved(
        Renewer::new(&config)
            .renew("api", force(), OffsetDateTime::now_utc())
            .await,
    );
    assert_eq!(error.problem(), "stale");
    let store = setup.store();
    assert_eq!(store.current("api").unwrap(), Some(VersionId(2)));
    assert!(store.inflight("api").unwrap().is_none());
    let (steps, _) = setup.audit();
    assert_eq!(steps.last().unwrap(), "served:error");
    assert_eq!(consecutive_failures(&Renewer::new(&config), now()), 1);

    let served = ServedStore::default();
    check_once(&config, &served).await;
    let samples = served.snapshot();
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert_eq!(samples[0].name, "api");
    assert_eq!(samples[0].target, setup.nginx.target());
    assert!(!samples[0].current);
    assert_eq!(samples[0].served_serial, setup.first_serial);
}

#[tokio::test]
async fn a_renewal_resumed_after_deploy_runs_the_served_check_again() {
    let setup = Setup::new().await;
    let config = setup.verifying("true", Duration::from_secs(5), OnVerifyFailure::Rollback);
    // A renewal that crashed after its deploy commands: the live certificate stored again as
    // v0002 (so nginx, never reloaded, still serves its serial), promoted, recorded deployed.
    let store = setup.store();
    let current = setup.config.state_dir.join("certs/api/current");
    let key = std::fs::read_to_string(current.join("key.pem")).unwrap();
    let chain = std::fs::read_to_string(current.join("fullchain.pem")).unwrap();
    let now = OffsetDateTime::now_utc();
    store.begin("api", now).unwrap();
    let origin = Origin {
        created_at: now,
        source: "resume test".into(),
    };
    let version = store
        .stage_pending(
            "api",
            NewVersion {
                key_pem: &key,
                chain_pem: &chain,
                origin: &origin,
            },
        )
        .unwrap()
        .version;
    store.promote("api", version).unwrap();
    store.advance("api", Stage::Deployed, version).unwrap();

    let renewed = Renewer::new(&config)
        .renew("api", RenewOptions::default(), now)
        .await;
    setup.assert_renewed_to(renewed, VersionId(2));
    let (steps, events) = setup.audit();
    assert_eq!(
        steps[steps.len() - 4..],
        ["recover:ok", "served:ok", "verified:ok", "done:ok"]
    );
    let served = events.iter().find(|e| e["step"] == "served").unwrap();
    assert_eq!(served["serial"], setup.first_serial.as_str());
}
