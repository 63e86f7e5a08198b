//! dns-01 end to end: a real Knot DNS on loopback holds `certinel.test.`, certinel publishes
//! the TXT records there (RFC 2136 with TSIG, or an exec hook running `knsupdate`), and a
//! real Pebble validates them by asking the same Knot.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certinel::acme::{AcmeAccount, AcmeError, IssueRequest, Issued, Stage, issue};
use certinel::cert::{
    ChallengeSpec, DEFAULT_PROPAGATION_TIMEOUT, Dns01Spec, DnsProvider, Identifier, KeyAlgorithm,
    Rfc2136Settings, TsigAlgorithm, TsigSecret,
};
use x509_parser::pem::Pem;

use crate::acme::{assert_acme_failure, san_names};
use crate::common::cli::run_certinel;
use crate::common::config_text::{pebble_acme_table, write_config_file};
use crate::common::knot::{KEY_NAME, Knot};
use crate::common::pebble::{Pebble, PebbleOptions};
use crate::common::process::write_script;

const HOOK: &str = "tests/fixtures/dns01/knsupdate-hook.sh";

/// A Knot, and a Pebble whose validator asks that Knot.
pub(crate) async fn knot_and_pebble() -> (Knot, Pebble) {
    let knot = Knot::start().await;
    let pebble = Pebble::start(PebbleOptions {
        dns_server: Some(knot.addr),
        ..PebbleOptions::default()
    })
    .await;
    (knot, pebble)
}

pub(crate) use crate::acme::account;

/// A Knot, a Pebble asking it, and an ACME account whose state lives in the returned
/// directory.
async fn knot_pebble_and_account() -> (Knot, Pebble, tempfile::TempDir, AcmeAccount) {
    let (knot, pebble) = knot_and_pebble().await;
    let state = tempfile::tempdir().unwrap();
    let account = account(&pebble, state.path()).await;
    (knot, pebble, state, account)
}

/// A Knot, a Pebble asking it, a scratch directory, and in it the `calls.log` path that
/// hooks append their arguments to.
pub(crate) async fn knot_pebble_and_calls_log() -> (Knot, Pebble, tempfile::TempDir, PathBuf) {
    let (knot, pebble) = knot_and_pebble().await;
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls.log");
    (knot, pebble, dir, calls)
}

/// An RFC 2136 spec updating `zone` on `knot` with its TSIG key, polled for 20 s.
pub(crate) fn rfc2136(knot: &Knot, zone: &str) -> Dns01Spec {
    Dns01Spec {
        provider: DnsProvider::Rfc2136(Rfc2136Settings {
            server: knot.addr,
            zone: zone.into(),
            tsig_key_name: KEY_NAME.into(),
            tsig_key: TsigSecret(STANDARD.decode(&knot.key_base64).unwrap()),
            tsig_algorithm: TsigAlgorithm::HmacSha256,
        }),
        propagation_resolver: None,
        propagation_timeout: Duration::from_secs(20),
        authoritative_port_override: None,
    }
}

pub(crate) fn request(names: &[&str], spec: Dns01Spec) -> IssueRequest {
    IssueRequest {
        names: names.iter().map(|name| Identifier::parse(name)).collect(),
        key: KeyAlgorithm::EcdsaP256,
        challenge: ChallengeSpec::Dns01(spec),
        profile: None,
        replaces: None,
    }
}

/// The leaf's DNS names, sorted.
pub(crate) fn leaf_names(issued: &Issued) -> Vec<String> {
    let pem = Pem::iter_from_buffer(issued.cert_chain_pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM");
    san_names(&pem.parse_x509().expect("leaf parses"))
}

pub(crate) fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    names.sort();
    names
}

async fn issue_ok(knot: &Knot, pebble: &Pebble, request: &IssueRequest) -> Issued {
    let state = tempfile::tempdir().unwrap();
    let account = account(pebble, state.path()).await;
    issue(&account, request).await.unwrap_or_else(|e| {
        panic!(
            "issue: {e}\n--- pebble ---\n{}\n--- knot ---\n{}",
            pebble.log(),
            knot.log()
        )
    })
}

#[tokio::test]
async fn rfc2136_issues_a_wildcard_and_apex_certificate_and_removes_both_txt_records() {
    let (knot, pebble) = knot_and_pebble().await;
    let names = ["*.certinel.test", "certinel.test"];
    let issued = issue_ok(
        &knot,
        &pebble,
        &request(&names, rfc2136(&knot, "certinel.test.")),
    )
    .await;
    assert_eq!(leaf_names(&issued), sorted(&names));
    // Both authorizations used the one name _acme-challenge.certinel.test; none is left.
    knot.assert_no_txt("_acme-challenge.certinel.test.");
}

