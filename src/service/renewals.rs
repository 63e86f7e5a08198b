//! The renewal tasks of `certinel run`, one per managed certificate, kept in step with the
//! configuration: [`Renewals::apply`] starts a task for an added `[[certificate]]`, stops
//! the task of a removed one and restarts the task of a changed one.
//!
//! A task renews through [`Renewer::attempt`] (which recovers an interrupted renewal first
//! and says when to look again), records the outcome in the service [`State`] and sleeps
//! until that moment: the loop never decides a second time. A failure is logged with the
//! certificate's name and the loop goes on, waiting for the backoff the renewer persisted
//! in the schedule state. Time is read from the renewer's clock.
//!
//! **Invariant:** a task is only ever stopped between attempts. A stop request that arrives
//! during a renewal lets it finish (the renewal lock and the in-flight record would make a
//! cancel safe, but a finished renewal wastes no order), and a restarted task waits for its
//! predecessor to end before it renews, so the two never race for the certificate's lock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::acme::OrderLimits;
use crate::config::model::{AcmeConfig, CertificateConfig, Config, DEFAULT_CA, ScannerSettings};
use crate::renew::{LockError, RenewError, RenewOptions, RenewOutcome, Renewer};
use crate::service::error_chain::error_chain;
use crate::service::fleet_view::{Changes, FOLLOW_RETRY, changed, look, publishing_lock};
use crate::service::revocation_watch::RevocationWatch;
use crate::service::state::State;

/// The longest wait after a failure that recorded no backoff (another process holding the
/// certificate's lock), so such a failure does not spin.
const MINIMUM_RETRY: Duration = Duration::from_secs(30);

/// The shortest wait between two plans of one certificate.
const MINIMUM_WAIT: Duration = Duration::from_secs(1);

/// With `[cluster]`, over a store that cannot watch: how often a waiting task looks
/// whether another replica made a new version current, which this replica then rolls out.
/// Over one that watches, the shortest time from an attempt to the next one a view change
/// asks for.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// Builds the renewer for a configuration. The service's default is [`Renewer::new`];
/// tests shorten the retry policy and the backoff here.
pub type RenewerFactory = Arc<dyn Fn(&Config) -> Renewer + Send + Sync>;

/// The running certificate tasks, keyed by certificate name.
pub struct Renewals {
    state: Arc<State>,
    factory: RenewerFactory,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    tasks: HashMap<String, Task>,
    /// The order slots of every CA, shared by the renewers of every configuration
    /// generation: a reload while orders are open keeps the cap.
    orders: OrderLimits,
}

/// One running task and the configuration it was started with.
struct Task {
    settings: Settings,
    /// Asks the task to stop at its next wait.
    stop: CancellationToken,
    /// Cancelled by the task when it has ended.
    finished: CancellationToken,
}

/// Everything a certificate task depends on; a difference restarts the task.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    state_dir: PathBuf,
    acme: Option<AcmeConfig>,
    /// The `[ca.NAME]` tables a certificate may fail over to.
    cas: std::collections::BTreeMap<String, AcmeConfig>,
    /// The served check after deploy resolves with its hosts file and probes with its
    /// timeout.
    scanner: ScannerSettings,
    certificate: CertificateConfig,
}

