//! The driver against a real store and no CA: each crash point a dead process can leave on
//! disk is resumed to the end, and a due renewal with a parked version rolls it out again.
//! No sockets: nothing here gets as far as the CA (its address is a closed loopback port).

use std::path::Path;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use crate::config::model::Config;
use crate::renew::{RandomSource, RenewError, RenewOptions, RenewOutcome, Renewer};
use crate::schedule::history as schedule_state;
use crate::store::testing::{Issued, issue_valid};
use crate::store::{CertStore, Origin, Stage, VersionId, VersionState};

/// Always the same draw.
struct Fixed(f64);

impl RandomSource for Fixed {
    fn draw(&self) -> f64 {
        self.0
    }
}

/// A configuration with certificate `api` for `api.test`, renewed 30 days before expiry,
/// running `deploy`.
fn config(dir: &Path, deploy: &[&str]) -> Config {
    let text = format!(
        "state_dir = {:?}\n[acme]\ndirectory = \"https://127.0.0.1:9/dir\"\n\
         [[certificate]]\nname = \"api\"\ndns_names = [\"api.test\"]\nrenew_before = \"30d\"\n\
         deploy = {deploy:?}\n\
         challenge = {{ type = \"http-01\", listen = \"127.0.0.1:0\" }}\n",
        dir.join("state").display().to_string()
    );
    crate::config::parse(&text, None).expect("test config")
}

/// A certificate for `api.test` valid from `days_ago` days before `now` for 90 days.
fn issued(now: OffsetDateTime, days_ago: i64) -> Issued {
    let not_before = now - Duration::days(days_ago);
    issue_valid(
        &["api.test"],
        &rcgen::PKCS_ECDSA_P256_SHA256,
        not_before,
        not_before + Duration::days(90),
    )
}

/// Stores a version; imported, so the CA is never asked about it.
fn stage(store: &CertStore, issued: &Issued, now: OffsetDateTime) -> VersionId {
    let origin = Origin {
        created_at: now,
        source: "imported".into(),
    };
    store
        .stage_pending("api", issued.new_version(&origin))
        .unwrap()
        .version
}

/// `api` in a fresh state directory: `old` current, issued 70 days ago (due), and `new`
/// stored.
struct TwoVersions {
    _dir: tempfile::TempDir,
    config: Config,
    store: CertStore,
    old: VersionId,
    new: VersionId,
}

/// [`TwoVersions`] at `now`, configured to run `deploy`.
fn two_versions(deploy: &[&str], now: OffsetDateTime) -> TwoVersions {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), deploy);
    let store = CertStore::open(&config.state_dir).unwrap();
    let old = stage(&store, &issued(now, 70), now);
    store.promote("api", old).unwrap();
    let new = stage(&store, &issued(now, 0), now);
    TwoVersions {
        _dir: dir,
        config,
        store,
        old,
        new,
    }
}

fn audit_steps(config: &Config) -> Vec<String> {
    crate::store::testing::audit_steps(&config.state_dir)
}

fn renewer(config: &Config) -> Renewer {
    Renewer::new(config).with_random(Arc::new(Fixed(0.5)))
}

/// Renews `api` with default options at `now`.
async fn renew_api(config: &Config, now: OffsetDateTime) -> Result<RenewOutcome, RenewError> {
    renewer(config)
        .renew("api", RenewOptions::default(), now)
        .await
}

/// Asserts that `outcome` renewed to `version`; `case` names the case on failure.
fn assert_renewed_to(outcome: &Result<RenewOutcome, RenewError>, version: VersionId, case: &str) {
    assert!(
        matches!(outcome, Ok(RenewOutcome::Renewed { version: renewed, .. }) if *renewed == version),
        "{case}: {outcome:?}"
    );
}

