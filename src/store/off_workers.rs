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

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work` on this thread, first moving this worker's queued tasks to another thread
/// when called from a multi-threaded runtime.
pub(crate) fn off_the_workers<T>(work: impl FnOnce() -> T) -> T {
    let on_multi_threaded_runtime = Handle::try_current()
        .is_ok_and(|runtime| runtime.runtime_flavor() == RuntimeFlavor::MultiThread);
    if on_multi_threaded_runtime {
        tokio::task::block_in_place(work)
    } else {
        work()
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
    fn without_a_runtime_the_work_runs_directly() {
        assert_eq!(off_the_workers(|| 7), 7);
    }

    #[tokio::test]
    async fn on_a_single_threaded_runtime_the_work_runs_directly() {
        assert_eq!(off_the_workers(|| 7), 7);
    }
}
