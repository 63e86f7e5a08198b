//! The CA's limits against `certinel renew --force` and `certinel revoke`: a forced
//! renewal skips the renewal window and certinel's backoff but never the CA's Retry-After
//! or its failed-authorization limit, and says when it may retry; a revocation whose
//! replacement would be refused revokes nothing.

use certinel::schedule::history::{self, ScheduleState};
use certinel::store::{CertStore, FsStore, VersionId};
use time::{Duration, OffsetDateTime};

use crate::common::pebble::{Pebble, PebbleOptions};
use crate::revoke::{Setup, certinel, issued, text};

fn save_schedule(setup: &Setup, schedule: &ScheduleState) {
    history::save_to(&FsStore::new(&setup.state_dir), "api", schedule).unwrap();
}

#[tokio::test]
async fn forced_renewals_and_revocations_wait_for_the_cas_limits_and_say_until_when() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let setup = issued(&pebble, "api").await;
    let store = CertStore::open(&setup.state_dir).unwrap();

    // Five failed validations of the name in the last hour: the CA's limit.
    let now = OffsetDateTime::now_utc();
    let mut schedule = ScheduleState::default();
    for minutes in [50, 40, 30, 20, 10] {
        schedule.record_failure(
            now - Duration::minutes(minutes),
            "unauthorized",
            None,
            &["api.certinel.test".to_owned()],
        );
    }
    save_schedule(&setup, &schedule);
    let forced = certinel(&setup, &["renew", "api", "--force"]).await;
    assert_eq!(forced.status.code(), Some(1), "{}", text(&forced));
    let output = text(&forced);
    assert!(
        output.contains("5 failed authorizations") && output.contains("retry after 20"),
        "{output}"
    );
    let revoked = certinel(&setup, &["revoke", "api"]).await;
    assert_eq!(revoked.status.code(), Some(1), "{}", text(&revoked));
    assert!(text(&revoked).contains("retry after"), "{}", text(&revoked));
    let audit = std::fs::read_to_string(setup.state_dir.join("audit.jsonl")).unwrap();
    assert!(
        !audit.contains(r#""step":"revoke""#),
        "nothing revoked:\n{audit}"
    );
    assert_eq!(store.current("api").unwrap(), Some(VersionId(1)));

    // The CA's Retry-After alone.
    let mut schedule = ScheduleState::default();
    schedule.record_failure(now, "rateLimited", Some(now + Duration::hours(1)), &[]);
    save_schedule(&setup, &schedule);
    let forced = certinel(&setup, &["renew", "api", "--force"]).await;
    assert_eq!(forced.status.code(), Some(1), "{}", text(&forced));
    assert!(text(&forced).contains("Retry-After"), "{}", text(&forced));

    // Backoff after ordinary failures does not hold a forced renewal.
    let mut schedule = ScheduleState::default();
    schedule.record_failure(now, "network", None, &[]);
    save_schedule(&setup, &schedule);
    let forced = certinel(&setup, &["renew", "api", "--force"]).await;
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced));
    assert_eq!(store.current("api").unwrap(), Some(VersionId(2)));
}
