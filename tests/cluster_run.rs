//! `certinel run` with `[cluster]` against a real three-member etcd and Pebble: the
//! certificate is issued into etcd and materialised under `state_dir/certs/NAME/current/`
//! as without a cluster; with one etcd member killed, a forced renewal still works.

use std::path::Path;

use certinel::store::sealed::Kek;

use crate::common::cli::{output_text, run_certinel};
use crate::common::config_text::{http01_certificate, pebble_acme_table, write_config_file};
use crate::common::etcd::{EtcdCluster, pebble_and_etcd};
use crate::common::pebble::Pebble;
use crate::common::service::Service;
use crate::store_etcd::everything_in_etcd;

/// A configuration in `dir` for certificate `api` whose replica `member` keeps its state in
/// `cluster` (its key-encryption key written next to it).
fn cluster_config(dir: &Path, pebble: &Pebble, cluster: &EtcdCluster, member: &str) -> String {
    let kek = dir.join("cluster.kek");
    Kek::generate_file(&kek).unwrap();
    let cluster_table = format!(
        "\n[cluster]\netcd = {endpoints:?}\nmember = {member:?}\nlease_ttl = \"5s\"\n\
         key_encryption_key_file = {kek:?}\n",
        endpoints = cluster.endpoints(),
        kek = kek.display().to_string(),
    );
    pebble_acme_table(&dir.join("state"), pebble)
        + &http01_certificate("api", pebble.http_addr(), "")
        + &cluster_table
}

/// The serial of the certificate served from `state_dir/certs/api/current/`.
fn current_serial(dir: &Path) -> Result<String, String> {
    let meta = dir.join("state/certs/api/current/meta.json");
    let text = std::fs::read_to_string(&meta).map_err(|error| format!("{meta:?}: {error}"))?;
    let meta: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    Ok(meta["serial"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certinel_run_with_a_cluster_issues_into_etcd_and_renews_with_one_member_down() {
    let (pebble, cluster, dir) = pebble_and_etcd(3).await;
    let config = write_config_file(
        dir.path(),
        &cluster_config(dir.path(), &pebble, &cluster, "replica-a"),
    );
    let mut service = Service::start(Some(&config)).await;
    // Logged once the renewal ended and its lock was released.
    service.wait_for_log("certificate renewed").await;
    let first = current_serial(dir.path()).unwrap();
    let current = dir.path().join("state/certs/api/current");
    assert_eq!(std::fs::read_link(&current).unwrap(), Path::new("v0001"));
    for file in ["cert.pem", "chain.pem", "fullchain.pem", "key.pem"] {
        assert!(current.join(file).is_file(), "{file}");
    }
    let (cluster, values) = tokio::task::spawn_blocking(move || {
        let values = everything_in_etcd(&cluster);
        (cluster, values)
    })
    .await
    .unwrap();
    let mut cluster = cluster;
    let keys: Vec<&str> = values.iter().map(|(key, _)| key.as_str()).collect();
    assert!(keys.contains(&"/certinel/certs/api/v/v0001"), "{keys:?}");
    assert!(
        !dir.path().join("state/acme").exists(),
        "account credentials live in etcd, not in the state directory"
    );

    // One of three etcd members dies: a forced renewal goes on with the other two.
    cluster.kill(0);
    let renewed = run_certinel(&["renew", "--force", "api"], &config).await;
    assert!(renewed.status.success(), "{}", output_text(&renewed));
    let second = current_serial(dir.path()).unwrap();
    assert_ne!(first, second);
    assert_eq!(std::fs::read_link(&current).unwrap(), Path::new("v0002"));
    drop(service);
}
