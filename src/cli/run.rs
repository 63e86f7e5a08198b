//! `certinel run`: the long-lived service. Loads the configuration (or the embedded
//! default), binds the listener, turns SIGTERM/SIGINT into a graceful shutdown and SIGHUP
//! into a reload, and runs [`crate::service`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::runtime::Runtime;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cli::ExitCode;
use crate::config;
use crate::renew::Renewer;
use crate::service::ServiceOptions;
use crate::service::notify::Notifier;

/// How long in-flight probes and requests get to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long the runtime waits, after the grace period, for blocking tasks (file reads,
/// name lookups, hooks' pipes) before the process exits without them. Dropping a runtime
/// waits for them forever.
pub const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Arguments of `certinel run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file; without one, the embedded default (no endpoints, `/probe` for
    /// loopback targets) is used.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Listen address, overriding `[exporter] listen`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// Runs the service on `runtime` until SIGTERM or SIGINT.
pub fn run(args: RunArgs, runtime: &Runtime) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => config::load(path)?,
        None => config::default_config(),
    };
    if let Some(listen) = args.listen {
        config.exporter.listen = listen;
    }
    // Opened once, before the service starts: every configuration reload renews through
    // the same store (changing `[cluster]` takes a restart).
    let store = crate::cli::state_store::cluster_store(&config)?;
    runtime.block_on(serve(config, store))?;
    Ok(ExitCode(0))
}

async fn serve(
    config: config::model::Config,
    store: Option<Arc<dyn crate::store::Store>>,
) -> anyhow::Result<()> {
    let listen = config.exporter.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let shutdown = CancellationToken::new();
    let reload_requests = Arc::new(Notify::new());
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot install SIGHUP handler")?;
    let signals = {
        let reload_requests = reload_requests.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = terminate.recv() => break "SIGTERM",
                    _ = interrupt.recv() => break "SIGINT",
                    _ = hangup.recv() => reload_requests.notify_one(),
                }
            }
        })
    };
    let notifier = Notifier::from_env();
    let mut options = ServiceOptions {
        notifier: notifier.clone(),
        ..ServiceOptions::default()
    };
    if let Some(store) = store {
        options.renewer = Arc::new(move |config| Renewer::new(config).with_store(store.clone()));
    }
    let service = crate::service::run_with_options(
        config,
        listener,
        shutdown.clone(),
        reload_requests,
        options,
    );
    tokio::pin!(service);
    tokio::select! {
        result = &mut service => return result.context("certinel run failed"),
        signal = signals => {
            let signal = signal.unwrap_or("signal");
            tracing::info!(signal, "shutting down");
            notifier.stopping();
            shutdown.cancel();
        }
    }
    match tokio::time::timeout(SHUTDOWN_GRACE, service).await {
        Ok(result) => {
            result.context("certinel run failed")?;
            tracing::info!("stopped");
            Ok(())
        }
        Err(_) => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "work still running after the grace period; exiting anyway");
            Ok(())
        }
    }
}
