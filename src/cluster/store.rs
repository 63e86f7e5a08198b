//! The store a replica keeps its state in: with `[cluster]`, the etcd store shared by every
//! replica (the files servers read materialised under `state_dir`, as without a cluster);
//! otherwise the state directory.

use std::sync::Arc;

use crate::cluster::{ClusterError, connect, keyring};
use crate::config::model::Config;
use crate::store::{EtcdSettings, EtcdStore, FsStore, Store, StoreError};

/// Why the store of `[cluster]` could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenStoreError {
    /// etcd unreachable or refusing us, or a key-encryption key that does not load.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The store's own runtime could not start, or the connection did not end in time.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The store of `config`: [`EtcdStore`] with `[cluster]` (connected, its keyring loaded;
/// one per process, shared by every renewal), [`FsStore`] over `state_dir` without.
/// Blocks while it connects: call it before the service starts.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, OpenStoreError> {
    let Some(cluster) = &config.cluster else {
        return Ok(Arc::new(FsStore::new(&config.state_dir)));
    };
    let settings = EtcdSettings {
        prefix: cluster.prefix.clone(),
        member: cluster.member.clone(),
        lease_ttl: cluster.lease_ttl,
        local_dir: config.state_dir.clone(),
        keyring: Arc::new(keyring(cluster)?),
    };
    let cluster = cluster.clone();
    let store = EtcdStore::connect_with(settings, move || async move {
        connect_to_a_live_member(&cluster).await
    })?;
    Ok(Arc::new(store))
}

/// How often a refused first connection is tried again.
const CONNECT_ATTEMPTS: usize = 8;

/// [`connect`], tried again while a member refuses the connection or a leader is being
/// elected: the client sends its first request to any configured endpoint, a dead
/// member's too, and the next attempt likely reaches a live one. A cluster that does not
/// answer at all fails after one deadline.
async fn connect_to_a_live_member(
    cluster: &crate::config::model::ClusterConfig,
) -> Result<etcd_client::Client, OpenStoreError> {
    let mut attempt = 1;
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match connect(cluster).await {
            // A deadline that passed is not tried again: it already waited long enough.
            Err(ClusterError::Unreachable { cause, .. })
                if attempt < CONNECT_ATTEMPTS && !cause.starts_with("no answer") =>
            {
                tracing::debug!(attempt, %cause, "etcd did not answer this time; trying again");
                tokio::time::sleep(pause).await;
                attempt += 1;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
            }
            result => return Ok(result?),
        }
    }
}
