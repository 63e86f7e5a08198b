//! Debian's Prometheus for the monitoring tests: `promtool` checks, and a real `prometheus`
//! server on a free loopback port, queried through its HTTP API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::common::eventually::{eventually, within};
use crate::common::process::assert_succeeded;
use crate::common::service::get;

/// Where the Debian package installs the server.
const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Where the Debian package installs promtool.
const PROMTOOL: &str = "/usr/bin/promtool";
/// Says what to do when Prometheus is missing; a test never skips silently.
const MISSING: &str = "install Debian's prometheus package (scripts/deps does)";

/// The repository's `config/prometheus` directory.
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prometheus")
}

/// Runs `promtool ARGS` in `dir`; fails loudly when promtool is not installed.
pub fn promtool(dir: &Path, args: &[&str]) -> Output {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} not found: {MISSING}"
    );
    std::process::Command::new(PROMTOOL)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("run {PROMTOOL}: {error}"))
}

/// Asserts that a promtool run succeeded, showing its output otherwise.
pub fn assert_promtool_ok(output: &Output, what: &str) {
    assert_succeeded(output, &format!("promtool {what}"));
}

/// A running `prometheus`; killed when dropped. Its log goes to a file in its directory.
pub struct Prometheus {
    /// The HTTP address of its API.
    pub addr: SocketAddr,
    log: PathBuf,
    _child: Child,
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML text) in `dir` (configuration, log and TSDB
    /// live there) and waits until it reports ready.
    pub async fn start(dir: &Path, config: &str) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} not found: {MISSING}"
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = dir.join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("create prometheus.log");
        let addr = free_loopback_port();
        let mut child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {PROMETHEUS}: {error}"));
        eventually(Duration::from_secs(30), async || {
            if let Some(status) = child.try_wait().expect("poll prometheus") {
                panic!("prometheus exited ({status}):\n{}", tail(&log));
            }
            match try_get(addr, "/-/ready").await {
                Some((200, _)) => Ok(()),
                other => Err(format!("/-/ready: {other:?}\n{}", tail(&log))),
            }
        })
        .await;
        Prometheus {
            addr,
            log,
            _child: child,
        }
    }

    /// Evaluates `expr` now (`/api/v1/query`) and returns `data.result`; panics with
    /// Prometheus' error when the expression does not parse or evaluate.
    pub async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self
            .api(&format!("/api/v1/query?query={}", encode(expr)))
            .await;
        match &data["result"] {
            Value::Array(result) => result.clone(),
            other => panic!("query {expr}: result is not a vector: {other}"),
        }
    }

    /// `GET path` of the HTTP API; returns `data` and panics unless `status` is `success`.
    pub async fn api(&self, path: &str) -> Value {
        let reply = get(self.addr, path, &[]).await;
        let body: Value = serde_json::from_str(&reply.body)
            .unwrap_or_else(|error| panic!("GET {path}: {error}: {}", reply.body));
        assert_eq!(
            body["status"], "success",
            "GET {path} answered {}: {body}",
            reply.status
        );
        body["data"].clone()
    }

    /// Calls `attempt` until it returns `Some`, for at most `patience`; then
    /// fails with `what` and the end of Prometheus' log.
    pub async fn poll<T>(
        &self,
        what: &str,
        patience: Duration,
        attempt: impl AsyncFnMut() -> Option<T>,
    ) -> T {
        match self.try_poll(patience, attempt).await {
            Some(value) => value,
            None => panic!(
                "{what}: not within {patience:?}; Prometheus log:\n{}",
                self.log_tail()
            ),
        }
    }

    /// Calls `attempt` until it returns `Some`, for at most `patience`;
    /// `None` when it never did, for tests that report every miss at the end.
    pub async fn try_poll<T>(
        &self,
        patience: Duration,
        mut attempt: impl AsyncFnMut() -> Option<T>,
    ) -> Option<T> {
        within(patience, async || attempt().await.ok_or(()))
            .await
            .ok()
    }

    /// The last lines of Prometheus' log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

/// The last 30 lines of the log file at `path`.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A loopback address whose port was free a moment ago (Prometheus binds it itself).
pub fn free_loopback_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("bound address")
}

/// Percent-encodes `text` for a URL query value (everything but RFC 3986 unreserved).
pub fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `GET path`, or `None` while nothing listens yet.
async fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    // The shared helper panics on a refused connection; check that the port answers first.
    tokio::net::TcpStream::connect(addr).await.ok()?;
    let reply = get(addr, path, &[]).await;
    Some((reply.status, reply.body))
}
