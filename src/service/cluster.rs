//! The service's side of `[cluster]`: joins the membership, mirrors what it sees into the
//! service state (`certinel_cluster_*`) and hands the member list to the reload loop,
//! which re-shards the endpoint jobs whenever it changes.

use std::path::PathBuf;
use std::sync::Arc;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::membership::{self, Membership, MembershipSettings};
use crate::config::model::ClusterConfig;
use crate::service::state::State;

/// Why the service could not set up its etcd client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterConnectError {
    /// A TLS file named by `[cluster]` could not be read.
    #[error("cannot read {path} ([cluster])")]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The etcd client refused the settings.
    #[error("cannot set up the etcd client for {endpoints:?}")]
    Client {
        /// The `[cluster] etcd` URLs.
        endpoints: Vec<String>,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
}

/// The etcd client of `[cluster]`: its URLs, TLS files and user. The channel connects
/// lazily, so an unreachable etcd at start is not an error here: the membership reports it
/// (`certinel_cluster_connected 0`, a log line) and keeps trying.
///
/// A stand-in until `cluster::connect` (owned by the configuration work) lands; then this
/// becomes a call to it.
pub(crate) async fn connect(
    cluster: &ClusterConfig,
) -> Result<etcd_client::Client, ClusterConnectError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| ClusterConnectError::File {
            path: path.clone(),
            source,
        })
    };
    let mut options = ConnectOptions::new();
    if let (Some(user), Some(password)) = (&cluster.username, &cluster.password) {
        options = options.with_user(user.clone(), password.0.clone());
    }
    let mut tls = None;
    if let Some(ca_file) = &cluster.ca_file {
        let roots = Certificate::from_pem(read(ca_file)?);
        tls = Some(TlsOptions::new().ca_certificate(roots));
    } else if cluster.etcd.iter().any(|url| url.starts_with("https://")) {
        tls = Some(TlsOptions::new().ca_certificates(platform_roots()));
    }
    if let (Some(cert), Some(key)) = (&cluster.client_cert, &cluster.client_key) {
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        tls = Some(tls.unwrap_or_default().identity(identity));
    }
    if let Some(tls) = tls {
        options = options.with_tls(tls);
    }
    etcd_client::Client::connect(&cluster.etcd, Some(options))
        .await
        .map_err(|source| ClusterConnectError::Client {
            endpoints: cluster.etcd.clone(),
            source,
        })
}

/// The platform's trust roots, for `https://` etcd URLs without a `ca_file`. Roots that do
/// not load are skipped (the handshake then fails with a clear error, logged by the
/// membership).
fn platform_roots() -> Vec<Certificate> {
    use base64::Engine;
    let native = rustls_native_certs::load_native_certs();
    native
        .certs
        .iter()
        .map(|der| {
            let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
            let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
            for line in body.as_bytes().chunks(64) {
                pem.push_str(&String::from_utf8_lossy(line));
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
            Certificate::from_pem(pem)
        })
        .collect()
}

/// The membership settings of `[cluster]`.
pub(crate) fn settings(cluster: &ClusterConfig) -> MembershipSettings {
    MembershipSettings {
        prefix: cluster.prefix.clone(),
        member: cluster.member.clone(),
        lease_ttl: cluster.lease_ttl,
    }
}

/// This replica's name and the live members, for [`crate::service::reload::Reloader`].
pub(crate) type Members = (String, watch::Receiver<Vec<String>>);

/// Joins the cluster on `client`: the membership task and its mirror into `state` run on
/// `tracker` until `shutdown` (when the replica leaves). Waits up to one lease TTL for the
/// first answer from etcd, so the first shares are computed over the real member list;
/// when etcd does not answer by then, the replica starts alone (owning every endpoint)
/// and re-shards as soon as it sees the others.
pub(crate) async fn join(
    client: etcd_client::Client,
    settings: MembershipSettings,
    state: Arc<State>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Members {
    let me = settings.member.clone();
    let lease_ttl = settings.lease_ttl;
    let (view, task) = membership::join(client, settings, shutdown.clone());
    tracker.spawn(task);
    tracker.spawn(mirror(view.clone(), state, shutdown.clone()));
    let mut connected = view.connected.clone();
    let first = tokio::time::timeout(lease_ttl, connected.wait_for(|connected| *connected)).await;
    if first.is_err() {
        tracing::warn!(member = %me, "etcd did not answer within the lease TTL; scanning every endpoint until it does");
    }
    (me, view.members)
}

/// Copies the membership views into the service state whenever either changes.
async fn mirror(mut view: Membership, state: Arc<State>, shutdown: CancellationToken) {
    loop {
        let connected = *view.connected.borrow_and_update();
        let members = view.members.borrow_and_update().clone();
        state.set_cluster_membership(connected, members);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            changed = view.connected.changed() => if changed.is_err() { return },
            changed = view.members.changed() => if changed.is_err() { return },
        }
    }
}
