//! The connection budget: one count of the sockets probes hold open, shared by everything
//! in the process that probes (scheduled sweeps, `/probe`, served checks, `certinel check`).
//!
//! Every probe socket holds a [`ConnectionPermit`] from before `connect` until it is closed,
//! so however many requests and sweeps run at once, probes never hold more than
//! `[scanner] max_connections` file descriptors and the rest of the process (the ACME
//! client, the HTTP server, state files, hooks) keeps the headroom it needs.
//!
//! Probes on request ([`Demand::OnRequest`], `/probe`) may hold at most half the budget, so
//! a flood of scrapes never starves the scheduled probes of configured endpoints and the
//! served checks of renewals ([`Demand::Scheduled`]), which may use all of it.

use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Most probe sockets when `RLIMIT_NOFILE` is unlimited or unknown.
pub const FALLBACK_MAX_CONNECTIONS: usize = 4096;

/// Fewest probe sockets the default allows, even under a tiny descriptor limit.
pub const MIN_DEFAULT_MAX_CONNECTIONS: usize = 16;

/// The number of probe sockets that may be open at once; cheap to clone, every clone
/// counts against the same budget.
#[derive(Debug, Clone)]
pub struct ConnectionBudget {
    /// Every probe socket of the process.
    all: Arc<Semaphore>,
    /// The share `/probe` may use; its permits are taken before those of `all`.
    on_request: Arc<Semaphore>,
    limit: usize,
}

/// Who asks for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demand {
    /// Work certinel scheduled itself: sweeps, served checks, `certinel check`.
    Scheduled,
    /// A `/probe` request; limited to half the budget.
    OnRequest,
}

/// One open probe socket's share of the budget, given back when dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    _all: OwnedSemaphorePermit,
    _on_request: Option<OwnedSemaphorePermit>,
}

/// No connection became free in the budget before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("all {limit} probe connections stayed in use until the deadline")]
pub struct BudgetExhausted {
    /// The budget's size.
    pub limit: usize,
}

impl ConnectionBudget {
    /// A budget of `limit` sockets (at least one).
    pub fn new(limit: usize) -> ConnectionBudget {
        let limit = limit.max(1);
        ConnectionBudget {
            all: Arc::new(Semaphore::new(limit)),
            on_request: Arc::new(Semaphore::new(limit.div_ceil(2))),
            limit,
        }
    }

    /// The process's budget. The first call creates it with `max_connections` (or
    /// [`default_max_connections`] when `None`); later calls return the same budget, since
    /// file descriptors belong to the process, and a different size only takes effect on
    /// restart.
    pub fn for_process(max_connections: Option<usize>) -> ConnectionBudget {
        static PROCESS: OnceLock<ConnectionBudget> = OnceLock::new();
        let wanted = max_connections.unwrap_or_else(default_max_connections);
        let budget = PROCESS.get_or_init(|| {
            tracing::info!(max_connections = wanted, "probe connection budget");
            ConnectionBudget::new(wanted)
        });
        if budget.limit != wanted.max(1) {
            tracing::warn!(
                running = budget.limit,
                configured = wanted,
                "scanner.max_connections changes only on restart"
            );
        }
        budget.clone()
    }

    /// The budget's size.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many probe sockets hold a permit right now.
    pub fn in_use(&self) -> usize {
        self.limit - self.all.available_permits()
    }

    /// Waits for a free connection until `deadline`; waiters are served in arrival order.
    pub async fn acquire_before(
        &self,
        demand: Demand,
        deadline: Instant,
    ) -> Result<ConnectionPermit, BudgetExhausted> {
        let exhausted = BudgetExhausted { limit: self.limit };
        let on_request = match demand {
            Demand::Scheduled => None,
            Demand::OnRequest => Some(acquire(&self.on_request, deadline).await.ok_or(exhausted)?),
        };
        let all = acquire(&self.all, deadline).await.ok_or(exhausted)?;
        Ok(ConnectionPermit {
            _all: all,
            _on_request: on_request,
        })
    }
}

/// A permit of `semaphore`, or `None` once `deadline` passed.
async fn acquire(semaphore: &Arc<Semaphore>, deadline: Instant) -> Option<OwnedSemaphorePermit> {
    // The semaphores are never closed, so acquiring fails only by the deadline.
    tokio::time::timeout_at(deadline, semaphore.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// The default `[scanner] max_connections`, from this process's `RLIMIT_NOFILE`.
pub fn default_max_connections() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    max_connections_for(limit.current)
}

/// Half the soft descriptor limit `soft_limit`, at least [`MIN_DEFAULT_MAX_CONNECTIONS`];
/// [`FALLBACK_MAX_CONNECTIONS`] when unlimited (`None`).
///
/// Why half: probes are the only part of certinel whose socket count grows with the
/// traffic it is asked for; the other half stays free for what must never fail for lack
/// of a descriptor: renewals (ACME HTTPS, DNS updates, deploy commands), the HTTP server's
/// own connections, state and audit files, certificate files being inspected.
pub fn max_connections_for(soft_limit: Option<u64>) -> usize {
    match soft_limit {
        None => FALLBACK_MAX_CONNECTIONS,
        Some(soft) => usize::try_from(soft / 2)
            .unwrap_or(usize::MAX)
            .max(MIN_DEFAULT_MAX_CONNECTIONS),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_default_is_half_the_soft_descriptor_limit() {
        assert_eq!(max_connections_for(Some(20_000)), 10_000);
        assert_eq!(max_connections_for(Some(1024)), 512);
        assert_eq!(max_connections_for(Some(10)), MIN_DEFAULT_MAX_CONNECTIONS);
        assert_eq!(max_connections_for(None), FALLBACK_MAX_CONNECTIONS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_budget_makes_the_next_socket_wait_until_one_closes_or_the_deadline() {
        let budget = ConnectionBudget::new(2);
        let now = Instant::now();
        let first = budget.acquire_before(Demand::Scheduled, now).await.unwrap();
        let _second = budget.acquire_before(Demand::Scheduled, now).await.unwrap();
        assert_eq!(budget.in_use(), 2);

        let started = Instant::now();
        let deadline = started + Duration::from_secs(3);
        assert_eq!(
            budget
                .acquire_before(Demand::Scheduled, deadline)
                .await
                .unwrap_err(),
            BudgetExhausted { limit: 2 }
        );
        assert_eq!(started.elapsed(), Duration::from_secs(3));

        let waiting = budget.clone();
        let until = Instant::now() + Duration::from_secs(9);
        let waiter =
            tokio::spawn(async move { waiting.acquire_before(Demand::Scheduled, until).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(first);
        assert!(waiter.await.unwrap().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_hold_at_most_half_the_budget_and_scheduled_probes_keep_the_rest() {
        let budget = ConnectionBudget::new(4);
        let now = Instant::now();
        let _requests = [
            budget.acquire_before(Demand::OnRequest, now).await.unwrap(),
            budget.acquire_before(Demand::OnRequest, now).await.unwrap(),
        ];
        assert!(
            budget
                .acquire_before(Demand::OnRequest, now + Duration::from_secs(1))
                .await
                .is_err()
        );
        let _scheduled = [
            budget.acquire_before(Demand::Scheduled, now).await.unwrap(),
            budget.acquire_before(Demand::Scheduled, now).await.unwrap(),
        ];
        assert_eq!(budget.in_use(), 4);
    }
}
