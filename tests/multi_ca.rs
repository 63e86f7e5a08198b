//! Multi-CA failover against two real Pebbles (each with its own issuing root), each behind
//! an ARI front: a CA that cannot serve hands over to the next within one attempt, the next
//! renewal goes back to the first, a CA lacking the configured profile is skipped, and
//! `replaces` (and renewalInfo polls) never go to a CA that did not issue the certificate.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certinel::acme::{AcmeObserver, RetryPolicy};
use certinel::renew::{RenewOptions, RenewOutcome, Renewer};
use certinel::store::CertStore;
use time::OffsetDateTime;

use crate::common::ari_front::{AriFront, AriReply};
use crate::common::ari_setup::due_now;
use crate::common::config_text::{acme_table, http01_certificate, write_config_file};
use crate::common::pebble::{Pebble, PebbleOptions, free_port};

/// Two Pebbles whose validators both connect to the same http-01 port, each behind a front;
/// the certificate `api` lists `["acme", "second"]`.
struct TwoCas {
    first: Pebble,
    second: Pebble,
    first_front: AriFront,
    second_front: AriFront,
    state_dir: PathBuf,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

/// The profiles (name, description) a front advertises.
type Profiles<'a> = &'a [(&'a str, &'a str)];

impl TwoCas {
    async fn start(profiles: (Profiles<'_>, Profiles<'_>), extra: &str) -> TwoCas {
        let http_port = free_port();
        let options = || PebbleOptions {
            http_port: Some(http_port),
            ..PebbleOptions::default()
        };
        let first = Pebble::start(options()).await;
        let second = Pebble::start(options()).await;
        let first_front = AriFront::start(&first, true, profiles.0).await;
        let second_front = AriFront::start(&second, true, profiles.1).await;
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let mut text = acme_table(&state_dir, &first_front.directory_url, &first_front.ca_file);
        text += &format!(
            "\n[ca.second]\ndirectory = {:?}\nca_file = {:?}\npoll_timeout = \"60s\"\n",
            second_front.directory_url,
            second_front.ca_file.display().to_string()
        );
        text += &http01_certificate(
            "api",
            first.http_addr(),
            &format!("ca = [\"acme\", \"second\"]\n{extra}"),
        );
        let config = write_config_file(dir.path(), &text);
        TwoCas {
            first,
            second,
            first_front,
            second_front,
            state_dir,
            config,
            _dir: dir,
        }
    }

    /// Two CAs whose second issued `api` (forced, now) while the first was down; the first
    /// answers again. Returns them, the renewer and the time of issuance.
    async fn issued_at_second() -> (TwoCas, Renewer, OffsetDateTime) {
        let cas = TwoCas::start((&[], &[]), "").await;
        let renewer = cas.renewer();
        let now = OffsetDateTime::now_utc();
        cas.first_front.fail_paths(Some("/"));
        assert_renewed(&renewer.renew("api", forced(), now).await, &cas);
        cas.first_front.fail_paths(None);
        (cas, renewer, now)
    }

    fn renewer(&self) -> Renewer {
        let config = certinel::config::load(&self.config).unwrap_or_else(|e| panic!("{e}"));
        Renewer::new(&config).with_retry_policy(RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(50),
            ..RetryPolicy::default()
        })
    }

    /// A [`Self::renewer`] whose ACME requests are counted by CA.
    fn counting_renewer(&self) -> (Renewer, Arc<ByCa>) {
        let requests = Arc::new(ByCa::default());
        (self.renewer().with_observer(requests.clone()), requests)
    }

    /// The new-order requests the two fronts have seen so far must number `first` and
    /// `second`; `why` says what the counts prove.
    fn assert_new_orders(&self, first: usize, second: usize, why: &str) {
        let counts = (
            self.first_front.new_orders().len(),
            self.second_front.new_orders().len(),
        );
        assert_eq!(
            counts,
            (first, second),
            "new orders at (first, second): {why}"
        );
    }

