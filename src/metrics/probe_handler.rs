//! `/probe?target=host:port&module=NAME&hostname=SNI`: blackbox_exporter's multi-target
//! pattern. Checks the allow-list before connecting anywhere (see [`crate::metrics::allow`]),
//! probes once under the scrape deadline and returns that probe's metrics only. At most
//! [`PROBE_CONCURRENCY_LIMIT`] probes run at once and their sockets count against the
//! process's connection budget (`scan::budget`, at most half of it for `/probe`); a request
//! waits for both up to its deadline and gets a 503 only when the deadline passed first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::model::{AllowRule, Endpoint, ProbeModule, Target};
use crate::metrics::allow::{self, Precheck, Refusal};
use crate::metrics::http::{HttpShared, text_format};
use crate::metrics::render;
use crate::scan::budget::Demand;
use crate::scan::probe::{self, EndpointReport, ProbeContext, ProbeError};

/// The header Prometheus sends with its scrape timeout in seconds.
pub const SCRAPE_TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";

/// Left for the HTTP round trip when a scrape timeout is given.
pub const SCRAPE_TIMEOUT_MARGIN: Duration = Duration::from_millis(500);

/// The shortest deadline a probe gets, however short the scrape timeout.
pub const MINIMUM_DEADLINE: Duration = Duration::from_millis(100);

/// Most `/probe` requests probing at once; more wait for a slot until their deadline. The
/// sockets themselves are bounded by the connection budget; this bounds the memory and
/// handshake work of requests in flight.
pub const PROBE_CONCURRENCY_LIMIT: usize = 32;

/// Counts the `/probe` requests in flight; shared by every request of one router.
#[derive(Debug, Clone)]
pub struct ProbeLimiter {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl ProbeLimiter {
    /// A limiter that lets `limit` probes run at once.
    pub fn new(limit: usize) -> ProbeLimiter {
        ProbeLimiter {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }
}

/// The module used when the request names none and the configuration defines no `default`.
pub fn builtin_module() -> ProbeModule {
    ProbeModule::with_timeout(Duration::from_secs(5))
}

/// The probe deadline: the module's timeout, shortened to the scrape timeout minus
/// [`SCRAPE_TIMEOUT_MARGIN`] when Prometheus sends one; never below [`MINIMUM_DEADLINE`].
/// An unparsable header is ignored.
pub fn probe_deadline(module_timeout: Duration, scrape_timeout_header: Option<&str>) -> Duration {
    let scrape_limit = scrape_timeout_header
        .and_then(|text| text.trim().parse::<f64>().ok())
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .filter(|limit| !limit.is_zero())
        .map(|limit| limit.saturating_sub(SCRAPE_TIMEOUT_MARGIN));
    let deadline = match scrape_limit {
        Some(limit) => module_timeout.min(limit),
        None => module_timeout,
    };
    deadline.max(MINIMUM_DEADLINE)
}

/// The endpoint a `/probe` request describes: the module's settings, the target, and
/// `hostname=` as SNI when given.
pub fn probe_endpoint_for(
    target: Target,
    module: &ProbeModule,
    hostname: Option<&str>,
    deadline: Duration,
) -> Endpoint {
    let probe = ProbeModule {
        sni: hostname.map(str::to_owned).or_else(|| module.sni.clone()),
        timeout: deadline,
        ..module.clone()
    };
    Endpoint {
        probe,
        ..Endpoint::new(target, deadline)
    }
}

/// The `/probe` handler. A request waits for a free slot of [`ProbeLimiter`] and for free
/// connections in the budget up to its deadline, and gets a 503 only when that deadline
/// passed before it could probe.
pub async fn probe(
    Extension(limiter): Extension<ProbeLimiter>,
    State(shared): State<Arc<HttpShared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    probe_within_limits(&limiter, &shared, &query, &headers).await
}

async fn probe_within_limits(
    limiter: &ProbeLimiter,
    shared: &HttpShared,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    let received = Instant::now();
    let Some(target_text) = query.get("target") else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "missing target parameter".to_owned(),
        );
    };
    let target: Target = match target_text.parse() {
        Ok(target) => target,
        // The error quotes the input and starts "invalid target" itself.
        Err(error) => return refuse(StatusCode::BAD_REQUEST, error.to_string()),
    };
    let setup = shared.probe_setup();
    let module_name = query.get("module").map_or("default", String::as_str);
    let module = match setup.exporter.modules.get(module_name) {
        Some(module) => module.clone(),
        None if module_name == "default" => builtin_module(),
        None => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("unknown module {module_name:?}"),
            );
        }
    };
    let header = headers
        .get(SCRAPE_TIMEOUT_HEADER)
        .and_then(|value| value.to_str().ok());
    let deadline = probe_deadline(module.timeout, header);
    let rules = &setup.exporter.probe_allow;
    // A refusal needs no capacity: answer it before waiting for any.
    if let Precheck::Denied(reason) = allow::precheck(&target.host, rules) {
        return refuse(StatusCode::FORBIDDEN, reason);
    }
    let until = received + deadline;
    let Ok(Ok(_slot)) = tokio::time::timeout_at(until, limiter.permits.acquire()).await else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "all {} /probe slots stayed busy for the whole {deadline:?} deadline; \
                 try again later",
                limiter.limit
            ),
        );
    };
    // The probe gets what the wait left of the deadline, not a fresh one.
    let left = until.saturating_duration_since(Instant::now());
    let endpoint = probe_endpoint_for(
        target,
        &module,
        query.get("hostname").map(String::as_str),
        left,
    );
    let report = match probe_allowed(&endpoint, rules, &setup.context, left).await {
        Ok(report) => report,
        Err(reason) => return refuse(StatusCode::FORBIDDEN, reason.to_string()),
    };
    if waited_out_the_budget(&report) {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no probe connection came free within the {deadline:?} deadline (budget {}); \
                 try again later",
                setup.context.budget.limit()
            ),
        );
    }
    tracing::debug!(
        target = %endpoint.target,
        module = module_name,
        success = render::probe_succeeded(&report),
        "/probe"
    );
    match render::render_probe(&report, OffsetDateTime::now_utc()) {
        Ok(body) => text_format(body),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response(),
    }
}

