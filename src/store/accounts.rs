//! ACME account credentials: one opaque document per ACME directory URL
//! ([`AccountStore`]), and [`FsAccounts`], the directory of 0600 files that keeps them.
//!
//! The store never reads the documents: `crate::acme` (de)serialises them, so `store`
//! knows nothing about ACME. The file name is derived from a hash of the directory URL, so
//! pointing certinel at a different CA (or at staging instead of production) finds no
//! credentials and registers a new account instead of presenting the old key to the wrong
//! server.

use std::fmt::Debug;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::disk::ReadCappedError;
use crate::store::StoreError;
use crate::store::backend::Record;

/// Where ACME account credentials are kept, one document per ACME directory URL. Methods
/// block: call them off the async workers.
pub trait AccountStore: Send + Sync + Debug {
    /// The credentials stored for the ACME directory `directory`, if any.
    fn account(&self, directory: &str) -> Result<Option<Record>, StoreError>;
    /// Stores the credentials for `directory` (a new registration, a rolled-over key),
    /// replacing any atomically: a reader sees the old document or the new one.
    fn save_account(&self, directory: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// Keeps a document beside the credentials of `aside.directory` (atomically, 0600):
    /// what must not be lost while they cannot be replaced ([`Aside`]); returns where.
    fn save_account_aside(&self, aside: Aside, bytes: &[u8]) -> Result<PathBuf, StoreError>;
    /// The document kept beside the credentials of `aside.directory`, if any.
    fn account_aside(&self, aside: Aside) -> Result<Option<Record>, StoreError>;
    /// Deletes the document kept beside the credentials of `aside.directory` (none is fine).
    fn remove_account_aside(&self, aside: Aside) -> Result<(), StoreError>;
    /// Retires the credentials of a deactivated account: [`account`](Self::account) finds
    /// none afterwards, and the document is kept for the record; returns where.
    fn retire_account(&self, directory: &str) -> Result<PathBuf, StoreError>;
    /// Where the credentials of `directory` live (or would), named in messages.
    fn account_location(&self, directory: &str) -> PathBuf;
}

/// A document kept beside an account's credentials: the ACME directory whose credentials
/// it sits beside, and which document it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aside<'a> {
    /// The ACME directory URL the credentials are kept for.
    pub directory: &'a str,
    /// Which document.
    pub kind: AsideKind,
}

/// Which document is kept beside an account's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsideKind {
    /// Credentials with a rolled-over key that could not replace the stored ones although
    /// the CA already switched to it (`*.json.rollover`), for a person to move over.
    Rollover,
    /// The new key an adopted account is rolled over to, saved before the CA is asked to
    /// switch, so an interrupted adoption is finished by the next one (`*.json.adopting`).
    Adopting,
}

impl<'a> Aside<'a> {
    /// The rolled-over credentials kept beside those of `directory`
    /// ([`AsideKind::Rollover`]).
    pub fn rollover(directory: &'a str) -> Aside<'a> {
        Aside {
            directory,
            kind: AsideKind::Rollover,
        }
    }

    /// The adoption's new key kept beside the credentials of `directory`
    /// ([`AsideKind::Adopting`]).
    pub fn adopting(directory: &'a str) -> Aside<'a> {
        Aside {
            directory,
            kind: AsideKind::Adopting,
        }
    }
}

impl AsideKind {
    /// The file extension that replaces `json` in the credentials file name.
    fn extension(self) -> &'static str {
        match self {
            AsideKind::Rollover => "json.rollover",
            AsideKind::Adopting => "json.adopting",
        }
    }
}

/// A credentials document is a few hundred bytes; anything near this is not one.
const MAX_CREDENTIALS_BYTES: u64 = 64 * 1024;

/// The credentials file name for `directory`: `account-` and the first 16 hex digits of
/// the SHA-256 of the URL, then `.json`.
pub fn account_file_name(directory: &str) -> String {
    let digest = Sha256::digest(directory.as_bytes());
    let hex: String = digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("account-{hex}.json")
}

/// Account credentials kept as files in one directory (mode 0700): `account-HASH.json`
/// (0600) per directory URL, `*.json.rollover` and `*.json.adopting` beside it
/// ([`AsideKind`]), `*.json.deactivated` once retired. Every file is written with
/// [`crate::disk`]'s one atomic writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsAccounts {
    dir: PathBuf,
}

impl FsAccounts {
    /// The credentials kept in `dir` (created, 0700, by the first save).
    pub fn new(dir: &Path) -> FsAccounts {
        FsAccounts {
            dir: dir.to_path_buf(),
        }
    }

    /// [`FsAccounts::new`] as the shared handle `crate::acme` takes.
    pub fn shared(dir: &Path) -> Arc<dyn AccountStore> {
        Arc::new(FsAccounts::new(dir))
    }

    fn aside_path(&self, aside: Aside) -> PathBuf {
        self.account_location(aside.directory)
            .with_extension(aside.kind.extension())
    }

    /// Writes `bytes` to `path` atomically with mode 0600, the directory made or kept a
    /// real directory with mode 0700.
    fn write_private(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        crate::disk::ensure_private_dir(&self.dir)?;
        Ok(crate::disk::write_atomic(
            path,
            bytes,
            crate::disk::MODE_SECRET,
        )?)
    }
}

