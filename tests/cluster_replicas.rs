//! Three `certinel run` replicas sharing one real three-member etcd, each with its own
//! state directory and deploy command, against Pebble behind a front that counts new
//! orders: a certificate is ordered once and reaches every replica; a replica whose deploy
//! fails rolls the fleet back; a holder killed in the middle of a renewal, or paused past
//! its lease, is taken over without a second order, and the paused one is fenced.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::common::ari_front::AriFront;
use crate::common::etcd::EtcdCluster;
use crate::common::eventually::eventually;
use crate::common::pebble::{Pebble, PebbleOptions};
use crate::common::service::Service;

/// How long a new version may take to reach every replica.
const SPREAD: Duration = Duration::from_secs(5);

/// How long a whole scenario may take to get where it is going.
pub(crate) const PATIENCE: Duration = Duration::from_secs(90);

/// Pebble's certificate lifetime in the renewal tests, and how long before expiry they
/// renew: v0002 is due about ten seconds after v0001.
const SHORT_VALIDITY: u64 = 60;
const SHORT_RENEW_BEFORE: &str = "50s";

pub(crate) const MEMBERS: [&str; 3] = ["r1", "r2", "r3"];

/// etcd, Pebble behind an order-counting front, and one shared key-encryption key.
pub(crate) struct Fleet {
    pub(crate) etcd: EtcdCluster,
    pebble: Pebble,
    pub(crate) front: AriFront,
    pub(crate) dir: tempfile::TempDir,
}

impl Fleet {
    pub(crate) async fn start(validity: Option<u64>) -> Fleet {
        let etcd = EtcdCluster::start(3);
        let pebble = Pebble::start(PebbleOptions {
            validity_seconds: validity,
            ..PebbleOptions::default()
        })
        .await;
        let front = AriFront::start(&pebble, false, &[]).await;
        let dir = tempfile::tempdir().unwrap();
        certinel::store::sealed::Kek::generate_file(&dir.path().join("cluster.kek")).unwrap();
        Fleet {
            etcd,
            pebble,
            front,
            dir,
        }
    }

    /// Starts replica `member` carrying the certificate `api`, whose deploy command logs
    /// the version to `MEMBER.log` and then runs `then` (a shell command; its exit status
    /// is the deploy's); `extra` goes into the certificate's table.
    pub(crate) async fn replica(&self, member: &str, then: &str, extra: &str) -> Service {
        self.replica_carrying(member, &["api"], then, extra).await
    }

    /// [`replica`](Self::replica) carrying the listed certificates (`NAME.certinel.test`
    /// each), every one with the same deploy command and `extra`.
    pub(crate) async fn replica_carrying(
        &self,
        member: &str,
        certificates: &[&str],
        then: &str,
        extra: &str,
    ) -> Service {
        let dir = self.dir.path().join(member);
        std::fs::create_dir_all(&dir).unwrap();
        let log = self.log_path(member);
        let hook = format!("echo $CERTINEL_VERSION >> {}; {then}", log.display());
        let mut text = format!(
            "state_dir = {state:?}\n\
             [cluster]\netcd = {etcd:?}\nmember = {member:?}\nlease_ttl = \"2s\"\n\
             key_encryption_key_file = {kek:?}\n\
             [acme]\ndirectory = {directory:?}\nca_file = {ca_file:?}\n",
            state = dir.join("state"),
            etcd = self.etcd.endpoints(),
            kek = self.dir.path().join("cluster.kek"),
            directory = self.front.directory_url,
            ca_file = self.front.ca_file,
        );
        for name in certificates {
            text.push_str(&format!(
                "[[certificate]]\nname = \"{name}\"\ndns_names = [\"{name}.certinel.test\"]\n\
                 challenge = {{ type = \"http-01\", listen = \"{http}\" }}\n\
                 deploy = [{hook:?}]\ndeploy_timeout = \"90s\"\nverify_timeout = \"10s\"\n{extra}",
                http = self.pebble.http_addr(),
            ));
        }
        let path = dir.join("certinel.toml");
        std::fs::write(&path, text).unwrap();
        Service::start(Some(&path)).await
    }

    fn log_path(&self, member: &str) -> PathBuf {
        self.dir.path().join(format!("{member}.log"))
    }