#[tokio::test]
async fn rfc2136_issues_a_multi_name_certificate_and_leaves_no_txt_record() {
    let (knot, pebble) = knot_and_pebble().await;
    let names = ["www.certinel.test", "api.certinel.test", "certinel.test"];
    let mut spec = rfc2136(&knot, "certinel.test");
    // Asking the update server explicitly is the same as the default.
    spec.propagation_resolver = Some(knot.addr);
    spec.propagation_timeout = DEFAULT_PROPAGATION_TIMEOUT;
    let issued = issue_ok(&knot, &pebble, &request(&names, spec)).await;
    assert_eq!(leaf_names(&issued), sorted(&names));
    for name in names {
        knot.assert_no_txt(&format!("_acme-challenge.{name}."));
    }
}

#[tokio::test]
async fn exec_provider_presents_and_cleans_up_through_a_knsupdate_hook() {
    let (knot, pebble, dir, calls) = knot_pebble_and_calls_log().await;
    let hook = write_hook(&knot, dir.path(), &calls);
    let spec = Dns01Spec {
        provider: DnsProvider::Exec {
            command: hook,
            env: Default::default(),
        },
        propagation_resolver: Some(knot.addr),
        propagation_timeout: Duration::from_secs(20),
        authoritative_port_override: None,
    };
    let issued = issue_ok(&knot, &pebble, &request(&["exec.certinel.test"], spec)).await;
    assert_eq!(leaf_names(&issued), ["exec.certinel.test"]);

    let calls = std::fs::read_to_string(&calls).expect("the hook ran");
    let calls: Vec<Vec<&str>> = calls.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        calls[0][..2],
        ["present", "_acme-challenge.exec.certinel.test."]
    );
    assert_eq!(
        calls[1][..2],
        ["cleanup", "_acme-challenge.exec.certinel.test."]
    );
    assert_eq!(
        calls[0][2], calls[1][2],
        "cleanup removes the value it presented"
    );
    knot.assert_no_txt("_acme-challenge.exec.certinel.test.");
}

/// A wrapper that passes Knot's address, the zone, the key and the call log to the hook
/// fixture ahead of lego's three arguments.
/// Asserts that `certinel renew` succeeded and renewed `name` to its first version, showing
/// its output and Knot's log otherwise.
#[track_caller]
pub(crate) fn assert_renewed_to_v1(output: &std::process::Output, name: &str, knot: &Knot) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.starts_with(&format!("{name}: renewed to v0001")),
        "stdout: {stdout}\nstderr: {stderr}\n--- knot ---\n{}",
        knot.log()
    );
}

pub(crate) fn write_hook(knot: &Knot, dir: &Path, calls: &Path) -> PathBuf {
    let fixture = std::path::absolute(HOOK).expect("absolute hook path");
    let script = format!(
        "exec {} {} {} certinel.test. hmac-sha256:{KEY_NAME}:{} {} \"$@\"\n",
        fixture.display(),
        knot.addr.ip(),
        knot.addr.port(),
        knot.key_base64,
        calls.display()
    );
    write_script(dir, "hook", &script)
}

/// An exec-hook dns-01 challenge running `command`, checked at Knot for at most `timeout`.
pub(crate) fn exec_spec(command: PathBuf, knot_addr: SocketAddr, timeout: Duration) -> Dns01Spec {
    Dns01Spec {
        provider: DnsProvider::Exec {
            command,
            env: Default::default(),
        },
        propagation_resolver: Some(knot_addr),
        propagation_timeout: timeout,
        authoritative_port_override: None,
    }
}

/// Issues `names` with dns-01 through Knot's `zone`.
async fn issue_in_zone(
    account: &AcmeAccount,
    knot: &Knot,
    names: &[&str],
    zone: &str,
) -> Result<Issued, AcmeError> {
    issue(account, &request(names, rfc2136(knot, zone))).await
}

/// Issues `names` with `spec`, which must fail at the challenge with `problem`, its message
/// saying each of `says`; returns the error for further checks.
async fn challenge_failure(
    account: &AcmeAccount,
    names: &[&str],
    spec: Dns01Spec,
    problem: &str,
    says: &[&str],
) -> AcmeError {
    let Err(error) = issue(account, &request(names, spec)).await else {
        panic!("issued, where the challenge should fail with {problem}");
    };
    assert_acme_failure(&error, Stage::Challenge, problem, says);
    error
}

#[tokio::test]
async fn cname_delegated_challenge_is_published_at_the_target_and_removed() {
    let (knot, pebble) = knot_and_pebble().await;
    let issued = issue_ok(
        &knot,
        &pebble,
        &request(
            &["delegated.certinel.test"],
            rfc2136(&knot, "certinel.test."),
        ),
    )
    .await;
    assert_eq!(leaf_names(&issued), ["delegated.certinel.test"]);
    // A TXT record next to the CNAME would have been refused by Knot, so validation only
    // passed because the value went to the target; which is empty again now.
    knot.assert_no_txt("delegated.challenges.certinel.test.");
}

