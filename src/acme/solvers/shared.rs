//! One challenge listener per address, shared by every order validating at the same time:
//! the first order that needs an address binds it, later orders publish their answers on
//! the same socket, and the socket closes when the last of them leaves.
//!
//! `certinel run` starts every renewal task together, and certificates usually share one
//! `listen = "0.0.0.0:80"`; a listener per order would fail all but the first with
//! "Address already in use".

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

use crate::acme::AcmeError;

/// How long a stopping listener may go on serving connections that are already open: a
/// validator holding one must not keep the next order waiting for the address.
const GRACE: Duration = Duration::from_secs(5);
/// Connections the kernel queues for a listener before it accepts them (capped by
/// `net.core.somaxconn`). The CA validates every order sharing the listener at about the
/// same time; `listen(2)`'s usual 128 would drop the SYNs of the rest, each retried only
/// after a second or more.
const ACCEPT_BACKLOG: u32 = 4096;

/// The listeners of one challenge type, by the address they are bound to.
pub(crate) struct Registry<V> {
    /// `http-01` or `tls-alpn-01`, for messages.
    kind: &'static str,
    listeners: Mutex<BTreeMap<SocketAddr, Listener<V>>>,
}

/// The answers published on one listener, by key: the http-01 token, or the server name a
/// tls-alpn-01 validator sends.
pub(crate) struct Answers<V> {
    by_key: RwLock<HashMap<String, Answer<V>>>,
}

/// One order's membership of a shared listener; its answers are withdrawn when it leaves
/// or is dropped, and the last member to go stops the listener.
pub(crate) struct Guard<V: 'static> {
    registry: &'static Registry<V>,
    /// The address the listener is bound to (the real port when port 0 was asked for).
    addr: SocketAddr,
    answers: Arc<Answers<V>>,
    /// Keys this guard holds, once per successful publish.
    published: Vec<String>,
    /// False once the guard has left.
    member: bool,
}

/// One published answer and how many guards hold it.
struct Answer<V> {
    value: V,
    /// What makes two answers the same (the key authorization): orders sharing one
    /// authorization publish the same answer under the same key, and both may.
    proof: Vec<u8>,
    holders: usize,
}

/// A bound listener and its members.
struct Listener<V> {
    answers: Arc<Answers<V>>,
    guards: usize,
    /// Tells the serving task to stop (cancelled when the last guard leaves).
    stop: CancellationToken,
    /// Cancelled by the serving task once its socket is closed.
    closed: CancellationToken,
}

/// Removes the registry entry and says the socket is closed, when the serving task ends or
/// is dropped with its runtime.
struct Cleanup<V: 'static> {
    registry: &'static Registry<V>,
    addr: SocketAddr,
    answers: Arc<Answers<V>>,
    closed: CancellationToken,
}

impl<V: Clone + Send + Sync + 'static> Registry<V> {
    /// An empty registry for `kind` (`http-01`, `tls-alpn-01`).
    pub(crate) const fn new(kind: &'static str) -> Self {
        Self {
            kind,
            listeners: Mutex::new(BTreeMap::new()),
        }
    }

    /// Joins the listener on `addr`, binding it first when no order is using it.
    ///
    /// `serve` is called only for a new socket, with the registry lock held (so it must not
    /// block): it returns the future serving `answers` on the listener until `stop` is
    /// cancelled. A listener that is still closing is waited for, then bound again.
    pub(crate) async fn join<F, Fut>(
        &'static self,
        addr: SocketAddr,
        serve: F,
    ) -> Result<Guard<V>, AcmeError>
    where
        F: FnOnce(TcpListener, Arc<Answers<V>>, CancellationToken) -> std::io::Result<Fut>,
        Fut: Future<Output = ()> + Send + 'static,
    {
        loop {
            let closing = {
                let mut listeners = self.lock();
                match listeners.get_mut(&addr) {
                    Some(listener) if !listener.stop.is_cancelled() => {
                        listener.guards += 1;
                        return Ok(self.guard(addr, Arc::clone(&listener.answers)));
                    }
                    Some(listener) => listener.closed.clone(),
                    // Bound under the lock, so two orders arriving together never both bind.
                    None => return self.bind_and_serve(&mut listeners, addr, serve),
                }
            };
            closing.cancelled().await;
        }
    }

    /// Binds `addr`, starts serving it and records the new listener with one member.
    fn bind_and_serve<F, Fut>(
        &'static self,
        listeners: &mut BTreeMap<SocketAddr, Listener<V>>,
        addr: SocketAddr,
        serve: F,
    ) -> Result<Guard<V>, AcmeError>
    where
        F: FnOnce(TcpListener, Arc<Answers<V>>, CancellationToken) -> std::io::Result<Fut>,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let error = |source| AcmeError::Responder {
            kind: self.kind,
            location: addr.to_string(),
            source,
        };
        let (bound, listener) = bind_now(addr).map_err(error)?;
        let answers = Arc::new(Answers::default());
        let stop = CancellationToken::new();
        let closed = CancellationToken::new();
        let serving = serve(listener, Arc::clone(&answers), stop.clone()).map_err(error)?;
        let cleanup = Cleanup {
            registry: self,
            addr: bound,
            answers: Arc::clone(&answers),
            closed: closed.clone(),
        };
        let task_stop = stop.clone();
        tokio::spawn(async move {
            let _cleanup = cleanup;
            serve_until_stopped(serving, task_stop).await;
        });
        listeners.insert(
            bound,
            Listener {
                answers: Arc::clone(&answers),
                guards: 1,
                stop,
                closed,
            },
        );
        Ok(self.guard(bound, answers))
    }

    fn guard(&'static self, addr: SocketAddr, answers: Arc<Answers<V>>) -> Guard<V> {
        Guard {
            registry: self,
            addr,
            answers,
            published: Vec::new(),
            member: true,
        }
    }
}

