//! Certificate files: expands a path, directory or glob and inspects each PEM/DER file.

use std::path::{Path, PathBuf};

use crate::scan::inspect::ChainFacts;

/// The result of inspecting one certificate file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The file read.
    pub path: PathBuf,
    /// The certificates it holds (first is treated as the leaf), or why none could be read.
    pub outcome: Result<ChainFacts, FileError>,
}

/// A certificate file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The pattern matched nothing.
    #[error("{pattern}: no such file, or no certificate file in that directory or glob")]
    NoMatch {
        /// The configured path or pattern.
        pattern: String,
    },
    /// Reading failed.
    #[error("cannot read {path}: {detail}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        detail: String,
    },
    /// The file holds no certificate, or one that does not parse.
    #[error("{path}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Expands a configured path: a file, every certificate file in a directory, or a glob.
pub fn expand(pattern: &str) -> Result<Vec<PathBuf>, FileError> {
    let _ = pattern;
    todo!("inspect helper")
}

/// Reads and inspects one certificate file.
pub fn inspect_file(path: &Path) -> FileReport {
    let _ = path;
    todo!("inspect helper")
}