impl Renewals {
    /// No tasks yet; [`apply`](Self::apply) starts them on `tracker`, and `shutdown` stops
    /// them all.
    pub fn new(
        state: Arc<State>,
        factory: RenewerFactory,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Renewals {
        Renewals {
            state,
            factory,
            tracker,
            shutdown,
            tasks: HashMap::new(),
            orders: OrderLimits::default(),
        }
    }

    /// Makes the tasks match `config`: starts added and changed certificates, stops
    /// removed and changed ones (their series leave `/metrics` at once for removed ones).
    /// Returns how many tasks were started and stopped.
    pub fn apply(&mut self, config: &Config) -> (usize, usize) {
        let wanted: HashMap<&str, Settings> = config
            .certificates
            .iter()
            .map(|certificate| {
                let settings = Settings {
                    state_dir: config.state_dir.clone(),
                    acme: config.acme.clone(),
                    cas: config.cas.clone(),
                    scanner: config.scanner.clone(),
                    certificate: certificate.clone(),
                };
                (certificate.name.as_str(), settings)
            })
            .collect();
        let mut stopped = 0;
        let removed: Vec<String> = self
            .tasks
            .keys()
            .filter(|name| !wanted.contains_key(name.as_str()))
            .cloned()
            .collect();
        for name in removed {
            if let Some(task) = self.tasks.remove(&name) {
                task.stop.cancel();
                stopped += 1;
            }
            self.state.remove_certificate(&name);
            tracing::info!(certificate = %name, "certificate removed from the configuration");
        }
        // One renewer per configuration generation: its account is loaded once and shared
        // by the tasks started now; tasks left running keep theirs.
        let mut renewer: Option<Arc<Renewer>> = None;
        let mut started = 0;
        for certificate in &config.certificates {
            let name = certificate.name.as_str();
            let settings = &wanted[name];
            let previous = match self.tasks.get(name) {
                Some(task) if task.settings == *settings => continue,
                Some(task) => {
                    tracing::info!(certificate = %name, "certificate configuration changed: restarting its task");
                    task.stop.cancel();
                    stopped += 1;
                    Some(task.finished.clone())
                }
                None => None,
            };
            let renewer = renewer
                .get_or_insert_with(|| {
                    let renewer = (self.factory)(config)
                        .with_observer(self.state.clone())
                        .with_order_limits(self.orders.clone());
                    Arc::new(renewer)
                })
                .clone();
            self.state.add_certificate(name);
            let task = Task {
                settings: settings.clone(),
                stop: self.shutdown.child_token(),
                finished: CancellationToken::new(),
            };
            let crl_interval = config.scanner.crl.then_some(config.scanner.crl_interval);
            self.tracker.spawn(certificate_loop(
                renewer,
                name.to_owned(),
                self.state.clone(),
                crl_interval,
                task.stop.clone(),
                previous,
                task.finished.clone(),
            ));
            self.tasks.insert(name.to_owned(), task);
            started += 1;
        }
        (started, stopped)
    }
}

async fn certificate_loop(
    renewer: Arc<Renewer>,
    name: String,
    state: Arc<State>,
    crl_interval: Option<Duration>,
    stop: CancellationToken,
    previous: Option<CancellationToken>,
    finished: CancellationToken,
) {
    let _finished = finished.drop_guard();
    if let Some(previous) = previous {
        tokio::select! {
            () = previous.cancelled() => {}
            () = stop.cancelled() => return,
        }
    }
    refresh(&renewer, &name, &state).await;
    // With a fleet over a store that watches: this certificate's view, which the waits
    // follow instead of reading etcd.
    let mut changes = renewer.follows().then(|| renewer.watch(&name)).flatten();
    let watch = RevocationWatch {
        renewer: &renewer,
        name: &name,
        state: &state,
        interval: crl_interval,
    };
    loop {
        // A certificate revoked while nothing watched is renewed by this very attempt.
        watch.check().await;
        let attempt = publishing_lock(
            &mut changes,
            &name,
            &state,
            renewer.attempt(&name, RenewOptions::default(), renewer.now()),
        )
        .await;
        // Status first: a scrape that sees the outcome's counter sees what it left too.
        refresh(&renewer, &name, &state).await;
        let minimum = match &attempt.result {
            Ok(RenewOutcome::Renewed {
                version, serial, ..
            }) => {
                tracing::info!(certificate = %name, %version, %serial, "certificate renewed");
                state.record_renewal(&name, Ok(()));
                MINIMUM_WAIT
            }
            Ok(RenewOutcome::NotDue { .. }) => MINIMUM_WAIT,
            Err(RenewError::Lock {
                source: LockError::Held,
                ..
            }) if renewer.follows() => {
                // Another replica renews it: the wait follows its rollout and attempts again
                // as soon as nothing is in flight or its holder is gone.
                tracing::debug!(certificate = %name, "renewal in progress on another replica");
                MINIMUM_RETRY.min(renewer.backoff_base())
            }
            Err(RenewError::Lock {
                source: LockError::Held,
                ..
            }) => {
                // Another process renews it right now: not an attempt of ours.
                tracing::info!(certificate = %name, "renewal in progress elsewhere; retrying later");
                MINIMUM_RETRY.min(renewer.backoff_base())
            }
            Err(error) => {
                tracing::warn!(
                    certificate = %name,
                    stage = error.stage(),
                    problem = error.problem(),
                    error = %error_chain(error),
                    "renewal failed"
                );
                let ca = attempt.ca.as_deref().unwrap_or(DEFAULT_CA);
                state.record_renewal(&name, Err((ca, error.stage(), error.problem())));
                MINIMUM_RETRY.min(renewer.backoff_base())
            }
        };
        // The renewal said when to look again; the loop does not decide a second time.
        let wait = match attempt.next_check {
            Some(at) => until(at, renewer.now(), minimum),
            None => MINIMUM_RETRY.max(minimum),
        };
        if !wait_between_attempts(&watch, &mut changes, wait, &stop).await {
            return;
        }
    }
}

/// Sleeps `wait` between two attempts, doing the task's periodic duties on the way: with a
/// fleet, rolling out each version another replica makes current and attempting at once
/// when a renewal is in flight without a holder (`fleet_view.rs`); with CRL checking on,
/// checking the current version's CRLs (every `crl_interval`), which ends the wait early
/// when it was revoked. `false` when `stop` asked the task to end.
///
/// With a store that watches (etcd), the fleet duties run when `changes` says the
/// certificate's view changed, and once at the start of the wait (it may have changed
/// during the attempt); a store that does not watch is polled every [`FOLLOW_INTERVAL`].
async fn wait_between_attempts(
    watch: &RevocationWatch<'_>,
    changes: &mut Option<Changes>,
    wait: Duration,
    stop: &CancellationToken,
) -> bool {
    let (renewer, name, state) = (watch.renewer, watch.name, watch.state);
    let start = tokio::time::Instant::now();
    let wake = start + wait;
    // When the fleet duties run next: at once with a view, after a poll interval without.
    let mut next_look = match (renewer.follows(), changes.is_some()) {
        (false, _) => None,
        (true, true) => Some(start),
        (true, false) => Some(start + FOLLOW_INTERVAL),
    };
    let mut attempt_at = None;
    let mut next_crl_check = watch.interval.map(|interval| start + interval);
    loop {
        let now = tokio::time::Instant::now();
        if next_look.is_some_and(|at| now >= at) {
            let looked = look(renewer, name, state, changes.as_mut()).await;
            next_look = match changes {
                Some(_) if looked.look_again => Some(now + FOLLOW_RETRY),
                Some(_) => None,
                None => Some(now + FOLLOW_INTERVAL),
            };
            // Not sooner than a poll interval after the last attempt, as when polling: a
            // renewal this replica left in flight is not retried in a tight loop.
            attempt_at = looked.attempt.then(|| now.max(start + FOLLOW_INTERVAL));
        }
        let until = [Some(wake), next_look, attempt_at, next_crl_check]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(wake);
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = changed(changes) => next_look = Some(tokio::time::Instant::now()),
            () = stop.cancelled() => return false,
        }
        let now = tokio::time::Instant::now();
        if now >= wake || attempt_at.is_some_and(|at| now >= at) {
            return true;
        }
        if let (Some(at), Some(interval)) = (next_crl_check, watch.interval)
            && now >= at
        {
            next_crl_check = Some(now + interval);
            let revoked = watch.check().await;
            // The verdict shows in `/metrics` and `status` before any renewal.
            refresh(renewer, name, state).await;
            if revoked {
                return true;
            }
        }
    }
}

