//! Starts Debian's Knot DNS on a free loopback port with a generated configuration: the
//! zones `certinel.test.` and `validation.test.` (tests/fixtures/dns01/), updatable with
//! one TSIG key. Knot dies with the handle. `kdig` reads what it serves.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::common::pebble::free_port;

const KNOTD: &str = "/usr/sbin/knotd";
const KDIG: &str = "/usr/bin/kdig";
/// The TSIG key's name as Knot knows it.
pub const KEY_NAME: &str = "certinel-test-key.";

/// A running Knot.
pub struct Knot {
    /// Where Knot answers queries and updates, UDP and TCP.
    pub addr: SocketAddr,
    /// The TSIG secret, base64 as in Knot's configuration.
    pub key_base64: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Knot {
    /// Starts Knot; picks another port and tries again if one was taken meanwhile.
    pub async fn start() -> Knot {
        for program in [KNOTD, KDIG] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: install Debian's knot and knot-dnsutils packages \
                 (scripts/deps)"
            );
        }
        let mut last_log = String::new();
        for _attempt in 0..5 {
            match Self::try_start().await {
                Ok(knot) => return knot,
                Err(log) => last_log = log,
            }
        }
        panic!("Knot did not start after 5 attempts; last log:\n{last_log}");
    }

    /// The TXT values Knot serves at `name` (absolute), with kdig.
    pub fn txt(&self, name: &str) -> Vec<String> {
        let output = Command::new(KDIG)
            .arg(format!("@{}", self.addr.ip()))
            .args(["-p", &self.addr.port().to_string(), "+tcp", "+short"])
            .args([name, "TXT"])
            .output()
            .expect("run kdig");
        assert!(output.status.success(), "kdig failed: {output:?}");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| line.trim().trim_matches('"').to_owned())
            .filter(|line| !line.is_empty())
            .collect()
    }

    /// Knot's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knot.log")).unwrap_or_default()
    }

    async fn try_start() -> Result<Knot, String> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let key_base64 = STANDARD.encode(rand::random::<[u8; 32]>());
        let root = dir.path().display();
        let config = format!(
            "server:\n    rundir: {root}\n    listen: 127.0.0.1@{port}\n    \
             udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
             database:\n    storage: {root}/db\n\
             key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {key_base64}\n\
             acl:\n  - id: certinel-update\n    key: {KEY_NAME}\n    action: update\n\
             template:\n  - id: default\n    storage: {root}\n    file: \"%s.zone\"\n    \
             zonefile-sync: -1\n    acl: certinel-update\n\
             zone:\n  - domain: certinel.test.\n  - domain: validation.test.\n\
             log:\n  - target: stderr\n    any: info\n"
        );
        std::fs::write(dir.path().join("knot.conf"), config).expect("write knot.conf");
        std::fs::write(
            dir.path().join("certinel.test.zone"),
            include_str!("../fixtures/dns01/certinel.test.zone"),
        )
        .expect("write zone");
        std::fs::write(
            dir.path().join("validation.test.zone"),
            include_str!("../fixtures/dns01/validation.test.zone"),
        )
        .expect("write zone");
        // Knot keeps its journal there and refuses updates when it is missing.
        std::fs::create_dir(dir.path().join("db")).expect("create Knot's database directory");
        let log = std::fs::File::create(dir.path().join("knot.log")).expect("log file");
        let child = Command::new(KNOTD)
            .arg("-c")
            .arg(dir.path().join("knot.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn knotd");
        let mut knot = Knot {
            addr,
            key_base64,
            dir,
            child,
        };
        // Readiness: both zones answer their SOA over UDP. Bounded at ten seconds.
        for _ in 0..200 {
            if matches!(knot.child.try_wait(), Ok(Some(_))) {
                return Err(knot.log());
            }
            if knot.serves_soa("certinel.test.") && knot.serves_soa("validation.test.") {
                return Ok(knot);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("Knot not ready after 10 s:\n{}", knot.log()))
    }

    /// Over UDP, which Pebble's validator uses (the tests' own reads use TCP).
    fn serves_soa(&self, zone: &str) -> bool {
        Command::new(KDIG)
            .arg(format!("@{}", self.addr.ip()))
            .args([
                "-p",
                &self.addr.port().to_string(),
                "+short",
                "+timeout=1",
                "+retry=0",
            ])
            .args([zone, "SOA"])
            .output()
            .is_ok_and(|output| !output.stdout.is_empty())
    }
}
