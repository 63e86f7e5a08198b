//! Configuration: a raw serde mirror of the TOML file, validated once into [`model::Config`].
//! Errors name the file, line and key.
//!
//! The stages: `toml` parses the text into a spanned document; serde fills the structs of
//! `raw.rs`, whose value types (durations, targets, keywords) parse themselves so their
//! errors carry positions; `validate.rs` applies defaults and the checks that relate
//! several values. Any failure becomes one [`ConfigError`] line.

mod allow;
mod cas;
mod certificates;
mod challenge;
mod cluster;
mod duration;
mod endpoint_source;
mod error;
pub mod file_sd;
mod hook_env;
mod invalid_input;
mod keywords;
mod locate;
pub mod model;
mod raw;
mod secrets;
mod target;
mod validate;
mod verify_targets;

pub(crate) use validate::DEFAULT_CONCURRENCY;

use std::path::Path;

use serde::Deserialize;
use toml::de::DeTable;

pub use allow::{AllowRuleError, AllowRuleProblem};
pub use duration::{DurationError, DurationProblem, format_duration, parse_duration};
pub use error::ConfigError;
pub use invalid_input::InvalidInput;
pub use keywords::KeywordError;
pub use target::{NameError, TargetError, TargetProblem};

use model::{Config, ExporterSettings, ProbeModule, ScannerSettings};

/// Reads and validates the configuration file at `path`.
///
/// Relative paths in the file are resolved against the file's directory, made absolute.
/// Messages name `path` as given.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
    // `absolute` only consults the working directory; when even that fails, the paths stay
    // relative to the directory as written, which still names the same files.
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let context = validate::Context {
        text: &text,
        source: Some(path),
        base_dir: absolute.parent(),
        is_file: &|candidate| candidate.is_file(),
        host_name: &cluster::system_host_name,
    };
    parse_with(&context)
}

/// Validates configuration text; `source` names the file in error messages.
///
/// Relative paths are resolved against `source`'s directory as written, or kept as written
/// without a `source`. `scanner.hosts_file` must exist.
pub fn parse(text: &str, source: Option<&Path>) -> Result<Config, ConfigError> {
    let context = validate::Context {
        text,
        source,
        base_dir: source.and_then(Path::parent),
        is_file: &|candidate| candidate.is_file(),
        host_name: &cluster::system_host_name,
    };
    parse_with(&context)
}

/// The embedded default used by `certinel run` without a config: no endpoints, exporter on
/// `127.0.0.1:9798`, `/probe` allowed for loopback targets only.
pub fn default_config() -> Config {
    let modules = [(
        validate::DEFAULT_MODULE.to_owned(),
        ProbeModule::with_timeout(validate::DEFAULT_TIMEOUT),
    )];
    Config {
        source: None,
        scanner: ScannerSettings {
            concurrency: validate::DEFAULT_CONCURRENCY,
            default_timeout: validate::DEFAULT_TIMEOUT,
            hosts_file: None,
            max_connections: None,
            max_addresses: validate::DEFAULT_MAX_ADDRESSES,
            crl: true,
            crl_interval: validate::DEFAULT_CRL_INTERVAL,
        },
        endpoints: Vec::new(),
        files: Vec::new(),
        endpoint_sources: Vec::new(),
        exporter: ExporterSettings {
            listen: validate::DEFAULT_LISTEN,
            probe_allow: allow::loopback_only(),
            modules: modules.into_iter().collect(),
            connections: Default::default(),
        },
        state_dir: certificates::DEFAULT_STATE_DIR.into(),
        acme: None,
        cas: Default::default(),
        certificates: Vec::new(),
        cluster: None,
    }
}

fn parse_with(context: &validate::Context<'_>) -> Result<Config, ConfigError> {
    let text = context.text;
    let document =
        DeTable::parse(text).map_err(|e| ConfigError::syntax(context.source, text, &e))?;
    let root = document.get_ref().clone();
    let raw = raw::RawConfig::deserialize(toml::de::Deserializer::from(document))
        .map_err(|e| ConfigError::from_serde(context.source, text, &root, &e))?;
    validate::build(raw, context)
}

#[cfg(test)]
mod tests;
