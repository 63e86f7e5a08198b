//! dns-01 propagation to every authoritative server of a zone: two Knots on one port
//! (127.0.0.1 takes updates, 127.0.0.2 serves a lagging copy of `twin.test.`), a Pebble
//! that asks the first, and certinel, which must wait for the second before telling Pebble
//! the challenge is ready.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use certinel::acme::{AcmeAccount, AcmeObserver, issue, load_or_create_account};
use certinel::cert::Dns01Spec;

use crate::acme::settings;
use crate::common::eventually::eventually;
use crate::common::knot::Knot;
use crate::common::pebble::{Pebble, PebbleOptions, free_port};
use crate::dns01::{leaf_names, request, rfc2136};

const ZONE: &str = "twin.test.";
const ZONES: [(&str, &str); 1] = [(ZONE, include_str!("fixtures/dns01/twin.test.zone"))];
const CHALLENGE: &str = "_acme-challenge.twin.test.";

/// Counts the challenge requests (the "ready" message to the CA) the client sends.
#[derive(Default)]
struct ChallengeRequests(AtomicUsize);

impl AcmeObserver for ChallengeRequests {
    fn request_done(&self, endpoint: &'static str, _status: &str, _elapsed: Duration) {
        if endpoint == "challenge" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl ChallengeRequests {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// The zone's two name servers, ns1 on 127.0.0.1 and ns2 on 127.0.0.2, on one free port.
async fn twin_knots() -> (Knot, Knot) {
    Knot::check_programs();
    let mut last_log = String::new();
    for _attempt in 0..5 {
        let port = free_port();
        let primary = match Knot::start_with(Ipv4Addr::LOCALHOST, port, &ZONES).await {
            Ok(knot) => knot,
            Err(log) => {
                last_log = log;
                continue;
            }
        };
        match Knot::start_with(Ipv4Addr::new(127, 0, 0, 2), port, &ZONES).await {
            Ok(secondary) => return (primary, secondary),
            Err(log) => last_log = log,
        }
    }
    panic!("two Knots did not start after 5 attempts; last log:\n{last_log}");
}

async fn account(pebble: &Pebble, observer: Arc<ChallengeRequests>) -> AcmeAccount {
    let state = tempfile::tempdir().unwrap();
    let settings = settings(pebble);
    load_or_create_account(
        &settings,
        certinel::store::FsAccounts::shared(state.path()),
        observer,
    )
    .await
    .unwrap_or_else(|e| panic!("account: {e}\n{}", pebble.log()))
}

#[tokio::test]
async fn the_ca_is_told_ready_only_after_the_lagging_name_server_answers_too() {
    let (primary, lagging) = twin_knots().await;
    let pebble = Pebble::start(PebbleOptions {
        dns_server: Some(primary.addr),
        ..PebbleOptions::default()
    })
    .await;
    let observer = Arc::new(ChallengeRequests::default());
    let account = account(&pebble, observer.clone()).await;
    let spec = Dns01Spec {
        propagation_timeout: Duration::from_secs(60),
        // ns2.twin.test. is 127.0.0.2; its Knot listens on the primary's port, not 53.
        authoritative_port_override: Some(primary.addr.port()),
        ..rfc2136(&primary, ZONE)
    };
    let issuing =
        tokio::spawn(async move { issue(&account, &request(&["twin.test"], spec)).await });

    // The event: certinel has asked the lagging server twice (it found it through the NS
    // set) and, since it got no value, is still waiting.
    eventually(Duration::from_secs(20), async || {
        match lagging.txt_queries() {
            queries if queries >= 2 => Ok(()),
            queries => Err(format!(
                "127.0.0.2 was asked for the TXT record {queries} times"
            )),
        }
    })
    .await;
    let published = primary.txt(CHALLENGE);
    assert_eq!(published.len(), 1, "the primary holds the value");
    assert_eq!(lagging.txt(CHALLENGE), Vec::<String>::new());
    assert!(!issuing.is_finished(), "issuance went on without ns2");
    assert_eq!(
        observer.count(),
        0,
        "certinel told the CA the challenge was ready while ns2 lacked the value"
    );

    lagging.add_txt(ZONE, CHALLENGE, &published[0]);
    let issued = issuing.await.unwrap().unwrap_or_else(|e| {
        panic!(
            "issue: {e}\n--- pebble ---\n{}\n--- ns1 ---\n{}\n--- ns2 ---\n{}",
            pebble.log(),
            primary.log(),
            lagging.log()
        )
    });
    assert_eq!(leaf_names(&issued), ["twin.test"]);
    assert!(observer.count() >= 1, "the challenge was answered");
    assert_eq!(primary.txt(CHALLENGE), Vec::<String>::new(), "cleaned up");
}
