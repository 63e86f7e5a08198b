//! Changes to the ACME account at one configured CA (`[acme]` or a `[ca.NAME]`): key
//! rollover and deactivation, each one audit line (with an empty `certificate`, as they
//! concern every certificate, and the CA named in its `detail`).

use time::OffsetDateTime;

use crate::acme::{
    AcmeAccount, AcmeError, AcmeSettings, Deactivation, KeyRollover, PollPolicy, PreflightSettings,
    RetryPolicy, load_account,
};
use crate::config::model::{AcmeConfig, DEFAULT_CA};
use crate::renew::Renewer;
use crate::store::{AuditEvent, Outcome, Step, StoreError};

/// Why an account change failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountAdminError {
    /// The default CA was asked for, but the configuration has no `[acme]` section.
    #[error("no [acme] section in the configuration; {}", choose_from(configured))]
    NoAcme {
        /// The CA names the configuration defines.
        configured: Vec<String>,
    },
    /// No CA of this name is configured.
    #[error("unknown CA {name:?}; {}", choose_from(configured))]
    UnknownCa {
        /// The name asked for.
        name: String,
        /// The CA names the configuration defines.
        configured: Vec<String>,
    },
    /// The CA refused, or the credentials could not be read or written.
    #[error(transparent)]
    Acme(#[from] AcmeError),
    /// The change happened but its audit line could not be written.
    #[error("the account changed, but the audit log could not be written: {0}")]
    Audit(#[source] StoreError),
}

impl Renewer {
    /// The ACME settings of the CA this renewer talks to (the configuration's `[acme]`
    /// section, or the CA a per-CA renewer was made for).
    pub(crate) fn acme_settings(&self) -> Option<AcmeSettings> {
        Some(acme_settings(self.acme.as_ref()?, self.retry))
    }

    /// Rolls the key of the account stored for the CA named `ca` ([`DEFAULT_CA`] for
    /// `[acme]`) over at that CA (RFC 8555 §7.3.5) and stores the new credentials; audited
    /// as `account_key_rollover` whether it worked or not.
    pub async fn roll_over_account_key(
        &self,
        ca: &str,
        now: OffsetDateTime,
    ) -> Result<KeyRollover, AccountAdminError> {
        let change = |account: AcmeAccount| async move { account.roll_over_key().await };
        self.change_account(ca, Step::AccountKeyRollover, now, change, |rollover| {
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

    /// Deactivates the account stored for the CA named `ca` ([`DEFAULT_CA`] for `[acme]`)
    /// at that CA (RFC 8555 §7.3.6) and moves its credentials aside; the next renewal at
    /// that CA registers a new account. Audited as `account_deactivate`.
    pub async fn deactivate_account(
        &self,
        ca: &str,
        now: OffsetDateTime,
    ) -> Result<Deactivation, AccountAdminError> {
        let change = |account: AcmeAccount| account.deactivate();
        self.change_account(ca, Step::AccountDeactivate, now, change, |deactivation| {
            format!(
                "account {} deactivated; credentials moved to {}",
                deactivation.account_url,
                deactivation.retired_credentials.display()
            )
        })
        .await
    }

    /// Loads the account stored for the CA named `ca`, applies `change` and writes one
    /// audit line for `step` naming the CA (with `describe`'s words when it worked, the
    /// error when loading or the change failed). An unknown name fails before any request
    /// and writes no audit line.
    async fn change_account<T, Change, Done>(
        &self,
        ca: &str,
        step: Step,
        now: OffsetDateTime,
        change: Change,
        describe: impl Fn(&T) -> String,
    ) -> Result<T, AccountAdminError>
    where
        Change: FnOnce(AcmeAccount) -> Done,
        Done: Future<Output = Result<T, AcmeError>>,
    {
        let acme = self.cas.settings(ca).ok_or_else(|| self.unknown_ca(ca))?;
        let settings = acme_settings(acme, self.retry);
        let result =
            match load_account(&settings, self.accounts.clone(), self.observer.clone()).await {
                Ok(account) => change(account).await,
                Err(error) => Err(error),
            };
        let at = format!("CA {ca} ({})", settings.directory);
        let detail = match &result {
            Ok(changed) => format!("{at}: {}", describe(changed)),
            Err(_) => at,
        };
        let detail = Some(detail);
        self.audit_account_step(step, now, &result, detail)?;
        Ok(result?)
    }

    /// Why no CA is named `ca`: [`DEFAULT_CA`] without `[acme]`, or a name not configured.
    fn unknown_ca(&self, ca: &str) -> AccountAdminError {
        let configured = self.cas.names().into_iter().map(str::to_owned).collect();
        if ca == DEFAULT_CA {
            AccountAdminError::NoAcme { configured }
        } else {
            AccountAdminError::UnknownCa {
                name: ca.to_owned(),
                configured,
            }
        }
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

/// The ACME client's settings for the CA `acme`.
fn acme_settings(acme: &AcmeConfig, retry: RetryPolicy) -> AcmeSettings {
    AcmeSettings {
        directory: acme.directory.clone(),
        contact: acme.contact.clone(),
        ca_file: acme.ca_file.clone(),
        eab: acme.eab.clone(),
        poll: PollPolicy {
            timeout: acme.poll_timeout,
            ..PollPolicy::default()
        },
        retry,
        preflight: PreflightSettings {
            resolver: acme.preflight_resolver,
            caa_identities: acme.caa_identities.clone(),
        },
    }
}

/// How an error about a CA name goes on: the names to choose from.
fn choose_from(configured: &[String]) -> String {
    if configured.is_empty() {
        "the configuration defines no CA ([acme] or [ca.NAME])".to_owned()
    } else {
        format!(
            "choose one of the configured CAs with --ca NAME: {}",
            configured.join(", ")
        )
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
            .roll_over_account_key(DEFAULT_CA, OffsetDateTime::UNIX_EPOCH)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains(&expected.display().to_string()),
            "{error}"
        );
    }

    /// A configuration with `[ca.backup]` and, when `with_acme`, `[acme]` (no CA listens).
    fn two_cas(with_acme: bool) -> (tempfile::TempDir, Renewer) {
        let state_dir = tempfile::tempdir().unwrap();
        let mut text = format!("state_dir = {:?}\n", state_dir.path().display().to_string());
        if with_acme {
            text += "[acme]\ndirectory = \"https://127.0.0.1:9/dir\"\n";
        }
        text += "[ca.backup]\ndirectory = \"https://127.0.0.1:9/backup\"\n";
        let config = crate::config::parse(&text, None).unwrap_or_else(|e| panic!("{e}"));
        (state_dir, Renewer::new(&config))
    }

    #[tokio::test]
    async fn an_unknown_ca_name_is_refused_naming_the_configured_ones() {
        let (_state_dir, renewer) = two_cas(true);
        let error = renewer
            .roll_over_account_key("nosuch", OffsetDateTime::UNIX_EPOCH)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown CA \"nosuch\"; choose one of the configured CAs with --ca NAME: acme, backup"
        );
    }

    #[tokio::test]
    async fn without_acme_the_default_ca_is_refused_naming_the_configured_ones() {
        let (_state_dir, renewer) = two_cas(false);
        let error = renewer
            .deactivate_account(DEFAULT_CA, OffsetDateTime::UNIX_EPOCH)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "no [acme] section in the configuration; choose one of the configured CAs with \
             --ca NAME: backup"
        );
    }
}
