//! The drift check of `certinel run`: every [`DRIFT_INTERVAL`], each certificate with
//! `verify` targets has them probed (every resolved address), and [`ServedStore`] keeps
//! whether each address serves the current version: the classic "renewed but never
//! reloaded" outage shows as `certinel_certificate_served_current 0`.
//!
//! The loop follows the configuration the reloader applied (a `watch` channel), never the
//! file itself: an edit that was rejected, or not yet applied, checks nothing. A reload
//! starts a round at once, and [`ServedStore::retain`] at reload drops a removed
//! certificate's samples without waiting for the round. An address
//! that did not answer has no sample (the endpoint metrics report it as down), so a network
//! problem never reads as a stale certificate.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::model::Config;
use crate::renew::rollout_check::{Observation, Served, ServedProber};
use crate::store::{FsStore, Store, StoreError};

/// How often the verify targets are re-probed: the default probe interval of an
/// `[[endpoint]]`.
pub const DRIFT_INTERVAL: Duration = Duration::from_secs(300);

pub use crate::metrics::certificates::ServedSample;

/// The latest samples of every certificate, replaced whole per certificate each round.
#[derive(Debug, Default)]
pub struct ServedStore {
    by_certificate: RwLock<BTreeMap<String, Vec<ServedSample>>>,
}

impl ServedStore {
    /// Every sample, by certificate name, then in probe order.
    pub fn snapshot(&self) -> Vec<ServedSample> {
        // Writers only swap whole vectors, so a poisoned lock still holds valid samples.
        let map = self
            .by_certificate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values().flatten().cloned().collect()
    }

    /// Replaces the samples of certificate `name`.
    pub fn replace(&self, name: &str, samples: Vec<ServedSample>) {
        let mut map = self
            .by_certificate
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.insert(name.to_owned(), samples);
    }

    /// The certificates with samples (possibly none), by name.
    pub fn certificates(&self) -> Vec<String> {
        let map = self
            .by_certificate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.keys().cloned().collect()
    }

    /// Forgets every certificate of `config` that has no verify targets or is gone: what
    /// a reload does at once, before the next round.
    pub fn retain_checked(&self, config: &Config) {
        self.retain(&checked_names(config));
    }

    /// Forgets every certificate not in `names` (it left the configuration or lost its
    /// verify targets).
    pub fn retain(&self, names: &[&str]) {
        let mut map = self
            .by_certificate
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|name, _| names.contains(&name.as_str()));
    }
}

