//! Dry runs: which ACME directory they talk to, and the scratch state directory they
//! renew into (removed afterwards, its ACME accounts kept).

use std::path::PathBuf;

use crate::config::model::AcmeConfig;

/// Let's Encrypt's production directory: a dry run never spends its rate limits.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Let's Encrypt's staging directory, where dry runs against production go instead.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The ACME directory a dry run uses, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DryRunDirectory<'a> {
    /// `acme.dry_run_directory`.
    Configured(&'a str),
    /// Let's Encrypt staging, because `acme.directory` is its production.
    Staging(&'static str),
    /// `acme.directory` itself: no staging counterpart is known.
    Main(&'a str),
}

impl<'a> DryRunDirectory<'a> {
    /// The directory URL.
    pub fn url(&self) -> &'a str {
        match *self {
            DryRunDirectory::Configured(url) | DryRunDirectory::Main(url) => url,
            DryRunDirectory::Staging(url) => url,
        }
    }
}

/// `acme.dry_run_directory` when set; else Let's Encrypt staging when `acme.directory` is
/// Let's Encrypt production; else `acme.directory`.
pub fn dry_run_directory(acme: &AcmeConfig) -> DryRunDirectory<'_> {
    match &acme.dry_run_directory {
        Some(url) => DryRunDirectory::Configured(url),
        None if acme.directory == LETS_ENCRYPT_PRODUCTION => {
            DryRunDirectory::Staging(LETS_ENCRYPT_STAGING)
        }
        None => DryRunDirectory::Main(&acme.directory),
    }
}

/// A temporary state directory for a dry run, removed when dropped. Its ACME accounts are
/// not temporary: they are the store's dry-run accounts (`Store::dry_run_accounts`,
/// `state_dir/dry-run/accounts/`), so repeated dry runs reuse one account per directory
/// URL instead of registering a new one each time.
pub(super) struct Scratch {
    pub(super) path: PathBuf,
}

impl Scratch {
    /// A fresh scratch state directory.
    pub(super) fn create() -> std::io::Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!(
            "certinel-dry-run-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove the dry-run directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme(directory: &str, dry_run_directory: Option<&str>) -> AcmeConfig {
        AcmeConfig {
            directory: directory.to_owned(),
            dry_run_directory: dry_run_directory.map(str::to_owned),
            contact: Vec::new(),
            ca_file: None,
            eab: None,
            poll_timeout: std::time::Duration::from_secs(60),
            preflight_resolver: None,
            caa_identities: Vec::new(),
            max_concurrent_orders: 1,
        }
    }

    #[test]
    fn a_dry_run_against_lets_encrypt_production_goes_to_staging() {
        let production = acme(LETS_ENCRYPT_PRODUCTION, None);
        assert_eq!(
            dry_run_directory(&production),
            DryRunDirectory::Staging(LETS_ENCRYPT_STAGING)
        );
    }

    #[test]
    fn a_configured_dry_run_directory_wins_and_others_are_used_as_is() {
        let configured = acme(LETS_ENCRYPT_PRODUCTION, Some("https://staging.test/dir"));
        assert_eq!(
            dry_run_directory(&configured),
            DryRunDirectory::Configured("https://staging.test/dir")
        );
        let other = acme("https://ca.test/dir", None);
        assert_eq!(
            dry_run_directory(&other),
            DryRunDirectory::Main("https://ca.test/dir")
        );
    }

    #[test]
    fn dry_run_accounts_outlive_the_scratch_directory() {
        use crate::store::{FsStore, Store};
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().unwrap();
        let store = FsStore::new(state.path());
        let directory = "https://127.0.0.1:14000/dir";
        let first = Scratch::create().unwrap();
        store
            .dry_run_accounts()
            .save_account(directory, b"{}")
            .unwrap();
        let first_path = first.path.clone();
        drop(first);
        assert!(!first_path.exists(), "the scratch directory is removed");
        let _second = Scratch::create().unwrap();
        let kept = store
            .dry_run_accounts()
            .account(directory)
            .unwrap()
            .unwrap();
        assert_eq!(kept.bytes, b"{}");
        let accounts = state.path().join("dry-run/accounts");
        assert_eq!(
            kept.location,
            accounts.join(crate::store::account_file_name(directory))
        );
        let mode = std::fs::metadata(&accounts).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
