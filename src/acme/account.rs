//! The ACME account: created once per directory URL, its credentials kept by an
//! [`AccountStore`] (the state directory's, a 0600 file) and reused on every later start.
//!
//! The store keys credentials by the directory URL, so pointing certinel at a different CA
//! (or at staging instead of production) creates a new account instead of presenting the
//! old key to the wrong server. This module does no file I/O: it (de)serialises the
//! credentials document and hands it to the store.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::acme::error::retry_bad_nonce;
use crate::acme::http::{self, AcmeObserver};
use crate::acme::{AcmeError, AcmeSettings, PollPolicy, Stage};
use crate::store::{AccountStore, Record, StoreError};

mod adopt;
mod foreign_key;
mod key;

pub use crate::store::account_file_name;
pub use adopt::{AdoptedAccount, ForeignAccount, adopt_account};
pub use foreign_key::{ForeignKey, ForeignKeyError, ForeignKeyKind};
pub use key::{Deactivation, KeyRollover, load_account};

/// A usable account on one ACME CA.
#[derive(Clone)]
pub struct AcmeAccount {
    /// Shared by every clone, so a rebuilt handle serves every later order.
    handle: Arc<RwLock<Handle>>,
    /// The account URL (stable across rebuilt handles).
    url: String,
    /// The credentials as JSON, to rebuild the handle; never logged.
    credentials: Arc<serde_json::Value>,
    client: http::InstrumentedClient,
    /// Set when the CA created an order without echoing `replaces`: no more `replaces` to
    /// it while the process runs.
    replaces_refused: Arc<AtomicBool>,
    directory: String,
    /// Where the credentials are kept; rollover and deactivation write through it.
    accounts: Arc<dyn AccountStore>,
    /// Where the store says they live, for messages.
    credentials_path: PathBuf,
    created: bool,
    poll: PollPolicy,
    preflight: crate::acme::PreflightSettings,
}

/// instant-acme's account and what it saw in the directory it fetched when built: it
/// checks `replaces` against that copy, never against a newer directory.
struct Handle {
    account: Account,
    knows_renewal_info: bool,
}

impl AcmeAccount {
    /// The account URL the CA assigned (stable across restarts).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The directory URL this account belongs to.
    pub fn directory(&self) -> &str {
        &self.directory
    }

    /// Where the credentials are kept (the file, for the state directory's store).
    pub fn credentials_path(&self) -> &Path {
        &self.credentials_path
    }

    /// Whether this call created the account (`false`: it was loaded from the store).
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// What the CA's directory advertised when it was last fetched (renewal information,
    /// profiles).
    pub fn directory_facts(&self) -> crate::acme::DirectoryFacts {
        self.client.directory_facts()
    }

    /// The CA's clock minus ours, in seconds, from the `Date` header of its last answer.
    pub fn clock_skew(&self) -> Option<f64> {
        self.client.clock_skew()
    }

    pub(crate) fn http_client(&self) -> &http::InstrumentedClient {
        &self.client
    }

    pub(crate) fn acme(&self) -> Account {
        self.read_handle().account.clone()
    }

    /// Whether an order may carry `replaces`: the CA advertised `renewalInfo` in the last
    /// directory fetched and in the one instant-acme checks orders against.
    pub fn sends_replaces(&self) -> bool {
        !self.replaces_refused.load(Ordering::Relaxed)
            && self.read_handle().knows_renewal_info
            && self.directory_facts().renewal_info.is_some()
    }

    /// No more `replaces` to this CA while the process runs.
    pub(crate) fn stop_sending_replaces(&self) {
        self.replaces_refused.store(true, Ordering::Relaxed);
    }

    /// Rebuilds instant-acme's account when the directory fetched last advertises
    /// `renewalInfo` but the one the account was built with did not (a CA that started
    /// offering ARI while certinel ran); otherwise every order with `replaces` would fail
    /// until a restart.
    pub(crate) async fn reload_when_renewal_info_appeared(&self) -> Result<(), AcmeError> {
        if self.read_handle().knows_renewal_info || self.directory_facts().renewal_info.is_none() {
            return Ok(());
        }
        let credentials: AccountCredentials =
            serde_json::from_value(Value::clone(&self.credentials)).map_err(|error| {
                AcmeError::Invalid {
                    stage: Stage::Account,
                    message: format!("account credentials: {error}"),
                }
            })?;
        let account = Account::builder_with_http(Box::new(self.client.clone()))
            .from_credentials(credentials)
            .await
            .map_err(|error| AcmeError::from_acme(Stage::Account, error))?;
        // Building fetched the directory again: the facts now say what the account saw.
        let knows_renewal_info = self.directory_facts().renewal_info.is_some();
        tracing::info!(
            directory = %self.directory,
            knows_renewal_info,
            "the CA now offers renewal information: reloaded the ACME account"
        );
        *self
            .handle
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Handle {
            account,
            knows_renewal_info,
        };
        Ok(())
    }

