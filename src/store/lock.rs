//! One advisory lock file per certificate, so `certinel renew` and `certinel run` never
//! renew (or roll back) the same certificate at once.
//!
//! [`crate::store::FsStore`]'s lock is `flock(2)` on `state_dir/locks/NAME.lock`: the
//! kernel drops it when the holder exits, even after `kill -9`, so a crash never leaves a
//! stale lock behind. Another backend holds something else (a lease) in a [`RenewalLock`].

use std::any::Any;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

/// How often a held lock is tried again before it counts as held, and the pause between:
/// 100 ms in all, enough for a forked child's copy of the descriptor to reach its exec.
const HELD_RETRIES: usize = 10;
const HELD_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process (or task) holds the lock: a renewal is already in progress.
    #[error("renewal already in progress")]
    Held,
    /// The lock file could not be created or locked.
    #[error("lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The lock could not be asked for (etcd unreachable, a bad name).
    #[error("lock: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// A held lock on one certificate, released when dropped.
#[derive(Debug)]
pub struct RenewalLock {
    // The lock lives as long as this value (an open file description, a lease keeper);
    // dropping it releases the lock.
    _held: Box<dyn Any + Send + Sync>,
}

impl RenewalLock {
    /// A lock that is held as long as `guard` lives.
    pub fn holding(guard: impl Any + Send + Sync) -> RenewalLock {
        RenewalLock {
            _held: Box::new(guard),
        }
    }

    /// Takes the lock of certificate `name` under `state_dir` without waiting.
    pub(crate) fn try_acquire(state_dir: &Path, name: &str) -> Result<RenewalLock, LockError> {
        let directory = state_dir.join("locks");
        let path = directory.join(format!("{name}.lock"));
        let io_error = |source: std::io::Error| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&directory).map_err(io_error)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error)?;
        // A lock this process just released can still look held for a moment: a child
        // forked by another thread (a deploy command, a test's server) holds a copy of the
        // descriptor until its exec closes it. Such a copy goes within milliseconds; a real
        // holder (another certinel renewing) does not, and is reported as held.
        for _ in 0..HELD_RETRIES {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(RenewalLock::holding(file)),
                Err(rustix::io::Errno::WOULDBLOCK) => std::thread::sleep(HELD_PAUSE),
                Err(errno) => return Err(io_error(errno.into())),
            }
        }
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(RenewalLock::holding(file)),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(LockError::Held),
            Err(errno) => Err(io_error(errno.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_drops_the_lock() {
        let state_dir = tempfile::tempdir().unwrap();
        let first = RenewalLock::try_acquire(state_dir.path(), "api").unwrap();
        let second = RenewalLock::try_acquire(state_dir.path(), "api");
        assert!(matches!(second, Err(LockError::Held)), "{second:?}");
        assert_eq!(
            RenewalLock::try_acquire(state_dir.path(), "api")
                .unwrap_err()
                .to_string(),
            "renewal already in progress"
        );
        drop(first);
        RenewalLock::try_acquire(state_dir.path(), "api").unwrap();
    }

    #[test]
    fn a_lock_released_within_a_few_milliseconds_is_acquired_not_reported_held() {
        // As when a forked child holds a copy of the descriptor until its exec.
        let state_dir = tempfile::tempdir().unwrap();
        let first = RenewalLock::try_acquire(state_dir.path(), "api").unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(first);
        });
        RenewalLock::try_acquire(state_dir.path(), "api").unwrap();
        releaser.join().unwrap();
    }

    #[test]
    fn locks_of_different_certificates_are_independent() {
        let state_dir = tempfile::tempdir().unwrap();
        let _api = RenewalLock::try_acquire(state_dir.path(), "api").unwrap();
        RenewalLock::try_acquire(state_dir.path(), "www").unwrap();
    }
}
