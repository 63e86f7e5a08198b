//! [`EtcdStore`]: the [`Store`] kept in etcd, shared by every replica of one installation.
//! The key layout is in `keys.rs` (and ARCHITECTURE.md, "The store"); every write for a
//! certificate is a transaction fenced by its lock (`txn.rs`, `lock.rs`); private keys and
//! account credentials are sealed with the replica's [`Keyring`]; the files servers read are
//! materialised into a local directory with the filesystem store's layout
//! (`materialise.rs`).
//!
//! **Invariant:** no private key and no account credential reaches etcd unsealed.
//! **Invariant:** this module knows nothing about `crate::config`: it is configured by
//! [`EtcdSettings`].

mod accounts;
mod audit;
mod bridge;
mod cert_state;
mod inflight;
mod keys;
mod lock;
mod materialise;
mod retry;
mod txn;
mod versions;
mod view;
mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

pub use accounts::EtcdAccounts;
pub use bridge::REQUEST_TIMEOUT;

use crate::store::StoreError;
use crate::store::accounts::AccountStore;
use crate::store::audit::{AuditEvent, AuditHistory};
use crate::store::backend::{Record, ReportOn, Store, Watched};
use crate::store::inflight::{HookProcess, Inflight, SecretPem, Stage};
use crate::store::lock::{LockError, RenewalLock};
use crate::store::metadata::{VersionId, VersionMetadata, VersionState};
use crate::store::recovery::DiskState;
use crate::store::sealed::Keyring;
use crate::store::versions::{NewVersion, VersionFiles};
use bridge::Bridge;
use keys::Keys;

/// How long [`EtcdStore::connect_with`] waits for its connect future.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// How an [`EtcdStore`] is set up.
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// The key prefix of this installation (`/certinel/`).
    pub prefix: String,
    /// This replica's name, written into locks, audit keys and in-flight records.
    pub member: String,
    /// How long a renewal lock outlives a replica that stopped renewing its lease.
    pub lease_ttl: Duration,
    /// Where the files servers read are materialised (the state directory: the same
    /// `certs/NAME/current/` layout as the filesystem store).
    pub local_dir: PathBuf,
    /// Seals private keys and account credentials.
    pub keyring: Arc<Keyring>,
}

/// Certificate state in etcd. Cheap to clone; every clone shares one client runtime and
/// one set of held locks.
#[derive(Debug, Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
}

/// What every clone of the store, and every lock and account store it hands out, shares.
pub(crate) struct Shared {
    pub(crate) bridge: Bridge,
    pub(crate) client: etcd_client::Client,
    pub(crate) keys: Keys,
    pub(crate) member: String,
    pub(crate) lease_ttl: Duration,
    pub(crate) local_dir: PathBuf,
    pub(crate) keyring: Arc<Keyring>,
    /// Per certificate, the `create_revision` of the lock key this replica holds.
    pub(crate) held: Mutex<HashMap<String, i64>>,
    /// Writes etcd rejected because the lock had moved (a failed fenced transaction).
    pub(crate) rejected_writes: AtomicU64,
    /// The audit events this replica appended, numbering its audit keys.
    pub(crate) audit_sequence: AtomicU64,
    /// Held while a stamped audit event is stamped and written.
    pub(crate) audit_order: Mutex<()>,
    /// How long audit events are kept (`audit.rs`).
    pub(crate) audit_retention: audit::AuditRetention,
    /// Per account key, the `mod_revision` last read (0: read as absent), compared when
    /// the credentials are saved.
    pub(crate) account_revisions: Mutex<HashMap<String, i64>>,
    /// Every certificate's view kept by the one watch of this process (`watch.rs`).
    pub(crate) hub: Arc<watch::Hub>,
}

impl EtcdStore {
    /// The store over `client`. The client's connection tasks run on the runtime it was
    /// made on, which must keep running while a thread of it waits for this store:
    /// prefer [`EtcdStore::connect`], which makes it on the store's own runtime.
    pub fn new(
        client: etcd_client::Client,
        settings: EtcdSettings,
    ) -> Result<EtcdStore, StoreError> {
        Ok(EtcdStore::with_bridge(Bridge::start()?, client, settings))
    }

