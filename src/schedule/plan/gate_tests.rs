//! Tests of [`ca_gate`]: the CA's limits that a forced renewal still honours.

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;

const NOW: OffsetDateTime = datetime!(2025-02-01 12:00 UTC);

fn names() -> Vec<String> {
    vec!["a.example".into(), "b.example".into()]
}

fn failed(state: &mut ScheduleState, name: &str, minutes_ago: &[i64]) {
    for minutes in minutes_ago {
        state.record_failure(
            NOW - Duration::minutes(*minutes),
            "invalid",
            None,
            &[name.to_owned()],
        );
    }
}

#[test]
fn nothing_holds_a_forced_renewal_after_plain_failures() {
    let mut state = ScheduleState::default();
    state.record_failure(NOW - Duration::minutes(1), "network", None, &[]);
    state.record_failure(NOW, "network", None, &[]);
    assert_eq!(ca_gate(NOW, &state, &names()), None);
}

#[test]
fn a_future_retry_after_holds_until_it_passes() {
    let mut state = ScheduleState::default();
    let until = NOW + Duration::minutes(30);
    state.record_failure(NOW, "rate limited", Some(until), &[]);
    assert_eq!(
        ca_gate(NOW, &state, &names()),
        Some(CaGate {
            until,
            reason: Reason::RetryAfter
        })
    );
    assert_eq!(ca_gate(until, &state, &names()), None);
}

#[test]
fn five_failed_authorizations_in_an_hour_hold_until_the_oldest_of_them_leaves_it() {
    let mut state = ScheduleState::default();
    failed(&mut state, "b.example", &[50, 40, 30, 20, 10]);
    assert_eq!(
        ca_gate(NOW, &state, &names()),
        Some(CaGate {
            until: NOW + Duration::minutes(10),
            reason: Reason::RateLimited
        })
    );
    let mut four = ScheduleState::default();
    failed(&mut four, "b.example", &[40, 30, 20, 10]);
    assert_eq!(ca_gate(NOW, &four, &names()), None);
    // Another certificate's names do not matter.
    assert_eq!(ca_gate(NOW, &state, &["a.example".into()]), None);
}

#[test]
fn the_later_of_retry_after_and_the_rate_limit_wins() {
    let mut state = ScheduleState::default();
    failed(&mut state, "a.example", &[50, 40, 30, 20, 10]);
    state.retry_after = Some(NOW + Duration::hours(2));
    assert_eq!(
        ca_gate(NOW, &state, &names()).map(|gate| gate.reason),
        Some(Reason::RetryAfter)
    );
}
