//! Command-line interface: clap definitions and dispatch to one module per subcommand.
//!
//! This is the edge of the program: errors become `anyhow` chains here and `main` prints
//! them and picks the exit code.

pub mod check;
pub mod config_check;
pub mod logging;
pub mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// certinel keeps TLS certificates from expiring.
#[derive(Debug, Parser)]
#[command(name = "certinel", version, about, long_about = None)]
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

/// Runs the parsed command line.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check::run(&file),
        Command::Run(args) => run::run(args, cli.log_format),
    }
}