/// Reads the certificate's status from the store into `state`, for `/metrics` and the
/// status page. The store is read on a blocking thread, off the async workers. `false`
/// when it could not be read (logged); `state` keeps what it showed.
pub(super) async fn refresh(renewer: &Arc<Renewer>, name: &str, state: &State) -> bool {
    let read = {
        let (renewer, name) = (Arc::clone(renewer), name.to_owned());
        tokio::task::spawn_blocking(move || renewer.status_of(&name, renewer.now()))
    };
    let status = match read.await {
        Ok(status) => status,
        Err(error) => {
            tracing::warn!(certificate = %name, %error, "reading the certificate's status failed");
            return false;
        }
    };
    match status {
        Ok(status) => {
            state.update_certificate(&status);
            state.set_local_version(name, renewer.applied_version(name));
            let facts = renewer.ca_facts_of(name, status.ca.as_deref());
            state.update_ca_facts(name, renewer.profile(name), &facts);
            true
        }
        Err(error) => {
            tracing::warn!(
                certificate = %name,
                error = %error_chain(&error),
                "cannot read the certificate's status"
            );
            false
        }
    }
}

/// How long from `now` until `at`, at least `minimum`.
fn until(at: OffsetDateTime, now: OffsetDateTime, minimum: Duration) -> Duration {
    let left = at - now;
    Duration::try_from(left)
        .unwrap_or(Duration::ZERO)
        .max(minimum)
}

