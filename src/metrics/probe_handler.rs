//! `/probe?target=host:port&module=NAME&hostname=SNI`: blackbox_exporter's multi-target
//! pattern. Checks the allow-list before connecting anywhere (see [`crate::metrics::allow`]),
//! probes once under the scrape deadline and returns that probe's metrics only. At most
//! [`PROBE_CONCURRENCY_LIMIT`] probes run at once; a request beyond that gets a 503.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::config::model::{AllowRule, Endpoint, IpFamily, ProbeModule, ResolveMode, Target};
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
    let report = match probe_allowed(&endpoint, rules, &setup.context, deadline).await {
        Ok(report) => report,
        Err(reason) => return refuse(StatusCode::FORBIDDEN, reason),
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
) -> Result<EndpointReport, String> {
    if let Precheck::Denied(reason) = allow::precheck(&endpoint.target.host, rules) {
        return Err(reason);
    }
    let name = endpoint.target.host.to_string();
    let probing = probe::probe_endpoint_admitting(endpoint, context, |addresses| {
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

    use super::*;
    use crate::config::model::Host;

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
        let rules = [rule("127.0.0.0/8"), rule("slow.test")];
        let started = tokio::time::Instant::now();
        let report = probe_allowed(&endpoint, &rules, &setup.context, deadline)
            .await
            .unwrap();
        assert_eq!(started.elapsed(), deadline);
        let error = report.addresses[0].outcome.as_ref().unwrap_err();
        assert_eq!(error.to_string(), "timed out after 3s during handshake");
    }

    fn shared_allowing(
        resolver: crate::scan::resolve::Resolver,
        rules: Vec<AllowRule>,
    ) -> Arc<HttpShared> {
        let shared = shared_with(resolver);
        let mut setup = shared.probe_setup();
        setup.exporter.probe_allow = rules;
        shared.set_probe_setup(setup);
        shared
    }

    fn rule(text: &str) -> AllowRule {
        text.parse().unwrap()
    }

    /// The default allow-list: loopback networks and the name `localhost`.
    fn default_rules() -> Vec<AllowRule> {
        vec![rule("127.0.0.0/8"), rule("::1/128"), rule("localhost")]
    }

    /// The status of `/probe?target=TARGET` and how many names the resolver looked up.
    async fn status_and_lookups(
        target: &str,
        hosts: &str,
        rules: Vec<AllowRule>,
    ) -> (StatusCode, usize) {
        let shared = shared_allowing(
            crate::scan::resolve::Resolver::with_hosts_text(hosts),
            rules,
        );
        let query = HashMap::from([("target".to_owned(), target.to_owned())]);
        let response = probe(
            Extension(ProbeLimiter::new(4)),
            State(shared.clone()),
            Query(query),
            HeaderMap::new(),
        )
        .await;
        (
            response.status(),
            shared.probe_setup().context.resolver.lookups(),
        )
    }

    #[tokio::test]
    async fn names_no_host_rule_allows_are_refused_without_a_lookup() {
        // The hosts text answers every name, so only the allow-list can stop the lookup.
        let hosts = "127.0.0.1 metadata.google.internal localhost\n";
        let loopback_networks = vec![rule("127.0.0.0/8"), rule("::1/128")];
        for target in [
            "metadata.google.internal:443",
            "localhost.:443",
            "0x7f.0x1:443",
        ] {
            let (status, lookups) =
                status_and_lookups(target, hosts, loopback_networks.clone()).await;
            assert_eq!((status, lookups), (StatusCode::FORBIDDEN, 0), "{target}");
        }
        let (status, lookups) =
            status_and_lookups("metadata.google.internal:443", hosts, default_rules()).await;
        assert_eq!((status, lookups), (StatusCode::FORBIDDEN, 0));
    }

    #[tokio::test]
    async fn numeric_and_mapped_address_forms_are_refused_without_a_lookup() {
        let hosts = "127.0.0.1 2130706433 0x7f.1\n";
        for target in ["2130706433:443", "0x7f.1:443"] {
            let (status, lookups) = status_and_lookups(target, hosts, default_rules()).await;
            assert_eq!(lookups, 0, "{target}");
            assert!(status.is_client_error(), "{target}: {status}");
        }
        let (status, lookups) =
            status_and_lookups("[::ffff:169.254.169.254]:80", hosts, default_rules()).await;
        assert_eq!((status, lookups), (StatusCode::FORBIDDEN, 0));
    }

    #[tokio::test]
    async fn a_name_matched_by_a_host_rule_still_needs_allowed_addresses() {
        // `localhost` is allowed by name, but here it resolves outside the only network.
        let listener = std::net::TcpListener::bind("[::1]:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (status, lookups) = status_and_lookups(
            &format!("localhost:{port}"),
            "::1 localhost\n",
            vec![rule("127.0.0.0/8"), rule("localhost")],
        )
        .await;
        assert_eq!((status, lookups), (StatusCode::FORBIDDEN, 1));
    }
}
