//! The ACME account: created once per directory URL, its credentials kept in a 0600 file
//! under the state directory and reused on every later start.
//!
//! The file name is derived from a hash of the directory URL, so pointing certinel at a
//! different CA (or at staging instead of production) creates a new account instead of
//! presenting the old key to the wrong server.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::acme::error::retry_bad_nonce;
use crate::acme::http::{self, AcmeObserver};
use crate::acme::{AcmeError, AcmeSettings, PollPolicy, Stage};
use crate::disk::{DiskError, ReadCappedError};

mod adopt;
mod foreign_key;
mod key;

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

    /// The file holding the credentials.
    pub fn credentials_path(&self) -> &Path {
        &self.credentials_path
    }

    /// Whether this call created the account (`false`: it was loaded from the file).
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

/// What the credentials file holds.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// The credentials file name for `directory`: `account-` and the first 16 hex digits of
/// the SHA-256 of the URL.
pub fn account_file_name(directory: &str) -> String {
    let digest = Sha256::digest(directory.as_bytes());
    let hex: String = digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("account-{hex}.json")
}

/// Loads the account for `settings.directory` from `account_dir` (the renewer's is
/// `state_dir/acme/`), or creates it on the CA (with EAB when configured) and saves its
/// credentials there with mode 0600, in a directory kept 0700.
///
/// Every request this account makes later is reported to `observer`.
pub async fn load_or_create_account(
    settings: &AcmeSettings,
    account_dir: &Path,
    observer: Arc<dyn AcmeObserver>,
) -> Result<AcmeAccount, AcmeError> {
    let client = build_client(settings, observer)?;
    let credentials_path = account_dir.join(account_file_name(&settings.directory));
    let file_error = |path: &Path| {
        let path = path.to_owned();
        move |source| AcmeError::AccountFile { path, source }
    };

    // The directory holds account keys: 0700 even when someone widened it since.
    crate::disk::ensure_private_dir(account_dir)
        .map_err(|error| file_error(account_dir)(disk_to_io(error)))?;
    // A process killed while writing credentials leaves its temporary file behind.
    for removed in crate::disk::remove_stale_temporaries(account_dir)
        .map_err(|error| file_error(account_dir)(disk_to_io(error)))?
    {
        tracing::info!(file = %removed.display(), "removed an interrupted credentials write");
    }
    let read = crate::disk::read_capped(&credentials_path, MAX_CREDENTIALS_BYTES);
    let (account, credentials, created) = match read {
        Ok(bytes) => {
            let stored: StoredAccount = serde_json::from_slice(&bytes)
                .map_err(|error| file_error(&credentials_path)(std::io::Error::other(error)))?;
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
            (account, credentials, false)
        }
        Err(ReadCappedError::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => {
            let (account, credentials) =
                create_account(settings, &client, &credentials_path).await?;
            (account, credentials, true)
        }
        Err(ReadCappedError::Io(error)) => return Err(file_error(&credentials_path)(error)),
        Err(too_large) => {
            return Err(file_error(&credentials_path)(std::io::Error::other(
                too_large,
            )));
        }
    };
    Ok(assemble(
        account,
        credentials,
        client,
        settings,
        credentials_path,
        created,
    ))
}

/// The account handle around a freshly built or loaded instant-acme `Account`.
fn assemble(
    account: Account,
    credentials: Value,
    client: http::InstrumentedClient,
    settings: &AcmeSettings,
    credentials_path: PathBuf,
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
        credentials_path,
        created,
        poll: settings.poll,
        preflight: settings.preflight.clone(),
    }
}

/// Registers a new account for `settings.directory` even though a credentials file may
/// exist, and replaces that file atomically (mode 0600). For a CA that no longer knows the
/// stored account (`accountDoesNotExist`, as after a restart of a test CA or a reset of a
/// private one).
pub async fn register_new_account(
    settings: &AcmeSettings,
    account_dir: &Path,
    observer: Arc<dyn AcmeObserver>,
) -> Result<AcmeAccount, AcmeError> {
    let client = build_client(settings, observer)?;
    let credentials_path = account_dir.join(account_file_name(&settings.directory));
    let (account, credentials) = create_account(settings, &client, &credentials_path).await?;
    Ok(assemble(
        account,
        credentials,
        client,
        settings,
        credentials_path,
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

/// Creates an account on the CA (with EAB when configured) and writes its credentials to
/// `credentials_path` (temporary file, fsync, rename; mode 0600). Returns the account and
/// its credentials as JSON (kept to rebuild the handle).
async fn create_account(
    settings: &AcmeSettings,
    client: &http::InstrumentedClient,
    credentials_path: &Path,
) -> Result<(Account, Value), AcmeError> {
    let file_error = |source| AcmeError::AccountFile {
        path: credentials_path.to_owned(),
        source,
    };
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
    let credentials_value = credentials_json(&credentials, credentials_path)?;
    let stored = StoredAccount {
        directory: settings.directory.clone(),
        credentials,
    };
    let json = serde_json::to_vec_pretty(&stored)
        .map_err(|error| file_error(std::io::Error::other(error)))?;
    let account_dir = credentials_path.parent().unwrap_or(Path::new("."));
    write_private_file(account_dir, credentials_path, &json)
        .map_err(|error| file_error(disk_to_io(error)))?;
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

fn decode_eab(eab: &crate::acme::Eab) -> Result<ExternalAccountKey, AcmeError> {
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

/// An account credentials file is a few hundred bytes; anything near this is not one.
const MAX_CREDENTIALS_BYTES: u64 = 64 * 1024;

/// Writes `bytes` to `path` with the crate's one atomic writer ([`crate::disk`]: `O_EXCL`
/// and `O_NOFOLLOW` temporary, fsync, rename, cleanup on error) with mode 0600, in `dir`
/// made or kept a real directory with mode 0700.
fn write_private_file(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), DiskError> {
    crate::disk::ensure_private_dir(dir)?;
    crate::disk::write_atomic(path, bytes, crate::disk::MODE_SECRET)
}

/// A [`DiskError`] as the `io::Error` [`AcmeError::AccountFile`] carries, keeping its kind
/// and its words (the step and the path).
fn disk_to_io(error: DiskError) -> std::io::Error {
    std::io::Error::new(error.source.kind(), error)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn account_file_name_differs_per_directory_url() {
        let production = account_file_name("https://acme-v02.api.letsencrypt.org/directory");
        let staging = account_file_name("https://acme-staging-v02.api.letsencrypt.org/directory");
        assert_ne!(production, staging);
        assert_eq!(
            production,
            account_file_name("https://acme-v02.api.letsencrypt.org/directory")
        );
        assert_eq!(production.len(), "account-".len() + 16 + ".json".len());
    }

    #[test]
    fn private_file_is_written_0600_in_a_0700_directory() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("acme");
        let path = dir.join("account.json");
        write_private_file(&dir, &path, b"{}").unwrap();
        write_private_file(&dir, &path, b"{\"again\":1}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"again\":1}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn a_widened_account_directory_is_narrowed_and_a_planted_symlink_is_not_followed() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("acme");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The old writer's temporary name, planted as a symlink to a file it must not touch.
        let victim = temp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.join("account.json");
        let old_temporary = path.with_extension(format!("tmp{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_temporary).unwrap();
        write_private_file(&dir, &path, b"{}").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn eab_key_accepts_base64url_with_or_without_padding() {
        let eab = |key: &str| crate::acme::Eab {
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
