//! The state machine and the CA's renewal information (ARI): when it is asked, and what
//! its answers become.

use super::*;
use crate::schedule::ari::SuggestedWindow;

/// ARI state about the current certificate, asked again at `next_poll`.
fn ari_state(next_poll: OffsetDateTime) -> AriState {
    AriState {
        cert_id: CERT_ID.into(),
        window_start: None,
        window_end: None,
        renew_at: None,
        next_poll,
        last_error: None,
        explanation_url: None,
    }
}

fn sleeps(action: &Action) -> bool {
    matches!(action, Action::Sleep { .. })
}

#[test]
fn the_ca_is_asked_only_when_a_poll_is_due_about_an_unexpired_certificate_of_its_own() {
    let mut asked_recently = World::current(10);
    asked_recently.plan.schedule.ari = Some(ari_state(NOW + Duration::hours(1)));
    let mut due_again = World::current(10);
    due_again.plan.schedule.ari = Some(ari_state(NOW));
    let mut unreadable = World::current(10);
    unreadable.ari_id = None;
    let mut expired = World::current(100);
    expired.plan.schedule.jitter = None;
    expired.plan.current.as_mut().unwrap().not_after = NOW;

    assert!(sleeps(&asked_recently.next(Event::JitterSaved)));
    assert_eq!(
        due_again.next(Event::JitterSaved),
        Action::PollRenewalInfo {
            cert_id: CERT_ID.into()
        }
    );
    assert!(
        sleeps(&unreadable.next(Event::JitterSaved)),
        "no identifier: plan without asking"
    );
    assert_eq!(
        expired.next(Event::JitterSaved),
        Action::LoadAccount,
        "RFC 9773 4.3: never asked about an expired certificate"
    );
}

#[test]
fn renewal_information_about_a_certificate_from_another_ca_is_forgotten() {
    let mut imported = World::current(10);
    imported.plan.current.as_mut().unwrap().source = "imported".into();
    imported.ari_id = None;
    assert!(
        sleeps(&imported.next(Event::JitterSaved)),
        "nothing to forget"
    );
    imported.plan.schedule.ari = Some(ari_state(NOW + Duration::hours(1)));
    assert_eq!(
        imported.next(Event::JitterSaved),
        Action::SaveRenewalInfo { state: None }
    );
}

#[test]
fn each_answer_of_the_ca_becomes_the_persisted_state() {
    let world = World::current(10);
    assert!(
        sleeps(&world.next(Event::RenewalInfoUnsupported)),
        "a directory without renewalInfo and nothing to forget: plan"
    );
    let mut known = World::current(10);
    known.plan.schedule.ari = Some(ari_state(NOW + Duration::hours(1)));
    assert_eq!(
        known.next(Event::RenewalInfoUnsupported),
        Action::SaveRenewalInfo { state: None },
        "a directory that stopped offering renewalInfo: forget the state"
    );

    let Action::SaveRenewalInfo {
        state: Some(failed),
    } = world.next(Event::RenewalInfo {
        cert_id: CERT_ID.into(),
        answer: Err(AriFetchError::Account("refused".into())),
        explanation_url: Some("https://ca.test/ignored".into()),
    })
    else {
        panic!("a failed request is persisted");
    };
    assert_eq!(
        failed.next_poll,
        NOW + Duration::hours(6),
        "asked again in 6 h"
    );
    assert!(failed.last_error.is_some());
    assert_eq!(failed.explanation_url, None);

    let window = SuggestedWindow {
        start: NOW + Duration::days(2),
        end: NOW + Duration::days(3),
    };
    let Action::SaveRenewalInfo {
        state: Some(answered),
    } = world.next(Event::RenewalInfo {
        cert_id: CERT_ID.into(),
        answer: Ok(AriAnswer {
            window,
            retry_after: Some(std::time::Duration::from_secs(3600)),
        }),
        explanation_url: Some("https://ca.test/why".into()),
    })
    else {
        panic!("an answer is persisted");
    };
    assert_eq!(answered.window(), Some(window));
    assert_eq!(answered.next_poll, NOW + Duration::hours(1), "Retry-After");
    assert_eq!(
        answered.explanation_url.as_deref(),
        Some("https://ca.test/why")
    );
    let renew_at = answered.renew_at.expect("a moment inside the window");
    assert!(window.start <= renew_at && renew_at <= window.end);
}

#[test]
fn once_saved_the_renewal_information_decides() {
    let mut world = World::current(10);
    let mut state = ari_state(NOW + Duration::hours(1));
    state.window_start = Some(NOW - Duration::hours(1));
    state.window_end = Some(NOW + Duration::hours(1));
    state.renew_at = Some(NOW - Duration::minutes(1));
    world.plan.schedule.ari = Some(state);
    assert_eq!(
        world.next(Event::RenewalInfoSaved),
        Action::LoadAccount,
        "the suggested window is open: renew"
    );
}
