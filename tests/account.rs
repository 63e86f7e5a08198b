//! `certinel account rollover|deactivate` against a real Pebble: the CA accepts the new
//! key and refuses the old one; a deactivated account can no longer order and the next
//! renewal registers a new one. Both are audited. With several CAs, `--ca NAME` changes
//! that CA's account only.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use certinel::acme::{NoopObserver, load_or_create_account};
use certinel::store::{AccountStore, Aside, FsAccounts, FsStore, Record, Store, StoreError};
use instant_acme::{Account, AccountCredentials, Identifier, NewOrder};

use crate::common::cli::run_certinel;
use crate::common::config_text::{http01_certificate, pebble_acme_table, write_config_file};
use crate::common::etcd::pebble_and_etcd;
use crate::common::pebble::{Pebble, PebbleOptions};
use crate::revoke::{Setup, certinel, issued, text};
use crate::store_etcd::etcd_store;

/// The single credentials file under `state_dir/acme/`.
fn credentials_file(state_dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(state_dir.join("acme"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    assert_eq!(files.len(), 1, "one account file: {files:?}");
    files.remove(0)
}

/// The instant-acme credentials inside one of certinel's account files, as JSON
/// (`id` is the account URL, `key_pkcs8` the key).
fn credentials(file: &Path) -> serde_json::Value {
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    stored["credentials"].clone()
}

/// Places an order signed with `credentials`, straight through instant-acme.
async fn order_with(pebble: &Pebble, credentials: serde_json::Value) -> Result<(), String> {
    let credentials: AccountCredentials = serde_json::from_value(credentials).unwrap();
    let account = Account::builder_with_root(&pebble.api_root)
        .map_err(|e| e.to_string())?
        .from_credentials(credentials)
        .await
        .map_err(|e| e.to_string())?;
    let identifiers = [Identifier::Dns("old-key.certinel.test".to_owned())];
    account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn audit_lines(setup: &Setup) -> Vec<serde_json::Value> {
    std::fs::read_to_string(setup.state_dir.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Fails with the command's output unless it exited with `code`.
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", text(output));
}

/// Pebble and a certificate `web` issued by `certinel renew`, which registered the account
/// whose credentials file and credentials are returned.
async fn issued_with_an_account() -> (Pebble, Setup, PathBuf, serde_json::Value) {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let setup = issued(&pebble, "web").await;
    let file = credentials_file(&setup.state_dir);
    let old = credentials(&file);
    (pebble, setup, file, old)
}

#[tokio::test]
async fn rollover_keeps_the_account_with_a_new_key_and_the_ca_refuses_the_old_one() {
    let (pebble, setup, file, old) = issued_with_an_account().await;

    let rolled = certinel(&setup, &["account", "rollover"]).await;
    assert_exit(&rolled, 0);
    assert!(String::from_utf8_lossy(&rolled.stdout).contains("key rolled over"));
    let new = credentials(&file);
    assert_eq!(new["id"], old["id"], "the same account");
    assert_ne!(new["key_pkcs8"], old["key_pkcs8"], "a new key is stored");
    let mode = std::fs::metadata(&file).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    let refused = order_with(&pebble, old).await;
    assert!(
        refused.is_err(),
        "Pebble accepted an order signed with the old key"
    );
    order_with(&pebble, new)
        .await
        .unwrap_or_else(|e| panic!("the new key is refused: {e}\n{}", pebble.log()));
    let renewed = certinel(&setup, &["renew", "web", "--force"]).await;
    assert!(renewed.status.success(), "{}", text(&renewed));
    assert_eq!(credentials_file(&setup.state_dir), file, "no new account");

    let rollover = audit_lines(&setup)
        .into_iter()
        .find(|line| line["step"] == "account_key_rollover")
        .expect("an audit line for the rollover");
    assert_eq!(rollover["outcome"], "ok", "{rollover}");
    assert_eq!(rollover["certificate"], "", "{rollover}");
}

#[tokio::test]
async fn deactivation_needs_yes_retires_the_account_and_the_next_renewal_registers_anew() {
    let (pebble, setup, file, old) = issued_with_an_account().await;

    let unconfirmed = certinel(&setup, &["account", "deactivate"]).await;
    assert_exit(&unconfirmed, 2);
    assert!(
        text(&unconfirmed).contains("--yes"),
        "{}",
        text(&unconfirmed)
    );
    assert!(file.exists(), "nothing happened without --yes");

    let deactivated = certinel(&setup, &["account", "deactivate", "--yes"]).await;
    assert_exit(&deactivated, 0);
    assert!(!file.exists());
    assert!(file.with_extension("json.deactivated").exists());
    let refused = order_with(&pebble, old.clone()).await;
    assert!(
        refused.is_err(),
        "Pebble accepted an order from a deactivated account"
    );

    let renewed = certinel(&setup, &["renew", "web", "--force"]).await;
    assert!(renewed.status.success(), "{}", text(&renewed));
    let registered = credentials(&credentials_file(&setup.state_dir));
    assert_ne!(registered["id"], old["id"], "a new account was registered");
    let line = audit_lines(&setup)
        .into_iter()
        .find(|line| line["step"] == "account_deactivate")
        .expect("an audit line for the deactivation");
    assert_eq!(line["outcome"], "ok", "{line}");
}

/// What [`OnSave`] does for save number `n` (from 0) of `bytes` for `directory`, given the
/// store it wraps.
type SaveAction =
    Box<dyn Fn(usize, &dyn AccountStore, &str, &[u8]) -> Result<(), StoreError> + Send + Sync>;

/// An account store whose `save_account` is `action`; everything else is `inner`'s.
struct OnSave {
    inner: Arc<dyn AccountStore>,
    saves: AtomicUsize,
    action: SaveAction,
}

impl OnSave {
    fn new(inner: Arc<dyn AccountStore>, action: SaveAction) -> OnSave {
        OnSave {
            inner,
            saves: AtomicUsize::new(0),
            action,
        }
    }
}

impl std::fmt::Debug for OnSave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnSave")
            .field("inner", &self.inner)
            .finish()
    }
}

impl AccountStore for OnSave {
    fn account(&self, directory: &str) -> Result<Option<Record>, StoreError> {
        self.inner.account(directory)
    }

    fn save_account(&self, directory: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let n = self.saves.fetch_add(1, Ordering::SeqCst);
        (self.action)(n, &*self.inner, directory, bytes)
    }

    fn save_account_aside(&self, aside: Aside, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        self.inner.save_account_aside(aside, bytes)
    }

    fn account_aside(&self, aside: Aside) -> Result<Option<Record>, StoreError> {
        self.inner.account_aside(aside)
    }

    fn remove_account_aside(&self, aside: Aside) -> Result<(), StoreError> {
        self.inner.remove_account_aside(aside)
    }

    fn retire_account(&self, directory: &str) -> Result<PathBuf, StoreError> {
        self.inner.retire_account(directory)
    }

    fn account_location(&self, directory: &str) -> PathBuf {
        self.inner.account_location(directory)
    }
}

/// The account credentials files, except that every save after the first (the
/// registration) fails as on a full disk.
fn full_after_registration(dir: &Path) -> OnSave {
    OnSave::new(
        Arc::new(FsAccounts::new(dir)),
        Box::new(|n, files, directory, bytes| {
            if n == 0 {
                return files.save_account(directory, bytes);
            }
            Err(StoreError::Io {
                action: "write",
                path: files.account_location(directory),
                source: std::io::ErrorKind::StorageFull.into(),
            })
        }),
    )
}

#[tokio::test]
async fn a_rolled_over_key_the_store_cannot_take_is_kept_aside_and_is_the_one_the_ca_accepts() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(full_after_registration(dir.path()));
    let settings = crate::acme::settings(&pebble);
    let account = load_or_create_account(&settings, store.clone(), Arc::new(NoopObserver))
        .await
        .unwrap_or_else(|e| panic!("account: {e}\n{}", pebble.log()));
    let file = store.account_location(&pebble.directory_url);
    let old = credentials(&file);

    let error = account
        .roll_over_key()
        .await
        .expect_err("the store is full");
    let aside = file.with_extension("json.rollover");
    assert!(
        error
            .to_string()
            .contains(&format!("saved in {} instead", aside.display())),
        "{error}"
    );
    assert_eq!(
        credentials(&file),
        old,
        "the stored credentials are untouched"
    );
    let new = credentials(&aside);
    assert_eq!(new["id"], old["id"], "the same account");
    assert!(
        order_with(&pebble, old).await.is_err(),
        "Pebble accepted an order signed with the old key"
    );
    order_with(&pebble, new)
        .await
        .unwrap_or_else(|e| panic!("the key kept aside is refused: {e}\n{}", pebble.log()));
}

/// Two Pebbles: `[acme]` is the first, `[ca.second]` the second; certificate `one` is
/// issued by the first and `two` (`ca = ["second"]`) by the second, each CA with its own
/// account (credentials in `first_file`, `second_file`).
struct TwoAccounts {
    first: Pebble,
    second: Pebble,
    config: PathBuf,
    state_dir: PathBuf,
    first_file: PathBuf,
    second_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TwoAccounts {
    async fn issued() -> TwoAccounts {
        let first = Pebble::start(PebbleOptions::default()).await;
        let second = Pebble::start(PebbleOptions::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let mut toml = pebble_acme_table(&state_dir, &first);
        toml += &format!(
            "\n[ca.second]\ndirectory = {:?}\nca_file = {:?}\npoll_timeout = \"60s\"\n",
            second.directory_url,
            second.api_root.display().to_string()
        );
        toml += &http01_certificate("one", first.http_addr(), "");
        toml += &http01_certificate("two", second.http_addr(), "ca = [\"second\"]\n");
        let config = write_config_file(dir.path(), &toml);
        for name in ["one", "two"] {
            let issued = run_certinel(&["renew", name], &config).await;
            assert!(issued.status.success(), "{}", text(&issued));
        }
        let accounts = FsStore::new(&state_dir).accounts();
        TwoAccounts {
            first_file: accounts.account_location(&first.directory_url),
            second_file: accounts.account_location(&second.directory_url),
            first,
            second,
            config,
            state_dir,
            _dir: dir,
        }
    }

    /// The first CA's account file as stored now and the second CA's credentials: what a
    /// command aimed at the second CA must leave alone, and what it replaces.
    fn before_a_command(&self) -> (Vec<u8>, serde_json::Value) {
        let first_before = std::fs::read(&self.first_file).unwrap();
        (first_before, credentials(&self.second_file))
    }

    /// The audit line of the first `step`.
    fn audit_line(&self, step: &str) -> serde_json::Value {
        std::fs::read_to_string(self.state_dir.join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .find(|line| line["step"] == step)
            .unwrap_or_else(|| panic!("an audit line for {step}"))
    }
}

#[tokio::test]
async fn rollover_with_ca_changes_only_that_cas_account_and_its_renewals_use_the_new_key() {
    let cas = TwoAccounts::issued().await;
    let (config, first_file, second_file) = (&cas.config, &cas.first_file, &cas.second_file);
    let (first_before, second_old) = cas.before_a_command();

    let rolled = run_certinel(&["account", "rollover", "--ca", "second"], config).await;
    assert_exit(&rolled, 0);
    let stdout = String::from_utf8_lossy(&rolled.stdout);
    assert!(stdout.contains("CA second"), "{stdout}");
    let second_new = credentials(second_file);
    assert_eq!(second_new["id"], second_old["id"], "the same account");
    assert_ne!(
        second_new["key_pkcs8"], second_old["key_pkcs8"],
        "a new key"
    );
    assert_eq!(
        std::fs::read(first_file).unwrap(),
        first_before,
        "the first CA's account is untouched"
    );
    assert!(
        order_with(&cas.second, second_old).await.is_err(),
        "the second Pebble accepted the old key"
    );

    let renewed = run_certinel(&["renew", "two", "--force"], config).await;
    assert!(renewed.status.success(), "{}", text(&renewed));
    assert_eq!(
        credentials(second_file),
        second_new,
        "the renewal used the rolled-over account, registering none"
    );
    let rollover = cas.audit_line("account_key_rollover");
    assert_eq!(rollover["outcome"], "ok", "{rollover}");
    let detail = rollover["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("CA second"), "{rollover}");

    let unknown = run_certinel(&["account", "rollover", "--ca", "nosuch"], config).await;
    assert_exit(&unknown, 2);
    let message = text(&unknown);
    assert!(
        message.contains("unknown CA \"nosuch\"") && message.contains("acme, second"),
        "{message}"
    );
    assert_eq!(credentials(second_file), second_new, "nothing changed");
}

#[tokio::test]
async fn deactivate_with_ca_retires_only_that_cas_account_and_its_next_renewal_registers_anew() {
    let cas = TwoAccounts::issued().await;
    let (config, first_file, second_file) = (&cas.config, &cas.first_file, &cas.second_file);
    let (first_before, second_old) = cas.before_a_command();

    let args = ["account", "deactivate", "--ca", "second", "--yes"];
    let deactivated = run_certinel(&args, config).await;
    assert_exit(&deactivated, 0);
    assert!(!second_file.exists());
    assert!(second_file.with_extension("json.deactivated").exists());
    assert_eq!(
        std::fs::read(first_file).unwrap(),
        first_before,
        "the first CA's account is untouched"
    );
    assert!(
        order_with(&cas.second, second_old.clone()).await.is_err(),
        "the second Pebble accepted an order from the deactivated account"
    );
    order_with(&cas.first, credentials(first_file))
        .await
        .unwrap_or_else(|e| panic!("the first CA's account stopped working: {e}"));
    let line = cas.audit_line("account_deactivate");
    assert_eq!(line["outcome"], "ok", "{line}");
    assert!(
        line["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("CA second"),
        "{line}"
    );

    let renewed = run_certinel(&["renew", "two", "--force"], config).await;
    assert!(renewed.status.success(), "{}", text(&renewed));
    assert_ne!(
        credentials(second_file)["id"],
        second_old["id"],
        "a new account at the second CA"
    );
}

/// Two replicas sharing etcd register at once on a fresh cluster: replica b saves its
/// account between replica a's read (nothing stored) and a's save. a's save is refused as
/// a conflict, and a goes on with b's account instead of failing its renewal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_the_registration_race_uses_the_account_the_other_saved() {
    let (pebble, cluster, dir) = pebble_and_etcd(1).await;
    let settings = crate::acme::settings(&pebble);
    // b's registration, made aside so that it reaches etcd only when a is about to save.
    let b_files = Arc::new(FsAccounts::new(&dir.path().join("b-files")));
    let b_account = load_or_create_account(&settings, b_files.clone(), Arc::new(NoopObserver))
        .await
        .unwrap_or_else(|e| panic!("b's account: {e}\n{}", pebble.log()));
    let b_bytes = b_files
        .account(&pebble.directory_url)
        .unwrap()
        .unwrap()
        .bytes;
    let ttl = Duration::from_secs(5);
    let b = etcd_store(&cluster, &dir.path().join("b"), "b", ttl).accounts();
    let a = etcd_store(&cluster, &dir.path().join("a"), "a", ttl).accounts();
    let racing = OnSave::new(
        a,
        Box::new(move |n, a, directory, bytes| {
            if n == 0 {
                b.save_account(directory, &b_bytes)?;
            }
            a.save_account(directory, bytes)
        }),
    );
    let a_account = load_or_create_account(&settings, Arc::new(racing), Arc::new(NoopObserver))
        .await
        .unwrap_or_else(|e| panic!("a lost the race and failed: {e}"));
    assert_eq!(a_account.url(), b_account.url(), "a uses b's account");
}
