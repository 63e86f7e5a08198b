//! A real etcd cluster from Debian's `etcd-server` package: `n` members on free loopback
//! ports, each with its own data directory, started, killed and restarted by the tests.
//!
//! Without `/usr/bin/etcd` the fixture panics with the package to install: a cluster test
//! never skips silently. [`EtcdCluster::start_tls`] serves clients over TLS and demands a
//! client certificate (`--client-cert-auth`), with the files in [`EtcdTls`].

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::eventually::eventually_blocking;
use super::pebble::{Pebble, PebbleOptions};
use super::pki::{Ca, LeafSpec, Validity, write_key, write_pem};
use super::ports::free_port;

/// The etcd binary Debian's `etcd-server` installs.
const ETCD: &str = "/usr/bin/etcd";

/// How long a member (or the whole cluster) may take to report healthy.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// One member's fixed identity: its name and ports, kept across restarts.
struct Member {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster on loopback; every member is killed on drop.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    tls: Option<EtcdTls>,
    /// Further `etcd` flags, for every member.
    extra_args: Vec<String>,
    _dir: tempfile::TempDir,
}

/// The PEM files of a TLS cluster: its CA, and a client certificate it trusts.
pub struct EtcdTls {
    /// The CA that issued the servers' and the client's certificates (`[cluster] ca_file`).
    pub ca_file: PathBuf,
    /// A client certificate etcd accepts (`[cluster] client_cert`).
    pub client_cert: PathBuf,
    /// Its key, mode 0600 (`[cluster] client_key`).
    pub client_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    /// The health check's TLS client: trusts the CA, presents the client certificate.
    health_client: Arc<rustls::ClientConfig>,
}

impl EtcdCluster {
    /// Starts a cluster of `size` members and waits until every member answers `/health`
    /// with a leader elected.
    pub fn start(size: usize) -> EtcdCluster {
        EtcdCluster::start_with(size, false, &[])
    }

    /// [`start`](Self::start) with further `etcd` flags for every member, e.g.
    /// `["--auth-token-ttl", "1"]`.
    pub fn start_with_args(size: usize, extra_args: &[&str]) -> EtcdCluster {
        EtcdCluster::start_with(size, false, extra_args)
    }

    /// [`start`](Self::start), serving clients over TLS only (`https://`) and requiring a
    /// client certificate issued by the cluster's CA; [`tls`](Self::tls) has the files.
    pub fn start_tls(size: usize) -> EtcdCluster {
        EtcdCluster::start_with(size, true, &[])
    }

    fn start_with(size: usize, tls: bool, extra_args: &[&str]) -> EtcdCluster {
        assert!(
            Path::new(ETCD).is_file(),
            "{ETCD} is missing: install Debian's etcd-server (scripts/deps does)"
        );
        let dir = tempfile::tempdir().expect("create a temporary directory for etcd");
        let members: Vec<Member> = (0..size)
            .map(|index| {
                let name = format!("m{index}");
                Member {
                    client: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
                    peer: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
                    data_dir: dir.path().join(&name),
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    child: None,
                }
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|member| format!("{}=http://{}", member.name, member.peer))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("certinel-test-{}", std::process::id());
        let tls = tls.then(|| EtcdTls::new(dir.path()));
        let mut cluster = EtcdCluster {
            members,
            initial_cluster,
            token,
            tls,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            _dir: dir,
        };
        for index in 0..size {
            cluster.spawn(index);
        }
        for index in 0..size {
            cluster.wait_healthy(index);
        }
        cluster
    }

    /// The client URLs of every member (`http://127.0.0.1:PORT`, `https://` with TLS), for
    /// `[cluster] etcd`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|member| format!("{}://{}", self.scheme(), member.client))
            .collect()
    }

    /// The TLS files, for a cluster started with [`start_tls`](Self::start_tls).
    pub fn tls(&self) -> Option<&EtcdTls> {
        self.tls.as_ref()
    }

