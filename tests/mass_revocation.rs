//! The mass-revocation drill (modelled on Let's Encrypt's March 2026 drill): twenty
//! certificates behind the ARI front, first spread over their suggested window by jitter,
//! then all pulled into the past at once. Every one renews at its next look, each order
//! names the certificate it replaces, and the CA sees no storm of failed requests.

use certinel::renew::{RenewOptions, RenewOutcome, Renewer};
use futures::future::join_all;
use time::{Duration, OffsetDateTime};

use crate::common::ari_front::{AriFront, AriReply};
use crate::common::ari_setup::VALIDITY_SECONDS;
use crate::common::config_text::{acme_table, http01_certificate, write_config_file};
use crate::common::pebble::Pebble;

/// How many certificates take part in the drill.
const CERTIFICATES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_certificates_whose_windows_move_into_the_past_renew_at_once_with_replaces() {
    let pebble = Pebble::start_with_validity(VALIDITY_SECONDS).await;
    let front = AriFront::start(&pebble, true, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..CERTIFICATES).map(|i| format!("drill{i:02}")).collect();
    let mut text = acme_table(
        &dir.path().join("state"),
        &front.directory_url,
        &front.ca_file,
    );
    for name in &names {
        text += &http01_certificate(name, pebble.http_addr(), "");
    }
    let config = write_config_file(dir.path(), &text);
    let renewer = Renewer::new(&certinel::config::load(&config).unwrap_or_else(|e| panic!("{e}")));
    let renew_all = |at: OffsetDateTime| {
        join_all(
            names
                .iter()
                .map(|name| renewer.renew(name, RenewOptions::default(), at)),
        )
    };

    // Every certificate issued, as the service's tasks do, concurrently.
    let issued_at = OffsetDateTime::now_utc();
    for (name, outcome) in names.iter().zip(renew_all(issued_at).await) {
        assert!(
            matches!(outcome, Ok(RenewOutcome::Renewed { .. })),
            "{name}: {outcome:?}\n{}",
            pebble.log()
        );
    }

    // A window two days out: each certificate draws its own moment inside it.
    let (start, end) = (issued_at + Duration::days(2), issued_at + Duration::days(3));
    front.set_window(AriReply {
        window: (start, end),
        retry_after: Some("60".to_owned()),
        explanation_url: None,
    });
    let mut moments = Vec::new();
    for (name, outcome) in names.iter().zip(renew_all(issued_at).await) {
        let Ok(RenewOutcome::NotDue { renew_at, .. }) = outcome else {
            panic!("{name}: expected not due, got {outcome:?}");
        };
        assert!(start <= renew_at && renew_at <= end, "{name}: {renew_at}");
        moments.push(renew_at);
    }
    moments.sort();
    moments.dedup();
    assert_eq!(moments.len(), CERTIFICATES, "one moment each: {moments:?}");
    let spread = moments[CERTIFICATES - 1] - moments[0];
    assert!(
        spread >= Duration::hours(12),
        "jitter spreads them: {spread}"
    );

    // The CA moves every window into the past at once; at the next look, two minutes
    // later (past the 60 s Retry-After), every certificate renews and replaces the old one.
    front.set_window(AriReply {
        window: (
            issued_at - Duration::hours(2),
            issued_at - Duration::hours(1),
        ),
        retry_after: Some("60".to_owned()),
        explanation_url: None,
    });
    let drill = issued_at + Duration::minutes(2);
    for (name, outcome) in names.iter().zip(renew_all(drill).await) {
        assert!(
            matches!(outcome, Ok(RenewOutcome::Renewed { .. })),
            "{name}: {outcome:?}\n{}",
            pebble.log()
        );
    }

    let orders = front.new_orders();
    assert_eq!(
        orders.len(),
        2 * CERTIFICATES,
        "one order each time: {orders:?}"
    );
    let replacing = orders
        .iter()
        .filter(|order| order.get("replaces").is_some());
    assert_eq!(replacing.count(), CERTIFICATES, "{orders:?}");
    assert_eq!(
        front.renewal_info_requests().len(),
        2 * CERTIFICATES,
        "one renewalInfo request per certificate and look"
    );
    // Pebble rejects 5 % of nonces (badNonce, retried); anything beyond a few percent of
    // failed requests is a retry storm.
    let answered = front.answered();
    let failed: Vec<&(String, u16)> = answered
        .iter()
        .filter(|(_, status)| *status >= 400)
        .collect();
    assert!(
        failed.len() * 10 <= answered.len(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        answered.len()
    );
    assert!(
        failed.iter().all(|(_, status)| *status == 400),
        "only rejected nonces fail: {failed:?}"
    );
}
