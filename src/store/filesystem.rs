//! [`FsStore`]: the [`Store`] kept in a state directory (the layout in [`crate::store`]),
//! every file written by [`crate::disk`]'s one atomic writer.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::OffsetDateTime;

use crate::store::StoreError;
use crate::store::accounts::{AccountStore, FsAccounts};
use crate::store::atomic::{MODE_PUBLIC, write_atomic};
use crate::store::audit::{AuditEvent, AuditHistory, AuditLog};
use crate::store::backend::{Record, ReportOn, Store};
use crate::store::inflight::{HookProcess, Inflight, SecretPem, Stage};
use crate::store::lock::{LockError, RenewalLock};
use crate::store::metadata::{VersionId, VersionMetadata, VersionState};
use crate::store::off_workers::off_the_workers;
use crate::store::recovery::DiskState;
use crate::store::versions::{CertStore, NewVersion, VersionFiles};

const AUDIT_LOG: &str = "audit.jsonl";
const SCHEDULE: &str = "schedule.json";
const ACCOUNTS: &str = "acme";
const DRY_RUN: &str = "dry-run";
const ROLLOUT: &str = "rollout";

/// The state directory as a [`Store`]. Cheap to build: directories are created by the
/// first operation that needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsStore {
    state_dir: PathBuf,
}

impl FsStore {
    /// The store kept under `state_dir`.
    pub fn new(state_dir: &Path) -> FsStore {
        FsStore {
            state_dir: state_dir.to_path_buf(),
        }
    }

    /// The certificate directories (`state_dir/certs/`), created if needed.
    fn certs(&self) -> Result<CertStore, StoreError> {
        CertStore::open(&self.state_dir)
    }

    fn audit_path(&self) -> PathBuf {
        self.state_dir.join(AUDIT_LOG)
    }
}

impl Store for FsStore {
    fn current(&self, name: &str) -> Result<Option<VersionId>, StoreError> {
        self.certs()?.current(name)
    }

    fn previous(&self, name: &str) -> Result<Option<VersionId>, StoreError> {
        self.certs()?.previous(name)
    }

    fn versions(&self, name: &str) -> Result<Vec<VersionMetadata>, StoreError> {
        self.certs()?.versions(name)
    }

    fn metadata(&self, name: &str, version: VersionId) -> Result<VersionMetadata, StoreError> {
        self.certs()?.metadata(name, version)
    }

    fn stage_pending(&self, name: &str, new: NewVersion) -> Result<VersionMetadata, StoreError> {
        off_the_workers(|| self.certs()?.stage_pending(name, new))
    }

    fn promote(&self, name: &str, version: VersionId) -> Result<(), StoreError> {
        off_the_workers(|| self.certs()?.promote(name, version))
    }

    fn rollback(&self, name: &str) -> Result<VersionId, StoreError> {
        off_the_workers(|| self.certs()?.rollback(name))
    }

    fn set_state(
        &self,
        name: &str,
        version: VersionId,
        state: VersionState,
    ) -> Result<(), StoreError> {
        off_the_workers(|| self.certs()?.set_state(name, version, state))
    }

    fn prune(&self, name: &str, keep: usize) -> Result<Vec<VersionId>, StoreError> {
        off_the_workers(|| self.certs()?.prune(name, keep))
    }

    fn files(&self, name: &str, version: VersionId) -> Result<VersionFiles, StoreError> {
        self.certs()?.files(name, version)
    }

    fn current_files(&self, name: &str) -> Result<VersionFiles, StoreError> {
        self.certs()?.current_files(name)
    }

    fn inflight(&self, name: &str) -> Result<Option<Inflight>, StoreError> {
        self.certs()?.inflight(name)
    }

    fn begin(&self, name: &str, started_at: OffsetDateTime) -> Result<Inflight, StoreError> {
        off_the_workers(|| self.certs()?.begin(name, started_at))
    }

    fn record_order(&self, name: &str, order_url: &str) -> Result<Inflight, StoreError> {
        off_the_workers(|| self.certs()?.record_order(name, order_url))
    }

