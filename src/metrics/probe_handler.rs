//! `/probe?target=host:port&module=NAME&hostname=SNI`: blackbox_exporter's multi-target
//! pattern. Checks the allow-list before connecting anywhere (see [`crate::metrics::allow`]),
//! probes once under the scrape deadline and returns that probe's metrics only. At most
//! [`PROBE_CONCURRENCY_LIMIT`] probes run at once; a request beyond that gets a 503.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::model::{Endpoint, Host, IpFamily, ProbeModule, ResolveMode, Target};
use crate::metrics::allow::{self, Precheck};
use crate::metrics::http::{HttpShared, text_format};
use crate::metrics::render;
use crate::scan::probe::{self, EndpointReport, ProbeContext, ProbeError};

/// The header Prometheus sends with its scrape timeout in seconds.
pub const SCRAPE_TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";

/// Left for the HTTP round trip when a scrape timeout is given.
pub const SCRAPE_TIMEOUT_MARGIN: Duration = Duration::from_millis(500);

/// The shortest deadline a probe gets, however short the scrape timeout.
pub const MINIMUM_DEADLINE: Duration = Duration::from_millis(100);

/// Most `/probe` requests served at once. Each one may hold sockets for its whole deadline,
/// so an unbounded number would let a burst of scrapes exhaust file descriptors.
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
    ProbeModule {
        sni: None,
        starttls: None,
        ca_file: None,
        client_auth: None,
        timeout: Duration::from_secs(5),
        ip_family: IpFamily::Any,
        resolve: ResolveMode::All,
    }
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
    let mut endpoint = Endpoint::new(target, deadline);
    endpoint.sni = hostname.map(str::to_owned).or_else(|| module.sni.clone());
    endpoint.starttls = module.starttls;
    endpoint.ca_file = module.ca_file.clone();
    endpoint.client_auth = module.client_auth.clone();
    endpoint.ip_family = module.ip_family;
    endpoint.resolve = module.resolve;
    endpoint
}

/// Combines probes of single, already-checked addresses into one report for `endpoint`.
pub fn merge_address_probes(
    endpoint: Endpoint,
    started_at: OffsetDateTime,
    probes: Vec<EndpointReport>,
) -> EndpointReport {
    let client_cert = probes.iter().find_map(|probe| probe.client_cert.clone());
    let addresses: Vec<_> = probes
        .into_iter()
        .flat_map(|probe| probe.addresses)
        .collect();
    let addresses_disagree = crate::scan::probe::leaves_disagree(&addresses);
    EndpointReport {
        endpoint,
        started_at,
        resolve_error: None,
        addresses,
        addresses_disagree,
        client_cert,
    }
}

/// The `/probe` handler: 503 when [`ProbeLimiter`]'s probes are all in flight.
pub async fn probe(
    Extension(limiter): Extension<ProbeLimiter>,
    State(shared): State<Arc<HttpShared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    // Refused at once rather than queued: a queued request would only spend the scrape
    // deadline waiting and then probe with whatever is left of it.
    let Ok(_permit) = limiter.permits.try_acquire() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many /probe requests in flight (at most {}); try again later",
                limiter.limit
            ),
        );
    };
    probe_unlimited(&shared, &query, &headers).await
}

async fn probe_unlimited(
    shared: &HttpShared,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    let Some(target_text) = query.get("target") else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "missing target parameter".to_owned(),
        );
    };
    let target: Target = match target_text.parse() {
        Ok(target) => target,
        Err(error) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("invalid target {target_text:?}: {error}"),
            );
        }
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
    let endpoint = probe_endpoint_for(
        target,
        &module,
        query.get("hostname").map(String::as_str),
        deadline,
    );
    let rules = &setup.exporter.probe_allow;
    let report = match allow::precheck(&endpoint.target.host, rules) {
        Precheck::Denied(reason) => return refuse(StatusCode::FORBIDDEN, reason),
        Precheck::Allowed => {
            with_deadline(
                &endpoint,
                deadline,
                probe::probe_endpoint(&endpoint, &setup.context),
            )
            .await
        }
        Precheck::CheckAddresses => {
            match probe_checked_addresses(&endpoint, rules, &setup.context, deadline).await {
                Ok(report) => report,
                Err(reason) => return refuse(StatusCode::FORBIDDEN, reason),
            }
        }
    };
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

