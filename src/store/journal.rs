//! An append-only file whose appends are committed in groups: every line is durable
//! (written and fsynced) before its append returns, but one `fsync` covers every line
//! queued while the previous one ran. A thousand renewals appending audit lines at once
//! pay for a few dozen fsyncs instead of a thousand in a row behind one lock.
//!
//! One [`Journal`] per path per process ([`Journal::for_path`]): lines are queued in the
//! order their appends took the journal's lock, which is also the order a stamp taken
//! under that lock gives them, and written in that order. Each commit opens the file
//! afresh (`O_APPEND`, created 0600), so a log moved away by a rotation is not written
//! after it is gone.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use crate::store::StoreError;

/// How a commit makes written bytes durable; replaced in tests to hold a commit open.
type SyncFn = dyn Fn(&File) -> std::io::Result<()> + Send + Sync;

/// A group-committed append-only file.
pub(crate) struct Journal {
    path: PathBuf,
    state: Mutex<State>,
    /// Signalled when a commit ends.
    committed: Condvar,
    sync: Box<SyncFn>,
}

#[derive(Default)]
struct State {
    /// Lines waiting for the next commit, in order.
    queued: Vec<u8>,
    /// How many appends wait on the open batch.
    queued_appends: usize,
    /// The batch that queued lines belong to.
    open_batch: u64,
    /// Every batch numbered below this one has been committed or has failed.
    finished_below: u64,
    /// Whether an append is committing a batch now.
    committing: bool,
    /// Failed batches: why, and how many appends have not collected the error yet.
    failures: HashMap<u64, (Arc<std::io::Error>, usize)>,
    /// Commits made (for tests).
    commits: u64,
}

