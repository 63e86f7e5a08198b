//! The CRL check of a managed certificate's current version: its leaf against the CRLs
//! it names, verified with the issuer from the stored chain, through the process's CRL
//! cache (one fetch per URL per interval, shared with the endpoint and file watch). The
//! verdict is persisted in the schedule state, where the pure planner reads it: a revoked
//! current certificate is due at once (`schedule::plan`, [`Reason::Revoked`]).
//!
//! [`Reason::Revoked`]: crate::schedule::plan::Reason::Revoked

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::renew::{LockError, RenewError, Renewer};
use crate::scan::crl::fetch::CrlFetcher;
use crate::scan::crl::verdict::CrlVerdict;
use crate::scan::crl::watch::{RevocationStatus, check_chain};
use crate::scan::files::read_der_chain;
use crate::schedule::history::{self as schedule_state, RevocationCheck};

/// What the CRL check of one certificate found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationOutcome {
    /// No current version, or its leaf names no `http://` distribution point.
    Unchecked,
    /// The current version with `serial` was checked (a verdict, or why there is none).
    Checked {
        /// The serial checked.
        serial: String,
        /// The verdict or the error, as the endpoint watch reports it.
        status: RevocationStatus,
    },
}

impl RevocationOutcome {
    /// The certificate was found revoked.
    pub fn is_revoked(&self) -> bool {
        matches!(
            self,
            RevocationOutcome::Checked {
                status: RevocationStatus {
                    outcome: Ok(CrlVerdict::Revoked { .. }),
                    ..
                },
                ..
            }
        )
    }
}

/// Checks the current version of `name` against its CRLs at `now` (reusing CRLs fetched
/// less than `interval` ago) and persists a verdict in its schedule state. An error (the
/// CRL cannot be fetched or trusted) is returned in the outcome and leaves the last
/// verdict as it was. The verdict is not persisted while a renewal of `name` holds its
/// lock: that renewal replaces the certificate anyway.
pub async fn check_revocation(
    renewer: Arc<Renewer>,
    name: &str,
    fetcher: &CrlFetcher,
    now: OffsetDateTime,
    interval: Duration,
) -> Result<RevocationOutcome, RenewError> {
    let read = {
        let (renewer, name) = (renewer.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || renewer.current_chain(&name))
    };
    let Some((serial, chain)) = read.await.map_err(|error| join_error(name, &error))?? else {
        return Ok(RevocationOutcome::Unchecked);
    };
    let Some(status) = check_chain(fetcher, &chain, now, interval).await else {
        return Ok(RevocationOutcome::Unchecked);
    };
    if let Some(check) = verdict_record(&serial, &status, now) {
        let revoked = check.revoked_at.is_some();
        if revoked {
            tracing::warn!(
                target: "certinel::crl",
                certificate = %name,
                %serial,
                url = %status.url,
                "the current certificate is revoked; renewing it at once"
            );
        }
        let save = {
            let (renewer, name) = (renewer.clone(), name.to_owned());
            tokio::task::spawn_blocking(move || renewer.save_revocation(&name, check))
        };
        save.await.map_err(|error| join_error(name, &error))??;
    }
    Ok(RevocationOutcome::Checked { serial, status })
}

/// The record a verdict leaves; `None` for an error, which is no verdict.
fn verdict_record(
    serial: &str,
    status: &RevocationStatus,
    now: OffsetDateTime,
) -> Option<RevocationCheck> {
    let (revoked_at, reason_code) = match status.outcome.as_ref().ok()? {
        CrlVerdict::Revoked {
            revoked_at,
            reason_code,
        } => (Some(*revoked_at), *reason_code),
        CrlVerdict::NotRevoked { .. } | CrlVerdict::Stale { .. } => (None, None),
    };
    Some(RevocationCheck {
        serial: serial.to_owned(),
        url: status.url.clone(),
        checked_at: now,
        revoked_at,
        reason_code,
    })
}

fn join_error(name: &str, error: &tokio::task::JoinError) -> RenewError {
    RenewError::Store {
        name: name.to_owned(),
        source: crate::store::StoreError::io(
            "read",
            std::path::Path::new(name),
            std::io::Error::other(error.to_string()),
        ),
    }
}

impl Renewer {
    /// The serial and DER chain (leaf first) of the current version of `name`, if any.
    fn current_chain(
        &self,
        name: &str,
    ) -> Result<Option<(String, Vec<rustls::pki_types::CertificateDer<'static>>)>, RenewError> {
        let Some(meta) = self.current_metadata(name)? else {
            return Ok(None);
        };
        let files = self
            .store
            .files(name, meta.version)
            .map_err(|source| RenewError::store(name, source))?;
        let chain = read_der_chain(&files.fullchain).map_err(|error| RenewError::Store {
            name: name.to_owned(),
            source: crate::store::StoreError::io(
                "read",
                &files.fullchain,
                std::io::Error::other(error.to_string()),
            ),
        })?;
        Ok(Some((meta.serial, chain)))
    }

    /// Persists `check` in the schedule state of `name`, unless a renewal holds its lock.
    fn save_revocation(&self, name: &str, check: RevocationCheck) -> Result<(), RenewError> {
        let _lock = match self.store.lock(name) {
            Ok(lock) => lock,
            Err(LockError::Held) => return Ok(()),
            Err(source) => {
                return Err(RenewError::Lock {
                    name: name.to_owned(),
                    source,
                });
            }
        };
        let store_error = |source| RenewError::store(name, source);
        let mut state = schedule_state::load_from(&*self.store, name).map_err(store_error)?;
        // The same verdict again writes nothing: the state keeps when it was first reached.
        if state
            .revocation
            .as_ref()
            .is_some_and(|previous| previous.same_verdict(&check))
        {
            return Ok(());
        }
        state.revocation = Some(check);
        schedule_state::save_to(&*self.store, name, &state).map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::scan::crl::watch::RevocationError;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn status(outcome: Result<CrlVerdict, RevocationError>) -> RevocationStatus {
        RevocationStatus {
            url: "http://crl.test/1.crl".into(),
            outcome,
        }
    }

    #[test]
    fn a_revoked_verdict_records_when_and_why() {
        let revoked = status(Ok(CrlVerdict::Revoked {
            revoked_at: NOW - time::Duration::hours(1),
            reason_code: Some(1),
        }));
        let check = verdict_record("0a", &revoked, NOW).unwrap();
        assert_eq!(check.revoked_at, Some(NOW - time::Duration::hours(1)));
        assert_eq!(check.reason_code, Some(1));
        assert_eq!(check.serial, "0a");
    }

    #[test]
    fn a_clean_or_stale_crl_records_not_revoked_and_an_error_records_nothing() {
        let clean = status(Ok(CrlVerdict::NotRevoked { next_update: None }));
        assert_eq!(verdict_record("0a", &clean, NOW).unwrap().revoked_at, None);
        let stale = status(Ok(CrlVerdict::Stale { next_update: NOW }));
        assert_eq!(verdict_record("0a", &stale, NOW).unwrap().revoked_at, None);
        let error = status(Err(RevocationError::NoIssuer));
        assert_eq!(verdict_record("0a", &error, NOW), None);
    }
}