/// Resolves a name no host pattern allowed, checks every address against the networks of
/// the allow-list, then probes exactly those addresses (never a second DNS answer). One
/// deadline, `deadline` from the start, covers the resolution and the probes together.
async fn probe_checked_addresses(
    endpoint: &Endpoint,
    rules: &[crate::config::model::AllowRule],
    context: &ProbeContext,
    deadline: Duration,
) -> Result<EndpointReport, String> {
    let started_at = OffsetDateTime::now_utc();
    let until = Instant::now() + deadline;
    let name = endpoint.target.host.to_string();
    let resolved = tokio::time::timeout_at(
        until,
        context
            .resolver
            .resolve(&endpoint.target.host, endpoint.ip_family, endpoint.resolve),
    )
    .await;
    let addresses: Vec<IpAddr> = match resolved {
        Ok(Ok(addresses)) => addresses,
        Ok(Err(error)) => return Ok(failed(endpoint, started_at, error)),
        Err(_) => return Ok(timed_out(endpoint, started_at, deadline)),
    };
    allow::check_addresses(&name, &addresses, rules)?;
    // The address probes get what the resolution left of the deadline, not a fresh one.
    let left = until.saturating_duration_since(Instant::now());
    let probes = addresses.iter().map(|ip| {
        let mut single = endpoint.clone();
        single.target.host = Host::Ip(*ip);
        single.sni = Some(endpoint.server_name());
        single.resolve = ResolveMode::First;
        single.timeout = left;
        async move { probe::probe_endpoint(&single, context).await }
    });
    let all = futures::future::join_all(probes);
    match tokio::time::timeout_at(until + SCRAPE_TIMEOUT_MARGIN / 2, all).await {
        Ok(probes) => {
            let mut report = merge_address_probes(endpoint.clone(), started_at, probes);
            report_full_deadline(&mut report, deadline);
            Ok(report)
        }
        Err(_) => Ok(timed_out(endpoint, started_at, deadline)),
    }
}

/// Address timeouts name the request's deadline rather than the part of it they were given.
fn report_full_deadline(report: &mut EndpointReport, deadline: Duration) {
    for address in &mut report.addresses {
        if let Err(ProbeError::Timeout { after, .. }) = &mut address.outcome {
            *after = deadline;
        }
    }
}

async fn with_deadline(
    endpoint: &Endpoint,
    deadline: Duration,
    probe: impl Future<Output = EndpointReport>,
) -> EndpointReport {
    let started_at = OffsetDateTime::now_utc();
    // The probe enforces the deadline itself (resolution included); this outer bound is a
    // backstop so a scrape never outlives Prometheus' timeout.
    match tokio::time::timeout(deadline + SCRAPE_TIMEOUT_MARGIN / 2, probe).await {
        Ok(report) => report,
        Err(_) => timed_out(endpoint, started_at, deadline),
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
        addresses_disagree: false,
        client_cert: None,
    }
}

