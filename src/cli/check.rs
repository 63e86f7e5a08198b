//! `certinel check`: one sweep, a table or JSON lines, a monitoring-plugin exit code.

use std::path::PathBuf;

use crate::cli::ExitCode;

/// Arguments of `certinel check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Targets: `host:port`, `https://host[:port]`, or a PEM file or directory. Without
    /// targets, those of the configuration are checked.
    pub targets: Vec<String>,
    /// Configuration file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// Runs one check.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("not implemented yet")
}
