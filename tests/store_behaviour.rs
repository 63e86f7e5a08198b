//! What every `Store` does, whatever keeps the state: one behaviour function over
//! `&dyn Store` (versions, promotion, rollback, pruning, the renewal in flight, the
//! schedule document, rollout reports, audit order, accounts) and the helpers it issues
//! certificates with. `store_etcd` runs it on the filesystem store and the etcd store.

use certinel::store::{
    Aside, HookProcess, LockError, NewVersion, NextStep, Origin, ReportOn, SecretPem, Stage, Store,
    StoreError, VersionId, VersionState, check_version, recover,
};
use time::macros::datetime;

use crate::common::pki::{Ca, LeafSpec, Validity};

pub(crate) const CA_URL: &str = "https://127.0.0.1:14000/dir";
/// Account credentials a test saves: recognisable if they ever reach etcd unsealed.
pub(crate) const ACCOUNT: &[u8] = br#"{"id":"acct-1","key_pkcs8":"ACCOUNT-KEY-MATERIAL-0xC0FFEE"}"#;

/// A certificate for `names`, issued by a fresh test CA: (key PEM, leaf + CA chain PEM).
pub(crate) fn issued(names: &[&str]) -> (String, String) {
    let ca = Ca::root("certinel store test CA", Validity::current());
    let leaf = ca.leaf(&LeafSpec::new(names));
    (leaf.key_pem, format!("{}{}", leaf.pem, ca.pem))
}

/// Where every test version says it came from.
pub(crate) fn origin() -> Origin {
    Origin {
        created_at: datetime!(2025-01-01 0:05 UTC),
        source: CA_URL.into(),
    }
}

/// Stages a fresh certificate for `example.com` as the next version of `name`.
pub(crate) fn stage(store: &dyn Store, name: &str) -> VersionId {
    let (key, chain) = issued(&["example.com"]);
    let new = NewVersion {
        key_pem: &key,
        chain_pem: &chain,
        origin: &origin(),
    };
    store.stage_pending(name, new).unwrap().version
}

/// `current` and `previous` of `name` as numbers.
pub(crate) fn live(store: &dyn Store, name: &str) -> (Option<u32>, Option<u32>) {
    (
        store.current(name).unwrap().map(|v| v.0),
        store.previous(name).unwrap().map(|v| v.0),
    )
}

fn audit_event(minute: u8, step: certinel::store::Step) -> certinel::store::AuditEvent {
    certinel::store::AuditEvent::new(
        datetime!(2025-01-01 0:00 UTC) + time::Duration::minutes(minute.into()),
        "www",
        step,
        certinel::store::Outcome::Ok,
    )
}

