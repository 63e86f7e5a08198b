//! File primitives every module that writes or reads state uses: one crash-safe atomic
//! writer, private directories, and reads with a size cap.
//!
//! It sits at the bottom of the module graph (it knows nothing of certinel's types), so
//! `store` and `acme` share the same writer: a temporary file created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` and its final mode, fsynced, renamed over the target, the
//! directory fsynced, the temporary removed on any error.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// File mode for private keys, account credentials and other secrets.
pub const MODE_SECRET: u32 = 0o600;
/// File mode for certificates and metadata.
pub const MODE_PUBLIC: u32 = 0o644;
/// Directory mode for directories that hold secrets.
pub const MODE_PRIVATE_DIR: u32 = 0o700;

/// A file-system step that failed: what was done, to which path, and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct DiskError {
    /// The step, e.g. `create`, `fsync`, `rename onto`.
    pub action: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: std::io::Error,
}

impl DiskError {
    /// `source` met while doing `action` on `path`.
    pub fn new(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// Replaces `path` with `bytes` so that a reader (or a crash) sees either the old or the new
/// content, never a mix. The file is created with `mode` from the start, so a key is never
/// readable by others, not even for a moment.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DiskError> {
    write_atomic_with(path, bytes, mode, |_| Ok(()))
}

/// Points `link` at `target` (stored as given, usually a relative name like `v0003`),
/// replacing an existing symlink in one rename.
pub fn replace_symlink_atomic(link: &Path, target: &Path) -> Result<(), DiskError> {
    let temp = temp_path(link)?;
    std::os::unix::fs::symlink(target, &temp)
        .map_err(|e| DiskError::new("create symlink", &temp, e))?;
    if let Err(e) = fs::rename(&temp, link) {
        let _ = fs::remove_file(&temp);
        return Err(DiskError::new("rename symlink onto", link, e));
    }
    sync_parent(link)
}

/// Flushes a directory's entries (new, renamed or removed names) to disk.
pub fn sync_dir(dir: &Path) -> Result<(), DiskError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| DiskError::new("fsync directory", dir, e))
}

/// Creates `dir` (and its parents) when missing and makes sure it is a real directory with
/// mode 0700: an existing one with a wider mode is narrowed, a symlink is refused.
pub fn ensure_private_dir(dir: &Path) -> Result<(), DiskError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(MODE_PRIVATE_DIR)
        .create(dir)
        .map_err(|e| DiskError::new("create directory", dir, e))?;
    let metadata =
        fs::symlink_metadata(dir).map_err(|e| DiskError::new("inspect directory", dir, e))?;
    if !metadata.is_dir() {
        let refused = std::io::Error::other("not a directory (a symlink is not accepted here)");
        return Err(DiskError::new("use directory", dir, refused));
    }
    if metadata.permissions().mode() & 0o777 != MODE_PRIVATE_DIR {
        fs::set_permissions(dir, fs::Permissions::from_mode(MODE_PRIVATE_DIR))
            .map_err(|e| DiskError::new("chmod directory", dir, e))?;
    }
    Ok(())
}

/// Reads the whole of `path` when it holds at most `limit` bytes. A larger file is refused
/// with [`ReadCappedError::TooLarge`] after reading at most `limit + 1` bytes, so a huge
/// or endless file (a growing log, `/dev/zero` behind a symlink) is never read whole.
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, ReadCappedError> {
    let file = File::open(path).map_err(ReadCappedError::Io)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadCappedError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadCappedError::TooLarge { limit });
    }
    Ok(bytes)
}

/// Why [`read_capped`] returned no content.
#[derive(Debug, thiserror::Error)]
pub enum ReadCappedError {
    /// Opening or reading failed.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// The file holds more than `limit` bytes.
    #[error("larger than {limit} bytes; refused without reading it whole")]
    TooLarge {
        /// The cap in bytes.
        limit: u64,
    },
}

/// `write_atomic` with a hook that runs after the temp file is durable and before the rename;
/// tests inject failures there.
pub(crate) fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    before_rename: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), DiskError> {
    let temp = temp_path(path)?;
    let result = write_durable(&temp, bytes, mode)
        .and_then(|()| before_rename(&temp).map_err(|e| DiskError::new("prepare", &temp, e)))
        .and_then(|()| fs::rename(&temp, path).map_err(|e| DiskError::new("rename onto", path, e)));
    if let Err(e) = result {
        // Best effort: the temp name starts with '.', so a leftover is harmless and is
        // removed by the next recovery.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_parent(path)
}

/// Writes and fsyncs a new file at `path` with exactly `mode`. `O_EXCL` and `O_NOFOLLOW`:
/// an existing name, a planted symlink included, fails instead of being written through.
fn write_durable(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DiskError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .mode(mode)
        .open(path)
        .map_err(|e| DiskError::new("create", path, e))?;
    // The umask may have narrowed the mode; set it exactly (it never widens a secret).
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| DiskError::new("chmod", path, e))?;
    file.write_all(bytes)
        .map_err(|e| DiskError::new("write", path, e))?;
    file.sync_all()
        .map_err(|e| DiskError::new("fsync", path, e))
}

/// A fresh dot-prefixed name next to `path`, unique within this process and across processes.
fn temp_path(path: &Path) -> Result<PathBuf, DiskError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        DiskError::new(
            "name",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    // The counter keeps names unique within the process; the random part keeps a restarted
    // process with the same pid (pid 1 in a container) from meeting a file its predecessor
    // left behind when it was killed mid-write.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) ^ (rand::random::<u64>() << 20);
    let temp = format!(".{}.tmp.{}.{n}", name.to_string_lossy(), std::process::id());
    Ok(path.with_file_name(temp))
}

/// Removes the temporary files [`write_atomic`] left in `dir` when its process died
/// mid-write (kill -9): names of the form `.NAME.tmp.PID.N` whose PID no longer runs. A
/// live process's temporary files are left alone: it may be about to rename them.
/// Returns what it removed.
pub fn remove_stale_temporaries(dir: &Path) -> Result<Vec<PathBuf>, DiskError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DiskError::new("list", dir, e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DiskError::new("list", dir, e))?;
        let name = entry.file_name();
        let Some(pid) = temporary_owner(&name.to_string_lossy()) else {
            continue;
        };
        if process_runs(pid) {
            continue;
        }
        let path = entry.path();
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DiskError::new("remove", &path, e)),
        }
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// The PID in a temporary file name `.NAME.tmp.PID.N`, if `name` is one.
fn temporary_owner(name: &str) -> Option<i32> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tmp.")?;
    let (pid, counter) = tail.split_once('.')?;
    counter.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether a process with this PID exists (signal 0; a permission error means it does).
fn process_runs(pid: i32) -> bool {
    match rustix::process::Pid::from_raw(pid) {
        Some(pid) => !matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        ),
        None => false,
    }
}

fn sync_parent(path: &Path) -> Result<(), DiskError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests;
