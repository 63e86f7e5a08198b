//! `certinel inventory`: gathers each managed certificate's rotation checklist from the
//! configuration, the state directory and the audit log, and prints it.
//!
//! Not yet done: the "monitored, not managed" sweep of scanned endpoints and files; the
//! list is empty until it is (see `inventory::is_managed` for the matching rule).

use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::acme::ChallengeSpec;
use crate::cli::ExitCode;
use crate::config::{self, model::CertificateConfig};
use crate::inventory::format::{OutputFormat, render};
use crate::inventory::{
    Automation, FailurePolicy, Inventory, ManagedCertificate, RenewalRule, alert_names, overlap,
};
use crate::renew::Renewer;
use crate::schedule::plan::RenewBefore;
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
    let alerts: Vec<String> = ALERT_RULES
        .iter()
        .flat_map(|rules| alert_names(rules))
        .filter(|name| name.contains("Renewal"))
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
                alerts: alerts.clone(),
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
    let inventory = Inventory {
        generated_at: now,
        managed,
        monitored_not_managed: Vec::new(),
    };
    let format = match args.output {
        Output::Table => OutputFormat::Table,
        Output::Json => OutputFormat::Json,
        Output::Markdown => OutputFormat::Markdown,
    };
    print!("{}", render(&inventory, format));
    Ok(ExitCode(0))
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
