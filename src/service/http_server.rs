//! The exporter's HTTP server: accepts connections up to `max_connections`, serves each
//! with hyper's HTTP/1 under the deadlines of [`connection_deadline`] and, on shutdown,
//! closes waiting connections at once and lets running requests finish.
//!
//! Invariant: this module knows nothing about the routes; it serves whatever [`Router`] it
//! is given.
//!
//! [`connection_deadline`]: crate::service::connection_deadline

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::model::ConnectionLimits;
use crate::service::connection_deadline::{self, Deadlines, Phase, Verdict};

/// How long the accept loop pauses after an error such as running out of file
/// descriptors, so that it does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` is cancelled, then waits for the
/// requests that are running to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut builder = http1::Builder::new();
    // hyper counts its own header timer from the moment it waits for a head, idle time
    // included; with the sum of both limits it never fires before ours and still bounds a
    // connection on its own.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout + limits.header_read_timeout);
    let deadlines = Deadlines {
        header_read_timeout: limits.header_read_timeout,
        idle_timeout: limits.idle_timeout,
    };
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "cannot accept an HTTP connection");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Dropping the stream closes it: the client learns at once instead of waiting.
            tracing::debug!(
                %peer,
                max_connections = limits.max_connections,
                "too many HTTP connections; closing the new one"
            );
            continue;
        };
        let connection = Connection {
            stream,
            peer,
            router: router.clone(),
            builder: builder.clone(),
            deadlines,
            shutdown: shutdown.clone(),
            _slot: slot,
        };
        connections.spawn(connection.serve());
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// One accepted connection and what it needs to be served.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    builder: http1::Builder,
    deadlines: Deadlines,
    shutdown: CancellationToken,
    /// Held while the connection is open; frees its place under `max_connections`.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(self) {
        let activity = Arc::new(Activity::new(Instant::now()));
        let io = TokioIo::new(WatchedIo {
            inner: self.stream,
            activity: activity.clone(),
        });
        let service = {
            let router = TowerToHyperService::new(self.router);
            let activity = activity.clone();
            hyper::service::service_fn(move |request| {
                let serving = Serving::begin(activity.clone());
                let response = hyper::service::Service::call(&router, request);
                async move {
                    let response = response.await;
                    drop(serving);
                    response
                }
            })
        };
        let connection = self.builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut draining = false;
        loop {
            let until = match connection_deadline::verdict(
                activity.phase(),
                Instant::now(),
                self.deadlines,
            ) {
                Verdict::Keep { until } => until,
                Verdict::Close(reason) => {
                    tracing::debug!(peer = %self.peer, ?reason, "closing HTTP connection");
                    return;
                }
            };
            let changed = activity.changed.notified();
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(peer = %self.peer, %error, "HTTP connection failed");
                    }
                    return;
                }
                () = changed => {}
                () = sleep_until(until) => {}
                () = self.shutdown.cancelled(), if !draining => {
                    if activity.phase() != Phase::Serving {
                        return;
                    }
                    // The running request finishes and its response says the connection
                    // closes; then hyper returns.
                    connection.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        }
    }
}

/// Sleeps until `until`, or forever.
async fn sleep_until(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

/// What the socket and the handlers of one connection report to its deadline check.
struct Activity {
    phase: Mutex<Phase>,
    /// Woken on every change of phase; a deadline may have moved closer.
    changed: Notify,
}

impl Activity {
    fn new(now: Instant) -> Activity {
        Activity {
            phase: Mutex::new(Phase::waiting(now)),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        let next = change(*phase);
        if next == *phase {
            return;
        }
        // A wait that only began later moves its deadline later: the check finds that out
        // when it wakes. Every other change may bring a deadline closer.
        let only_later = matches!(
            (*phase, next),
            (
                Phase::Waiting {
                    first_byte: None,
                    ..
                },
                Phase::Waiting {
                    first_byte: None,
                    ..
                }
            )
        );
        *phase = next;
        if !only_later {
            self.changed.notify_one();
        }
    }
}

/// Marks a connection as serving while a handler runs; waiting again when dropped.
struct Serving(Arc<Activity>);

impl Serving {
    fn begin(activity: Arc<Activity>) -> Serving {
        activity.update(|_| Phase::Serving);
        Serving(activity)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.update(|_| Phase::waiting(Instant::now()));
    }
}

/// A socket that reports the bytes it moves to the connection's [`Activity`].
struct WatchedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.update(|phase| phase.on_read(Instant::now()));
        }
        result
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_written(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_written(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl WatchedIo {
    fn note_written(&self, result: &Poll<io::Result<usize>>) {
        if matches!(result, Poll::Ready(Ok(written)) if *written > 0) {
            self.activity.update(|phase| phase.on_write(Instant::now()));
        }
    }
}
