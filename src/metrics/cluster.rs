//! Renders what a replica knows about its cluster (`[cluster]`): whether etcd answers, the
//! live members it sees and how many scheduled endpoints it owns. Pure.

use crate::metrics::names;
use crate::metrics::render::{Sink, flag};

/// A replica's view of the cluster, as `/metrics` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// Whether the last membership round reached etcd.
    pub connected: bool,
    /// The live members this replica sees, itself included, sorted.
    pub members: Vec<String>,
    /// How many scheduled `[[endpoint]]`s this replica probes (its share).
    pub endpoints_owned: usize,
}

/// Adds the cluster families: `connected`, one `member_up` per live member, the share.
pub(super) fn push_cluster(families: &mut impl Sink, cluster: &ClusterSnapshot) {
    families.push(names::CLUSTER_CONNECTED, &[], flag(cluster.connected));
    for member in &cluster.members {
        families.push(names::CLUSTER_MEMBER_UP, &[("member", member)], 1.0);
    }
    families.push(
        names::CLUSTER_ENDPOINTS_OWNED,
        &[],
        cluster.endpoints_owned as f64,
    );
}