    /// Rewrites the configuration file with `from` (which must be in it) replaced by `to`.
    fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let edited = text.replace(from, to);
        assert_ne!(edited, text, "{from:?} is not in the configuration");
        std::fs::write(&self.config, edited).unwrap();
    }

    /// The directory the current version came from (its metadata's `source`).
    fn current_source(&self) -> String {
        let store = CertStore::open(&self.state_dir).unwrap();
        let current = store.current("api").unwrap().expect("a current version");
        store.metadata("api", current).unwrap().source
    }

    /// The CA `certinel status` names for the current version.
    fn status_ca(&self, renewer: &Renewer, now: OffsetDateTime) -> Option<String> {
        renewer.status_of("api", now).unwrap().ca
    }

    /// `certinel inventory --output json`, run as a user runs it.
    async fn inventory_json(&self) -> serde_json::Value {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_certinel"))
            .args(["inventory", "--output", "json", "--config"])
            .arg(&self.config)
            .output()
            .await
            .expect("run certinel inventory");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("inventory JSON")
    }

    fn logs(&self) -> String {
        format!(
            "first Pebble:\n{}\nsecond Pebble:\n{}",
            self.first.log(),
            self.second.log()
        )
    }
}

/// The ACME requests a renewer reports, as (CA name, endpoint, status).
#[derive(Default)]
struct ByCa {
    requests: Mutex<Vec<(String, &'static str, String)>>,
}

impl AcmeObserver for ByCa {
    fn request_done(&self, endpoint: &'static str, status: &str, elapsed: Duration) {
        self.request_done_at("(none)", endpoint, status, elapsed);
    }

    fn request_done_at(&self, ca: &str, endpoint: &'static str, status: &str, _: Duration) {
        let request = (ca.to_owned(), endpoint, status.to_owned());
        self.requests.lock().unwrap().push(request);
    }
}

impl ByCa {
    fn count(&self, ca: &str, endpoint: &str, status: &str) -> usize {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|(c, e, s)| c == ca && *e == endpoint && s == status)
            .count()
    }
}

fn forced() -> RenewOptions {
    RenewOptions {
        force: true,
        ..RenewOptions::default()
    }
}

fn assert_renewed(result: &Result<RenewOutcome, certinel::renew::RenewError>, cas: &TwoCas) {
    assert!(
        matches!(result, Ok(RenewOutcome::Renewed { .. })),
        "{result:?}\n{}",
        cas.logs()
    );
}

#[tokio::test]
async fn a_failing_first_ca_hands_over_to_the_second_and_the_next_renewal_returns_to_the_first() {
    let cas = TwoCas::start((&[], &[]), "").await;
    let (renewer, requests) = cas.counting_renewer();
    let now = OffsetDateTime::now_utc();

    // Every CA down: the failure is the last CA's, for the `ca` label of the failure
    // metrics.
    cas.first_front.fail_paths(Some("/"));
    cas.second_front.fail_paths(Some("/"));
    let down = renewer.attempt("api", forced(), now).await;
    assert!(down.result.is_err(), "{:?}", down.result);
    assert_eq!(down.ca.as_deref(), Some("second"));
    cas.second_front.fail_paths(None);

    // The first CA answers every request with 503: after the retries it hands over.
    let first = renewer.renew("api", forced(), now).await;
    assert_renewed(&first, &cas);
    assert_eq!(cas.current_source(), cas.second_front.directory_url);
    assert_eq!(cas.status_ca(&renewer, now).as_deref(), Some("second"));
    let inventory = cas.inventory_json().await;
    let automation = &inventory["managed"][0]["automation"];
    assert_eq!(automation["issued_by"], "second", "{inventory}");
    assert_eq!(automation["ca"], serde_json::json!(["acme", "second"]));
    let audit = std::fs::read_to_string(cas.state_dir.join("audit.jsonl")).unwrap();
    assert!(
        audit.contains(&format!(
            "issued by CA second ({})",
            cas.second_front.directory_url
        )),
        "{audit}"
    );
    // The `ca` label of the ACME request metrics.
    assert!(requests.count("acme", "directory", "503") >= 1);
    assert_eq!(requests.count("second", "new_order", "201"), 1);
    assert_eq!(requests.count("(none)", "new_order", "201"), 0);
    cas.assert_new_orders(0, 1, "the first CA is down, the second issues");

    // The first CA is back: the next renewal asks it first, and the certificate the second
    // CA issued is not named in `replaces` there, nor polled for renewal information.
    cas.first_front.fail_paths(None);
    let later = now + time::Duration::minutes(5);
    let second = renewer.renew("api", forced(), later).await;
    assert_renewed(&second, &cas);
    assert_eq!(cas.current_source(), cas.first_front.directory_url);
    assert_eq!(cas.status_ca(&renewer, later).as_deref(), Some("acme"));
    let orders = cas.first_front.new_orders();
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert!(
        orders[0].get("replaces").is_none(),
        "replaces crossed CAs: {orders:?}"
    );
    assert!(cas.first_front.renewal_info_requests().is_empty());
    cas.assert_new_orders(1, 1, "nothing more at the second CA");

    // A renewal of the first CA's certificate at the first CA does send `replaces`.
    let third = renewer
        .renew("api", forced(), later + time::Duration::minutes(5))
        .await;
    assert_renewed(&third, &cas);
    let orders = cas.first_front.new_orders();
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert!(orders[1].get("replaces").is_some(), "{orders:?}");
    for order in cas.second_front.new_orders() {
        assert!(order.get("replaces").is_none(), "{order:?}");
    }
}