/// Every journal of the process, by path.
fn journals() -> MutexGuard<'static, HashMap<PathBuf, Arc<Journal>>> {
    static JOURNALS: OnceLock<Mutex<HashMap<PathBuf, Arc<Journal>>>> = OnceLock::new();
    // A poisoned lock only means a caller panicked; the map is changed in single calls.
    JOURNALS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// The process's journal for `path` (one per path, so concurrent appends share
    /// commits).
    pub(crate) fn for_path(path: &Path) -> Arc<Journal> {
        journals()
            .entry(path.to_path_buf())
            .or_insert_with(|| Arc::new(Journal::new(path, Box::new(File::sync_data))))
            .clone()
    }

    /// Makes the process's journal for `path` one whose first commit waits (in its fsync)
    /// until the returned sender sends or is dropped.
    #[cfg(test)]
    pub(crate) fn hold_first_commit(path: &Path) -> (Arc<Journal>, std::sync::mpsc::Sender<()>) {
        let (journal, release) = tests::held_journal(path);
        journals().insert(path.to_path_buf(), journal.clone());
        (journal, release)
    }

    /// Whether a commit is running (for tests that hold one).
    #[cfg(test)]
    pub(crate) fn is_committing(&self) -> bool {
        self.lock().committing
    }

    fn new(path: &Path, sync: Box<SyncFn>) -> Journal {
        Journal {
            path: path.to_path_buf(),
            state: Mutex::new(State::default()),
            committed: Condvar::new(),
            sync,
        }
    }

    /// Opens (creating with mode 0600) the file, so an unusable path is reported before
    /// anything is appended.
    pub(crate) fn check_open(&self) -> Result<(), StoreError> {
        self.open().map(drop)
    }

    /// Queues the line `line()` makes (called under the journal's lock, so lines land in
    /// the order of what it reads, e.g. a clock) and returns once it is durable.
    pub(crate) fn append(
        &self,
        line: impl FnOnce() -> Result<String, StoreError>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let text = line()?;
        state.queued.extend_from_slice(text.as_bytes());
        state.queued_appends += 1;
        let batch = state.open_batch;
        loop {
            if state.finished_below > batch {
                return match state.failures.get_mut(&batch) {
                    None => Ok(()),
                    Some((error, waiting)) => {
                        let error = error.clone();
                        *waiting -= 1;
                        if *waiting == 0 {
                            state.failures.remove(&batch);
                        }
                        Err(StoreError::io(
                            "append",
                            &self.path,
                            std::io::Error::new(error.kind(), error.to_string()),
                        ))
                    }
                };
            }
            if state.committing {
                state = self
                    .committed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // No commit is running and this append's batch is still open: commit it.
            let bytes = std::mem::take(&mut state.queued);
            let appends = std::mem::take(&mut state.queued_appends);
            let committing = state.open_batch;
            state.open_batch += 1;
            state.committing = true;
            drop(state);
            let result = self.write(&bytes);
            state = self.lock();
            state.committing = false;
            state.finished_below = committing + 1;
            state.commits += 1;
            if let Err(error) = result {
                state
                    .failures
                    .insert(committing, (Arc::new(error), appends));
            }
            self.committed.notify_all();
        }
    }

    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut file = self.open_raw()?;
        file.write_all(bytes)?;
        (self.sync)(&file)
    }

    fn open(&self) -> Result<File, StoreError> {
        self.open_raw()
            .map_err(|e| StoreError::io("open", &self.path, e))
    }

    fn open_raw(&self) -> std::io::Result<File> {
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means an append panicked; the queue itself is consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    use super::*;

    /// A journal whose first commit waits until `release` says so.
    pub(super) fn held_journal(path: &Path) -> (Arc<Journal>, mpsc::Sender<()>) {
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let first = AtomicUsize::new(0);
        let sync = move |file: &File| {
            if first.fetch_add(1, Ordering::SeqCst) == 0 {
                // A dropped sender releases it too.
                let _ = released.lock().unwrap().recv();
            }
            file.sync_data()
        };
        (Arc::new(Journal::new(path, Box::new(sync))), release)
    }

    fn queued_appends(journal: &Journal) -> usize {
        journal.lock().queued_appends
    }

    #[test]
    fn appends_queued_during_a_commit_share_the_next_one_and_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (journal, release) = held_journal(&path);
        let first = {
            let journal = journal.clone();
            std::thread::spawn(move || journal.append(|| Ok("0\n".into())))
        };
        while !journal.lock().committing {
            std::thread::yield_now();
        }
        let mut others = Vec::new();
        for i in 1..=9 {
            let appender = journal.clone();
            others.push(std::thread::spawn(move || {
                appender.append(|| Ok(format!("{i}\n")))
            }));
            // Each queues before the next starts, so the file order is known.
            while queued_appends(&journal) < i {
                std::thread::yield_now();
            }
        }
        release.send(()).unwrap();
        first.join().unwrap().unwrap();
        for other in others {
            other.join().unwrap().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n");
        assert_eq!(journal.lock().commits, 2, "ten appends, two fsyncs");
    }

    #[test]
    fn every_append_of_a_failed_commit_gets_the_error_and_later_ones_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sync = {
            let fail = fail.clone();
            move |_: &File| {
                if fail.load(Ordering::SeqCst) {
                    Err(std::io::Error::other("disk on fire"))
                } else {
                    Ok(())
                }
            }
        };
        let journal = Journal::new(&path, Box::new(sync));
        let error = journal.append(|| Ok("a\n".into())).unwrap_err();
        assert!(error.to_string().contains("disk on fire"), "{error}");
        assert!(
            journal.lock().failures.is_empty(),
            "the error was collected"
        );
        fail.store(false, Ordering::SeqCst);
        journal.append(|| Ok("b\n".into())).unwrap();
    }

    #[test]
    fn a_line_that_cannot_be_made_queues_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let journal = Journal::for_path(&path);
        let error = journal
            .append(|| {
                Err(StoreError::io(
                    "encode",
                    Path::new("x"),
                    std::io::Error::other("bad"),
                ))
            })
            .unwrap_err();
        assert!(error.to_string().contains("bad"), "{error}");
        journal.append(|| Ok("ok\n".into())).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "ok\n");
    }
}