/// An address of `report` never got a connection from the budget before the deadline.
fn waited_out_the_budget(report: &EndpointReport) -> bool {
    report.addresses.iter().any(|address| {
        matches!(
            &address.outcome,
            Err(ProbeError::Timeout { stage, .. }) if *stage == probe::BUDGET_STAGE
        )
    })
}

/// Probes `endpoint` when the allow-list `rules` admit it: a name is looked up only after a
/// host-name rule matched it, and every address it resolves to must fall inside a network
/// rule before the first connection; exactly those checked addresses are probed. One
/// deadline, `deadline` from the start, covers the resolution and the probes together.
/// The error is the one-line reason for a 403.
async fn probe_allowed(
    endpoint: &Endpoint,
    rules: &[AllowRule],
    context: &ProbeContext,
    deadline: Duration,
) -> Result<EndpointReport, Refusal> {
    if let Precheck::Denied(reason) = allow::precheck(&endpoint.target.host, rules) {
        return Err(Refusal::Denied(reason));
    }
    let name = endpoint.target.host.to_string();
    let probing =
        probe::probe_endpoint_admitting(endpoint, context, Demand::OnRequest, |addresses| {
            allow::check_addresses(&name, addresses, rules)
        });
    with_deadline(endpoint, deadline, probing).await
}

async fn with_deadline<E>(
    endpoint: &Endpoint,
    deadline: Duration,
    probe: impl Future<Output = Result<EndpointReport, E>>,
) -> Result<EndpointReport, E> {
    let started_at = OffsetDateTime::now_utc();
    // The probe enforces the deadline itself (resolution included); this outer bound is a
    // backstop so a scrape never outlives Prometheus' timeout.
    match tokio::time::timeout(deadline + SCRAPE_TIMEOUT_MARGIN / 2, probe).await {
        Ok(result) => result,
        Err(_) => Ok(timed_out(endpoint, started_at, deadline)),
    }
}

fn timed_out(
    endpoint: &Endpoint,
    started_at: OffsetDateTime,
    deadline: Duration,
) -> EndpointReport {
    failed(
        endpoint,
        started_at,
        ProbeError::Timeout {
            stage: "probe",
            after: deadline,
        },
    )
}

fn failed(endpoint: &Endpoint, started_at: OffsetDateTime, error: ProbeError) -> EndpointReport {
    EndpointReport {
        endpoint: endpoint.clone(),
        started_at,
        resolve_error: Some(error),
        addresses: Vec::new(),
        addresses_truncated: 0,
        addresses_disagree: false,
        client_cert: None,
    }
}

fn refuse(status: StatusCode, reason: String) -> Response {
    tracing::info!(%status, %reason, "/probe refused");
    (status, format!("{reason}\n")).into_response()
}

#[cfg(test)]
mod tests;
