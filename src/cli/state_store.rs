//! The renewer a command works with: with `[cluster]`, over the etcd store every replica
//! shares; without, the state directory, exactly as before.

use std::sync::Arc;

use anyhow::Context;

use crate::config::model::Config;
use crate::renew::Renewer;
use crate::store::Store;

/// The store of `config` when it has `[cluster]`, connected.
pub fn cluster_store(config: &Config) -> anyhow::Result<Option<Arc<dyn Store>>> {
    if config.cluster.is_none() {
        return Ok(None);
    }
    let store = crate::cluster::open_store(config).context("cannot open the cluster's store")?;
    Ok(Some(store))
}

/// [`Renewer::new`], keeping state in the cluster's store with `[cluster]`.
pub fn renewer(config: &Config) -> anyhow::Result<Renewer> {
    let renewer = Renewer::new(config);
    Ok(match cluster_store(config)? {
        Some(store) => renewer.with_store(store),
        None => renewer,
    })
}
