//! Reads and the one way certificate state is written: a transaction whose compare checks
//! that this replica still holds the certificate's lock (fencing), plus the compares of
//! the values it read.
//!
//! The store remembers, per certificate, the lock key's `create_revision` it holds
//! (`lock.rs`); a write without a held lock compares `create_revision == 0`, i.e. nobody
//! holds it. When the compare fails because the lock moved, the write is
//! [`StoreError::Fenced`] and counted ([`Shared::rejected_writes`]); when only a value
//! changed, the caller reads again and retries.

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, GetOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};

use crate::store::StoreError;
use crate::store::etcd::Shared;
use crate::store::etcd::bridge::REQUEST_TIMEOUT;
use crate::store::etcd::retry::{Repeat, retrying};

/// How often a read-modify-write is tried again when a value it read changed meanwhile.
const ATTEMPTS: usize = 5;

/// A value read from etcd and the revision it was last modified at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The key.
    pub(crate) key: String,
    /// The value.
    pub(crate) value: Vec<u8>,
    /// Its `mod_revision`, compared when it is written back.
    pub(crate) mod_revision: i64,
}

/// What one attempt of a read-modify-write decided.
pub(crate) enum Plan<T> {
    /// Nothing to write; the answer is ready.
    Nothing(T),
    /// Write `ops` if `compares` (and the fence) hold, then answer `then`.
    Write {
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        then: T,
    },
}

/// Whether a fenced transaction was applied.
enum Committed {
    Done,
    /// A value compare failed, the fence held: read again.
    Conflict,
}

/// The compare "`entry` is unchanged": its `mod_revision`, or for a value that was
/// absent, that it still does not exist.
pub(crate) fn unchanged(key: &str, entry: Option<&Entry>) -> Compare {
    match entry {
        Some(entry) => Compare::mod_revision(key, CompareOp::Equal, entry.mod_revision),
        None => Compare::create_revision(key, CompareOp::Equal, 0),
    }
}

impl Shared {
    /// Sends the request `make` builds with a client, again when [`retrying`] allows, and
    /// waits for its answer.
    pub(crate) fn request<T, F, Fut>(
        &self,
        action: &'static str,
        key: &str,
        repeat: Repeat,
        mut make: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(etcd_client::Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let client = self.client.clone();
        let budget = REQUEST_TIMEOUT.saturating_sub(Duration::from_secs(1));
        self.bridge.run(
            action,
            key,
            retrying(budget, repeat, move || make(client.clone())),
        )
    }

    /// The value at `key`, if any.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let owned = key.to_owned();
        let mut response = self.request("get", key, Repeat::Idempotent, move |mut client| {
            let owned = owned.clone();
            async move { client.get(owned, None).await }
        })?;
        Ok(response.take_kvs().into_iter().next().map(|kv| Entry {
            key: key.to_owned(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        }))
    }

    /// Every value under `prefix` at one revision, sorted by key.
    pub(crate) fn range(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let owned = prefix.to_owned();
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Key, SortOrder::Ascend);
        let mut response =
            self.request("range", prefix, Repeat::Idempotent, move |mut client| {
                let (owned, options) = (owned.clone(), options.clone());
                async move { client.get(owned, Some(options)).await }
            })?;
        Ok(response
            .take_kvs()
            .into_iter()
            .map(|kv| Entry {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: kv.value().to_vec(),
                mod_revision: kv.mod_revision(),
            })
            .collect())
    }

    /// A transaction outside any certificate's lock (audit, accounts): whether its
    /// compares held.
    pub(crate) fn transact(
        &self,
        key: &str,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<bool, StoreError> {
        let txn = Txn::new().when(compares).and_then(ops);
        let response = self.request("transaction on", key, Repeat::Unsent, move |mut client| {
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })?;
        Ok(response.succeeded())
    }

    /// Runs `attempt` (read, decide) and writes what it planned in a fenced transaction
    /// for certificate `name`, reading again when a value changed meanwhile.
    pub(crate) fn update<T>(
        &self,
        name: &str,
        mut attempt: impl FnMut() -> Result<Plan<T>, StoreError>,
    ) -> Result<T, StoreError> {
        for _ in 0..ATTEMPTS {
            let plan = match attempt() {
                Ok(plan) => plan,
                // What this write needed is gone or changed (the in-flight record a new
                // holder finished, say). While holding the lock, ask etcd whether it is
                // still ours first, so a holder that lost it is told it was fenced.
                Err(error) if self.held_revision(name) != 0 => {
                    self.commit(name, Vec::new(), Vec::new())?;
                    return Err(error);
                }
                Err(error) => return Err(error),
            };
            match plan {
                Plan::Nothing(answer) => return Ok(answer),
                Plan::Write {
                    compares,
                    ops,
                    then,
                } => match self.commit(name, compares, ops)? {
                    Committed::Done => return Ok(then),
                    Committed::Conflict => continue,
                },
            }
        }
        Err(StoreError::Conflict {
            key: self.keys.cert(name)?,
        })
    }

    /// Writes `ops` if `compares` hold and the lock of `name` is still the one this
    /// replica holds (or, holding none, nobody holds it).
    fn commit(
        &self,
        name: &str,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<Committed, StoreError> {
        let lock_key = self.keys.lock(name)?;
        let held = self.held_revision(name);
        let mut when = vec![Compare::create_revision(
            lock_key.as_str(),
            CompareOp::Equal,
            held,
        )];
        when.extend(compares);
        let txn = Txn::new()
            .when(when)
            .and_then(ops)
            .or_else([TxnOp::get(lock_key.as_str(), None)]);
        let cert_key = self.keys.cert(name)?;
        let response = self.request(
            "transaction on",
            &cert_key,
            Repeat::Unsent,
            move |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            },
        )?;
        if response.succeeded() {
            return Ok(Committed::Done);
        }
        let found = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(get) => Some(get.kvs().first().map(|kv| kv.create_revision())),
                _ => None,
            })
            .flatten();
        if found.unwrap_or(0) == held {
            return Ok(Committed::Conflict);
        }
        self.rejected_writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tracing::warn!(
            certificate = name,
            held,
            ?found,
            "write rejected: another replica holds the renewal lock now (fenced)"
        );
        Err(StoreError::Fenced {
            name: name.to_owned(),
            key: lock_key,
            held,
            found,
        })
    }
}