/// What every [`Store`] does, whatever keeps the state.
pub(crate) fn behaves_like_a_store(store: &dyn Store) {
    // Names that are not one safe path component are refused everywhere.
    for bad in ["", "..", ".hidden", "a/b", "a b"] {
        assert!(
            matches!(store.current(bad), Err(StoreError::InvalidName(_))),
            "{bad:?}"
        );
        assert!(
            matches!(
                store.begin(bad, origin().created_at),
                Err(StoreError::InvalidName(_))
            ),
            "{bad:?}"
        );
    }

    // Staging: complete, not live, its key 0600 in the files servers read.
    let (key, chain) = issued(&["example.com"]);
    let other_key = issued(&["example.com"]).0;
    let mismatched = store.stage_pending(
        "www",
        NewVersion {
            key_pem: &other_key,
            chain_pem: &chain,
            origin: &origin(),
        },
    );
    assert!(
        matches!(mismatched, Err(StoreError::Verify(_))),
        "{mismatched:?}"
    );
    assert!(store.versions("www").unwrap().is_empty());
    let new = NewVersion {
        key_pem: &key,
        chain_pem: &chain,
        origin: &origin(),
    };
    let v1 = store.stage_pending("www", new).unwrap();
    assert_eq!(
        (v1.version, v1.state),
        (VersionId(1), VersionState::Pending)
    );
    assert_eq!(v1.dns_names, ["example.com"]);
    assert_eq!(live(store, "www"), (None, None));
    assert_eq!(store.versions("www").unwrap(), std::slice::from_ref(&v1));
    assert_eq!(store.metadata("www", VersionId(1)).unwrap(), v1);
    assert!(matches!(
        store.metadata("www", VersionId(9)),
        Err(StoreError::NoSuchVersion { .. })
    ));
    let files = store.files("www", VersionId(1)).unwrap();
    assert_eq!(std::fs::read_to_string(&files.key).unwrap(), key);
    assert_eq!(std::fs::read_to_string(&files.fullchain).unwrap(), chain);
    let facts = check_version(&files, &["example.com".into()]).unwrap();
    assert_eq!(facts.serial, v1.serial);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Promotion, idempotent; the current files follow.
    store.promote("www", VersionId(1)).unwrap();
    assert_eq!(live(store, "www"), (Some(1), None));
    let v2 = stage(store, "www");
    store.promote("www", v2).unwrap();
    store.promote("www", v2).unwrap();
    assert_eq!(live(store, "www"), (Some(2), Some(1)));
    assert_eq!(
        store.metadata("www", v2).unwrap().state,
        VersionState::Active
    );
    let served = store.current_files("www").unwrap().fullchain;
    assert!(served.ends_with("www/current/fullchain.pem"), "{served:?}");
    assert_eq!(
        std::fs::read(&served).unwrap(),
        std::fs::read(store.files("www", v2).unwrap().fullchain).unwrap()
    );

    // Rollback: previous live again, the bad version failed, an older previous found.
    let v3 = stage(store, "www");
    store.promote("www", v3).unwrap();
    assert_eq!(store.rollback("www").unwrap(), VersionId(2));
    assert_eq!(live(store, "www"), (Some(2), Some(1)));
    assert_eq!(
        store.metadata("www", v3).unwrap().state,
        VersionState::Failed
    );
    assert_eq!(
        std::fs::read(store.current_files("www").unwrap().cert).unwrap(),
        std::fs::read(store.files("www", v2).unwrap().cert).unwrap()
    );
    assert_eq!(store.rollback("www").unwrap(), VersionId(1));
    assert_eq!(live(store, "www"), (Some(1), None));
    assert!(matches!(
        store.rollback("www"),
        Err(StoreError::NoPrevious(_))
    ));
    store.set_state("www", v3, VersionState::Parked).unwrap();
    assert_eq!(
        store.metadata("www", v3).unwrap().state,
        VersionState::Parked
    );

    // The renewal in flight: one at a time, its key kept until the version is staged.
    let _lock = store.lock("api").unwrap();
    assert!(matches!(store.lock("api"), Err(LockError::Held)));
    assert_eq!(store.inflight("api").unwrap(), None);
    store.begin("api", datetime!(2025-02-01 0:00 UTC)).unwrap();
    assert!(matches!(
        store.begin("api", datetime!(2025-02-01 0:01 UTC)),
        Err(StoreError::InflightExists {
            stage: Stage::Ordering,
            ..
        })
    ));
    let recorded = store
        .record_order("api", "https://127.0.0.1:14000/order/7")
        .unwrap();
    assert_eq!(
        recorded.order_url.as_deref(),
        Some("https://127.0.0.1:14000/order/7")
    );
    let (new_key, new_chain) = issued(&["api.example.com"]);
    let with_key = store
        .record_key("api", &SecretPem::new(new_key.clone()))
        .unwrap();
    assert_eq!(
        with_key.key_pem.as_ref().map(SecretPem::expose),
        Some(new_key.as_str())
    );
    let hook = HookProcess {
        id: "5f1c".into(),
        group: None,
    };
    store.record_hook("api", Some(hook.clone())).unwrap();
    let read = store.inflight("api").unwrap().unwrap();
    assert_eq!(read.hook, Some(hook));
    assert_eq!(read.key_pem, with_key.key_pem);
    let new = NewVersion {
        key_pem: &new_key,
        chain_pem: &new_chain,
        origin: &origin(),
    };
    let staged = store.stage_pending("api", new).unwrap();
    // Crashed here: the stored version is adopted, not ordered again.
    let disk = store.disk_state("api").unwrap();
    assert!(disk.leftovers.is_empty());
    assert_eq!(
        recover(&disk).next,
        NextStep::Adopt {
            version: staged.version
        }
    );
    let advanced = store
        .advance("api", Stage::Pending, staged.version)
        .unwrap();
    assert_eq!((advanced.stage, advanced.key_pem), (Stage::Pending, None));
    store.record_hook("api", None).unwrap();
    assert_eq!(
        recover(&store.disk_state("api").unwrap()).next,
        NextStep::Deploy {
            version: staged.version
        }
    );
    store.finish("api").unwrap();
    store.finish("api").unwrap();
    assert_eq!(store.inflight("api").unwrap(), None);
    assert!(matches!(
        store.record_order("api", "https://127.0.0.1:14000/order/8"),
        Err(StoreError::NoInflight(_))
    ));
    assert_eq!(store.remove_leftovers("api").unwrap(), Vec::<String>::new());
    drop(_lock);
    drop(store.lock("api").unwrap());

    // Pruning keeps the newest and never current, previous or the renewal's version.
    for _ in 0..4 {
        stage(store, "www"); // v4..v7, pending
    }
    store.begin("www", datetime!(2025-02-01 0:00 UTC)).unwrap();
    store.advance("www", Stage::Pending, VersionId(4)).unwrap();
    assert_eq!(store.prune("www", 2).unwrap(), [v2, v3, VersionId(5)]);
    let left: Vec<u32> = store
        .versions("www")
        .unwrap()
        .iter()
        .map(|m| m.version.0)
        .collect();
    assert_eq!(left, [1, 4, 6, 7]);
    store.finish("www").unwrap();

    // The schedule document.
    assert_eq!(store.schedule_record("www").unwrap(), None);
    store
        .save_schedule_record("www", b"{\"failures\":1}")
        .unwrap();
    assert_eq!(
        store.schedule_record("www").unwrap().unwrap().bytes,
        b"{\"failures\":1}"
    );

    // Each replica's report on rolling out a version, the latest one kept, apart from its
    // reports on other versions.
    assert!(
        store
            .rollout_reports("www", VersionId(1))
            .unwrap()
            .is_empty()
    );
    let saves: [(u32, &str, &[u8]); 4] = [
        (1, "m2", b"old"),
        (1, "m2", b"{\"m\":2}"),
        (1, "m1", b"{\"m\":1}"),
        (2, "m1", b"{\"v\":2}"),
    ];
    let on = |version: u32, member| ReportOn {
        name: "www",
        version: VersionId(version),
        member,
    };
    for (version, member, bytes) in saves {
        store
            .save_rollout_report(on(version, member), bytes)
            .unwrap();
    }
    let reports: Vec<Vec<u8>> = store
        .rollout_reports("www", VersionId(1))
        .unwrap()
        .into_iter()
        .map(|report| report.bytes)
        .collect();
    assert_eq!(reports, [b"{\"m\":1}".to_vec(), b"{\"m\":2}".to_vec()]);
    assert!(matches!(
        store.save_rollout_report(on(1, "../m3"), b"{}"),
        Err(StoreError::InvalidName(_))
    ));

    // The audit log, in the order of the events' times.
    use certinel::store::Step;
    store.append_audit(&audit_event(1, Step::Begin)).unwrap();
    store.append_audit(&audit_event(2, Step::Order)).unwrap();
    store
        .append_audit_stamped(
            audit_event(0, Step::Done),
            &|| datetime!(2025-01-01 0:03 UTC),
        )
        .unwrap();
    let history = store.audit_history().unwrap();
    let steps: Vec<Step> = history.events.iter().map(|event| event.step).collect();
    assert_eq!(steps, [Step::Begin, Step::Order, Step::Done]);
    assert_eq!(history.events[2].time, datetime!(2025-01-01 0:03 UTC));
    assert!(history.unreadable_lines.is_empty());

    // ACME account credentials, their asides, retirement; dry runs kept apart.
    let accounts = store.accounts();
    assert_eq!(accounts.account(CA_URL).unwrap(), None);
    accounts.save_account(CA_URL, ACCOUNT).unwrap();
    accounts.save_account(CA_URL, ACCOUNT).unwrap();
    assert_eq!(accounts.account(CA_URL).unwrap().unwrap().bytes, ACCOUNT);
    assert_eq!(store.dry_run_accounts().account(CA_URL).unwrap(), None);
    let adopting = Aside::adopting(CA_URL);
    accounts.save_account_aside(adopting, ACCOUNT).unwrap();
    assert_eq!(
        accounts.account_aside(adopting).unwrap().map(|r| r.bytes),
        Some(ACCOUNT.to_vec())
    );
    accounts.remove_account_aside(adopting).unwrap();
    accounts.remove_account_aside(adopting).unwrap();
    assert_eq!(accounts.account_aside(adopting).unwrap(), None);
    accounts.retire_account(CA_URL).unwrap();
    assert_eq!(accounts.account(CA_URL).unwrap(), None);
    store
        .dry_run_accounts()
        .save_account(CA_URL, ACCOUNT)
        .unwrap();
}