    /// Runs `etcdctl ARGS` against every member (with the client certificate on a TLS
    /// cluster), e.g. to add users and enable authentication; panics when it fails.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.endpoints().join(","));
        if let Some(tls) = &self.tls {
            add_file_flags(&mut command, tls.client_flags());
        }
        let output = command.args(args).output().expect("run etcdctl");
        assert!(
            output.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Kills member `index` with SIGKILL and waits for it to exit; its data stays.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `index` again on its old ports and data, and waits until it is
    /// healthy (which needs a quorum of members running).
    pub fn restart(&mut self, index: usize) {
        self.kill(index);
        self.spawn(index);
        self.wait_healthy(index);
    }

    /// [`restart`](Self::restart)s the members `indices` in turn on a blocking thread, so
    /// that an async test's runtime goes on meanwhile; returns the cluster.
    pub async fn restarted(mut self, indices: &[usize]) -> EtcdCluster {
        let indices = indices.to_vec();
        tokio::task::spawn_blocking(move || {
            for index in indices {
                self.restart(index);
            }
            self
        })
        .await
        .expect("restart etcd")
    }

    /// Whether member `index` answers `/health` with `"health":"true"` (it has a leader).
    pub fn is_healthy(&self, index: usize) -> bool {
        health(self.members[index].client, self.tls.as_ref()).is_ok()
    }

    /// The log of member `index`, for a failure message.
    pub fn log(&self, index: usize) -> String {
        std::fs::read_to_string(&self.members[index].log).unwrap_or_default()
    }

    fn spawn(&mut self, index: usize) {
        let member = &self.members[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .expect("open the etcd log");
        let err = log.try_clone().expect("clone the etcd log handle");
        let client = format!("{}://{}", self.scheme(), member.client);
        let peer = format!("http://{}", member.peer);
        let mut command = Command::new(ETCD);
        if let Some(tls) = &self.tls {
            add_file_flags(&mut command, tls.server_flags());
            command.arg("--client-cert-auth");
        }
        let child = command
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            // Fast elections keep failover tests short; loopback has no real latency.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|error| panic!("start {ETCD}: {error}"));
        self.members[index].child = Some(child);
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    fn wait_healthy(&mut self, index: usize) {
        let client = self.members[index].client;
        let name = self.members[index].name.clone();
        eventually_blocking(STARTUP_DEADLINE, || {
            if let Some(child) = self.members[index].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("etcd {name} exited ({status}):\n{}", self.log(index));
            }
            health(client, self.tls.as_ref())
                .map_err(|seen| format!("etcd {name} at {client}: {seen}"))
        });
    }
}

/// Pebble and an etcd cluster of `size` members, with a temporary directory for the test's
/// files: what a renewal through a cluster needs.
pub async fn pebble_and_etcd(size: usize) -> (Pebble, EtcdCluster, tempfile::TempDir) {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let cluster = EtcdCluster::start(size);
    let dir = tempfile::tempdir().expect("create a temporary directory for the test");
    (pebble, cluster, dir)
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
    }
}

impl EtcdTls {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate, written to `dir`.
    fn new(dir: &Path) -> EtcdTls {
        let ca = Ca::root("certinel test etcd CA", Validity::current());
        let server = ca.leaf(&LeafSpec::new(&["127.0.0.1", "localhost"]));
        let client = ca.leaf(&LeafSpec::new(&["certinel-test-client"]).client());
        let health_client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default versions")
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert.clone()).expect("the CA is a valid root");
            roots
        })
        .with_client_auth_cert(vec![client.cert.clone()], client.key.clone_key())
        .expect("a valid client certificate and key");
        EtcdTls {
            ca_file: write_pem(dir, "etcd-ca.pem", &ca.pem),
            client_cert: write_pem(dir, "etcd-client.pem", &client.pem),
            client_key: write_key(dir, "etcd-client-key.pem", &client.key_pem),
            server_cert: write_pem(dir, "etcd-server.pem", &server.pem),
            server_key: write_key(dir, "etcd-server-key.pem", &server.key_pem),
            health_client: Arc::new(health_client),
        }
    }

    /// `etcdctl`'s flags: trust the CA, present the client certificate.
    fn client_flags(&self) -> [(&'static str, &Path); 3] {
        [
            ("--cacert", &self.ca_file),
            ("--cert", &self.client_cert),
            ("--key", &self.client_key),
        ]
    }

    /// A member's flags: serve the server certificate, check client certificates
    /// against the CA.
    fn server_flags(&self) -> [(&'static str, &Path); 3] {
        [
            ("--cert-file", &self.server_cert),
            ("--key-file", &self.server_key),
            ("--trusted-ca-file", &self.ca_file),
        ]
    }
}

/// Adds `FLAG FILE` to `command` for each of `flags`.
fn add_file_flags(command: &mut Command, flags: [(&str, &Path); 3]) {
    for (flag, file) in flags {
        command.arg(flag).arg(file);
    }
}

/// One `GET /health` on a member's client port (over TLS with `tls`): `Ok` when it reports
/// a leader.
fn health(client: SocketAddr, tls: Option<&EtcdTls>) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&client, Duration::from_secs(1))
        .map_err(|error| error.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|error| error.to_string())?;
    let request = format!("GET /health HTTP/1.0\r\nHost: {client}\r\nConnection: close\r\n\r\n");
    let mut response = Vec::new();
    let read = match tls {
        None => stream
            .write_all(request.as_bytes())
            .and_then(|()| stream.read_to_end(&mut response)),
        Some(tls) => {
            let name = rustls::pki_types::ServerName::IpAddress(client.ip().into());
            let connection = rustls::ClientConnection::new(tls.health_client.clone(), name)
                .map_err(|error| error.to_string())?;
            let mut stream = rustls::StreamOwned::new(connection, stream);
            stream
                .write_all(request.as_bytes())
                .and_then(|()| stream.read_to_end(&mut response))
        }
    };
    let response = String::from_utf8_lossy(&response);
    // A server that closes without TLS close_notify still sent its whole answer.
    if let Err(error) = read
        && !response.contains("\"health\"")
    {
        return Err(error.to_string());
    }
    if response.contains("\"health\":\"true\"") {
        Ok(())
    } else {
        Err(response.lines().last().unwrap_or_default().to_owned())
    }
}