    /// The versions replica `member` deployed, in order.
    fn deployed(&self, member: &str) -> Vec<String> {
        std::fs::read_to_string(self.log_path(member))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The certificate `api` replica `member` serves from its own state directory.
    pub(crate) fn local_cert(&self, member: &str) -> Option<String> {
        std::fs::read_to_string(self.local_dir(member, "api").join("current/cert.pem")).ok()
    }

    /// Where replica `member` keeps the files of certificate `name`.
    pub(crate) fn local_dir(&self, member: &str, name: &str) -> PathBuf {
        self.dir.path().join(member).join("state/certs").join(name)
    }

    /// The certificate every listed replica serves, when they all serve the same one.
    pub(crate) fn same_everywhere(&self, members: &[&str]) -> Result<String, String> {
        let certs: Vec<Option<String>> = members.iter().map(|m| self.local_cert(m)).collect();
        match &certs[0] {
            Some(first) if certs.iter().all(|cert| cert.as_ref() == Some(first)) => {
                Ok(first.clone())
            }
            _ => Err(format!(
                "replicas with a certificate: {:?}; deployed: {:?}",
                certs.iter().map(Option::is_some).collect::<Vec<_>>(),
                members.iter().map(|m| self.deployed(m)).collect::<Vec<_>>()
            )),
        }
    }

    /// `KEY=VALUE` of every key under the default prefix that starts with `suffix`
    /// (`certs/api/links`).
    pub(crate) async fn etcd_values(&self, suffix: &str) -> Vec<String> {
        let mut client = etcd_client::Client::connect(self.etcd.endpoints(), None)
            .await
            .expect("connect to etcd");
        let key = format!("/certinel/{suffix}");
        let options = etcd_client::GetOptions::new().with_prefix();
        let response = client.get(key, Some(options)).await.expect("etcd get");
        response
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                format!("{key}={}", String::from_utf8_lossy(kv.value()))
            })
            .collect()
    }

    /// Whether a renewal of `api` is in flight in etcd.
    pub(crate) async fn in_flight(&self) -> bool {
        !self.etcd_values("certs/api/inflight").await.is_empty()
    }
}

/// Waits until every listed replica serves the same certificate, which differs from
/// `before`; returns it.
pub(crate) async fn everywhere_except(
    fleet: &Fleet,
    members: &[&str],
    before: Option<&str>,
) -> String {
    eventually(PATIENCE, async || {
        let cert = fleet.same_everywhere(members)?;
        if Some(cert.as_str()) == before {
            return Err("still the old certificate".to_owned());
        }
        Ok(cert)
    })
    .await
}

#[tokio::test]
async fn a_certificate_is_ordered_once_and_reaches_every_replica_within_seconds() {
    let fleet = Fleet::start(None).await;
    let mut services = Vec::new();
    for member in MEMBERS {
        services.push(fleet.replica(member, "true", "").await);
    }
    // The first replica to have the certificate marks the promotion.
    let first = eventually(PATIENCE, async || {
        MEMBERS
            .iter()
            .find(|member| fleet.local_cert(member).is_some())
            .map(|_| Instant::now())
            .ok_or("no replica has the certificate yet")
    })
    .await;
    everywhere_except(&fleet, &MEMBERS, None).await;
    assert!(
        first.elapsed() <= SPREAD,
        "every replica had it {:?} after the first",
        first.elapsed()
    );
    assert_eq!(fleet.front.new_orders().len(), 1, "one order for the fleet");
    // A replica's files are live before its deploy command runs (promote, then deploy),
    // so the deploy log may still be empty when the files are everywhere.
    for member in MEMBERS {
        eventually(PATIENCE, async || {
            let deployed = fleet.deployed(member);
            (!deployed.is_empty())
                .then_some(())
                .ok_or(format!("{member} has not run its deploy command yet"))
        })
        .await;
    }
    for service in &services {
        let line = "certinel_certificate_local_version{name=\"api\"} 1";
        service
            .metrics_until(line, |body| body.contains(line))
            .await;
    }
    for member in MEMBERS {
        assert_eq!(
            fleet.deployed(member),
            ["v0001"],
            "{member} deployed it once"
        );
    }
    drop(services);
}

