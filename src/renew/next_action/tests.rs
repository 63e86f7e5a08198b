//! Table-driven tests of the renewal state machine: every transition, and every crash point
//! (the state a dead process left on disk → the action a restart takes), without sockets,
//! files or a CA.

use time::macros::datetime;

use super::*;
use crate::cert::KeyType;
use crate::config::model::OnVerifyFailure;
use crate::schedule::ari::AriState;
use crate::schedule::history::{JitterDraw, RevocationCheck, ScheduleState};
use crate::store::{Inflight, SecretPem, Stage, VersionState};

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const DRAW: f64 = 0.25;
const ORDER: &str = "https://ca.test/order/1";
const DIRECTORY: &str = "https://127.0.0.1:9/dir";
/// The ARI identifier of serial 01: base64url of the serial byte after a key identifier.
const CERT_ID: &str = "a2V5.AQ";

/// Everything the state machine observes, owned, with a certificate `api` for
/// `api.example` (ECDSA P-256, renewed 30 days before expiry).
#[derive(Clone)]
struct World {
    certificate: CertificateConfig,
    disk: DiskState,
    versions: Vec<VersionMetadata>,
    plan: PlanFacts,
    /// The current certificate's ARI identifier, as the driver read it.
    ari_id: Option<String>,
    force: bool,
}

fn certificate(extra: &str) -> CertificateConfig {
    let text = format!(
        "state_dir = \"/var/lib/certinel-test\"\n[acme]\ndirectory = \"https://127.0.0.1:9/dir\"\n\
         [[certificate]]\nname = \"api\"\ndns_names = [\"api.example\"]\nrenew_before = \"30d\"\n\
         challenge = {{ type = \"http-01\", listen = \"127.0.0.1:0\" }}\n{extra}"
    );
    let mut config = crate::config::parse(&text, None).expect("test config");
    config.certificates.remove(0)
}

/// Version `number` for `api.example`, valid from `days_ago` days before [`NOW`] for 90 days.
fn version(number: u32, state: VersionState, days_ago: i64) -> VersionMetadata {
    let not_before = NOW - Duration::days(days_ago);
    VersionMetadata {
        version: VersionId(number),
        serial: format!("{number:02x}"),
        not_before,
        not_after: not_before + Duration::days(90),
        dns_names: vec!["api.example".into()],
        key_type: KeyType::EcdsaP256,
        issuer: "CN=Test CA".into(),
        created_at: not_before,
        source: "https://127.0.0.1:9/dir".into(),
        state,
    }
}

fn inflight(stage: Stage, version: Option<u32>) -> Inflight {
    Inflight {
        version: version.map(VersionId),
        stage,
        order_url: None,
        started_at: NOW - Duration::minutes(5),
        key_pem: None,
        hook: None,
    }
}

/// An order placed at the CA (`Stage::Ordering` with its URL): without and with a saved key.
fn placed_order() -> (Inflight, Inflight) {
    let mut placed = inflight(Stage::Ordering, None);
    placed.order_url = Some(ORDER.into());
    let mut keyed = placed.clone();
    keyed.key_pem = Some(SecretPem::new("KEY".into()));
    (placed, keyed)
}

impl World {
    /// No certificate yet, nothing in flight.
    fn empty() -> World {
        World {
            certificate: certificate(""),
            disk: DiskState::default(),
            versions: Vec::new(),
            plan: PlanFacts {
                current: None,
                schedule: ScheduleState::default(),
            },
            ari_id: None,
            force: false,
        }
    }

    /// `v0001` current, issued `days_ago` days ago, its jitter drawn as 0.
    fn current(days_ago: i64) -> World {
        let mut world = World::empty();
        world.add_version(version(1, VersionState::Active, days_ago));
        world.disk.current = Some(VersionId(1));
        world.plan.current = Some(world.versions[0].clone());
        world.plan.schedule.jitter = Some(JitterDraw {
            serial: "01".into(),
            value: 0.0,
        });
        world.ari_id = Some(CERT_ID.into());
        world
    }

    fn add_version(&mut self, meta: VersionMetadata) {
        self.disk.versions.push((meta.version, meta.state));
        self.versions.push(meta);
    }

    fn inflight(mut self, record: Inflight) -> World {
        self.disk.inflight = Some(record);
        self
    }

    fn next(&self, event: Event) -> Action {
        next_action(&observed(self), &event)
    }
}

/// Checks each `(world, event, expected action)` row, naming the row that fails.
fn check(rows: Vec<(&str, World, Event, Action)>) {
    for (row, world, event, expected) in rows {
        assert_eq!(world.next(event), expected, "{row}");
    }
}

fn resuming() -> Action {
    Action::CleanUp {
        stop_hook: None,
        remove_leftovers: false,
        resuming: true,
    }
}

const V1: VersionId = VersionId(1);
const V2: VersionId = VersionId(2);

