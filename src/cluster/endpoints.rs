//! Keeps etcd members that refuse connections out of the client's balancer.
//!
//! `etcd_client` spreads requests over every configured endpoint and sends some of them to
//! a member that is down, where they fail at once (its issue #39): with one of three
//! members down, a third of all requests would fail. So the endpoints' ports are probed
//! every [`PROBE_INTERVAL`]; the balancer holds the ones that accept connections, or all of
//! them when none does (requests then fail at once, rather than wait for an endpoint).
//! A member that accepts connections but is stuck is not detected here: the HTTP/2
//! keep-alive of open streams and etcd's own errors cover it.

use std::time::Duration;

use etcd_client::Client;

/// How often the endpoints' ports are probed.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long one probe may take to connect.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Which endpoints the balancer should hold, given which accept connections: those, or
/// every endpoint when none does.
pub(crate) fn active_set(reachable: &[bool]) -> Vec<bool> {
    if reachable.iter().any(|&up| up) {
        reachable.to_vec()
    } else {
        vec![true; reachable.len()]
    }
}

/// Whether each endpoint's port accepts a TCP connection within [`PROBE_TIMEOUT`], probed
/// concurrently.
pub(crate) async fn probe_all(endpoints: &[String]) -> Vec<bool> {
    futures::future::join_all(endpoints.iter().map(|url| accepts_connections(url))).await
}

/// Probes the endpoints for ever and moves them in and out of `client`'s balancer;
/// `active` is what the balancer holds now. Runs until the runtime stops.
pub(crate) async fn keep_balanced(client: Client, endpoints: Vec<String>, mut active: Vec<bool>) {
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let wanted = active_set(&probe_all(&endpoints).await);
        for ((url, now), want) in endpoints.iter().zip(active.iter_mut()).zip(wanted) {
            if *now == want {
                continue;
            }
            let changed = if want {
                client.add_endpoint(url).await
            } else {
                client.remove_endpoint(url).await
            };
            match changed {
                Ok(()) if want => {
                    tracing::info!(target: "certinel::cluster", endpoint = %url,
                        "etcd endpoint accepts connections again; using it");
                    *now = true;
                }
                Ok(()) => {
                    tracing::warn!(target: "certinel::cluster", endpoint = %url,
                        "etcd endpoint refuses connections; using the others until it is back");
                    *now = false;
                }
                Err(error) => {
                    tracing::warn!(target: "certinel::cluster", endpoint = %url, %error,
                        "cannot change the etcd client's endpoints");
                }
            }
        }
    }
}

/// Whether `url`'s host and port accept a TCP connection.
async fn accepts_connections(url: &str) -> bool {
    let authority = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let connect = tokio::net::TcpStream::connect(authority);
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, connect).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_balancer_holds_the_reachable_endpoints_or_all_when_none_is() {
        assert_eq!(
            active_set(&[true, false, true]),
            [true, false, true].to_vec()
        );
        assert_eq!(active_set(&[false, false]), [true, true].to_vec());
        assert_eq!(active_set(&[]), Vec::<bool>::new());
    }
}