#[cfg(test)]
mod tests {
    use crate::acme::RetryPolicy;
    use crate::renew::{Clock, RandomSource};
    use crate::store::testing::{audit_steps, issue_valid};
    use crate::store::{CertStore, Origin, VersionId, VersionState};

    use super::*;

    /// Wall-clock time that follows tokio's (paused) clock from `start`.
    struct TokioClock {
        start: OffsetDateTime,
        at: tokio::time::Instant,
    }

    impl Clock for TokioClock {
        fn now(&self) -> OffsetDateTime {
            self.start + (tokio::time::Instant::now() - self.at)
        }
    }

    /// Always the same draw.
    struct Fixed(f64);

    impl RandomSource for Fixed {
        fn draw(&self) -> f64 {
            self.0
        }
    }

    /// A configuration whose CA is a closed loopback port, with `certificates` as
    /// `(name, renew_before)`.
    fn config(state_dir: &std::path::Path, certificates: &[(&str, &str)]) -> Config {
        let mut text = format!(
            "state_dir = {:?}\n[acme]\ndirectory = \"https://127.0.0.1:9/dir\"\n",
            state_dir.display().to_string()
        );
        for (name, renew_before) in certificates {
            text.push_str(&format!(
                "[[certificate]]\nname = {name:?}\ndns_names = [\"{name}.test\"]\n\
                 renew_before = {renew_before:?}\n\
                 challenge = {{ type = \"http-01\", listen = \"127.0.0.1:0\" }}\n"
            ));
        }
        crate::config::parse(&text, None).expect("test config")
    }

    fn names(state: &State) -> Vec<String> {
        state
            .snapshot()
            .certificates
            .into_iter()
            .map(|certificate| certificate.name)
            .collect()
    }

