//! A real PostgreSQL server from Debian's `postgresql` package, run as the `postgres` user in
//! a temporary directory on a free loopback port, with an rcgen certificate.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually::eventually_blocking;
use super::plaintext_servers::TestCert;
use super::process::{assert_succeeded, spawn_logged};

/// How long a fresh cluster may take to open its port.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A running `postgres`; stopped and removed on drop.
pub struct Postgres {
    /// Where it listens.
    pub addr: SocketAddr,
    bin: PathBuf,
    data: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Creates a cluster and starts it with `ssl=on` and `cert` as its server certificate.
    /// Blocks until the port accepts connections.
    pub fn start_with_ssl(cert: &TestCert) -> Postgres {
        Postgres::start(Some(cert))
    }

    /// Creates a cluster and starts it with `ssl=off`.
    pub fn start_without_ssl() -> Postgres {
        Postgres::start(None)
    }

    fn start(cert: Option<&TestCert>) -> Postgres {
        let bin = postgres_bin_dir();
        let (uid, gid) = postgres_user();
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let root = dir.path().to_path_buf();
        std::os::unix::fs::chown(&root, Some(uid), Some(gid)).expect("chown the cluster dir");
        let data = root.join("data");
        let initdb = as_postgres()
            .arg(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .expect("run initdb via runuser");
        assert_succeeded(&initdb, "initdb");

        let ssl_settings = match cert {
            Some(cert) => {
                let (cert_file, key_file) = write_cert_and_key(&root, cert, uid, gid);
                vec![
                    "ssl=on".to_string(),
                    format!("ssl_cert_file={}", cert_file.display()),
                    format!("ssl_key_file={}", key_file.display()),
                ]
            }
            None => vec!["ssl=off".to_string()],
        };

        let port = free_port();
        let log = fs::File::create(root.join("postgres.log")).expect("create the log file");
        let mut command = as_postgres();
        command
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&root)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-c", "fsync=off"])
            .args(
                ssl_settings
                    .iter()
                    .flat_map(|setting| ["-c", setting.as_str()]),
            );
        let child = spawn_logged(&mut command, log, "runuser postgres");
        let mut server = Postgres {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            bin,
            data,
            child,
            _dir: dir,
        };
        server.wait_until_listening(&root);
        server
    }

    fn wait_until_listening(&mut self, root: &Path) {
        let log = || fs::read_to_string(root.join("postgres.log")).unwrap_or_default();
        eventually_blocking(STARTUP_DEADLINE, || {
            let error = match TcpStream::connect_timeout(&self.addr, POLL_INTERVAL) {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("postgres exited with {status} before listening:\n{}", log());
            }
            Err(format!("{}: {error}\n{}", self.addr, log()))
        });
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Stop the postmaster itself: killing `runuser` alone could leave it orphaned.
        let _ = as_postgres()
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the certificate and its key (0600) for postgres to read; returns their paths.
fn write_cert_and_key(root: &Path, cert: &TestCert, uid: u32, gid: u32) -> (PathBuf, PathBuf) {
    let cert_file = root.join("server.crt");
    let key_file = root.join("server.key");
    fs::write(&cert_file, &cert.cert_pem).expect("write the server certificate");
    fs::write(&key_file, "").expect("create the key file");
    // The key is made private before any secret is written into it.
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).expect("chmod 0600");
    fs::write(&key_file, &cert.key_pem).expect("write the server key");
    for file in [&cert_file, &key_file] {
        std::os::unix::fs::chown(file, Some(uid), Some(gid)).expect("chown to postgres");
    }
    (cert_file, key_file)
}

/// The newest `/usr/lib/postgresql/VERSION/bin` holding a `postgres` binary.
fn postgres_bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no /usr/lib/postgresql/*/bin/postgres: install Debian's postgresql package \
             (apt-get install postgresql)"
        ),
    }
}

/// The uid and gid of the `postgres` user, from /etc/passwd.
fn postgres_user() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let line = passwd
        .lines()
        .find(|line| line.starts_with("postgres:"))
        .expect("a postgres user: install Debian's postgresql package");
    let fields: Vec<&str> = line.split(':').collect();
    let id = |index: usize| fields[index].parse().expect("numeric id in /etc/passwd");
    (id(2), id(3))
}

/// `runuser -u postgres --`, ready for the program and its arguments: postgres refuses to
/// run as root, and tests do.
fn as_postgres() -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", "postgres", "--"]);
    command
}

/// A port that was free a moment ago (the kernel's choice for 127.0.0.1:0).
fn free_port() -> u16 {
    crate::common::ports::free_port()
}