#[tokio::test]
async fn a_cname_target_outside_the_configured_zone_fails_at_challenge_with_dns_lookup() {
    let (knot, _pebble, _state, account) = knot_pebble_and_account().await;
    let names = ["delegated.certinel.test"];
    let spec = rfc2136(&knot, "validation.test.");
    let says = [
        "delegated.challenges.certinel.test.",
        "outside zone validation.test.",
    ];
    challenge_failure(&account, &names, spec, "dnsLookup", &says).await;
}

#[tokio::test]
async fn a_wrong_tsig_key_fails_at_challenge_with_dns_update_and_names_the_key() {
    let (knot, _pebble, _state, account) = knot_pebble_and_account().await;
    let mut spec = rfc2136(&knot, "certinel.test.");
    if let DnsProvider::Rfc2136(settings) = &mut spec.provider {
        settings.tsig_key = TsigSecret(b"not the key Knot knows".to_vec());
    }
    let says = ["did not accept the update's TSIG signature", "tsig_key"];
    let names = ["denied.certinel.test"];
    let error = challenge_failure(&account, &names, spec, "dnsUpdate", &says).await;
    assert!(
        !error.to_string().contains(&knot.key_base64),
        "the secret is never quoted"
    );
    knot.assert_no_txt("_acme-challenge.denied.certinel.test.");
}

#[tokio::test]
async fn a_record_that_never_appears_fails_with_dns_propagation_and_is_still_cleaned_up() {
    let (knot, pebble, dir, calls) = knot_pebble_and_calls_log().await;
    // A hook that says it published but did not.
    let body = format!("echo \"$@\" >> {}\n", calls.display());
    let hook = write_script(dir.path(), "hook", &body);
    let spec = exec_spec(hook, knot.addr, Duration::from_secs(2));
    let state = tempfile::tempdir().unwrap();
    let account = account(&pebble, state.path()).await;
    let names = ["www.certinel.test"];
    let says = ["propagation_timeout"];
    challenge_failure(&account, &names, spec, "dnsPropagation", &says).await;
    let calls = std::fs::read_to_string(&calls).unwrap();
    let actions: Vec<&str> = calls
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["present", "cleanup"],
        "cleanup also after a failure"
    );
}

#[tokio::test]
async fn certinel_renew_issues_a_wildcard_from_a_config_file_with_an_rfc2136_challenge() {
    let (knot, pebble) = knot_and_pebble().await;
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let certificate = format!(
        "\n[[certificate]]\nname = \"wild\"\n\
         dns_names = [\"*.certinel.test\", \"certinel.test\"]\n\
         challenge = {{ type = \"dns-01\", provider = \"rfc2136\", server = \"{server}\", \
         zone = \"certinel.test.\", tsig_key_name = \"{KEY_NAME}\", tsig_key = \"{key}\", \
         tsig_algorithm = \"hmac-sha256\", propagation_timeout = \"20s\" }}\n",
        server = knot.addr,
        key = knot.key_base64,
    );
    let text = pebble_acme_table(&state_dir, &pebble) + &certificate;
    let config = write_config_file(dir.path(), &text);
    let output = run_certinel(&["renew", "wild"], &config).await;
    assert_renewed_to_v1(&output, "wild", &knot);
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains(&knot.key_base64),
        "the TSIG secret is never logged"
    );
    let chain = std::fs::read_to_string(state_dir.join("certs/wild/current/fullchain.pem"))
        .expect("current/fullchain.pem");
    let issued = Issued {
        key_pem: String::new(),
        cert_chain_pem: chain,
        order_url: String::new(),
    };
    assert_eq!(
        leaf_names(&issued),
        sorted(&["*.certinel.test", "certinel.test"])
    );
    knot.assert_no_txt("_acme-challenge.certinel.test.");
}

#[tokio::test]
async fn a_cname_into_another_zone_updates_that_zone_and_cleans_it_up() {
    let (knot, _pebble, _state, account) = knot_pebble_and_account().await;
    let names = ["elsewhere.certinel.test"];
    let result = issue_in_zone(&account, &knot, &names, "validation.test.").await;
    // certinel found the record at the CNAME's target in validation.test. before telling
    // Pebble; Pebble asks Knot, which does not follow the CNAME into its other zone, so
    // validation fails with the CA's problem, not with one of certinel's dns problems.
    let error = result.expect_err("Knot does not follow CNAMEs across zones");
    assert_eq!(error.stage(), Stage::Challenge, "{error}");
    assert!(matches!(error, AcmeError::Server { .. }), "{error}");
    let updates = knot
        .log()
        .matches("[validation.test.] DDNS, finished")
        .count();
    assert_eq!(updates, 2, "one update adds, one removes:\n{}", knot.log());
    knot.assert_no_txt("elsewhere.validation.test.");
}
