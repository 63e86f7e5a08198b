//! The world the end-to-end monitoring test watches: live loopback TLS servers and files
//! (one per alert), Pebble behind the ARI front (renewal windows and profiles), a
//! certificate issued before certinel starts whose verify target serves another one, and
//! certinel itself, running with fixture monitoring.toml.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use certinel::renew::{RenewOptions, RenewOutcome, Renewer};
use time::OffsetDateTime;

use super::expected::{ADOPTED, ADVERTISED_PROFILE, DRIFTED};
use crate::common::ari_front::{AriFront, AriReply};
use crate::common::crl::{CrlCa, CrlServer, adopt_leaf, pem};
use crate::common::pebble::{Pebble, PebbleOptions, free_port};
use crate::common::pki::{Ca, Leaf, LeafSpec, Validity, write_pem};
use crate::common::service::{Service, write_config};
use crate::common::tls_server::{ServerHandle, ServerOptions, bind, bind_pair, spawn_tls};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// How long Pebble's certificates live: short-lived, so the lifetime rules judge them.
const PEBBLE_VALIDITY_SECONDS: u64 = 3 * 86400;

/// The live servers, files, Pebble (behind the ARI front) and certinel of the test, one
/// per alert.
pub(super) struct Setup {
    pub(super) dir: tempfile::TempDir,
    pub(super) service: Service,
    pub(super) soon: SocketAddr,
    pub(super) late: SocketAddr,
    pub(super) self_signed: SocketAddr,
    pub(super) short_low: SocketAddr,
    pub(super) short_critical: SocketAddr,
    pub(super) closed: SocketAddr,
    pub(super) disagree_port: u16,
    pub(super) soon_file: PathBuf,
    pub(super) late_file: PathBuf,
    pub(super) short_low_file: PathBuf,
    pub(super) short_critical_file: PathBuf,
    pub(super) missing_file: PathBuf,
    /// An `[[endpoint_source]]` file that does not parse.
    pub(super) broken_targets_file: PathBuf,
    pub(super) revoked: SocketAddr,
    pub(super) revoked_file: PathBuf,
    _servers: Vec<ServerHandle>,
    _crl_server: CrlServer,
    _front: AriFront,
    _pebble: Pebble,
}

impl Setup {
    /// Starts Pebble behind the ARI front and the TLS servers, writes the files, issues
    /// the drifted certificate, and starts certinel (which issues one more certificate and
    /// fails the other at once); then makes it reject a new configuration, so the reload
    /// alert has something to say.
    pub(super) async fn start() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let pebble = Pebble::start(PebbleOptions {
            validity_seconds: Some(PEBBLE_VALIDITY_SECONDS),
            ..PebbleOptions::default()
        })
        .await;
        let front = AriFront::start(&pebble, true, &[(ADVERTISED_PROFILE, "short-lived")]).await;
        // A window a day ahead: every certificate's renewal is placed by ARI and none is
        // renewed while the test runs.
        let now = OffsetDateTime::now_utc();
        front.set_window(AriReply {
            window: (now + time::Duration::days(1), now + time::Duration::days(2)),
            retry_after: Some("3600".to_owned()),
            explanation_url: None,
        });
        // Pebble's validator connects to its own http port only: a listener elsewhere
        // never sees the challenge.
        let unreachable = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let root = Ca::root("certinel monitoring test root", Validity::current());
        // Long-lived certificates are judged by days left, short-lived ones (under 70
        // days) by the share of their lifetime left.
        let leaf = |not_before_days, not_after_days| {
            root.leaf(
                &LeafSpec::new(&["localhost"])
                    .validity(Validity::days(not_before_days, not_after_days)),
            )
        };
        let soon_leaf = leaf(-88, 3);
        let late_leaf = leaf(-80, 14);
        // A 6-day certificate with a sixth of its life left, a 20-day one with a twentieth.
        let short_low_leaf = leaf(-5, 1);
        let short_critical_leaf = leaf(-19, 1);
        let self_signed_leaf = Leaf::self_signed(&LeafSpec::new(&["localhost"]));
        let mut servers = vec![
            serve_leaf(bind(LOCALHOST).await, &soon_leaf),
            serve_leaf(bind(LOCALHOST).await, &late_leaf),
            serve_leaf(bind(LOCALHOST).await, &self_signed_leaf),
            serve_leaf(bind(LOCALHOST).await, &short_low_leaf),
            serve_leaf(bind(LOCALHOST).await, &short_critical_leaf),
        ];
        let [soon, late, self_signed, short_low, short_critical] =
            [0, 1, 2, 3, 4].map(|index| servers[index].addr);
        // Two addresses of one name, each serving its own (trusted, long-lived) leaf.
        let (first_ip, second_ip) = (
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
        );
        let (first, second) = bind_pair(first_ip, second_ip).await;
        let disagree_port = first.local_addr().expect("bound address").port();
        for listener in [first, second] {
            let leaf = root.leaf(&LeafSpec::new(&["disagree.test"]));
            servers.push(serve_leaf(listener, &leaf));
        }
        let closed = bind(LOCALHOST).await.local_addr().expect("bound address");
        // A leaf listed on its CA's CRL, which a server of the test publishes.
        let crl_ca = CrlCa::new();
        let crl_server = CrlServer::start().await;
        crl_server.publish(crl_ca.crl(&[0x5150]));
        let (revoked_leaf, revoked_key) = crl_ca.leaf(0x5150, &crl_server.url);
        let revoked_chain = vec![revoked_leaf.clone(), crl_ca.cert.clone()];
        let revoked_server = spawn_tls(
            bind(LOCALHOST).await,
            ServerOptions::new(revoked_chain, revoked_key).acceptor(),
        );
        let revoked = revoked_server.addr;
        servers.push(revoked_server);

