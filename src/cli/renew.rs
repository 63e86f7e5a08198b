//! `certinel renew` and `certinel rollback`: one line per certificate on standard output,
//! exit 0 when every certificate was renewed or not due, 1 when one failed.

use std::path::PathBuf;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::runtime::Runtime;

use crate::cli::ExitCode;
use crate::config;
use crate::escape::Escaped;
use crate::renew::{RenewError, RenewOptions, RenewOutcome};

/// Arguments of `certinel renew`.
#[derive(Debug, clap::Args)]
pub struct RenewArgs {
    /// The certificate to renew (its `name` in the configuration).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Renew every configured certificate that is due.
    #[arg(long)]
    pub all: bool,
    /// Renew even if the renewal window has not opened yet.
    #[arg(long)]
    pub force: bool,
    /// Renew into a scratch directory (against `acme.dry_run_directory`, else Let's Encrypt
    /// staging instead of its production, else `acme.directory`) and run the deploy
    /// commands with CERTINEL_DRY_RUN=1; of the state directory, only the dry-run ACME
    /// accounts in `dry-run/accounts/` are written.
    #[arg(long)]
    pub dry_run: bool,
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Arguments of `certinel rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The certificate whose previous version becomes current again.
    pub name: String,
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Runs `certinel renew`.
pub fn run(args: RenewArgs, runtime: &Runtime) -> anyhow::Result<ExitCode> {
    let config = config::load(&args.config)?;
    let renewer = crate::cli::state_store::renewer(&config)?;
    let options = RenewOptions {
        force: args.force,
        dry_run: args.dry_run,
    };
    let now = OffsetDateTime::now_utc();
    let results = match &args.name {
        Some(name) => vec![(
            name.clone(),
            runtime.block_on(renewer.renew(name, options, now)),
        )],
        None => runtime.block_on(renewer.renew_all(options, now)),
    };
    let mut failed = false;
    for (name, result) in results {
        match result {
            Ok(outcome) => println!("{}", outcome_line(&name, &outcome)),
            Err(error) => {
                failed = true;
                println!("{}", failure_line("renew", &name, &error));
            }
        }
    }
    Ok(ExitCode(u8::from(failed)))
}

/// Runs `certinel rollback`.
pub fn rollback(args: RollbackArgs, runtime: &Runtime) -> anyhow::Result<ExitCode> {
    let config = config::load(&args.config)?;
    let renewer = crate::cli::state_store::renewer(&config)?;
    match runtime.block_on(renewer.rollback(&args.name, OffsetDateTime::now_utc())) {
        Ok(outcome) => {
            let from = outcome
                .from
                .map_or_else(|| "nothing".to_owned(), |v| v.to_string());
            println!("{}: rolled back from {from} to {}", args.name, outcome.to);
            Ok(ExitCode(0))
        }
        Err(error) => {
            println!("{}", failure_line("rollback", &args.name, &error));
            Ok(ExitCode(1))
        }
    }
}

fn outcome_line(name: &str, outcome: &RenewOutcome) -> String {
    match outcome {
        RenewOutcome::Renewed {
            version,
            serial,
            not_after,
            dry_run,
        } => format!(
            "{name}: {} {version} (serial {serial}, expires {})",
            if *dry_run {
                "dry run issued"
            } else {
                "renewed to"
            },
            rfc3339(*not_after)
        ),
        RenewOutcome::NotDue {
            renew_at, reason, ..
        } => format!(
            "{name}: not due; next renewal {} ({})",
            rfc3339(*renew_at),
            reason.as_str()
        ),
    }
}

/// The one line naming the certificate, stage and problem.
/// The error quotes the CA's problem detail and the served certificates: escaped.
fn failure_line(action: &str, name: &str, error: &RenewError) -> String {
    format!(
        "{name}: {action} failed at stage {} (problem {}): {}",
        error.stage(),
        error.problem(),
        Escaped(error)
    )
}

/// `time` as RFC 3339 at second precision (`2026-05-01T12:00:00Z`): planned times carry
/// jitter down to the nanosecond, which is noise to a reader.
pub(crate) fn rfc3339(time: OffsetDateTime) -> String {
    let time = time.replace_nanosecond(0).unwrap_or(time);
    time.format(&Rfc3339)
        .unwrap_or_else(|_| time.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_line_escapes_what_the_ca_said() {
        let error = RenewError::Acme {
            name: "api".to_owned(),
            source: crate::acme::AcmeError::Server {
                stage: crate::acme::Stage::Order,
                problem: "malformed".to_owned(),
                detail: "bad\x1b[2J\r\napi: renewed to v0009".to_owned(),
                retry_after: None,
                invalid_authorizations: Vec::new(),
            },
        };
        let line = failure_line("renew", "api", &error);
        assert!(!line.contains(char::is_control), "{line:?}");
        assert!(
            line.contains(r"bad\x1b[2J\r\napi: renewed to v0009"),
            "{line}"
        );
    }
}
