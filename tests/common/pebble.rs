//! Starts Debian's Pebble ACME test CA, with `pebble-challtestsrv` as its DNS server
//! (every A query answers 127.0.0.1) or a DNS server the test runs, on free loopback
//! ports; what it started dies with the handle.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::eventually::{eventually, within};
use crate::common::pki::loopback_server_certificate;
use crate::common::process::spawn_logged;

const PEBBLE: &str = "/usr/bin/pebble";
const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";
const EAB_EXAMPLE: &str =
    "/usr/share/doc/pebble/examples/pebble-config-external-account-bindings.json";

/// How to configure one Pebble.
#[derive(Clone, Debug, Default)]
pub struct PebbleOptions {
    /// Require external account binding, with the keys of Debian's example config.
    pub eab: bool,
    /// `PEBBLE_WFE_NONCEREJECT`: percentage of valid nonces Pebble rejects (0 unless set).
    pub nonce_reject_percent: Option<u32>,
    /// `certificateValidityPeriod` in seconds (Pebble's default is five years).
    pub validity_seconds: Option<u64>,
    /// Where Pebble's validator connects for http-01; a fresh free port when `None`.
    pub http_port: Option<u16>,
    /// The DNS server Pebble's validator asks (`-dnsserver`), e.g. a test's Knot; when
    /// `None`, a `pebble-challtestsrv` is started for it.
    pub dns_server: Option<SocketAddr>,
}

/// A running Pebble.
pub struct Pebble {
    /// The ACME directory URL (`https://127.0.0.1:PORT/dir`).
    pub directory_url: String,
    /// Pebble's management API, serving `/roots/0` and `/intermediates/0`.
    pub management_url: String,
    /// Port Pebble's validator connects to for http-01.
    pub http_port: u16,
    /// Port Pebble's validator connects to for tls-alpn-01.
    pub tls_port: u16,
    /// The root that signed Pebble's HTTPS certificate (trust it as `ca_file`).
    pub api_root: PathBuf,
    /// The first EAB key id and its base64url key, when EAB is required.
    pub eab: Option<(String, String)>,
    dir: tempfile::TempDir,
    pebble: Child,
    dns: Option<Child>,
    launch: Launch,
}

/// How Pebble itself was started, so it can be started again the same way.
#[derive(Clone, Debug)]
struct Launch {
    config_path: PathBuf,
    dns_server: SocketAddr,
    nonce_reject: u32,
}

