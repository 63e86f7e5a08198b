//! Starts Debian's Knot DNS on a free loopback port with a generated configuration: the
//! zones `certinel.test.` and `validation.test.` (tests/fixtures/dns01/), updatable with
//! one TSIG key. Knot dies with the handle. `kdig` reads what it serves. `start_with`
//! starts one on a chosen loopback address and port with other zones (several name servers
//! of one zone), and every Knot counts the queries it answers (`knotc stats`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::common::eventually::within;
use crate::common::pebble::free_port;
use crate::common::process::{KilledOnDrop, feed_stdin, spawn_logged};

const KNOTD: &str = "/usr/sbin/knotd";
const KDIG: &str = "/usr/bin/kdig";
const KNOTC: &str = "/usr/sbin/knotc";
const KNSUPDATE: &str = "/usr/bin/knsupdate";
/// The zones `start` serves: `(domain, zone file text)`.
const DEFAULT_ZONES: [(&str, &str); 2] = [
    (
        "certinel.test.",
        include_str!("../fixtures/dns01/certinel.test.zone"),
    ),
    (
        "validation.test.",
        include_str!("../fixtures/dns01/validation.test.zone"),
    ),
];
/// The TSIG key's name as Knot knows it.
pub const KEY_NAME: &str = "certinel-test-key.";

/// A running Knot.
pub struct Knot {
    /// Where Knot answers queries and updates, UDP and TCP.
    pub addr: SocketAddr,
    /// The TSIG secret, base64 as in Knot's configuration.
    pub key_base64: String,
    child: KilledOnDrop,
    dir: tempfile::TempDir,
}

impl Knot {
    /// Starts Knot; picks another port and tries again if one was taken meanwhile.
    pub async fn start() -> Knot {
        Self::start_with_zones(&DEFAULT_ZONES).await
    }

    /// Panics with a clear message when Knot's programs are not installed.
    pub fn check_programs() {
        for program in [KNOTD, KDIG, KNOTC, KNSUPDATE] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: install Debian's knot and knot-dnsutils packages \
                 (scripts/deps)"
            );
        }
    }

    /// How many TXT queries this Knot has answered so far.
    pub fn txt_queries(&self) -> u64 {
        let output = Command::new(KNOTC)
            .arg("-c")
            .arg(self.dir.path().join("knot.conf"))
            .args(["stats", "mod-stats.query-type"])
            .output()
            .expect("run knotc");
        assert!(output.status.success(), "knotc stats failed: {output:?}");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("mod-stats.query-type[TXT] = "))
            .map_or(0, |count| count.trim().parse().expect("a count"))
    }

    /// Adds the TXT `value` at `name` in `zone` by an RFC 2136 update (knsupdate).
    pub fn add_txt(&self, zone: &str, name: &str, value: &str) {
        let script = format!(
            "server {} {}\nzone {zone}\nupdate add {name} 60 TXT \"{value}\"\nsend\n",
            self.addr.ip(),
            self.addr.port()
        );
        let mut child = Command::new(KNSUPDATE)
            .arg("-y")
            .arg(format!("hmac-sha256:{KEY_NAME}:{}", self.key_base64))
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn knsupdate");
        feed_stdin(&mut child, script.as_bytes(), "knsupdate");
        let status = child.wait().expect("wait for knsupdate");
        assert!(status.success(), "knsupdate failed:\n{}", self.log());
    }

    /// The TXT values Knot serves at `name` (absolute), with kdig.
    /// Asserts that `name` has no TXT record (a challenge record was cleaned up).
    #[track_caller]
    pub fn assert_no_txt(&self, name: &str) {
        assert_eq!(
            self.txt(name),
            Vec::<String>::new(),
            "TXT records left at {name}"
        );
    }

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

    /// Starts Knot on `ip:port` serving `zones` (`(domain, zone file text)`), updatable
    /// with a fresh TSIG key; Knot's log when it does not come up.
    /// Starts Knot on 127.0.0.1 serving `zones` instead of the default ones; picks another
    /// port and tries again if one was taken meanwhile.
    pub async fn start_with_zones(zones: &[(&str, &str)]) -> Knot {
        Self::check_programs();
        let mut last_log = String::new();
        for _attempt in 0..5 {
            match Self::start_with(Ipv4Addr::LOCALHOST, free_port(), zones).await {
                Ok(knot) => return knot,
                Err(log) => last_log = log,
            }
        }
        panic!("Knot did not start after 5 attempts; last log:\n{last_log}");
    }

    pub async fn start_with(
        ip: Ipv4Addr,
        port: u16,
        zones: &[(&str, &str)],
    ) -> Result<Knot, String> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let addr = SocketAddr::from((ip, port));
        let key_base64 = STANDARD.encode(rand::random::<[u8; 32]>());
        let root = dir.path().display();
        let zone_lines: String = zones
            .iter()
            .map(|(domain, _)| format!("  - domain: {domain}\n"))
            .collect();
        let config = format!(
            "server:\n    rundir: {root}\n    listen: {ip}@{port}\n    \
             udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
             database:\n    storage: {root}/db\n\
             key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {key_base64}\n\
             acl:\n  - id: certinel-update\n    key: {KEY_NAME}\n    action: update\n\
             mod-stats:\n  - id: counts\n    query-type: on\n\
             template:\n  - id: default\n    storage: {root}\n    file: \"%s.zone\"\n    \
             zonefile-sync: -1\n    acl: certinel-update\n    \
             global-module: mod-stats/counts\n\
             zone:\n{zone_lines}\
             log:\n  - target: stderr\n    any: info\n"
        );
        std::fs::write(dir.path().join("knot.conf"), config).expect("write knot.conf");
        for (domain, text) in zones {
            std::fs::write(dir.path().join(format!("{domain}zone")), text).expect("write zone");
        }
        // Knot keeps its journal there and refuses updates when it is missing.
        std::fs::create_dir(dir.path().join("db")).expect("create Knot's database directory");
        let log = std::fs::File::create(dir.path().join("knot.log")).expect("log file");
        let mut command = Command::new(KNOTD);
        command.arg("-c").arg(dir.path().join("knot.conf"));
        let child = spawn_logged(&mut command, log, "knotd");
        let mut knot = Knot {
            addr,
            key_base64,
            dir,
            child: KilledOnDrop(child),
        };
        // Readiness: every zone answers its SOA over UDP. Bounded at ten seconds.
        let ready = within(Duration::from_secs(10), async || {
            if matches!(knot.child.0.try_wait(), Ok(Some(_))) {
                return Ok(false);
            }
            match zones.iter().find(|(domain, _)| !knot.serves_soa(domain)) {
                None => Ok(true),
                Some((domain, _)) => Err(format!("no SOA for {domain} yet")),
            }
        })
        .await;
        match ready {
            Ok(true) => Ok(knot),
            Ok(false) => Err(knot.log()),
            Err(seen) => Err(format!(
                "Knot not ready after 10 s ({seen}):\n{}",
                knot.log()
            )),
        }
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
