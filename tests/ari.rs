//! ACME Renewal Information (RFC 9773) and profiles against a real Pebble behind the ARI
//! front: the windows it serves move certinel's schedule, a renewal sends `replaces` for
//! the certificate it replaces, polls back off, and a profile is sent or refused.

use certinel::renew::{RenewOptions, RenewOutcome};
use time::{Duration, OffsetDateTime};

use crate::common::ari_front::AriReply;
use crate::common::ari_setup::{AriCase, Setup, due_now, forced, issue_first};

fn window(
    now: OffsetDateTime,
    start: Duration,
    end: Duration,
    retry_after: Option<&str>,
) -> AriReply {
    AriReply {
        window: (now + start, now + end),
        retry_after: retry_after.map(str::to_owned),
        explanation_url: None,
    }
}

fn seconds(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// For each order after the first issuance's, whether it carried `replaces`.
fn replaces_after_the_first(orders: &[serde_json::Value]) -> Vec<bool> {
    let renewals = orders.get(1..).unwrap_or_default();
    renewals
        .iter()
        .map(|order| order.get("replaces").is_some())
        .collect()
}

#[tokio::test]
async fn a_future_window_places_the_renewal_inside_it_and_status_writes_nothing() {
    let (case, now, _) = AriCase::issued(true).await;

    let served = window(now, Duration::days(2), Duration::days(3), Some("3600"));
    case.front.set_window(served.clone());
    let (renew_at, next_check) = case.renew_not_due(now).await;
    assert!(
        renew_at >= served.window.0 && renew_at <= served.window.1,
        "{renew_at} inside the window"
    );
    assert_eq!(
        seconds(next_check),
        seconds(now + Duration::HOUR),
        "the next poll comes first"
    );
    assert_eq!(
        case.front.renewal_info_requests(),
        [certinel::acme::ari_certificate_id(&case.setup.current_cert_pem()).unwrap()]
    );

    let before = case.setup.schedule_json();
    let status = case.status(now);
    assert_eq!(
        case.setup.schedule_json(),
        before,
        "status leaves schedule.json alone"
    );
    assert_eq!(status.renewal_rule.as_str(), "ari");
    assert_eq!(status.next_renewal, renew_at);
    assert_eq!(status.next_renewal_reason.as_str(), "scheduled");
    assert_eq!(
        status.ari_window_start.map(seconds),
        Some(seconds(served.window.0))
    );
    assert_eq!(
        status.ari_window_end.map(seconds),
        Some(seconds(served.window.1))
    );
    assert_eq!(
        status.ari_next_poll.map(seconds),
        Some(seconds(now + Duration::HOUR))
    );

    // A restart before the next poll keeps the moment and does not ask again.
    let restarted = case.setup.renewer();
    let again = restarted
        .renew("api", RenewOptions::default(), now + Duration::minutes(30))
        .await;
    assert!(
        matches!(again, Ok(RenewOutcome::NotDue { renew_at: at, .. }) if at == renew_at),
        "{again:?}"
    );
    assert_eq!(case.front.renewal_info_requests().len(), 1);

    let facts = case.renewer.ca_facts();
    assert!(facts.ari_supported);
    let skew = facts.clock_skew.expect("Pebble sends a Date header");
    assert!(skew.abs() < 5.0, "loopback CA skew {skew}");
}

#[tokio::test]
async fn a_window_moved_earlier_renews_at_once_with_replaces_for_the_old_certificate() {
    let (case, now, first_serial) = AriCase::issued(true).await;
    let old_id = certinel::acme::ari_certificate_id(&case.setup.current_cert_pem()).unwrap();
    assert_eq!(case.front.new_orders().len(), 1);
    assert!(
        case.front.new_orders()[0].get("replaces").is_none(),
        "nothing to replace at first"
    );

    case.front.set_window(window(
        now,
        Duration::days(5),
        Duration::days(6),
        Some("60"),
    ));
    let planned = case.renew(now).await.unwrap();
    assert!(
        matches!(planned, RenewOutcome::NotDue { .. }),
        "{planned:?}"
    );

    // The CA pulls the window in before the chosen moment (as before a mass revocation).
    case.front.set_window(due_now(now));
    let later = now + Duration::minutes(2);
    let renewed = case.renew(later).await;
    let Ok(RenewOutcome::Renewed { serial, .. }) = renewed else {
        panic!("expected a renewal, got {renewed:?}\n{}", case.pebble.log());
    };
    assert_ne!(serial, first_serial);
    let orders = case.front.new_orders();
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert_eq!(orders[1]["replaces"].as_str(), Some(old_id.as_str()));
}

#[tokio::test]
async fn without_renewal_info_the_renew_before_rule_decides_and_no_replaces_is_sent() {
    let (case, now, _) = AriCase::issued(false).await;

    let (renew_at, next_check) = case.renew_not_due(now).await;
    assert_eq!(next_check, renew_at);
    // 30-day certificate, default rule: 10 days before expiry, minus up to 10 % jitter.
    let days = (renew_at - now).whole_days();
    assert!((18..=20).contains(&days), "renews in {days} days");
    let status = case.status(now);
    assert_eq!(status.renewal_rule.as_str(), "renew_before");
    assert_eq!(
        (status.ari_window_start, status.ari_next_poll),
        (None, None)
    );
    assert!(case.front.renewal_info_requests().is_empty());
    assert!(!case.renewer.ca_facts().ari_supported);

    let forced = case.renew_forced(now).await;
    assert!(
        matches!(forced, Ok(RenewOutcome::Renewed { .. })),
        "{forced:?}"
    );
    assert!(
        case.front
            .new_orders()
            .iter()
            .all(|order| order.get("replaces").is_none())
    );
}

#[tokio::test]
async fn an_unusable_window_or_a_missing_retry_after_asks_again_in_six_hours() {
    let (case, now, _) = AriCase::issued(true).await;

    // Each answer comes six hours after the one before, when the CA is asked again.
    // (window start and end in days from now, Retry-After, the rule then, an error kept)
    let answers = [
        // The end before the start: ignored, the renew_before rule decides, ask in 6 hours.
        (3, 2, Some("60"), "renew_before", true),
        // A good window without Retry-After: used, but the next poll is 6 hours away too.
        (2, 3, None, "ari", true),
        // An invalid Retry-After is no Retry-After.
        (2, 3, Some("soon"), "ari", true),
    ];
    for (asked, (start, end, retry_after, rule, error_kept)) in answers.into_iter().enumerate() {
        let at = now + Duration::hours(6) * asked as i32;
        case.front.set_window(window(
            now,
            Duration::days(start),
            Duration::days(end),
            retry_after,
        ));
        case.renew(at).await.unwrap();
        let status = case.status(at);
        assert_eq!(status.renewal_rule.as_str(), rule, "answer {asked}");
        assert_eq!(
            status.ari_next_poll.map(seconds),
            Some(seconds(at + Duration::hours(6))),
            "answer {asked}"
        );
        assert_eq!(status.ari_error.is_some(), error_kept, "answer {asked}");
    }
    assert_eq!(case.front.renewal_info_requests().len(), 3);
}

#[tokio::test]
async fn an_advertised_profile_is_sent_on_the_order() {
    let profiles = [("shortlived", "6 days"), ("classic", "90 days")];
    let case = AriCase::with_profiles(true, &profiles, Some("shortlived")).await;
    issue_first(&case.renewer, &case.pebble, OffsetDateTime::now_utc()).await;
    assert_eq!(
        case.front.new_orders()[0]["profile"].as_str(),
        Some("shortlived")
    );
    assert_eq!(
        case.renewer
            .ca_facts()
            .profiles_available
            .into_iter()
            .collect::<Vec<_>>(),
        [("shortlived".to_owned(), true)]
    );
}

#[tokio::test]
async fn a_profile_the_directory_does_not_advertise_fails_before_any_order() {
    let case = AriCase::with_profiles(true, &[("classic", "90 days")], Some("tlsclient")).await;
    let error = case
        .renew(OffsetDateTime::now_utc())
        .await
        .expect_err("the profile is not offered");
    assert_eq!(
        (error.stage(), error.problem()),
        ("order", "profileUnavailable")
    );
    assert!(error.to_string().contains("\"tlsclient\""), "{error}");
    assert!(error.to_string().contains("classic"), "{error}");
    assert!(case.front.new_orders().is_empty(), "no order placed");
    assert_eq!(
        case.renewer.ca_facts().profiles_available.get("tlsclient"),
        Some(&false)
    );

    // Once the CA advertises it, the same renewer orders with it.
    case.front.set_profiles(&[("tlsclient", "client auth")]);
    let renewed = case.renew_forced(OffsetDateTime::now_utc()).await;
    assert!(
        matches!(renewed, Ok(RenewOutcome::Renewed { .. })),
        "{renewed:?}"
    );
    assert_eq!(
        case.front.new_orders()[0]["profile"].as_str(),
        Some("tlsclient")
    );
}

#[tokio::test]
async fn an_order_refused_as_already_replaced_is_placed_again_once_without_replaces() {
    let (case, now, _) = AriCase::issued(true).await;

    case.front.reject_next_replaces();
    let orders = case.renew_in_a_window_due_now(now).await;
    // After the first issuance: the refused order with `replaces`, then one without.
    assert_eq!(
        replaces_after_the_first(&orders),
        [true, false],
        "{orders:?}"
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_neither_asked_about_nor_replaced() {
    let AriCase { pebble, front, .. } = AriCase::start(true).await;
    let setup = Setup::new(&pebble.directory_url, &front.ca_file, &pebble, None);
    let now = OffsetDateTime::now_utc();
    issue_first(&setup.renewer(), &pebble, now).await;

    setup.switch_directory(&pebble.directory_url, &front.directory_url);
    front.set_window(due_now(now));
    let renewer = setup.renewer();
    let outcome = renewer.renew("api", RenewOptions::default(), now).await;
    assert!(
        matches!(outcome, Ok(RenewOutcome::NotDue { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        setup.status(&renewer, now).renewal_rule.as_str(),
        "renew_before"
    );
    assert!(front.renewal_info_requests().is_empty());

    let renewed = renewer.renew("api", forced(), now).await;
    assert!(
        matches!(renewed, Ok(RenewOutcome::Renewed { .. })),
        "{renewed:?}"
    );
    let orders = front.new_orders();
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert!(orders[0].get("replaces").is_none());
}

#[tokio::test]
async fn an_expired_certificate_is_renewed_without_asking_for_renewal_information() {
    let (case, now, _) = AriCase::issued(true).await;

    // RFC 9773 section 4.3: clients must not ask about a certificate that has expired.
    let after_expiry = now + Duration::days(31);
    case.front.set_window(window(
        after_expiry,
        Duration::days(1),
        Duration::days(2),
        Some("60"),
    ));
    let renewed = case.renew(after_expiry).await;
    case.assert_renewed(&renewed);
    assert!(case.front.renewal_info_requests().is_empty());
}

#[tokio::test]
async fn a_ca_that_starts_offering_renewal_information_gets_replaces_without_a_restart() {
    let (case, now, _) = AriCase::issued(false).await;

    // The account was loaded from a directory without renewalInfo; the CA adds it.
    case.front.set_renewal_info(true);
    let orders = case.renew_in_a_window_due_now(now).await;
    assert_eq!(case.front.renewal_info_requests().len(), 1);
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert!(orders[1].get("replaces").is_some(), "{orders:?}");
}

#[tokio::test]
async fn the_explanation_url_of_the_window_is_kept_and_shown_in_status() {
    let (case, now, _) = AriCase::issued(true).await;

    let mut served = window(now, Duration::days(2), Duration::days(3), Some("3600"));
    served.explanation_url = Some("https://ca.test/why".to_owned());
    case.front.set_window(served);
    let outcome = case.renew(now).await;
    assert!(
        matches!(outcome, Ok(RenewOutcome::NotDue { .. })),
        "{outcome:?}"
    );
    let status = case.status(now);
    assert_eq!(
        status.ari_explanation_url.as_deref(),
        Some("https://ca.test/why")
    );
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["ari_explanation_url"], "https://ca.test/why");
}

#[tokio::test]
async fn a_ca_that_does_not_echo_replaces_gets_no_second_order_and_no_more_replaces() {
    let (case, now, _) = AriCase::issued(true).await;

    case.front.ignore_replaces();
    let orders = case.renew_in_a_window_due_now(now).await;
    // The order the CA created is used: no second order is placed for this renewal.
    assert_eq!(replaces_after_the_first(&orders), [true], "{orders:?}");

    let again = case.renew_forced(now).await;
    assert!(
        matches!(again, Ok(RenewOutcome::Renewed { .. })),
        "{again:?}"
    );
    let orders = case.front.new_orders();
    assert_eq!(
        replaces_after_the_first(&orders),
        [true, false],
        "{orders:?}"
    );
}
