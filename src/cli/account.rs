//! `certinel account rollover|deactivate`: change the ACME account itself. Exit 0 when the
//! CA accepted the change, 1 when it did not.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::cli::{ExitCode, LogFormat, logging};
use crate::config;
use crate::renew::Renewer;

/// `certinel account ...`
#[derive(Debug, clap::Subcommand)]
pub enum AccountCommand {
    /// Replace the account key with a new one at the CA (RFC 8555 §7.3.5) and store it.
    /// Stop `certinel run` first, or restart it afterwards: a running service keeps
    /// signing with the old key until it restarts.
    Rollover {
        /// The configuration file (its [acme] section names the CA).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Deactivate the account at the CA for good (RFC 8555 §7.3.6), for example after its
    /// key leaked. Its credentials file is kept as `*.deactivated`; the next renewal
    /// registers a new account.
    Deactivate {
        /// The configuration file (its [acme] section names the CA).
        #[arg(long, short)]
        config: PathBuf,
        /// Confirm: a deactivated account can never be used again.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `certinel account ...`.
pub fn run(
    command: AccountCommand,
    log_format: LogFormat,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<ExitCode> {
    logging::init(log_format);
    let now = OffsetDateTime::now_utc();
    match command {
        AccountCommand::Rollover { config } => {
            let renewer = Renewer::new(&config::load(&config)?);
            match runtime.block_on(renewer.roll_over_account_key(now)) {
                Ok(rollover) => {
                    println!(
                        "account {}: key rolled over ({} -> {}), credentials in {}",
                        rollover.account_url,
                        rollover.old_thumbprint,
                        rollover.new_thumbprint,
                        rollover.credentials_path.display()
                    );
                    Ok(ExitCode(0))
                }
                Err(error) => {
                    println!("account key rollover failed: {error}");
                    Ok(ExitCode(1))
                }
            }
        }
        AccountCommand::Deactivate { config, yes } => {
            if !yes {
                anyhow::bail!(
                    "deactivating an ACME account cannot be undone; add --yes to confirm"
                );
            }
            let renewer = Renewer::new(&config::load(&config)?);
            match runtime.block_on(renewer.deactivate_account(now)) {
                Ok(deactivation) => {
                    println!(
                        "account {} deactivated; credentials moved to {}",
                        deactivation.account_url,
                        deactivation.retired_credentials.display()
                    );
                    Ok(ExitCode(0))
                }
                Err(error) => {
                    println!("account deactivation failed: {error}");
                    Ok(ExitCode(1))
                }
            }
        }
    }
}
