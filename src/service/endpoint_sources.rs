//! The targets of `[[endpoint_source]]` files in the running service: expands each
//! source's globs, reads every file whose content changed and keeps, per file, the
//! endpoints of its last accepted version. Parsing is `config::file_sd`'s; this module
//! only does the file I/O, the bookkeeping and the logging.
//!
//! A file that cannot be read or is rejected is an error for that file only: it is logged
//! (with the parser's line and column when there is one), its
//! `certinel_endpoint_source_last_reload_successful` drops to 0, and the endpoints of its
//! last accepted version stay scheduled. A file no longer matched by its source's globs
//! (deleted, renamed) takes its endpoints with it, as in Prometheus.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::config::file_sd::{self, FileSdError, Format, Merged, Origin};
use crate::config::model::{Config, Endpoint, EndpointSource, ProbeModule};
use crate::metrics::endpoint_sources::SourceFileStatus;

/// The most duplicate targets logged one by one after a change; the rest are counted.
const LOGGED_DUPLICATES: usize = 10;

/// What the sources' files were last seen to hold.
#[derive(Debug, Default)]
pub struct EndpointSources {
    /// The settings the stored endpoints were built with; when the configuration changes
    /// them, every file is parsed again.
    settings: Option<Settings>,
    /// Every file matched, by (source index, path), in that order.
    files: BTreeMap<(usize, PathBuf), FileState>,
}

/// What the files' endpoints depend on besides the files.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The `[[endpoint_source]]` tables.
    pub sources: Vec<EndpointSource>,
    /// The `[exporter.module.NAME]` tables a group can select.
    pub modules: BTreeMap<String, ProbeModule>,
}

#[derive(Debug, Default)]
struct FileState {
    /// The hash of the content last parsed, accepted or not.
    fingerprint: Option<u64>,
    /// The endpoints of the last accepted version.
    good: Vec<Endpoint>,
    /// Why the last read failed; `None` after a success.
    error: Option<String>,
}

/// Why reading one file failed.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the file is not UTF-8 text")]
    NotUtf8,
    #[error(transparent)]
    Rejected(#[from] FileSdError),
}

impl Settings {
    /// The settings of `config`.
    pub fn of(config: &Config) -> Settings {
        Settings {
            sources: config.endpoint_sources.clone(),
            modules: config.exporter.modules.clone(),
        }
    }
}

impl EndpointSources {
    /// Expands the globs of `settings`' sources and reads every file that is new or whose
    /// content changed (every file, when the settings changed). Blocking file I/O.
    /// Returns whether the endpoints changed.
    pub fn refresh(&mut self, settings: &Settings) -> bool {
        let reparse = self.settings.as_ref() != Some(settings);
        if reparse {
            self.settings = Some(settings.clone());
        }
        let mut changed = false;
        let matched = matched_files(&settings.sources);
        self.files.retain(|key, state| {
            let keep = matched.contains(key);
            if !keep {
                tracing::info!(file = %key.1.display(), targets = state.good.len(), "endpoint source file no longer matched; its targets are removed");
            }
            changed |= !keep && !state.good.is_empty();
            keep
        });
        for key in matched {
            let (index, path) = &key;
            let source = &settings.sources[*index];
            let state = self.files.entry(key.clone()).or_default();
            changed |= refresh_file(path, source, &settings.modules, state, reparse);
        }
        changed
    }

    /// `configured` followed by every file's endpoints, duplicates left out and logged.
    pub fn merge(&self, configured: &[Endpoint]) -> Vec<Endpoint> {
        let Merged {
            endpoints,
            duplicates,
        } = file_sd::merge(configured, self.files.values().map(|state| &state.good[..]));
        let paths: Vec<&Path> = self.files.keys().map(|(_, path)| path.as_path()).collect();
        for duplicate in duplicates.iter().take(LOGGED_DUPLICATES) {
            let listed_in = paths.get(duplicate.file).map(|path| path.display());
            let kept = match duplicate.kept {
                Origin::Config => "an [[endpoint]] of the configuration".to_owned(),
                Origin::File(file) => paths
                    .get(file)
                    .map_or_else(String::new, |path| path.display().to_string()),
            };
            tracing::warn!(
                target = %duplicate.target,
                file = %listed_in.map(|path| path.to_string()).unwrap_or_default(),
                kept = %kept,
                "duplicate target in an endpoint source file; the first one is probed"
            );
        }
        if duplicates.len() > LOGGED_DUPLICATES {
            tracing::warn!(
                more = duplicates.len() - LOGGED_DUPLICATES,
                "further duplicate targets in endpoint source files left out"
            );
        }
        endpoints
    }

