//! `certinel account rollover|deactivate [--ca NAME]`: change the ACME account at one
//! configured CA (default `[acme]`). Exit 0 when the CA accepted the change, 1 when it did
//! not, 2 when no CA of that name is configured.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::cli::ExitCode;
use crate::config;
use crate::config::model::DEFAULT_CA;
use crate::renew::{AccountAdminError, Renewer};

/// `certinel account ...`
#[derive(Debug, clap::Subcommand)]
pub enum AccountCommand {
    /// Replace the account key with a new one at the CA (RFC 8555 §7.3.5) and store it.
    /// Stop `certinel run` first, or restart it afterwards: a running service keeps
    /// signing with the old key until it restarts.
    Rollover {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The CA whose account changes: a [ca.NAME] table, or "acme" for [acme].
        #[arg(long, value_name = "NAME", default_value = DEFAULT_CA)]
        ca: String,
    },
    /// Deactivate the account at the CA for good (RFC 8555 §7.3.6), for example after its
    /// key leaked. Its credentials file is kept as `*.deactivated`; the next renewal
    /// registers a new account.
    Deactivate {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The CA whose account is deactivated: a [ca.NAME] table, or "acme" for [acme].
        #[arg(long, value_name = "NAME", default_value = DEFAULT_CA)]
        ca: String,
        /// Confirm: a deactivated account can never be used again.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `certinel account ...`.
pub fn run(command: AccountCommand, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let now = OffsetDateTime::now_utc();
    let (ca, change, outcome) = match command {
        AccountCommand::Rollover { config, ca } => {
            let renewer = Renewer::new(&config::load(&config)?);
            let outcome = runtime
                .block_on(renewer.roll_over_account_key(&ca, now))
                .map(|rollover| {
                    format!(
                        "account {}: key rolled over ({} -> {}), credentials in {}",
                        rollover.account_url,
                        rollover.old_thumbprint,
                        rollover.new_thumbprint,
                        rollover.credentials_path.display()
                    )
                });
            (ca, "account key rollover", outcome)
        }
        AccountCommand::Deactivate { config, ca, yes } => {
            if !yes {
                anyhow::bail!(
                    "deactivating an ACME account cannot be undone; add --yes to confirm"
                );
            }
            let renewer = Renewer::new(&config::load(&config)?);
            let outcome =
                runtime
                    .block_on(renewer.deactivate_account(&ca, now))
                    .map(|deactivation| {
                        format!(
                            "account {} deactivated; credentials moved to {}",
                            deactivation.account_url,
                            deactivation.retired_credentials.display()
                        )
                    });
            (ca, "account deactivation", outcome)
        }
    };
    match outcome {
        Ok(report) => {
            println!("CA {ca}: {report}");
            Ok(ExitCode(0))
        }
        Err(error) => refused(error, &ca, change),
    }
}

/// A change that did not happen: a CA name the configuration lacks is a usage error (exit
/// 2, nothing was asked of any CA); any other failure is reported with exit 1.
fn refused(error: AccountAdminError, ca: &str, change: &str) -> anyhow::Result<ExitCode> {
    match error {
        AccountAdminError::NoAcme { .. } | AccountAdminError::UnknownCa { .. } => Err(error.into()),
        error => {
            println!("CA {ca}: {change} failed: {error}");
            Ok(ExitCode(1))
        }
    }
}
