//! Table-driven tests of the decision with the CA's renewal information (ARI, RFC 9773):
//! suggested windows, the safety floor, the rule reported, and what each answer does to
//! the next poll.

use time::Duration;

use super::*;

/// A suggested window from `start` to `end` after now, with the moment `at` after now.
fn ari(case: &mut Case, start: Duration, end: Duration, at: Duration) {
    case.ari = Some(AriChoice {
        window: SuggestedWindow {
            start: case.now + start,
            end: case.now + end,
        },
        renew_at: case.now + at,
    });
}

#[test]
fn the_moment_chosen_in_a_suggested_window_takes_precedence_over_the_policy() {
    let day = Duration::days(1);
    check(|c| ari(c, day * 10, day * 12, day * 11), "Scheduled +11d");
    check(|c| ari(c, day * 40, day * 42, day * 41), "Scheduled +41d");
    check(
        |c| ari(c, -Duration::HOUR, day, Duration::ZERO),
        "WindowOpen now",
    );
    check(
        |c| {
            c.names.push("api.example.com".into());
            ari(c, day * 10, day * 12, day * 11)
        },
        "NamesChanged now",
    );
    check(
        |c| {
            failures(c, 1, 0);
            ari(c, -day, day, Duration::ZERO)
        },
        "Backoff +5m",
    );
}

#[test]
fn the_safety_floor_caps_a_suggested_window_at_a_twentieth_of_the_lifetime() {
    // 90-day lifetime: the floor is 4.5 days before notAfter (2025-03-27 12:00).
    check(
        |c| {
            ari(
                c,
                Duration::days(80),
                Duration::days(90),
                Duration::days(85),
            )
        },
        "Scheduled +54d12h",
    );
    check(
        |c| {
            c.now = datetime!(2025-03-29 0:00 UTC);
            ari(c, Duration::days(7), Duration::days(8), Duration::days(7));
        },
        "WindowOpen now",
    );
}

#[test]
fn the_rule_names_the_window_that_decided() {
    let rule = |edit: fn(&mut Case)| {
        let mut case = baseline();
        edit(&mut case);
        decide(&case).rule.as_str()
    };
    assert_eq!(rule(|_| {}), "renew_before");
    assert_eq!(
        rule(|c| ari(c, Duration::days(1), Duration::days(2), Duration::days(1))),
        "ari"
    );
}

/// Feeds one answer from the CA (after a `previous` window and moment, in hours from now)
/// through `ari::absorb` and the plan: `Reason +delay, poll +delay`.
fn check_ari(
    previous: Option<(i64, i64, i64)>,
    fetched: Result<(i64, i64, Option<u64>), &str>,
    expected: &str,
) {
    use crate::schedule::ari::{AriAnswer, AriFetchError, absorb};
    let mut case = baseline();
    let now = case.now;
    let hours = |n: i64| now + Duration::hours(n);
    let previous = previous.map(|(start, end, at)| crate::schedule::ari::AriState {
        cert_id: "aki.serial".into(),
        window_start: Some(hours(start)),
        window_end: Some(hours(end)),
        renew_at: Some(hours(at)),
        next_poll: now,
        last_error: None,
        explanation_url: None,
    });
    let fetched = fetched
        .map(|(start, end, retry_after)| AriAnswer {
            window: SuggestedWindow {
                start: hours(start),
                end: hours(end),
            },
            retry_after: retry_after.map(StdDuration::from_secs),
        })
        .map_err(|message| AriFetchError::Request(message.to_owned()));
    // The draw lands three quarters into a window seen for the first time.
    let state = absorb(previous.as_ref(), "aki.serial", fetched, now, 0.75);
    case.ari = state.choice();
    // The baseline's own draw is 0; the plan's jitter is off.
    let decision = decide(&case);
    assert_eq!(
        format!(
            "{:?} {} {}, poll {}",
            decision.reason,
            delay_text(now, decision.renew_at),
            decision.rule.as_str(),
            delay_text(now, state.next_poll)
        ),
        expected
    );
}

#[test]
fn renewal_information_moves_the_schedule_as_rfc_9773_says() {
    let cases = [
        // A future window: a moment inside it, poll at Retry-After.
        (None, (24, 48), "Scheduled +1d18h ari, poll +1h"),
        // The same window again keeps the moment drawn the first time.
        (
            Some((24, 48, 30)),
            (24, 48),
            "Scheduled +1d6h ari, poll +1h",
        ),
        // A window that has begun: at once.
        (None, (-1, 48), "WindowOpen now ari, poll +1h"),
        // The window moved before the chosen moment (a coming mass revocation): at once.
        (Some((24, 48, 40)), (2, 3), "WindowOpen now ari, poll +1h"),
        // A new window later than the chosen moment: drawn again.
        (
            Some((24, 48, 40)),
            (48, 96),
            "Scheduled +3d12h ari, poll +1h",
        ),
    ];
    for (previous, (start, end), expected) in cases {
        check_ari(previous, Ok((start, end, Some(3_600))), expected);
    }
}

#[test]
fn retry_after_is_clamped_and_anything_unusable_asks_again_in_six_hours() {
    let cases = [
        (
            None,
            Ok((24, 48, Some(1))),
            "Scheduled +1d18h ari, poll +1m",
        ),
        (
            None,
            Ok((24, 48, Some(30 * 86_400))),
            "Scheduled +1d18h ari, poll +1d",
        ),
        (None, Ok((24, 48, None)), "Scheduled +1d18h ari, poll +6h"),
        // No usable window and none before: the renew_before rule decides.
        (
            None,
            Ok((48, 24, Some(60))),
            "Scheduled +29d renew_before, poll +6h",
        ),
        (
            None,
            Err("HTTP 500"),
            "Scheduled +29d renew_before, poll +6h",
        ),
        // An error keeps the last usable window and its moment.
        (
            Some((24, 48, 30)),
            Err("HTTP 500"),
            "Scheduled +1d6h ari, poll +6h",
        ),
    ];
    for (previous, fetched, expected) in cases {
        check_ari(previous, fetched, expected);
    }
}
