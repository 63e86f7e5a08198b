//! `cluster::connect` against a real etcd: plain, TLS with a client certificate, and
//! user/password; an unreachable or refusing cluster is one clear error, quickly.

use std::path::Path;
use std::time::{Duration, Instant};

use certinel::cluster::{ClusterError, connect, connect_within};
use certinel::config::model::{ClusterConfig, ClusterPassword};

use crate::common::etcd::EtcdCluster;
use crate::common::eventually::eventually;
use crate::common::ports::free_port;

/// A `[cluster]` for `endpoints` with no TLS files and no user, parsed from the table a
/// user writes. Connecting never reads the key-encryption key: its file only has to exist.
fn cluster_config(endpoints: Vec<String>, kek_dir: &Path) -> ClusterConfig {
    let kek = kek_dir.join("cluster.kek");
    std::fs::write(&kek, b"").expect("key file");
    let text = format!(
        "[cluster]\netcd = {endpoints:?}\nmember = \"test-replica\"\n\
         key_encryption_key_file = {kek:?}\n"
    );
    certinel::config::parse(&text, None)
        .expect("a valid configuration")
        .cluster
        .expect("a [cluster] table")
}

/// The error of a connection attempt that must fail.
fn refused(result: Result<etcd_client::Client, ClusterError>, why: &str) -> ClusterError {
    match result {
        Ok(_) => panic!("connected, but {why}"),
        Err(error) => error,
    }
}

/// Connects to `cluster` with a one-second deadline, which must fail (`why`) as
/// `Unreachable` within three seconds; returns the error's message.
async fn unreachable_within_the_timeout(cluster: &ClusterConfig, why: &str) -> String {
    let started = Instant::now();
    let error = refused(connect_within(cluster, Duration::from_secs(1)).await, why);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(error, ClusterError::Unreachable { .. }),
        "{error:?}"
    );
    error.to_string()
}

/// Connects to `cluster`, which must be refused (`why`) as `Refused`, and returns the error.
async fn refused_login(cluster: &ClusterConfig, why: &str) -> ClusterError {
    let error = refused(connect(cluster).await, why);
    assert!(matches!(error, ClusterError::Refused { .. }), "{error:?}");
    error
}

/// Connects to `cluster` and writes and reads one key, proving it talks to etcd.
async fn round_trip(cluster: &ClusterConfig) {
    let mut client = connect(cluster).await.unwrap_or_else(|e| panic!("{e}"));
    client.put("/certinel/probe", "v", None).await.expect("put");
    let response = client.get("/certinel/probe", None).await.expect("get");
    assert_eq!(response.kvs()[0].value(), b"v");
}

/// A `[cluster]` for the TLS cluster `etcd` that trusts its CA, with no client certificate.
fn trusting_the_ca_of(etcd: &EtcdCluster, kek_dir: &Path) -> ClusterConfig {
    let tls = etcd.tls().expect("a TLS cluster");
    let mut cluster = cluster_config(etcd.endpoints(), kek_dir);
    cluster.ca_file = Some(tls.ca_file.clone());
    cluster
}

/// Makes `cluster` log in as `username` with `password`.
fn log_in_as(cluster: &mut ClusterConfig, username: &str, password: &str) {
    cluster.username = Some(username.to_owned());
    cluster.password = Some(ClusterPassword(password.to_owned()));
}

/// Adds etcd's `root` user (password `r00t-pw`) to `etcd` and enables authentication.
fn enable_auth_with_root(etcd: &EtcdCluster) {
    etcd.etcdctl(&["user", "add", "root:r00t-pw"]);
    etcd.etcdctl(&["auth", "enable"]);
}

#[tokio::test]
async fn a_port_nobody_listens_on_is_one_error_naming_the_endpoint_within_the_timeout() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let cluster = cluster_config(vec![endpoint.clone()], dir.path());
    let message = unreachable_within_the_timeout(&cluster, "nobody listens there").await;
    assert!(message.contains(&endpoint), "{message}");
    assert!(message.contains("check that etcd runs there"), "{message}");
}

#[tokio::test]
async fn a_cluster_with_one_of_three_members_down_connects() {
    let mut etcd = EtcdCluster::start(3);
    etcd.kill(0);
    let dir = tempfile::tempdir().expect("temporary directory");
    let cluster = cluster_config(etcd.endpoints(), dir.path());
    for _ in 0..5 {
        round_trip(&cluster).await;
    }
}

