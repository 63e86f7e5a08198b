//! The ACME client against a real Pebble (Debian's package): every challenge responder,
//! every key type, IP identifiers, account persistence, EAB, rejected nonces and the
//! failures the renewal metrics are labelled with.

use std::collections::HashSet;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use certinel::acme::{
    AcmeAccount, AcmeError, AcmeObserver, AcmeSettings, IssueRequest, Issued, NoopObserver,
    PollPolicy, RetryPolicy, Stage, issue, load_or_create_account,
};
use certinel::cert::{ChallengeSpec, Eab, Identifier, KeyAlgorithm};
use rcgen::PublicKeyData;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::prelude::X509Certificate;

use crate::common::pebble::{Pebble, PebbleOptions, free_port};

/// Remembers every request the ACME client reports.
#[derive(Default)]
pub(crate) struct Recorder {
    requests: Mutex<Vec<(&'static str, String)>>,
}

impl AcmeObserver for Recorder {
    fn request_done(&self, endpoint: &'static str, status: &str, _elapsed: Duration) {
        self.requests
            .lock()
            .unwrap()
            .push((endpoint, status.to_owned()));
    }
}

impl Recorder {
    fn endpoints(&self) -> HashSet<&'static str> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(e, _)| *e)
            .collect()
    }

    pub(crate) fn count(&self, endpoint: &str) -> usize {
        let requests = self.requests.lock().unwrap();
        requests.iter().filter(|(e, _)| *e == endpoint).count()
    }
}

pub(crate) fn settings(pebble: &Pebble) -> AcmeSettings {
    AcmeSettings {
        ca_file: Some(pebble.api_root.clone()),
        contact: vec!["mailto:ops@certinel.test".into()],
        poll: PollPolicy {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
        },
        retry: RetryPolicy {
            base_delay: Duration::from_millis(100),
            ..RetryPolicy::default()
        },
        ..AcmeSettings::new(&pebble.directory_url)
    }
}

/// The account of `settings(pebble)`, created in `state_dir` unless it is there.
/// Loads the account `settings` name from `state_dir`, registering it first if needed.
async fn load_account(
    settings: &AcmeSettings,
    state_dir: &Path,
    observer: Arc<dyn AcmeObserver>,
) -> Result<AcmeAccount, AcmeError> {
    let accounts = certinel::store::FsAccounts::shared(state_dir);
    load_or_create_account(settings, accounts, observer).await
}

pub(crate) async fn account(pebble: &Pebble, state_dir: &Path) -> AcmeAccount {
    load_account(&settings(pebble), state_dir, Arc::new(NoopObserver))
        .await
        .unwrap_or_else(|e| panic!("account: {e}\n{}", pebble.log()))
}

pub(crate) fn request(names: &[&str], key: KeyAlgorithm, challenge: ChallengeSpec) -> IssueRequest {
    IssueRequest {
        names: names.iter().map(|name| Identifier::parse(name)).collect(),
        key,
        challenge,
        profile: None,
        replaces: None,
    }
}

/// Pebble and an account registered with it, stored in the returned directory.
async fn pebble_with_account() -> (Pebble, tempfile::TempDir, AcmeAccount) {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let state = tempfile::tempdir().unwrap();
    let account = account(&pebble, state.path()).await;
    (pebble, state, account)
}

/// Issues `names` with a `key` over `challenge` and checks the chain ([`check_issued`]);
/// a failure panics with Pebble's log. Returns the certificate and the leaf's validity in
/// seconds.
pub(crate) async fn issue_and_check(
    account: &AcmeAccount,
    pebble: &Pebble,
    names: &[&str],
    key: KeyAlgorithm,
    challenge: ChallengeSpec,
) -> (Issued, i64) {
    let issued = issue(account, &request(names, key, challenge.clone()))
        .await
        .unwrap_or_else(|e| panic!("{names:?} over {challenge:?}: {e}\n{}", pebble.log()));
    let validity = check_issued(&issued, names);
    (issued, validity)
}

