//! A renewal whose certificate download fails after the order was finalized keeps the
//! order and the saved key: the next attempt downloads that certificate instead of asking
//! the CA for another one (which would count against its duplicate-certificate limit).

use std::time::Duration;

use certinel::acme::RetryPolicy;
use certinel::renew::{RenewOptions, RenewOutcome};
use certinel::store::{CertStore, check_version};
use time::OffsetDateTime;

use crate::common::ari_setup::AriCase;

#[tokio::test]
async fn a_download_that_fails_after_finalize_is_resumed_without_a_second_order() {
    let AriCase {
        pebble,
        front,
        setup,
        ..
    } = AriCase::start(false).await;
    let renewer = setup.renewer().with_retry_policy(RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(50),
        ..RetryPolicy::default()
    });
    let now = OffsetDateTime::now_utc();

    front.fail_paths(Some("/certZ/"));
    let error = renewer
        .renew("api", RenewOptions::default(), now)
        .await
        .expect_err("the download fails");
    assert_eq!(error.stage(), "download", "{error}");
    let store = CertStore::open(&setup.state_dir).unwrap();
    let kept = store.inflight("api").unwrap().expect("the order is kept");
    assert!(kept.order_url.is_some(), "{kept:?}");
    assert!(
        kept.key_pem.is_some(),
        "the key the order was finalized with is kept"
    );

    front.fail_paths(None);
    let later = now + time::Duration::minutes(10);
    match renewer.renew("api", RenewOptions::default(), later).await {
        Ok(RenewOutcome::Renewed { .. }) => {}
        other => panic!("{other:?}\n{}", pebble.log()),
    }
    assert_eq!(front.new_orders().len(), 1, "one order for one certificate");
    assert!(store.inflight("api").unwrap().is_none());
    let files = store.current_files("api").unwrap();
    check_version(&files, &["api.certinel.test".to_owned()])
        .expect("the downloaded certificate matches the saved key");
}
