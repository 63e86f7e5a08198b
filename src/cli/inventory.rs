//! `certinel inventory`: reads each managed certificate's facts from the store, the
//! planner and the audit log, probes the scanned endpoints and files once, and prints the
//! checklist [`crate::inventory::gather::gather`] builds from them. An input that cannot be
//! read is named on standard error instead of being left out silently.

use std::path::PathBuf;
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::runtime::Runtime;

use crate::cli::ExitCode;
use crate::config;
use crate::config::model::{Config, DEFAULT_CA};
use crate::inventory::MonitoredKind;
use crate::inventory::alerts::{self, AlertRule};
use crate::inventory::format::{OutputFormat, render};
use crate::inventory::gather::{InventorySources, StoredCertificate, Unreadable, gather};
use crate::renew::{CertificateStatus, Renewer};
use crate::scan::files;
use crate::scan::inspect::CertFacts;
use crate::scan::sweep::sweep_endpoints;
use crate::service::probe_context;
use crate::store::{AuditHistory, FsStore, Store, StoreError, VersionId, VersionMetadata};

/// Arguments of `certinel inventory`.
#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Output formats of `certinel inventory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned plain text.
    Table,
    /// Pretty-printed JSON.
    Json,
    /// Markdown tables.
    Markdown,
}

/// The alert rules shipped with certinel, compiled in so the inventory names them.
const ALERT_RULES: [&str; 2] = [
    include_str!("../../config/prometheus/alerts.yml"),
    include_str!("../../config/prometheus/alerts-renewal.yml"),
];

/// Runs `certinel inventory`.
pub fn run(args: InventoryArgs, runtime: &Runtime) -> anyhow::Result<ExitCode> {
    let config = config::load(&args.config)?;
    let now = OffsetDateTime::now_utc();
    let cluster_store = crate::cli::state_store::cluster_store(&config)?;
    let store: Arc<dyn Store> = match &cluster_store {
        Some(store) => store.clone(),
        None => Arc::new(FsStore::new(&config.state_dir)),
    };
    let renewer = Renewer::new(&config);
    let renewer = match cluster_store {
        Some(store) => renewer.with_store(store),
        None => renewer,
    };
    let statuses = renewer.status(now)?;
    let mut unreadable = Vec::new();
    let audit = store.audit_history().unwrap_or_else(|error| {
        unreadable.push(Unreadable {
            what: format!("the audit log {}", store.audit_location()),
            error: error.to_string(),
        });
        AuditHistory::default()
    });
    let alert_rules: Vec<AlertRule> = ALERT_RULES
        .iter()
        .flat_map(|rules| alerts::alert_rules(rules))
        .collect();
    let certificates = config
        .certificates
        .iter()
        .map(|certificate| {
            let stored = read_stored(&*store, &certificate.name, &statuses, &mut unreadable);
            (certificate, stored)
        })
        .collect();
    let audit_location = store.audit_location();
    let sources = InventorySources {
        now,
        cas: config
            .acme
            .iter()
            .map(|acme| (DEFAULT_CA, acme.directory.as_str()))
            .chain(
                config
                    .cas
                    .iter()
                    .map(|(name, ca)| (name.as_str(), ca.directory.as_str())),
            )
            .collect(),
        certificates,
        audit: &audit,
        audit_location: &audit_location,
        alert_rules: &alert_rules,
        scanned: scanned_leaves(&config, runtime, &mut unreadable)?,
    };
    let (inventory, unreadable_audit) = gather(sources);
    unreadable.extend(unreadable_audit);
    let format = match args.output {
        Output::Table => OutputFormat::Table,
        Output::Json => OutputFormat::Json,
        Output::Markdown => OutputFormat::Markdown,
    };
    print!("{}", render(&inventory, format));
    for problem in &unreadable {
        eprintln!("certinel inventory: {problem}");
    }
    Ok(ExitCode(0))
}