impl AccountStore for FsAccounts {
    fn account(&self, directory: &str) -> Result<Option<Record>, StoreError> {
        let path = self.account_location(directory);
        match std::fs::symlink_metadata(&self.dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("inspect directory", &self.dir, e)),
            Ok(_) => {}
        }
        // The directory holds account keys: 0700 even when someone widened it since.
        crate::disk::ensure_private_dir(&self.dir)?;
        // A process killed while writing credentials leaves its temporary file behind.
        for removed in crate::disk::remove_stale_temporaries(&self.dir)? {
            tracing::info!(file = %removed.display(), "removed an interrupted credentials write");
        }
        read_document(path)
    }

    fn save_account(&self, directory: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_private(&self.account_location(directory), bytes)
    }

    fn save_account_aside(&self, aside: Aside, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let beside = self.aside_path(aside);
        self.write_private(&beside, bytes)?;
        Ok(beside)
    }

    fn account_aside(&self, aside: Aside) -> Result<Option<Record>, StoreError> {
        read_document(self.aside_path(aside))
    }

    fn remove_account_aside(&self, aside: Aside) -> Result<(), StoreError> {
        let path = self.aside_path(aside);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(crate::disk::sync_dir(&self.dir)?),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", &path, e)),
        }
    }

    fn retire_account(&self, directory: &str) -> Result<PathBuf, StoreError> {
        let path = self.account_location(directory);
        let retired = path.with_extension("json.deactivated");
        std::fs::rename(&path, &retired).map_err(|e| StoreError::io("rename", &path, e))?;
        crate::disk::sync_dir(&self.dir)?;
        Ok(retired)
    }

    fn account_location(&self, directory: &str) -> PathBuf {
        self.dir.join(account_file_name(directory))
    }
}

/// The document at `path` (at most [`MAX_CREDENTIALS_BYTES`]), `None` when there is none.
fn read_document(path: PathBuf) -> Result<Option<Record>, StoreError> {
    match crate::disk::read_capped(&path, MAX_CREDENTIALS_BYTES) {
        Ok(bytes) => Ok(Some(Record {
            bytes,
            location: path,
        })),
        Err(ReadCappedError::Io(e)) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(ReadCappedError::Io(e)) => Err(StoreError::io("read", &path, e)),
        Err(too_large) => Err(StoreError::io(
            "read",
            &path,
            std::io::Error::other(too_large),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const DIRECTORY: &str = "https://127.0.0.1:14000/dir";

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

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
    fn credentials_are_written_0600_in_a_0700_directory_and_read_back() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("acme");
        let accounts = FsAccounts::new(&dir);
        assert_eq!(accounts.account(DIRECTORY).unwrap(), None);
        assert!(!dir.exists(), "looking does not create the directory");
        accounts.save_account(DIRECTORY, b"{}").unwrap();
        accounts.save_account(DIRECTORY, b"{\"again\":1}").unwrap();
        let path = dir.join(account_file_name(DIRECTORY));
        let record = accounts.account(DIRECTORY).unwrap().unwrap();
        assert_eq!(record.bytes, b"{\"again\":1}");
        assert_eq!(record.location, path);
        assert_eq!(accounts.account_location(DIRECTORY), path);
        assert_eq!((mode(&path), mode(&dir)), (0o600, 0o700));
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
        let path = dir.join(account_file_name(DIRECTORY));
        let old_temporary = path.with_extension(format!("tmp{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_temporary).unwrap();
        FsAccounts::new(&dir)
            .save_account(DIRECTORY, b"{}")
            .unwrap();
        assert_eq!((mode(&dir), mode(&path)), (0o700, 0o600));
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn reading_narrows_the_directory_and_removes_a_dead_writers_temporary() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("acme");
        let accounts = FsAccounts::new(&dir);
        accounts.save_account(DIRECTORY, b"{}").unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // PID 0 never runs a writer: the temporary is a dead process's.
        let leftover = dir.join(format!(".{}.tmp.0.7", account_file_name(DIRECTORY)));
        std::fs::write(&leftover, b"half").unwrap();
        assert!(accounts.account(DIRECTORY).unwrap().is_some());
        assert_eq!(mode(&dir), 0o700);
        assert!(!leftover.exists());
    }

    #[test]
    fn an_oversized_credentials_file_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let accounts = FsAccounts::new(temp.path());
        let big = vec![b' '; MAX_CREDENTIALS_BYTES as usize + 1];
        std::fs::write(accounts.account_location(DIRECTORY), big).unwrap();
        let error = accounts.account(DIRECTORY).unwrap_err();
        assert!(error.to_string().contains("larger than"), "{error}");
    }

    #[test]
    fn aside_and_retired_credentials_keep_their_file_names() {
        let temp = tempfile::tempdir().unwrap();
        let accounts = FsAccounts::new(temp.path());
        let path = accounts.account_location(DIRECTORY);
        let rollover = accounts
            .save_account_aside(Aside::rollover(DIRECTORY), b"new")
            .unwrap();
        assert_eq!(rollover, path.with_extension("json.rollover"));
        assert_eq!(mode(&rollover), 0o600);
        let adopting = Aside::adopting(DIRECTORY);
        let adopting_path = accounts.save_account_aside(adopting, b"key").unwrap();
        assert_eq!(adopting_path, path.with_extension("json.adopting"));
        let kept = accounts.account_aside(adopting).unwrap();
        assert_eq!(kept.map(|record| record.bytes), Some(b"key".to_vec()));
        accounts.remove_account_aside(adopting).unwrap();
        accounts.remove_account_aside(adopting).unwrap();
        assert_eq!(accounts.account_aside(adopting).unwrap(), None);
        accounts.save_account(DIRECTORY, b"old").unwrap();
        let retired = accounts.retire_account(DIRECTORY).unwrap();
        assert_eq!(retired, path.with_extension("json.deactivated"));
        assert_eq!(std::fs::read(&retired).unwrap(), b"old");
        assert_eq!(accounts.account(DIRECTORY).unwrap(), None);
    }
}