impl Launch {
    /// Spawns Pebble, appending its output to `dir/pebble.log`.
    fn spawn(&self, dir: &Path) -> Child {
        let pebble_log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("pebble.log"))
            .expect("open pebble.log");
        let mut command = Command::new(PEBBLE);
        command
            .arg("-config")
            .arg(&self.config_path)
            .args(["-dnsserver", &self.dns_server.to_string()])
            .env("PEBBLE_VA_NOSLEEP", "1");
        // Pebble rejects 5% of nonces by default; tests that count requests (orders per
        // renewal, replaces on the order) need every request to land once, so rejection is
        // off unless a test asks for it (the badNonce test does, at 30%).
        command.env("PEBBLE_WFE_NONCEREJECT", self.nonce_reject.to_string());
        spawn_logged(&mut command, pebble_log, "pebble")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.pebble).chain(self.dns.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Pebble {
    /// The validator's http-01 target on loopback.
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.http_port))
    }

    /// The validator's tls-alpn-01 target on loopback.
    pub fn tls_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.tls_port))
    }

    /// Freezes Pebble with SIGSTOP: the kernel still accepts connections on its ports but
    /// nothing answers, as with a hung CA. Unlike a restart, Pebble keeps its accounts and
    /// orders (it holds them in memory only), so the same client can carry on after
    /// [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Wakes Pebble after [`pause`](Self::pause) (SIGCONT), on the same ports.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pebble.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} pebble failed");
    }

    /// Kills Pebble (SIGKILL): its ports refuse connections, and everything it held in
    /// memory (accounts, orders, its issuing CA) is gone. [`restart`](Self::restart) brings
    /// it back.
    pub fn kill(&mut self) {
        let _ = self.pebble.kill();
        let _ = self.pebble.wait();
    }

    /// Kills Pebble if it runs and starts it again with the same configuration: the same
    /// ports and the same HTTPS certificate for its API, but no accounts or orders and a new
    /// issuing CA. Waits (at most ten seconds) until its directory answers again.
    pub async fn restart(&mut self) {
        self.kill();
        self.pebble = self.launch.spawn(self.dir.path());
        eventually(Duration::from_secs(10), async || {
            if let Ok(Some(status)) = self.pebble.try_wait() {
                panic!("Pebble exited on restart ({status}):\n{}", self.log());
            }
            match https_get(&self.directory_url, &self.api_root).await {
                Ok((200, _)) => Ok(()),
                other => Err(format!(
                    "the directory after a restart: {other:?}\n{}",
                    self.log()
                )),
            }
        })
        .await;
    }

    /// Pebble's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// Fetches a PEM document from the management API (`/roots/0`, `/intermediates/0`).
    pub async fn management_get(&self, path: &str) -> String {
        let (status, body) = https_get(&format!("{}{path}", self.management_url), &self.api_root)
            .await
            .expect("management API answers");
        assert_eq!(status, 200, "GET {path}");
        String::from_utf8(body).expect("PEM is UTF-8")
    }

    /// Starts Pebble with default options but certificates that live `seconds`.
    pub async fn start_with_validity(seconds: u64) -> Pebble {
        Pebble::start(PebbleOptions {
            validity_seconds: Some(seconds),
            ..PebbleOptions::default()
        })
        .await
    }

    /// Starts Pebble and its DNS server; picks new ports and tries again if one was taken
    /// between choosing it and Pebble binding it.
    pub async fn start(options: PebbleOptions) -> Pebble {
        for program in [PEBBLE, CHALLTESTSRV] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: install Debian's pebble package (apt-get install pebble)"
            );
        }
        let mut last_log = String::new();
        for _attempt in 0..5 {
            match Self::try_start(&options).await {
                Ok(pebble) => return pebble,
                Err(log) => last_log = log,
            }
        }
        panic!("Pebble did not start after 5 attempts; last log:\n{last_log}");
    }

    async fn try_start(options: &PebbleOptions) -> Result<Pebble, String> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let api_root = write_api_certificates(dir.path());
        let [
            api_port,
            management_port,
            tls_port,
            dns_port,
            dns_management_port,
        ] = [(); 5].map(|()| free_port());
        let http_port = options.http_port.unwrap_or_else(free_port);

        let mut config = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{api_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.path().join("api-cert.pem"),
            "privateKey": dir.path().join("api-key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": options.eab,
        });
        let mut eab = None;
        if options.eab {
            let example: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(EAB_EXAMPLE).unwrap_or_else(|e| {
                    panic!("{EAB_EXAMPLE}: {e}: install Debian's pebble package")
                }))
                .expect("EAB example is JSON");
            let keys = example["pebble"]["externalAccountMACKeys"].clone();
            let (kid, key) = keys
                .as_object()
                .and_then(|keys| keys.iter().min_by_key(|(kid, _)| kid.as_str()))
                .map(|(kid, key)| (kid.clone(), key.as_str().unwrap_or_default().to_owned()))
                .expect("EAB example has keys");
            eab = Some((kid, key));
            config["externalAccountMACKeys"] = keys;
        }
        if let Some(seconds) = options.validity_seconds {
            config["certificateValidityPeriod"] = seconds.into();
        }
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(
            &config_path,
            serde_json::json!({ "pebble": config }).to_string(),
        )
        .expect("write Pebble config");

        let log =
            |name: &str| std::fs::File::create(dir.path().join(name)).expect("create log file");
        let dns_log = log("challtestsrv.log");
        let dns_server = options
            .dns_server
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, dns_port)));
        let dns = options.dns_server.is_none().then(|| {
            let mut command = Command::new(CHALLTESTSRV);
            command
                .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args(["-management", &format!("127.0.0.1:{dns_management_port}")])
                .args([
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                    "-defaultIPv6",
                    "",
                ]);
            spawn_logged(&mut command, dns_log, "pebble-challtestsrv")
        });

        let launch = Launch {
            config_path,
            dns_server,
            nonce_reject: options.nonce_reject_percent.unwrap_or(0),
        };
        let pebble = launch.spawn(dir.path());

        let mut handle = Pebble {
            directory_url: format!("https://127.0.0.1:{api_port}/dir"),
            management_url: format!("https://127.0.0.1:{management_port}"),
            http_port,
            tls_port,
            api_root,
            eab,
            dir,
            pebble,
            dns,
            launch,
        };
        // Readiness: the directory answers over verified HTTPS and the DNS server accepts
        // connections on its management port. Bounded at ten seconds.
        let ready = within(Duration::from_secs(10), async || {
            let exited = std::iter::once(&mut handle.pebble)
                .chain(handle.dns.as_mut())
                .any(|child| matches!(child.try_wait(), Ok(Some(_))));
            if exited {
                return Ok(false);
            }
            let directory = https_get(&handle.directory_url, &handle.api_root).await;
            let dns_up = handle.dns.is_none()
                || std::net::TcpStream::connect(("127.0.0.1", dns_management_port)).is_ok();
            match directory {
                Ok((200, _)) if dns_up => Ok(true),
                _ => Err(format!(
                    "directory: {directory:?}, DNS management up: {dns_up}"
                )),
            }
        })
        .await;
        match ready {
            Ok(true) => Ok(handle),
            Ok(false) => {
                let mut text = handle.log();
                let _ = std::fs::File::open(handle.dir.path().join("challtestsrv.log"))
                    .and_then(|mut f| f.read_to_string(&mut text));
                Err(text)
            }
            Err(seen) => Err(format!(
                "Pebble not ready after 10 s ({seen}):\n{}",
                handle.log()
            )),
        }
    }
}

/// A port that was free a moment ago (Pebble's JSON config cannot say "port 0").
pub fn free_port() -> u16 {
    crate::common::ports::free_port()
}

/// Mints a root and a `localhost`/`127.0.0.1` leaf for Pebble's own HTTPS (Debian ships
/// none); returns the root's path.
fn write_api_certificates(dir: &Path) -> PathBuf {
    let (root, leaf, leaf_key) = loopback_server_certificate("certinel test Pebble API root");

    let root_path = dir.join("api-root.pem");
    std::fs::write(&root_path, root.pem()).expect("write root");
    std::fs::write(dir.join("api-cert.pem"), leaf.pem()).expect("write cert");
    std::fs::write(dir.join("api-key.pem"), leaf_key.serialize_pem()).expect("write key");
    root_path
}

/// A minimal HTTPS GET trusting only `root`: status code and body.
pub async fn https_get(url: &str, root: &Path) -> Result<(u16, Vec<u8>), String> {
    let rest = url.strip_prefix("https://").ok_or("not https")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let (host, _port) = authority.rsplit_once(':').ok_or("no port")?;

    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(root).map_err(|e| e.to_string())?;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name =
        rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // Go's server closes without close_notify now and then: keep what arrived.
    let _ = tls.read_to_end(&mut response).await;
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or("no HTTP header")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("no status")?;
    Ok((status, response[split + 4..].to_vec()))
}
