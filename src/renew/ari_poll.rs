//! The renewer's side of ACME Renewal Information and profiles: reads the current
//! certificate's ARI identifier, asks the CA for its suggested window and persists the
//! state (when to ask, and what the answer means, are `next_action`'s decisions), picks the
//! `replaces` identifier for a new order, refuses a profile the CA does not advertise, and
//! reports what it knows about the CA ([`CaFacts`]).

use std::collections::BTreeMap;

use crate::acme::{
    AcmeAccount, AcmeError, DirectoryFacts, ari_certificate_id, refresh_directory, renewal_info,
};
use crate::renew::lifecycle::{AccountCache, Run};
use crate::renew::next_action::Event;
use crate::renew::{RenewError, Renewer};
use crate::schedule::ari::{AriAnswer, AriFetchError, AriState, SuggestedWindow};
use crate::store::StoreError;
use crate::store::metadata::VersionMetadata;

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
        facts_of(self, &self.account)
    }

    /// What the renewer knows about the CA certificate `name` is renewed with: the CA
    /// that issued its current version (`issued_by`, as its status names it), else the
    /// first CA of its `ca` list; `[acme]` for a certificate that lists none configured.
    /// Never does I/O.
    pub fn ca_facts_of(&self, name: &str, issued_by: Option<&str>) -> CaFacts {
        let listed_first = self
            .certificate(name)
            .ok()
            .and_then(|certificate| certificate.ca.first())
            .map(String::as_str);
        let ca = issued_by
            .or(listed_first)
            .filter(|ca| self.cas.settings(ca).is_some());
        match ca {
            Some(ca) => facts_of(self, &self.cas.account(ca)),
            None => self.ca_facts(),
        }
    }
}

/// What `account`'s last directory fetch and response say, for `renewer`'s certificates.
fn facts_of(renewer: &Renewer, account: &AccountCache) -> CaFacts {
    let Some(account) = account.get() else {
        return CaFacts::default();
    };
    let directory = account.directory_facts();
    let profiles_available = renewer
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

impl Run<'_> {
    /// Asks the CA for renewal information about `cert_id`. Every failure is an answer
    /// (`Err` with why), so the state machine asks again later; none fails the renewal.
    pub(super) async fn ask_renewal_info(&self, cert_id: &str) -> Event {
        let account = match self.load_account().await {
            Ok(account) => account,
            Err(error) => {
                // Asked again in six hours rather than at the (maybe distant) renewal.
                tracing::warn!(%error, "cannot ask the CA for renewal information");
                return Event::RenewalInfo {
                    cert_id: cert_id.to_owned(),
                    answer: Err(AriFetchError::Account(error.to_string())),
                    explanation_url: None,
                };
            }
        };
        if fresh_directory(&account).await.renewal_info.is_none() {
            return Event::RenewalInfoUnsupported;
        }
        let fetched = renewal_info(&account, cert_id).await;
        let explanation_url = fetched
            .as_ref()
            .ok()
            .and_then(|info| info.explanation_url.clone());
        let answer = fetched
            .map(|info| AriAnswer {
                window: SuggestedWindow {
                    start: info.window_start,
                    end: info.window_end,
                },
                retry_after: info.retry_after,
            })
            .map_err(|error| AriFetchError::Request(error.to_string()));
        Event::RenewalInfo {
            cert_id: cert_id.to_owned(),
            answer,
            explanation_url,
        }
    }

    /// Persists `state` as the certificate's renewal information state.
    pub(super) fn save_renewal_info(&self, state: Option<AriState>) -> Result<(), RenewError> {
        if let Some(state) = &state {
            tracing::info!(
                cert_id = state.cert_id,
                window_start = ?state.window_start,
                window_end = ?state.window_end,
                renew_at = ?state.renew_at,
                next_poll = %state.next_poll,
                error = state.last_error.as_deref(),
                explanation_url = state.explanation_url.as_deref(),
                "renewal information"
            );
        }
        self.update_schedule(|schedule, _| schedule.ari = state)
            .map_err(|e| self.store_error(e))
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

    /// Why no order may be placed, when the certificate asks for a profile the CA's
    /// directory (fetched again, since a CA can withdraw one) does not advertise.
    pub(super) async fn profile_unavailable(&self, account: &AcmeAccount) -> Option<RenewError> {
        let profile = self.certificate.profile.as_ref()?;
        let directory = fresh_directory(account).await;
        if directory.profiles.contains_key(profile) {
            return None;
        }
        Some(RenewError::Acme {
            name: self.certificate.name.clone(),
            source: AcmeError::ProfileUnavailable {
                profile: profile.clone(),
                offered: directory.profiles.keys().cloned().collect(),
            },
        })
    }

    /// The ARI identifier of the current certificate `meta` describes.
    pub(super) fn current_ari_id(&self, meta: &VersionMetadata) -> Result<String, RenewError> {
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
