//! A sweep: probes many endpoints with bounded concurrency; one bad endpoint never stops it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::model::Endpoint;
use crate::scan::probe::{EndpointReport, ProbeContext, ProbeError, probe_endpoint};

/// Probes every endpoint with at most `concurrency` in flight; results come back in the
/// order of `endpoints`. `progress(done, total)` is called as each endpoint finishes.
///
/// A probe that panics becomes a report whose `resolve_error` is
/// [`ProbeError::Internal`]; the other probes carry on. A `concurrency` of 0 counts as 1.
pub async fn sweep_endpoints(
    endpoints: &[Endpoint],
    ctx: Arc<ProbeContext>,
    concurrency: usize,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> Vec<EndpointReport> {
    sweep_with(endpoints, concurrency, progress, move |endpoint| {
        let ctx = ctx.clone();
        async move { probe_endpoint(&endpoint, &ctx).await }
    })
    .await
}

/// The sweep machinery, with the probe as a parameter so tests can make it misbehave.
async fn sweep_with<P, F>(
    endpoints: &[Endpoint],
    concurrency: usize,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
    probe: P,
) -> Vec<EndpointReport>
where
    P: Fn(Endpoint) -> F,
    F: Future<Output = EndpointReport> + Send + 'static,
{
    let total = endpoints.len();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut index_of_task = HashMap::with_capacity(total);
    for (index, endpoint) in endpoints.iter().enumerate() {
        let permits = permits.clone();
        let probe_one = probe(endpoint.clone());
        let handle = tasks.spawn(async move {
            // The semaphore is never closed, so acquiring only waits, never fails; a
            // failure would merely let this probe run without a permit.
            let _permit = permits.acquire_owned().await;
            probe_one.await
        });
        index_of_task.insert(handle.id(), index);
    }

    let mut reports: Vec<Option<EndpointReport>> = vec![None; total];
    let mut done = 0;
    // Invariant: every task id was recorded in `index_of_task` when it was spawned, before
    // any join, so the lookups below cannot miss.
    while let Some(joined) = tasks.join_next_with_id().await {
        let (index, report) = match joined {
            Ok((id, report)) => (index_of_task[&id], report),
            Err(error) => {
                let index = index_of_task[&error.id()];
                let report = failed_report(&endpoints[index], describe_join_error(error));
                (index, report)
            }
        };
        reports[index] = Some(report);
        done += 1;
        progress(done, total);
    }
    reports
        .into_iter()
        .zip(endpoints)
        .map(|(report, endpoint)| {
            // Every spawned task is joined exactly once above, so every slot is filled;
            // the fallback only guards against that reasoning being wrong.
            report
                .unwrap_or_else(|| failed_report(endpoint, "probe result went missing".to_string()))
        })
        .collect()
}

/// A report for a probe that produced none.
fn failed_report(endpoint: &Endpoint, detail: String) -> EndpointReport {
    tracing::error!(target = %endpoint.target, %detail, "probe task failed");
    EndpointReport {
        endpoint: endpoint.clone(),
        started_at: OffsetDateTime::now_utc(),
        resolve_error: Some(ProbeError::Internal(detail)),
        addresses: Vec::new(),
        addresses_truncated: 0,
        addresses_disagree: false,
        client_cert: None,
    }
}

fn describe_join_error(error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return "probe task was cancelled".to_string();
    }
    let payload = error.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_string());
    format!("probe panicked: {message}")
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::config::model::{Host, Target};

    fn endpoints(count: u16) -> Vec<Endpoint> {
        (1..=count)
            .map(|port| {
                let target = Target {
                    host: Host::Name(format!("host{port}.test")),
                    port,
                };
                Endpoint::new(target, Duration::from_secs(1))
            })
            .collect()
    }

    fn empty_report(endpoint: Endpoint) -> EndpointReport {
        EndpointReport {
            endpoint,
            started_at: OffsetDateTime::UNIX_EPOCH,
            resolve_error: None,
            addresses: Vec::new(),
            addresses_truncated: 0,
            addresses_disagree: false,
            client_cert: None,
        }
    }

    #[tokio::test]
    async fn a_panicking_probe_becomes_an_internal_error_and_the_sweep_goes_on() {
        let endpoints = endpoints(5);
        let reports = sweep_with(&endpoints, 2, &|_, _| {}, |endpoint: Endpoint| async move {
            if endpoint.target.port == 3 {
                panic!("boom on port 3");
            }
            empty_report(endpoint)
        })
        .await;

        let ports: Vec<u16> = reports.iter().map(|r| r.endpoint.target.port).collect();
        assert_eq!(ports, vec![1, 2, 3, 4, 5]);
        assert_eq!(
            reports[2].resolve_error,
            Some(ProbeError::Internal(
                "probe panicked: boom on port 3".to_string()
            ))
        );
        assert!(reports.iter().filter(|r| r.resolve_error.is_none()).count() == 4);
    }

    #[tokio::test(start_paused = true)]
    async fn results_keep_input_order_when_probes_finish_out_of_order() {
        let endpoints = endpoints(8);
        // Earlier endpoints take longer, so they finish last.
        let reports = sweep_with(&endpoints, 8, &|_, _| {}, |endpoint: Endpoint| async move {
            let delay = 100 - u64::from(endpoint.target.port) * 10;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            empty_report(endpoint)
        })
        .await;
        let ports: Vec<u16> = reports.iter().map(|r| r.endpoint.target.port).collect();
        assert_eq!(ports, (1..=8).collect::<Vec<u16>>());
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_concurrency_probes_run_at_once() {
        let in_flight = Arc::new(Mutex::new((0usize, 0usize)));
        let endpoints = endpoints(20);
        let counter = in_flight.clone();
        sweep_with(&endpoints, 3, &|_, _| {}, move |endpoint: Endpoint| {
            let counter = counter.clone();
            async move {
                {
                    let mut guard = counter.lock().unwrap();
                    guard.0 += 1;
                    guard.1 = guard.1.max(guard.0);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                counter.lock().unwrap().0 -= 1;
                empty_report(endpoint)
            }
        })
        .await;
        assert_eq!(in_flight.lock().unwrap().1, 3);
    }

    #[tokio::test]
    async fn progress_counts_every_finished_probe_up_to_the_total() {
        let endpoints = endpoints(6);
        let seen = Mutex::new(Vec::new());
        sweep_with(
            &endpoints,
            2,
            &|done, total| seen.lock().unwrap().push((done, total)),
            |endpoint: Endpoint| async move { empty_report(endpoint) },
        )
        .await;
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen, (1..=6).map(|done| (done, 6)).collect::<Vec<_>>());
    }
}
