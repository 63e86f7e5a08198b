//! `certinel import certbot|lego`: adopt another ACME client's certificates (as `v0001`)
//! and account, and print (or `--write`) the configuration that keeps renewing them.
//! Exit 0 when everything was adopted, 1 when something was not (each failure is printed
//! and the rest goes on).

use std::path::{Path, PathBuf};

use anyhow::Context;
use time::OffsetDateTime;

use crate::cli::ExitCode;
use crate::import::lego::LegoOptions;
use crate::import::{self, AdoptOptions, CertificateOutcome, ChallengePlan, ImportPlan};

/// `certinel import ...`
#[derive(Debug, clap::Subcommand)]
pub enum ImportCommand {
    /// Adopt certbot's lineages and ACME account.
    ///
    /// Every lineage (renewal/NAME.conf) becomes version v0001 of NAME (its live
    /// certificate and key, copied). certbot's RSA account key is rolled over at the CA to a
    /// new ECDSA P-256 key (same account): certbot can no longer use that account, so
    /// disable its timer or cron job.
    Certbot {
        /// certbot's configuration directory.
        #[arg(default_value = "/etc/letsencrypt")]
        dir: PathBuf,
        /// Also point certbot's live/NAME/*.pem at certinel's current version, so server
        /// configurations need no edit (certbot's own renewals of them stop working).
        #[arg(long)]
        link_live: bool,
        /// Options both importers take.
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Adopt lego's certificates and ACME account.
    ///
    /// Every certificate (certificates/NAME.crt and .key) becomes version v0001 of NAME;
    /// the account (accounts/HOST/EMAIL/) is adopted. lego records neither the directory
    /// URL's path (--server; known for Let's Encrypt) nor its challenge (--http-listen or
    /// --webroot).
    Lego {
        /// lego's --path directory.
        #[arg(default_value = ".lego")]
        dir: PathBuf,
        /// The account's e-mail, when several accounts exist for the server.
        #[arg(long)]
        email: Option<String>,
        /// http-01 with certinel's listener on this IP:PORT (the default).
        #[arg(long, default_value = "0.0.0.0:80", conflicts_with = "webroot")]
        http_listen: String,
        /// http-01 through files under this web root instead.
        #[arg(long)]
        webroot: Option<PathBuf>,
        /// Options both importers take.
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// Options both importers take.
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// certinel's state directory (the configuration's state_dir).
    #[arg(long, default_value = "/var/lib/certinel")]
    state_dir: PathBuf,
    /// The ACME directory URL: only certbot lineages renewing against it; lego's server.
    #[arg(long)]
    server: Option<String>,
    /// A PEM file with the roots of the CA's HTTPS certificate (becomes [acme] ca_file).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Write the configuration to FILE (atomically) instead of printing it.
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
}

/// Runs `certinel import ...`.
pub fn run(command: ImportCommand, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let (plan, common, link_live) = match command {
        ImportCommand::Certbot {
            dir,
            link_live,
            common,
        } => {
            let (files, unreadable) = import::read::certbot(&dir)?;
            let mut plan = import::certbot::plan(&files, common.server.as_deref())?;
            plan.skipped.extend(unreadable);
            (plan, common, link_live)
        }
        ImportCommand::Lego {
            dir,
            email,
            http_listen,
            webroot,
            common,
        } => {
            let (files, unreadable) = import::read::lego(&dir)?;
            let challenge = match webroot {
                Some(root) => ChallengePlan::HttpWebroot(absolute(&root)?.display().to_string()),
                None => ChallengePlan::HttpListen(http_listen),
            };
            let options = LegoOptions {
                server: common.server.clone(),
                email,
                challenge,
            };
            let mut plan = import::lego::plan(&files, &options)?;
            plan.skipped.extend(unreadable);
            (plan, common, false)
        }
    };
    if let Some(path) = &common.write {
        refuse_foreign_file(path)?;
    }
    // Absolute paths: the configuration may live anywhere, and --link-live's links must
    // not depend on the directory they sit in.
    let state_dir = absolute(&common.state_dir)?;
    let ca_file = common.ca_file.as_deref().map(absolute).transpose()?;
    let options = AdoptOptions {
        state_dir: state_dir.clone(),
        ca_file: ca_file.clone(),
        link_live,
        now: OffsetDateTime::now_utc(),
    };
    let report = runtime.block_on(import::adopt(&plan, &options))?;
    print_report(&plan, &report);

    let config = import::render::config_toml(&plan, &state_dir, ca_file.as_deref());
    match &common.write {
        Some(path) => {
            crate::disk::write_atomic(path, config.as_bytes(), crate::disk::MODE_PUBLIC)
                .with_context(|| format!("cannot write the configuration to {}", path.display()))?;
            eprintln!("configuration written to {}", path.display());
        }
        None => print!("{config}"),
    }
    let complete = report.succeeded() && plan.skipped.is_empty();
    Ok(ExitCode(if complete { 0 } else { 1 }))
}

/// One line per certificate and one for the account, on standard error (standard output
/// carries the configuration).
fn print_report(plan: &ImportPlan, report: &import::AdoptReport) {
    for (name, error) in &plan.skipped {
        eprintln!("{name}: not adopted: {error}");
    }
    for (name, outcome) in &report.certificates {
        match outcome {
            CertificateOutcome::Adopted { version } => {
                eprintln!("{name}: adopted as {version}")
            }
            CertificateOutcome::AlreadyAdopted { version } => {
                eprintln!("{name}: already adopted ({version} is current)")
            }
            CertificateOutcome::Failed(error) => eprintln!("{name}: not adopted: {error:#}"),
        }
    }
    match &report.account {
        Some(Ok(account)) if account.already_adopted => {
            eprintln!("account {}: already adopted", account.url)
        }
        Some(Ok(account)) => eprintln!(
            "account {}: adopted{} into {}",
            account.url,
            if account.rolled_over {
                " (its RSA key rolled over to a new ECDSA P-256 key)"
            } else {
                ""
            },
            account.credentials_path.display()
        ),
        Some(Err(error)) => eprintln!("account: not adopted: {error}"),
        None => eprintln!(
            "no {} account found: certinel registers a new one at the first renewal",
            plan.tool.as_str()
        ),
    }
}

/// `--write` replaces only a file an earlier import wrote (it starts with the header
/// [`import::render::config_toml`] writes), never a configuration someone edited.
fn refuse_foreign_file(path: &Path) -> anyhow::Result<()> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.starts_with(import::render::HEADER) => anyhow::bail!(
            "{} exists and was not written by certinel import: write to a new file and \
             merge its [acme] and [[certificate]] tables into your configuration",
            path.display()
        ),
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot read {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}