impl<V> Registry<V> {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<SocketAddr, Listener<V>>> {
        // The map stays consistent even if a holder panicked: every change is one call.
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Binds `addr` synchronously (bind and listen never wait), so that it can happen under
/// the registry lock; returns the bound address too.
fn bind_now(addr: SocketAddr) -> std::io::Result<(SocketAddr, TcpListener)> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(ACCEPT_BACKLOG)?;
    Ok((listener.local_addr()?, listener))
}

/// Runs `serving` until it ends, or until [`GRACE`] after `stop`.
async fn serve_until_stopped(serving: impl Future<Output = ()>, stop: CancellationToken) {
    let deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(GRACE).await;
    };
    tokio::select! {
        () = serving => {}
        () = deadline => tracing::debug!("challenge responder closed with connections still open"),
    }
}

impl<V: Clone> Answers<V> {
    /// The answer published under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<V> {
        self.read().get(key).map(|answer| answer.value.clone())
    }

    /// The answer when exactly one key is published (for a tls-alpn-01 validator that sends
    /// no server name).
    pub(crate) fn only(&self) -> Option<V> {
        let by_key = self.read();
        let mut all = by_key.values();
        match (all.next(), all.next()) {
            (Some(only), None) => Some(only.value.clone()),
            _ => None,
        }
    }

    /// Publishes `value` under `key`; refused when another order holds `key` with a
    /// different proof.
    fn publish(&self, key: &str, proof: &[u8], value: V) -> bool {
        let mut by_key = self.write();
        match by_key.get_mut(key) {
            Some(held) if held.proof == proof => {
                held.holders += 1;
                true
            }
            Some(_) => false,
            None => {
                let answer = Answer {
                    value,
                    proof: proof.to_vec(),
                    holders: 1,
                };
                by_key.insert(key.to_owned(), answer);
                true
            }
        }
    }
}

impl<V> Answers<V> {
    /// Lets go of each of `keys` once; an answer nobody holds any more is removed.
    fn withdraw(&self, keys: &[String]) {
        let mut by_key = self.write();
        for key in keys {
            if let Some(held) = by_key.get_mut(key) {
                held.holders -= 1;
                if held.holders == 0 {
                    by_key.remove(key);
                }
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Answer<V>>> {
        // Every change is one call on the map, which stays consistent after a panic.
        self.by_key.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Answer<V>>> {
        self.by_key.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<V> Default for Answers<V> {
    fn default() -> Self {
        Self {
            by_key: RwLock::new(HashMap::new()),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Guard<V> {
    /// The address the shared listener is bound to.
    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `value` under `key` until this guard leaves. `proof` says which answers are
    /// the same: another order may publish the same key only with the same proof.
    pub(crate) fn publish(&mut self, key: &str, proof: &[u8], value: V) -> Result<(), AcmeError> {
        if !self.answers.publish(key, proof, value) {
            return Err(AcmeError::Responder {
                kind: self.registry.kind,
                location: self.addr.to_string(),
                source: std::io::Error::other(format!(
                    "another order is answering a {} challenge for {key} on this address; \
                     try again once it is done",
                    self.registry.kind
                )),
            });
        }
        self.published.push(key.to_owned());
        Ok(())
    }

    /// Withdraws this guard's answers; the last guard also stops the listener and waits
    /// (bounded) until its socket is closed.
    pub(crate) async fn leave(mut self) {
        if let Some(closed) = self.withdraw() {
            let closing = tokio::time::timeout(GRACE + Duration::from_secs(1), closed.cancelled());
            if closing.await.is_err() {
                tracing::warn!(addr = %self.addr, "challenge responder did not close in time");
            }
        }
    }
}

impl<V: 'static> Guard<V> {
    /// Withdraws the answers and leaves; returns the closing signal when this guard was the
    /// last member.
    fn withdraw(&mut self) -> Option<CancellationToken> {
        if !std::mem::replace(&mut self.member, false) {
            return None;
        }
        self.answers.withdraw(&self.published);
        let mut listeners = self.registry.lock();
        let listener = listeners
            .get_mut(&self.addr)
            .filter(|listener| Arc::ptr_eq(&listener.answers, &self.answers))?;
        listener.guards -= 1;
        if listener.guards > 0 {
            return None;
        }
        listener.stop.cancel();
        Some(listener.closed.clone())
    }
}

impl<V: 'static> Drop for Guard<V> {
    fn drop(&mut self) {
        // Without waiting: the serving task closes the socket on its own, and an order
        // joining meanwhile waits for that.
        let _closing = self.withdraw();
    }
}

impl<V: 'static> Drop for Cleanup<V> {
    fn drop(&mut self) {
        let mut listeners = self.registry.lock();
        let ours = listeners
            .get(&self.addr)
            .is_some_and(|listener| Arc::ptr_eq(&listener.answers, &self.answers));
        if ours {
            listeners.remove(&self.addr);
        }
        drop(listeners);
        self.closed.cancel();
    }
}

#[cfg(test)]
mod tests;
