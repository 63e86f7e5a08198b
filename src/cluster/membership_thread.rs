//! Membership on a thread of its own: the lease that keeps this replica listed is renewed
//! by a runtime nothing else runs on, with its own etcd connection, so a replica whose
//! service workers are busy (blocking store calls, a burst of rollouts at start) never
//! drops out of the member list for it. Only a stopped process (SIGSTOP, a dead machine)
//! or an unreachable etcd lets the lease lapse, which is what the lease is for.

use std::collections::BTreeSet;
use std::future::Future;

use etcd_client::Client;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::cluster::ClusterError;
use crate::cluster::membership::{self, Membership, MembershipSettings};

/// [`membership::join`] on a new thread (`certinel-members`) with a one-thread runtime:
/// `connect` opens the client there (so its connection tasks run there too), then the
/// membership task runs until `shutdown`. Returns the views, and a future that ends once
/// the task has left the cluster (its lease revoked), for the caller to wait on before
/// exiting. An error of `connect` is returned as is.
pub async fn join_on_own_thread<F, C>(
    connect: F,
    settings: MembershipSettings,
    carried: watch::Receiver<BTreeSet<String>>,
    shutdown: CancellationToken,
) -> Result<(Membership, impl Future<Output = ()> + Send + 'static), ClusterError>
where
    F: FnOnce() -> C + Send + 'static,
    C: Future<Output = Result<Client, ClusterError>>,
{
    let (joined_sender, joined) = oneshot::channel();
    let (left_sender, left) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("certinel-members".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = joined_sender.send(Err(ClusterError::Runtime(error)));
                    return;
                }
            };
            runtime.block_on(async move {
                match connect().await {
                    Err(error) => {
                        let _ = joined_sender.send(Err(error));
                    }
                    Ok(client) => {
                        let (view, task) = membership::join(client, settings, carried, shutdown);
                        if joined_sender.send(Ok(view)).is_ok() {
                            task.await;
                        }
                    }
                }
            });
            drop(left_sender);
        });
    if let Err(error) = thread {
        return Err(ClusterError::Runtime(error));
    }
    // The thread always answers before it ends: a dropped sender means it panicked.
    let view = joined
        .await
        .map_err(|_| ClusterError::Runtime(std::io::Error::other("membership thread ended")))??;
    let left = async move {
        // Ends with an error when the sender is dropped, which is how the thread says so.
        let _ = left.await;
    };
    Ok((view, left))
}
