//! Table-driven tests of the renewal decision: each case edits a baseline input and states
//! the decision as `Reason +delay` (delay from `now`).

use std::time::Duration as StdDuration;

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::cert::compact_duration;
use crate::schedule::ari::SuggestedWindow;

/// An owned [`PlanInput`], edited by each case.
struct Case {
    now: OffsetDateTime,
    current: Option<CurrentCert>,
    policy: Policy,
    names: Vec<String>,
    key_type: KeyType,
    state: ScheduleState,
    ari: Option<AriChoice>,
    random: f64,
    revoked: bool,
}

/// Now is 2025-02-01; the live certificate runs 2025-01-01 to 2025-04-01 (90 days) for
/// example.com with a P-256 key; default policy without jitter.
fn baseline() -> Case {
    Case {
        now: datetime!(2025-02-01 0:00 UTC),
        current: Some(CurrentCert {
            not_before: datetime!(2025-01-01 0:00 UTC),
            not_after: datetime!(2025-04-01 0:00 UTC),
            dns_names: vec!["example.com".into()],
            key_type: KeyType::EcdsaP256,
        }),
        policy: Policy {
            renew_before: RenewBefore::Default,
            jitter_fraction: 0.0,
            backoff_base: BACKOFF_BASE,
        },
        names: vec!["example.com".into()],
        key_type: KeyType::EcdsaP256,
        state: ScheduleState::default(),
        ari: None,
        random: 0.0,
        revoked: false,
    }
}

/// The plan for `case`.
fn decide(case: &Case) -> Decision {
    plan(&PlanInput {
        now: case.now,
        current: case.current.as_ref(),
        policy: &case.policy,
        wanted_names: &case.names,
        wanted_key_type: case.key_type,
        state: &case.state,
        ari: case.ari,
        random: case.random,
        revoked: case.revoked,
    })
}

/// `moment` as a delay from `now`: `now` or `+1d6h`.
fn delay_text(now: OffsetDateTime, moment: OffsetDateTime) -> String {
    let delay = moment - now;
    if delay.is_zero() {
        "now".to_owned()
    } else {
        format!("+{}", compact_duration(delay.unsigned_abs()))
    }
}

fn check(edit: impl FnOnce(&mut Case), expected: &str) {
    let mut case = baseline();
    edit(&mut case);
    let decision = decide(&case);
    assert!(
        decision.renew_at >= case.now,
        "renew_at before now: {decision:?}"
    );
    let delay = delay_text(case.now, decision.renew_at);
    assert_eq!(format!("{:?} {delay}", decision.reason), expected);
}

fn validity(case: &mut Case, not_before: OffsetDateTime, not_after: OffsetDateTime) {
    let cert = case.current.as_mut().unwrap();
    cert.not_before = not_before;
    cert.not_after = not_after;
}

fn failures(case: &mut Case, count: u32, minutes_ago: i64) {
    case.state.consecutive_failures = count;
    case.state.last_failure_at = Some(case.now - Duration::minutes(minutes_ago));
}

fn failed_authorizations(case: &mut Case, name: &str, minutes_ago: &[i64]) {
    let times = minutes_ago
        .iter()
        .map(|m| case.now - Duration::minutes(*m))
        .collect();
    case.state.failed_authorizations.insert(name.into(), times);
}

#[test]
fn certificates_that_are_unusable_are_renewed_at_once() {
    check(|c| c.current = None, "Missing now");
    check(|c| c.now = datetime!(2025-04-01 0:00 UTC), "Expired now");
    check(
        |c| c.names.push("api.example.com".into()),
        "NamesChanged now",
    );
    check(|c| c.key_type = KeyType::Rsa(2048), "KeyTypeChanged now");
}

#[test]
fn the_window_comes_from_the_issued_lifetime() {
    check(|_| {}, "Scheduled +29d");
    check(|c| c.now = datetime!(2025-03-15 0:00 UTC), "WindowOpen now");
    check(
        |c| c.policy.renew_before = RenewBefore::Duration(StdDuration::from_secs(10 * 86_400)),
        "Scheduled +49d",
    );
    check(
        |c| c.policy.renew_before = RenewBefore::Percentage(50.0),
        "Scheduled +14d",
    );
}

#[test]
fn a_renew_before_longer_than_the_issued_lifetime_falls_back_to_the_default() {
    check(
        |c| c.policy.renew_before = RenewBefore::Duration(StdDuration::from_secs(100 * 86_400)),
        "Scheduled +29d",
    );
}

#[test]
fn short_lived_certificates_renew_at_half_their_lifetime() {
    let start = datetime!(2025-02-01 0:00 UTC);
    check(
        |c| validity(c, start, start + Duration::days(6)),
        "Scheduled +3d",
    );
    check(
        |c| validity(c, start, start + Duration::days(10)),
        "Scheduled +5d",
    );
    check(
        |c| validity(c, start, start + Duration::days(11)),
        "Scheduled +7d8h",
    );
}

#[test]
fn jitter_moves_renewal_earlier_by_a_share_of_renew_before() {
    check(
        |c| {
            c.policy.jitter_fraction = 0.1;
            c.random = 0.5;
        },
        "Scheduled +27d12h",
    );
}

#[test]
fn failures_back_off_exponentially_up_to_a_day() {
    // (consecutive failures, minutes since the last, decision without a certificate)
    let cases = [
        (1, 0, "Backoff +5m"),
        (3, 5, "Backoff +15m"),
        (20, 0, "Backoff +1d"),
        (u32::MAX, 0, "Backoff +1d"),
        (2, 60, "Missing now"),
    ];
    for (count, minutes_ago, expected) in cases {
        check(
            |c| {
                c.current = None;
                failures(c, count, minutes_ago)
            },
            expected,
        );
    }
    check(|c| failures(c, 3, 0), "Scheduled +29d");
}

