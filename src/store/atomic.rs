//! Crash-safe file and symlink replacement for the store: [`crate::disk`]'s single atomic
//! writer, its errors worded as [`StoreError`]s.

use std::path::Path;

use crate::store::StoreError;

pub use crate::disk::{MODE_PUBLIC, MODE_SECRET};

/// Replaces `path` with `bytes` atomically, created with `mode` from the start
/// ([`crate::disk::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    Ok(crate::disk::write_atomic(path, bytes, mode)?)
}

/// Points `link` at `target`, replacing an existing symlink in one rename.
pub fn replace_symlink_atomic(link: &Path, target: &Path) -> Result<(), StoreError> {
    Ok(crate::disk::replace_symlink_atomic(link, target)?)
}

/// Flushes a directory's entries (new, renamed or removed names) to disk.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    Ok(crate::disk::sync_dir(dir)?)
}

impl From<crate::disk::DiskError> for StoreError {
    fn from(error: crate::disk::DiskError) -> Self {
        StoreError::Io {
            action: error.action,
            path: error.path,
            source: error.source,
        }
    }
}
