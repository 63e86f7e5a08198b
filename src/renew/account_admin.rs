//! Changes to the renewer's ACME account itself: key rollover and deactivation, each one
//! audit line (with an empty `certificate`, as they concern every certificate).

use time::OffsetDateTime;

use crate::acme::{
    AcmeAccount, AcmeError, AcmeSettings, Deactivation, Eab, KeyRollover, PollPolicy,
    PreflightSettings, load_account,
};
use crate::renew::Renewer;
use crate::store::{AuditEvent, Outcome, Step, StoreError};

/// Why an account change failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountAdminError {
    /// The configuration has no `[acme]` section.
    #[error("no [acme] section in the configuration")]
    NoAcme,
    /// The CA refused, or the credentials could not be read or written.
    #[error(transparent)]
    Acme(#[from] AcmeError),
    /// The change happened but its audit line could not be written.
    #[error("the account changed, but the audit log could not be written: {0}")]
    Audit(#[source] StoreError),
}

impl Renewer {
    /// The ACME settings of the configuration's `[acme]` section.
    pub(crate) fn acme_settings(&self) -> Option<AcmeSettings> {
        let acme = self.acme.as_ref()?;
        Some(AcmeSettings {
            directory: acme.directory.clone(),
            contact: acme.contact.clone(),
            ca_file: acme.ca_file.clone(),
            eab: acme.eab.as_ref().map(|eab| Eab {
                kid: eab.kid.clone(),
                hmac_key: eab.hmac_key.clone(),
            }),
            poll: PollPolicy {
                timeout: acme.poll_timeout,
                ..PollPolicy::default()
            },
            retry: self.retry,
            preflight: PreflightSettings {
                resolver: acme.preflight_resolver,
                caa_identities: acme.caa_identities.clone(),
            },
        })
    }

    /// Rolls the stored account's key over at the CA (RFC 8555 §7.3.5) and stores the new
    /// credentials; audited as `account_key_rollover` whether it worked or not.
    pub async fn roll_over_account_key(
        &self,
        now: OffsetDateTime,
    ) -> Result<KeyRollover, AccountAdminError> {
        let change = |account: AcmeAccount| async move { account.roll_over_key().await };
        self.change_account(Step::AccountKeyRollover, now, change, |rollover| {
            format!(
                "account {}: key {} replaced by {} in {}",
                rollover.account_url,
                rollover.old_thumbprint,
                rollover.new_thumbprint,
                rollover.credentials_path.display()
            )
        })
        .await
    }

    /// Deactivates the stored account at the CA (RFC 8555 §7.3.6) and moves its
    /// credentials aside; the next renewal registers a new account. Audited as
    /// `account_deactivate`.
    pub async fn deactivate_account(
        &self,
        now: OffsetDateTime,
    ) -> Result<Deactivation, AccountAdminError> {
        let change = |account: AcmeAccount| account.deactivate();
        self.change_account(Step::AccountDeactivate, now, change, |deactivation| {
            format!(
                "account {} deactivated; credentials moved to {}",
                deactivation.account_url,
                deactivation.retired_credentials.display()
            )
        })
        .await
    }

    /// Loads the stored account, applies `change` and writes one audit line for `step`
    /// (with `describe`'s words when it worked, the error when loading or the change
    /// failed).
    async fn change_account<T, Change, Done>(
        &self,
        step: Step,
        now: OffsetDateTime,
        change: Change,
        describe: impl Fn(&T) -> String,
    ) -> Result<T, AccountAdminError>
    where
        Change: FnOnce(AcmeAccount) -> Done,
        Done: Future<Output = Result<T, AcmeError>>,
    {
        let settings = self.acme_settings().ok_or(AccountAdminError::NoAcme)?;
        let result =
            match load_account(&settings, self.accounts.clone(), self.observer.clone()).await {
                Ok(account) => change(account).await,
                Err(error) => Err(error),
            };
        let detail = result.as_ref().ok().map(describe);
        self.audit_account_step(step, now, &result, detail)?;
        Ok(result?)
    }

    fn audit_account_step<T>(
        &self,
        step: Step,
        now: OffsetDateTime,
        result: &Result<T, AcmeError>,
        detail: Option<String>,
    ) -> Result<(), AccountAdminError> {
        self.store
            .append_audit(&AuditEvent {
                time: now,
                certificate: String::new(),
                version: None,
                serial: None,
                step,
                outcome: match result {
                    Ok(_) => Outcome::Ok,
                    Err(_) => Outcome::Error,
                },
                error: result.as_ref().err().map(ToString::to_string),
                detail,
            })
            .map_err(AccountAdminError::Audit)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{FsStore, Store};

    #[tokio::test]
    async fn an_injected_store_keeps_the_account_credentials_too() {
        let configured = tempfile::tempdir().unwrap();
        let injected = tempfile::tempdir().unwrap();
        let text = format!(
            "state_dir = {:?}\n[acme]\ndirectory = \"https://127.0.0.1:9/dir\"\n",
            configured.path().display().to_string()
        );
        let config = crate::config::parse(&text, None).unwrap();
        let store = FsStore::new(injected.path());
        let expected = store.accounts().account_location("https://127.0.0.1:9/dir");
        let renewer = Renewer::new(&config).with_store(Arc::new(store));
        // No credentials in the injected store: the error names where they were looked
        // for, before any request to the CA.
        let error = renewer
            .roll_over_account_key(OffsetDateTime::UNIX_EPOCH)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains(&expected.display().to_string()),
            "{error}"
        );
    }
}
