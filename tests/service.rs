//! `certinel run` end to end: the real binary against live loopback TLS servers, read
//! through its HTTP endpoints; reloads, shutdown and `/probe`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use crate::common::pki::{Ca, Leaf, LeafSpec, Validity, write_pem};
use crate::common::service::{Service, promtool_check, sample, write_config};
use crate::common::tls_server::{ServerHandle, ServerOptions, bind, spawn_tls};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A TLS server on 127.0.0.1 presenting `leaf`.
async fn serve_leaf(leaf: &Leaf) -> ServerHandle {
    let options = ServerOptions::new(vec![leaf.cert.clone()], leaf.key.clone_key());
    spawn_tls(bind(LOCALHOST).await, options.acceptor())
}

/// `certinel run` (ready) watching two endpoints on 127.0.0.1 — one trusted through its
/// own root, one expired and self-signed — and the trusted leaf as a file
/// (`fixtures/service/two_endpoints.toml`).
struct TwoEndpoints {
    _dir: tempfile::TempDir,
    trusted: Leaf,
    trusted_server: ServerHandle,
    expired_server: ServerHandle,
    cert_file: std::path::PathBuf,
    service: Service,
}

async fn two_endpoints(root_name: &str) -> TwoEndpoints {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = Ca::root(root_name, Validity::current());
    let trusted = root.leaf(&LeafSpec::new(&["localhost"]));
    let expired =
        Leaf::self_signed(&LeafSpec::new(&["expired.test"]).validity(Validity::expired()));
    let trusted_server = serve_leaf(&trusted).await;
    let expired_server = serve_leaf(&expired).await;
    let ca_file = write_pem(dir.path(), "root.pem", &root.pem);
    let cert_file = write_pem(dir.path(), "site.pem", &trusted.pem);
    let config = write_config(
        dir.path(),
        "two_endpoints.toml",
        &[
            ("TRUSTED_PORT", trusted_server.addr.port().to_string()),
            ("EXPIRED_PORT", expired_server.addr.port().to_string()),
            ("CA_FILE", ca_file.display().to_string()),
            ("CERT_FILE", cert_file.display().to_string()),
        ],
    );
    let service = Service::start(Some(&config)).await;
    service.wait_ready().await;
    TwoEndpoints {
        _dir: dir,
        trusted,
        trusted_server,
        expired_server,
        cert_file,
        service,
    }
}

/// Two TLS servers presenting the same self-signed `localhost` leaf, for a config that
/// moves from one to the other.
async fn two_servers_of_one_leaf() -> (ServerHandle, ServerHandle) {
    let leaf = Leaf::self_signed(&LeafSpec::new(&["localhost"]));
    (serve_leaf(&leaf).await, serve_leaf(&leaf).await)
}

