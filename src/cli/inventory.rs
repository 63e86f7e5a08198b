//! `certinel inventory`: gathers each managed certificate's rotation checklist from the
//! configuration, the state directory and the audit log, and prints it.
//! Scanned endpoints and files are probed once; a leaf whose serial matches no stored
//! version and whose names are not all configured is listed as "monitored, not managed".

use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cert::ChallengeSpec;
use crate::cert::RenewBefore;
use crate::cli::ExitCode;
use crate::config;
use crate::config::model::{CertificateConfig, Config};
use crate::inventory::alerts::{self, AlertRule, AlertScope};
use crate::inventory::format::{OutputFormat, render};
use crate::inventory::{
    Automation, FailurePolicy, Inventory, ManagedCertificate, MonitoredCertificate, MonitoredKind,
    RenewalRule, days_left, is_managed, overlap,
};
use crate::renew::Renewer;
use crate::scan::files;
use crate::scan::inspect::CertFacts;
use crate::scan::sweep::sweep_endpoints;
use crate::service::probe_context;
use crate::store::CertStore;

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
pub fn run(args: InventoryArgs) -> anyhow::Result<ExitCode> {
    let config = config::load(&args.config)?;
    let now = OffsetDateTime::now_utc();
    let statuses = Renewer::new(&config).status(now)?;
    let store = CertStore::open(&config.state_dir)?;
    let audit_path = config.state_dir.join("audit.jsonl");
    let audit = std::fs::read_to_string(&audit_path).unwrap_or_default();
    let alert_rules: Vec<AlertRule> = ALERT_RULES
        .iter()
        .flat_map(|rules| alerts::alert_rules(rules))
        .collect();
    let directory = config
        .acme
        .as_ref()
        .map_or_else(String::new, |acme| acme.directory.clone());
    let mut managed = Vec::new();
    for certificate in &config.certificates {
        let current = store
            .current(&certificate.name)?
            .and_then(|v| store.metadata(&certificate.name, v).ok());
        let previous = store
            .previous(&certificate.name)?
            .and_then(|v| store.metadata(&certificate.name, v).ok());
        let next_renewal = statuses
            .iter()
            .find(|status| status.name == certificate.name)
            .filter(|_| current.is_some())
            .map(|status| status.next_renewal);
        managed.push(ManagedCertificate {
            name: certificate.name.clone(),
            dns_names: certificate.dns_names(),
            key_type: certificate.key.to_string(),
            issuer: current.as_ref().map(|meta| meta.issuer.clone()),
            stored_at: store_path(&config.state_dir, &certificate.name),
            lifetime: current
                .as_ref()
                .map(|meta| meta.not_after - meta.not_before),
            renewal_rule: renewal_rule(certificate),
            next_renewal,
            automation: Automation {
                directory: directory.clone(),
                challenge: challenge_name(&certificate.challenge).to_owned(),
            },
            deploy_commands: certificate.deploy.clone(),
            on_failure: FailurePolicy {
                backoff_min: time::Duration::minutes(5),
                backoff_max: time::Duration::hours(24),
                rollback_on_deploy_failure: true,
                alerts: alerts::failure_alerts(
                    &alert_rules,
                    AlertScope {
                        has_verify_targets: !certificate.verify.is_empty(),
                        has_profile: certificate.profile.is_some(),
                    },
                ),
            },
            overlap: match (&previous, &current) {
                (Some(previous), Some(current)) => {
                    Some(overlap(previous.not_after, current.not_before))
                }
                _ => None,
            },
            audit_log: audit_path.display().to_string(),
            last_rotation: last_rotation(&audit, &certificate.name),
        });
    }
    let stored_serials: Vec<String> = config
        .certificates
        .iter()
        .filter_map(|certificate| store.versions(&certificate.name).ok())
        .flatten()
        .map(|meta| meta.serial)
        .collect();
    let managed_names: Vec<String> = config
        .certificates
        .iter()
        .flat_map(CertificateConfig::dns_names)
        .collect();
    let mut monitored_not_managed = Vec::new();
    for (kind, target, leaf) in scanned_leaves(&config)? {
        if !is_managed(
            &leaf.serial,
            &leaf.dns_names,
            &stored_serials,
            &managed_names,
        ) {
            monitored_not_managed.push(MonitoredCertificate {
                kind,
                target,
                days_left: days_left(leaf.not_after, now),
                dns_names: leaf.dns_names,
                not_after: leaf.not_after,
            });
        }
    }
    let inventory = Inventory {
        generated_at: now,
        managed,
        monitored_not_managed,
    };
    let format = match args.output {
        Output::Table => OutputFormat::Table,
        Output::Json => OutputFormat::Json,
        Output::Markdown => OutputFormat::Markdown,
    };
    print!("{}", render(&inventory, format));
    Ok(ExitCode(0))
}

/// Probes every configured endpoint and reads every configured file once; returns each
/// leaf that could be read. Unreachable targets are left out: `certinel check` reports them.
fn scanned_leaves(config: &Config) -> anyhow::Result<Vec<(MonitoredKind, String, CertFacts)>> {
    let mut leaves = Vec::new();
    if !config.endpoints.is_empty() {
        let context = Arc::new(probe_context(config)?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
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
        for path in files::expand(&source.path).unwrap_or_default() {
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

fn store_path(state_dir: &Path, name: &str) -> String {
    state_dir
        .join("certs")
        .join(name)
        .join("current")
        .display()
        .to_string()
}

fn renewal_rule(certificate: &CertificateConfig) -> RenewalRule {
    match certificate.renew_before {
        RenewBefore::Duration(before) => RenewalRule::RenewBefore {
            before: time::Duration::seconds(i64::try_from(before.as_secs()).unwrap_or(i64::MAX)),
        },
        // Validation keeps the percentage in (0, 100), so it fits a u8 once rounded.
        RenewBefore::Percentage(percent) => RenewalRule::Percentage {
            percent: percent.round().clamp(1.0, 99.0) as u8,
        },
        RenewBefore::Default => RenewalRule::Default,
    }
}

fn challenge_name(challenge: &ChallengeSpec) -> &'static str {
    match challenge {
        ChallengeSpec::Http01Listen(_) | ChallengeSpec::Http01Webroot(_) => "http-01",
        ChallengeSpec::TlsAlpn01Listen(_) => "tls-alpn-01",
        ChallengeSpec::Dns01(_) => "dns-01",
    }
}

/// The time of the last `done:ok` audit line of `name`.
fn last_rotation(audit: &str, name: &str) -> Option<OffsetDateTime> {
    audit
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event["certificate"] == name && event["step"] == "done" && event["outcome"] == "ok"
        })
        .filter_map(|event| OffsetDateTime::parse(event["time"].as_str()?, &Rfc3339).ok())
        .max()
}