#[tokio::test]
async fn a_member_that_dies_after_connecting_stops_failing_requests_within_seconds() {
    let mut etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut client = connect(&cluster_config(etcd.endpoints(), dir.path()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    etcd.kill(2);
    // Until the next probe notices, a request may still go to the dead member; after it,
    // none does.
    eventually(Duration::from_secs(5), async || {
        for attempt in 0..20 {
            client
                .get("/certinel/probe", None)
                .await
                .map_err(|error| format!("request {attempt}: {error}"))?;
        }
        Ok::<_, String>(())
    })
    .await;
}

#[tokio::test]
async fn a_cluster_without_quorum_is_unreachable_within_the_timeout() {
    let mut etcd = EtcdCluster::start(3);
    etcd.kill(1);
    etcd.kill(2);
    let dir = tempfile::tempdir().expect("temporary directory");
    let cluster = cluster_config(etcd.endpoints(), dir.path());
    let message = unreachable_within_the_timeout(&cluster, "two of three members are down").await;
    assert!(message.contains("a majority of its members"), "{message}");
}

#[tokio::test]
async fn a_plain_cluster_connects_and_serves_reads_and_writes() {
    let etcd = EtcdCluster::start(1);
    let dir = tempfile::tempdir().expect("temporary directory");
    round_trip(&cluster_config(etcd.endpoints(), dir.path())).await;
}

#[tokio::test]
async fn a_tls_cluster_connects_with_the_configured_ca_and_client_certificate() {
    let etcd = EtcdCluster::start_tls(1);
    let tls = etcd.tls().expect("a TLS cluster");
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut cluster = trusting_the_ca_of(&etcd, dir.path());
    assert!(cluster.etcd[0].starts_with("https://"));
    cluster.client_cert = Some(tls.client_cert.clone());
    cluster.client_key = Some(tls.client_key.clone());
    round_trip(&cluster).await;
}

#[tokio::test]
async fn a_tls_cluster_refuses_a_client_without_its_certificate() {
    let etcd = EtcdCluster::start_tls(1);
    let dir = tempfile::tempdir().expect("temporary directory");
    let cluster = trusting_the_ca_of(&etcd, dir.path());
    let error = refused(
        connect_within(&cluster, Duration::from_secs(2)).await,
        "etcd requires a client certificate",
    );
    let message = error.to_string();
    eprintln!("MSG {message}");
    assert!(message.contains(&cluster.etcd[0]), "{message}");
    assert!(message.contains("client_cert"), "{message}");
}

#[tokio::test]
async fn a_ca_file_that_is_not_pem_is_refused_before_any_connection() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let endpoint = format!("https://127.0.0.1:{}", free_port());
    let mut cluster = cluster_config(vec![endpoint], dir.path());
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, "not a certificate\n").expect("write ca_file");
    cluster.ca_file = Some(ca_file);
    let error = refused(
        connect_within(&cluster, Duration::from_secs(1)).await,
        "the CA file is not PEM",
    );
    assert!(matches!(error, ClusterError::NotPem { .. }), "{error:?}");
    assert!(
        error.to_string().contains("ca_file") && error.to_string().contains("PEM certificate"),
        "{error}"
    );
}

#[tokio::test]
async fn user_and_password_authenticate_and_a_wrong_password_is_refused_without_showing_it() {
    let etcd = EtcdCluster::start(1);
    enable_auth_with_root(&etcd);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut cluster = cluster_config(etcd.endpoints(), dir.path());
    log_in_as(&mut cluster, "root", "r00t-pw");
    round_trip(&cluster).await;

    log_in_as(&mut cluster, "root", "S3CR3T-wrong");
    let error = refused_login(&cluster, "the password is wrong").await;
    let message = format!("{error} {error:?}");
    eprintln!("MSG {message}");
    assert!(message.contains("username and password"), "{message}");
    assert!(!message.contains("S3CR3T"), "{message}");

    cluster.username = None;
    cluster.password = None;
    refused_login(&cluster, "no user was given").await;
}

#[tokio::test]
async fn an_idle_replica_keeps_working_after_its_etcd_auth_token_expires() {
    let etcd = EtcdCluster::start_with_args(1, &["--auth-token-ttl", "1"]);
    enable_auth_with_root(&etcd);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut cluster = cluster_config(etcd.endpoints(), dir.path());
    log_in_as(&mut cluster, "root", "r00t-pw");
    let mut client = connect(&cluster).await.unwrap_or_else(|e| panic!("{e}"));
    // etcd drops a simple token unused for --auth-token-ttl; only etcd's clock expires
    // it, so the test has to stay idle for longer than that.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    client
        .get("/certinel/probe", None)
        .await
        .expect("a request after the token expired");
}

#[tokio::test]
async fn a_user_granted_the_prefix_as_the_readme_says_connects_and_one_without_it_is_refused() {
    let etcd = EtcdCluster::start(1);
    etcd.etcdctl(&["user", "add", "root:r00t-pw"]);
    // The commands of README "Running a cluster", for the prefix certinel uses.
    etcd.etcdctl(&["role", "add", "certinel"]);
    etcd.etcdctl(&[
        "role",
        "grant-permission",
        "certinel",
        "--prefix=true",
        "readwrite",
        "/certinel/",
    ]);
    etcd.etcdctl(&["user", "add", "certinel:c3rt-pw"]);
    etcd.etcdctl(&["user", "grant-role", "certinel", "certinel"]);
    etcd.etcdctl(&["user", "add", "other:0ther-pw"]);
    etcd.etcdctl(&["auth", "enable"]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut cluster = cluster_config(etcd.endpoints(), dir.path());
    log_in_as(&mut cluster, "certinel", "c3rt-pw");
    round_trip(&cluster).await;

    log_in_as(&mut cluster, "other", "0ther-pw");
    let message = refused_login(&cluster, "the user may not read the prefix")
        .await
        .to_string();
    assert!(message.contains("permission denied"), "{message}");
    assert!(message.contains("under /certinel/"), "{message}");
}