#[tokio::test]
async fn a_replica_whose_deploy_fails_rolls_every_replica_back() {
    let fleet = Fleet::start(Some(SHORT_VALIDITY)).await;
    let renew_before = format!("renew_before = {SHORT_RENEW_BEFORE:?}\n");
    let mut services = Vec::new();
    for member in ["r1", "r2"] {
        services.push(fleet.replica(member, "true", &renew_before).await);
    }
    let refuse_v0002 = "[ \"$CERTINEL_VERSION\" != v0002 ]";
    services.push(fleet.replica("r3", refuse_v0002, &renew_before).await);
    let v0001 = everywhere_except(&fleet, &MEMBERS, None).await;
    // v0002 comes when due; r3 cannot deploy it, so every replica goes back to v0001.
    eventually(PATIENCE, async || {
        let logs: Vec<Vec<String>> = MEMBERS.iter().map(|m| fleet.deployed(m)).collect();
        let rolled_back = logs.iter().all(|log| {
            log.iter().any(|version| version == "v0002")
                && log.last().map(String::as_str) == Some("v0001")
        });
        rolled_back
            .then_some(())
            .ok_or(format!("deployed: {logs:?}"))
    })
    .await;
    assert_eq!(fleet.same_everywhere(&MEMBERS).unwrap(), v0001);
    let audit = fleet.etcd_values("audit/").await;
    assert!(
        audit.iter().any(|event| event.contains("\"rollback\"")),
        "a rollback is audited: {audit:?}"
    );
    drop(services);
}

/// How long the renewing replica's first deploy of v0002 hangs.
const HANG: Duration = Duration::from_secs(20);

/// A deploy command that hangs when this replica deploys v0002 while holding the renewal
/// lock (asked of etcd with `etcdctl`), the first time any replica does; followers and a
/// replica that takes the renewal over return at once.
fn hang_once_on_v0002(fleet: &Fleet, member: &str) -> String {
    let marker = fleet.dir.path().join("hung");
    format!(
        "if [ \"$CERTINEL_VERSION\" = v0002 ] \
         && [ \"$(ETCDCTL_API=3 etcdctl --endpoints={endpoints} get --print-value-only /certinel/locks/api)\" = {member} ] \
         && mkdir {marker} 2>/dev/null; then sleep {seconds}; fi",
        endpoints = fleet.etcd.endpoints().join(","),
        marker = marker.display(),
        seconds = HANG.as_secs(),
    )
}

/// Starts three replicas whose renewing replica's first v0002 deploy hangs, and waits
/// until it does; returns the replicas and the index of that lock holder.
async fn holder_hanging_in_its_deploy(fleet: &Fleet) -> (Vec<Service>, usize) {
    let renew_before = format!("renew_before = {SHORT_RENEW_BEFORE:?}\n");
    let mut services = Vec::new();
    for member in MEMBERS {
        let hook = hang_once_on_v0002(fleet, member);
        services.push(fleet.replica(member, &hook, &renew_before).await);
    }
    let holder = eventually(PATIENCE, async || {
        if !fleet.dir.path().join("hung").exists() {
            return Err("no replica hangs in its deploy yet".to_owned());
        }
        let lock = fleet.etcd_values("locks/api").await;
        let holder = lock
            .first()
            .and_then(|entry| entry.split_once('='))
            .map(|(_, member)| member.to_owned());
        MEMBERS
            .iter()
            .position(|member| Some(*member) == holder.as_deref())
            .ok_or(format!("lock: {lock:?}"))
    })
    .await;
    assert!(fleet.in_flight().await, "the holder's renewal is in flight");
    (services, holder)
}

#[tokio::test]
async fn a_holder_killed_in_its_deploy_is_finished_by_another_replica_without_a_second_order() {
    let fleet = Fleet::start(Some(SHORT_VALIDITY)).await;
    let (services, holder) = holder_hanging_in_its_deploy(&fleet).await;
    let v0001_orders = 1;
    services[holder].signal("KILL");
    let others: Vec<&str> = MEMBERS
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != holder)
        .map(|(_, member)| *member)
        .collect();
    eventually(PATIENCE, async || {
        if fleet.in_flight().await {
            return Err("the renewal is still in flight".to_owned());
        }
        let links = fleet.etcd_values("certs/api/links").await;
        links
            .iter()
            .any(|links| links.contains("v0002"))
            .then_some(())
            .ok_or(format!("links: {links:?}"))
    })
    .await;
    let cert = fleet.same_everywhere(&others).unwrap();
    assert!(cert.contains("BEGIN CERTIFICATE"));
    assert_eq!(
        fleet.front.new_orders().len(),
        v0001_orders + 1,
        "v0002 was ordered once, by the holder that died"
    );
    drop(services);
}

