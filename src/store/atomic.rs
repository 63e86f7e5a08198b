//! Crash-safe file and symlink replacement: temp file in the same directory, fsync, rename,
//! fsync the directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::StoreError;

/// File mode for private keys and other secrets.
pub const MODE_SECRET: u32 = 0o600;
/// File mode for certificates and metadata.
pub const MODE_PUBLIC: u32 = 0o644;

/// Replaces `path` with `bytes` so that a reader (or a crash) sees either the old or the new
/// content, never a mix. The file is created with `mode` from the start, so a key is never
/// readable by others, not even for a moment.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    write_atomic_with(path, bytes, mode, |_| Ok(()))
}

/// Points `link` at `target` (stored as given, usually a relative name like `v0003`),
/// replacing an existing symlink in one rename.
pub fn replace_symlink_atomic(link: &Path, target: &Path) -> Result<(), StoreError> {
    let temp = temp_path(link)?;
    std::os::unix::fs::symlink(target, &temp)
        .map_err(|e| StoreError::io("create symlink", &temp, e))?;
    if let Err(e) = fs::rename(&temp, link) {
        let _ = fs::remove_file(&temp);
        return Err(StoreError::io("rename symlink onto", link, e));
    }
    sync_parent(link)
}

/// Flushes a directory's entries (new, renamed or removed names) to disk.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

/// `write_atomic` with a hook that runs after the temp file is durable and before the rename;
/// tests inject failures there.
fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    before_rename: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    let temp = temp_path(path)?;
    let result = write_durable(&temp, bytes, mode)
        .and_then(|()| before_rename(&temp).map_err(|e| StoreError::io("prepare", &temp, e)))
        .and_then(|()| fs::rename(&temp, path).map_err(|e| StoreError::io("rename onto", path, e)));
    if let Err(e) = result {
        // Best effort: the temp name starts with '.', so a leftover is harmless and is
        // removed by the next recovery.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_parent(path)
}

/// Writes and fsyncs a new file at `path` with exactly `mode`.
fn write_durable(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| StoreError::io("create", path, e))?;
    // The umask may have narrowed the mode; set it exactly (it never widens a secret).
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| StoreError::io("chmod", path, e))?;
    file.write_all(bytes)
        .map_err(|e| StoreError::io("write", path, e))?;
    file.sync_all()
        .map_err(|e| StoreError::io("fsync", path, e))
}

/// A fresh dot-prefixed name next to `path`, unique within this process and across processes.
fn temp_path(path: &Path) -> Result<PathBuf, StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        StoreError::io(
            "name",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = format!(".{}.tmp.{}.{n}", name.to_string_lossy(), std::process::id());
    Ok(path.with_file_name(temp))
}

fn sync_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_atomic_replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        write_atomic(&path, b"old", MODE_PUBLIC).unwrap();
        write_atomic(&path, b"new", MODE_PUBLIC).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(entries(dir.path()), ["cert.pem"]);
    }

    #[test]
    fn key_files_are_created_0600_even_when_replacing_a_wider_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"public", MODE_PUBLIC).unwrap();
        write_atomic(&path, b"secret", MODE_SECRET).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_failure_before_rename_leaves_the_old_file_intact_and_removes_the_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fullchain.pem");
        write_atomic(&path, b"old", MODE_PUBLIC).unwrap();
        let err = write_atomic_with(&path, b"new", MODE_PUBLIC, |_| {
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["fullchain.pem"]);
    }

    #[test]
    fn a_failed_rename_onto_a_directory_leaves_it_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"x").unwrap();
        assert!(write_atomic(&path, b"new", MODE_PUBLIC).is_err());
        assert_eq!(fs::read(path.join("inside")).unwrap(), b"x");
        assert_eq!(entries(dir.path()), ["busy"]);
    }

    #[test]
    fn replace_symlink_atomic_switches_an_existing_link() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("v0001")).unwrap();
        fs::create_dir(dir.path().join("v0002")).unwrap();
        let link = dir.path().join("current");
        replace_symlink_atomic(&link, Path::new("v0001")).unwrap();
        replace_symlink_atomic(&link, Path::new("v0002")).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("v0002"));
        assert_eq!(entries(dir.path()), ["current", "v0001", "v0002"]);
    }
}
