//! The renewer: the only module that uses `acme`, `store` and `schedule` together.
//!
//! One renewal of one certificate is a staged lifecycle, each stage persisted by the store
//! before the next begins, so a crash anywhere resumes instead of ordering twice. The
//! sequence is decided by a pure state machine (`next_action`: observed state and the last
//! action's result in, next action out) and performed by its driver
//! (`lifecycle/driver.rs`); [`Renewer::attempt`] also says when to look again:
//!
//! ```text
//!   recover in-flight record (store::recover)
//!     ─► ask the CA for renewal information when a poll is due (ARI, persisted)
//!     ─► plan (schedule::plan; skipped with --force)   NotDue is an outcome, not an error
//!     ─► check the profile is advertised
//!     ─► begin ─► place order, record its URL ─► complete order (acme)
//!     ─► stage_pending (pending) ─► promote + deploy commands (deployed)
//!     ─► served check of `verify` endpoints (rollout_check.rs) ─► check_version (verified)
//!     ─► finish + prune (current)
//! ```
//!
//! A failing deploy command or verification rolls `current` back to `previous`, re-runs the
//! deploy commands for the restored version and counts as a failed renewal. A failed served
//! check does the same unless `on_verify_failure = "keep"`, which keeps the new version
//! but still counts the failure. Every step and
//! rollback is one audit line; every failure updates the persisted schedule state. A first
//! version whose rollout failed stays current and is retried after the backoff.
//!
//! A version whose rollout alone failed (a deploy command or the served check, not the files
//! check) is parked (`VersionState::Parked`): while it is unexpired and matches the
//! configuration, the next due attempt rolls it out again (`lifecycle/reroll.rs`) instead of
//! placing a new order, which would spend the CA's duplicate-certificate limit.
//!
//! `--force` skips the renewal window and the backoff, never the CA's Retry-After or its
//! failed-authorization limit (`schedule::plan::ca_gate`). When the CA answers
//! `accountDoesNotExist`, a new account is registered and the renewal retried once.
//!
//! **Invariant:** the renewer never writes certificate files itself; `store` does.

mod account_admin;
mod ari_poll;
mod ca_choice;
mod clock;
mod decision;
mod deploy;
mod dry_run;
mod error;
mod failover;
pub mod fleet;
mod follow;
mod hook_group;
mod lifecycle;
mod next_action;
mod random;
mod revocation;
mod revoke;
pub mod rollout_check;
mod status;

use std::sync::Arc;

use time::OffsetDateTime;
use tracing::Instrument;

use crate::acme::{AcmeObserver, NoopObserver, OrderLimits, RetryPolicy};
use crate::config::model::{AcmeConfig, CertificateConfig, Config, ScannerSettings};
use crate::schedule::plan::Reason;
use crate::store::{AccountStore, FsStore, Store, VersionId, VersionMetadata};
use dry_run::Scratch;

pub use crate::hook::HookError;
pub use crate::store::lock::{LockError, RenewalLock};
pub use account_admin::AccountAdminError;
pub use ari_poll::CaFacts;
pub use clock::{Clock, SystemClock};
pub use dry_run::{
    DryRunDirectory, LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING, dry_run_directory,
};
pub use error::RenewError;
pub use random::{RandomSource, ThreadRandom};
pub use revocation::{RevocationOutcome, check_revocation};
pub use revoke::RevokeOutcome;
pub use status::{CertificateStatus, LastOutcome};

/// How to run one renewal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenewOptions {
    /// Renew even when the renewal window has not opened (and through a backoff).
    pub force: bool,
    /// Renew into a scratch state directory (against [`dry_run_directory`]), running the
    /// deploy commands with `CERTINEL_DRY_RUN=1`; the real state is untouched but for the
    /// dry-run ACME accounts kept in `state_dir/dry-run/accounts/`.
    pub dry_run: bool,
}

/// How a renewal ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewOutcome {
    /// A new version is live (or was, in the scratch directory of a dry run).
    Renewed {
        /// The new version.
        version: VersionId,
        /// Its serial number, lowercase hex.
        serial: String,
        /// Its expiry.
        not_after: OffsetDateTime,
        /// Whether this was a dry run.
        dry_run: bool,
    },
    /// Nothing to do yet.
    NotDue {
        /// When the renewal is planned.
        renew_at: OffsetDateTime,
        /// Why then.
        reason: Reason,
        /// When to call [`Renewer::renew`] again: `renew_at`, or the next poll of the CA's
        /// renewal information when that comes first.
        next_check: OffsetDateTime,
    },
}

