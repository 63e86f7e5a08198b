//! Account key rollover (RFC 8555 §7.3.5) and deactivation (§7.3.6).
//!
//! Both change what the CA knows about the account, so each rewrites or retires the local
//! credentials file right after the CA has answered. A rollover writes the new credentials
//! atomically (temporary file, fsync, rename, 0600); a deactivation renames the file to
//! `*.deactivated`, so the next renewal registers a new account instead of presenting a
//! dead one, and the old file stays for the record.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    AcmeAccount, Handle, StoredAccount, account_file_name, load_or_create_account,
    write_private_file,
};
use crate::acme::error::retry_bad_nonce;
use crate::acme::{AcmeError, AcmeObserver, AcmeSettings, Stage};

/// What a key rollover changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRollover {
    /// The account URL, unchanged by the rollover.
    pub account_url: String,
    /// The RFC 7638 thumbprint of the key the account had.
    pub old_thumbprint: String,
    /// The RFC 7638 thumbprint of the key it has now.
    pub new_thumbprint: String,
    /// The credentials file, now holding the new key.
    pub credentials_path: PathBuf,
}

/// What a deactivation left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deactivation {
    /// The account URL the CA deactivated.
    pub account_url: String,
    /// Where the old credentials file was moved.
    pub retired_credentials: PathBuf,
}

/// Loads the account stored for `settings.directory` in `account_dir`; never creates one.
/// For commands that act on an existing account (key rollover, deactivation): a missing
/// credentials file is an error naming it.
pub async fn load_account(
    settings: &AcmeSettings,
    account_dir: &Path,
    observer: Arc<dyn AcmeObserver>,
) -> Result<AcmeAccount, AcmeError> {
    let credentials_path = account_dir.join(account_file_name(&settings.directory));
    if !credentials_path.exists() {
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
    load_or_create_account(settings, account_dir, observer).await
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
        let file_error = |source| AcmeError::AccountFile {
            path: self.credentials_path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(&stored)
            .map_err(|error| file_error(std::io::Error::other(error)))?;
        let account_dir = self.credentials_path.parent().unwrap_or(Path::new("."));
        if let Err(error) = write_private_file(account_dir, &self.credentials_path, &json) {
            // The CA already answers only to the new key: losing it loses the account. Try
            // a file beside the old one before giving up, and say where it is.
            let beside = self.credentials_path.with_extension("json.rollover");
            let saved = match write_private_file(account_dir, &beside, &json) {
                Ok(()) => format!("saved in {} instead; move it over", beside.display()),
                Err(_) => "not saved anywhere: register a new account".to_owned(),
            };
            let message = format!(
                "the CA switched to the new key, but {}: {error}; the new key is {saved}",
                self.credentials_path.display()
            );
            return Err(file_error(std::io::Error::new(
                error.source.kind(),
                message,
            )));
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
    /// moves its credentials file aside to `NAME.deactivated`.
    pub async fn deactivate(self) -> Result<Deactivation, AcmeError> {
        retry_bad_nonce!(self.acme().deactivate().await)
            .map_err(|error| AcmeError::from_acme(Stage::Account, error))?;
        let retired = self.credentials_path.with_extension("json.deactivated");
        let file_error = |source| AcmeError::AccountFile {
            path: self.credentials_path.clone(),
            source,
        };
        std::fs::rename(&self.credentials_path, &retired).map_err(file_error)?;
        if let Some(dir) = self.credentials_path.parent() {
            crate::disk::sync_dir(dir).map_err(|error| file_error(super::disk_to_io(error)))?;
        }
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