#[tokio::test]
async fn a_holder_paused_past_its_lease_is_fenced_when_it_wakes_and_writes_nothing() {
    let fleet = Fleet::start(Some(SHORT_VALIDITY)).await;
    let (services, holder) = holder_hanging_in_its_deploy(&fleet).await;
    services[holder].signal("STOP");
    let paused_at = time::OffsetDateTime::now_utc();
    // Another replica takes the lock once the paused holder's lease expired and finishes.
    eventually(PATIENCE, async || {
        let links = fleet.etcd_values("certs/api/links").await;
        let finished = !fleet.in_flight().await && links.iter().any(|l| l.contains("v0002"));
        finished.then_some(()).ok_or(format!("links: {links:?}"))
    })
    .await;
    services[holder].signal("CONT");
    // When its deploy command returns, its next write is a transaction etcd refuses (the
    // lock is another replica's now), and it says so in the audit log.
    let member = MEMBERS[holder];
    let since_pause = eventually(PATIENCE, async || {
        let events = events_of(&fleet, member, paused_at).await;
        events
            .iter()
            .any(|event| event["step"] == "fenced")
            .then_some(events.clone())
            .ok_or(format!(
                "no fenced event from {member} after the pause: {events:#?}"
            ))
    })
    .await;
    let written: Vec<&serde_json::Value> = since_pause
        .iter()
        .filter(|event| event["outcome"] == "ok")
        .collect();
    assert!(
        written.is_empty(),
        "the fenced holder wrote nothing: {written:#?}"
    );
    let versions = fleet.etcd_values("certs/api/v/").await.len();
    assert_eq!(
        fleet.front.new_orders().len(),
        versions,
        "one order per stored version: nothing ordered twice"
    );
    drop(services);
}

/// The audit events replica `member` wrote after `since`.
async fn events_of(
    fleet: &Fleet,
    member: &str,
    since: time::OffsetDateTime,
) -> Vec<serde_json::Value> {
    let marker = format!("-{member}-");
    fleet
        .etcd_values("audit/")
        .await
        .iter()
        .filter_map(|entry| {
            let (key, value) = entry.split_once('=')?;
            key.contains(&marker).then_some(value)
        })
        .filter_map(|value| serde_json::from_str::<serde_json::Value>(value).ok())
        .filter(|event| {
            event["time"]
                .as_str()
                .and_then(|text| {
                    time::OffsetDateTime::parse(
                        text,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .ok()
                })
                .is_some_and(|at| at > since)
        })
        .collect()
}

#[tokio::test]
async fn without_an_etcd_quorum_renewals_pause_and_resume_when_it_returns() {
    let mut fleet = Fleet::start(Some(SHORT_VALIDITY)).await;
    let renew_before = format!("renew_before = {SHORT_RENEW_BEFORE:?}\n");
    let mut services = Vec::new();
    for member in MEMBERS {
        services.push(fleet.replica(member, "true", &renew_before).await);
    }
    let v0001 = everywhere_except(&fleet, &MEMBERS, None).await;
    let issued = Instant::now();
    fleet.etcd.kill(1);
    fleet.etcd.kill(2);
    for service in &services {
        service
            .metrics_until("certinel_cluster_connected 0", |body| {
                body.contains("certinel_cluster_connected 0")
            })
            .await;
    }
    // v0002 falls due ten seconds after v0001: let that moment pass without a quorum.
    // Nothing is ordered without the renewal lock, and every replica keeps serving v0001.
    tokio::time::sleep_until(issued + Duration::from_secs(SHORT_VALIDITY - 45)).await;
    assert_eq!(
        fleet.front.new_orders().len(),
        1,
        "no order without the lock"
    );
    assert_eq!(fleet.same_everywhere(&MEMBERS).unwrap(), v0001);
    fleet.etcd.restart(1);
    fleet.etcd.restart(2);
    everywhere_except(&fleet, &MEMBERS, Some(&v0001)).await;
    for service in &services {
        service
            .metrics_until("certinel_cluster_connected 1", |body| {
                body.contains("certinel_cluster_connected 1")
            })
            .await;
    }
    assert!(
        fleet.front.new_orders().len() >= 2,
        "the paused renewal completed"
    );
}
