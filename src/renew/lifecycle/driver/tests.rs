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
        .stage_pending("api", &issued.key_pem, &issued.fullchain, &origin)
        .unwrap()
        .version
}

/// `v0001` current, issued 70 days ago (due), and `v0002` stored.
fn two_versions(config: &Config, now: OffsetDateTime) -> (CertStore, VersionId, VersionId) {
    let store = CertStore::open(&config.state_dir).unwrap();
    let old = stage(&store, &issued(now, 70), now);
    store.promote("api", old).unwrap();
    let new = stage(&store, &issued(now, 0), now);
    (store, old, new)
}

fn audit_steps(config: &Config) -> Vec<String> {
    crate::store::testing::audit_steps(&config.state_dir)
}

fn renewer(config: &Config) -> Renewer {
    Renewer::new(config).with_random(Arc::new(Fixed(0.5)))
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
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &[]);
        let (store, old, new) = two_versions(&config, now);
        store.begin("api", now).unwrap();
        store.advance("api", Stage::Pending, new).unwrap();
        if live {
            store.promote("api", new).unwrap();
        }
        store.advance("api", stage_left, new).unwrap();

        let outcome = renewer(&config)
            .renew("api", RenewOptions::default(), now)
            .await;
        assert!(
            matches!(outcome, Ok(RenewOutcome::Renewed { version, .. }) if version == new),
            "{stage_left:?}: {outcome:?}"
        );
        assert_eq!(audit_steps(&config), steps, "{stage_left:?}");
        assert_eq!(store.current("api").unwrap(), Some(new));
        assert_eq!(store.previous("api").unwrap(), Some(old));
        assert_eq!(store.inflight("api").unwrap(), None, "{stage_left:?}");
    }
}

#[tokio::test]
async fn a_stored_but_unrecorded_version_is_adopted_and_rolled_out() {
    let now = OffsetDateTime::now_utc();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[]);
    let (store, _, new) = two_versions(&config, now);
    // The process died between stage_pending and advance(Pending).
    store.begin("api", now).unwrap();

    let outcome = renewer(&config)
        .renew("api", RenewOptions::default(), now)
        .await;
    assert!(
        matches!(outcome, Ok(RenewOutcome::Renewed { version, .. }) if version == new),
        "{outcome:?}"
    );
    assert_eq!(
        audit_steps(&config),
        ["recover", "deployed", "verified", "done"]
    );
}

#[tokio::test]
async fn a_failed_deploy_rolls_back_parks_the_version_and_counts_one_failure() {
    let now = OffsetDateTime::now_utc();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &["exit 3"]);
    let (store, old, new) = two_versions(&config, now);
    store.begin("api", now).unwrap();
    store.advance("api", Stage::Pending, new).unwrap();

    let outcome = renewer(&config)
        .renew("api", RenewOptions::default(), now)
        .await;
    assert!(
        matches!(outcome, Err(RenewError::Hook { version, restored: Some(restored), .. })
            if version == new && restored == old),
        "{outcome:?}"
    );
    assert_eq!(
        audit_steps(&config),
        ["recover", "deployed", "rollback", "deployed"]
    );
    assert_eq!(store.current("api").unwrap(), Some(old));
    assert_eq!(
        store.metadata("api", new).unwrap().state,
        VersionState::Parked
    );
    let schedule =
        schedule_state::load_from(&crate::store::FsStore::new(&config.state_dir), "api").unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[]);
    let (store, _, parked) = two_versions(&config, now);
    store
        .set_state("api", parked, VersionState::Parked)
        .unwrap();

    let attempt = renewer(&config)
        .attempt("api", RenewOptions::default(), now)
        .await;
    assert!(
        matches!(attempt.result, Ok(RenewOutcome::Renewed { version, .. }) if version == parked),
        "{:?}",
        attempt.result
    );
    assert_eq!(
        audit_steps(&config),
        ["begin", "deployed", "verified", "done"]
    );
    // The next look is the new version's window: issued today for 90 days, 30 days before.
    let next = attempt.next_check.expect("a wake-up");
    assert!(next > now + Duration::days(50), "{next}");
}
