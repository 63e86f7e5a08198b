//! Tests of the chain check: how many distribution points one leaf may cost.

use std::time::Duration;

use rcgen::CrlDistributionPoint;
use time::macros::datetime;
use tokio::net::TcpListener;

use super::{MAX_DISTRIBUTION_POINTS, RevocationError, check_chain};
use crate::scan::budget::ConnectionBudget;
use crate::scan::crl::fetch::CrlFetcher;
use crate::scan::resolve::Resolver;
use crate::scan::testing::Minted;

#[tokio::test]
async fn a_leaf_naming_many_distribution_points_costs_at_most_the_cap_in_requests() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let ca = Minted::root("Test CA");
    let leaf = ca.leaf_with(&["www.example.test"], |params| {
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: (0..50)
                .map(|index| format!("http://{closed}/{index}.crl"))
                .collect(),
        }];
    });
    let fetcher = CrlFetcher::new(Resolver::with_hosts_text(""), ConnectionBudget::new(8));
    let chain = [leaf.der.clone(), ca.der.clone()];

    let status = check_chain(
        &fetcher,
        &chain,
        datetime!(2030-06-01 00:00:00 UTC),
        Duration::from_secs(60),
    )
    .await
    .unwrap();

    assert!(
        matches!(status.outcome, Err(RevocationError::Fetch(_))),
        "{status:?}"
    );
    assert_eq!(fetcher.requests(), MAX_DISTRIBUTION_POINTS);
}

#[tokio::test]
async fn a_leaf_without_its_issuer_gets_no_issuer_and_no_fetch() {
    let ca = Minted::root("Test CA");
    let leaf = ca.leaf_with(&["www.example.test"], |params| {
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec!["http://127.0.0.1:9/ca.crl".to_owned()],
        }];
    });
    let fetcher = CrlFetcher::new(Resolver::with_hosts_text(""), ConnectionBudget::new(8));

    let status = check_chain(
        &fetcher,
        std::slice::from_ref(&leaf.der),
        datetime!(2030-06-01 00:00:00 UTC),
        Duration::from_secs(60),
    )
    .await
    .unwrap();

    assert_eq!(status.outcome, Err(RevocationError::NoIssuer));
    assert_eq!(fetcher.requests(), 0);
}