    /// Every file matched, in (source, path) order, with its accepted targets and the
    /// reason its last read failed.
    pub fn files(&self) -> impl Iterator<Item = (&Path, usize, Option<&str>)> {
        self.files
            .iter()
            .map(|((_, path), state)| (path.as_path(), state.good.len(), state.error.as_deref()))
    }

    /// What `/metrics` shows about each file, sorted by path.
    pub fn statuses(&self) -> Vec<SourceFileStatus> {
        let mut statuses: Vec<SourceFileStatus> = self
            .files
            .iter()
            .map(|((_, path), state)| SourceFileStatus {
                file: path.display().to_string(),
                successful: state.error.is_none(),
                targets: state.good.len(),
            })
            .collect();
        statuses.sort_by(|a, b| a.file.cmp(&b.file));
        statuses.dedup_by(|later, earlier| later.file == earlier.file);
        statuses
    }
}

/// [`EndpointSources::refresh`] on a blocking thread; returns the sources and whether
/// their endpoints changed.
pub async fn refresh_off_runtime(
    mut sources: EndpointSources,
    settings: Settings,
) -> (EndpointSources, bool) {
    let refreshed = tokio::task::spawn_blocking(move || {
        let changed = sources.refresh(&settings);
        (sources, changed)
    })
    .await;
    refreshed.unwrap_or_else(|error| {
        // Only a panic ends the task early; the next refresh reads every file again.
        tracing::error!(%error, "reading endpoint source files failed");
        (EndpointSources::default(), true)
    })
}

/// `config` with the endpoints the scheduler runs: its own, then the sources' files'.
pub fn scheduled(config: &Config, sources: &EndpointSources) -> Config {
    Config {
        endpoints: sources.merge(&config.endpoints),
        ..config.clone()
    }
}

/// Every file the sources' globs match, by (source index, path). A pattern that matches
/// nothing is not an error: the directory may fill later.
fn matched_files(sources: &[EndpointSource]) -> BTreeSet<(usize, PathBuf)> {
    let mut matched = BTreeSet::new();
    for (index, source) in sources.iter().enumerate() {
        for pattern in &source.files {
            let Ok(paths) = glob::glob(pattern) else {
                // Validation checked every pattern.
                continue;
            };
            // Entries the glob cannot read (permissions) are skipped like non-matches.
            for path in paths.filter_map(Result::ok) {
                if path.is_file() {
                    matched.insert((index, path));
                }
            }
        }
    }
    matched
}

/// Reads one file when its content changed (or `reparse`); returns whether its endpoints
/// changed.
fn refresh_file(
    path: &Path,
    source: &EndpointSource,
    modules: &BTreeMap<String, ProbeModule>,
    state: &mut FileState,
    reparse: bool,
) -> bool {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            state.fingerprint = None;
            reject(path, state, ReadError::Io(error));
            return false;
        }
    };
    let fingerprint = fingerprint(&bytes);
    if !reparse && state.fingerprint == Some(fingerprint) {
        return false;
    }
    state.fingerprint = Some(fingerprint);
    match endpoints_of(path, &bytes, source, modules) {
        Ok(endpoints) => {
            if state.error.take().is_some() || state.good != endpoints {
                tracing::info!(file = %path.display(), targets = endpoints.len(), "endpoint source file loaded");
            }
            let changed = state.good != endpoints;
            state.good = endpoints;
            changed
        }
        Err(error) => {
            reject(path, state, error);
            false
        }
    }
}

fn endpoints_of(
    path: &Path,
    bytes: &[u8],
    source: &EndpointSource,
    modules: &BTreeMap<String, ProbeModule>,
) -> Result<Vec<Endpoint>, ReadError> {
    let format = Format::for_path(path)?;
    let text = std::str::from_utf8(bytes).map_err(|_| ReadError::NotUtf8)?;
    let groups = file_sd::parse(text, format)?;
    Ok(file_sd::endpoints(&groups, source, modules)?)
}

/// Records a failed read, logging it when the reason is new.
fn reject(path: &Path, state: &mut FileState, error: ReadError) {
    let message = error.to_string();
    if state.error.as_deref() != Some(message.as_str()) {
        tracing::error!(
            file = %path.display(),
            error = %message,
            targets_kept = state.good.len(),
            "endpoint source file rejected; its last good targets are still probed"
        );
    }
    state.error = Some(message);
}

fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests;
