//! Property tests of renewalInfo answers: any JSON body and `Retry-After` value either
//! parses into a suggested window or is refused, and a parsed answer folds into the
//! persisted ARI state (and back out of `schedule.json`) without a panic, with the next
//! poll inside the documented bounds.

use std::time::SystemTime;

use certinel_testkit::fuzz;
use proptest::prelude::*;

use super::*;
use crate::schedule::ari::{
    AriAnswer, AriState, FALLBACK_POLL, MAX_POLL, MIN_POLL, SuggestedWindow, absorb,
};

/// The moment the properties run at: fixed, so a failure replays.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_796_000_000).expect("a valid timestamp")
}

fn timestamp() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        3 => prop::sample::select(fuzz::TIMESTAMPS).prop_map(serde_json::Value::from),
        // Near the end of time, with offsets that push the local time past the year 9999.
        3 => (0u32..24, 0u32..60, -23i32..=23, 0u32..60).prop_map(|(hour, minute, offset_hours, offset_minutes)| {
            let sign = if offset_hours < 0 { '-' } else { '+' };
            serde_json::Value::from(format!(
                "9999-12-31T{hour:02}:{minute:02}:00{sign}{:02}:{offset_minutes:02}",
                offset_hours.abs()
            ))
        }),
        1 => fuzz::json_value(),
    ]
}

fn document() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (timestamp(), timestamp(), fuzz::json_value()).prop_map(|(start, end, url)| {
            serde_json::json!({
                "suggestedWindow": {"start": start, "end": end},
                "explanationURL": url,
            })
            .to_string()
            .into_bytes()
        }),
        1 => fuzz::json_value().prop_map(|value| value.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..128),
    ]
}

fn retry_after_header() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|seconds| seconds.to_string()),
        prop::sample::select(fuzz::HTTP_DATES).prop_map(str::to_owned),
        "[ -~]{0,32}",
    ]
}

/// Parses `body` as a renewalInfo answer, then folds it twice into the ARI state (a first
/// and a repeated answer), checking the bounds and the `schedule.json` round trip.
fn check(body: &[u8], header: &str, random: f64) {
    let Ok(document) = serde_json::from_slice::<RenewalInfoDocument>(body) else {
        return;
    };
    let window = SuggestedWindow {
        start: document.suggested_window.start,
        end: document.suggested_window.end,
    };
    let answer = AriAnswer {
        window,
        retry_after: retry::parse_retry_after(header, SystemTime::from(now())),
    };
    let first = absorb(None, "a.b", Ok(answer), now(), random);
    let again = absorb(Some(&first), "a.b", Ok(answer), now(), random);
    for state in [&first, &again] {
        let wait = state.next_poll - now();
        assert!(
            wait == FALLBACK_POLL || (MIN_POLL..=MAX_POLL).contains(&wait),
            "next poll in {wait} for {header:?}"
        );
        let saved = serde_json::to_string(state).expect("the ARI state serialises");
        let loaded: AriState = serde_json::from_str(&saved).expect("the ARI state loads");
        assert_eq!(&loaded, state);
    }
}

proptest! {
    #![proptest_config(fuzz::config(2_000))]

    #[test]
    fn renewal_info_answers_of_any_shape_parse_or_refuse_and_fold_without_panic(
        body in document(),
        header in retry_after_header(),
        random in 0.0f64..1.0,
    ) {
        fuzz::within_time_limit("a renewalInfo answer", || check(&body, &header, random));
    }

    #[test]
    fn directory_documents_of_any_shape_give_facts_without_panic(
        directory in fuzz::json_value(),
        renewal_info in fuzz::json_value(),
        profiles in fuzz::json_value(),
    ) {
        let mut document = directory;
        if let Some(object) = document.as_object_mut() {
            object.insert("renewalInfo".into(), renewal_info);
            object.insert("meta".into(), serde_json::json!({"profiles": profiles}));
        }
        let _ = DirectoryFacts::from_directory(&document);
    }
}

/// Found by the property above: a window ending at `9999-12-31T23:59:59.999999999-23:59`
/// (past the year 9999 in UTC) made the moment drawn inside it overflow, a panic in the
/// renewer. Such a window is now refused as a bad answer.
#[test]
fn a_window_ending_after_the_year_9999_in_utc_is_refused_not_a_panic() {
    let body = br#"{"suggestedWindow":{"start":"9999-12-31T00:00:00+00:00",
        "end":"9999-12-31T23:59:59.999999999-23:59"}}"#;
    check(body, "0", 0.7272322052723886);
    let parsed = serde_json::from_slice::<RenewalInfoDocument>(body);
    let error = parsed.err().expect("the window is refused").to_string();
    assert!(error.contains("outside the years 0000 to 9999"), "{error}");
}

/// Found by the property above once times were moved to UTC: a start at
/// `0000-01-01T00:00:00+23:59` is in the year -1 in UTC, which `schedule.json` (RFC 3339)
/// cannot hold.
#[test]
fn a_window_starting_before_the_year_0000_in_utc_is_refused() {
    let body = br#"{"suggestedWindow":{"end":"0000-01-01T00:00:00Z",
        "start":"0000-01-01T00:00:00+23:59"}}"#;
    check(body, "0", 0.0);
    assert!(serde_json::from_slice::<RenewalInfoDocument>(body).is_err());
}

#[test]
fn window_times_are_moved_to_utc() {
    let body = br#"{"suggestedWindow":{"start":"2026-12-03T09:00:00+02:00",
        "end":"2026-12-04T00:00:00-01:00"}}"#;
    let document: RenewalInfoDocument = serde_json::from_slice(body).expect("a valid answer");
    assert_eq!(
        document.suggested_window.start,
        time::macros::datetime!(2026-12-03 07:00 UTC)
    );
    assert_eq!(
        document.suggested_window.start.offset(),
        time::UtcOffset::UTC
    );
    assert_eq!(
        document.suggested_window.end,
        time::macros::datetime!(2026-12-04 01:00 UTC)
    );
}
