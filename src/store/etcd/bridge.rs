//! The blocking [`Store`](crate::store::Store) methods over the async etcd client: a small
//! runtime owned by the store runs every request, and the calling thread waits for the
//! answer on a channel.
//!
//! The store's methods are called from plain threads and from inside tokio workers;
//! `Handle::block_on` would panic in the latter, and a client whose connection tasks live
//! on the caller's runtime would deadlock when that runtime's only thread waits. So the
//! client is best made on this runtime ([`Bridge::run`] a connect future), and every request
//! has a deadline: an unreachable etcd is a [`StoreError::Etcd`], never a hang.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};

use crate::store::StoreError;

/// How long one etcd request (a get, a transaction, a lease grant) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A dedicated runtime thread that runs etcd requests for blocking callers.
#[derive(Debug)]
pub(crate) struct Bridge {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl Bridge {
    /// Starts the runtime (one worker thread, `certinel-etcd`).
    pub(crate) fn start() -> Result<Bridge, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("certinel-etcd")
            .enable_all()
            .build()
            .map_err(|error| StoreError::Etcd {
                action: "start the client runtime",
                key: String::new(),
                reason: error.to_string(),
            })?;
        let handle = runtime.handle().clone();
        Ok(Bridge {
            runtime: Some(runtime),
            handle,
        })
    }

    /// The runtime's handle, for tasks that outlive one request (lease keep-alives).
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `request` on the runtime and waits for it, at most [`REQUEST_TIMEOUT`]; its
    /// error, or the timeout, becomes a [`StoreError::Etcd`] naming `action` and `key`.
    pub(crate) fn run<T, E>(
        &self,
        action: &'static str,
        key: &str,
        request: impl Future<Output = Result<T, E>> + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let answer = self.run_within(REQUEST_TIMEOUT, action, key, async move {
            request.await.map_err(|error| error.to_string())
        })?;
        answer.map_err(|reason| StoreError::Etcd {
            action,
            key: key.to_owned(),
            reason,
        })
    }

    /// Runs `work` on the runtime and waits for its answer, at most `timeout`; only the
    /// timeout (or a stopped runtime) is a [`StoreError::Etcd`].
    pub(crate) fn run_within<T: Send + 'static>(
        &self,
        timeout: Duration,
        action: &'static str,
        key: &str,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = answer.send(tokio::time::timeout(timeout, work).await);
        });
        let failed = |reason: String| StoreError::Etcd {
            action,
            key: key.to_owned(),
            reason,
        };
        // The task always answers within its timeout; the margin covers a busy runtime.
        match answered.recv_timeout(timeout + Duration::from_secs(5)) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_elapsed)) => Err(failed(format!(
                "no answer within {}s (is etcd reachable?)",
                timeout.as_secs()
            ))),
            Err(_) => Err(failed("the client runtime stopped".to_owned())),
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which panics inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_runs_from_a_plain_thread() {
        let bridge = Bridge::start().unwrap();
        let answer = bridge.run("add", "k", async { Ok::<_, String>(40 + 2) });
        assert_eq!(answer.unwrap(), 42);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_runs_from_inside_a_runtime_and_the_bridge_drops_there() {
        let bridge = Bridge::start().unwrap();
        let error = bridge
            .run("get", "/p/x", async { Err::<(), _>("refused") })
            .unwrap_err();
        assert_eq!(error.to_string(), "etcd: get /p/x: refused");
        drop(bridge);
    }
}
