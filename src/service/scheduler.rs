//! The scheduler: one task per endpoint and per file source, each re-checking its target on
//! its own jittered interval and writing results to [`State`].
//!
//! The timing maths ([`first_delay`], [`next_run`]) is pure and takes the random value as a
//! parameter. A reload is a diff: jobs whose configuration is unchanged keep running and
//! keep their results; removed jobs are cancelled and forgotten; new jobs start with a
//! delay spread over the first `min(interval, 1s)`.
//!
//! With `[cluster]`, endpoint jobs are sharded: a replica runs only the endpoints it owns
//! among the live members ([`Sharding::Share`], rendezvous hashing on [`shard_key`]), and a
//! membership change is applied like a reload, so endpoints it no longer owns stop and
//! leave its `/metrics`. File sources are local to each replica and always run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::shard;
use crate::config::model::{Config, Endpoint, FileSource};
use crate::scan::crl::watch;
use crate::scan::files::{self, FileReport};
use crate::scan::probe::{self, ProbeContext};
use crate::service::state::{JobId, State};

/// Each run lands within ±5% of the interval after the previous one (10% wide), so probes
/// that started together drift apart.
pub const JITTER_FRACTION: f64 = 0.1;

/// First runs are spread over at most this long, so `/readyz` turns ready quickly even
/// with long intervals. The spread only keeps jobs from running in lockstep: the scanner's
/// `concurrency` already bounds how many probe at once, so a longer window would only
/// delay the first round (10,000 endpoints 100 ms away take about 2 s at concurrency 1,024).
pub const FIRST_RUN_WINDOW: Duration = Duration::from_secs(1);

/// Delay before a new job's first run: spread uniformly over `min(interval, 1s)`.
/// `random` is in `[0, 1)`; values outside are clamped.
pub fn first_delay(interval: Duration, random: f64) -> Duration {
    interval
        .min(FIRST_RUN_WINDOW)
        .mul_f64(random.clamp(0.0, 1.0))
}

/// When to run next after a run that finished at `now`: `interval` stretched or shrunk by
/// up to half of `jitter_fraction`. `random` is in `[0, 1)`; values outside are clamped.
pub fn next_run(now: Instant, interval: Duration, jitter_fraction: f64, random: f64) -> Instant {
    let jitter = jitter_fraction.clamp(0.0, 1.0) * (random.clamp(0.0, 1.0) - 0.5);
    now + interval.mul_f64(1.0 + jitter)
}

/// Which scheduled endpoints this replica probes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Sharding {
    /// Every configured endpoint (no `[cluster]`).
    #[default]
    All,
    /// Only those `me` owns among `members` (this replica counts even when not listed).
    Share {
        /// This replica's member name.
        me: String,
        /// The live members.
        members: Vec<String>,
    },
}

impl Sharding {
    /// Whether this replica probes `endpoint`.
    pub fn runs(&self, endpoint: &Endpoint) -> bool {
        match self {
            Sharding::All => true,
            Sharding::Share { me, members } => shard::owns(&shard_key(endpoint), members, me),
        }
    }
}

/// The key an endpoint is sharded by: its identity in the metrics, the `target` label
/// (`host:port`), followed by `#` and the SNI name when `sni` is set. Two `[[endpoint]]`s
/// with the same key would produce the same series, so they go to the same replica.
pub fn shard_key(endpoint: &Endpoint) -> String {
    match &endpoint.probe.sni {
        Some(sni) => format!("{}#{sni}", endpoint.target),
        None => endpoint.target.to_string(),
    }
}

/// What a job checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Job {
    /// A live TLS endpoint.
    Endpoint(Endpoint),
    /// A certificate file, directory or glob.
    Files(FileSource),
}

impl Job {
    /// The jobs of a configuration, endpoints first.
    pub fn all(config: &Config) -> Vec<Job> {
        let endpoints = config.endpoints.iter().cloned().map(Job::Endpoint);
        endpoints
            .chain(config.files.iter().cloned().map(Job::Files))
            .collect()
    }

    fn interval(&self) -> Duration {
        match self {
            Job::Endpoint(endpoint) => endpoint.interval,
            Job::Files(source) => source.interval,
        }
    }
}

