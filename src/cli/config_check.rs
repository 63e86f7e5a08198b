//! `certinel config check FILE`: validate a configuration and summarise it.

use std::path::Path;

use crate::cli::ExitCode;
use crate::config;

/// Validates `file` and prints what it configures; a bad file is an error (exit code 2).
pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let config = config::load(file)?;
    println!(
        "{}: OK ({} endpoints, {} file sources, exporter on {})",
        file.display(),
        config.endpoints.len(),
        config.files.len(),
        config.exporter.listen
    );
    Ok(ExitCode(0))
}
