//! Account key rollover (RFC 8555 §7.3.5) and deactivation (§7.3.6).
//!
//! Both change what the CA knows about the account, so each replaces or retires the stored
//! credentials right after the CA has answered. A rollover replaces them atomically
//! ([`AccountStore::save_account`]); a deactivation retires them
//! ([`AccountStore::retire_account`]: the file becomes `*.deactivated`), so the next
//! renewal registers a new account instead of presenting a dead one, and the old
//! credentials stay for the record.

use std::path::PathBuf;
use std::sync::Arc;

use super::{AcmeAccount, Handle, StoredAccount, io_kind, load_or_create_account, store_error};
use crate::acme::error::retry_bad_nonce;
use crate::acme::{AcmeError, AcmeObserver, AcmeSettings, Stage};
use crate::store::{AccountStore, Aside};

/// What a key rollover changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRollover {
    /// The account URL, unchanged by the rollover.
    pub account_url: String,
    /// The RFC 7638 thumbprint of the key the account had.
    pub old_thumbprint: String,
    /// The RFC 7638 thumbprint of the key it has now.
    pub new_thumbprint: String,
    /// Where the credentials are kept, now holding the new key.
    pub credentials_path: PathBuf,
}

/// What a deactivation left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deactivation {
    /// The account URL the CA deactivated.
    pub account_url: String,
    /// Where the old credentials were moved.
    pub retired_credentials: PathBuf,
}

/// Loads the account stored for `settings.directory` in `accounts`; never creates one.
/// For commands that act on an existing account (key rollover, deactivation): missing
/// credentials are an error naming where they were looked for.
pub async fn load_account(
    settings: &AcmeSettings,
    accounts: Arc<dyn AccountStore>,
    observer: Arc<dyn AcmeObserver>,
) -> Result<AcmeAccount, AcmeError> {
    let credentials_path = accounts.account_location(&settings.directory);
    let stored = accounts
        .account(&settings.directory)
        .map_err(|error| store_error(&credentials_path, error))?;
    if stored.is_none() {
        return Err(AcmeError::Invalid {
            stage: Stage::Account,
            message: format!(
                "no account for {} in {}: nothing to change (certinel registers one at the \
                 first renewal)",
                settings.directory,
                credentials_path.display()
            ),
        });
    }
    load_or_create_account(settings, accounts, observer).await
}

impl AcmeAccount {
    /// Replaces the account key with a newly generated P-256 key at the CA, then stores
    /// the new credentials in place of the old ones. This handle uses the new key from
    /// now on.
    ///
    /// The CA switches keys when it answers; if the process dies before the file is
    /// renamed (microseconds later), the stored key is the old, dead one and the account
    /// must be recovered by registering a new one.
    pub async fn roll_over_key(&self) -> Result<KeyRollover, AcmeError> {
        let mut account = self.acme();
        let old_thumbprint = account.key_thumbprint().to_owned();
        let credentials = retry_bad_nonce!(account.update_key().await)
            .map_err(|error| AcmeError::from_acme(Stage::Account, error))?;
        let stored = StoredAccount {
            directory: self.directory.clone(),
            credentials,
        };
        let json = stored.to_bytes(&self.credentials_path)?;
        if let Err(error) = self.accounts.save_account(&self.directory, &json) {
            // The CA already answers only to the new key: losing it loses the account. Try
            // beside the old credentials before giving up, and say where they are.
            let saved = match self
                .accounts
                .save_account_aside(Aside::rollover(&self.directory), &json)
            {
                Ok(beside) => format!("saved in {} instead; move it over", beside.display()),
                Err(_) => "not saved anywhere: register a new account".to_owned(),
            };
            let message = format!(
                "the CA switched to the new key, but {}: {error}; the new key is {saved}",
                self.credentials_path.display()
            );
            return Err(AcmeError::AccountFile {
                path: self.credentials_path.clone(),
                source: std::io::Error::new(io_kind(&error), message),
            });
        }
        let new_thumbprint = account.key_thumbprint().to_owned();
        let knows_renewal_info = self.read_handle().knows_renewal_info;
        *self
            .handle
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Handle {
            account,
            knows_renewal_info,
        };
        tracing::info!(
            account = %self.url,
            directory = %self.directory,
            %old_thumbprint,
            %new_thumbprint,
            "rolled the ACME account key over"
        );
        Ok(KeyRollover {
            account_url: self.url.clone(),
            old_thumbprint,
            new_thumbprint,
            credentials_path: self.credentials_path.clone(),
        })
    }

    /// Deactivates the account at the CA (permanently: it can never order again) and
    /// retires its stored credentials (the file moves aside to `NAME.deactivated`).
    pub async fn deactivate(self) -> Result<Deactivation, AcmeError> {
        retry_bad_nonce!(self.acme().deactivate().await)
            .map_err(|error| AcmeError::from_acme(Stage::Account, error))?;
        let retired = self
            .accounts
            .retire_account(&self.directory)
            .map_err(|error| store_error(&self.credentials_path, error))?;
        tracing::info!(
            account = %self.url,
            directory = %self.directory,
            retired = %retired.display(),
            "deactivated the ACME account"
        );
        Ok(Deactivation {
            account_url: self.url,
            retired_credentials: retired,
        })
    }
}
