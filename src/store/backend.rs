//! [`Store`]: every operation on certinel's state, as the renewer, the service and the CLI
//! use them. [`crate::store::FsStore`] keeps the state in a directory; another backend
//! (a transactional key-value store) implements the same trait without `renew` changing.
//!
//! **Invariant:** nothing outside `store` builds a path inside the state directory; the
//! only paths handed out are the materialised files servers and deploy commands read
//! ([`VersionFiles`]) and the names shown to a person ([`Store::audit_location`],
//! [`AccountStore::account_location`]).

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::store::StoreError;
use crate::store::accounts::AccountStore;
use crate::store::audit::{AuditEvent, AuditHistory};
use crate::store::inflight::{HookProcess, Inflight, SecretPem, Stage};
use crate::store::lock::{LockError, RenewalLock};
use crate::store::metadata::{VersionId, VersionMetadata, VersionState};
use crate::store::recovery::DiskState;
use crate::store::versions::{NewVersion, VersionFiles};

/// A stored document read back: its bytes and where it lives, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The document as it was written.
    pub bytes: Vec<u8>,
    /// Where it lives (a file, or a key), named in errors about its content.
    pub location: PathBuf,
}

/// Which rollout report: `member`'s on rolling out `version` of the certificate `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOn<'a> {
    /// The certificate's configured name.
    pub name: &'a str,
    /// The version rolled out.
    pub version: VersionId,
    /// The replica that rolled it out (its `[cluster] member` name).
    pub member: &'a str,
}

/// What a store shared by replicas knows about one certificate without a read: kept up to
/// date by one watch per process ([`Store::watch`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watched {
    /// The version `current` points at, if any.
    pub current: Option<VersionId>,
    /// Whether a renewal is in flight (its record exists).
    pub inflight: bool,
    /// Who holds the certificate's renewal lock.
    pub lock: LockHolder,
}

/// Who holds a certificate's renewal lock, by the member name the lock names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LockHolder {
    /// Nobody: no lock key (never taken, released, or its holder's lease expired).
    #[default]
    Free,
    /// A replica with this replica's member name (this process, or its predecessor whose
    /// lease has not expired yet).
    ThisMember,
    /// Another replica.
    OtherMember,
}

/// All of certinel's state behind one interface. Every method names the certificate it
/// concerns; a name that is not a safe single path component is refused
/// ([`StoreError::InvalidName`]). Methods block: call them off the async workers when
/// they write.
pub trait Store: Send + Sync + Debug {
    // Versions and `current`/`previous`.

    /// The version `current` points at, if any.
    fn current(&self, name: &str) -> Result<Option<VersionId>, StoreError>;
    /// The version `previous` points at, if any.
    fn previous(&self, name: &str) -> Result<Option<VersionId>, StoreError>;
    /// Metadata of every stored version, oldest first.
    fn versions(&self, name: &str) -> Result<Vec<VersionMetadata>, StoreError>;
    /// Metadata of one version.
    fn metadata(&self, name: &str, version: VersionId) -> Result<VersionMetadata, StoreError>;
    /// Stores a new version, not yet live; the key must match the chain's leaf. The
    /// version appears complete or not at all.
    fn stage_pending(&self, name: &str, new: NewVersion) -> Result<VersionMetadata, StoreError>;
    /// Makes `version` live (`previous` := `current`, `current` := `version`); idempotent.
    fn promote(&self, name: &str, version: VersionId) -> Result<(), StoreError>;
    /// Makes `previous` live again and marks the abandoned version failed; returns the
    /// version now current.
    fn rollback(&self, name: &str) -> Result<VersionId, StoreError>;
    /// Rewrites the state in a version's metadata.
    fn set_state(
        &self,
        name: &str,
        version: VersionId,
        state: VersionState,
    ) -> Result<(), StoreError>;
    /// Deletes all but the `keep` newest versions, never one still needed; returns them.
    fn prune(&self, name: &str, keep: usize) -> Result<Vec<VersionId>, StoreError>;

    // The materialised files servers and deploy commands read.