#[tokio::test]
async fn a_first_ca_without_the_configured_profile_hands_over_to_the_second() {
    let cas = TwoCas::start(
        (&[("classic", "the old one")], &[("tlsserver", "45 days")]),
        "profile = \"tlsserver\"\n",
    )
    .await;
    let renewer = cas.renewer();
    let now = OffsetDateTime::now_utc();

    let result = renewer.renew("api", forced(), now).await;
    assert_renewed(&result, &cas);
    assert_eq!(cas.current_source(), cas.second_front.directory_url);
    assert!(cas.first_front.new_orders().is_empty());
    let orders = cas.second_front.new_orders();
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0]["profile"], "tlsserver", "{orders:?}");
    // The CA facts `/metrics` shows for the certificate are those of the CA that issued
    // it, which advertises the profile, not those of `[acme]`, which does not.
    let issued_by = cas.status_ca(&renewer, now);
    let facts = renewer.ca_facts_of("api", issued_by.as_deref());
    assert_eq!(
        facts.profiles_available.get("tlsserver"),
        Some(&true),
        "{facts:?}"
    );
}

#[tokio::test]
async fn repeated_validation_failures_at_the_first_ca_start_the_next_attempt_at_the_second() {
    // Only the second Pebble's validator reaches the responder: the first one's http-01
    // port is another. One failure is enough with ca_failover_after = 1.
    let cas = TwoCas::start((&[], &[]), "ca_failover_after = 1\n").await;
    cas.edit_config(
        &format!("listen = \"{}\"", cas.first.http_addr()),
        &format!("listen = \"127.0.0.1:{}\"", free_port()),
    );
    let renewer = cas.renewer();
    let now = OffsetDateTime::now_utc();

    let failed = renewer.renew("api", forced(), now).await;
    assert!(failed.is_err(), "{failed:?}");
    let why = "a validation failure does not hand over within the attempt";
    cas.assert_new_orders(1, 0, why);

    // The next attempt starts with the second CA (its validator fails too, but it was asked
    // first).
    let _ = renewer
        .renew("api", forced(), now + time::Duration::hours(1))
        .await;
    cas.assert_new_orders(1, 1, "the next attempt starts at the second CA");
}

#[tokio::test]
async fn an_order_kept_at_the_second_ca_is_resumed_there_when_the_first_is_back() {
    let cas = TwoCas::start((&[], &[]), "").await;
    let renewer = cas.renewer();
    let now = OffsetDateTime::now_utc();

    // The first CA is down; the second issues but its download fails, so the order is kept.
    cas.first_front.fail_paths(Some("/"));
    cas.second_front.fail_paths(Some("/certZ/"));
    let failed = renewer.renew("api", forced(), now).await;
    assert!(failed.is_err(), "{failed:?}");
    let store = CertStore::open(&cas.state_dir).unwrap();
    let kept = store.inflight("api").unwrap().expect("the order is kept");
    let order_url = kept.order_url.expect("an order URL");
    assert!(
        order_url.starts_with(cas.second_front.directory_url.trim_end_matches("/dir")),
        "{order_url}"
    );

    // Both CAs answer again: the kept order is resumed at the CA that holds it, not sent
    // to the first CA, and no second order is placed anywhere.
    cas.first_front.fail_paths(None);
    cas.second_front.fail_paths(None);
    let later = now + time::Duration::minutes(10);
    let resumed = renewer.renew("api", RenewOptions::default(), later).await;
    assert_renewed(&resumed, &cas);
    assert_eq!(cas.current_source(), cas.second_front.directory_url);
    cas.assert_new_orders(0, 1, "the kept order is resumed, no new one is placed");
    let crossed = cas
        .first_front
        .answered()
        .into_iter()
        .filter(|(path, _)| path.contains("order"))
        .count();
    assert_eq!(crossed, 0, "{:?}", cas.first_front.answered());
}

