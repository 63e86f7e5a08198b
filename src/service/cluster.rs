//! The service's side of `[cluster]`: on the client `cluster::connect` opened, joins the
//! membership, mirrors what it sees into the service state (`certinel_cluster_*`) and hands
//! the member list to the reload loop, which re-shards the endpoint jobs when it changes.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::membership::{Membership, MembershipSettings, Roster};
use crate::cluster::{ClusterError, connect, join_on_own_thread};
use crate::config::model::{ClusterConfig, Config};
use crate::service::state::State;

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

/// The names of the certificates `config` deploys on this replica, which it publishes to
/// the others so that only the replicas carrying a certificate take part in its rollout.
pub(crate) fn carried(config: &Config) -> BTreeSet<String> {
    config
        .certificates
        .iter()
        .map(|certificate| certificate.name.clone())
        .collect()
}

/// Joins the cluster `cluster` names: the membership task runs on a thread of its own
/// with its own etcd connection ([`join_on_own_thread`]), so busy service workers never
/// cost this replica its lease; its mirror into `state` runs on `tracker`, which also waits
/// for the task to leave the cluster after `shutdown`. Waits up to one lease TTL for the
/// first answer from etcd, so the first shares are computed over the real member list;
/// when etcd does not answer by then, the replica starts alone (owning every endpoint)
/// and re-shards as soon as it sees the others. `carried` names the certificates this
/// replica deploys (the reload loop updates it); the roster says who carries what.
pub(crate) async fn join(
    cluster: &ClusterConfig,
    carried: watch::Receiver<BTreeSet<String>>,
    state: Arc<State>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<(Members, watch::Receiver<Arc<Roster>>), ClusterError> {
    let settings = settings(cluster);
    let me = settings.member.clone();
    let lease_ttl = settings.lease_ttl;
    let config = cluster.clone();
    let (view, left) = join_on_own_thread(
        move || async move { connect(&config).await },
        settings,
        carried,
        shutdown.clone(),
    )
    .await?;
    tracker.spawn(left);
    tracker.spawn(mirror(view.clone(), state, shutdown.clone()));
    let mut connected = view.connected.clone();
    let first = tokio::time::timeout(lease_ttl, connected.wait_for(|connected| *connected)).await;
    if first.is_err() {
        tracing::warn!(member = %me, "etcd did not answer within the lease TTL; scanning every endpoint until it does");
    }
    let roster = view.roster.clone();
    Ok(((me, view.members), roster))
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