/// What every job task shares.
#[derive(Debug)]
pub struct JobEnvironment {
    /// Where results go.
    pub state: Arc<State>,
    /// Resolver and trust roots; replaced on reload, read at each run.
    pub probe_context: RwLock<Arc<ProbeContext>>,
    /// Bounds the probes in flight (`[scanner] concurrency`).
    pub permits: Semaphore,
}

impl JobEnvironment {
    /// The current probe context.
    pub fn probe_context(&self) -> Arc<ProbeContext> {
        // A writer only swaps an `Arc`, so a poisoned lock still holds a valid context.
        self.probe_context
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Installs the context built from a newly loaded configuration.
    pub fn set_probe_context(&self, context: Arc<ProbeContext>) {
        self.state.set_crl_fetcher(context.crl.clone());
        *self
            .probe_context
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = context;
    }
}

/// The running jobs.
#[derive(Debug)]
pub struct Scheduler {
    environment: Arc<JobEnvironment>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    running: Vec<Running>,
    next_id: JobId,
    sharding: Sharding,
}

#[derive(Debug)]
struct Running {
    id: JobId,
    job: Job,
    cancel: CancellationToken,
}

impl Scheduler {
    /// A scheduler with no jobs; tasks are tracked by `tracker` and stop on `shutdown`.
    pub fn new(
        environment: Arc<JobEnvironment>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Scheduler {
        Scheduler {
            environment,
            tracker,
            shutdown,
            running: Vec::new(),
            next_id: 1,
            sharding: Sharding::All,
        }
    }

    /// Changes which endpoints this replica probes; the next [`apply`](Self::apply) starts
    /// and stops jobs accordingly.
    pub fn set_sharding(&mut self, sharding: Sharding) {
        self.sharding = sharding;
    }

    /// Makes the running jobs those of `config`: unchanged jobs keep running, removed ones
    /// stop and lose their series, new ones start. Returns (started, stopped).
    ///
    /// Linear in the number of jobs: 100,000 endpoints from file_sd files are matched by
    /// hash, not by scanning the list for each running job.
    pub fn apply(&mut self, config: &Config) -> (usize, usize) {
        let mut wanted = Job::all(config);
        if let Sharding::Share { .. } = &self.sharding {
            wanted.retain(|job| match job {
                Job::Endpoint(endpoint) => self.sharding.runs(endpoint),
                Job::Files(_) => true,
            });
            let owned = wanted
                .iter()
                .filter(|job| matches!(job, Job::Endpoint(_)))
                .count();
            self.environment.state.set_endpoints_owned(owned);
        }
        // How many running jobs each wanted job may keep (equal jobs may repeat).
        let mut unclaimed: HashMap<&Job, usize> = HashMap::with_capacity(wanted.len());
        for job in &wanted {
            *unclaimed.entry(job).or_default() += 1;
        }
        let mut kept = Vec::with_capacity(self.running.len());
        let mut stopped = 0;
        for running in std::mem::take(&mut self.running) {
            match unclaimed.get_mut(&running.job) {
                Some(count) if *count > 0 => {
                    *count -= 1;
                    kept.push(running);
                }
                _ => {
                    running.cancel.cancel();
                    self.environment.state.remove(running.id);
                    stopped += 1;
                }
            }
        }
        self.running = kept;
        let mut started = 0;
        for job in &wanted {
            if let Some(count) = unclaimed.get_mut(job).filter(|count| **count > 0) {
                *count -= 1;
                self.start(job.clone());
                started += 1;
            }
        }
        (started, stopped)
    }

    fn start(&mut self, job: Job) {
        let id = self.next_id;
        self.next_id += 1;
        let cancel = self.shutdown.child_token();
        match &job {
            Job::Endpoint(endpoint) => self
                .environment
                .state
                .add_endpoint(id, endpoint.target.to_string()),
            Job::Files(_) => self.environment.state.add_file_source(id),
        }
        self.tracker.spawn(run_job(
            id,
            job.clone(),
            self.environment.clone(),
            cancel.clone(),
        ));
        self.running.push(Running { id, job, cancel });
    }
}

async fn run_job(id: JobId, job: Job, environment: Arc<JobEnvironment>, cancel: CancellationToken) {
    let interval = job.interval();
    let mut next = Instant::now() + first_delay(interval, rand::random());
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
        }
        // Boxed: a probe's state machine is kilobytes, and 100,000 idle jobs should hold
        // only their timers, not room for a probe each.
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = Box::pin(run_once(id, &job, &environment)) => {}
        }
        next = next_run(Instant::now(), interval, JITTER_FRACTION, rand::random());
    }
}