/// One renewal attempt and when to make the next.
#[derive(Debug)]
pub struct Attempt {
    /// How the renewal ended.
    pub result: Result<RenewOutcome, RenewError>,
    /// When to look at the certificate again: the planned renewal (after a failure, the
    /// backoff) or the next poll of the CA's renewal information, whichever comes first.
    /// `None` after a dry run, or when the state could not be read.
    pub next_check: Option<OffsetDateTime>,
    /// The configured CA the attempt asked last (`acme` or a `[ca.NAME]`), whose failure
    /// it is when it failed (the `ca` label of the failure metrics). `None` after a dry
    /// run.
    pub ca: Option<String>,
}

impl Attempt {
    fn without_wake_up(result: Result<RenewOutcome, RenewError>) -> Attempt {
        Attempt {
            result,
            next_check: None,
            ca: None,
        }
    }
}

/// What `rollback` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackOutcome {
    /// The version that was current before.
    pub from: Option<VersionId>,
    /// The version current now.
    pub to: VersionId,
}

/// Renews the configured certificates. Cheap to build; the ACME account is loaded (or
/// created) on first use and reused afterwards.
pub struct Renewer {
    /// Where every piece of state lives.
    store: Arc<dyn Store>,
    /// Where ACME account credentials live: the store's accounts, or for a dry run the
    /// store's dry-run accounts.
    accounts: Arc<dyn AccountStore>,
    acme: Option<AcmeConfig>,
    certificates: Vec<CertificateConfig>,
    scanner: ScannerSettings,
    observer: Arc<dyn AcmeObserver>,
    retry: RetryPolicy,
    backoff_base: time::Duration,
    dry_run: bool,
    /// The account of the CA this renewer talks to (`acme`), shared with every renewer
    /// built for that CA.
    account: Arc<lifecycle::AccountCache>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
    /// Every configured CA by name (`[acme]` as `"acme"`), for certificates that list
    /// several (`failover.rs`).
    cas: Arc<failover::Cas>,
    /// With `[cluster]`: the other replicas, whose rollout reports a renewal waits for.
    fleet: Option<Arc<fleet::Fleet>>,
    /// The name of the CA this renewer talks to (`acme` unless built by `at_ca`).
    ca_name: String,
    /// The order slots of every CA directory, shared with every renewer of the process
    /// that was given the same limits ([`with_order_limits`](Self::with_order_limits)).
    orders: OrderLimits,
}

impl Renewer {
    /// A renewer for the certificates of `config`, keeping state in `config.state_dir`.
    pub fn new(config: &Config) -> Renewer {
        let files = FsStore::new(&config.state_dir);
        let cas = failover::Cas::new(config);
        Renewer {
            accounts: files.accounts(),
            store: Arc::new(files),
            acme: config.acme.clone(),
            certificates: config.certificates.clone(),
            scanner: config.scanner.clone(),
            observer: Arc::new(NoopObserver),
            retry: RetryPolicy::default(),
            backoff_base: crate::schedule::plan::BACKOFF_BASE,
            dry_run: false,
            account: cas.account(crate::config::model::DEFAULT_CA),
            clock: Arc::new(SystemClock),
            random: Arc::new(ThreadRandom),
            cas: Arc::new(cas),
            fleet: None,
            ca_name: crate::config::model::DEFAULT_CA.to_owned(),
            orders: OrderLimits::default(),
        }
    }

