//! `certinel run`: the long-lived service.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::cli::{ExitCode, LogFormat};

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
    let _ = (args, log_format);
    anyhow::bail!("certinel run is not implemented yet")
}
