//! The exporter's connection limits, against the real `certinel run` binary: slow clients
//! are dropped after the header timeout, connections beyond `max_connections` are closed
//! at once, and SIGTERM does not wait for idle or slow clients.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::eventually::eventually;
use crate::common::service::{PATIENCE, Service, write_config};

/// The start of a request head, without the blank line that ends it.
const HALF_A_HEAD: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n";

/// Starts `certinel run` with the given `[exporter]` connection limits and no targets.
async fn start_with_limits(
    dir: &std::path::Path,
    header_read_timeout: &str,
    idle_timeout: &str,
    max_connections: usize,
) -> Service {
    let config = write_config(
        dir,
        "http_limits.toml",
        &[
            ("HEADER_READ_TIMEOUT", header_read_timeout.to_owned()),
            ("IDLE_TIMEOUT", idle_timeout.to_owned()),
            ("MAX_CONNECTIONS", max_connections.to_string()),
        ],
    );
    Service::start(Some(&config)).await
}

/// A client that sent half a request head and nothing since.
async fn slow_client(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(HALF_A_HEAD)
        .await
        .expect("send half a head");
    stream
}

/// Waits up to `within` for the server to close `stream` (end of file or reset); returns
/// how long that took, or `None` if it stayed open.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    let closed = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                // A 408 or similar before the close is fine; keep reading.
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, closed)
        .await
        .ok()
        .map(|()| started.elapsed())
}

/// `GET /metrics` on a new connection: `Ok` when it answers 200, else what it answered.
async fn metrics_status_ok(addr: SocketAddr) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| format!("send: {error}"))?;
    let mut response = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response)).await;
    let status_line = String::from_utf8_lossy(&response);
    match read {
        Ok(Ok(_)) if status_line.split_whitespace().nth(1) == Some("200") => Ok(()),
        Ok(Ok(_)) => Err(format!("answered {:?}", status_line.lines().next())),
        Ok(Err(error)) => Err(format!("read: {error}")),
        Err(_) => Err(format!("no answer within {PATIENCE:?}")),
    }
}

/// Polls `/metrics` until it answers 200, failing the test after [`PATIENCE`].
async fn metrics_answers(addr: SocketAddr) {
    eventually(PATIENCE, async || metrics_status_ok(addr).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_slow_clients_are_dropped_after_the_header_read_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = start_with_limits(dir.path(), "1s", "30s", 1024).await;
    let clients = join_all((0..300).map(|_| async {
        let stream = slow_client(service.addr).await;
        (stream, Instant::now())
    }))
    .await;

    let closes = join_all(clients.into_iter().map(|(mut stream, sent)| async move {
        closed_within(&mut stream, Duration::from_secs(10))
            .await
            .map(|_| sent.elapsed())
    }))
    .await;
    let open = closes.iter().filter(|close| close.is_none()).count();
    assert_eq!(open, 0, "{open} of 300 slow clients still open after 10 s");
    let earliest = closes.iter().flatten().min().expect("300 closes");
    assert!(
        *earliest >= Duration::from_millis(900),
        "a slow client was dropped before the 1 s header timeout: {earliest:?}"
    );
    metrics_answers(service.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout_and_keep_alive_works_within_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = start_with_limits(dir.path(), "30s", "1s", 1024).await;
    let mut silent = TcpStream::connect(service.addr).await.expect("connect");
    let mut kept_alive = TcpStream::connect(service.addr).await.expect("connect");
    for _ in 0..3 {
        // Each request arrives within the idle timeout of the previous response.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", service.addr);
        kept_alive
            .write_all(request.as_bytes())
            .await
            .expect("send a request on the kept-alive connection");
        let mut response = Vec::new();
        while !response.ends_with(b"\r\n\r\nok\n") {
            let mut chunk = [0u8; 512];
            let read = tokio::time::timeout(PATIENCE, kept_alive.read(&mut chunk))
                .await
                .expect("a response within the patience")
                .expect("read the response");
            assert!(read > 0, "closed before answering: {response:?}");
            response.extend_from_slice(&chunk[..read]);
        }
    }
    let closed_after = closed_within(&mut kept_alive, Duration::from_secs(10))
        .await
        .expect("the kept-alive connection was not closed once idle");
    assert!(
        closed_after >= Duration::from_millis(900),
        "{closed_after:?}"
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(10))
            .await
            .is_some(),
        "a connection that never sent a byte stayed open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_closed_at_once_and_metrics_answers_afterwards() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = start_with_limits(dir.path(), "30s", "30s", 10).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(slow_client(service.addr).await);
    }
    for extra in 0..5 {
        let mut stream = slow_client(service.addr).await;
        let closed = closed_within(&mut stream, Duration::from_secs(1)).await;
        assert!(
            closed.is_some(),
            "connection {} of max 10 was not closed within 1 s",
            11 + extra
        );
    }
    for stream in &mut held {
        assert_eq!(
            closed_within(stream, Duration::from_millis(50)).await,
            None,
            "a connection within the limit was closed"
        );
    }
    drop(held);
    metrics_answers(service.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_fifty_idle_and_slow_connections_open_exits_within_two_seconds() {
    let mut service = Service::start(None).await;
    let mut open = Vec::new();
    for index in 0..50 {
        open.push(if index % 2 == 0 {
            TcpStream::connect(service.addr).await.expect("connect")
        } else {
            slow_client(service.addr).await
        });
    }
    // Accepts are in order, so once this request is answered every connection above is in
    // the server's hands.
    metrics_answers(service.addr).await;

    let signalled = Instant::now();
    service.signal("TERM");
    let status = service.wait_exit().await;
    let elapsed = signalled.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        elapsed < Duration::from_secs(2),
        "SIGTERM took {elapsed:?} with 50 idle and slow connections open"
    );
    drop(open);
}