#[tokio::test]
async fn each_crash_point_after_the_order_resumes_to_the_end_without_the_ca() {
    let now = OffsetDateTime::now_utc();
    // (stage left on disk, whether the new version was live, audit steps of the restart)
    let rows = [
        (
            Stage::Pending,
            false,
            &["recover", "deployed", "verified", "done"][..],
        ),
        (Stage::Deployed, true, &["recover", "verified", "done"][..]),
        (Stage::Verified, true, &["recover", "done"][..]),
    ];
    for (stage_left, live, steps) in rows {
        let api = two_versions(&[], now);
        api.store.begin("api", now).unwrap();
        api.store.advance("api", Stage::Pending, api.new).unwrap();
        if live {
            api.store.promote("api", api.new).unwrap();
        }
        api.store.advance("api", stage_left, api.new).unwrap();

        let outcome = renew_api(&api.config, now).await;
        assert_renewed_to(&outcome, api.new, &format!("{stage_left:?}"));
        assert_eq!(audit_steps(&api.config), steps, "{stage_left:?}");
        assert_eq!(api.store.current("api").unwrap(), Some(api.new));
        assert_eq!(api.store.previous("api").unwrap(), Some(api.old));
        assert_eq!(api.store.inflight("api").unwrap(), None, "{stage_left:?}");
    }
}

#[tokio::test]
async fn a_stored_but_unrecorded_version_is_adopted_and_rolled_out() {
    let now = OffsetDateTime::now_utc();
    let api = two_versions(&[], now);
    // The process died between stage_pending and advance(Pending).
    api.store.begin("api", now).unwrap();

    let outcome = renew_api(&api.config, now).await;
    assert_renewed_to(&outcome, api.new, "adopted");
    assert_eq!(
        audit_steps(&api.config),
        ["recover", "deployed", "verified", "done"]
    );
}

#[tokio::test]
async fn a_failed_deploy_rolls_back_parks_the_version_and_counts_one_failure() {
    let now = OffsetDateTime::now_utc();
    let api = two_versions(&["exit 3"], now);
    api.store.begin("api", now).unwrap();
    api.store.advance("api", Stage::Pending, api.new).unwrap();

    let outcome = renew_api(&api.config, now).await;
    assert!(
        matches!(outcome, Err(RenewError::Hook { version, restored: Some(restored), .. })
            if version == api.new && restored == api.old),
        "{outcome:?}"
    );
    assert_eq!(
        audit_steps(&api.config),
        ["recover", "deployed", "rollback", "deployed"]
    );
    assert_eq!(api.store.current("api").unwrap(), Some(api.old));
    assert_eq!(
        api.store.metadata("api", api.new).unwrap().state,
        VersionState::Parked
    );
    let schedule =
        schedule_state::load_from(&crate::store::FsStore::new(&api.config.state_dir), "api")
            .unwrap();
    assert_eq!(schedule.consecutive_failures, 1);
}

#[tokio::test]
async fn a_certificate_not_due_persists_the_injected_draw_and_says_when_to_look_again() {
    let now = OffsetDateTime::now_utc();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[]);
    let store = CertStore::open(&config.state_dir).unwrap();
    let current = stage(&store, &issued(now, 10), now);
    store.promote("api", current).unwrap();

    let attempt = renewer(&config)
        .attempt("api", RenewOptions::default(), now)
        .await;
    let Ok(RenewOutcome::NotDue {
        renew_at,
        next_check,
        ..
    }) = attempt.result
    else {
        panic!("{:?}", attempt.result);
    };
    assert_eq!(attempt.next_check, Some(next_check));
    assert_eq!(next_check, renew_at);
    let schedule =
        schedule_state::load_from(&crate::store::FsStore::new(&config.state_dir), "api").unwrap();
    assert_eq!(schedule.jitter.map(|draw| draw.value), Some(0.5));
    assert!(audit_steps(&config).is_empty(), "nothing happened");
}

#[tokio::test]
async fn a_due_renewal_with_a_parked_version_rolls_it_out_instead_of_ordering() {
    let now = OffsetDateTime::now_utc();
    let api = two_versions(&[], now);
    let parked = api.new;
    api.store
        .set_state("api", parked, VersionState::Parked)
        .unwrap();

    let attempt = renewer(&api.config)
        .attempt("api", RenewOptions::default(), now)
        .await;
    assert_renewed_to(&attempt.result, parked, "parked");
    assert_eq!(
        audit_steps(&api.config),
        ["begin", "deployed", "verified", "done"]
    );
    // The next look is the new version's window: issued today for 90 days, 30 days before.
    let next = attempt.next_check.expect("a wake-up");
    assert!(next > now + Duration::days(50), "{next}");
}
