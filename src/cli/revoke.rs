//! `certinel revoke NAME`: revoke the current certificate and issue a replacement with a
//! new key at once. Exit 0 when both worked, 1 otherwise.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::acme::RevocationReason;
use crate::cli::ExitCode;
use crate::config;
use crate::renew::RenewOutcome;

/// Arguments of `certinel revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The certificate whose current version is revoked.
    pub name: String,
    /// Why: unspecified, key-compromise, superseded, cessation-of-operation or
    /// affiliation-changed.
    #[arg(long, default_value = "unspecified", value_parser = parse_reason)]
    pub reason: RevocationReason,
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Runs `certinel revoke`.
pub fn run(args: RevokeArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let config = config::load(&args.config)?;
    let renewer = crate::cli::state_store::renewer(&config)?;
    let now = OffsetDateTime::now_utc();
    match runtime.block_on(renewer.revoke(&args.name, args.reason, now)) {
        Ok(outcome) => {
            let replacement = match outcome.replacement {
                RenewOutcome::Renewed {
                    version, serial, ..
                } => format!("replaced by {version} (serial {serial})"),
                RenewOutcome::NotDue { .. } => "not replaced".to_owned(),
            };
            println!(
                "{}: revoked serial {} ({}); {replacement}",
                args.name, outcome.revoked_serial, args.reason
            );
            Ok(ExitCode(0))
        }
        Err(error) => {
            println!(
                "{}: revoke failed at stage {} (problem {}): {}",
                args.name,
                error.stage(),
                error.problem(),
                // The error can quote the CA's problem detail.
                crate::escape::Escaped(&error)
            );
            Ok(ExitCode(1))
        }
    }
}

/// Clap's parser for `--reason`: clap prints the typed error's message.
fn parse_reason(text: &str) -> Result<RevocationReason, crate::acme::UnknownRevocationReason> {
    text.parse()
}