    /// The handle; a panic while it was replaced leaves a usable value, so poisoning is
    /// ignored.
    fn read_handle(&self) -> std::sync::RwLockReadGuard<'_, Handle> {
        self.handle
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn poll_policy(&self) -> &PollPolicy {
        &self.poll
    }

    pub(crate) fn preflight_settings(&self) -> &crate::acme::PreflightSettings {
        &self.preflight
    }
}

impl fmt::Debug for AcmeAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeAccount")
            .field("url", &self.url())
            .field("directory", &self.directory)
            .field("credentials_path", &self.credentials_path)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// The credentials document the store keeps.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

impl StoredAccount {
    /// The document as stored: pretty JSON.
    fn to_bytes(&self, location: &Path) -> Result<Vec<u8>, AcmeError> {
        serde_json::to_vec_pretty(self).map_err(|error| AcmeError::AccountFile {
            path: location.to_owned(),
            source: std::io::Error::other(error),
        })
    }
}

/// Loads the account for `settings.directory` from `accounts` (the renewer's are the
/// state directory's, `Store::accounts`), or creates it on the CA (with EAB when
/// configured) and saves its credentials there (0600 in the state directory).
///
/// A shared store (replicas over etcd) can see two replicas register at once: the one
/// whose save loses the race ([`StoreError::Conflict`]) uses the account the other saved,
/// and its own registration stays unused at the CA.
///
/// Every request this account makes later is reported to `observer`.
pub async fn load_or_create_account(
    settings: &AcmeSettings,
    accounts: Arc<dyn AccountStore>,
    observer: Arc<dyn AcmeObserver>,
) -> Result<AcmeAccount, AcmeError> {
    let client = build_client(settings, observer)?;
    let credentials_path = accounts.account_location(&settings.directory);
    // Twice at most: a lost race is followed by a read that finds the winner's account.
    let mut raced = false;
    loop {
        let stored = accounts
            .account(&settings.directory)
            .map_err(|error| store_error(&credentials_path, error))?;
        let (account, credentials, created) = match stored {
            Some(record) => {
                let (account, credentials) = open_stored(settings, &client, record).await?;
                (account, credentials, false)
            }
            None => match create_account(settings, &client, &*accounts).await {
                Ok((account, credentials)) => (account, credentials, true),
                Err(Created::Raced { error, .. }) if !raced => {
                    raced = true;
                    tracing::info!(
                        error = %error,
                        "another process saved an ACME account first; using that one"
                    );
                    continue;
                }
                Err(failure) => return Err(failure.into_error()),
            },
        };
        return Ok(assemble(
            account,
            credentials,
            client,
            settings,
            accounts,
            created,
        ));
    }
}

/// The account whose credentials `record` holds, and those credentials as JSON.
async fn open_stored(
    settings: &AcmeSettings,
    client: &http::InstrumentedClient,
    record: Record,
) -> Result<(Account, Value), AcmeError> {
    let credentials_path = record.location;
    let stored: StoredAccount =
        serde_json::from_slice(&record.bytes).map_err(|error| AcmeError::AccountFile {
            path: credentials_path.clone(),
            source: std::io::Error::other(error),
        })?;
    if stored.directory != settings.directory {
        return Err(AcmeError::Invalid {
            stage: Stage::Account,
            message: format!(
                "{} belongs to {}, not {}",
                credentials_path.display(),
                stored.directory,
                settings.directory
            ),
        });
    }
    let credentials = credentials_json(&stored.credentials, &credentials_path)?;
    let account = Account::builder_with_http(Box::new(client.clone()))
        .from_credentials(stored.credentials)
        .await
        .map_err(|error| AcmeError::from_acme(Stage::Account, error))?;
    Ok((account, credentials))
}

/// The account handle around a freshly built or loaded instant-acme `Account`.
fn assemble(
    account: Account,
    credentials: Value,
    client: http::InstrumentedClient,
    settings: &AcmeSettings,
    accounts: Arc<dyn AccountStore>,
    created: bool,
) -> AcmeAccount {
    // Building the account fetched the directory: the facts say what instant-acme saw.
    let knows_renewal_info = client.directory_facts().renewal_info.is_some();
    AcmeAccount {
        url: account.id().to_owned(),
        handle: Arc::new(RwLock::new(Handle {
            account,
            knows_renewal_info,
        })),
        credentials: Arc::new(credentials),
        client,
        replaces_refused: Arc::new(AtomicBool::new(false)),
        directory: settings.directory.clone(),
        credentials_path: accounts.account_location(&settings.directory),
        accounts,
        created,
        poll: settings.poll,
        preflight: settings.preflight.clone(),
    }
}

/// Registers a new account for `settings.directory` even though credentials may be
/// stored, and replaces them atomically (mode 0600). For a CA that no longer knows the
/// stored account (`accountDoesNotExist`, as after a restart of a test CA or a reset of a
/// private one).
pub async fn register_new_account(
    settings: &AcmeSettings,
    accounts: Arc<dyn AccountStore>,
    observer: Arc<dyn AcmeObserver>,
) -> Result<AcmeAccount, AcmeError> {
    let client = build_client(settings, observer)?;
    let (account, credentials) = create_account(settings, &client, &*accounts)
        .await
        .map_err(Created::into_error)?;
    Ok(assemble(
        account,
        credentials,
        client,
        settings,
        accounts,
        true,
    ))
}