    /// Connects to `endpoints` with etcd's client `options` on the store's own runtime and
    /// keeps state through that client; a failure (or a timeout) is a
    /// [`StoreError::Etcd`].
    pub fn connect(
        settings: EtcdSettings,
        endpoints: Vec<String>,
        options: Option<etcd_client::ConnectOptions>,
    ) -> Result<EtcdStore, StoreError> {
        let prefix = settings.prefix.clone();
        EtcdStore::connect_with(settings, move || async move {
            etcd_client::Client::connect(endpoints, options)
                .await
                .map_err(|error| StoreError::Etcd {
                    action: "connect to",
                    key: prefix,
                    reason: error.to_string(),
                })
        })
    }

    /// Runs `connect` on the store's own runtime and keeps state through the client it
    /// makes, keeping `connect`'s own error (for a caller that connects its own way, with
    /// TLS or a user): it should give up on its own within [`CONNECT_DEADLINE`], after
    /// which the wait ends with a [`StoreError`].
    pub fn connect_with<F, E>(
        settings: EtcdSettings,
        connect: impl FnOnce() -> F,
    ) -> Result<EtcdStore, E>
    where
        F: Future<Output = Result<etcd_client::Client, E>> + Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let bridge = Bridge::start()?;
        let client =
            bridge.run_within(CONNECT_DEADLINE, "connect to", &settings.prefix, connect())??;
        Ok(EtcdStore::with_bridge(bridge, client, settings))
    }

    fn with_bridge(
        bridge: Bridge,
        client: etcd_client::Client,
        settings: EtcdSettings,
    ) -> EtcdStore {
        let keys = Keys::new(&settings.prefix);
        EtcdStore {
            shared: Arc::new(Shared {
                bridge,
                client,
                hub: Arc::new(watch::Hub::new(keys.clone(), settings.member.clone())),
                keys,
                member: settings.member,
                lease_ttl: settings.lease_ttl,
                local_dir: settings.local_dir,
                keyring: settings.keyring,
                held: Mutex::new(HashMap::new()),
                rejected_writes: AtomicU64::new(0),
                audit_sequence: AtomicU64::new(0),
                audit_order: Mutex::new(()),
                audit_retention: audit::AuditRetention::default(),
                account_revisions: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// How many writes etcd rejected because this replica no longer held the lock (each a
    /// transaction that answered `succeeded == false` on its lock compare).
    pub fn rejected_writes(&self) -> u64 {
        self.shared.rejected_writes.load(Ordering::SeqCst)
    }

    /// The client this store talks through (cheap to clone).
    pub fn client(&self) -> etcd_client::Client {
        self.shared.client.clone()
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.keys.prefix())
            .field("member", &self.member)
            .field("local_dir", &self.local_dir)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The lock revision held for `name` (0: none).
    pub(crate) fn held_revision(&self, name: &str) -> i64 {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(name).copied().unwrap_or(0)
    }
}

impl Store for EtcdStore {
    fn current(&self, name: &str) -> Result<Option<VersionId>, StoreError> {
        Ok(self.shared.links(name)?.current)
    }

    fn previous(&self, name: &str) -> Result<Option<VersionId>, StoreError> {
        Ok(self.shared.links(name)?.previous)
    }

    fn versions(&self, name: &str) -> Result<Vec<VersionMetadata>, StoreError> {
        self.shared.versions(name)
    }

    fn metadata(&self, name: &str, version: VersionId) -> Result<VersionMetadata, StoreError> {
        Ok(self.shared.version(name, version)?.doc.meta)
    }

    fn stage_pending(&self, name: &str, new: NewVersion) -> Result<VersionMetadata, StoreError> {
        self.shared.stage_pending(name, new.check()?)
    }

    fn promote(&self, name: &str, version: VersionId) -> Result<(), StoreError> {
        self.shared.promote(name, version)?;
        self.shared.materialise_current(name)
    }

    fn rollback(&self, name: &str) -> Result<VersionId, StoreError> {
        let restored = self.shared.rollback(name)?;
        self.shared.materialise_current(name)?;
        Ok(restored)
    }

    fn set_state(
        &self,
        name: &str,
        version: VersionId,
        state: VersionState,
    ) -> Result<(), StoreError> {
        self.shared.set_state(name, version, state)
    }

    fn prune(&self, name: &str, keep: usize) -> Result<Vec<VersionId>, StoreError> {
        let removed = self.shared.prune(name, keep)?;
        self.shared.forget_local(name, &removed)?;
        Ok(removed)
    }

    fn files(&self, name: &str, version: VersionId) -> Result<VersionFiles, StoreError> {
        self.shared.materialise_version(name, version)
    }

    fn current_files(&self, name: &str) -> Result<VersionFiles, StoreError> {
        self.shared.materialise_current(name)?;
        Ok(self.shared.local_current(name))
    }

    fn inflight(&self, name: &str) -> Result<Option<Inflight>, StoreError> {
        self.shared.inflight(name)
    }

    fn begin(&self, name: &str, started_at: OffsetDateTime) -> Result<Inflight, StoreError> {
        self.shared.begin(name, started_at)
    }

    fn record_order(&self, name: &str, order_url: &str) -> Result<Inflight, StoreError> {
        self.shared.change_inflight(name, |record| {
            record.order_url = Some(order_url.to_owned());
            record.key_pem = None;
        })
    }

    fn record_key(&self, name: &str, key_pem: &SecretPem) -> Result<Inflight, StoreError> {
        self.shared.change_inflight(name, |record| {
            record.key_pem = Some(key_pem.clone());
        })
    }

    fn record_hook(&self, name: &str, hook: Option<HookProcess>) -> Result<(), StoreError> {
        self.shared.record_hook(name, hook)
    }

    fn advance(
        &self,
        name: &str,
        stage: Stage,
        version: VersionId,
    ) -> Result<Inflight, StoreError> {
        self.shared.change_inflight(name, |record| {
            record.stage = stage;
            record.version = Some(version);
            record.key_pem = None;
        })
    }

    fn finish(&self, name: &str) -> Result<(), StoreError> {
        self.shared.finish(name)
    }

    fn disk_state(&self, name: &str) -> Result<DiskState, StoreError> {
        self.shared.disk_state(name)
    }

    /// Transactions leave no partial state: there is never anything to remove.
    fn remove_leftovers(&self, name: &str) -> Result<Vec<String>, StoreError> {
        self.shared.keys.cert(name)?;
        Ok(Vec::new())
    }

    fn schedule_record(&self, name: &str) -> Result<Option<Record>, StoreError> {
        let key = self.shared.keys.schedule(name)?;
        Ok(self.shared.get(&key)?.map(|entry| Record {
            bytes: entry.value,
            location: PathBuf::from(entry.key),
        }))
    }

    fn save_schedule_record(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let key = self.shared.keys.schedule(name)?;
        self.shared.update(name, || {
            Ok(txn::Plan::Write {
                compares: Vec::new(),
                ops: vec![etcd_client::TxnOp::put(key.as_str(), bytes, None)],
                then: (),
            })
        })
    }

    /// Not fenced: every replica reports on its own rollout while the renewing replica
    /// holds the lock.
    fn save_rollout_report(&self, on: ReportOn<'_>, bytes: &[u8]) -> Result<(), StoreError> {
        let key = self.shared.keys.rollout_report(on)?;
        let put = etcd_client::TxnOp::put(key.as_str(), bytes, None);
        self.shared.transact(&key, Vec::new(), vec![put])?;
        Ok(())
    }

    fn rollout_reports(&self, name: &str, version: VersionId) -> Result<Vec<Record>, StoreError> {
        let prefix = self.shared.keys.rollout_reports(name, version)?;
        Ok(self
            .shared
            .range(&prefix)?
            .into_iter()
            .map(|entry| Record {
                bytes: entry.value,
                location: PathBuf::from(entry.key),
            })
            .collect())
    }

    fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.shared.append_audit(event)
    }

    fn append_audit_stamped(
        &self,
        mut event: AuditEvent,
        stamp: &dyn Fn() -> OffsetDateTime,
    ) -> Result<(), StoreError> {
        // Held across the stamp and the write: this replica's events land in the order of
        // their times.
        let _order = self
            .shared
            .audit_order
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        event.time = stamp();
        self.shared.append_audit(&event)
    }

    fn audit_history(&self) -> Result<AuditHistory, StoreError> {
        self.shared.audit_history()
    }

    fn audit_location(&self) -> String {
        format!("etcd keys {}", self.shared.keys.audit())
    }

    fn lock(&self, name: &str) -> Result<RenewalLock, LockError> {
        lock::acquire(&self.shared, name)
    }

    fn accounts(&self) -> Arc<dyn AccountStore> {
        Arc::new(EtcdAccounts::new(self.shared.clone(), false))
    }

    fn dry_run_accounts(&self) -> Arc<dyn AccountStore> {
        Arc::new(EtcdAccounts::new(self.shared.clone(), true))
    }

    /// From the one watch of this process, started by the first call (`watch.rs`).
    fn watch(&self, name: &str) -> Option<tokio::sync::watch::Receiver<Watched>> {
        let shared = &self.shared;
        Some(
            shared
                .hub
                .subscribe(name, shared.bridge.handle(), &shared.client),
        )
    }
}