    #[tokio::test]
    async fn tasks_start_stop_and_restart_with_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(State::new());
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let factory: RenewerFactory = Arc::new(|config| {
            Renewer::new(config).with_retry_policy(RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            })
        });
        let mut renewals = Renewals::new(state.clone(), factory, tracker.clone(), shutdown.clone());

        let both = config(dir.path(), &[("api", "30d"), ("www", "30d")]);
        assert_eq!(renewals.apply(&both), (2, 0));
        assert_eq!(names(&state), ["api", "www"]);
        assert_eq!(renewals.apply(&both), (0, 0), "nothing changed");

        let changed = config(dir.path(), &[("api", "20d"), ("www", "30d")]);
        assert_eq!(renewals.apply(&changed), (1, 1), "api restarts");
        assert_eq!(names(&state), ["api", "www"]);

        let mut rescanned = changed.clone();
        rescanned.scanner.default_timeout = Duration::from_secs(3);
        assert_eq!(
            renewals.apply(&rescanned),
            (2, 2),
            "the served check's scanner settings changed: every task restarts"
        );

        let mut with_backup = rescanned.clone();
        let mut backup = with_backup.acme.clone().expect("[acme]");
        backup.directory = "https://127.0.0.1:10/dir".to_owned();
        with_backup.cas.insert("backup".to_owned(), backup);
        assert_eq!(
            renewals.apply(&with_backup),
            (2, 2),
            "a [ca.NAME] table changed: every task restarts with it"
        );

        let mut one = config(dir.path(), &[("www", "30d")]);
        one.scanner = rescanned.scanner.clone();
        one.cas = with_backup.cas.clone();
        assert_eq!(renewals.apply(&one), (0, 1));
        assert_eq!(names(&state), ["www"], "api's series leave at once");

        shutdown.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(30), tracker.wait())
            .await
            .expect("every task ends after shutdown");
    }

    /// A store for `api` (imported, so the CA is never asked about it) where v0001 is
    /// current and expires `expires_in` from `start` (its window opens 30 days earlier;
    /// jitter 0 is the latest moment) and v0002 is parked, so a due renewal rolls it out
    /// again without a CA. Returns the store and both versions.
    fn parked_setup(
        config: &Config,
        start: OffsetDateTime,
        expires_in: time::Duration,
    ) -> (CertStore, VersionId, VersionId) {
        let store = CertStore::open(&config.state_dir).unwrap();
        let origin = Origin {
            created_at: start,
            source: "imported".into(),
        };
        let ecdsa = &rcgen::PKCS_ECDSA_P256_SHA256;
        let old = issue_valid(
            &["api.test"],
            ecdsa,
            start - time::Duration::days(60),
            start + expires_in,
        );
        let old = store
            .stage_pending("api", old.new_version(&origin))
            .unwrap();
        store.promote("api", old.version).unwrap();
        let parked = issue_valid(
            &["api.test"],
            ecdsa,
            start - time::Duration::days(1),
            start + time::Duration::days(89),
        );
        let parked = store
            .stage_pending("api", parked.new_version(&origin))
            .unwrap();
        store
            .set_state("api", parked.version, VersionState::Parked)
            .unwrap();
        (store, old.version, parked.version)
    }

    /// Starts the renewal tasks of `config` with a renewer whose clock follows paused
    /// tokio time from `start` and whose draws are 0.
    fn start_tasks(config: &Config, start: OffsetDateTime) -> (TaskTracker, CancellationToken) {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock {
            start,
            at: tokio::time::Instant::now(),
        });
        let factory: RenewerFactory = Arc::new(move |config| {
            Renewer::new(config)
                .with_clock(clock.clone())
                .with_random(Arc::new(Fixed(0.0)))
        });
        let state = Arc::new(State::new());
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let mut renewals = Renewals::new(state, factory, tracker.clone(), shutdown.clone());
        assert_eq!(renewals.apply(config), (1, 0));
        (tracker, shutdown)
    }

    /// Waits (in paused time, while the task's blocking store work runs) until the audit
    /// log ends with `done`.
    async fn until_done(state_dir: &std::path::Path) {
        for _ in 0..600 {
            if audit_steps(state_dir).last().map(String::as_str) == Some("done") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_paused_time_a_task_sleeps_until_the_wake_up_its_renewal_returned() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &[("api", "30d")]);
        let start = OffsetDateTime::now_utc();
        let expires_in = time::Duration::days(30) + time::Duration::HOUR;
        let (store, old, parked) = parked_setup(&config, start, expires_in);
        let (tracker, shutdown) = start_tasks(&config, start);

        // The first attempt finds nothing due and sleeps until the window opens.
        tokio::time::sleep(Duration::from_secs(59 * 60)).await;
        assert_eq!(audit_steps(&config.state_dir), Vec::<String>::new());
        assert_eq!(store.current("api").unwrap(), Some(old));

        // The window opens at one hour: the task wakes up and rolls v0002 out.
        tokio::time::sleep(Duration::from_secs(2 * 60)).await;
        until_done(&config.state_dir).await;
        assert_eq!(
            audit_steps(&config.state_dir),
            ["begin", "deployed", "verified", "done"]
        );
        assert_eq!(store.current("api").unwrap(), Some(parked));

        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    }

    #[tokio::test(start_paused = true)]
    async fn with_paused_time_a_certificate_locked_elsewhere_is_tried_again_after_30_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &[("api", "30d")]);
        let start = OffsetDateTime::now_utc();
        // Due at once: v0001's window opened a day ago.
        let (store, _, parked) = parked_setup(&config, start, time::Duration::days(29));
        let lock = crate::renew::RenewalLock::try_acquire(&config.state_dir, "api").unwrap();
        let (tracker, shutdown) = start_tasks(&config, start);

        // The first attempt finds the lock held; released a second later.
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(lock);
        tokio::time::sleep(Duration::from_secs(27)).await;
        assert_eq!(
            audit_steps(&config.state_dir),
            Vec::<String>::new(),
            "not retried before {MINIMUM_RETRY:?}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        until_done(&config.state_dir).await;
        assert_eq!(store.current("api").unwrap(), Some(parked));

        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
