//! Replicas that carry different certificates on one etcd (two web tiers): a certificate's
//! rollout waits only for the live replicas that carry it, so a replica of the other tier
//! neither holds a renewal back nor receives its files.

use std::time::Duration;

use tokio::time::Instant;

use crate::cluster_replicas::{Fleet, PATIENCE, everywhere_except};
use crate::common::eventually::eventually;

/// The `verify_timeout` of `Fleet::replica`'s certificates; a renewal that waited for a
/// replica without the certificate would take at least this long.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_replica_without_the_certificate_is_not_waited_for_and_gets_no_files() {
    let fleet = Fleet::start(None).await;
    // Tier two (r3, certificate `web`) starts first and has its certificate before tier
    // one (r1 and r2, certificate `api`) starts: r3 is a live member throughout api's
    // renewal. (Issued one after the other: two replicas registering the shared ACME
    // account at the same moment would make one of them back off.)
    let r3 = fleet.replica_carrying("r3", &["web"], "true", "").await;
    eventually(PATIENCE, async || {
        fleet
            .local_dir("r3", "web")
            .join("current/cert.pem")
            .exists()
            .then_some(())
            .ok_or("r3 has no web certificate yet")
    })
    .await;
    let r1 = fleet.replica("r1", "true", "").await;
    let r2 = fleet.replica("r2", "true", "").await;
    let first = eventually(PATIENCE, async || {
        ["r1", "r2"]
            .iter()
            .find(|member| fleet.local_cert(member).is_some())
            .map(|_| Instant::now())
            .ok_or("no replica has the certificate yet")
    })
    .await;
    everywhere_except(&fleet, &["r1", "r2"], None).await;
    eventually(PATIENCE, async || {
        if fleet.in_flight().await {
            return Err("the renewal is still in flight");
        }
        Ok(())
    })
    .await;
    let took = first.elapsed();
    assert!(
        took < VERIFY_TIMEOUT / 2,
        "the renewal finished {took:?} after the first replica had the files"
    );
    let audit = fleet.etcd_values("audit/").await;
    let api: Vec<&String> = audit
        .iter()
        .filter(|event| event.contains("\"certificate\":\"api\""))
        .collect();
    assert!(
        api.iter().all(|event| !event.contains("r3")),
        "nothing in api's audit events is about r3: {api:#?}"
    );
    assert!(
        api.iter().any(|event| event.contains("\"step\":\"served\"")
            && event.contains("every replica serves v0001 (r1, r2)")),
        "the rollout names the replicas that carry api: {api:#?}"
    );
    let reports = fleet.etcd_values("certs/api/rollout/").await;
    assert!(
        reports.iter().all(|report| !report.contains("r3")),
        "r3 reported nothing: {reports:?}"
    );
    assert!(
        !fleet.local_dir("r3", "api").exists(),
        "r3 has no files for api"
    );
    // Tier two's certificate is r3's alone: nothing of it on tier one.
    for member in ["r1", "r2"] {
        assert!(
            !fleet.local_dir(member, "web").exists(),
            "{member} has no files for web"
        );
    }
    assert_eq!(
        fleet.front.new_orders().len(),
        2,
        "one order per certificate for the fleet"
    );
    drop((r1, r2, r3));
}
