//! What the renewal driver reads from the store before each decision (the store's view,
//! every version's metadata, the plan's facts, the current certificate's ARI identifier),
//! and the wake-up computed from it once a renewal has ended.

use time::OffsetDateTime;

use super::Run;
use crate::config::model::CertificateConfig;
use crate::renew::decision::PlanFacts;
use crate::renew::next_action::{Observed, next_wake_up};
use crate::renew::{RenewError, Renewer};
use crate::store::{DiskState, Store, StoreError, VersionMetadata};

/// What the driver read from the store for one decision.
pub(super) struct Snapshot {
    disk: DiskState,
    versions: Vec<VersionMetadata>,
    plan: PlanFacts,
    /// The current certificate's ARI identifier, read when it came from the configured CA.
    current_ari_id: Option<String>,
}

impl Snapshot {
    fn read(store: &dyn Store, name: &str) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            disk: store.disk_state(name)?,
            versions: store.versions(name)?,
            plan: PlanFacts::read(store, name)?,
            current_ari_id: None,
        })
    }
}

/// When `renewer` should look at `certificate` again at `now`, from the store as the last
/// renewal left it: the planned renewal (the backoff after a failure) or the next ARI poll.
pub(crate) fn wake_up(
    renewer: &Renewer,
    certificate: &CertificateConfig,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, StoreError> {
    let snapshot = Snapshot::read(&*renewer.store, &certificate.name)?;
    Ok(next_wake_up(&Observed {
        certificate,
        disk: &snapshot.disk,
        versions: &snapshot.versions,
        plan: &snapshot.plan,
        force: false,
        directory: renewer.acme.as_ref().map(|acme| acme.directory.as_str()),
        current_ari_id: None,
        backoff_base: renewer.backoff_base,
        now,
        // Planning draws nothing: the jitter is the one persisted.
        draw: 0.0,
    }))
}

impl Run<'_> {
    /// Reads the certificate's state from the store.
    pub(super) fn observe(&self) -> Result<Snapshot, RenewError> {
        let mut snapshot =
            Snapshot::read(&*self.store, self.name()).map_err(|e| self.store_error(e))?;
        let directory = self.renewer.acme.as_ref().map(|acme| &acme.directory);
        if let Some(meta) = &snapshot.plan.current
            && Some(&meta.source) == directory
        {
            match self.current_ari_id(meta) {
                Ok(cert_id) => snapshot.current_ari_id = Some(cert_id),
                Err(error) => {
                    tracing::warn!(%error, "no ARI identifier for the current certificate");
                }
            }
        }
        Ok(snapshot)
    }

    pub(super) fn observed<'s>(
        &'s self,
        snapshot: &'s Snapshot,
        force: bool,
        now: OffsetDateTime,
    ) -> Observed<'s> {
        Observed {
            certificate: self.certificate,
            disk: &snapshot.disk,
            versions: &snapshot.versions,
            plan: &snapshot.plan,
            force,
            directory: self
                .renewer
                .acme
                .as_ref()
                .map(|acme| acme.directory.as_str()),
            current_ari_id: snapshot.current_ari_id.as_deref(),
            backoff_base: self.renewer.backoff_base,
            now,
            draw: self.renewer.random.draw(),
        }
    }
}
