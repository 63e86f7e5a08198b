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
    let retention = cluster.audit_retention;
    let cluster = cluster.clone();
    // `connect` itself tries again while a member is down or a leader is being elected.
    let store = EtcdStore::connect_with(settings, move || async move {
        connect(&cluster).await.map_err(OpenStoreError::from)
    })?;
    Ok(Arc::new(store.with_audit_retention(retention)))
}
