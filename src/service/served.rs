//! The drift check of `certinel run`: every [`DRIFT_INTERVAL`], each certificate with
//! `verify` targets has them probed (every resolved address), and [`ServedStore`] keeps
//! whether each address serves the current version: the classic "renewed but never
//! reloaded" outage shows as `certinel_certificate_served_current 0`.
//!
//! Reloads are handled simply: the loop re-reads the configuration file at the start of
//! each round and keeps the previous configuration when the file does not load. An address
//! that did not answer has no sample (the endpoint metrics report it as down), so a network
//! problem never reads as a stale certificate.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, model::Config};
use crate::renew::served::{Observation, Served, ServedProber};
use crate::store::CertStore;

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

/// Starts the drift loop on `tracker`: a round at once, then every `interval`, until
/// `shutdown`.
pub fn spawn(
    config: Config,
    store: Arc<ServedStore>,
    interval: Duration,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    tracker.spawn(drift_loop(config, store, interval, shutdown.clone()));
}

async fn drift_loop(
    mut config: Config,
    store: Arc<ServedStore>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Some(path) = config.source.clone() {
            // The reloader logs why a configuration is rejected; keep the last good one.
            if let Ok(Ok(loaded)) = tokio::task::spawn_blocking(move || config::load(&path)).await {
                config = loaded;
            }
        }
        tokio::select! {
            () = check_once(&config, &store) => {}
            () = shutdown.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// One round: probes the verify targets of every certificate of `config` that has a current
/// version and stores the samples. A certificate without a current version has none.
pub async fn check_once(config: &Config, store: &ServedStore) {
    let checked: Vec<&str> = config
        .certificates
        .iter()
        .filter(|certificate| !certificate.verify.is_empty())
        .map(|certificate| certificate.name.as_str())
        .collect();
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
    let cert_store = match CertStore::open(&config.state_dir) {
        Ok(cert_store) => cert_store,
        Err(error) => {
            tracing::warn!(%error, "served-certificate check skipped");
            return;
        }
    };
    for certificate in config.certificates.iter().filter(|c| !c.verify.is_empty()) {
        let name = &certificate.name;
        let current = cert_store.current(name).and_then(|version| match version {
            Some(version) => cert_store.metadata(name, version).map(Some),
            None => Ok(None),
        });
        let serial = match current {
            Ok(Some(meta)) => meta.serial,
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
}