    /// The files of one version.
    fn files(&self, name: &str, version: VersionId) -> Result<VersionFiles, StoreError>;
    /// The files as servers see them, through `current`.
    fn current_files(&self, name: &str) -> Result<VersionFiles, StoreError>;

    // The renewal in flight.

    /// The renewal in flight for `name`, if any.
    fn inflight(&self, name: &str) -> Result<Option<Inflight>, StoreError>;
    /// Records that a renewal starts; fails if one is already in flight.
    fn begin(&self, name: &str, started_at: OffsetDateTime) -> Result<Inflight, StoreError>;
    /// Records the ACME order URL (dropping a key saved for an earlier order).
    fn record_order(&self, name: &str, order_url: &str) -> Result<Inflight, StoreError>;
    /// Saves the private key the recorded order is about to be finalized with.
    fn record_key(&self, name: &str, key_pem: &SecretPem) -> Result<Inflight, StoreError>;
    /// Records the deploy command now running (`Some`) or that none is (`None`).
    fn record_hook(&self, name: &str, hook: Option<HookProcess>) -> Result<(), StoreError>;
    /// Records that the renewal reached `stage` with `version`.
    fn advance(&self, name: &str, stage: Stage, version: VersionId)
    -> Result<Inflight, StoreError>;
    /// Ends the renewal in flight.
    fn finish(&self, name: &str) -> Result<(), StoreError>;

    // Crash recovery.

    /// Reads everything [`crate::store::recover`] needs for `name`.
    fn disk_state(&self, name: &str) -> Result<DiskState, StoreError>;
    /// Deletes what an interrupted write left behind; only while `name` is locked.
    fn remove_leftovers(&self, name: &str) -> Result<Vec<String>, StoreError>;

    // Schedule and ARI state (a document `crate::schedule::state` reads and writes).

    /// The schedule document of `name`, if one was saved.
    fn schedule_record(&self, name: &str) -> Result<Option<Record>, StoreError>;
    /// Replaces the schedule document of `name`.
    fn save_schedule_record(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError>;

    // Fleet-wide rollout: one report per replica and version (a document
    // `crate::renew::fleet` reads and writes).

    /// Stores the report `on` names, replacing that member's earlier one.
    fn save_rollout_report(&self, on: ReportOn<'_>, bytes: &[u8]) -> Result<(), StoreError>;
    /// Every replica's report on `version` of `name`.
    fn rollout_reports(&self, name: &str, version: VersionId) -> Result<Vec<Record>, StoreError>;

    // The audit log.

    /// Appends one event.
    fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;
    /// Appends `event` stamped with `stamp()`, read while every other append of this
    /// process waits, so lines land in the order of their times.
    fn append_audit_stamped(
        &self,
        event: AuditEvent,
        stamp: &dyn Fn() -> OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Every event logged so far, and the lines that could not be read as events.
    fn audit_history(&self) -> Result<AuditHistory, StoreError>;
    /// Where the audit log lives, for a person to look at.
    fn audit_location(&self) -> String;

    // Locks.

    /// Takes the renewal lock of `name` without waiting; released when dropped.
    fn lock(&self, name: &str) -> Result<RenewalLock, LockError>;

    // ACME account credentials.

    /// The ACME account credentials renewals and account changes use.
    fn accounts(&self) -> Arc<dyn AccountStore>;
    /// The ACME account credentials dry runs use: kept apart from [`accounts`](Self::accounts)
    /// and from a dry run's scratch state, so repeated dry runs reuse one account per
    /// directory URL.
    fn dry_run_accounts(&self) -> Arc<dyn AccountStore>;

    // Changes made by other replicas.

    /// With a store shared by replicas: what is known about `name` now, its receiver
    /// notified whenever that may have changed (after a lost watch, every certificate is
    /// notified once, changed or not). `None` (the default, and the filesystem store's
    /// answer): nobody else changes this store, there is nothing to watch.
    fn watch(&self, name: &str) -> Option<tokio::sync::watch::Receiver<Watched>> {
        let _ = name;
        None
    }
}
