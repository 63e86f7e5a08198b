//! Which failed etcd requests are tried again. The client spreads requests over every
//! endpoint, a dead member's included: a request routed to it fails to connect and is sent
//! again (another endpoint answers), so losing one member of three changes nothing. A
//! write is repeated only when it certainly never left (no connection was made); a read,
//! or a write that repeats to the same effect, also after a broken connection.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// gRPC status codes (`etcd_client` re-exports no `tonic::Code`).
const GRPC_UNKNOWN: i32 = 2;
const GRPC_UNAVAILABLE: i32 = 14;

/// When a request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// A read, or a write with the same effect however often it is applied.
    Idempotent,
    /// A transaction or lease grant: only when it was never sent.
    Unsent,
}

/// Runs `request` until it succeeds, fails in a way `repeat` does not retry, or `budget`
/// would be exceeded by another pause.
pub(crate) async fn retrying<T, F, Fut>(
    budget: Duration,
    repeat: Repeat,
    mut request: F,
) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let give_up = Instant::now() + budget;
    let mut pause = Duration::from_millis(20);
    loop {
        match request().await {
            Err(error) if may_repeat(&error, repeat) && Instant::now() + pause < give_up => {
                tracing::debug!(%error, "etcd request failed to reach a member; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            result => return result,
        }
    }
}

/// Whether `error` allows sending the request again under `repeat`.
fn may_repeat(error: &etcd_client::Error, repeat: Repeat) -> bool {
    let etcd_client::Error::GRpcStatus(status) = error else {
        return false;
    };
    let code = i32::from(status.code());
    // A status the client made up from a connection failure carries it as its source; a
    // status etcd sent has none.
    let from_transport = std::error::Error::source(status).is_some();
    let never_sent = from_transport && code == GRPC_UNAVAILABLE && never_connected(status);
    match repeat {
        Repeat::Unsent => never_sent,
        // Unavailable from etcd itself: no leader right now (an election).
        Repeat::Idempotent => {
            never_sent || code == GRPC_UNAVAILABLE || (from_transport && code == GRPC_UNKNOWN)
        }
    }
}

/// Whether the status reports a connection that was never established (so nothing of the
/// request was sent).
fn never_connected(status: &dyn std::error::Error) -> bool {
    let mut next = Some(status);
    while let Some(cause) = next {
        let text = cause.to_string();
        if text.contains("tcp connect error") || text.contains("Connection refused") {
            return true;
        }
        next = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A real "connection refused" from the client: a loopback port nobody listens on.
    async fn refused() -> etcd_client::Error {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut client = etcd_client::Client::connect([format!("http://127.0.0.1:{port}")], None)
            .await
            .unwrap();
        client.get("k", None).await.unwrap_err()
    }

    #[tokio::test]
    async fn a_request_that_could_not_connect_is_sent_again_until_it_succeeds() {
        let error = refused().await;
        assert!(may_repeat(&error, Repeat::Unsent), "{error:?}");
        let calls = AtomicUsize::new(0);
        let answer = retrying(Duration::from_secs(5), Repeat::Unsent, || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(refused().await)
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(answer.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retries_stop_within_the_budget_and_other_errors_are_final() {
        let started = Instant::now();
        let unreachable = retrying(Duration::from_millis(300), Repeat::Unsent, || async {
            Err::<(), _>(refused().await)
        })
        .await;
        assert!(unreachable.is_err());
        assert!(Instant::now() - started < Duration::from_secs(2));
        let not_status = etcd_client::Error::InvalidArgs("bad".into());
        assert!(!may_repeat(&not_status, Repeat::Idempotent));
    }
}
