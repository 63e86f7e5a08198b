//! Runs the filesystem store's blocking work (writes that fsync, appends that wait for a
//! group commit) without holding up the async runtime's worker threads.
//!
//! The [`crate::store::Store`] trait is synchronous and the renewer calls it from async
//! tasks. A write that fsyncs blocks its thread for milliseconds; on a worker thread that
//! stalls every task queued behind it, and with one worker per core (two here) a thousand
//! concurrent renewals took turns on two fsyncs at a time. Inside a multi-threaded runtime
//! the work runs under [`tokio::task::block_in_place`], which hands the worker's tasks to
//! another thread first, so fsyncs of different renewals proceed side by side. Elsewhere
//! (no runtime, or a single-threaded one, where `block_in_place` is not allowed) it runs
//! directly.
//!
//! Each piece of work moved off a worker holds a thread (the runtime starts a new worker
//! in its place), so at most [`MAX_OFF_WORKERS`] run that way at once; beyond that the
//! work runs on its worker as before. Unbounded, a thousand renewals waiting on fsyncs
//! held hundreds of threads and doubled the peak memory (209 MiB for 1,000 certificates).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Handle, RuntimeFlavor};

/// Most store operations run off the workers at once. The disk commits concurrent fsyncs
/// together, so a few dozen in flight keep it busy.
const MAX_OFF_WORKERS: usize = 32;

/// Store operations running off the workers now, process-wide.
static OFF_WORKERS: AtomicUsize = AtomicUsize::new(0);

/// Runs `work` on this thread, first moving this worker's queued tasks to another thread
/// when called from a multi-threaded runtime and fewer than [`MAX_OFF_WORKERS`] others
/// are.
pub(crate) fn off_the_workers<T>(work: impl FnOnce() -> T) -> T {
    let on_multi_threaded_runtime = Handle::try_current()
        .is_ok_and(|runtime| runtime.runtime_flavor() == RuntimeFlavor::MultiThread);
    if !on_multi_threaded_runtime {
        return work();
    }
    match Slot::take(&OFF_WORKERS, MAX_OFF_WORKERS) {
        Some(_slot) => tokio::task::block_in_place(work),
        None => work(),
    }
}

/// One of a bounded number of places, given back when dropped.
struct Slot<'a> {
    taken: &'a AtomicUsize,
}

impl<'a> Slot<'a> {
    /// A place when fewer than `limit` are taken from `taken`.
    fn take(taken: &'a AtomicUsize, limit: usize) -> Option<Slot<'a>> {
        taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now < limit).then_some(now + 1)
            })
            .ok()
            .map(|_| Slot { taken })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn blocking_work_on_the_only_worker_leaves_other_tasks_running() {
        let (started, blocking) = mpsc::channel::<()>();
        let (release, released) = mpsc::channel::<()>();
        let blocked = tokio::spawn(async move {
            off_the_workers(|| {
                started.send(()).unwrap();
                released.recv()
            })
        });
        blocking.recv_timeout(Duration::from_secs(10)).unwrap();
        // The only worker is inside the work now. Std channels and timeouts: a blocked
        // worker would also stop tokio's timers.
        let (ran, other_ran) = mpsc::channel::<()>();
        tokio::spawn(async move { ran.send(()).unwrap() });
        let other = other_ran.recv_timeout(Duration::from_secs(10));
        release.send(()).unwrap();
        assert!(other.is_ok(), "no other task ran while the work blocked");
        blocked.await.unwrap().unwrap();
    }

    #[test]
    fn at_most_the_limit_of_slots_are_taken_and_a_dropped_one_is_free_again() {
        let taken = AtomicUsize::new(0);
        let first = Slot::take(&taken, 2).expect("first");
        let second = Slot::take(&taken, 2).expect("second");
        assert!(Slot::take(&taken, 2).is_none(), "a third beyond the limit");
        drop(first);
        let third = Slot::take(&taken, 2).expect("the freed one");
        drop((second, third));
        assert_eq!(taken.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn without_a_runtime_the_work_runs_directly() {
        assert_eq!(off_the_workers(|| 7), 7);
    }

    #[tokio::test]
    async fn on_a_single_threaded_runtime_the_work_runs_directly() {
        assert_eq!(off_the_workers(|| 7), 7);
    }
}
