//! The renewal lock in etcd: `P/locks/NAME`, created only when absent and attached to a
//! lease this replica keeps alive. The key's `create_revision` is the fencing token: every
//! write for the certificate compares it (`txn.rs`), so a holder whose lease expired (a
//! paused or partitioned replica) can no longer write once another replica took the lock.
//! Dropping the [`RenewalLock`] revokes the lease; a dead replica's lock expires with it.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio_util::sync::CancellationToken;

use crate::store::etcd::Shared;
use crate::store::etcd::retry::Repeat;
use crate::store::lock::{LockError, RenewalLock};

/// What a held lock keeps: dropping it stops the keep-alive and revokes the lease.
struct LeaseGuard {
    shared: Arc<Shared>,
    name: String,
    /// The lock key's `create_revision`: this holder's fencing token.
    revision: i64,
    lease: i64,
    keep_alive: CancellationToken,
}

/// Takes the lock of `name` without waiting: [`LockError::Held`] when another replica (or
/// this one) holds it.
pub(crate) fn acquire(shared: &Arc<Shared>, name: &str) -> Result<RenewalLock, LockError> {
    let key = shared.keys.lock(name)?;
    let ttl = lease_seconds(shared.lease_ttl);
    let lease = shared
        .request(
            "grant a lease for",
            &key,
            Repeat::Unsent,
            move |mut client| async move { client.lease_grant(ttl, None).await },
        )?
        .id();
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(
                key.as_str(),
                shared.member.as_str(),
                Some(PutOptions::new().with_lease(lease)),
            ),
            TxnOp::get(key.as_str(), None),
        ]);
    let answer = shared.request("lock", &key, Repeat::Unsent, move |mut client| {
        let txn = txn.clone();
        async move { client.txn(txn).await }
    });
    let taken = match answer {
        Ok(response) if response.succeeded() => {
            response.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Get(get) => {
                    get.kvs().first().map(|kv| (lease, kv.create_revision()))
                }
                _ => None,
            })
        }
        Ok(_) => None,
        Err(error) => {
            revoke(shared, name, lease);
            return Err(error.into());
        }
    };
    if taken.is_none() {
        revoke(shared, name, lease);
    }
    let Some((lease, revision)) = taken else {
        return Err(LockError::Held);
    };
    {
        let mut held = shared.held.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(name.to_owned(), revision);
    }
    let keep_alive = CancellationToken::new();
    shared.bridge.handle().spawn(keep_lease_alive(
        shared.client.clone(),
        lease,
        shared.lease_ttl,
        keep_alive.clone(),
        name.to_owned(),
    ));
    tracing::debug!(certificate = name, revision, lease, "renewal lock taken");
    Ok(RenewalLock::holding(LeaseGuard {
        shared: shared.clone(),
        name: name.to_owned(),
        revision,
        lease,
        keep_alive,
    }))
}

/// The lease TTL in whole seconds (etcd's unit), at least one.
fn lease_seconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX)
}

/// Renews `lease` three times per TTL until cancelled or the lease is gone. A failed
/// renewal is retried on a new stream; once the lease expired, the lock is lost and every
/// write for the certificate is fenced.
async fn keep_lease_alive(
    client: etcd_client::Client,
    lease: i64,
    ttl: Duration,
    cancelled: CancellationToken,
    name: String,
) {
    let period = (ttl / 3).max(Duration::from_millis(100));
    let mut stream = None;
    loop {
        tokio::select! {
            () = cancelled.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        if stream.is_none() {
            let mut client = client.clone();
            match tokio::time::timeout(period, client.lease_keep_alive(lease)).await {
                Ok(Ok(opened)) => stream = Some(opened),
                Ok(Err(error)) => {
                    tracing::warn!(certificate = %name, %error, "renewal lock: keep-alive failed");
                    continue;
                }
                Err(_) => continue,
            }
        }
        let Some((keeper, responses)) = stream.as_mut() else {
            continue;
        };
        let renewed = tokio::time::timeout(period, async {
            keeper.keep_alive().await?;
            responses.message().await
        })
        .await;
        match renewed {
            Ok(Ok(Some(response))) if response.ttl() > 0 => {}
            Ok(Ok(Some(_))) => {
                tracing::warn!(
                    certificate = %name,
                    "renewal lock lost: its lease expired; writes for this certificate are fenced"
                );
                return;
            }
            _ => stream = None,
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.keep_alive.cancel();
        {
            let mut held = self.shared.held.lock().unwrap_or_else(|p| p.into_inner());
            if held.get(&self.name) == Some(&self.revision) {
                held.remove(&self.name);
            }
        }
        // Revoked before returning, so this replica (or another) can take the lock at
        // once; an unreachable etcd lets the lease expire instead.
        revoke(&self.shared, &self.name, self.lease);
    }
}

/// Revokes `lease` (the lock of `name` goes with it), waiting for etcd's answer; a failure
/// is logged: the lease expires by itself.
fn revoke(shared: &Shared, name: &str, lease: i64) {
    let revoked = shared.request(
        "unlock",
        name,
        Repeat::Idempotent,
        move |mut client| async move { client.lease_revoke(lease).await },
    );
    if let Err(error) = revoked {
        tracing::warn!(certificate = %name, %error, "renewal lock: lease not revoked, it expires");
    }
}
