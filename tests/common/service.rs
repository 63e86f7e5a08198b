//! Runs the real `certinel run` binary for service tests: start it with a config, find its
//! listen address in its JSON log, talk HTTP to it, signal it, wait for it to exit.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::common::eventually::eventually;
use crate::common::process::feed_stdin;

/// How long any single wait in these tests may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running `certinel run` process; killed when dropped.
pub struct Service {
    /// The HTTP address it listens on.
    pub addr: SocketAddr,
    child: Child,
    log: mpsc::UnboundedReceiver<serde_json::Value>,
}

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body text.
    pub body: String,
}

impl Service {
    /// Starts `certinel run --listen 127.0.0.1:0 --log-format json` with `config` (or the
    /// embedded default) and waits for its "certinel running" log line.
    pub async fn start(config: Option<&Path>) -> Service {
        let mut child = spawn_run("json", config, "info");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, log) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("certinel: {line}");
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = sender.send(event);
                }
            }
        });
        let mut service = Service {
            addr: "0.0.0.0:0".parse().expect("placeholder address"),
            child,
            log,
        };
        let running = service.wait_for_log("certinel running").await;
        service.addr = running["fields"]["listen"]
            .as_str()
            .and_then(|listen| listen.parse().ok())
            .unwrap_or_else(|| panic!("no listen address in {running}"));
        service
    }

    /// Waits for the next log event whose message is `message`.
    pub async fn wait_for_log(&mut self, message: &str) -> serde_json::Value {
        let wait = async {
            while let Some(event) = self.log.recv().await {
                if event["fields"]["message"] == message {
                    return event;
                }
            }
            panic!("certinel exited before logging {message:?}");
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("no {message:?} log line within {PATIENCE:?}"))
    }

    /// `GET path` with extra request headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        get(self.addr, path, headers).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        get(self.addr, path, &[]).await
    }

    /// Polls `/metrics` until `condition` holds for its body, which is returned.
    pub async fn metrics_until(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        metrics_until(self.addr, PATIENCE, what, condition).await
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&self) {
        eventually(PATIENCE, async || match self.get("/readyz").await {
            reply if reply.status == 200 => Ok(()),
            reply => Err(format!("/readyz answered {}: {}", reply.status, reply.body)),
        })
        .await;
    }

    /// Sends `signal` (`HUP`, `TERM`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("certinel still running");
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} {pid} failed");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("certinel did not exit within {PATIENCE:?}"))
            .expect("wait for certinel")
    }
}

/// Spawns `certinel --log-format FORMAT run --listen 127.0.0.1:0` with `config` (or the
/// embedded default) and `RUST_LOG=rust_log`, its log on a pipe; killed when dropped.
pub fn spawn_run(log_format: &str, config: Option<&Path>, rust_log: &str) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_certinel"));
    command.args(["--log-format", log_format, "run", "--listen", "127.0.0.1:0"]);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn certinel")
}

/// A service state for `/probe` tests: `/probe` never reads it.
pub struct NoState;

impl certinel::metrics::http::StateView for NoState {
    fn snapshot(&self) -> certinel::metrics::render::Snapshot {
        certinel::metrics::render::Snapshot::default()
    }

    fn is_ready(&self) -> bool {
        true
    }
}

/// Polls `/metrics` at `addr` until `condition` holds for its body, which is returned;
/// fails after `patience` with `what` and the last body.
pub async fn metrics_until(
    addr: SocketAddr,
    patience: Duration,
    what: &str,
    condition: impl Fn(&str) -> bool,
) -> String {
    eventually(patience, async || {
        let reply = get(addr, "/metrics", &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        if condition(&reply.body) {
            return Ok(reply.body);
        }
        Err(format!("{what}: not yet; /metrics:\n{}", reply.body))
    })
    .await
}

/// A minimal HTTP/1.0 GET (one request per connection, body up to the close).
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect to certinel");
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Reply {
        status,
        body: body.to_owned(),
    }
}

/// Fills `{NAME}` placeholders of a fixture under tests/fixtures/service/ and writes the
/// result to `dir/certinel.toml`.
pub fn write_config(dir: &Path, fixture: &str, values: &[(&str, String)]) -> std::path::PathBuf {
    let template_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/service")
        .join(fixture);
    let mut text = std::fs::read_to_string(&template_path)
        .unwrap_or_else(|error| panic!("read {}: {error}", template_path.display()));
    for (name, value) in values {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    assert!(
        !text.contains("{"),
        "unfilled placeholder in {fixture}:\n{text}"
    );
    let path = dir.join("certinel.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The value of the sample line `series` (name and labels exactly as rendered).
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

/// Runs `promtool check metrics` on `body`; fails loudly when promtool is missing.
pub fn promtool_check(body: &str) -> (i32, String) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required (Debian package `prometheus`) and was not found");
    feed_stdin(&mut child, body.as_bytes(), "promtool");
    let output = child.wait_with_output().expect("run promtool");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}
