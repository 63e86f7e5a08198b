//! `certinel run`: the long-lived service. Loads the configuration (or the embedded
//! default), binds the listener, turns SIGTERM/SIGINT into a graceful shutdown and SIGHUP
//! into a reload, and runs [`crate::service`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cli::{ExitCode, LogFormat, logging};
use crate::config;
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

/// Runs the service until SIGTERM or SIGINT.
pub fn run(args: RunArgs, log_format: LogFormat) -> anyhow::Result<ExitCode> {
    logging::init(log_format);
    let mut config = match &args.config {
        Some(path) => config::load(path)?,
        None => config::default_config(),
    };
    if let Some(listen) = args.listen {
        config.exporter.listen = listen;
    }
    block_on_bounded(serve(config), RUNTIME_SHUTDOWN_TIMEOUT)??;
    Ok(ExitCode(0))
}

/// Runs `future` on a new multi-threaded runtime, then shuts the runtime down waiting at
/// most `shutdown_timeout` for tasks that are still running (a stuck `spawn_blocking`
/// cannot be cancelled; it is abandoned).
fn block_on_bounded<T>(
    future: impl Future<Output = T>,
    shutdown_timeout: Duration,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let output = runtime.block_on(future);
    runtime.shutdown_timeout(shutdown_timeout);
    Ok(output)
}

async fn serve(config: config::model::Config) -> anyhow::Result<()> {
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
    let options = ServiceOptions {
        notifier: notifier.clone(),
        ..ServiceOptions::default()
    };
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_stuck_blocking_task_does_not_keep_the_runtime_from_shutting_down() {
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let started = Instant::now();
            let output = block_on_bounded(
                async move {
                    // Blocks until the test releases it, long after the runtime is gone.
                    tokio::task::spawn_blocking(move || stuck.recv());
                    7
                },
                Duration::from_millis(100),
            );
            let _ = done.send((output.ok(), started.elapsed()));
        });
        let (output, elapsed) = finished
            .recv_timeout(Duration::from_secs(20))
            .expect("the runtime waited for the stuck blocking task");
        assert_eq!(output, Some(7));
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
        drop(release);
    }
}