    /// Reads the moment of each renewal step (audit lines, failure records) from `clock`
    /// instead of the system clock. Each step is stamped with the `now` given to
    /// [`renew`](Self::renew) plus the time `clock` says passed since the renewal began.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Renewer {
        self.clock = clock;
        self
    }

    /// Keeps state in `store` instead of the configured state directory's files, ACME
    /// account credentials included.
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Renewer {
        self.accounts = store.accounts();
        self.store = store;
        self
    }

    /// Rolls every renewal out across `fleet`: after its own deploy and `verify` checks, a
    /// renewal waits (up to `verify_timeout`) for every other live replica's report.
    pub fn with_fleet(mut self, fleet: Arc<fleet::Fleet>) -> Renewer {
        self.fleet = Some(fleet);
        self
    }

    /// Whether this renewer belongs to a fleet, whose renewals it must also roll out
    /// ([`follow`](Self::follow)).
    pub fn follows(&self) -> bool {
        self.fleet.is_some()
    }

    /// Draws the jitter and the moment inside a suggested renewal window from `random`
    /// instead of the thread's random generator.
    pub fn with_random(mut self, random: Arc<dyn RandomSource>) -> Renewer {
        self.random = random;
        self
    }

    /// Caps concurrent orders with `limits`, which the service shares between the renewers
    /// of every configuration generation so that a reload never doubles the cap.
    pub fn with_order_limits(mut self, limits: OrderLimits) -> Renewer {
        self.orders = limits;
        self
    }

    /// Reports every ACME request to `observer` (the metrics exporter, tests).
    pub fn with_observer(mut self, observer: Arc<dyn AcmeObserver>) -> Renewer {
        self.observer = observer;
        self
    }

    /// Retries failed ACME requests with `retry` instead of the default policy.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Renewer {
        self.retry = retry;
        self
    }

    /// Waits `base` (instead of 5 minutes) before the first retry after a failed renewal,
    /// doubling per further failure up to 24 hours. For tests and small private CAs: against
    /// a public CA the default keeps certinel inside its rate limits.
    pub fn with_backoff_base(mut self, base: std::time::Duration) -> Renewer {
        self.backoff_base = time::Duration::try_from(base).unwrap_or(time::Duration::MAX);
        self
    }

    /// The first retry delay after a failed renewal.
    pub fn backoff_base(&self) -> std::time::Duration {
        self.backoff_base.unsigned_abs()
    }

    /// The current time, from the renewer's clock.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The configured certificate names, in configuration order.
    pub fn names(&self) -> Vec<String> {
        self.certificates.iter().map(|c| c.name.clone()).collect()
    }

    /// The ACME profile the certificate `name` asks for, if any.
    pub fn profile(&self, name: &str) -> Option<&str> {
        self.certificate(name).ok()?.profile.as_deref()
    }

    /// Renews `name` if it is due (or forced), resuming an interrupted renewal first.
    /// `now` decides what is due; the CA's clock decides validity.
    pub async fn renew(
        &self,
        name: &str,
        options: RenewOptions,
        now: OffsetDateTime,
    ) -> Result<RenewOutcome, RenewError> {
        self.attempt(name, options, now).await.result
    }

    /// [`renew`](Self::renew), and when to call it again, so a scheduler never decides a
    /// second time.
    pub async fn attempt(&self, name: &str, options: RenewOptions, now: OffsetDateTime) -> Attempt {
        let certificate = match self.certificate(name) {
            Ok(certificate) => certificate,
            Err(error) => return Attempt::without_wake_up(Err(error)),
        };
        let span = tracing::info_span!("renew", certificate = %name, dry_run = options.dry_run);
        if !options.dry_run {
            let started = self.clock.now();
            let (result, ca) = self
                .run(certificate, options.force, now)
                .instrument(span)
                .await;
            let next_check = match &result {
                Ok(RenewOutcome::NotDue { next_check, .. }) => Some(*next_check),
                // After a renewal, a failure, or another process's: from the store as it was
                // left, at the moment the renewal ended.
                _ => {
                    let ended = now + (self.clock.now() - started).max(time::Duration::ZERO);
                    lifecycle::wake_up(self, certificate, ended).ok()
                }
            };
            return Attempt {
                result,
                next_check,
                ca: Some(ca),
            };
        }
        Attempt::without_wake_up(self.dry_run(certificate, now).instrument(span).await)
    }

    async fn dry_run(
        &self,
        certificate: &CertificateConfig,
        now: OffsetDateTime,
    ) -> Result<RenewOutcome, RenewError> {
        // A dry run asks the certificate's first CA.
        let acme = certificate
            .ca
            .first()
            .and_then(|name| self.cas.settings(name))
            .or(self.acme.as_ref())
            .ok_or(RenewError::NoAcme)?;
        let directory = dry_run_directory(acme);
        match directory {
            DryRunDirectory::Configured(url) => {
                tracing::info!(directory = url, "dry run against acme.dry_run_directory");
            }
            DryRunDirectory::Staging(url) => tracing::info!(
                directory = url,
                "dry run against Let's Encrypt staging instead of production"
            ),
            DryRunDirectory::Main(url) => tracing::info!(
                directory = url,
                "acme.dry_run_directory is unset: the dry run talks to the configured \
                 directory and counts against its limits"
            ),
        }
        let scratch = Scratch::create().map_err(RenewError::Scratch)?;
        let scratch_renewer = Renewer {
            store: Arc::new(FsStore::new(&scratch.path)),
            accounts: self.store.dry_run_accounts(),
            acme: Some(AcmeConfig {
                directory: directory.url().to_owned(),
                ..acme.clone()
            }),
            certificates: vec![certificate.clone()],
            scanner: self.scanner.clone(),
            observer: self.observer.clone(),
            retry: self.retry,
            backoff_base: self.backoff_base,
            dry_run: true,
            account: Arc::default(),
            clock: self.clock.clone(),
            random: self.random.clone(),
            cas: Arc::new(failover::Cas::default()),
            // A dry run's certificate is never rolled out to the fleet.
            fleet: None,
            ca_name: self.ca_name.clone(),
            orders: self.orders.clone(),
        };
        // A scratch directory holds nothing yet: the renewal is always due.
        scratch_renewer.run(certificate, true, now).await.0
    }

    /// Renews every configured certificate that is due, one after the other; one failure
    /// does not stop the others.
    pub async fn renew_all(
        &self,
        options: RenewOptions,
        now: OffsetDateTime,
    ) -> Vec<(String, Result<RenewOutcome, RenewError>)> {
        let mut results = Vec::with_capacity(self.certificates.len());
        for certificate in &self.certificates {
            let result = self.renew(&certificate.name, options, now).await;
            results.push((certificate.name.clone(), result));
        }
        results
    }

    /// Makes `previous` current again (audited) and runs the deploy commands for it.
    pub async fn rollback(
        &self,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<RollbackOutcome, RenewError> {
        let certificate = self.certificate(name)?;
        let span = tracing::info_span!("rollback", certificate = %name);
        let _lock = self.lock(name)?;
        lifecycle::Run::open(self, certificate, now)?
            .manual_rollback()
            .instrument(span)
            .await
    }

    fn certificate(&self, name: &str) -> Result<&CertificateConfig, RenewError> {
        self.certificates
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| RenewError::UnknownCertificate(name.to_owned()))
    }

    /// The metadata of the current version of `name`, if there is one.
    fn current_metadata(&self, name: &str) -> Result<Option<VersionMetadata>, RenewError> {
        let store_error = |source| RenewError::store(name, source);
        match self.store.current(name).map_err(store_error)? {
            Some(current) => self
                .store
                .metadata(name, current)
                .map(Some)
                .map_err(store_error),
            None => Ok(None),
        }
    }

    fn lock(&self, name: &str) -> Result<RenewalLock, RenewError> {
        self.store.lock(name).map_err(|source| RenewError::Lock {
            name: name.to_owned(),
            source,
        })
    }

    /// One renewal, and the CA it asked last.
    async fn run(
        &self,
        certificate: &CertificateConfig,
        force: bool,
        now: OffsetDateTime,
    ) -> (Result<RenewOutcome, RenewError>, String) {
        // Held until the renewal ends, recovery of an interrupted one included.
        let _lock = match self.lock(&certificate.name) {
            Ok(lock) => lock,
            Err(error) => return (Err(error), self.ca_name.clone()),
        };
        if self.cas.is_empty() || certificate.ca == [crate::config::model::DEFAULT_CA] {
            let result = self.run_at_ca(certificate, force, now).await;
            return (result, self.ca_name.clone());
        }
        self.run_with_failover(certificate, force, now).await
    }

    /// One renewal at the CA this renewer talks to, the lock held.
    async fn run_at_ca(
        &self,
        certificate: &CertificateConfig,
        force: bool,
        now: OffsetDateTime,
    ) -> Result<RenewOutcome, RenewError> {
        let first = lifecycle::Run::open(self, certificate, now)?
            .renew(force)
            .await;
        match first {
            Err(error) if error.is_account_gone() => {
                // The CA forgot the account (a reset CA, a restarted Pebble): register a new
                // one and try once more. The renewal was due a moment ago, so the retry
                // skips the renewal window and the backoff the failure just started.
                let run = lifecycle::Run::open(self, certificate, now)?;
                run.reregister(&error).await?;
                lifecycle::Run::open(self, certificate, now)?
                    .renew(true)
                    .await
            }
            other => other,
        }
    }
}
