//! Certificate state on disk: versioned certificates, `current`/`previous`, in-flight
//! renewals and the audit log, all written atomically.
//!
//! Layout under `state_dir`:
//!
//! ```text
//! state_dir/audit.jsonl               one JSON line per renewal step (audit)
//! state_dir/certs/NAME/v0001/         cert.pem chain.pem fullchain.pem key.pem (0600) meta.json
//! state_dir/certs/NAME/current  -> v0002   servers read current/fullchain.pem
//! state_dir/certs/NAME/previous -> v0001
//! state_dir/certs/NAME/inflight.json  the renewal in progress, if any, with its new key (0600)
//! state_dir/certs/NAME/schedule.json  failures and backoff (crate::schedule::history)
//! state_dir/certs/NAME/rollout/vNNNN/MEMBER.json  a replica's rollout report ([cluster])
//! state_dir/locks/NAME.lock           flock(2) held while NAME renews (lock)
//! state_dir/acme/account-HASH.json    ACME credentials per directory URL (0600, accounts)
//! state_dir/dry-run/accounts/         the dry runs' ACME credentials
//! ```
//!
//! Everything above is reached through the [`Store`] trait ([`FsStore`] is this layout);
//! the account credentials through the [`AccountStore`]s it hands out.
//!
//! **Invariant:** a `vNNNN` directory is complete or absent: versions are written under a
//! dot-prefixed temporary name and renamed into place. Names starting with `.` are never
//! versions and may be deleted whenever no renewal is running.
//!
//! **Invariant:** this module knows nothing about ACME or the network; it is told what was
//! issued and only reads PEM files to check them.

pub mod accounts;
pub mod atomic;
pub mod audit;
pub mod backend;
pub mod etcd;
pub mod filesystem;
pub mod inflight;
mod journal;
pub mod lock;
pub mod metadata;
mod off_workers;
pub mod recovery;
pub mod sealed;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
pub mod version_check;
pub mod versions;

use std::path::PathBuf;

pub use accounts::{AccountStore, Aside, AsideKind, FsAccounts, account_file_name};
pub use audit::{AuditEvent, AuditHistory, AuditLog, Outcome, Step};
pub use backend::{LockHolder, Record, ReportOn, Store, Watched};
pub use etcd::{EtcdSettings, EtcdStore};
pub use filesystem::FsStore;
pub use inflight::{HookGroup, HookProcess, Inflight, SecretPem, Stage};
pub use lock::{LockError, RenewalLock};
pub use metadata::{Origin, VersionId, VersionMetadata, VersionState};
pub use recovery::{DiskState, NextStep, Recovery, recover};
pub use version_check::{VerifyError, VersionFacts, check_pems, check_version};
pub use versions::{CertStore, NewVersion, VersionFiles};

/// Everything that can go wrong while reading or writing certificate state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`write`, `rename`, ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A JSON state file does not parse.
    #[error("{path} is not valid state: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        source: serde_json::Error,
    },
    /// A certificate name that is not a safe single path component.
    #[error(
        "certificate name {0:?} is not allowed: use letters, digits, '.', '_' or '-', not starting with '.'"
    )]
    InvalidName(String),
    /// The named version does not exist.
    #[error("certificate {name} has no version {version}")]
    NoSuchVersion {
        /// Certificate name.
        name: String,
        /// The missing version.
        version: VersionId,
    },
    /// `rollback` needs a `previous` version.
    #[error("certificate {0} has no previous version to roll back to")]
    NoPrevious(String),
    /// `begin` was called while a renewal is already in flight.
    #[error("certificate {name} already has a renewal in flight (stage {stage:?})")]
    InflightExists {
        /// Certificate name.
        name: String,
        /// The stage of the existing renewal.
        stage: Stage,
    },
    /// `advance`/`finish` was called with no renewal in flight.
    #[error("certificate {0} has no renewal in flight")]
    NoInflight(String),
    /// The stored or offered files are not a usable certificate and key.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// etcd did not answer in time, was unreachable or refused a request.
    #[error("etcd: {action} {key}: {reason}")]
    Etcd {
        /// What was being done (`get`, `transaction`, ...).
        action: &'static str,
        /// The key (or prefix) involved.
        key: String,
        /// The client's error, or that the request timed out.
        reason: String,
    },
    /// A write for `name` was rejected because this replica no longer holds the lock it
    /// took (its lease expired, another replica took the lock since): the etcd transaction
    /// whose compare checks the lock failed.
    #[error(
        "another replica holds the renewal of {name} now: this replica's write was rejected \
         (it held {key} at revision {held}, etcd has {})",
        found.map_or("no lock".to_owned(), |revision| format!("revision {revision}"))
    )]
    Fenced {
        /// Certificate name.
        name: String,
        /// The lock key.
        key: String,
        /// The lock's create revision this replica held (0: none).
        held: i64,
        /// The lock's create revision etcd had when the write was rejected.
        found: Option<i64>,
    },
    /// A value changed between reading it and writing it back, more often than retried.
    #[error("{key} changed while it was being updated; try again")]
    Conflict {
        /// The key.
        key: String,
    },
    /// A sealed value could not be sealed or opened.
    #[error(transparent)]
    Sealed(#[from] crate::store::sealed::SealError),
}

impl StoreError {
    /// An I/O error with its action and path.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        StoreError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
