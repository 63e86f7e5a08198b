//! Carries out an [`ImportPlan`]: each certificate becomes version `v0001` of its name
//! in the store (copied, key 0600, checked to match), the account is adopted through
//! `acme`, and with `link_live` certbot's `live/NAME/` files point at certinel's
//! `current/`. One failing certificate is reported and the others go on.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::acme::{AcmeSettings, AdoptedAccount, ForeignAccount, adopt_account};
use crate::import::ImportError;
use crate::import::plan::{CertificatePlan, ImportPlan, LiveFiles};
use crate::store::{CertStore, NewVersion, Origin, StoreError, VersionId};

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
    /// An earlier import stored this very certificate (it may have been renewed since).
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
                adopt_account(
                    &settings,
                    &*crate::store::Store::accounts(&crate::store::FsStore::new(
                        &options.state_dir,
                    )),
                    &foreign,
                )
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
        // An earlier import stored this certificate; certinel may have renewed it since.
        let imported_before = store
            .versions(name)?
            .iter()
            .any(|version| version.serial == certificate.serial);
        if !imported_before {
            let meta = store.metadata(name, current)?;
            return Err(ImportError::Occupied {
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
            return Err(ImportError::Occupied {
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
            NewVersion {
                key_pem: certificate.key_pem.expose(),
                chain_pem: &certificate.chain_pem,
                origin: &origin,
            },
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::import::plan::{ChallengePlan, Tool};
    use crate::import::testing::certificate;

    fn plan(chain_pem: String, key_pem: crate::store::SecretPem) -> ImportPlan {
        let facts = crate::store::version_check::leaf_facts(&chain_pem).unwrap();
        ImportPlan {
            tool: Tool::Lego,
            source: PathBuf::from(".lego"),
            directory: "https://ca.test/dir".to_owned(),
            contact: Vec::new(),
            account: None,
            certificates: vec![CertificatePlan {
                name: "site".to_owned(),
                dns_names: facts.dns_names,
                serial: facts.serial,
                not_after: facts.not_after,
                key: crate::cert::KeyAlgorithm::EcdsaP256,
                challenge: ChallengePlan::HttpListen("127.0.0.1:80".to_owned()),
                renew_before_days: None,
                deploy: Vec::new(),
                chain_pem,
                key_pem,
                live: None,
                described_by: PathBuf::from(".lego/certificates/site.crt"),
                notes: Vec::new(),
            }],
            skipped: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_certificate_is_adopted_once_as_current_v0001_and_never_over_another() {
        let temp = tempfile::tempdir().unwrap();
        let options = AdoptOptions {
            state_dir: temp.path().to_owned(),
            ca_file: None,
            link_live: false,
            now: time::macros::datetime!(2026-12-01 00:00 UTC),
        };
        let (chain, key) = certificate(&["site.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let first = adopt(&plan(chain.clone(), key.clone()), &options)
            .await
            .unwrap();
        assert!(first.succeeded());
        assert!(matches!(
            first.certificates[0].1,
            CertificateOutcome::Adopted {
                version: VersionId(1)
            }
        ));
        let store = CertStore::open(temp.path()).unwrap();
        assert_eq!(store.current("site").unwrap(), Some(VersionId(1)));
        let key_file = store.files("site", VersionId(1)).unwrap().key;
        let mode = std::fs::metadata(key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let again = adopt(&plan(chain, key), &options).await.unwrap();
        assert!(matches!(
            again.certificates[0].1,
            CertificateOutcome::AlreadyAdopted { .. }
        ));
        let (other_chain, other_key) = certificate(&["site.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let other = adopt(&plan(other_chain, other_key), &options)
            .await
            .unwrap();
        assert!(!other.succeeded());
        let CertificateOutcome::Failed(error) = &other.certificates[0].1 else {
            panic!("{other:?}");
        };
        assert!(
            error.to_string().contains("already holds certificate site"),
            "{error}"
        );
        assert_eq!(store.versions("site").unwrap().len(), 1);
    }
}
