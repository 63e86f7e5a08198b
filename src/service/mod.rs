//! `certinel run` as a library: the scheduler, the state it fills and the HTTP server that
//! reads it, tied together with reloads and graceful shutdown.
//!
//! [`run`] takes its listener and a shutdown token, so tests bind `127.0.0.1:0` and run the
//! whole service in-process; `cli::run` binds, installs signal handlers and calls it.

mod cluster;
pub mod connection_deadline;
pub mod drift;
pub mod endpoint_sources;
mod error_chain;
mod fleet_view;
pub mod http_server;
pub mod notify;
pub mod reload;
pub mod renewals;
mod revocation_watch;
pub mod scheduler;
pub mod state;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ConfigError;
use crate::config::model::Config;
use crate::metrics::http::{self, HttpShared, ProbeSetup, StateView};
use crate::metrics::render::Snapshot;
use crate::renew::Renewer;
use crate::renew::fleet::Fleet;
use crate::scan::budget::ConnectionBudget;
use crate::scan::crl::fetch::CrlFetcher;
use crate::scan::probe::ProbeContext;
use crate::scan::resolve::Resolver;
use crate::scan::trust::TrustCache;
use endpoint_sources::EndpointSources;
use notify::Notifier;
use reload::Reloader;
use renewals::{Renewals, RenewerFactory};
use scheduler::{JobEnvironment, Scheduler, Sharding};
use state::State;

/// Why the service stopped or could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The configuration did not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The hosts file named by `[scanner] hosts_file` could not be read.
    #[error("cannot read hosts file {path}")]
    HostsFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("HTTP server failed")]
    Http(#[source] std::io::Error),
    /// etcd (`[cluster]`) could not be reached or refused certinel.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// A background task panicked.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// Runs the service on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    run_with_reload(config, listener, shutdown, Arc::new(Notify::new())).await
}

/// Settings of the service that the configuration file does not carry.
#[derive(Clone)]
pub struct ServiceOptions {
    /// Builds the renewer of each configuration (the service adds its metrics observer).
    pub renewer: RenewerFactory,
    /// Tells systemd when the service is ready and when it reloads (`Type=notify`).
    pub notifier: Notifier,
}

impl Default for ServiceOptions {
    fn default() -> ServiceOptions {
        ServiceOptions {
            renewer: Arc::new(Renewer::new),
            notifier: Notifier::disabled(),
        }
    }
}

/// [`run`], also reloading the configuration file whenever `reload_requests` is notified
/// (SIGHUP in `certinel run`).
pub async fn run_with_reload(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    reload_requests: Arc<Notify>,
) -> Result<(), ServiceError> {
    run_with_options(
        config,
        listener,
        shutdown,
        reload_requests,
        ServiceOptions::default(),
    )
    .await
}