/// What the store holds for `name` and when the planner renews it; what cannot be read is
/// added to `unreadable`.
fn read_stored(
    store: &dyn Store,
    name: &str,
    statuses: &[CertificateStatus],
    unreadable: &mut Vec<Unreadable>,
) -> StoredCertificate {
    let mut report = |what: String, error: StoreError| {
        unreadable.push(Unreadable {
            what,
            error: error.to_string(),
        });
    };
    let mut version = |which: &str, pointer: Result<Option<VersionId>, StoreError>| {
        let read = pointer.and_then(|version| {
            version
                .map(|version| store.metadata(name, version))
                .transpose()
        });
        read.unwrap_or_else(|error| {
            report(format!("the {which} version of {name}"), error);
            None
        })
    };
    let current: Option<VersionMetadata> = version("current", store.current(name));
    let previous = version("previous", store.previous(name));
    let serials = store
        .versions(name)
        .map(|versions| versions.into_iter().map(|meta| meta.serial).collect())
        .unwrap_or_else(|error| {
            report(format!("the stored versions of {name}"), error);
            Vec::new()
        });
    let live_files = store
        .current_files(name)
        .map(|files| files.dir.display().to_string())
        .unwrap_or_default();
    let status = statuses.iter().find(|status| status.name == name);
    StoredCertificate {
        current,
        previous,
        serials,
        live_files,
        next_renewal: status.map(|status| status.next_renewal),
        revocation: status.and_then(|status| status.revocation.clone()),
    }
}

/// Probes every configured endpoint and reads every configured file once; returns each
/// leaf that could be read. Unreachable targets are left out: `certinel check` reports them.
fn scanned_leaves(
    config: &Config,
    runtime: &Runtime,
    unreadable: &mut Vec<Unreadable>,
) -> anyhow::Result<Vec<(MonitoredKind, String, CertFacts)>> {
    let mut leaves = Vec::new();
    if !config.endpoints.is_empty() {
        let context = Arc::new(probe_context(config)?);
        let reports = runtime.block_on(sweep_endpoints(
            &config.endpoints,
            context,
            config.scanner.concurrency,
            &|_, _| {},
        ));
        for report in reports {
            let target = report.endpoint.target.to_string();
            let leaf = report.addresses.into_iter().find_map(|address| {
                address
                    .outcome
                    .ok()
                    .map(|handshake| handshake.chain.leaf().clone())
            });
            if let Some(leaf) = leaf {
                leaves.push((MonitoredKind::Endpoint, target, leaf));
            }
        }
    }
    for source in &config.files {
        let paths = files::expand(&source.path).unwrap_or_else(|error| {
            unreadable.push(Unreadable {
                what: format!("the file source {}", source.path),
                error: error.to_string(),
            });
            Vec::new()
        });
        for path in paths {
            if let Ok(chain) = files::inspect_file(&path).outcome {
                leaves.push((
                    MonitoredKind::File,
                    path.display().to_string(),
                    chain.leaf().clone(),
                ));
            }
        }
    }
    Ok(leaves)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::store::Origin;
    use crate::store::testing::issue;

    #[test]
    fn a_current_version_whose_metadata_cannot_be_read_is_reported_not_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path());
        let issued = issue(&["web.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let origin = Origin {
            created_at: datetime!(2025-01-01 0:05 UTC),
            source: "https://127.0.0.1:9/dir".into(),
        };
        let meta = store
            .stage_pending("web", issued.new_version(&origin))
            .unwrap();
        store.promote("web", meta.version).unwrap();
        let metadata = store.files("web", meta.version).unwrap().metadata;
        std::fs::write(&metadata, "{ torn").unwrap();

        let mut unreadable = Vec::new();
        let stored = read_stored(&store, "web", &[], &mut unreadable);

        assert_eq!(stored.current, None);
        assert_eq!(stored.serials, Vec::<String>::new());
        let what: Vec<&str> = unreadable.iter().map(|u| u.what.as_str()).collect();
        assert_eq!(
            what,
            ["the current version of web", "the stored versions of web"]
        );
        assert!(
            unreadable[0].error.contains("meta.json is not valid state"),
            "{}",
            unreadable[0].error
        );
        assert!(stored.live_files.ends_with("certs/web/current"));
    }
}
