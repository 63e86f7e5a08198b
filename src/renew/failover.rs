//! Multi-CA failover: one renewer per configured CA (each with its own account), and the
//! attempt that walks a certificate's `ca` list in the order `ca_choice` decides.
//!
//! Each CA's renewer records its own directory as the `source` of the versions it issues,
//! and the renewal machine asks the CA for renewal information (ARI) and sends `replaces`
//! only when the current version's `source` is that renewer's directory, so neither ever
//! crosses CAs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tracing::Instrument;

use crate::acme::AcmeObserver;
use crate::config::model::{AcmeConfig, CertificateConfig, Config, DEFAULT_CA};
use crate::renew::ca_choice::{self, CaFailure};
use crate::renew::lifecycle::AccountCache;
use crate::renew::{RenewError, RenewOutcome, Renewer};
use crate::schedule::history as schedule_state;

/// One configured CA: its settings and its account, shared by every renewal that asks it.
struct NamedCa {
    settings: AcmeConfig,
    account: Arc<AccountCache>,
}

/// Every configured CA by name: `[acme]` as [`DEFAULT_CA`], then each `[ca.NAME]`.
#[derive(Default)]
pub(crate) struct Cas {
    by_name: BTreeMap<String, NamedCa>,
}

impl Cas {
    pub(crate) fn new(config: &Config) -> Cas {
        let by_name = config
            .acme
            .iter()
            .map(|acme| (DEFAULT_CA, acme))
            .chain(config.cas.iter().map(|(name, ca)| (name.as_str(), ca)))
            .map(|(name, settings)| {
                let ca = NamedCa {
                    settings: settings.clone(),
                    account: Arc::default(),
                };
                (name.to_owned(), ca)
            })
            .collect();
        Cas { by_name }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every configured CA name, [`DEFAULT_CA`] among them when `[acme]` is configured,
    /// in alphabetical order.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// The settings of the CA named `name`.
    pub(crate) fn settings(&self, name: &str) -> Option<&AcmeConfig> {
        self.by_name.get(name).map(|ca| &ca.settings)
    }

    /// The account cache of the CA named `name` (a fresh one for an unknown name).
    pub(crate) fn account(&self, name: &str) -> Arc<AccountCache> {
        self.by_name
            .get(name)
            .map(|ca| ca.account.clone())
            .unwrap_or_default()
    }

    /// The CA name whose directory is `source` (a version's metadata), if configured.
    pub(crate) fn name_of_source(&self, source: &str) -> Option<&str> {
        ca_choice::ca_of_source(
            self.by_name
                .iter()
                .map(|(name, ca)| (name.as_str(), ca.settings.directory.as_str())),
            source,
        )
    }
}

/// Reports each ACME request of a per-CA renewer with that CA's name (the `ca` label).
struct CaObserver {
    ca: String,
    inner: Arc<dyn AcmeObserver>,
}

impl AcmeObserver for CaObserver {
    fn request_done(&self, endpoint: &'static str, status: &str, elapsed: Duration) {
        self.inner
            .request_done_at(&self.ca, endpoint, status, elapsed);
    }

    fn request_done_at(&self, ca: &str, endpoint: &'static str, status: &str, elapsed: Duration) {
        self.inner.request_done_at(ca, endpoint, status, elapsed);
    }

    fn order_slots_changed(&self, ca: &str, in_flight: usize, waiting: usize) {
        self.inner.order_slots_changed(ca, in_flight, waiting);
    }
}

impl Renewer {
    /// The same renewer, talking to the CA named `name` with that CA's account.
    pub(super) fn at_ca(&self, name: &str) -> Option<Renewer> {
        let ca = self.cas.by_name.get(name)?;
        Some(Renewer {
            store: self.store.clone(),
            accounts: self.accounts.clone(),
            acme: Some(ca.settings.clone()),
            certificates: self.certificates.clone(),
            scanner: self.scanner.clone(),
            observer: Arc::new(CaObserver {
                ca: name.to_owned(),
                inner: self.observer.clone(),
            }),
            retry: self.retry,
            backoff_base: self.backoff_base,
            dry_run: self.dry_run,
            account: ca.account.clone(),
            clock: self.clock.clone(),
            random: self.random.clone(),
            cas: self.cas.clone(),
            fleet: self.fleet.clone(),
            ca_name: name.to_owned(),
            orders: self.orders.clone(),
        })
    }

    /// One renewal of a certificate that lists several CAs, the lock held: the CAs in the
    /// order `ca_choice::attempt_order` gives; a CA that cannot serve hands over to the
    /// next at once, any other outcome ends the attempt and updates the per-CA counts.
    /// Also returns the CA asked last.
    pub(super) async fn run_with_failover(
        &self,
        certificate: &CertificateConfig,
        force: bool,
        now: OffsetDateTime,
    ) -> (Result<RenewOutcome, RenewError>, String) {
        let mut asked = certificate
            .ca
            .first()
            .cloned()
            .unwrap_or_else(|| self.ca_name.clone());
        let result = self.walk_cas(certificate, force, now, &mut asked).await;
        (result, asked)
    }