/// [`run_with_reload`] with `options`: tests build their renewers with short retries.
pub async fn run_with_options(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    reload_requests: Arc<Notify>,
    options: ServiceOptions,
) -> Result<(), ServiceError> {
    let state = Arc::new(State::new());
    state.record_reload(OffsetDateTime::now_utc(), true);
    let context = Arc::new(probe_context(&config)?);
    state.set_crl_fetcher(context.crl.clone());
    let environment = Arc::new(JobEnvironment {
        state: state.clone(),
        probe_context: RwLock::new(context.clone()),
        permits: Semaphore::new(config.scanner.concurrency.max(1)),
    });
    let http_shared = Arc::new(HttpShared {
        state: state.clone(),
        probe: RwLock::new(ProbeSetup {
            exporter: config.exporter.clone(),
            context,
        }),
    });
    let loaded = match &config.source {
        Some(path) => reload::fingerprint(path).await,
        None => None,
    };
    let tracker = TaskTracker::new();
    let (sources, _) = endpoint_sources::refresh_off_runtime(
        EndpointSources::default(),
        endpoint_sources::Settings::of(&config),
    )
    .await;
    state.set_endpoint_source_files(sources.statuses());
    let scheduled = endpoint_sources::scheduled(&config, &sources);
    let mut scheduler = Scheduler::new(environment.clone(), tracker.clone(), shutdown.clone());
    let (carried, carried_view) = tokio::sync::watch::channel(cluster::carried(&config));
    let joined = match &config.cluster {
        Some(settings) => {
            let (members, roster) =
                cluster::join(settings, carried_view, state.clone(), &tracker, &shutdown).await?;
            scheduler.set_sharding(Sharding::Share {
                me: members.0.clone(),
                members: members.1.borrow().clone(),
            });
            Some((members, roster))
        }
        None => None,
    };
    scheduler.apply(&scheduled);
    let factory = match &joined {
        Some(((me, _), roster)) => fleet_factory(options.renewer, me, roster.clone()),
        None => options.renewer,
    };
    let members = joined.map(|(members, _)| members);
    let mut renewals = Renewals::new(state.clone(), factory, tracker.clone(), shutdown.clone());
    renewals.apply(&config);
    // The drift check follows the configuration the reloader applies.
    let (applied, applied_configs) = tokio::sync::watch::channel(Arc::new(config.clone()));
    drift::spawn(
        applied_configs,
        state.served(),
        drift::DRIFT_INTERVAL,
        &tracker,
        &shutdown,
    );
    let listen = listener.local_addr().map_err(ServiceError::Http)?;
    tracing::info!(
        listen = %listen,
        endpoints = config.endpoints.len(),
        endpoint_source_targets = scheduled.endpoints.len() - config.endpoints.len(),
        files = config.files.len(),
        certificates = config.certificates.len(),
        "certinel running"
    );
    let server = tokio::spawn(http_server::serve(
        listener,
        http::router(http_shared.clone()),
        config.exporter.connections,
        shutdown.clone(),
    ));
    // The configuration is loaded, its jobs started and the listener accepts: what systemd's
    // "started" means. `/readyz` says when every target has a first result.
    options.notifier.ready(format!(
        "serving on {listen}, {} endpoints, {} file sources, {} certificates",
        config.endpoints.len(),
        config.files.len(),
        config.certificates.len()
    ));
    let reloader = Reloader {
        notifier: options.notifier,
        current: config,
        scheduler,
        renewals,
        environment,
        http: http_shared,
        applied,
        members,
        carried,
        sources,
    };
    reloader.watch(loaded, reload_requests, shutdown).await;
    tracker.close();
    tracker.wait().await;
    server
        .await
        .map_err(|error| ServiceError::Task(error.to_string()))
}

/// With `[cluster]`: every renewer rolls its renewals out across the live members that
/// carry the certificate (replicas of one cluster may carry different `[[certificate]]`
/// lists) and follows the versions other replicas make current. One [`Fleet`] for the
/// whole run, so what this replica rolled out survives configuration reloads.
fn fleet_factory(
    inner: RenewerFactory,
    me: &str,
    roster: tokio::sync::watch::Receiver<Arc<crate::cluster::membership::Roster>>,
) -> RenewerFactory {
    let fleet = Arc::new(Fleet::new(me, move |certificate| {
        roster.borrow().carriers(certificate)
    }));
    Arc::new(move |config: &Config| inner(config).with_fleet(fleet.clone()))
}

/// The resolver and trust roots a configuration asks for.
pub fn probe_context(config: &Config) -> Result<ProbeContext, ServiceError> {
    let resolver = match &config.scanner.hosts_file {
        Some(path) => {
            Resolver::with_hosts_file(path).map_err(|source| ServiceError::HostsFile {
                path: path.clone(),
                source,
            })?
        }
        None => Resolver::system(),
    };
    let budget = ConnectionBudget::for_process(config.scanner.max_connections);
    let context = ProbeContext::new(resolver.clone(), TrustCache::system(), budget.clone())
        .with_max_addresses(config.scanner.max_addresses);
    Ok(if config.scanner.crl {
        context.with_crl(Arc::new(CrlFetcher::new(resolver, budget)))
    } else {
        context
    })
}

impl StateView for State {
    fn snapshot(&self) -> Snapshot {
        State::snapshot(self)
    }

    fn metrics_snapshot(&self) -> Snapshot {
        State::metrics_snapshot(self)
    }

    fn is_ready(&self) -> bool {
        State::is_ready(self)
    }
}