async fn run_once(id: JobId, job: &Job, environment: &JobEnvironment) {
    // The semaphore is never closed, so acquiring only fails if that invariant breaks;
    // then the run goes ahead unthrottled rather than stopping.
    let _permit = environment.permits.acquire().await.ok();
    match job {
        Job::Endpoint(endpoint) => {
            let context = environment.probe_context();
            let report = probe::probe_endpoint(endpoint, &context).await;
            log_endpoint(&report);
            environment.state.record_endpoint(id, report);
        }
        Job::Files(source) => {
            let pattern = source.path.clone();
            let reports = tokio::task::spawn_blocking(move || read_source(&pattern)).await;
            match reports {
                Ok(mut reports) => {
                    if let Some(fetcher) = &environment.probe_context().crl {
                        let now = OffsetDateTime::now_utc();
                        watch::check_files(fetcher, &mut reports, now, source.interval).await;
                    }
                    for report in &reports {
                        if let Err(error) = &report.outcome {
                            tracing::warn!(path = %report.path.display(), %error, "certificate file unreadable");
                        }
                    }
                    environment.state.record_files(id, reports);
                }
                Err(error) => {
                    tracing::error!(path = %source.path, %error, "reading certificate files failed");
                }
            }
        }
    }
}

fn log_endpoint(report: &probe::EndpointReport) {
    // Formatted only when an event is enabled, not once per probe.
    let target = &report.endpoint.target;
    if let Some(error) = &report.resolve_error {
        tracing::warn!(%target, %error, "probe failed");
    }
    for address in &report.addresses {
        match &address.outcome {
            Ok(handshake) => tracing::debug!(
                %target,
                ip = %address.ip,
                not_after = %handshake.chain.leaf().not_after,
                verified = handshake.verification.verified,
                "probed"
            ),
            Err(error) => tracing::warn!(%target, ip = %address.ip, %error, "probe failed"),
        }
    }
}

