//! The real `/probe` route over HTTP on loopback with arbitrary query strings and
//! `X-Prometheus-Scrape-Timeout-Seconds` values. The allow-list is empty, so every request
//! must be refused (400 for a bad request, 403 by the allow-list) before any name is
//! resolved or any address contacted; the server must answer every case and stay up.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use certinel::config::model::ExporterSettings;
use certinel::metrics::http::{HttpShared, ProbeSetup, router};
use certinel::scan::budget::ConnectionBudget;
use certinel::scan::probe::ProbeContext;
use certinel::scan::resolve::Resolver;
use certinel::scan::trust::TrustCache;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::service::NoState;
use certinel_testkit::fuzz::{config, within_time_limit};

/// The exporter, served once for every case of the property.
struct Exporter {
    runtime: tokio::runtime::Runtime,
    address: SocketAddr,
}

static EXPORTER: LazyLock<Exporter> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let address = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = listener.local_addr().expect("the bound address");
        let exporter = ExporterSettings {
            listen: address,
            // Empty: no target is allowed, so no request ever reaches name resolution.
            probe_allow: Vec::new(),
            modules: Default::default(),
            connections: Default::default(),
        };
        let context = ProbeContext::new(
            Resolver::system(),
            TrustCache::empty(),
            ConnectionBudget::new(16),
        );
        let shared = Arc::new(HttpShared {
            state: Arc::new(NoState),
            probe: std::sync::RwLock::new(ProbeSetup {
                exporter,
                context: Arc::new(context),
            }),
        });
        tokio::spawn(async move { axum::serve(listener, router(shared)).await });
        address
    });
    Exporter { runtime, address }
});

/// Sends `GET /probe?{query}` with the scrape-timeout header and returns the status code.
fn probe_status(query: &str, scrape_timeout: &str) -> u16 {
    EXPORTER.runtime.block_on(async {
        let mut stream = tokio::net::TcpStream::connect(EXPORTER.address)
            .await
            .expect("the exporter accepts");
        let request = format!(
            "GET /probe?{query} HTTP/1.1\r\nHost: exporter\r\n\
             X-Prometheus-Scrape-Timeout-Seconds: {scrape_timeout}\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("the request sent");
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
            .await
            .expect("the exporter answers within 10 s")
            .expect("the answer read");
        let status_line = String::from_utf8_lossy(&response);
        status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {status_line:?}"))
    })
}

/// Percent-encodes every byte that is not a letter or digit.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

fn parameter() -> impl Strategy<Value = String> {
    let name = prop::sample::select(&["target", "module", "hostname", "x", ""][..]);
    let value = prop_oneof![
        3 => prop::sample::select(&[
            "127.0.0.1:443", "[::1]:443", "localhost:443", "example.com:443", "10.0.0.1:1",
            "https://127.0.0.1", "default", "nope", "", "%", "%zz", "a+b",
        ][..]).prop_map(str::to_owned),
        1 => any::<String>().prop_map(|text| encode(&text)),
        1 => "[!-~&&[^#%]]{0,16}",
    ];
    (name, value).prop_map(|(name, value)| format!("{name}={value}"))
}

fn scrape_timeout() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(&["10", "0", "-1", "1e300", "NaN", "inf", "", "0.0001", "x"][..])
            .prop_map(str::to_owned),
        "[ -~]{0,20}",
    ]
}

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn probe_requests_of_any_query_are_refused_before_any_lookup(
        parameters in prop::collection::vec(parameter(), 0..5),
        header in scrape_timeout(),
    ) {
        let query = parameters.join("&");
        let status = within_time_limit("a /probe request", || probe_status(&query, &header));
        prop_assert!(
            status == 400 || status == 403,
            "GET /probe?{} answered {}",
            query,
            status
        );
    }
}

/// The two answers the property accepts, each for the reason it expects.
#[test]
fn probe_requests_are_refused_by_the_empty_allow_list_or_as_bad_requests() {
    assert_eq!(probe_status("target=127.0.0.1:443", "10"), 403);
    assert_eq!(probe_status("target=example.com:443", "10"), 403);
    assert_eq!(probe_status("module=default", "10"), 400);
    assert_eq!(probe_status("target=no%20port", "x"), 400);
}
