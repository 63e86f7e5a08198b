//! The renewer's side of ACME Renewal Information and profiles: asks the CA for the
//! current certificate's suggested window when a poll is due and persists the answer with
//! the jitter draw (the decision itself stays in `schedule::plan`), picks the `replaces`
//! identifier for a new order, refuses a profile the CA does not advertise, and reports
//! what it knows about the CA ([`CaFacts`]).

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::acme::{
    AcmeAccount, AcmeError, DirectoryFacts, ari_certificate_id, refresh_directory, renewal_info,
};
use crate::renew::decision::{PlanFacts, decide};
use crate::renew::lifecycle::Run;
use crate::renew::{RenewError, Renewer};
use crate::schedule::ari::SuggestedWindow;
use crate::schedule::ari::{AriAnswer, AriState, absorb};
use crate::schedule::history;
use crate::schedule::plan::Decision;
use crate::store::metadata::VersionMetadata;
use crate::store::{Step, StoreError};

/// What the renewer knows about its CA, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaFacts {
    /// Every profile a configured certificate asks for → whether the directory advertises
    /// it. Empty until the account has been loaded.
    pub profiles_available: BTreeMap<String, bool>,
    /// CA time minus local time in seconds, from the `Date` header of the CA's last answer.
    pub clock_skew: Option<f64>,
    /// Whether the directory advertises `renewalInfo` (ARI).
    pub ari_supported: bool,
}

impl Renewer {
    /// What the renewer knows about its CA, from the account's last directory fetch and
    /// response; the default (nothing known) before the account is loaded. Never does I/O.
    pub fn ca_facts(&self) -> CaFacts {
        let Some(account) = self.account.get() else {
            return CaFacts::default();
        };
        let directory = account.directory_facts();
        let profiles_available = self
            .certificates
            .iter()
            .filter_map(|certificate| certificate.profile.clone())
            .map(|profile| {
                let available = directory.profiles.contains_key(&profile);
                (profile, available)
            })
            .collect();
        CaFacts {
            profiles_available,
            clock_skew: account.clock_skew(),
            ari_supported: directory.renewal_info.is_some(),
        }
    }
}