fn refuse(status: StatusCode, reason: String) -> Response {
    tracing::info!(%status, %reason, "/probe refused");
    (status, format!("{reason}\n")).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_or_negative_scrape_timeout_headers_keep_the_module_timeout() {
        let module = Duration::from_secs(5);
        for header in ["1e300", "-3", "NaN", "inf", "0"] {
            assert_eq!(
                super::probe_deadline(module, Some(header)),
                module,
                "{header}"
            );
        }
    }

    use time::macros::datetime;

    use super::*;
    use crate::metrics::render::tests::{handshake, report};

    #[test]
    fn deadline_is_the_scrape_timeout_minus_half_a_second_when_shorter() {
        let five = Duration::from_secs(5);
        assert_eq!(probe_deadline(five, None), five);
        assert_eq!(probe_deadline(five, Some("3")), Duration::from_millis(2500));
        assert_eq!(probe_deadline(five, Some("10.5")), five);
        assert_eq!(probe_deadline(five, Some("0.2")), MINIMUM_DEADLINE);
        assert_eq!(probe_deadline(five, Some("soon")), five);
        assert_eq!(probe_deadline(five, Some("-1")), five);
    }

    #[test]
    fn hostname_parameter_overrides_the_module_sni() {
        let mut module = builtin_module();
        module.sni = Some("module.test".to_owned());
        let target = Target {
            host: Host::Ip("127.0.0.1".parse().unwrap()),
            port: 8443,
        };
        let deadline = Duration::from_secs(2);
        let from_module = probe_endpoint_for(target.clone(), &module, None, deadline);
        assert_eq!(from_module.sni.as_deref(), Some("module.test"));
        assert_eq!(from_module.timeout, deadline);
        let from_query = probe_endpoint_for(target, &module, Some("query.test"), deadline);
        assert_eq!(from_query.sni.as_deref(), Some("query.test"));
    }

    #[test]
    fn merged_probes_flag_addresses_serving_different_leaves() {
        let a = report(
            "n.test:443",
            vec![(
                "127.0.0.1",
                handshake("n.test", datetime!(2026-02-01 00:00 UTC)),
            )],
        );
        let mut b = report(
            "n.test:443",
            vec![(
                "127.0.0.2",
                handshake("n.test", datetime!(2026-02-01 00:00 UTC)),
            )],
        );
        let endpoint = a.endpoint.clone();
        let started = a.started_at;
        let same = merge_address_probes(endpoint.clone(), started, vec![a.clone(), b.clone()]);
        assert_eq!(same.addresses.len(), 2);
        assert!(!same.addresses_disagree);
        if let Ok(handshake) = &mut b.addresses[0].outcome {
            handshake.chain.entries[0].facts.fingerprint_sha256 = "cd".repeat(32);
        }
        assert!(merge_address_probes(endpoint, started, vec![a, b]).addresses_disagree);
    }

    struct NoState;

    impl crate::metrics::http::StateView for NoState {
        fn snapshot(&self) -> crate::metrics::render::Snapshot {
            unreachable!("/probe never reads the service state")
        }
        fn is_ready(&self) -> bool {
            true
        }
    }

    fn shared_with(resolver: crate::scan::resolve::Resolver) -> Arc<HttpShared> {
        let exporter = crate::config::model::ExporterSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            probe_allow: Vec::new(),
            modules: Default::default(),
            connections: Default::default(),
        };
        let context = ProbeContext::new(resolver, crate::scan::trust::TrustCache::empty());
        Arc::new(HttpShared {
            state: Arc::new(NoState),
            probe: std::sync::RwLock::new(crate::metrics::http::ProbeSetup {
                exporter,
                context: Arc::new(context),
            }),
        })
    }

    #[tokio::test]
    async fn a_probe_beyond_the_concurrency_limit_is_refused_with_503() {
        let limiter = ProbeLimiter::new(1);
        let _in_flight = limiter.permits.try_acquire().unwrap();
        let query = HashMap::from([("target".to_owned(), "127.0.0.1:1".to_owned())]);
        let response = probe(
            Extension(limiter.clone()),
            State(shared_with(crate::scan::resolve::Resolver::system())),
            Query(query),
            HeaderMap::new(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "too many /probe requests in flight (at most 1); try again later\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn checked_addresses_share_one_deadline_with_the_resolution() {
        // A server that accepts (the kernel does) but never answers the ClientHello.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let resolver = crate::scan::resolve::Resolver::with_hosts_text("127.0.0.1 slow.test\n")
            .delayed(Duration::from_secs(2));
        let shared = shared_with(resolver);
        let setup = shared.probe_setup();
        let target: Target = format!("slow.test:{port}").parse().unwrap();
        let deadline = Duration::from_secs(3);
        let endpoint = probe_endpoint_for(target, &builtin_module(), None, deadline);
        let rules = [crate::config::model::AllowRule::Cidr {
            network: "127.0.0.0".parse().unwrap(),
            prefix: 8,
        }];
        let started = Instant::now();
        let report = probe_checked_addresses(&endpoint, &rules, &setup.context, deadline)
            .await
            .unwrap();
        assert_eq!(started.elapsed(), deadline);
        let error = report.addresses[0].outcome.as_ref().unwrap_err();
        assert_eq!(error.to_string(), "timed out after 3s during handshake");
    }
}
