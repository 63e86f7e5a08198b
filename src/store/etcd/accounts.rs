//! ACME account credentials in etcd ([`EtcdAccounts`]): `P/accounts/account-HASH` (the same
//! hash of the directory URL as the file name), sealed. Saving compares the revision this
//! replica last read, so two replicas registering at once keep one account: the loser's
//! save fails and its next attempt loads the winner's.

use std::path::PathBuf;
use std::sync::Arc;

use etcd_client::{Compare, CompareOp, TxnOp};

use crate::store::StoreError;
use crate::store::accounts::{AccountStore, Aside, AsideKind, account_file_name};
use crate::store::backend::Record;
use crate::store::etcd::Shared;
use crate::store::etcd::txn::{Entry, unchanged};

/// The account credentials of one installation (or of its dry runs) in etcd.
#[derive(Debug, Clone)]
pub struct EtcdAccounts {
    shared: Arc<Shared>,
    /// `P/accounts/` or `P/dry-run/accounts/`.
    prefix: String,
}

impl EtcdAccounts {
    pub(crate) fn new(shared: Arc<Shared>, dry_run: bool) -> EtcdAccounts {
        let prefix = shared.keys.accounts(dry_run);
        EtcdAccounts { shared, prefix }
    }

    /// `P/accounts/account-HASH` for `directory`.
    fn key(&self, directory: &str) -> String {
        let file = account_file_name(directory);
        let stem = file.strip_suffix(".json").unwrap_or(&file);
        format!("{}{stem}", self.prefix)
    }

    fn aside_key(&self, aside: Aside) -> String {
        let suffix = match aside.kind {
            AsideKind::Rollover => "rollover",
            AsideKind::Adopting => "adopting",
        };
        format!("{}.{suffix}", self.key(aside.directory))
    }

    /// The sealed document at `key`, opened.
    fn read(&self, key: &str) -> Result<Option<(Entry, Record)>, StoreError> {
        let Some(entry) = self.shared.get(key)? else {
            return Ok(None);
        };
        let bytes = self.shared.keyring.open(key, &entry.value)?;
        let record = Record {
            bytes,
            location: location(key),
        };
        Ok(Some((entry, record)))
    }

    fn remember(&self, key: &str, revision: i64) {
        let mut revisions = self
            .shared
            .account_revisions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        revisions.insert(key.to_owned(), revision);
    }

    fn remembered(&self, key: &str) -> Option<i64> {
        let revisions = self
            .shared
            .account_revisions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        revisions.get(key).copied()
    }
}

impl AccountStore for EtcdAccounts {
    fn account(&self, directory: &str) -> Result<Option<Record>, StoreError> {
        let key = self.key(directory);
        let read = self.read(&key)?;
        let revision = read.as_ref().map_or(0, |(entry, _)| entry.mod_revision);
        self.remember(&key, revision);
        Ok(read.map(|(_, record)| record))
    }

    /// Compares the revision [`account`](AccountStore::account) last read in this process
    /// (absence included); without a read, the save replaces whatever is there.
    fn save_account(&self, directory: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let key = self.key(directory);
        let compares = match self.remembered(&key) {
            Some(0) => vec![unchanged(&key, None)],
            Some(revision) => vec![Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                revision,
            )],
            None => Vec::new(),
        };
        let sealed = self.shared.keyring.seal(&key, bytes)?;
        let ops = vec![TxnOp::put(key.as_str(), sealed, None)];
        if !self.shared.transact(&key, compares, ops)? {
            return Err(StoreError::Conflict { key });
        }
        // The next save compares what this one wrote.
        if let Some(entry) = self.shared.get(&key)? {
            self.remember(&key, entry.mod_revision);
        }
        Ok(())
    }

    fn save_account_aside(&self, aside: Aside, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let key = self.aside_key(aside);
        let sealed = self.shared.keyring.seal(&key, bytes)?;
        self.shared.transact(
            &key,
            Vec::new(),
            vec![TxnOp::put(key.as_str(), sealed, None)],
        )?;
        Ok(location(&key))
    }

    fn account_aside(&self, aside: Aside) -> Result<Option<Record>, StoreError> {
        Ok(self.read(&self.aside_key(aside))?.map(|(_, record)| record))
    }

    fn remove_account_aside(&self, aside: Aside) -> Result<(), StoreError> {
        let key = self.aside_key(aside);
        self.shared
            .transact(&key, Vec::new(), vec![TxnOp::delete(key.as_str(), None)])?;
        Ok(())
    }

    fn retire_account(&self, directory: &str) -> Result<PathBuf, StoreError> {
        let key = self.key(directory);
        let retired = format!("{key}.deactivated");
        let Some((entry, record)) = self.read(&key)? else {
            return Err(StoreError::Etcd {
                action: "retire",
                key,
                reason: "no credentials are stored there".to_owned(),
            });
        };
        // Sealed again: the name is part of what a sealed value authenticates.
        let sealed = self.shared.keyring.seal(&retired, &record.bytes)?;
        let ops = vec![
            TxnOp::delete(key.as_str(), None),
            TxnOp::put(retired.as_str(), sealed, None),
        ];
        if !self
            .shared
            .transact(&key, vec![unchanged(&key, Some(&entry))], ops)?
        {
            return Err(StoreError::Conflict { key });
        }
        Ok(location(&retired))
    }

    fn account_location(&self, directory: &str) -> PathBuf {
        location(&self.key(directory))
    }
}

/// How a key is named to a person: `etcd:KEY`.
fn location(key: &str) -> PathBuf {
    PathBuf::from(format!("etcd:{key}"))
}