    fn record_key(&self, name: &str, key_pem: &SecretPem) -> Result<Inflight, StoreError> {
        off_the_workers(|| self.certs()?.record_key(name, key_pem))
    }

    fn record_hook(&self, name: &str, hook: Option<HookProcess>) -> Result<(), StoreError> {
        off_the_workers(|| self.certs()?.record_hook(name, hook))
    }

    fn advance(
        &self,
        name: &str,
        stage: Stage,
        version: VersionId,
    ) -> Result<Inflight, StoreError> {
        off_the_workers(|| self.certs()?.advance(name, stage, version))
    }

    fn finish(&self, name: &str) -> Result<(), StoreError> {
        off_the_workers(|| self.certs()?.finish(name))
    }

    fn disk_state(&self, name: &str) -> Result<DiskState, StoreError> {
        self.certs()?.disk_state(name)
    }

    fn remove_leftovers(&self, name: &str) -> Result<Vec<String>, StoreError> {
        off_the_workers(|| self.certs()?.remove_leftovers(name))
    }

    fn schedule_record(&self, name: &str) -> Result<Option<Record>, StoreError> {
        let path = self.certs()?.cert_dir(name)?.join(SCHEDULE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Record {
                bytes,
                location: path,
            })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", &path, e)),
        }
    }

    fn save_schedule_record(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        off_the_workers(|| {
            let dir = self.certs()?.cert_dir(name)?;
            // A failure before `begin` (the account) may come before the directory exists.
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
            write_atomic(&dir.join(SCHEDULE), bytes, MODE_PUBLIC)
        })
    }

    fn save_rollout_report(&self, on: ReportOn<'_>, bytes: &[u8]) -> Result<(), StoreError> {
        off_the_workers(|| {
            // The member name becomes a file name: the same rule as certificate names.
            self.certs()?.cert_dir(on.member)?;
            let dir = self
                .certs()?
                .cert_dir(on.name)?
                .join(ROLLOUT)
                .join(on.version.to_string());
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
            write_atomic(&dir.join(format!("{}.json", on.member)), bytes, MODE_PUBLIC)
        })
    }

    fn rollout_reports(&self, name: &str, version: VersionId) -> Result<Vec<Record>, StoreError> {
        let dir = self
            .certs()?
            .cert_dir(name)?
            .join(ROLLOUT)
            .join(version.to_string());
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(StoreError::io("list", &dir, error)),
        };
        let mut records = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| StoreError::io("list", &dir, e))?.path();
            if path.extension().is_none_or(|extension| extension != "json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| StoreError::io("read", &path, e))?;
            records.push(Record {
                bytes,
                location: path,
            });
        }
        records.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(records)
    }

    fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        off_the_workers(|| AuditLog::open(&self.audit_path())?.append(event))
    }

    fn append_audit_stamped(
        &self,
        event: AuditEvent,
        stamp: &dyn Fn() -> OffsetDateTime,
    ) -> Result<(), StoreError> {
        off_the_workers(|| AuditLog::open(&self.audit_path())?.append_stamped(event, stamp))
    }

    fn audit_history(&self) -> Result<AuditHistory, StoreError> {
        AuditHistory::read(&self.audit_path())
    }

    fn audit_location(&self) -> String {
        self.audit_path().display().to_string()
    }

    fn lock(&self, name: &str) -> Result<RenewalLock, LockError> {
        RenewalLock::try_acquire(&self.state_dir, name)
    }

    /// `state_dir/acme/`.
    fn accounts(&self) -> Arc<dyn AccountStore> {
        Arc::new(FsAccounts::new(&self.state_dir.join(ACCOUNTS)))
    }

    /// `state_dir/dry-run/accounts/`.
    fn dry_run_accounts(&self) -> Arc<dyn AccountStore> {
        Arc::new(FsAccounts::new(
            &self.state_dir.join(DRY_RUN).join("accounts"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use time::macros::datetime;

    use super::*;
    use crate::store::testing::issue;
    use crate::store::{Origin, Outcome, Step};

    /// Every file and link under `root`, relative, sorted.
    fn tree(root: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    walk(root, &path, out);
                } else {
                    out.push(relative);
                }
            }
        }
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out.sort();
        out
    }

    #[test]
    fn every_operation_writes_the_documented_state_directory_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store: &dyn Store = &FsStore::new(dir.path());
        let origin = Origin {
            created_at: datetime!(2025-01-01 0:05 UTC),
            source: "https://127.0.0.1:9/dir".into(),
        };
        let issued = issue(&["web.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let _lock = store.lock("web").unwrap();
        store.begin("web", origin.created_at).unwrap();
        let first = store
            .stage_pending("web", issued.new_version(&origin))
            .unwrap();
        store.promote("web", first.version).unwrap();
        let second = store
            .stage_pending("web", issued.new_version(&origin))
            .unwrap();
        store.promote("web", second.version).unwrap();
        store.save_schedule_record("web", b"{}").unwrap();
        store
            .append_audit(&AuditEvent {
                time: origin.created_at,
                certificate: "web".into(),
                version: Some(second.version),
                serial: Some(second.serial.clone()),
                step: Step::Done,
                outcome: Outcome::Ok,
                error: None,
                detail: None,
            })
            .unwrap();
        let ca = "https://127.0.0.1:14000/dir";
        store.accounts().save_account(ca, b"{}").unwrap();
        store.dry_run_accounts().save_account(ca, b"{}").unwrap();
        let account = crate::store::account_file_name(ca);

        let mut expected: Vec<String> = [
            "audit.jsonl",
            "certs/web/current",
            "certs/web/inflight.json",
            "certs/web/previous",
            "certs/web/schedule.json",
            "certs/web/v0001/cert.pem",
            "certs/web/v0001/chain.pem",
            "certs/web/v0001/fullchain.pem",
            "certs/web/v0001/key.pem",
            "certs/web/v0001/meta.json",
            "certs/web/v0002/cert.pem",
            "certs/web/v0002/chain.pem",
            "certs/web/v0002/fullchain.pem",
            "certs/web/v0002/key.pem",
            "certs/web/v0002/meta.json",
            "locks/web.lock",
        ]
        .map(str::to_owned)
        .to_vec();
        expected.push(format!("acme/{account}"));
        expected.push(format!("dry-run/accounts/{account}"));
        expected.sort();
        assert_eq!(tree(dir.path()), expected);
        assert_eq!(
            store.accounts().account_location(ca),
            dir.path().join("acme").join(&account)
        );
        assert_eq!(
            store.current_files("web").unwrap().fullchain,
            dir.path().join("certs/web/current/fullchain.pem")
        );
        assert_eq!(
            store.audit_location(),
            dir.path().join("audit.jsonl").display().to_string()
        );
        assert_eq!(store.audit_history().unwrap().events.len(), 1);
        assert_eq!(
            store.schedule_record("web").unwrap().unwrap().bytes,
            b"{}".to_vec()
        );
        assert!(matches!(store.lock("web"), Err(LockError::Held)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_audit_append_waiting_for_its_fsync_leaves_the_async_workers_free() {
        // A thousand renewals share two workers: one waiting for the disk must not stop
        // the others.
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path());
        let (journal, release) =
            crate::store::journal::Journal::hold_first_commit(&store.audit_path());
        let event = AuditEvent::new(
            datetime!(2025-01-01 0:05 UTC),
            "web",
            Step::Begin,
            Outcome::Ok,
        );
        let appending = tokio::spawn(async move { store.append_audit(&event) });
        let waiting_since = std::time::Instant::now();
        while !journal.is_committing() {
            assert!(waiting_since.elapsed() < std::time::Duration::from_secs(10));
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Std channels and timeouts: a blocked worker would stop tokio's timers too.
        let (ran, other_ran) = std::sync::mpsc::channel::<()>();
        tokio::spawn(async move { ran.send(()).unwrap() });
        let other = other_ran.recv_timeout(std::time::Duration::from_secs(10));
        drop(release);
        assert!(other.is_ok(), "no other task ran during the fsync");
        appending.await.unwrap().unwrap();
    }
}
