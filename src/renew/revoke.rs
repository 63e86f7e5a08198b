//! `Renewer::revoke`: revoke the current certificate at the CA, audit it, and issue a
//! replacement with a new key at once.

use time::OffsetDateTime;
use tracing::Instrument;

use crate::acme::{RevocationReason, revoke};
use crate::renew::lifecycle::Run;
use crate::renew::{RenewError, RenewOptions, RenewOutcome, Renewer};
use crate::store::{Step, StoreError, VersionState};

/// What `revoke` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeOutcome {
    /// The serial of the revoked certificate (lowercase hex).
    pub revoked_serial: String,
    /// The forced renewal that replaced it (always with a newly generated key).
    pub replacement: RenewOutcome,
}

impl Renewer {
    /// Revokes the current version of `name` for `reason` (audited as `revoke`), then
    /// renews at once; every issuance generates a new key, so the replacement never reuses
    /// the revoked one. A failed revocation stops before renewing. When the CA's limits
    /// (Retry-After, failed authorizations) would refuse the replacement, nothing is
    /// revoked: a revoked certificate without a replacement is an outage.
    pub async fn revoke(
        &self,
        name: &str,
        reason: RevocationReason,
        now: OffsetDateTime,
    ) -> Result<RevokeOutcome, RenewError> {
        let certificate = self.certificate(name)?;
        let span = tracing::info_span!("revoke", certificate = %name, %reason);
        async {
            let store_error = |source| RenewError::store(name, source);
            let store = &self.store;
            let version = store
                .current(name)
                .map_err(store_error)?
                .ok_or_else(|| RenewError::NothingToRevoke(name.to_owned()))?;
            let serial = store.metadata(name, version).map_err(store_error)?.serial;
            let cert_path = store.files(name, version).map_err(store_error)?.cert;
            let leaf_der = read_leaf_der(&cert_path).map_err(store_error)?;

            // Revoked at the CA that issued it, with that CA's account.
            let issuer = self.issuing_ca(name)?.and_then(|ca| self.at_ca(&ca));
            let run = Run::open(issuer.as_ref().unwrap_or(self), certificate, now)?;
            run.check_ca_gate()?;
            let account = run.account().await?;
            if let Err(source) = revoke(&account, &leaf_der, reason).await {
                let error = RenewError::Acme {
                    name: name.to_owned(),
                    source,
                };
                run.record(Step::Revoke, Some(version), Some(&serial), Some(&error));
                return Err(error);
            }
            run.record(Step::Revoke, Some(version), Some(&serial), None);
            // The replacement gets a new key: no parked version is rolled out instead.
            for parked in store.versions(name).map_err(store_error)? {
                if parked.state == VersionState::Parked {
                    store
                        .set_state(name, parked.version, VersionState::Failed)
                        .map_err(store_error)?;
                }
            }
            tracing::info!(%serial, "revoked; issuing a replacement");
            let options = RenewOptions {
                force: true,
                dry_run: false,
            };
            let replacement = self.renew(name, options, now).await?;
            Ok(RevokeOutcome {
                revoked_serial: serial,
                replacement,
            })
        }
        .instrument(span)
        .await
    }
}

/// The DER of the first certificate in the PEM file at `path`.
fn read_leaf_der(path: &std::path::Path) -> Result<Vec<u8>, StoreError> {
    let text = std::fs::read(path).map_err(|source| StoreError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    let mut reader = text.as_slice();
    match rustls_pemfile::certs(&mut reader).next() {
        Some(Ok(der)) => Ok(der.to_vec()),
        Some(Err(source)) => Err(StoreError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        }),
        None => Err(StoreError::Io {
            action: "read",
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no certificate in it"),
        }),
    }
}