/// Asserts that `error` failed at `stage` with the ACME `problem`, and that its message
/// says each of `says`.
#[track_caller]
pub(crate) fn assert_acme_failure(error: &AcmeError, stage: Stage, problem: &str, says: &[&str]) {
    assert_eq!(
        (error.stage(), error.problem()),
        (stage, problem),
        "{error}"
    );
    let message = error.to_string();
    for part in says {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
}

/// The DNS names and IP addresses of `leaf`'s subjectAltName, sorted.
pub(crate) fn san_names(leaf: &X509Certificate<'_>) -> Vec<String> {
    let mut names: Vec<String> = leaf
        .subject_alternative_name()
        .expect("SAN parses")
        .expect("SAN present")
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => dns.to_string(),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).unwrap()).to_string(),
                _ => Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).unwrap()).to_string(),
            },
            other => other.to_string(),
        })
        .collect();
    names.sort();
    names
}

/// [`issue_and_check`] with a P-256 key over http-01 where `pebble` validates.
pub(crate) async fn issue_http01_and_check(
    account: &AcmeAccount,
    pebble: &Pebble,
    names: &[&str],
) -> (Issued, i64) {
    let challenge = ChallengeSpec::Http01Listen(pebble.http_addr());
    issue_and_check(account, pebble, names, KeyAlgorithm::EcdsaP256, challenge).await
}

/// Checks the chain: leaf first with exactly `names`, signed by the next certificate,
/// and holding the public half of `key_pem`. Returns the leaf's validity in seconds.
pub(crate) fn check_issued(issued: &Issued, names: &[&str]) -> i64 {
    let pems: Vec<Pem> = Pem::iter_from_buffer(issued.cert_chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("chain is PEM");
    assert!(pems.len() >= 2, "leaf and intermediate expected");
    let leaf = pems[0].parse_x509().expect("leaf parses");
    let issuer = pems[1].parse_x509().expect("intermediate parses");
    assert_eq!(leaf.issuer(), issuer.subject());
    leaf.verify_signature(Some(issuer.public_key()))
        .expect("leaf signed by the intermediate");

    let sans = san_names(&leaf);
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(sans, expected);

    let key = rcgen::KeyPair::from_pem(&issued.key_pem).expect("key PEM parses");
    assert_eq!(
        leaf.public_key().raw,
        key.subject_public_key_info().as_slice(),
        "the certificate is for our own key"
    );
    assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
    leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp()
}

#[tokio::test]
async fn http01_listener_issues_ecdsa_p256_certificate_and_reports_each_request() {
    let pebble = Pebble::start_with_validity(3600).await;
    let state = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let account = load_account(&settings(&pebble), state.path(), recorder.clone())
        .await
        .expect("account");
    let names = ["www.certinel.test", "api.certinel.test"];
    let (issued, validity) = issue_http01_and_check(&account, &pebble, &names).await;
    assert!(
        (3590..=3601).contains(&validity),
        "short validity honoured: {validity}"
    );
    assert!(issued.order_url.starts_with("https://127.0.0.1:"));
    let intermediate = pebble.management_get("/intermediates/0").await;
    let intermediate = Pem::iter_from_buffer(intermediate.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let chain: Vec<Pem> = Pem::iter_from_buffer(issued.cert_chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        chain[1].contents, intermediate.contents,
        "chain ends in Pebble's intermediate"
    );
    let endpoints = recorder.endpoints();
    for endpoint in [
        "directory",
        "new_nonce",
        "new_account",
        "new_order",
        "authorization",
        "challenge",
        "order",
        "finalize",
        "certificate",
    ] {
        assert!(
            endpoints.contains(endpoint),
            "{endpoint} not seen in {endpoints:?}"
        );
    }
    assert!(!endpoints.contains("other"), "{endpoints:?}");
    let requests = recorder.requests.lock().unwrap();
    assert!(
        requests
            .iter()
            .any(|(e, s)| *e == "new_account" && s == "201")
    );
}

#[tokio::test]
async fn tls_alpn01_listener_issues_rsa2048_certificate() {
    let (pebble, _state, account) = pebble_with_account().await;
    let names = ["alpn.certinel.test"];
    issue_and_check(
        &account,
        &pebble,
        &names,
        KeyAlgorithm::Rsa2048,
        ChallengeSpec::TlsAlpn01Listen(pebble.tls_addr()),
    )
    .await;
}

#[tokio::test]
async fn every_key_type_is_issued_over_http01() {
    let (pebble, _state, account) = pebble_with_account().await;
    for key in KeyAlgorithm::ALL {
        let name = format!("{key}.certinel.test");
        issue_and_check(
            &account,
            &pebble,
            &[&name],
            key,
            ChallengeSpec::Http01Listen(pebble.http_addr()),
        )
        .await;
    }
}

#[tokio::test]
async fn ip_identifiers_are_issued_over_http01_and_tls_alpn01() {
    let (pebble, _state, account) = pebble_with_account().await;
    for challenge in [
        ChallengeSpec::Http01Listen(pebble.http_addr()),
        ChallengeSpec::TlsAlpn01Listen(pebble.tls_addr()),
    ] {
        issue_and_check(
            &account,
            &pebble,
            &["127.0.0.1"],
            KeyAlgorithm::EcdsaP384,
            challenge.clone(),
        )
        .await;
    }
}

/// RFC 8738 for IPv6: Pebble's validator connects to `[::1]` itself, on its http-01 and
/// tls-alpn-01 ports, and the tls-alpn-01 answer is picked by the `ip6.arpa` SNI name.
/// Every machine these tests run on has `::1` on its loopback interface; a machine
/// without it fails here rather than skipping.
#[tokio::test]
async fn ipv6_loopback_identifier_is_issued_over_http01_and_tls_alpn01() {
    let (pebble, _state, account) = pebble_with_account().await;
    let on_ipv6 = |addr: SocketAddr| SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()));
    for challenge in [
        ChallengeSpec::Http01Listen(on_ipv6(pebble.http_addr())),
        ChallengeSpec::TlsAlpn01Listen(on_ipv6(pebble.tls_addr())),
    ] {
        issue_and_check(
            &account,
            &pebble,
            &["::1"],
            KeyAlgorithm::EcdsaP256,
            challenge.clone(),
        )
        .await;
    }
}