/// The samples of one round for certificate `name`, whose current version has serial
/// `current_serial`. Addresses that did not answer are left out. Pure.
pub fn samples(
    name: &str,
    current_serial: &str,
    observations: &[Observation],
) -> Vec<ServedSample> {
    observations
        .iter()
        .filter_map(|observation| match (&observation.served, observation.ip) {
            (Served::Serial(serial), Some(ip)) => Some(ServedSample {
                name: name.to_owned(),
                target: observation.target.to_string(),
                ip,
                current: serial == current_serial,
                served_serial: serial.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The certificates of `config` that have verify targets.
fn checked_names(config: &Config) -> Vec<&str> {
    config
        .certificates
        .iter()
        .filter(|certificate| !certificate.verify.is_empty())
        .map(|certificate| certificate.name.as_str())
        .collect()
}

/// Starts the drift loop on `tracker`: a round at once, then every `interval` and after
/// every configuration the reloader sends on `config`, until `shutdown`.
pub fn spawn(
    config: watch::Receiver<Arc<Config>>,
    store: Arc<ServedStore>,
    interval: Duration,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    tracker.spawn(drift_loop(config, store, interval, shutdown.clone()));
}

async fn drift_loop(
    mut config: watch::Receiver<Arc<Config>>,
    store: Arc<ServedStore>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut reloader_alive = true;
    loop {
        let current = Arc::clone(&config.borrow_and_update());
        tokio::select! {
            () = check_once(&current, &store) => {}
            () = shutdown.cancelled() => return,
        }
        let sleep = tokio::time::sleep(interval);
        tokio::select! {
            () = sleep => {}
            changed = config.changed(), if reloader_alive => {
                // A closed channel means no more reloads: keep the interval.
                reloader_alive = changed.is_ok();
            }
            () = shutdown.cancelled() => return,
        }
    }
}

/// The serial of the current version of each certificate in `names`, in order (`None`:
/// no current version). Reads the store: call it on a blocking thread.
fn current_serials(
    cert_store: &dyn Store,
    names: Vec<String>,
) -> Vec<Result<Option<String>, StoreError>> {
    names
        .iter()
        .map(|name| match cert_store.current(name)? {
            Some(version) => Ok(Some(cert_store.metadata(name, version)?.serial)),
            None => Ok(None),
        })
        .collect()
}

/// One round: probes the verify targets of every certificate of `config` that has a current
/// version and stores the samples. A certificate without a current version has none.
pub async fn check_once(config: &Config, store: &ServedStore) {
    let checked = checked_names(config);
    store.retain(&checked);
    if checked.is_empty() {
        return;
    }
    let prober = match ServedProber::new(&config.scanner) {
        Ok(prober) => prober,
        Err(error) => {
            tracing::warn!(%error, "served-certificate check skipped: cannot read the hosts file");
            return;
        }
    };
    let names: Vec<String> = checked.iter().map(|name| (*name).to_owned()).collect();
    let cert_store = FsStore::new(&config.state_dir);
    // The store is read on a blocking thread, off the async workers.
    let read = tokio::task::spawn_blocking(move || current_serials(&cert_store, names)).await;
    let serials = match read {
        Ok(serials) => serials,
        Err(error) => {
            tracing::warn!(%error, "served-certificate check skipped: reading the store failed");
            return;
        }
    };
    let certificates = config.certificates.iter().filter(|c| !c.verify.is_empty());
    for (certificate, current) in certificates.zip(serials) {
        let name = &certificate.name;
        let serial = match current {
            Ok(Some(serial)) => serial,
            Ok(None) => {
                store.replace(name, Vec::new());
                continue;
            }
            Err(error) => {
                tracing::warn!(certificate = %name, %error, "cannot read the current version");
                store.replace(name, Vec::new());
                continue;
            }
        };
        let observed = prober.observe(certificate, None).await;
        let samples = samples(name, &serial, &observed);
        for sample in samples.iter().filter(|sample| !sample.current) {
            tracing::warn!(
                certificate = %name,
                target = %sample.target,
                ip = %sample.ip,
                served = %sample.served_serial,
                current = %serial,
                "an endpoint does not serve the current certificate"
            );
        }
        store.replace(name, samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(target: &str, ip: Option<&str>, served: Served) -> Observation {
        Observation {
            target: target.parse().unwrap(),
            ip: ip.map(|ip| ip.parse().unwrap()),
            served,
        }
    }

    #[test]
    fn samples_mark_the_current_serial_and_leave_out_silent_addresses() {
        let observed = [
            seen(
                "api.test:443",
                Some("127.0.0.1"),
                Served::Serial("0b".into()),
            ),
            seen("api.test:443", Some("::1"), Served::Serial("0a".into())),
            seen(
                "api.test:443",
                Some("127.0.0.2"),
                Served::NoAnswer("refused".into()),
            ),
            seen(
                "gone.test:443",
                None,
                Served::NoAnswer("no such name".into()),
            ),
        ];
        let samples = samples("api", "0b", &observed);
        let summary: Vec<(String, bool, &str)> = samples
            .iter()
            .map(|s| (s.ip.to_string(), s.current, s.served_serial.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("127.0.0.1".to_owned(), true, "0b"),
                ("::1".to_owned(), false, "0a")
            ]
        );
        assert!(
            samples
                .iter()
                .all(|s| s.name == "api" && s.target == "api.test:443")
        );
    }

    #[test]
    fn the_store_replaces_per_certificate_and_forgets_removed_ones() {
        let store = ServedStore::default();
        let sample = |name: &str, serial: &str| ServedSample {
            name: name.into(),
            target: "127.0.0.1:443".into(),
            ip: "127.0.0.1".parse().unwrap(),
            current: true,
            served_serial: serial.into(),
        };
        store.replace("web", vec![sample("web", "01")]);
        store.replace("api", vec![sample("api", "02")]);
        store.replace("web", vec![sample("web", "03")]);
        let serials: Vec<String> = store
            .snapshot()
            .into_iter()
            .map(|s| format!("{}={}", s.name, s.served_serial))
            .collect();
        assert_eq!(serials, ["api=02", "web=03"]);
        store.retain(&["web"]);
        assert_eq!(store.snapshot(), [sample("web", "03")]);
    }

    /// The text of a configuration whose certificates `names` each verify a loopback target.
    fn verifying_text(dir: &std::path::Path, names: &[&str]) -> String {
        let mut text = format!(
            "state_dir = {:?}\n[acme]\ndirectory = \"https://127.0.0.1:9/dir\"\n",
            dir.join("state").display().to_string()
        );
        for name in names {
            text.push_str(&format!(
                "[[certificate]]\nname = {name:?}\ndns_names = [\"{name}.test\"]\n\
                 verify = [\"127.0.0.1:9\"]\n\
                 challenge = {{ type = \"http-01\", listen = \"127.0.0.1:0\" }}\n"
            ));
        }
        text
    }

    /// That configuration, as loaded from `file`.
    fn verifying(dir: &std::path::Path, file: &std::path::Path, names: &[&str]) -> Config {
        crate::config::parse(&verifying_text(dir, names), Some(file)).expect("test config")
    }

    /// Waits until `store` lists `wanted`, at most ten seconds (far less than
    /// [`DRIFT_INTERVAL`], so only a reload can have started a later round). The loop reads
    /// the store on a blocking thread, so real time has to pass.
    async fn until_checked(store: &ServedStore, wanted: &[&str]) {
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while store.certificates() != wanted {
            assert!(
                std::time::Instant::now() < give_up,
                "checked {:?}, wanted {wanted:?}",
                store.certificates()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn the_drift_loop_checks_the_applied_configuration_not_the_file_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("certinel.toml");
        // An edit on disk the reloader has not applied (or rejected): "www" only.
        let edited = verifying(dir.path(), &file, &["www"]);
        std::fs::write(&file, verifying_text(dir.path(), &["www"])).unwrap();
        let applied = verifying(dir.path(), &file, &["api"]);
        let (sender, receiver) = watch::channel(Arc::new(applied));
        let store = Arc::new(ServedStore::default());
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        spawn(receiver, store.clone(), DRIFT_INTERVAL, &tracker, &shutdown);

        until_checked(&store, &["api"]).await;
        // A reload starts a round at once, well before the interval.
        sender.send_replace(Arc::new(edited));
        until_checked(&store, &["www"]).await;

        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    }

    #[test]
    fn a_reload_forgets_removed_certificates_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("certinel.toml");
        let store = ServedStore::default();
        store.replace("api", Vec::new());
        store.replace("www", Vec::new());
        store.retain_checked(&verifying(dir.path(), &file, &["www"]));
        assert_eq!(store.certificates(), ["www"]);
    }

    #[tokio::test(start_paused = true)]
    async fn with_paused_time_a_round_runs_every_interval_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("certinel.toml");
        // No current version: a round records no samples and probes nothing.
        let (_sender, receiver) = watch::channel(Arc::new(verifying(dir.path(), &file, &["api"])));
        let store = Arc::new(ServedStore::default());
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        spawn(receiver, store.clone(), DRIFT_INTERVAL, &tracker, &shutdown);

        until_checked(&store, &["api"]).await;
        let first = tokio::time::Instant::now();
        store.retain(&[]);
        tokio::time::sleep_until(first + DRIFT_INTERVAL - Duration::from_secs(1)).await;
        assert!(
            store.certificates().is_empty(),
            "no round before the interval"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        until_checked(&store, &["api"]).await;
        assert!(first.elapsed() < DRIFT_INTERVAL + Duration::from_secs(10));

        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
