//! This replica's place in the cluster: it joins by putting `P/members/<member>` under a
//! lease, keeps the lease alive, and keeps the list of live members (every key under
//! `P/members/`) and whether etcd answers, each in a `tokio::sync::watch`.
//!
//! One task does it all, in rounds one heartbeat ([`heartbeat`]: a third of the lease TTL)
//! apart: a round renews the lease (or grants a new one and joins again when it expired)
//! and reads the member list. A watch on `P/members/` starts an extra read as soon as a
//! member joins or leaves, so a departure is seen at once, and an expired lease as soon as
//! etcd deletes its key. Rounds do not trust the watch alone: a watch on a member that lost
//! its quorum stays open and silent, while the lease renewal and the linearizable read of
//! a round fail, which is what turns `connected` to false.
//!
//! Each member also publishes the certificates it carries (`membership_cards`), read back
//! only when a member's key changed (its `mod_revision`), and the [`Roster`] of who
//! carries what is published beside the member list: a certificate's rollout waits only
//! for the live members that carry it.
//!
//! **Invariant:** the list always names this replica: a replica sees itself alive, even
//! before its key is written or while etcd is unreachable. While disconnected the list
//! keeps the last members read, so sharded scanning goes on with the last known shares.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions, LeaseKeepAliveStream, LeaseKeeper, WatchOptions};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::membership_cards::{publish, read_carried};
pub use crate::cluster::membership_roster::{Carried, Roster};

/// Who this replica is in the cluster and how long it stays listed after it stops
/// renewing its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipSettings {
    /// The key prefix of this installation (`[cluster] prefix`, ends in `/`).
    pub prefix: String,
    /// This replica's name (`[cluster] member`).
    pub member: String,
    /// The TTL of the membership lease (`[cluster] lease_ttl`).
    pub lease_ttl: Duration,
}

impl MembershipSettings {
    /// The key prefix every member's key lives under: `P/members/`.
    pub fn members_prefix(&self) -> String {
        format!("{}members/", self.prefix)
    }

    /// This replica's key: `P/members/<member>`.
    pub fn member_key(&self) -> String {
        format!("{}{}", self.members_prefix(), self.member)
    }
}

/// The pause between two tries of a failed round within one heartbeat.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What the membership task shows the rest of the replica.
#[derive(Debug, Clone)]
pub struct Membership {
    /// The live members, sorted, this replica always among them.
    pub members: watch::Receiver<Vec<String>>,
    /// Whether the last round reached etcd (renewed the lease and read the members).
    pub connected: watch::Receiver<bool>,
    /// The live members (as in `members`) and the certificates each carries.
    pub roster: watch::Receiver<Arc<Roster>>,
}

/// How long between two rounds, and how long one round may take: a third of the lease
/// TTL, so two renewals can fail before the lease expires (at least 100 ms).
pub fn heartbeat(lease_ttl: Duration) -> Duration {
    (lease_ttl / 3).max(Duration::from_millis(100))
}

/// Starts membership: returns the views and the task to spawn. The task joins, keeps the
/// lease alive and the views current until `shutdown`, then leaves (revokes its lease, so
/// the others drop it at once) and returns. `carried` names the certificates this replica
/// deploys; the task publishes it again whenever it changes (a reload).
pub fn join(
    client: Client,
    settings: MembershipSettings,
    carried: watch::Receiver<BTreeSet<String>>,
    shutdown: CancellationToken,
) -> (Membership, impl Future<Output = ()> + Send + 'static) {
    let (members_sender, members) = watch::channel(vec![settings.member.clone()]);
    let (connected_sender, connected) = watch::channel(false);
    let alone = Roster {
        members: vec![settings.member.clone()],
        carried: HashMap::new(),
    };
    let (roster_sender, roster) = watch::channel(Arc::new(alone));
    let member = Member {
        client,
        settings,
        lease: None,
        keep_alive: None,
        changes: None,
        carried,
        card_stale: true,
        cards: HashMap::new(),
        members: members_sender,
        connected: connected_sender,
        roster: roster_sender,
    };
    let view = Membership {
        members,
        connected,
        roster,
    };
    (view, member.run(shutdown))
}

/// The membership task's state.
struct Member {
    client: Client,
    settings: MembershipSettings,
    /// The lease this replica's key is attached to, once granted.
    lease: Option<i64>,
    /// The open keep-alive stream of `lease`; reopened after an error.
    keep_alive: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    /// The watch on `P/members/`; reopened after an error.
    changes: Option<etcd_client::WatchStream>,
    /// The certificates this replica carries.
    carried: watch::Receiver<BTreeSet<String>>,
    /// Whether this replica's list in etcd may differ from `carried` (publish it).
    card_stale: bool,
    /// What each other member carries, with the `mod_revision` of the key it was read at.
    cards: HashMap<String, (i64, Carried)>,
    members: watch::Sender<Vec<String>>,
    connected: watch::Sender<bool>,
    roster: watch::Sender<Arc<Roster>>,
}