impl Run<'_> {
    /// The renewal decision at `now`. Before deciding, the renewer draws (once per
    /// certificate) the jitter and, when a poll is due, asks the CA for renewal
    /// information; both are persisted in `schedule.json`.
    /// Returns the decision and the moment to look again (the next ARI poll may come
    /// before the renewal).
    pub(super) async fn decide_with_renewal_info(
        &self,
    ) -> Result<(Decision, OffsetDateTime), RenewError> {
        let name = &self.certificate.name;
        let facts = {
            let (store, name) = (self.store.clone(), name.clone());
            off_runtime(move || PlanFacts::read(&store, &name))
                .await
                .map_err(|e| self.store_error(e))?
        };
        let mut schedule = facts.schedule.clone();
        if let Some(meta) = &facts.current {
            schedule.jitter_for(&meta.serial, rand::random::<f64>());
            if let Some(ari) = self.poll_renewal_info(meta, schedule.ari.as_ref()).await {
                schedule.ari = ari;
            }
        }
        if schedule != facts.schedule {
            let path = self
                .store
                .schedule_path(name)
                .map_err(|e| self.store_error(e))?;
            let saved = schedule.clone();
            // The save fsyncs: keep it off the async workers.
            off_runtime(move || history::save(&path, &saved))
                .await
                .map_err(|e| self.store_error(e))?;
        }
        let facts = PlanFacts {
            current: facts.current,
            schedule,
        };
        let decision = decide(
            self.certificate,
            &facts,
            self.now,
            facts.stored_jitter(),
            self.renewer.backoff_base,
        );
        let ari = facts.current.as_ref().and_then(|meta| {
            facts
                .schedule
                .ari
                .as_ref()
                .filter(|a| a.is_for_serial(&meta.serial))
        });
        Ok((decision, next_check(&decision, ari)))
    }

    /// The new ARI state when the CA was asked (`Some(None)`: the CA does not offer ARI
    /// for this certificate), `None` when nothing changed. Errors become a state that asks
    /// again later; they never fail the renewal.
    async fn poll_renewal_info(
        &self,
        meta: &VersionMetadata,
        previous: Option<&AriState>,
    ) -> Option<Option<AriState>> {
        let acme = self.renewer.acme.as_ref()?;
        if meta.source != acme.directory {
            // Imported, or issued by another CA: this CA cannot know it.
            return previous.map(|_| None);
        }
        let cert_id = match self.current_ari_id_off_runtime(meta).await {
            Ok(cert_id) => cert_id,
            Err(error) => {
                tracing::warn!(%error, "no ARI identifier for the current certificate");
                return None;
            }
        };
        // RFC 9773 section 4.3: no renewal information about an expired certificate.
        if meta.not_after <= self.now || !AriState::poll_due(previous, &cert_id, self.now) {
            return None;
        }
        let account = match self.load_account().await {
            Ok(account) => account,
            Err(error) => {
                // Asked again in six hours rather than at the (maybe distant) renewal.
                tracing::warn!(%error, "cannot ask the CA for renewal information");
                let message = format!("cannot reach the ACME account: {error}");
                return Some(Some(absorb(
                    previous,
                    &cert_id,
                    Err(message),
                    self.now,
                    rand::random::<f64>(),
                )));
            }
        };
        if fresh_directory(&account).await.renewal_info.is_none() {
            return Some(None);
        }
        let fetched = renewal_info(&account, &cert_id).await;
        let explanation_url = fetched
            .as_ref()
            .ok()
            .and_then(|info| info.explanation_url.clone());
        let fetched = fetched
            .map(|info| AriAnswer {
                window: SuggestedWindow {
                    start: info.window_start,
                    end: info.window_end,
                },
                retry_after: info.retry_after,
            })
            .map_err(|error| error.to_string());
        let answered = fetched.is_ok();
        let mut state = absorb(previous, &cert_id, fetched, self.now, rand::random::<f64>());
        if answered {
            state.explanation_url = explanation_url;
        }
        tracing::info!(
            cert_id,
            window_start = ?state.window_start,
            window_end = ?state.window_end,
            renew_at = ?state.renew_at,
            next_poll = %state.next_poll,
            error = state.last_error.as_deref(),
            explanation_url = state.explanation_url.as_deref(),
            "renewal information"
        );
        Some(Some(state))
    }

    /// The ARI identifier of the current certificate to send as `replaces`, when the CA
    /// offers ARI and the certificate came from this account's CA.
    pub(super) fn replaces(&self, account: &AcmeAccount) -> Option<String> {
        // RFC 9773: no `replaces` to a CA that does not offer renewal information (nor
        // before the account handle knows it does: instant-acme would refuse the order).
        if !account.sends_replaces() {
            return None;
        }
        let name = &self.certificate.name;
        let version = self.store.current(name).ok()??;
        let meta = self.store.metadata(name, version).ok()?;
        if meta.source != account.directory() {
            tracing::info!(
                source = %meta.source,
                "the current certificate comes from another CA: no replaces"
            );
            return None;
        }
        match self.current_ari_id(&meta) {
            Ok(cert_id) => Some(cert_id),
            Err(error) => {
                tracing::warn!(%error, "ordering without replaces");
                None
            }
        }
    }

    /// Fails before any order when the certificate asks for a profile the CA's directory
    /// (fetched again, since a CA can withdraw one) does not advertise.
    pub(super) async fn check_profile(&self, account: &AcmeAccount) -> Result<(), RenewError> {
        let Some(profile) = &self.certificate.profile else {
            return Ok(());
        };
        let directory = fresh_directory(account).await;
        if directory.profiles.contains_key(profile) {
            return Ok(());
        }
        let error = RenewError::Acme {
            name: self.certificate.name.clone(),
            source: AcmeError::ProfileUnavailable {
                profile: profile.clone(),
                offered: directory.profiles.keys().cloned().collect(),
            },
        };
        self.record(Step::Order, None, None, Some(&error));
        Err(self.count_failure(error))
    }

    /// [`Self::current_ari_id`], reading the certificate file on a blocking thread.
    async fn current_ari_id_off_runtime(
        &self,
        meta: &VersionMetadata,
    ) -> Result<String, RenewError> {
        let name = &self.certificate.name;
        let files = self
            .store
            .files(name, meta.version)
            .map_err(|e| self.store_error(e))?;
        let path = files.cert.clone();
        let pem = off_runtime(move || {
            std::fs::read_to_string(&path).map_err(|e| StoreError::io("read", &path, e))
        })
        .await
        .map_err(|e| self.store_error(e))?;
        ari_certificate_id(&pem).map_err(|source| RenewError::Acme {
            name: name.clone(),
            source,
        })
    }

    fn current_ari_id(&self, meta: &VersionMetadata) -> Result<String, RenewError> {
        let name = &self.certificate.name;
        let files = self
            .store
            .files(name, meta.version)
            .map_err(|e| self.store_error(e))?;
        let pem = std::fs::read_to_string(&files.cert)
            .map_err(|e| self.store_error(StoreError::io("read", &files.cert, e)))?;
        ari_certificate_id(&pem).map_err(|source| RenewError::Acme {
            name: name.clone(),
            source,
        })
    }
}

/// Runs store work (reads, fsync'd writes) on a blocking thread, so a slow disk never
/// stalls the async workers. A panic inside is passed on.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(StoreError::io(
            "run store work",
            "",
            std::io::Error::other(error.to_string()),
        )),
    }
}

/// The directory as the CA serves it now, or as last seen when it cannot be fetched.
async fn fresh_directory(account: &AcmeAccount) -> DirectoryFacts {
    match refresh_directory(account).await {
        Ok(facts) => facts,
        Err(error) => {
            tracing::warn!(%error, "cannot fetch the directory again; using the last one");
            account.directory_facts()
        }
    }
}

/// The moment the renewer wants to look again: the planned renewal, or the next ARI poll
/// when that comes first.
fn next_check(decision: &Decision, ari: Option<&AriState>) -> OffsetDateTime {
    match ari {
        Some(ari) => decision.renew_at.min(ari.next_poll),
        None => decision.renew_at,
    }
}
