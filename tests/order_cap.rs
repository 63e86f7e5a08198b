//! `max_concurrent_orders` against a real Pebble: certificates that fall due together reach
//! the CA no more than the cap at a time, the others wait (not a failure) and all issue.
//!
//! The orders open at the CA are counted from the ACME requests the client reports: an
//! order is open from its new-order request's 201 answer until its certificate's download
//! answered 200.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certinel::acme::AcmeObserver;
use certinel::renew::{RenewOptions, RenewOutcome, Renewer};

use crate::common::config_text::{http01_certificate, pebble_acme_table, write_config_file};
use crate::common::pebble::Pebble;

/// Orders open at the CA (created, certificate not yet downloaded) and the most seen at
/// once, and the order slots' own counts as reported.
#[derive(Default)]
struct OpenOrders {
    counts: Mutex<Counts>,
}

#[derive(Default, Debug)]
struct Counts {
    open: i64,
    most_open: i64,
    created: usize,
    downloaded: usize,
    most_in_flight: usize,
    most_waiting: usize,
}

impl AcmeObserver for OpenOrders {
    fn request_done(&self, endpoint: &'static str, status: &str, _elapsed: Duration) {
        let mut counts = self.counts.lock().unwrap();
        match (endpoint, status) {
            ("new_order", "201") => {
                counts.open += 1;
                counts.created += 1;
                counts.most_open = counts.most_open.max(counts.open);
            }
            ("certificate", "200") => {
                counts.open -= 1;
                counts.downloaded += 1;
            }
            _ => {}
        }
    }

    fn order_slots_changed(&self, ca: &str, in_flight: usize, waiting: usize) {
        assert_eq!(ca, "acme");
        let mut counts = self.counts.lock().unwrap();
        counts.most_in_flight = counts.most_in_flight.max(in_flight);
        counts.most_waiting = counts.most_waiting.max(waiting);
    }
}

/// A configuration with `count` http-01 certificates `c0`, `c1`... sharing Pebble's one
/// http-01 address, and `max_concurrent_orders = cap` in `[acme]`.
fn write_capped_config(dir: &Path, pebble: &Pebble, count: usize, cap: usize) -> Renewer {
    let mut text = pebble_acme_table(&dir.join("state"), pebble);
    text += &format!("max_concurrent_orders = {cap}\n");
    for index in 0..count {
        text += &http01_certificate(&format!("c{index}"), pebble.http_addr(), "");
    }
    let path = write_config_file(dir, &text);
    let config = certinel::config::load(&path).expect("test configuration loads");
    assert_eq!(config.acme.as_ref().unwrap().max_concurrent_orders, cap);
    Renewer::new(&config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_of_two_keeps_six_due_certificates_to_two_open_orders_and_issues_all_six() {
    const CERTIFICATES: usize = 6;
    let pebble = Pebble::start_with_validity(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let observer = Arc::new(OpenOrders::default());
    let renewer =
        write_capped_config(dir.path(), &pebble, CERTIFICATES, 2).with_observer(observer.clone());

    // Every certificate is missing, so all six are due at the same moment, as at the first
    // start of a fleet.
    let now = renewer.now();
    let renewals = (0..CERTIFICATES).map(|index| {
        let renewer = &renewer;
        async move {
            let name = format!("c{index}");
            let outcome = renewer.renew(&name, RenewOptions::default(), now).await;
            (name, outcome)
        }
    });
    let outcomes = futures::future::join_all(renewals).await;

    for (name, outcome) in &outcomes {
        assert!(
            matches!(outcome, Ok(RenewOutcome::Renewed { .. })),
            "{name}: {outcome:?}\nPebble:\n{}",
            pebble.log()
        );
        let current = dir
            .path()
            .join(format!("state/certs/{name}/current/fullchain.pem"));
        assert!(current.is_file(), "{}", current.display());
    }
    let counts = observer.counts.lock().unwrap();
    assert_eq!(
        (counts.created, counts.downloaded, counts.open),
        (CERTIFICATES, CERTIFICATES, 0),
        "one order per certificate, each downloaded: {counts:?}"
    );
    assert_eq!(
        counts.most_open, 2,
        "never more than the cap open at once: {counts:?}"
    );
    assert_eq!(counts.most_in_flight, 2, "{counts:?}");
    assert!(
        counts.most_waiting >= 1,
        "some renewals waited for a slot: {counts:?}"
    );
}

#[tokio::test]
async fn certinel_run_logs_a_waiting_renewal_and_exports_the_order_slot_gauges() {
    use crate::common::service::{Service, promtool_check, sample};

    const CERTIFICATES: usize = 3;
    let pebble = Pebble::start_with_validity(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = pebble_acme_table(&dir.path().join("state"), &pebble);
    text += "max_concurrent_orders = 1\n";
    for index in 0..CERTIFICATES {
        text += &http01_certificate(&format!("c{index}"), pebble.http_addr(), "");
    }
    let config = write_config_file(dir.path(), &text);

    let mut service = Service::start(Some(&config)).await;
    let waiting = service
        .wait_for_log("every order slot at the CA is taken; waiting for one")
        .await;
    assert_eq!(waiting["fields"]["ca"], "acme", "{waiting}");
    assert_eq!(waiting["fields"]["cap"], 1, "{waiting}");
    let certificate = waiting["fields"]["certificate"]
        .as_str()
        .unwrap_or_default();
    assert!(
        ["c0", "c1", "c2"].contains(&certificate),
        "the waiting certificate is named: {waiting}"
    );

    let value = |body: &str, series: &str| sample(body, series).unwrap_or(-1.0);
    let body = service
        .metrics_until("every certificate current, no slot held", |body| {
            (0..CERTIFICATES).all(|index| {
                value(
                    body,
                    &format!("certinel_certificate_ready{{name=\"c{index}\"}}"),
                ) == 1.0
            }) && value(body, "certinel_acme_orders_in_flight{ca=\"acme\"}") == 0.0
                && value(body, "certinel_acme_orders_waiting{ca=\"acme\"}") == 0.0
        })
        .await;
    for index in 0..CERTIFICATES {
        let failures = value(
            &body,
            &format!(
                "certinel_certificate_renewals_total{{name=\"c{index}\",outcome=\"failure\"}}"
            ),
        );
        assert!(failures <= 0.0, "waiting is no failure (c{index}):\n{body}");
    }
    let (code, output) = promtool_check(&body);
    assert_eq!(code, 0, "promtool check metrics: {output}");
}
