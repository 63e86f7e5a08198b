//! Carries out an [`ImportPlan`]: each certificate becomes version `v0001` of its name
//! in the store (copied, key 0600, checked to match), the account is adopted through
//! `acme`, and with `link_live` certbot's `live/NAME/` files point at certinel's
//! `current/`. One failing certificate is reported and the others go on.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::acme::{AcmeSettings, AdoptedAccount, ForeignAccount, adopt_account};
use crate::import::ImportError;
use crate::import::plan::{CertificatePlan, ImportPlan, LiveFiles};
use crate::store::{CertStore, Origin, StoreError, VersionId};

/// Where and how to adopt.
#[derive(Debug, Clone)]
pub struct AdoptOptions {
    /// certinel's `state_dir`.
    pub state_dir: PathBuf,
    /// The roots of the CA's HTTPS certificate (`[acme] ca_file`), when not the system's.
    pub ca_file: Option<PathBuf>,
    /// Point certbot's `live/NAME/*.pem` at `state_dir/certs/NAME/current/`.
    pub link_live: bool,
    /// The moment of the import (recorded as the versions' creation time).
    pub now: OffsetDateTime,
}

/// What happened to one certificate.
#[derive(Debug)]
pub enum CertificateOutcome {
    /// Stored as `v0001` and made current.
    Adopted {
        /// The version (always `v0001`).
        version: VersionId,
    },
    /// The store already holds this very certificate as its current version.
    AlreadyAdopted {
        /// The current version.
        version: VersionId,
    },
    /// Not adopted.
    Failed(ImportError),
}

/// What an import did.
#[derive(Debug)]
pub struct AdoptReport {
    /// The account, when one was planned and adopted.
    pub account: Option<Result<AdoptedAccount, ImportError>>,
    /// Each certificate's name and outcome, in plan order.
    pub certificates: Vec<(String, CertificateOutcome)>,
}

impl AdoptReport {
    /// Whether everything planned was adopted (or already was).
    pub fn succeeded(&self) -> bool {
        self.account.as_ref().is_none_or(Result::is_ok)
            && self
                .certificates
                .iter()
                .all(|(_, outcome)| !matches!(outcome, CertificateOutcome::Failed(_)))
    }
}

/// Adopts the plan's certificates and account into `options.state_dir`.
pub async fn adopt(plan: &ImportPlan, options: &AdoptOptions) -> Result<AdoptReport, ImportError> {
    let store = CertStore::open(&options.state_dir)?;
    let certificates = plan
        .certificates
        .iter()
        .map(|certificate| {
            let outcome = adopt_certificate(&store, plan, certificate, options)
                .unwrap_or_else(CertificateOutcome::Failed);
            (certificate.name.clone(), outcome)
        })
        .collect();
    let account = match &plan.account {
        Some(account) => {
            let mut settings = AcmeSettings::new(plan.directory.clone());
            settings.ca_file = options.ca_file.clone();
            let foreign = ForeignAccount {
                url: account.url.clone(),
                key: account.key.clone(),
            };
            Some(
                adopt_account(&settings, &options.state_dir.join("acme"), &foreign)
                    .await
                    .map_err(ImportError::from),
            )
        }
        None => None,
    };
    Ok(AdoptReport {
        account,
        certificates,
    })
}

fn adopt_certificate(
    store: &CertStore,
    plan: &ImportPlan,
    certificate: &CertificatePlan,
    options: &AdoptOptions,
) -> Result<CertificateOutcome, ImportError> {
    let name = &certificate.name;
    let outcome = if let Some(current) = store.current(name)? {
        let meta = store.metadata(name, current)?;
        if meta.serial != certificate.serial {
            return Err(ImportError::Parse {
                path: store.cert_dir(name)?,
                message: format!(
                    "already holds certificate {name} (serial {}, not {}): remove that \
                     directory or rename the {} certificate before importing",
                    meta.serial,
                    certificate.serial,
                    plan.tool.as_str()
                ),
            });
        }
        CertificateOutcome::AlreadyAdopted { version: current }
    } else {
        if !store.versions(name)?.is_empty() {
            return Err(ImportError::Parse {
                path: store.cert_dir(name)?,
                message: "holds versions but none is current: remove the directory before \
                          importing"
                    .to_owned(),
            });
        }
        let origin = Origin {
            created_at: options.now,
            source: plan.directory.clone(),
        };
        let meta = store.stage_pending(
            name,
            certificate.key_pem.expose(),
            &certificate.chain_pem,
            &origin,
        )?;
        store.promote(name, meta.version)?;
        tracing::info!(
            certificate = %name,
            version = %meta.version,
            from = plan.tool.as_str(),
            "adopted certificate"
        );
        CertificateOutcome::Adopted {
            version: meta.version,
        }
    };
    if options.link_live {
        if let Some(live) = &certificate.live {
            let current = store.current_files(name)?;
            link_live(live, &current)?;
        }
    }
    Ok(outcome)
}

/// Replaces certbot's `live/NAME/*.pem` links with links to certinel's `current/` files,
/// each atomically, so a server reading certbot's paths sees certinel's renewals.
fn link_live(live: &LiveFiles, current: &crate::store::VersionFiles) -> Result<(), StoreError> {
    let pairs: [(&Path, &Path); 4] = [
        (&live.cert, &current.cert),
        (&live.chain, &current.chain),
        (&live.fullchain, &current.fullchain),
        (&live.privkey, &current.key),
    ];
    for (link, target) in pairs {
        crate::store::atomic::replace_symlink_atomic(link, target)?;
    }
    Ok(())
}