#[tokio::test]
async fn a_certificate_listing_only_a_named_ca_is_issued_there() {
    let cas = TwoCas::start((&[], &[]), "").await;
    cas.edit_config("ca = [\"acme\", \"second\"]", "ca = [\"second\"]");
    let renewer = cas.renewer();

    let result = renewer
        .renew("api", forced(), OffsetDateTime::now_utc())
        .await;
    assert_renewed(&result, &cas);
    assert_eq!(cas.current_source(), cas.second_front.directory_url);
    assert!(cas.first_front.new_orders().is_empty());
}

#[tokio::test]
async fn renewal_information_for_the_second_cas_certificate_is_asked_of_the_second_ca_only() {
    let (cas, renewer, now) = TwoCas::issued_at_second().await;
    let pem = std::fs::read_to_string(cas.state_dir.join("certs/api/current/cert.pem")).unwrap();
    let second_id = certinel::acme::ari_certificate_id(&pem).unwrap();

    // A window days away: not due, and only the issuing (second) CA was asked.
    cas.second_front.set_window(AriReply {
        window: (now + time::Duration::days(2), now + time::Duration::days(3)),
        retry_after: Some("3600".to_owned()),
        explanation_url: None,
    });
    let soon = now + time::Duration::minutes(1);
    let planned = renewer.renew("api", RenewOptions::default(), soon).await;
    assert!(
        matches!(planned, Ok(RenewOutcome::NotDue { .. })),
        "{planned:?}\n{}",
        cas.logs()
    );
    assert_eq!(cas.second_front.renewal_info_requests().len(), 1);
    assert_eq!(cas.second_front.renewal_info_requests()[0], second_id);
    assert!(cas.first_front.renewal_info_requests().is_empty());

    // The second CA pulls its window in: the renewal is due, and the order goes to the
    // first CA (it works again) without `replaces` for the second CA's certificate.
    let later = now + time::Duration::hours(2);
    cas.second_front.set_window(due_now(later));
    let renewed = renewer.renew("api", RenewOptions::default(), later).await;
    assert_renewed(&renewed, &cas);
    assert_eq!(cas.current_source(), cas.first_front.directory_url);
    assert_eq!(
        cas.second_front.renewal_info_requests(),
        [second_id.clone(), second_id]
    );
    assert!(cas.first_front.renewal_info_requests().is_empty());
    let orders = cas.first_front.new_orders();
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert!(orders[0].get("replaces").is_none(), "{orders:?}");
}

#[tokio::test]
async fn a_certificate_from_the_second_ca_is_revoked_there() {
    let (cas, renewer, now) = TwoCas::issued_at_second().await;

    let later = now + time::Duration::minutes(5);
    let revoked = renewer
        .revoke(
            "api",
            certinel::acme::RevocationReason::KeyCompromise,
            later,
        )
        .await;
    assert!(revoked.is_ok(), "{revoked:?}\n{}", cas.logs());
    let revocations = |front: &AriFront| {
        front
            .answered()
            .into_iter()
            .filter(|(path, _)| path.contains("revoke"))
            .collect::<Vec<_>>()
    };
    assert_eq!(revocations(&cas.second_front).len(), 1);
    assert!(revocations(&cas.first_front).is_empty());
    // The replacement comes from the first CA again.
    assert_eq!(cas.current_source(), cas.first_front.directory_url);
}

#[tokio::test]
async fn a_first_ca_rate_limited_beyond_the_attempt_hands_over_to_the_second_at_once() {
    let cas = TwoCas::start((&[], &[]), "").await;
    let (renewer, requests) = cas.counting_renewer();
    let now = OffsetDateTime::now_utc();

    // The first CA refuses new orders for an hour: far beyond what one attempt waits.
    cas.first_front.rate_limit_new_orders(Some(3600));
    let started = std::time::Instant::now();
    let attempt = renewer.attempt("api", forced(), now).await;
    assert_eq!(
        attempt.ca.as_deref(),
        Some("second"),
        "the CA the attempt ended at"
    );
    let first = attempt.result;
    assert_renewed(&first, &cas);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the hand-over did not wait out the Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(cas.current_source(), cas.second_front.directory_url);
    assert_eq!(requests.count("acme", "new_order", "429"), 1);
    assert_eq!(requests.count("second", "new_order", "201"), 1);

    // The first CA's Retry-After gates only that CA: with it still limiting, a later
    // renewal goes to the second CA at once again instead of refusing to renew.
    let later = now + time::Duration::minutes(5);
    let second = renewer.renew("api", forced(), later).await;
    assert_renewed(&second, &cas);
    assert_eq!(cas.current_source(), cas.second_front.directory_url);
    assert_eq!(requests.count("second", "new_order", "201"), 2);
}