#[test]
fn an_idle_certificate_draws_its_jitter_asks_the_ca_then_sleeps_or_renews() {
    let mut undrawn = World::current(10);
    undrawn.plan.schedule.jitter = None;
    let mut parked = World::current(70);
    parked.add_version(version(2, VersionState::Parked, 1));
    check(vec![
        (
            "no jitter drawn for the current serial: persist the draw",
            undrawn,
            Event::Started,
            Action::SaveJitter {
                serial: "01".into(),
                value: DRAW,
            },
        ),
        (
            "a jitter drawn: ask the CA for renewal information",
            World::current(10),
            Event::Started,
            Action::PollRenewalInfo {
                cert_id: CERT_ID.into(),
            },
        ),
        (
            "jitter saved: ask the CA",
            World::current(10),
            Event::JitterSaved,
            Action::PollRenewalInfo {
                cert_id: CERT_ID.into(),
            },
        ),
        (
            "nothing current: nothing to ask about, renew at once",
            World::empty(),
            Event::Started,
            Action::LoadAccount,
        ),
        (
            "inside the window: renew, account first",
            World::current(70),
            Event::RenewalInfoSaved,
            Action::LoadAccount,
        ),
        (
            "inside the window with a parked version: roll it out again",
            parked,
            Event::RenewalInfoSaved,
            Action::Reroll { version: V2 },
        ),
        (
            "after an abandoned renewal: plan as usual",
            World::empty(),
            Event::Abandoned,
            Action::LoadAccount,
        ),
    ]);
}

#[test]
fn a_certificate_not_due_sleeps_until_the_renewal_or_the_next_ari_poll() {
    let world = World::current(10);
    let Action::Sleep {
        renew_at,
        reason,
        next_check,
        ..
    } = world.next(Event::RenewalInfoSaved)
    else {
        panic!("not due yet: {:?}", world.next(Event::RenewalInfoSaved));
    };
    // Issued 10 days ago for 90 days, renewed 30 days before the end (jitter 0).
    assert_eq!(renew_at, NOW + Duration::days(50));
    assert_eq!(reason, Reason::Scheduled);
    assert_eq!(next_check, renew_at);

    let mut polled = World::current(10);
    polled.plan.schedule.ari = Some(AriState {
        cert_id: CERT_ID.into(),
        window_start: None,
        window_end: None,
        renew_at: None,
        next_poll: NOW + Duration::hours(6),
        last_error: Some("no window".into()),
        explanation_url: None,
    });
    let Action::Sleep { next_check, .. } = polled.next(Event::RenewalInfoSaved) else {
        panic!("not due yet");
    };
    assert_eq!(
        next_check,
        NOW + Duration::hours(6),
        "the ARI poll comes first"
    );
    assert_eq!(next_wake_up(&observed(&polled)), NOW + Duration::hours(6));
}

/// `world` with its current version found revoked by the last CRL check.
fn revoked(mut world: World) -> World {
    world.plan.schedule.revocation = Some(RevocationCheck {
        serial: "01".into(),
        url: "http://crl.test/1.crl".into(),
        checked_at: NOW - Duration::minutes(1),
        revoked_at: Some(NOW - Duration::hours(1)),
        reason_code: Some(1),
    });
    world
}

#[test]
fn a_revoked_current_certificate_renews_at_once_although_its_window_is_far() {
    let mut stale_verdict = revoked(World::current(10));
    if let Some(check) = &mut stale_verdict.plan.schedule.revocation {
        check.serial = "00".into();
    }
    let mut backing_off = revoked(World::current(10));
    backing_off.plan.schedule.consecutive_failures = 1;
    backing_off.plan.schedule.last_failure_at = Some(NOW);
    check(vec![
        (
            "revoked, 50 days before its window: renew, account first",
            revoked(World::current(10)),
            Event::RenewalInfoSaved,
            Action::LoadAccount,
        ),
        (
            "a verdict about another serial does not count",
            stale_verdict,
            Event::RenewalInfoSaved,
            sleep_until(NOW + Duration::days(50), Reason::Scheduled),
        ),
        (
            "revoked after a failure: the backoff still holds",
            backing_off,
            Event::RenewalInfoSaved,
            sleep_until(NOW + Duration::minutes(5), Reason::Backoff),
        ),
    ]);
    assert_eq!(
        next_wake_up(&observed(&revoked(World::current(10)))),
        NOW,
        "the wake-up after a revocation is now"
    );
}

/// Sleeping under the `renew_before` rule until `at`, and checking again then.
fn sleep_until(at: OffsetDateTime, reason: Reason) -> Action {
    Action::Sleep {
        renew_at: at,
        reason,
        rule: Rule::RenewBefore,
        next_check: at,
    }
}

fn observed(world: &World) -> Observed<'_> {
    Observed {
        certificate: &world.certificate,
        disk: &world.disk,
        versions: &world.versions,
        plan: &world.plan,
        force: world.force,
        directory: Some(DIRECTORY),
        current_ari_id: world.ari_id.as_deref(),
        backoff_base: Duration::minutes(5),
        now: NOW,
        draw: DRAW,
    }
}

#[test]
fn after_a_failure_the_next_wake_up_is_the_backoff() {
    let mut failed = World::empty();
    failed.plan.schedule.consecutive_failures = 1;
    failed.plan.schedule.last_failure_at = Some(NOW);
    assert_eq!(next_wake_up(&observed(&failed)), NOW + Duration::minutes(5));
}

#[test]
fn force_skips_the_window_never_the_cas_limits() {
    let mut forced = World::current(10);
    forced.force = true;
    let mut gated = World::current(10);
    gated.force = true;
    gated.plan.schedule.retry_after = Some(NOW + Duration::minutes(30));
    check(vec![
        (
            "forced: renew now",
            forced,
            Event::Started,
            Action::LoadAccount,
        ),
        (
            "forced but the CA said Retry-After",
            gated,
            Event::Started,
            Action::Refuse {
                until: NOW + Duration::minutes(30),
                reason: Reason::RetryAfter,
            },
        ),
    ]);
}

mod crash_points;
mod order_and_rollout;
mod renewal_info;