/// A stand-in for nginx: serves whatever is under the webroot, and notes what it served.
pub(crate) async fn serve_webroot(addr: SocketAddr, webroot: PathBuf) -> Arc<Mutex<Vec<String>>> {
    type Served = Arc<Mutex<Vec<String>>>;
    async fn file(
        State((webroot, served)): State<(PathBuf, Served)>,
        UrlPath(token): UrlPath<String>,
    ) -> (StatusCode, String) {
        let path = webroot.join(".well-known/acme-challenge").join(&token);
        match std::fs::read_to_string(path) {
            Ok(body) => {
                served.lock().unwrap().push(token);
                (StatusCode::OK, body)
            }
            Err(_) => (StatusCode::NOT_FOUND, String::new()),
        }
    }
    let served = Served::default();
    let router = Router::new()
        .route("/.well-known/acme-challenge/{token}", get(file))
        .with_state((webroot, served.clone()));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind webroot server");
    tokio::spawn(async move { axum::serve(listener, router).await });
    served
}

#[tokio::test]
async fn webroot_http01_files_are_served_by_another_server_and_removed_afterwards() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let state = tempfile::tempdir().unwrap();
    let webroot = tempfile::tempdir().unwrap();
    let served = serve_webroot(pebble.http_addr(), webroot.path().to_owned()).await;
    let account = account(&pebble, state.path()).await;
    let names = ["static.certinel.test"];
    issue_and_check(
        &account,
        &pebble,
        &names,
        KeyAlgorithm::EcdsaP256,
        ChallengeSpec::Http01Webroot(webroot.path().to_owned()),
    )
    .await;
    assert!(
        !served.lock().unwrap().is_empty(),
        "the validator fetched from the webroot"
    );
    let leftovers: Vec<_> = walk(webroot.path());
    assert!(
        leftovers.is_empty(),
        "challenge files removed: {leftovers:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn account_is_saved_0600_and_reused_without_a_new_account_request() {
    use std::os::unix::fs::PermissionsExt;

    let pebble = Pebble::start(PebbleOptions::default()).await;
    let state = tempfile::tempdir().unwrap();
    let first = account(&pebble, state.path()).await;
    assert!(first.was_created());
    let mode = std::fs::metadata(first.credentials_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let recorder = Arc::new(Recorder::default());
    let second = load_account(&settings(&pebble), state.path(), recorder.clone())
        .await
        .expect("reload account");
    assert!(!second.was_created());
    assert_eq!(second.url(), first.url());
    assert_eq!(
        recorder.count("new_account"),
        0,
        "no account created on reload"
    );

    // The reloaded account orders as well.
    issue_http01_and_check(&second, &pebble, &["reuse.certinel.test"]).await;
}

#[tokio::test]
async fn changed_directory_url_creates_a_new_account() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let state = tempfile::tempdir().unwrap();
    let by_ip = account(&pebble, state.path()).await;
    // The same Pebble under another URL stands in for "the operator switched CAs".
    let mut other = settings(&pebble);
    other.directory = pebble.directory_url.replace("127.0.0.1", "localhost");
    let by_name = load_account(&other, state.path(), Arc::new(NoopObserver))
        .await
        .expect("account for the other URL");
    assert!(by_name.was_created());
    assert_ne!(by_name.url(), by_ip.url());
    assert_ne!(by_name.credentials_path(), by_ip.credentials_path());
    let again = account(&pebble, state.path()).await;
    assert!(!again.was_created());
    assert_eq!(again.url(), by_ip.url());
}