/// Expands a file source and inspects each file; a pattern that matches nothing is one
/// failed report named after the pattern.
pub fn read_source(pattern: &str) -> Vec<FileReport> {
    match files::expand(pattern) {
        Ok(paths) => paths.iter().map(|path| files::inspect_file(path)).collect(),
        Err(error) => vec![FileReport {
            revocation: None,
            path: PathBuf::from(pattern),
            outcome: Err(error),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::resolve::Resolver;
    use crate::scan::trust::TrustCache;

    fn config(ports: &[u16]) -> Config {
        let text: String = ports
            .iter()
            .map(|port| format!("[[endpoint]]\ntarget = \"127.0.0.1:{port}\"\n"))
            .collect();
        crate::config::parse(&text, None).expect("test config")
    }

    #[tokio::test(start_paused = true)]
    async fn apply_keeps_unchanged_jobs_stops_removed_ones_and_starts_new_ones() {
        let state = Arc::new(State::new());
        let (mut scheduler, shutdown, tracker) = scheduler_with(state.clone());
        assert_eq!(scheduler.apply(&config(&[1, 2])), (2, 0));
        assert_eq!(scheduler.apply(&config(&[2, 3])), (1, 1));
        assert_eq!(scheduler.apply(&config(&[2, 3])), (0, 0));
        assert_eq!(scheduler.apply(&config(&[])), (0, 2));
        assert!(state.is_ready(), "no job left to wait for");
        // Cancelled before their first run, the jobs end without touching the network.
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    }

    #[tokio::test(start_paused = true)]
    async fn reapplying_a_hundred_thousand_endpoints_takes_linear_time() {
        let (mut scheduler, shutdown, tracker) = scheduler();
        let mut config = crate::config::default_config();
        config.endpoints = (0..100_000u32)
            .map(|i| {
                let target = format!("h{}.test:{}", i / 1000, 1 + i % 1000);
                Endpoint::new(target.parse().expect("target"), Duration::from_secs(5))
            })
            .collect();
        assert_eq!(scheduler.apply(&config), (100_000, 0));
        config.endpoints[0].interval = Duration::from_secs(60);
        // The clock is paused, so measure with the system's.
        let started = std::time::Instant::now();
        assert_eq!(scheduler.apply(&config), (1, 1));
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    }

    fn scheduler() -> (Scheduler, CancellationToken, TaskTracker) {
        scheduler_with(Arc::new(State::new()))
    }

    /// A scheduler over `state` with a system resolver and no trust roots; its jobs are
    /// cancelled by the returned token.
    fn scheduler_with(state: Arc<State>) -> (Scheduler, CancellationToken, TaskTracker) {
        let context = ProbeContext::new(
            Resolver::system(),
            TrustCache::empty(),
            crate::scan::budget::ConnectionBudget::new(64),
        );
        let environment = Arc::new(JobEnvironment {
            state,
            probe_context: RwLock::new(Arc::new(context)),
            permits: Semaphore::new(4),
        });
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let scheduler = Scheduler::new(environment, tracker.clone(), shutdown.clone());
        (scheduler, shutdown, tracker)
    }

    #[tokio::test(start_paused = true)]
    async fn a_share_runs_only_the_owned_endpoints_and_a_membership_change_moves_them() {
        let state = Arc::new(State::new());
        let (mut scheduler, shutdown, tracker) = scheduler_with(state.clone());
        let ports: Vec<u16> = (1..=30).collect();
        let config = config(&ports);
        let members: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
        let share = |me: &str, members: &[String]| Sharding::Share {
            me: me.to_owned(),
            members: members.to_vec(),
        };
        let owned_by = |me: &str, members: &[String]| {
            config
                .endpoints
                .iter()
                .filter(|endpoint| share(me, members).runs(endpoint))
                .count()
        };
        let a_of_three = owned_by("a", &members);
        assert_eq!(
            a_of_three + owned_by("b", &members) + owned_by("c", &members),
            30,
            "every endpoint has one owner"
        );
        scheduler.set_sharding(share("a", &members));
        assert_eq!(scheduler.apply(&config), (a_of_three, 0));
        assert_eq!(
            state.snapshot().cluster.map(|view| view.endpoints_owned),
            Some(a_of_three)
        );
        // c leaves: a takes over some of c's endpoints and keeps its own.
        let without_c = &members[..2];
        let a_of_two = owned_by("a", without_c);
        assert!(a_of_two > a_of_three, "a takes over part of c's share");
        scheduler.set_sharding(share("a", without_c));
        assert_eq!(scheduler.apply(&config), (a_of_two - a_of_three, 0));
        // c is back: what a took over stops again.
        scheduler.set_sharding(share("a", &members));
        assert_eq!(scheduler.apply(&config), (0, a_of_two - a_of_three));
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    }

    #[test]
    fn the_shard_key_is_the_target_and_the_sni_name_when_set() {
        let config = crate::config::parse(
            "[[endpoint]]\ntarget = \"a.test:443\"\n\n[[endpoint]]\ntarget = \"a.test:443\"\nsni = \"b.test\"\n",
            None,
        )
        .expect("test config");
        let keys: Vec<String> = config.endpoints.iter().map(shard_key).collect();
        assert_eq!(keys, ["a.test:443", "a.test:443#b.test"]);
    }

    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    #[test]
    fn first_runs_spread_over_at_most_one_second() {
        assert_eq!(first_delay(FIVE_MINUTES, 0.0), Duration::ZERO);
        assert_eq!(first_delay(FIVE_MINUTES, 0.5), Duration::from_millis(500));
        assert_eq!(first_delay(FIVE_MINUTES, 1.0), Duration::from_secs(1));
        assert_eq!(
            first_delay(Duration::from_millis(500), 0.5),
            Duration::from_millis(250)
        );
        assert_eq!(
            first_delay(FIVE_MINUTES, 7.0),
            Duration::from_secs(1),
            "clamped"
        );
    }

    #[test]
    fn next_run_stays_within_half_the_jitter_of_the_interval() {
        let now = Instant::now();
        assert_eq!(next_run(now, FIVE_MINUTES, 0.1, 0.5), now + FIVE_MINUTES);
        assert_eq!(
            next_run(now, FIVE_MINUTES, 0.1, 0.0),
            now + Duration::from_secs(285)
        );
        assert_eq!(
            next_run(now, FIVE_MINUTES, 0.1, 1.0),
            now + Duration::from_secs(315)
        );
        assert_eq!(next_run(now, FIVE_MINUTES, 0.0, 0.9), now + FIVE_MINUTES);
        assert_eq!(
            next_run(now, FIVE_MINUTES, 0.1, -3.0),
            now + Duration::from_secs(285)
        );
    }
}
