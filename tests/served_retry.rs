//! What later attempts do after a served check failed, against a real nginx and a real
//! Pebble (the setup of `served.rs`): a version rolled back only because nginx did not
//! reload, or kept unserved, is rolled out again without a new order; an endpoint that does
//! not answer is no reason to roll back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use certinel::acme::AcmeObserver;
use certinel::config::model::{Config, OnVerifyFailure};
use certinel::renew::{RenewError, RenewOptions, RenewOutcome, Renewer};
use certinel::store::{VersionId, VersionState};
use time::OffsetDateTime;

use crate::served::{
    Setup, assert_kept_unserved, assert_rolled_back_from_v2, consecutive_failures, force, now,
};

/// Counts the orders the CA accepted.
#[derive(Default)]
struct OrderCounter(AtomicUsize);

impl AcmeObserver for OrderCounter {
    fn request_done(&self, endpoint: &'static str, status: &str, _elapsed: Duration) {
        if endpoint == "new_order" && status == "201" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// With a deploy command that now reloads nginx, renews at `at` (due again after the
/// failure) and fails unless v0002 is rolled out and served; returns that configuration.
async fn rolled_out_once_nginx_reloads(
    setup: &Setup,
    orders: &Arc<OrderCounter>,
    on_failure: OnVerifyFailure,
    at: OffsetDateTime,
) -> Config {
    let reloading = setup.verifying(
        &setup.nginx.reload_command(),
        Duration::from_secs(30),
        on_failure,
    );
    let renewed = counting_renewer(&reloading, orders)
        .renew("api", RenewOptions::default(), at)
        .await;
    setup.assert_renewed_to(renewed, VersionId(2));
    setup
        .served_serial_settles_on(&setup.serial_of(VersionId(2)))
        .await;
    reloading
}

/// A renewer counting its orders in `orders`, backing off for one second after a failure.
fn counting_renewer(config: &Config, orders: &Arc<OrderCounter>) -> Renewer {
    Renewer::new(config)
        .with_observer(orders.clone())
        .with_backoff_base(Duration::from_secs(1))
}

impl OrderCounter {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_version_rolled_back_because_nginx_never_reloaded_is_rolled_out_again_without_a_new_order()
 {
    let setup = Setup::new().await;
    let orders = Arc::new(OrderCounter::default());
    let renewer = |config: &Config| counting_renewer(config, &orders);
    // Inside the first version's renewal window, long before either version expires.
    let first_expiry = setup
        .store()
        .metadata("api", VersionId(1))
        .unwrap()
        .not_after;
    let due = first_expiry - time::Duration::days(30);
    let stuck = setup.verifying("true", Duration::from_secs(2), OnVerifyFailure::Rollback);

    let error = renewer(&stuck)
        .renew("api", RenewOptions::default(), due)
        .await
        .expect_err("nginx never reloaded");
    assert_rolled_back_from_v2(&error);
    assert_eq!(orders.count(), 1);
    let store = setup.store();
    assert_eq!(
        store.metadata("api", VersionId(2)).unwrap().state,
        VersionState::Parked
    );

    // After the backoff, which counts from the moment the failure happened (the served
    // check waited its 2 s first): the same version again, still not served, still no new
    // order.
    let retry_at = due + time::Duration::seconds(5);
    let error = renewer(&stuck)
        .renew("api", RenewOptions::default(), retry_at)
        .await
        .expect_err("nginx still never reloads");
    assert_rolled_back_from_v2(&error);
    assert_eq!(orders.count(), 1, "no second order");
    assert_eq!(store.current("api").unwrap(), Some(VersionId(1)));
    let (_, events) = setup.audit();
    let rerolls: Vec<_> = events
        .iter()
        .filter(|e| e["step"] == "begin" && e["detail"] == "re-rolling out v0002")
        .collect();
    assert_eq!(rerolls.len(), 1, "{events:?}");

    // The deploy command now reloads nginx: the parked version goes live and is verified.
    let at = due + time::Duration::seconds(20);
    let reloading =
        rolled_out_once_nginx_reloads(&setup, &orders, OnVerifyFailure::Rollback, at).await;
    assert_eq!(orders.count(), 1, "exactly one order in total");
    assert_eq!(store.current("api").unwrap(), Some(VersionId(2)));
    assert_eq!(
        store.metadata("api", VersionId(2)).unwrap().state,
        VersionState::Active
    );
    let (steps, _) = setup.audit();
    assert_eq!(
        steps[steps.len() - 5..],
        [
            "begin:ok",
            "deployed:ok",
            "served:ok",
            "verified:ok",
            "done:ok"
        ]
    );
    assert_eq!(consecutive_failures(&renewer(&reloading), now()), 0);
}

#[tokio::test]
async fn an_endpoint_that_does_not_answer_keeps_the_new_version_instead_of_rolling_back() {
    let setup = Setup::new().await;
    let mut config = setup.verifying("true", Duration::from_secs(1), OnVerifyFailure::Rollback);
    // A loopback port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    config.certificates[0].verify = vec![format!("127.0.0.1:{port}").parse().unwrap()];

    let error = Renewer::new(&config)
        .renew("api", force(), OffsetDateTime::now_utc())
        .await
        .expect_err("nothing answers");
    assert_eq!(error.problem(), "unreachable", "{error}");
    assert!(
        matches!(
            error,
            RenewError::Served {
                version: VersionId(2),
                restored: None,
                kept: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(setup.store().current("api").unwrap(), Some(VersionId(2)));
    let (steps, events) = setup.audit();
    assert!(
        !steps.iter().any(|s| s.starts_with("rollback")),
        "{steps:?}"
    );
    let served = events.iter().rev().find(|e| e["step"] == "served").unwrap();
    let text = served["error"].as_str().unwrap();
    assert!(text.contains("a rollback would not help"), "{text}");
}

#[tokio::test]
async fn with_keep_the_next_due_attempt_checks_the_kept_version_again_and_clears_the_failure() {
    let setup = Setup::new().await;
    let orders = Arc::new(OrderCounter::default());
    let renewer = |config: &Config| counting_renewer(config, &orders);
    let stuck = setup.verifying("true", Duration::from_secs(2), OnVerifyFailure::Keep);
    let start = OffsetDateTime::now_utc();
    assert_kept_unserved(renewer(&stuck).renew("api", force(), start).await);
    assert_eq!(orders.count(), 1);

    // The server is reloaded by the deploy command now; the next due attempt, after the
    // backoff (counted from when the failure happened), rolls the kept version out again
    // and finds it served.
    let at = start + time::Duration::seconds(10);
    let reloading = rolled_out_once_nginx_reloads(&setup, &orders, OnVerifyFailure::Keep, at).await;
    assert_eq!(orders.count(), 1, "no new order");
    assert_eq!(
        consecutive_failures(&renewer(&reloading), start + time::Duration::seconds(11)),
        0
    );
    let settled_at = start + time::Duration::minutes(5);
    let settled = renewer(&reloading)
        .renew("api", RenewOptions::default(), settled_at)
        .await
        .unwrap();
    assert!(
        matches!(settled, RenewOutcome::NotDue { .. }),
        "a served version waits for its window: {settled:?}"
    );
}
