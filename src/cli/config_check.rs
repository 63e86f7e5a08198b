//! `certinel config check FILE`: validate a configuration and summarise it, with the
//! files of its `[[endpoint_source]]` tables.

use std::path::Path;

use crate::cli::ExitCode;
use crate::config;
use crate::service::endpoint_sources::{EndpointSources, Settings};

/// Validates `file` and prints what it configures; a bad file is an error (exit code 2),
/// and so is an endpoint source file that `certinel run` would reject.
pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let config = config::load(file)?;
    println!(
        "{}: OK ({} endpoints, {} file sources, exporter on {})",
        file.display(),
        config.endpoints.len(),
        config.files.len(),
        config.exporter.listen
    );
    if config.endpoint_sources.is_empty() {
        return Ok(ExitCode(0));
    }
    let mut sources = EndpointSources::default();
    sources.refresh(&Settings::of(&config));
    let mut rejected = 0;
    for (path, targets, error) in sources.files() {
        match error {
            None => println!("{}: {targets} targets", path.display()),
            Some(error) => {
                rejected += 1;
                println!("{}: rejected: {error}", path.display());
            }
        }
    }
    Ok(ExitCode(if rejected == 0 { 0 } else { 2 }))
}
