//! The renewer's ACME account: loaded (or created) once and shared by every renewal, and
//! replaced by a newly registered one when the CA says it no longer knows it.

use std::sync::Mutex;

use super::Run;
use crate::acme::{
    AcmeAccount, AcmeError, AcmeSettings, Stage as AcmeStage, load_or_create_account,
    register_new_account,
};
use crate::renew::RenewError;
use crate::store::Step;

/// The account of one renewer: empty until first used, emptied when the CA forgets it.
#[derive(Default)]
pub(crate) struct AccountCache {
    current: Mutex<Option<AcmeAccount>>,
    /// Held while an account is loaded or registered, so concurrent renewals of several
    /// certificates wait for one account instead of each creating their own.
    loading: tokio::sync::Mutex<()>,
}

impl AccountCache {
    /// The account, if one is loaded. Never does I/O.
    pub(crate) fn get(&self) -> Option<AcmeAccount> {
        lock(&self.current).clone()
    }

    fn set(&self, account: Option<AcmeAccount>) {
        *lock(&self.current) = account;
    }
}

/// Locks `mutex`; a panic elsewhere while it was held leaves a plain `Option` that is still
/// usable, so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Run<'_> {
    /// The account, loaded (or created) once per renewer; a failure is audited and counted.
    pub(crate) async fn account(&self) -> Result<AcmeAccount, RenewError> {
        self.renewer.acme.as_ref().ok_or(RenewError::NoAcme)?;
        match self.load_account().await {
            Ok(account) => Ok(account),
            Err(source) => Err(self.account_failure(source)),
        }
    }

    /// Audits and counts a failure to load or register the account.
    fn account_failure(&self, source: AcmeError) -> RenewError {
        let error = RenewError::Acme {
            name: self.name().to_owned(),
            source,
        };
        self.record(Step::Begin, None, None, Some(&error));
        self.count_failure(error)
    }

    /// The account, loaded (or created) once per renewer, without auditing a failure.
    pub(crate) async fn load_account(&self) -> Result<AcmeAccount, AcmeError> {
        let cache = &self.renewer.account;
        if let Some(account) = cache.get() {
            return Ok(account);
        }
        let settings = self.acme_settings()?;
        let _loading = cache.loading.lock().await;
        if let Some(account) = cache.get() {
            return Ok(account);
        }
        let account = load_or_create_account(
            &settings,
            self.renewer.accounts.clone(),
            self.renewer.observer.clone(),
        )
        .await?;
        cache.set(Some(account.clone()));
        Ok(account)
    }

    /// After the CA answered `accountDoesNotExist` (`cause`): forgets the cached account,
    /// registers a new one (its stored credentials replaced atomically, 0600), audits it. A
    /// failed registration is audited and counted.
    pub(crate) async fn reregister(&self, cause: &RenewError) -> Result<(), RenewError> {
        let cache = &self.renewer.account;
        let _loading = cache.loading.lock().await;
        let forgotten = cache.get().map(|account| account.url().to_owned());
        cache.set(None);
        tracing::warn!(
            account = forgotten.as_deref().unwrap_or("unknown"),
            error = %cause,
            "the CA no longer knows the ACME account; registering a new one"
        );
        let registered = match self.acme_settings() {
            Ok(settings) => {
                register_new_account(
                    &settings,
                    self.renewer.accounts.clone(),
                    self.renewer.observer.clone(),
                )
                .await
            }
            Err(error) => Err(error),
        };
        match registered {
            Ok(account) => {
                let detail = format!(
                    "the CA no longer knew account {}; registered {} and replaced {}",
                    forgotten.as_deref().unwrap_or("(not loaded)"),
                    account.url(),
                    account.credentials_path().display()
                );
                self.record_with_detail(Step::Begin, None, None, None, Some(detail));
                cache.set(Some(account));
                Ok(())
            }
            Err(source) => Err(self.account_failure(source)),
        }
    }

    fn acme_settings(&self) -> Result<AcmeSettings, AcmeError> {
        self.renewer
            .acme_settings()
            .ok_or_else(|| AcmeError::Invalid {
                stage: AcmeStage::Account,
                message: "no [acme] section in the configuration".into(),
            })
    }
}
