//! The series of `[[endpoint_source]]` files: whether each was accepted and how many
//! targets its last good version lists. Pure.

use crate::metrics::names;
use crate::metrics::render::Sink;

/// What `/metrics` shows about one endpoint source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFileStatus {
    /// The file's path.
    pub file: String,
    /// Whether its last read was accepted.
    pub successful: bool,
    /// Targets in its last accepted version (0 when none was ever accepted).
    pub targets: usize,
}

/// Adds the series of every file.
pub(crate) fn push(families: &mut impl Sink, files: &[SourceFileStatus]) {
    for status in files {
        let labels = [("file", status.file.as_str())];
        families.push(
            names::ENDPOINT_SOURCE_LAST_RELOAD_SUCCESSFUL,
            &labels,
            if status.successful { 1.0 } else { 0.0 },
        );
        families.push(
            names::ENDPOINT_SOURCE_TARGETS,
            &labels,
            status.targets as f64,
        );
    }
}