    /// [`run_with_failover`](Self::run_with_failover), keeping in `asked` the CA asked
    /// last.
    async fn walk_cas(
        &self,
        certificate: &CertificateConfig,
        force: bool,
        now: OffsetDateTime,
        asked: &mut String,
    ) -> Result<RenewOutcome, RenewError> {
        let name = &certificate.name;
        let state =
            schedule_state::load_from(&*self.store, name).map_err(|source| RenewError::Store {
                name: name.clone(),
                source,
            })?;
        let mut order = ca_choice::attempt_order(
            &certificate.ca,
            &state.ca_failures,
            certificate.ca_failover_after,
        );
        let recorded_order = self
            .store
            .inflight(name)
            .map_err(|source| RenewError::Store {
                name: name.clone(),
                source,
            })?
            .and_then(|inflight| inflight.order_url);
        if let Some(order_url) = recorded_order {
            let directories = self
                .cas
                .by_name
                .iter()
                .map(|(ca, settings)| (ca.as_str(), settings.settings.directory.as_str()));
            order = ca_choice::resume_first(order, directories, &order_url);
        }
        // The CA that issued the current certificate decides whether it is due: only it is
        // asked for renewal information (ARI). The order then follows the list.
        let issuer = self.issuing_ca(name)?;
        let elsewhere = issuer
            .as_ref()
            .filter(|issuer| order.first() != Some(*issuer));
        if let Some(issuer) = elsewhere.filter(|_| !force) {
            if let Some(renewer) = self.at_ca(issuer) {
                asked.clone_from(issuer);
                let planned = crate::renew::lifecycle::Run::open(&renewer, certificate, now)?
                    .plan_until_due()
                    .instrument(tracing::info_span!("ca", ca = %issuer))
                    .await?;
                if let Some(outcome) = planned {
                    return Ok(outcome);
                }
            }
        }
        // Due (the issuing CA's renewer decided it, or the first CA's will).
        let mut force = force || elsewhere.is_some();
        let mut result = Err(RenewError::NoAcme);
        for (index, ca) in order.iter().enumerate() {
            let Some(renewer) = self.at_ca(ca) else {
                // Validation only accepts configured names.
                continue;
            };
            tracing::info!(certificate = %name, ca = %ca, "asking this CA");
            asked.clone_from(ca);
            result = renewer
                .run_at_ca(certificate, force, now)
                .instrument(tracing::info_span!("ca", ca = %ca))
                .await;
            let failure = match &result {
                Ok(RenewOutcome::Renewed { .. }) => None,
                Ok(_) => return result,
                Err(error @ RenewError::Acme { .. }) => {
                    Some(ca_choice::classify(error.stage(), error.problem()))
                }
                // Not the CA's doing (state, lock, deploy, the CA gate): no failover.
                Err(_) => return result,
            };
            self.save_ca_failures(name, ca, failure);
            let Some(next) = order.get(index + 1) else {
                return result;
            };
            if failure != Some(CaFailure::HandOver) {
                return result;
            }
            if let Err(error) = &result {
                tracing::warn!(
                    certificate = %name,
                    from = %ca,
                    to = %next,
                    problem = error.problem(),
                    "the CA cannot serve now; handing over to the next CA"
                );
            }
            self.forget_ca_attempt(name);
            // The renewal was due a moment ago; the failure just counted started a backoff
            // that belongs to the CA handed away from.
            force = true;
        }
        result
    }

    /// The configured CA whose directory issued the current version, if any.
    pub(super) fn issuing_ca(&self, name: &str) -> Result<Option<String>, RenewError> {
        Ok(self
            .current_metadata(name)?
            .and_then(|meta| self.cas.name_of_source(&meta.source).map(str::to_owned)))
    }

    /// Records the outcome of an attempt at `ca` in the per-CA failure counts.
    fn save_ca_failures(&self, name: &str, ca: &str, failure: Option<CaFailure>) {
        let saved = schedule_state::load_from(&*self.store, name).and_then(|mut state| {
            let failures = std::mem::take(&mut state.ca_failures);
            state.ca_failures = ca_choice::after_attempt(failures, ca, failure);
            schedule_state::save_to(&*self.store, name, &state)
        });
        if let Err(error) = saved {
            tracing::warn!(certificate = %name, %error, "cannot record the CA's failure count");
        }
    }

    /// Before handing over: drops the order kept in flight at the CA handed away from (its
    /// URL means nothing to the next CA) and that CA's Retry-After, which only gates it.
    fn forget_ca_attempt(&self, name: &str) {
        match self.store.inflight(name) {
            Ok(Some(inflight)) if inflight.version.is_none() => {
                if let Err(error) = self.store.finish(name) {
                    tracing::warn!(certificate = %name, %error, "cannot drop the kept order");
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(certificate = %name, %error, "cannot read the in-flight record");
            }
        }
        let saved = schedule_state::load_from(&*self.store, name).and_then(|mut state| {
            state.retry_after = None;
            schedule_state::save_to(&*self.store, name, &state)
        });
        if let Err(error) = saved {
            tracing::warn!(certificate = %name, %error, "cannot clear the CA's Retry-After");
        }
    }
}
