//! Configuration reloads: on SIGHUP (a notification from the caller) and when the file's
//! content changes. The file is polled every [`POLL_INTERVAL`]: its bytes are hashed and a
//! different hash triggers a reload, so a `touch` does nothing and an edit within the same
//! second as the previous one is still seen.
//!
//! The `[[endpoint_source]]` files are read on the same tick (and at every reload), each
//! file only when its content changed; see `service::endpoint_sources`.
//!
//! A new configuration is applied whole or not at all: when it does not load (or its hosts
//! file cannot be read) the old one keeps running, a log line says why and
//! `certinel_config_last_reload_successful` drops to 0.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{self, model::Config};
use crate::metrics::http::{HttpShared, ProbeSetup};
use crate::service::ServiceError;
use crate::service::endpoint_sources::{self, EndpointSources, Settings};
use crate::service::error_chain::error_chain;
use crate::service::notify::Notifier;
use crate::service::renewals::Renewals;
use crate::service::scheduler::{JobEnvironment, Scheduler, Sharding};

/// How often the configuration file is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The hash of a configuration file's bytes; `None` when it cannot be read (a file being
/// replaced by an editor is skipped, not treated as a broken configuration).
pub async fn fingerprint(path: &Path) -> Option<u64> {
    let bytes = tokio::fs::read(path).await.ok()?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

/// Waits until the member list changes: `true`, or `false` when its sender is gone.
/// Without a cluster, waits forever.
async fn members_changed(members: &mut Option<(String, watch::Receiver<Vec<String>>)>) -> bool {
    match members {
        Some((_, receiver)) => receiver.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// What a reload changes, owned by the reload loop.
pub(crate) struct Reloader {
    /// The configuration running now.
    pub current: Config,
    /// Starts and stops jobs.
    pub scheduler: Scheduler,
    /// Starts, stops and restarts certificate tasks.
    pub renewals: Renewals,
    /// Shared with the jobs (probe context).
    pub environment: Arc<JobEnvironment>,
    /// Shared with the HTTP handlers (`/probe` settings).
    pub http: Arc<HttpShared>,
    /// The applied configuration, for the drift check.
    pub applied: watch::Sender<Arc<Config>>,
    /// Brackets each reload with `RELOADING=1` and `READY=1` for systemd.
    pub notifier: Notifier,
    /// With `[cluster]`: this replica's name and the live members, whose changes re-shard
    /// the endpoint jobs.
    pub members: Option<(String, watch::Receiver<Vec<String>>)>,
    /// The names of the certificates this replica carries, published to the cluster.
    pub carried: watch::Sender<std::collections::BTreeSet<String>>,
    /// The targets of the `[[endpoint_source]]` files, read every [`POLL_INTERVAL`].
    pub sources: EndpointSources,
}

impl Reloader {
    /// Reloads on `requests` or a file change until `shutdown`.
    /// `loaded` is the fingerprint of the file the running configuration came from, taken
    /// before the service announced itself, so an edit made right after start is seen.
    pub async fn watch(
        mut self,
        loaded: Option<u64>,
        requests: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        let path = self.current.source.clone();
        let mut last = loaded;
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let cause = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                changed = members_changed(&mut self.members) => {
                    if changed {
                        self.reshard();
                    } else {
                        // The membership task ended (shutdown): keep the last shares.
                        self.members = None;
                    }
                    continue;
                }
                () = requests.notified() => "reload requested",
                _ = ticker.tick() => {
                    self.poll_sources().await;
                    let Some(path) = &path else { continue };
                    let now = fingerprint(path).await;
                    if now.is_none() || now == last {
                        continue;
                    }
                    "configuration file changed"
                }
            };
            let Some(path) = &path else {
                tracing::info!(
                    "{cause}, but certinel runs on the embedded default configuration: nothing to reload"
                );
                continue;
            };
            last = fingerprint(path).await;
            self.reload(path, cause).await;
        }
    }

    /// Applies the current member list to the endpoint jobs: endpoints this replica no
    /// longer owns stop (and leave `/metrics`), those it now owns start.
    fn reshard(&mut self) {
        let Some((me, members)) = &mut self.members else {
            return;
        };
        let members = members.borrow_and_update().clone();
        let sharding = Sharding::Share {
            me: me.clone(),
            members: members.clone(),
        };
        self.scheduler.set_sharding(sharding);
        let scheduled = endpoint_sources::scheduled(&self.current, &self.sources);
        let (started, stopped) = self.scheduler.apply(&scheduled);
        tracing::info!(
            ?members,
            started,
            stopped,
            "cluster members changed; endpoints re-sharded"
        );
    }

    async fn reload(&mut self, path: &Path, cause: &str) {
        self.notifier.reloading();
        let path_buf: PathBuf = path.to_owned();
        let loaded = tokio::task::spawn_blocking(move || config::load(&path_buf)).await;
        let outcome = match loaded {
            Ok(Ok(config)) => {
                self.refresh_sources(Settings::of(&config)).await;
                self.apply(config)
            }
            Ok(Err(error)) => Err(ServiceError::Config(error)),
            Err(error) => Err(ServiceError::Task(error.to_string())),
        };
        let state = &self.environment.state;
        match outcome {
            Ok((started, stopped)) => {
                state.record_reload(OffsetDateTime::now_utc(), true);
                tracing::info!(path = %path.display(), cause, started, stopped, "configuration reloaded");
                self.notifier.ready(format!(
                    "configuration reloaded ({cause}): {started} jobs started, {stopped} stopped"
                ));
            }
            Err(error) => {
                state.record_reload(OffsetDateTime::now_utc(), false);
                tracing::error!(
                    path = %path.display(),
                    cause,
                    error = %error_chain(&error),
                    "configuration rejected; the previous one keeps running"
                );
                self.notifier.ready(format!(
                    "configuration rejected ({cause}); the previous one keeps running"
                ));
            }
        }
    }

    /// Re-reads the endpoint source files of the running configuration and reschedules
    /// when their targets changed.
    async fn poll_sources(&mut self) {
        if self.current.endpoint_sources.is_empty() {
            return;
        }
        if !self.refresh_sources(Settings::of(&self.current)).await {
            return;
        }
        let scheduled = endpoint_sources::scheduled(&self.current, &self.sources);
        let (started, stopped) = self.scheduler.apply(&scheduled);
        tracing::info!(
            started,
            stopped,
            endpoints = scheduled.endpoints.len(),
            "endpoint source files changed"
        );
    }

    /// Re-reads the endpoint source files under `settings` and publishes their status;
    /// returns whether their targets changed.
    async fn refresh_sources(&mut self, settings: Settings) -> bool {
        let sources = std::mem::take(&mut self.sources);
        let (sources, changed) = endpoint_sources::refresh_off_runtime(sources, settings).await;
        self.sources = sources;
        self.environment
            .state
            .set_endpoint_source_files(self.sources.statuses());
        changed
    }

    fn apply(&mut self, config: Config) -> Result<(usize, usize), ServiceError> {
        let context = Arc::new(crate::service::probe_context(&config)?);
        if config.exporter.listen != self.current.exporter.listen {
            tracing::warn!(
                listen = %config.exporter.listen,
                "the listen address changes only on restart"
            );
        }
        if config.exporter.connections != self.current.exporter.connections {
            tracing::warn!("the HTTP connection limits change only on restart");
        }
        if config.cluster != self.current.cluster {
            tracing::warn!("[cluster] changes only on restart");
        }
        if config.scanner.concurrency != self.current.scanner.concurrency {
            tracing::warn!("the probe concurrency changes only on restart");
        }
        self.environment.set_probe_context(context.clone());
        self.http.set_probe_setup(ProbeSetup {
            exporter: config.exporter.clone(),
            context,
        });
        let scheduled = endpoint_sources::scheduled(&config, &self.sources);
        let (jobs_started, jobs_stopped) = self.scheduler.apply(&scheduled);
        let (tasks_started, tasks_stopped) = self.renewals.apply(&config);
        let carried = crate::service::cluster::carried(&config);
        self.carried.send_if_modified(|now| {
            let changed = *now != carried;
            *now = carried;
            changed
        });
        // A removed certificate's served_current series leave now, not at the next round.
        self.environment.state.served().retain_checked(&config);
        self.applied.send_replace(Arc::new(config.clone()));
        self.current = config;
        Ok((jobs_started + tasks_started, jobs_stopped + tasks_stopped))
    }
}