#[tokio::test]
async fn eab_is_required_by_pebble_and_accepted_with_its_example_keys() {
    let pebble = Pebble::start(PebbleOptions {
        eab: true,
        ..PebbleOptions::default()
    })
    .await;
    let state = tempfile::tempdir().unwrap();
    let without = load_account(&settings(&pebble), state.path(), Arc::new(NoopObserver))
        .await
        .expect_err("Pebble requires EAB");
    assert_eq!(without.stage(), Stage::Account);
    assert_eq!(without.problem(), "externalAccountRequired", "{without}");

    let (kid, hmac_key) = pebble.eab.clone().expect("EAB keys");
    let mut with_eab = settings(&pebble);
    with_eab.eab = Some(Eab { kid, hmac_key });
    let account = load_account(&with_eab, state.path(), Arc::new(NoopObserver))
        .await
        .unwrap_or_else(|e| panic!("EAB account: {e}\n{}", pebble.log()));
    assert!(account.was_created());
    let names = ["eab.certinel.test"];
    issue_http01_and_check(&account, &pebble, &names).await;
}

#[tokio::test]
async fn thirty_percent_rejected_nonces_still_issue() {
    let pebble = Pebble::start(PebbleOptions {
        nonce_reject_percent: Some(30),
        ..PebbleOptions::default()
    })
    .await;
    let state = tempfile::tempdir().unwrap();
    let account = account(&pebble, state.path()).await;
    for round in 0..3 {
        let name = format!("nonce{round}.certinel.test");
        issue_http01_and_check(&account, &pebble, &[&name]).await;
    }
}

#[tokio::test]
async fn unreachable_ca_fails_at_account_stage_with_network_problem() {
    let state = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let mut settings = AcmeSettings::new(format!("https://127.0.0.1:{}/dir", free_port()));
    settings.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    let error = load_account(&settings, state.path(), recorder.clone())
        .await
        .expect_err("nothing listens there");
    assert_acme_failure(
        &error,
        Stage::Account,
        "network",
        &["cannot reach the ACME server", "3 attempt"],
    );
    assert_eq!(recorder.count("directory"), 3, "each attempt reported");
    assert!(
        recorder
            .requests
            .lock()
            .unwrap()
            .iter()
            .all(|(_, status)| status == "network")
    );
}

#[tokio::test]
async fn unreachable_responder_fails_at_challenge_stage_with_connection_problem() {
    let (_pebble, _state, account) = pebble_with_account().await;
    // Our listener is not where Pebble's validator connects.
    let elsewhere = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let error = issue(
        &account,
        &request(
            &["nobody.certinel.test"],
            KeyAlgorithm::EcdsaP256,
            ChallengeSpec::Http01Listen(elsewhere),
        ),
    )
    .await
    .expect_err("validation cannot connect");
    assert_acme_failure(
        &error,
        Stage::Challenge,
        "connection",
        &["nobody.certinel.test"],
    );
}
