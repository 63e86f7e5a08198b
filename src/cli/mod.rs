//! Command-line interface: clap definitions and dispatch to one module per subcommand.
//!
//! This is the edge of the program: errors become `anyhow` chains here and `main` prints
//! them and picks the exit code.

pub mod account;
pub mod check;
pub mod cluster;
pub mod config_check;
pub mod import;
pub mod inventory;
pub mod logging;
pub mod packaging;
pub mod renew;
pub mod revoke;
pub mod run;
pub mod state_store;
pub mod status;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::runtime::Runtime;

/// certinel keeps TLS certificates from expiring.
#[derive(Debug, Parser)]
#[command(name = "certinel", version = crate::VERSION, about, long_about = None)]
pub struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe TLS endpoints and certificate files once and report their expiry.
    Check(check::CheckArgs),
    /// Configuration file commands.
    Config {
        /// What to do with the configuration.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run the long-lived service: scheduled probes and the Prometheus exporter.
    Run(run::RunArgs),
    /// Obtain or renew ACME certificates that are due (or forced).
    Renew(renew::RenewArgs),
    /// Show every managed certificate: version, expiry, next renewal, last outcome.
    Status(status::StatusArgs),
    /// Make a certificate's previous version current again and run its deploy commands.
    Rollback(renew::RollbackArgs),
    /// Revoke a certificate at the CA and issue a replacement with a new key at once.
    Revoke(revoke::RevokeArgs),
    /// Print each managed certificate's rotation checklist.
    Inventory(inventory::InventoryArgs),
    /// ACME account commands: key rollover and deactivation.
    Account {
        /// What to do with the account.
        #[command(subcommand)]
        command: account::AccountCommand,
    },
    /// Replicas over etcd: write the key-encryption key `[cluster]` needs.
    Cluster {
        /// What to do for the cluster.
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Adopt certbot's or lego's certificates and account; print their configuration.
    Import {
        /// The client to migrate from.
        #[command(subcommand)]
        command: import::ImportCommand,
    },
    /// Print a shell completion script: `source <(certinel completions bash)`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: packaging::CompletionShell,
    },
    /// Write roff man pages for certinel and every subcommand into DIR (for packagers).
    #[command(hide = true)]
    Man {
        /// The directory to write `certinel.1`, `certinel-check.1`, ... into.
        dir: PathBuf,
    },
}

/// `certinel config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file and print a summary.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
}

/// How a command ended, as a process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCode(pub u8);

/// Runs the parsed command line on the process's one async runtime.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    on_one_runtime(
        |runtime| run_command(cli, runtime),
        run::RUNTIME_SHUTDOWN_TIMEOUT,
    )?
}

fn run_command(cli: Cli, runtime: &Runtime) -> anyhow::Result<ExitCode> {
    if cli.command.logs() {
        logging::init(cli.log_format);
    }
    match cli.command {
        Command::Check(args) => check::run(args, runtime),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check::run(&file),
        Command::Run(args) => run::run(args, runtime),
        Command::Renew(args) => renew::run(args, runtime),
        Command::Status(args) => status::run(args),
        Command::Rollback(args) => renew::rollback(args, runtime),
        Command::Revoke(args) => revoke::run(args, runtime),
        Command::Inventory(args) => inventory::run(args, runtime),
        Command::Account { command } => account::run(command, runtime),
        Command::Cluster { command } => cluster::run(command),
        Command::Import { command } => import::run(command, runtime),
        Command::Completions { shell } => packaging::completions(shell),
        Command::Man { dir } => packaging::man(&dir),
    }
}

impl Command {
    /// Whether the command logs what it does (`--log-format`); the others print only
    /// their report.
    fn logs(&self) -> bool {
        matches!(
            self,
            Command::Run(_)
                | Command::Renew(_)
                | Command::Rollback(_)
                | Command::Revoke(_)
                | Command::Account { .. }
                | Command::Import { .. }
        )
    }
}

/// The most threads the runtime starts for blocking work (tokio's default is 512). A
/// thousand renewals starting at once each read their status with `spawn_blocking`, and
/// the store's writes hand workers off with `block_in_place`: with the default, `certinel
/// run` grew to 430 threads whose touched stacks held 72 MiB (bench/acme, 1,000
/// certificates). Beyond this many, blocking work queues.
const MAX_BLOCKING_THREADS: usize = 64;

/// Builds a multi-threaded runtime, hands it to `work`, then shuts it down waiting at most
/// `shutdown_timeout` for tasks still running (a stuck `spawn_blocking` cannot be
/// cancelled; it is abandoned, where dropping the runtime would wait for it forever).
fn on_one_runtime<T>(
    work: impl FnOnce(&Runtime) -> T,
    shutdown_timeout: Duration,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .context("cannot start the async runtime")?;
    let output = work(&runtime);
    runtime.shutdown_timeout(shutdown_timeout);
    Ok(output)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn blocking_work_beyond_max_blocking_threads_queues_instead_of_starting_threads() {
        let threads = on_one_runtime(
            |runtime| {
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..4 * MAX_BLOCKING_THREADS)
                        .map(|_| {
                            tokio::task::spawn_blocking(|| {
                                std::thread::sleep(Duration::from_millis(20));
                                std::thread::current().id()
                            })
                        })
                        .collect();
                    let mut threads = std::collections::HashSet::new();
                    for task in tasks {
                        threads.insert(task.await.unwrap());
                    }
                    threads.len()
                })
            },
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(
            threads <= MAX_BLOCKING_THREADS,
            "{threads} threads ran blocking work"
        );
    }

    #[test]
    fn a_stuck_blocking_task_does_not_keep_the_runtime_from_shutting_down() {
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let started = Instant::now();
            let output = on_one_runtime(
                |runtime| {
                    runtime.block_on(async move {
                        // Blocks until the test releases it, long after the runtime is gone.
                        tokio::task::spawn_blocking(move || stuck.recv());
                        7
                    })
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
