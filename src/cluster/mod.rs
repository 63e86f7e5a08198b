//! Replicas of certinel sharing one etcd cluster (`[cluster]`): the connection to etcd and
//! the live member list that sharded scanning and fleet-wide rollout read. The state itself
//! goes through `store::etcd`, the second implementation of [`crate::store::Store`].
//!
//! **Invariant:** without a `[cluster]` section nothing here runs; the filesystem store is
//! the embedded default.

mod connect;
mod endpoints;
mod error;
mod keyring;
pub mod membership;
mod membership_cards;
mod membership_roster;
mod membership_thread;
pub mod shard;
mod store;

pub use connect::{CONNECT_TIMEOUT, connect, connect_within};
pub use error::ClusterError;
pub use keyring::keyring;
pub use membership_thread::join_on_own_thread;
pub use store::{OpenStoreError, open_store};