/// Writes the service fixture `fixture` with its one `{PORT}` set to `server`'s port.
fn config_probing(dir: &Path, fixture: &str, server: &ServerHandle) -> PathBuf {
    write_config(dir, fixture, &[("PORT", server.addr.port().to_string())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_live_endpoints_and_files_and_pass_promtool() {
    let TwoEndpoints {
        trusted,
        trusted_server,
        expired_server,
        cert_file,
        service,
        ..
    } = two_endpoints("certinel service test root").await;
    let body = service.get("/metrics").await.body;

    let trusted_labels = format!(
        "{{target=\"127.0.0.1:{}\",ip=\"127.0.0.1\",sni=\"localhost\"}}",
        trusted_server.addr.port()
    );
    let expired_labels = format!(
        "{{target=\"127.0.0.1:{}\",ip=\"127.0.0.1\"}}",
        expired_server.addr.port()
    );
    let value = |name: &str, labels: &str| {
        sample(&body, &format!("{name}{labels}"))
            .unwrap_or_else(|| panic!("no {name}{labels} in:\n{body}"))
    };
    assert_eq!(value("certinel_endpoint_up", &trusted_labels), 1.0);
    assert_eq!(
        value("certinel_endpoint_cert_verified", &trusted_labels),
        1.0
    );
    assert_eq!(
        value(
            "certinel_endpoint_cert_not_after_timestamp_seconds",
            &trusted_labels
        ),
        trusted.not_after.unix_timestamp() as f64
    );
    let seconds = value("certinel_endpoint_cert_expiry_seconds", &trusted_labels);
    assert!(seconds > 0.0, "{seconds}");
    assert_eq!(value("certinel_endpoint_up", &expired_labels), 1.0);
    assert_eq!(
        value("certinel_endpoint_cert_verified", &expired_labels),
        0.0
    );
    assert!(value("certinel_endpoint_cert_expiry_seconds", &expired_labels) < 0.0);
    assert!(
        body.lines().any(|line| line.starts_with(&format!(
            "certinel_endpoint_cert_error_info{}",
            expired_labels.trim_end_matches('}')
        ))),
        "no error reason for the expired endpoint:\n{body}"
    );
    assert_eq!(
        value(
            "certinel_file_cert_not_after_timestamp_seconds",
            &format!("{{path=\"{}\"}}", cert_file.display())
        ),
        trusted.not_after.unix_timestamp() as f64
    );
    assert_eq!(value("certinel_config_last_reload_successful", ""), 1.0);
    let build_info = format!(
        "certinel_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        certinel::COMMIT
    );
    assert!(body.contains(&build_info), "no {build_info} in:\n{body}");

    let (code, findings) = promtool_check(&body);
    assert!(
        code == 0,
        "promtool check metrics exited {code}:\n{findings}\n{body}"
    );

    let page = service.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("CN=localhost"), "{}", page.body);
    assert_eq!(service.get("/healthz").await.status, 200);
}

/// `GET /metrics` over HTTP/1.0 with `headers`: the response head and the raw body bytes.
async fn get_metrics_bytes(service: &Service, headers: &str) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(service.addr)
        .await
        .expect("connect to certinel");
    let request = format!("GET /metrics HTTP/1.0\r\nHost: certinel\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("HTTP head and body");
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    (head, response[split + 4..].to_vec())
}

/// The sample lines without their values (expiry values move between two scrapes).
fn series(body: &str) -> Vec<&str> {
    let mut series: Vec<&str> = body
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' ').map(|(series, _)| series))
        .collect();
    series.sort_unstable();
    series
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_gzipped_when_the_scraper_accepts_gzip_and_hold_the_same_series() {
    let TwoEndpoints { service, .. } = two_endpoints("certinel gzip test root").await;

    let (plain_head, plain) = get_metrics_bytes(&service, "").await;
    assert!(!plain_head.contains("content-encoding"), "{plain_head}");
    let plain = String::from_utf8(plain).expect("plain text");
    let (head, compressed) =
        get_metrics_bytes(&service, "Accept-Encoding: gzip, deflate\r\n").await;
    assert!(head.starts_with("http/1.0 200"), "{head}");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("vary: accept-encoding"), "{head}");
    let mut inflated = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(compressed.as_slice()),
        &mut inflated,
    )
    .expect("a gzip body");
    assert!(inflated.contains("certinel_endpoint_up{"), "{inflated}");
    assert_eq!(series(&inflated), series(&plain));
    let (code, findings) = promtool_check(&inflated);
    assert!(code == 0, "promtool: {findings}\n{inflated}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_adds_and_removes_targets_and_rejects_a_bad_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second) = two_servers_of_one_leaf().await;
    let series = |server: &ServerHandle| {
        format!(
            "certinel_endpoint_up{{target=\"127.0.0.1:{}\",ip=\"127.0.0.1\"}} 1",
            server.addr.port()
        )
    };
    let config = config_probing(dir.path(), "one_endpoint.toml", &first);
    let mut service = Service::start(Some(&config)).await;
    service
        .metrics_until("first target probed", |body| body.contains(&series(&first)))
        .await;

    config_probing(dir.path(), "one_endpoint.toml", &second);
    service.signal("HUP");
    service.wait_for_log("configuration reloaded").await;
    service
        .metrics_until("second target in, first out", |body| {
            body.contains(&series(&second))
                && !body.contains(&format!("127.0.0.1:{}", first.addr.port()))
        })
        .await;

    config_probing(dir.path(), "broken.toml", &first);
    service.signal("HUP");
    service
        .wait_for_log("configuration rejected; the previous one keeps running")
        .await;
    let body = service
        .metrics_until("rejected reload reported", |body| {
            sample(body, "certinel_config_last_reload_successful") == Some(0.0)
        })
        .await;
    assert!(
        body.contains(&series(&second)),
        "old config keeps running:\n{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_file_is_reloaded_without_a_signal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first, second) = two_servers_of_one_leaf().await;
    let config = config_probing(dir.path(), "one_endpoint.toml", &first);
    let mut service = Service::start(Some(&config)).await;
    config_probing(dir.path(), "one_endpoint.toml", &second);
    let reloaded = service.wait_for_log("configuration reloaded").await;
    assert_eq!(reloaded["fields"]["cause"], "configuration file changed");
    service
        .metrics_until("second target probed", |body| {
            body.contains(&format!("target=\"127.0.0.1:{}\"", second.addr.port()))
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly() {
    let mut service = Service::start(None).await;
    service.wait_ready().await;
    service.signal("TERM");
    service.wait_for_log("stopped").await;
    let status = service.wait_exit().await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_answers_for_allowed_targets_and_refuses_others() {
    let leaf = Leaf::self_signed(&LeafSpec::new(&["localhost"]));
    let server = serve_leaf(&leaf).await;
    let service = Service::start(None).await;
    let port = server.addr.port();

    let by_address = service
        .get_with(
            &format!("/probe?target=127.0.0.1:{port}&hostname=localhost"),
            &[("X-Prometheus-Scrape-Timeout-Seconds", "5")],
        )
        .await;
    assert_eq!(by_address.status, 200, "{}", by_address.body);
    assert_eq!(
        sample(&by_address.body, "certinel_probe_success"),
        Some(1.0)
    );
    let labels = format!("{{target=\"127.0.0.1:{port}\",ip=\"127.0.0.1\",sni=\"localhost\"}}");
    assert_eq!(
        sample(
            &by_address.body,
            &format!("certinel_endpoint_cert_not_after_timestamp_seconds{labels}")
        ),
        Some(leaf.not_after.unix_timestamp() as f64),
        "{}",
        by_address.body
    );
    assert!(!by_address.body.contains("certinel_build_info"));

    let by_name = service
        .get(&format!("/probe?target=localhost:{port}"))
        .await;
    assert_eq!(by_name.status, 200, "{}", by_name.body);
    assert!(
        by_name
            .body
            .contains("certinel_endpoint_up{target=\"localhost:"),
        "{}",
        by_name.body
    );

    let refused = service.get("/probe?target=192.0.2.1:443").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("allow-list"), "{}", refused.body);
    assert_eq!(service.get("/probe?target=nonsense").await.status, 400);
    assert_eq!(
        service
            .get(&format!("/probe?target=127.0.0.1:{port}&module=nope"))
            .await
            .status,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_service_serves_and_returns_when_cancelled() {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use certinel::config::model::{AllowRule, Config, ExporterSettings, ScannerSettings};
    use tokio_util::sync::CancellationToken;

    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("bound address");
    let config = Config {
        source: None,
        scanner: ScannerSettings {
            concurrency: 4,
            default_timeout: Duration::from_secs(5),
            hosts_file: None,
            max_connections: None,
            max_addresses: 16,
            crl: true,
            crl_interval: Duration::from_secs(3600),
        },
        endpoints: Vec::new(),
        files: Vec::new(),
        endpoint_sources: Vec::new(),
        exporter: ExporterSettings {
            listen: addr,
            probe_allow: vec![AllowRule::Cidr {
                network: LOCALHOST,
                prefix: 8,
            }],
            modules: BTreeMap::new(),
            connections: Default::default(),
        },
        state_dir: std::env::temp_dir(),
        acme: None,
        cas: Default::default(),
        certificates: Vec::new(),
        cluster: None,
    };
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(certinel::service::run(config, listener, shutdown.clone()));
    let ready = crate::common::service::get(addr, "/readyz", &[]).await;
    assert_eq!(ready.status, 200, "no targets: ready at once");
    let metrics = crate::common::service::get(addr, "/metrics", &[]).await;
    assert_eq!(
        sample(&metrics.body, "certinel_probe_errors_total{reason=\"dns\"}"),
        Some(0.0)
    );
    shutdown.cancel();
    tokio::time::timeout(crate::common::service::PATIENCE, service)
        .await
        .expect("service returns after cancellation")
        .expect("service task")
        .expect("service result");
}