#[test]
fn retry_after_wins_only_when_later_than_the_backoff() {
    // (consecutive failures, the CA's Retry-After from now, decision)
    let cases = [
        (1, Duration::hours(2), "RetryAfter +2h"),
        (3, Duration::minutes(1), "Backoff +20m"),
    ];
    for (count, retry_after, expected) in cases {
        check(
            |c| {
                c.current = None;
                failures(c, count, 0);
                c.state.retry_after = Some(c.now + retry_after);
            },
            expected,
        );
    }
}

#[test]
fn five_failed_authorizations_in_an_hour_pause_that_identifier() {
    // (wanted name, identifier that failed, minutes ago of each failure, decision)
    let cases: [(&str, &str, &[i64], &str); 6] = [
        (
            "example.com",
            "example.com",
            &[50, 40, 30, 20, 10],
            "RateLimited +10m",
        ),
        (
            "example.com",
            "example.com",
            &[55, 50, 40, 30, 20, 10],
            "RateLimited +10m",
        ),
        (
            "example.com",
            "example.com",
            &[40, 30, 20, 10],
            "Missing now",
        ),
        (
            "example.com",
            "example.com",
            &[90, 40, 30, 20, 10],
            "Missing now",
        ),
        (
            "EXAMPLE.com",
            "example.com",
            &[50, 40, 30, 20, 10],
            "RateLimited +10m",
        ),
        (
            "example.com",
            "other.example",
            &[50, 40, 30, 20, 10],
            "Missing now",
        ),
    ];
    for (wanted, failed, minutes_ago, expected) in cases {
        check(
            |c| {
                c.current = None;
                c.names = vec![wanted.into()];
                failed_authorizations(c, failed, minutes_ago);
            },
            expected,
        );
    }
}

#[test]
fn the_decision_keeps_a_failing_renewal_visible() {
    let mut case = baseline();
    failures(&mut case, 4, 0);
    assert_eq!(decide(&case).consecutive_failures, 4);
}

#[test]
fn a_shorter_backoff_base_doubles_from_that_base() {
    check(
        |case| {
            // The window is open, so only the backoff (1 s · 2²) holds the renewal back.
            case.now = datetime!(2025-03-15 0:00 UTC);
            case.policy.backoff_base = Duration::seconds(1);
            case.state.consecutive_failures = 3;
            case.state.last_failure_at = Some(case.now);
        },
        "Backoff +4s",
    );
}
#[test]
fn a_first_version_whose_rollout_failed_is_retried_after_the_backoff_not_at_its_window() {
    let failed_rollout = |c: &mut Case| {
        c.state
            .record_failure(c.now, "deploy (hook): exit status 1", None, &[]);
        c.state.record_failed_rollout();
    };
    check(failed_rollout, "Backoff +5m");
    check(
        |c| {
            failed_rollout(c);
            c.now += Duration::minutes(5);
        },
        "RolloutFailed now",
    );
    check(
        |c| {
            failed_rollout(c);
            c.state.record_success(c.now);
        },
        "Scheduled +29d",
    );
}

#[test]
fn a_revoked_certificate_is_renewed_at_once_whatever_its_window_says() {
    check(|c| c.revoked = true, "Revoked now");
    // The CA's window (ARI) far out does not hold a revoked certificate back either.
    check(
        |c| {
            c.revoked = true;
            c.ari = Some(AriChoice {
                window: SuggestedWindow {
                    start: datetime!(2025-03-10 0:00 UTC),
                    end: datetime!(2025-03-11 0:00 UTC),
                },
                renew_at: datetime!(2025-03-10 12:00 UTC),
            });
        },
        "Revoked now",
    );
    // An expired certificate stays `Expired`: that it was revoked too changes nothing.
    check(
        |c| {
            c.revoked = true;
            c.now = datetime!(2025-04-01 0:00 UTC);
        },
        "Expired now",
    );
}

#[test]
fn a_revoked_certificate_still_waits_for_the_backoff_and_the_ca() {
    check(
        |c| {
            c.revoked = true;
            failures(c, 1, 1);
        },
        "Backoff +4m",
    );
    check(
        |c| {
            c.revoked = true;
            c.state.retry_after = Some(c.now + Duration::hours(1));
        },
        "RetryAfter +1h",
    );
    check(
        |c| {
            c.revoked = true;
            failed_authorizations(c, "example.com", &[1, 2, 3, 4, 5]);
        },
        "RateLimited +55m",
    );
}

#[test]
fn a_renewal_rolled_back_to_the_previous_version_is_retried_with_backoff() {
    // The restored version is the one whose window had opened: the plan sees an open window
    // held back only by the backoff of the failure.
    let rolled_back = |c: &mut Case| {
        c.now = datetime!(2025-03-15 0:00 UTC);
        c.state
            .record_failure(c.now, "deploy (hook): exit status 1", None, &[]);
    };
    check(rolled_back, "Backoff +5m");
    check(
        |c| {
            rolled_back(c);
            c.now += Duration::minutes(5);
        },
        "WindowOpen now",
    );
    check(
        |c| {
            rolled_back(c);
            c.state
                .record_failure(c.now, "deploy (hook): exit status 1", None, &[]);
        },
        "Backoff +10m",
    );
}

/// The decision with the CA's suggested windows (ARI).
mod ari;
