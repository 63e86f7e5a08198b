//! The CAA preflight against a real Knot serving CAA records (fixture caa.test.zone) and a
//! real Pebble: allowed names are issued; names whose records forbid this CA, this account
//! or this challenge type fail at stage `preflight` before any order reaches Pebble.

use std::sync::Arc;

use certinel::acme::{
    AcmeAccount, AcmeSettings, PreflightSettings, Stage, issue, load_or_create_account,
};

use certinel::cert::{ChallengeSpec, KeyAlgorithm};

use crate::acme::{
    Recorder, check_issued, issue_and_check, issue_http01_and_check, request, settings,
};
use crate::common::knot::Knot;
use crate::common::pebble::{Pebble, PebbleOptions};

const ZONE: (&str, &str) = ("caa.test.", include_str!("fixtures/dns01/caa.test.zone"));

/// Pebble, with Knot (serving caa.test.) as the preflight's resolver and "pebble.test" as
/// the CA's issuer domain.
async fn start() -> (Pebble, Knot, AcmeSettings) {
    let knot = Knot::start_with_zones(&[ZONE]).await;
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let settings = AcmeSettings {
        preflight: PreflightSettings {
            resolver: Some(knot.addr),
            caa_identities: vec!["pebble.test".to_owned()],
        },
        ..settings(&pebble)
    };
    (pebble, knot, settings)
}

/// An account in a fresh state directory, its requests counted by the recorder.
async fn recorded_account(
    settings: &AcmeSettings,
) -> (tempfile::TempDir, Arc<Recorder>, AcmeAccount) {
    let state = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let account = load_or_create_account(
        settings,
        certinel::store::FsAccounts::shared(state.path()),
        recorder.clone(),
    )
    .await
    .unwrap();
    (state, recorder, account)
}

#[tokio::test]
async fn names_whose_caa_allows_the_ca_are_issued() {
    let (pebble, _knot, settings) = start().await;
    let (_state, recorder, account) = recorded_account(&settings).await;
    // An explicit record, one that climbs to the apex, and a non-wildcard name whose
    // issuewild names another CA.
    let names = ["allowed.caa.test", "host.allowed.caa.test", "wild.caa.test"];
    issue_http01_and_check(&account, &pebble, &names).await;
    assert_eq!(recorder.count("new_order"), 1);
}

#[tokio::test]
async fn names_whose_caa_forbids_fail_at_preflight_without_an_order() {
    let (pebble, _knot, settings) = start().await;
    let (_state, recorder, account) = recorded_account(&settings).await;
    let http01 = ChallengeSpec::Http01Listen(pebble.http_addr());
    let cases = [
        ("denied.caa.test", "authorises only other-ca.test"),
        (
            "bound.caa.test",
            "accounturi https://pebble.test/my-account/0",
        ),
        ("dnsonly.caa.test", "validationmethods dns-01"),
        ("*.wild.caa.test", "authorises only other-ca.test"),
        ("host.strict.caa.test", "CAA at strict.caa.test"),
        ("alias.caa.test", "authorises only other-ca.test"),
    ];
    for (name, expected) in cases {
        let error = issue(
            &account,
            &request(&[name], KeyAlgorithm::EcdsaP256, http01.clone()),
        )
        .await
        .expect_err(name);
        let message = error.to_string();
        assert_eq!(error.stage(), Stage::Preflight, "{name}: {message}");
        assert_eq!(error.problem(), "caa", "{name}: {message}");
        assert!(message.contains(expected), "{name}: {message}");
        assert!(message.contains(name.trim_start_matches("*.")), "{message}");
    }
    assert_eq!(
        recorder.count("new_order"),
        0,
        "no order reaches the CA when CAA forbids it"
    );
}

#[tokio::test]
async fn the_preflight_is_skipped_without_issuer_domains_and_a_dead_resolver_does_not_block() {
    let (pebble, knot, mut settings) = start().await;
    let http01 = ChallengeSpec::Http01Listen(pebble.http_addr());
    // Pebble's directory has no caaIdentities: without configured ones, nothing is checked.
    settings.preflight.caa_identities.clear();
    let (_unchecked_state, _, account) = recorded_account(&settings).await;
    let unchecked = ["denied.caa.test"];
    issue_and_check(
        &account,
        &pebble,
        &unchecked,
        KeyAlgorithm::EcdsaP256,
        http01.clone(),
    )
    .await;

    // A resolver that does not answer: the preflight warns and the CA decides.
    let dead = knot.addr;
    drop(knot);
    settings.preflight.caa_identities = vec!["pebble.test".to_owned()];
    settings.preflight.resolver = Some(dead);
    let (_dead_resolver_state, _, account) = recorded_account(&settings).await;
    let names = ["denied.caa.test"];
    let issued = issue(&account, &request(&names, KeyAlgorithm::EcdsaP256, http01))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", pebble.log()));
    check_issued(&issued, &names);
}