/// The HTTP client for `settings`, its failure worded as an account problem.
fn build_client(
    settings: &AcmeSettings,
    observer: Arc<dyn AcmeObserver>,
) -> Result<http::InstrumentedClient, AcmeError> {
    http::build_client(
        &settings.directory,
        settings.ca_file.as_deref(),
        settings.retry,
        observer,
    )
    .map_err(|error| AcmeError::Invalid {
        stage: Stage::Account,
        message: match &settings.ca_file {
            Some(path) => format!("ca_file {}: {error}", path.display()),
            None => format!("TLS client: {error}"),
        },
    })
}

/// Creates an account on the CA (with EAB when configured) and saves its credentials in
/// `accounts` (atomically; mode 0600). Returns the account and its credentials as JSON
/// (kept to rebuild the handle).
/// Why [`create_account`] did not leave a saved account.
enum Created {
    /// Registering or saving failed.
    Failed(AcmeError),
    /// The account was registered, but another process saved one for the same directory
    /// between this one's read and its save.
    Raced {
        /// Where the credentials were to be saved.
        path: PathBuf,
        /// The store's [`StoreError::Conflict`].
        error: StoreError,
    },
}

impl From<AcmeError> for Created {
    fn from(error: AcmeError) -> Created {
        Created::Failed(error)
    }
}

impl Created {
    /// The failure as the account's error.
    fn into_error(self) -> AcmeError {
        match self {
            Created::Failed(error) => error,
            Created::Raced { path, error } => store_error(&path, error),
        }
    }
}

async fn create_account(
    settings: &AcmeSettings,
    client: &http::InstrumentedClient,
    accounts: &dyn AccountStore,
) -> Result<(Account, Value), Created> {
    let credentials_path = accounts.account_location(&settings.directory);
    let eab = settings.eab.as_ref().map(decode_eab).transpose()?;
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let new_account = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) = retry_bad_nonce!(
        Account::builder_with_http(Box::new(client.clone()))
            .create(&new_account, settings.directory.clone(), eab.as_ref())
            .await
    )
    .map_err(|error| AcmeError::from_acme(Stage::Account, error))?;
    let credentials_value = credentials_json(&credentials, &credentials_path)?;
    let stored = StoredAccount {
        directory: settings.directory.clone(),
        credentials,
    };
    match accounts.save_account(&settings.directory, &stored.to_bytes(&credentials_path)?) {
        Ok(()) => {}
        Err(error @ StoreError::Conflict { .. }) => {
            return Err(Created::Raced {
                path: credentials_path,
                error,
            });
        }
        Err(error) => return Err(store_error(&credentials_path, error).into()),
    }
    tracing::info!(
        account = account.id(),
        directory = %settings.directory,
        credentials = %credentials_path.display(),
        "created ACME account"
    );
    Ok((account, credentials_value))
}

/// The credentials as JSON, kept to rebuild the account handle.
fn credentials_json(credentials: &AccountCredentials, path: &Path) -> Result<Value, AcmeError> {
    serde_json::to_value(credentials).map_err(|error| AcmeError::AccountFile {
        path: path.to_owned(),
        source: std::io::Error::other(error),
    })
}

fn decode_eab(eab: &crate::cert::Eab) -> Result<ExternalAccountKey, AcmeError> {
    let text = eab.hmac_key.trim();
    let key = URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(text))
        .map_err(|error| AcmeError::Invalid {
            stage: Stage::Account,
            message: format!("EAB key for {} is not base64url: {error}", eab.kid),
        })?;
    Ok(ExternalAccountKey::new(eab.kid.clone(), &key))
}

/// A store failure about the credentials at `location`, as [`AcmeError::AccountFile`]:
/// the `io::Error` it carries keeps the operating system's kind and the store's words (the
/// step and the path).
pub(super) fn store_error(location: &Path, error: StoreError) -> AcmeError {
    AcmeError::AccountFile {
        path: location.to_owned(),
        source: std::io::Error::new(io_kind(&error), error),
    }
}

/// The operating system's error kind behind a store failure (`Other` when none).
fn io_kind(error: &StoreError) -> std::io::ErrorKind {
    match error {
        StoreError::Io { source, .. } => source.kind(),
        _ => std::io::ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eab_key_accepts_base64url_with_or_without_padding() {
        let eab = |key: &str| crate::cert::Eab {
            kid: "kid-1".into(),
            hmac_key: key.into(),
        };
        assert!(
            decode_eab(&eab(
                "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
            ))
            .is_ok()
        );
        assert!(decode_eab(&eab("YWJj")).is_ok());
        assert!(decode_eab(&eab("YWI=")).is_ok());
        let error = decode_eab(&eab("not base64!")).err().unwrap();
        assert_eq!(
            (error.stage(), error.problem()),
            (Stage::Account, "invalid")
        );
    }
}