        let hosts = write_pem(
            dir.path(),
            "hosts",
            &format!("{first_ip} disagree.test\n{second_ip} disagree.test\n"),
        );
        let ca_file = write_pem(dir.path(), "root.pem", &root.pem);
        let soon_file = write_pem(dir.path(), "soon.pem", &soon_leaf.pem);
        let late_file = write_pem(dir.path(), "late.pem", &late_leaf.pem);
        let short_low_file = write_pem(dir.path(), "short-low.pem", &short_low_leaf.pem);
        let short_critical_file =
            write_pem(dir.path(), "short-critical.pem", &short_critical_leaf.pem);
        let missing_file = dir.path().join("missing.pem");
        let broken_targets_file = write_pem(dir.path(), "broken-targets.json", "[{");
        let crl_ca_file = write_pem(dir.path(), "crl-ca.pem", &pem("CERTIFICATE", &crl_ca.cert));
        let revoked_file = write_pem(
            dir.path(),
            "revoked.pem",
            &(pem("CERTIFICATE", &revoked_leaf) + &pem("CERTIFICATE", &crl_ca.cert)),
        );
        let path = |path: &Path| path.display().to_string();
        let values = [
            ("HOSTS_FILE", path(&hosts)),
            ("CA_FILE", path(&ca_file)),
            ("SOON_PORT", soon.port().to_string()),
            ("LATE_PORT", late.port().to_string()),
            ("SELF_SIGNED_PORT", self_signed.port().to_string()),
            ("SHORT_LOW_PORT", short_low.port().to_string()),
            ("SHORT_CRITICAL_PORT", short_critical.port().to_string()),
            ("CLOSED_PORT", closed.port().to_string()),
            ("DISAGREE_PORT", disagree_port.to_string()),
            ("SOON_FILE", path(&soon_file)),
            ("LATE_FILE", path(&late_file)),
            ("SHORT_LOW_FILE", path(&short_low_file)),
            ("SHORT_CRITICAL_FILE", path(&short_critical_file)),
            ("MISSING_FILE", path(&missing_file)),
            ("BROKEN_TARGETS_FILE", path(&broken_targets_file)),
            ("REVOKED_PORT", revoked.port().to_string()),
            ("CRL_CA_FILE", path(&crl_ca_file)),
            ("REVOKED_FILE", path(&revoked_file)),
            ("STATE_DIR", path(&dir.path().join("state"))),
            ("ACME_DIRECTORY", front.directory_url.clone()),
            ("ACME_CA_FILE", path(&front.ca_file)),
            ("HTTP01_LISTEN", pebble.http_addr().to_string()),
            ("UNREACHABLE_LISTEN", unreachable.to_string()),
        ];
        issue_drifted(dir.path(), &values, &pebble).await;
        // A managed certificate adopted from the CRL test CA, not on its CRL:
        // certinel_certificate_revoked is 0 for it.
        adopt_leaf(
            &dir.path().join("state"),
            ADOPTED,
            &crl_ca,
            0x5151,
            &crl_server.url,
        );
        let config = write_config(dir.path(), "monitoring.toml", &values);
        let mut service = Service::start(Some(&config)).await;
        service.wait_ready().await;
        write_config(
            dir.path(),
            "broken.toml",
            &[("PORT", closed.port().to_string())],
        );
        service.signal("HUP");
        service
            .wait_for_log("configuration rejected; the previous one keeps running")
            .await;
        Setup {
            dir,
            service,
            soon,
            late,
            self_signed,
            short_low,
            short_critical,
            closed,
            disagree_port,
            soon_file,
            late_file,
            short_low_file,
            short_critical_file,
            missing_file,
            broken_targets_file,
            revoked,
            revoked_file,
            _servers: servers,
            _crl_server: crl_server,
            _front: front,
            _pebble: pebble,
        }
    }
}

/// A TLS server on `listener` presenting `leaf` alone.
fn serve_leaf(listener: tokio::net::TcpListener, leaf: &Leaf) -> ServerHandle {
    let options = ServerOptions::new(vec![leaf.cert.clone()], leaf.key.clone_key());
    spawn_tls(listener, options.acceptor())
}

/// Issues [`DRIFTED`] with monitoring_preissue.toml (no `verify` target: its target serves
/// another certificate, so that renewal would fail), so the drift check's first round, at
/// certinel's start, already finds a current version.
async fn issue_drifted(dir: &Path, values: &[(&str, String)], pebble: &Pebble) {
    let config = write_config(dir, "monitoring_preissue.toml", values);
    let config = certinel::config::load(&config).unwrap_or_else(|error| panic!("{error}"));
    let renewer = Renewer::new(&config);
    let outcome = renewer
        .renew(DRIFTED, RenewOptions::default(), OffsetDateTime::now_utc())
        .await;
    assert!(
        matches!(outcome, Ok(RenewOutcome::Renewed { .. })),
        "issuing {DRIFTED} before certinel starts: {outcome:?}\n{}",
        pebble.log()
    );
}
