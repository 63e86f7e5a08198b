//! Replicas that carry different certificates on one etcd: a certificate's rollout waits
//! only for the live replicas that carry it, so a replica of another web tier neither
//! holds a renewal back nor receives its files.

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
    // r3 joins first, so it is a live member before `api`'s renewal starts.
    let r3 = fleet.replica_carrying("r3", &[], "true", "").await;
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
    assert_eq!(fleet.front.new_orders().len(), 1, "one order for the fleet");
    let audit = fleet.etcd_values("audit/").await;
    assert!(
        audit.iter().all(|event| !event.contains("r3")),
        "nothing in the audit log is about r3: {audit:#?}"
    );
    assert!(
        audit
            .iter()
            .any(|event| event.contains("\"step\":\"served\"")
                && event.contains("every replica serves v0001 (r1, r2)")),
        "the rollout names the replicas that carry api: {audit:#?}"
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
    drop((r1, r2, r3));
}