#[test]
fn a_three_member_cluster_keeps_quorum_with_one_member_down() {
    let mut cluster = EtcdCluster::start(3);
    assert_eq!(cluster.endpoints().len(), 3);
    cluster.kill(2);
    eventually_blocking(STARTUP_DEADLINE, || {
        (cluster.is_healthy(0) && cluster.is_healthy(1))
            .then_some(())
            .ok_or("the two remaining members report no leader")
    });
    cluster.restart(2);
    assert!(cluster.is_healthy(2));
}

#[tokio::test]
async fn the_etcd_client_crate_speaks_to_debians_etcd() {
    let cluster = EtcdCluster::start(1);
    let mut client = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .expect("connect");
    client.put("/t/k", "v", None).await.expect("put");
    let response = client.get("/t/k", None).await.expect("get");
    assert_eq!(response.kvs()[0].value(), b"v");
    let lease = client.lease_grant(5, None).await.expect("lease grant");
    let compare =
        etcd_client::Compare::create_revision("/t/lock", etcd_client::CompareOp::Equal, 0);
    let put = etcd_client::TxnOp::put(
        "/t/lock",
        "me",
        Some(etcd_client::PutOptions::new().with_lease(lease.id())),
    );
    let txn = etcd_client::Txn::new()
        .when([compare.clone()])
        .and_then([put.clone()]);
    assert!(client.txn(txn).await.expect("txn").succeeded());
    let again = etcd_client::Txn::new().when([compare]).and_then([put]);
    assert!(!client.txn(again).await.expect("txn").succeeded());
}