impl Member {
    async fn run(mut self, shutdown: CancellationToken) {
        let beat = heartbeat(self.settings.lease_ttl);
        loop {
            let mut last_error = None;
            match tokio::time::timeout(beat, self.round_until_done(&mut last_error)).await {
                Ok(()) => self.set_connected(true),
                Err(_) => {
                    self.lost(&last_error.unwrap_or_else(|| format!("no answer within {beat:?}")))
                }
            }
            let next = Instant::now() + beat;
            loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => {
                        self.leave(beat).await;
                        return;
                    }
                    () = tokio::time::sleep_until(next) => break,
                    () = carried_changed(&mut self.carried) => {
                        self.card_stale = true;
                        if let Ok(Err(error)) = tokio::time::timeout(beat, self.publish_if_stale()).await {
                            tracing::warn!(member = %self.settings.member, %error, "publishing the certificates this replica carries failed; trying again next round");
                        }
                    }
                    changed = next_change(&mut self.changes) => {
                        if !changed {
                            self.changes = None;
                            continue;
                        }
                        // Someone joined or left: read the list now, not at the next round.
                        match tokio::time::timeout(beat, self.read_members()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) => self.lost(&error.to_string()),
                            Err(_) => self.lost(&format!("no answer within {beat:?}")),
                        }
                    }
                }
            }
        }
    }

    /// Runs [`round`](Self::round) until it succeeds, a moment apart: a request that one
    /// etcd member refused (it is down) goes to another on the next try, so only a whole
    /// heartbeat without an answer counts as disconnected. The caller bounds the time.
    async fn round_until_done(&mut self, last_error: &mut Option<String>) {
        loop {
            match self.round().await {
                Ok(()) => return,
                Err(error) => {
                    *last_error = Some(error.to_string());
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// One round: renew the lease (join again when it is gone), make sure the watch runs,
    /// read the members.
    async fn round(&mut self) -> Result<(), etcd_client::Error> {
        if !self.renew().await? {
            self.enter().await?;
        }
        self.publish_if_stale().await?;
        if self.changes.is_none() {
            let options = WatchOptions::new().with_prefix();
            let stream = self
                .client
                .watch(self.settings.members_prefix(), Some(options))
                .await?;
            self.changes = Some(stream);
        }
        self.read_members().await
    }

    /// Renews the lease; `false` when there is none or it expired.
    async fn renew(&mut self) -> Result<bool, etcd_client::Error> {
        let Some(lease) = self.lease else {
            return Ok(false);
        };
        if self.keep_alive.is_none() {
            self.keep_alive = Some(self.client.lease_keep_alive(lease).await?);
        }
        let Some((keeper, responses)) = self.keep_alive.as_mut() else {
            return Ok(false);
        };
        let answer = async {
            keeper.keep_alive().await?;
            responses.message().await
        }
        .await;
        match answer {
            Ok(Some(response)) if response.ttl() > 0 => Ok(true),
            Ok(_) => {
                // A TTL of 0 (or a closed stream) means etcd forgot the lease: it expired
                // while etcd could not be reached, and took this replica's key with it.
                tracing::info!(member = %self.settings.member, lease, "membership lease expired; joining again");
                self.lease = None;
                self.keep_alive = None;
                Ok(false)
            }
            Err(error) => {
                self.keep_alive = None;
                Err(error)
            }
        }
    }

    /// Grants a new lease and puts this replica's key under it.
    async fn enter(&mut self) -> Result<(), etcd_client::Error> {
        let ttl = i64::try_from(self.settings.lease_ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let lease = self.client.lease_grant(ttl, None).await?.id();
        self.card_stale = true;
        self.put_member_key(lease).await?;
        self.keep_alive = Some(self.client.lease_keep_alive(lease).await?);
        self.lease = Some(lease);
        tracing::info!(member = %self.settings.member, lease, ttl, "joined the cluster");
        Ok(())
    }

    /// Puts this replica's key, its card with the certificates it carries, on `lease`.
    async fn put_member_key(&mut self, lease: i64) -> Result<(), etcd_client::Error> {
        let names = self.carried.borrow_and_update().clone();
        publish(&mut self.client, &self.settings, lease, &names).await?;
        self.card_stale = false;
        Ok(())
    }

    /// Publishes the certificates this replica carries when they changed since they were
    /// last published (and a lease is held; joining publishes them anyway).
    async fn publish_if_stale(&mut self) -> Result<(), etcd_client::Error> {
        match self.lease {
            Some(lease) if self.card_stale => self.put_member_key(lease).await,
            _ => Ok(()),
        }
    }

    /// Reads every key under `P/members/` and publishes the names; puts this replica's key
    /// back when it is missing (deleted by hand, or its lease lapsed between two rounds).
    async fn read_members(&mut self) -> Result<(), etcd_client::Error> {
        let prefix = self.settings.members_prefix();
        let options = GetOptions::new().with_prefix().with_keys_only();
        let response = self.client.get(prefix.as_str(), Some(options)).await?;
        let revision = response.header().map_or(0, |header| header.revision());
        let listed: Vec<(String, i64)> = response
            .kvs()
            .iter()
            .filter_map(|kv| {
                let name = kv.key_str().ok()?.strip_prefix(&prefix)?;
                Some((name.to_owned(), kv.mod_revision()))
            })
            .filter(|(name, _)| !name.is_empty())
            .collect();
        self.read_cards(&listed, revision).await?;
        let mut names: Vec<String> = listed.into_iter().map(|(name, _)| name).collect();
        if !names.contains(&self.settings.member) {
            if let Some(lease) = self.lease {
                self.put_member_key(lease).await?;
            }
            names.push(self.settings.member.clone());
        }
        names.sort();
        names.dedup();
        self.members.send_if_modified(|members| {
            if *members == names {
                return false;
            }
            tracing::info!(member = %self.settings.member, members = ?names, "cluster members changed");
            *members = names.clone();
            true
        });
        self.publish_roster(names);
        self.set_connected(true);
        Ok(())
    }

    /// Reads the card (and pages) of every other listed member whose key changed since it
    /// was last read, at `revision`; forgets the members no longer listed.
    async fn read_cards(
        &mut self,
        listed: &[(String, i64)],
        revision: i64,
    ) -> Result<(), etcd_client::Error> {
        self.cards
            .retain(|member, _| listed.iter().any(|(name, _)| name == member));
        for (member, mod_revision) in listed {
            if *member == self.settings.member
                || self
                    .cards
                    .get(member)
                    .is_some_and(|(read, _)| read == mod_revision)
            {
                continue;
            }
            match read_carried(&mut self.client, &self.settings, member, revision).await? {
                Some(carried) => {
                    self.cards.insert(member.clone(), (*mod_revision, carried));
                }
                None => {
                    self.cards.remove(member);
                }
            }
        }
        Ok(())
    }

    /// Publishes who carries what among the live `members`; this replica carries what it
    /// was given, a member without a readable card everything.
    fn publish_roster(&self, members: Vec<String>) {
        let mut carried: HashMap<String, Carried> = self
            .cards
            .iter()
            .map(|(member, (_, carried))| (member.clone(), carried.clone()))
            .collect();
        carried.insert(
            self.settings.member.clone(),
            Carried::Only(self.carried.borrow().clone()),
        );
        let roster = Roster { members, carried };
        self.roster.send_if_modified(|now| {
            if **now == roster {
                return false;
            }
            *now = Arc::new(roster);
            true
        });
    }

    fn lost(&mut self, error: &str) {
        if *self.connected.borrow() {
            tracing::warn!(member = %self.settings.member, %error, "etcd unreachable; keeping the last member list");
        }
        self.set_connected(false);
    }

    fn set_connected(&self, connected: bool) {
        self.connected.send_if_modified(|now| {
            let changed = *now != connected;
            *now = connected;
            changed
        });
    }

    /// Revokes the lease so the others drop this replica now rather than after its TTL.
    async fn leave(&mut self, within: Duration) {
        self.keep_alive = None;
        self.changes = None;
        let Some(lease) = self.lease.take() else {
            return;
        };
        match tokio::time::timeout(within, self.client.lease_revoke(lease)).await {
            Ok(Ok(_)) => tracing::info!(member = %self.settings.member, "left the cluster"),
            Ok(Err(error)) => {
                tracing::warn!(member = %self.settings.member, %error, "leaving the cluster failed; the lease expires on its own")
            }
            Err(_) => {
                tracing::warn!(member = %self.settings.member, "etcd did not answer the leave; the lease expires on its own")
            }
        }
    }
}

/// Waits until the certificates this replica carries change; forever once their sender is
/// gone.
async fn carried_changed(carried: &mut watch::Receiver<BTreeSet<String>>) {
    if carried.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Waits for the next event on the watch: `true` for a change, `false` when the stream
/// failed or ended (it is reopened by the next round). Without a watch, waits forever.
async fn next_change(changes: &mut Option<etcd_client::WatchStream>) -> bool {
    let Some(stream) = changes.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match stream.message().await {
            Ok(Some(response)) if response.canceled() => return false,
            Ok(Some(response)) if response.events().is_empty() => continue,
            Ok(Some(_)) => return true,
            Ok(None) | Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_a_third_of_the_lease_and_never_below_100_ms() {
        assert_eq!(heartbeat(Duration::from_secs(15)), Duration::from_secs(5));
        assert_eq!(
            heartbeat(Duration::from_millis(150)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn keys_live_under_the_prefix() {
        let settings = MembershipSettings {
            prefix: "/certinel/".to_owned(),
            member: "web-1".to_owned(),
            lease_ttl: Duration::from_secs(15),
        };
        assert_eq!(settings.members_prefix(), "/certinel/members/");
        assert_eq!(settings.member_key(), "/certinel/members/web-1");
    }
}
