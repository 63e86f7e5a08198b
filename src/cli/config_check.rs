//! `certinel config check FILE`: validate a configuration and summarise it.

use std::path::Path;

use crate::cli::ExitCode;

/// Validates `file`.
pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let _ = file;
    anyhow::bail!("not implemented yet")
}
