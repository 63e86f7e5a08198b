//! Tests of `/probe`: deadlines, the allow-list before any lookup, waiting for capacity.

use super::*;
use crate::config::model::Host;

#[test]
fn huge_or_negative_scrape_timeout_headers_keep_the_module_timeout() {
    let module = Duration::from_secs(5);
    for header in ["1e300", "-3", "NaN", "inf", "0"] {
        assert_eq!(probe_deadline(module, Some(header)), module, "{header}");
    }
}

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
    assert_eq!(from_module.probe.sni.as_deref(), Some("module.test"));
    assert_eq!(from_module.probe.timeout, deadline);
    let from_query = probe_endpoint_for(target, &module, Some("query.test"), deadline);
    assert_eq!(from_query.probe.sni.as_deref(), Some("query.test"));
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
    let context = ProbeContext::new(
        resolver,
        crate::scan::trust::TrustCache::empty(),
        crate::scan::budget::ConnectionBudget::new(64),
    );
    Arc::new(HttpShared {
        state: Arc::new(NoState),
        probe: std::sync::RwLock::new(crate::metrics::http::ProbeSetup {
            exporter,
            context: Arc::new(context),
        }),
    })
}

#[tokio::test(start_paused = true)]
async fn a_saturated_exporter_answers_503_only_once_the_deadline_passed() {
    let limiter = ProbeLimiter::new(1);
    let _in_flight = limiter.permits.try_acquire().unwrap();
    let query = HashMap::from([("target".to_owned(), "127.0.0.1:1".to_owned())]);
    let mut headers = HeaderMap::new();
    headers.insert(SCRAPE_TIMEOUT_HEADER, "3".parse().unwrap());
    let started = tokio::time::Instant::now();
    let response = probe(
        Extension(limiter.clone()),
        State(shared_allowing(
            crate::scan::resolve::Resolver::with_hosts_text(""),
            default_rules(),
        )),
        Query(query),
        headers,
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(started.elapsed(), Duration::from_millis(2500));
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        "all 1 /probe slots stayed busy for the whole 2.5s deadline; try again later\n"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_connection_budget_answers_503_only_once_the_deadline_passed() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let shared = shared_allowing(
        crate::scan::resolve::Resolver::with_hosts_text(""),
        default_rules(),
    );
    let budget = shared.probe_setup().context.budget.clone();
    let now = tokio::time::Instant::now();
    let mut held = Vec::new();
    while let Ok(permit) = budget.acquire_before(Demand::OnRequest, now).await {
        held.push(permit);
    }
    let query = HashMap::from([("target".to_owned(), format!("127.0.0.1:{port}"))]);
    let mut headers = HeaderMap::new();
    headers.insert(SCRAPE_TIMEOUT_HEADER, "3".parse().unwrap());
    let response = probe(
        Extension(ProbeLimiter::new(4)),
        State(shared),
        Query(query),
        headers,
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(now.elapsed(), Duration::from_millis(2500));
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
        let (status, lookups) = status_and_lookups(target, hosts, loopback_networks.clone()).await;
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

#[tokio::test(start_paused = true)]
async fn a_refused_target_is_answered_at_once_even_when_every_slot_is_busy() {
    let limiter = ProbeLimiter::new(1);
    let _in_flight = limiter.permits.clone().try_acquire_owned().unwrap();
    let shared = shared_allowing(
        crate::scan::resolve::Resolver::with_hosts_text(""),
        default_rules(),
    );
    let query = HashMap::from([("target".to_owned(), "10.0.0.1:443".to_owned())]);
    let started = tokio::time::Instant::now();
    let response = probe(
        Extension(limiter),
        State(shared),
        Query(query),
        HeaderMap::new(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn bad_targets_and_signed_ports_are_refused_with_one_invalid_target_message() {
    let cases = [
        (
            "127.0.0.1:+443",
            "invalid target \"127.0.0.1:+443\": invalid port \"+443\" (use a number from 1 to 65535)\n",
        ),
        (
            "no-port.test",
            "invalid target \"no-port.test\": no port; add a port, e.g. no-port.test:443\n",
        ),
    ];
    for (target, expected) in cases {
        let query = HashMap::from([("target".to_owned(), target.to_owned())]);
        let response = probe(
            Extension(ProbeLimiter::new(1)),
            State(shared_with(
                crate::scan::resolve::Resolver::with_hosts_text(""),
            )),
            Query(query),
            HeaderMap::new(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{target}");
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(std::str::from_utf8(&body).unwrap(), expected);
    }
}
