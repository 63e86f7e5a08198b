//! Why a renewal or rollback failed: [`RenewError`], with the `stage` and `problem`
//! labels of `certinel_certificate_renewal_failures_total`.

use time::OffsetDateTime;

use crate::acme::AcmeError;
use crate::hook::HookError;
use crate::renew::{LockError, rollout_check};
use crate::schedule::plan::Reason;
use crate::store::{StoreError, VersionId};

/// A failed renewal or rollback. [`stage`](Self::stage) and [`problem`](Self::problem) are
/// the labels of `certinel_certificate_renewal_failures_total`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenewError {
    /// No `[[certificate]]` has this name.
    #[error("no certificate named {0:?} in the configuration")]
    UnknownCertificate(String),
    /// The configuration has certificates but no `[acme]` (config validation prevents it).
    #[error("no [acme] section in the configuration")]
    NoAcme,
    /// Obtaining the certificate failed.
    #[error("{source}")]
    Acme {
        /// Certificate name.
        name: String,
        /// What went wrong, with its stage.
        #[source]
        source: AcmeError,
    },
    /// A deploy command failed; `current` was rolled back to `restored` when there was a
    /// version to restore.
    #[error("{source}{}", restored_suffix(*.restored))]
    Hook {
        /// Certificate name.
        name: String,
        /// The version whose deployment failed.
        version: VersionId,
        /// The version made current again, if any.
        restored: Option<VersionId>,
        /// The failure.
        #[source]
        source: HookError,
    },
    /// Another replica of the fleet (`[cluster]`) could not deploy the new version; like a
    /// local deploy failure, `current` was rolled back when possible.
    #[error(
        "replica {member} could not deploy {version}: {detail}{}",
        restored_suffix(*.restored)
    )]
    FleetDeploy {
        /// Certificate name.
        name: String,
        /// The version whose deployment failed.
        version: VersionId,
        /// The replica that reported the failure.
        member: String,
        /// What it reported.
        detail: String,
        /// The version made current again, if any.
        restored: Option<VersionId>,
    },
    /// The live files did not check out; `current` was rolled back when possible.
    #[error("verify {version}: {source}{}", restored_suffix(*.restored))]
    Verify {
        /// Certificate name.
        name: String,
        /// The version that failed verification.
        version: VersionId,
        /// The version made current again, if any.
        restored: Option<VersionId>,
        /// The failure.
        #[source]
        source: StoreError,
    },
    /// The `verify` endpoints did not all serve the new version in time. With
    /// `on_verify_failure = "rollback"` `current` was rolled back (`restored`) when an
    /// endpoint served an older version and the previous one was fit to serve; with
    /// `"keep"`, or when an endpoint did not answer (`kept`), the new version stayed current.
    #[error("verify {version}: {source}{}", served_suffix(*.restored, *.kept))]
    Served {
        /// Certificate name.
        name: String,
        /// The version that was not served.
        version: VersionId,
        /// The version made current again, if any.
        restored: Option<VersionId>,
        /// Whether the new version was kept as current.
        kept: bool,
        /// What was served instead.
        #[source]
        source: rollout_check::ServedError,
    },
    /// Reading or writing the state directory failed.
    #[error("state: {source}")]
    Store {
        /// Certificate name.
        name: String,
        /// The failure.
        #[source]
        source: StoreError,
    },
    /// `revoke` found no current version to revoke.
    #[error("{0}: there is no current certificate to revoke")]
    NothingToRevoke(String),
    /// Another `certinel renew` or `certinel run` holds this certificate's lock, or the
    /// lock file could not be taken.
    #[error("{name}: {source}")]
    Lock {
        /// Certificate name.
        name: String,
        /// Why the lock was not taken.
        #[source]
        source: LockError,
    },
    /// A forced renewal (or a revocation, which renews at once) was not attempted: the CA
    /// asked not to be asked again yet, or an identifier reached the failed-authorization
    /// limit. `--force` skips the renewal window and certinel's backoff, never these.
    #[error("{name}: {}", gate_message(*.reason, *.until))]
    Gated {
        /// Certificate name.
        name: String,
        /// The earliest moment the CA allows another attempt.
        until: OffsetDateTime,
        /// [`Reason::RetryAfter`] or [`Reason::RateLimited`].
        reason: Reason,
    },
    /// The scratch directory of a dry run could not be created.
    #[error("cannot create a scratch directory for the dry run: {0}")]
    Scratch(#[source] std::io::Error),
}

impl RenewError {
    /// A state failure of certificate `name`.
    pub(crate) fn store(name: &str, source: StoreError) -> RenewError {
        RenewError::Store {
            name: name.to_owned(),
            source,
        }
    }

    /// The same failure, saying that a rollback made `version` current again. Only
    /// rollout failures (deploy, verify, served) carry it.
    pub(crate) fn with_restored(mut self, version: Option<VersionId>) -> RenewError {
        if let RenewError::Hook { restored, .. }
        | RenewError::FleetDeploy { restored, .. }
        | RenewError::Verify { restored, .. }
        | RenewError::Served { restored, .. } = &mut self
        {
            *restored = version;
        }
        self
    }
}

fn restored_suffix(restored: Option<VersionId>) -> String {
    match restored {
        Some(version) => format!("; rolled back to {version}"),
        // No previous version, or one unfit to serve (expired, other names or key type, bad
        // files): the audit log says which.
        None => "; not rolled back, it stays current".to_owned(),
    }
}

fn gate_message(reason: Reason, until: OffsetDateTime) -> String {
    let until = until
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| until.to_string());
    let why = match reason {
        Reason::RateLimited => format!(
            "an identifier had {} failed authorizations within the last hour, the CA's limit",
            crate::schedule::plan::MAX_FAILED_AUTHORIZATIONS_PER_HOUR
        ),
        _ => "the CA asked not to be asked again before then (Retry-After)".to_owned(),
    };
    format!(
        "not renewing before {until}: {why}; --force does not override the CA's limits, retry after {until}"
    )
}

fn served_suffix(restored: Option<VersionId>, kept: bool) -> String {
    if kept {
        "; kept as current".to_owned()
    } else {
        restored_suffix(restored)
    }
}

impl RenewError {
    /// Whether the CA answered that it no longer knows certinel's account.
    pub fn is_account_gone(&self) -> bool {
        matches!(self, Self::Acme { source, .. } if source.is_account_gone())
    }

    /// The stage that failed: `account`, `order`, `challenge`, `finalize`, `download`,
    /// `deploy`, `verify`, `state` or `config`.
    pub fn stage(&self) -> &'static str {
        match self {
            Self::Acme { source, .. } => source.stage().as_str(),
            Self::Hook { .. } | Self::FleetDeploy { .. } => "deploy",
            Self::Verify { .. } | Self::Served { .. } => "verify",
            Self::Store { .. } | Self::Scratch(_) => "state",
            Self::Lock { .. } => "lock",
            Self::UnknownCertificate(_) | Self::NoAcme => "config",
            Self::NothingToRevoke(_) => "revoke",
            Self::Gated { .. } => "schedule",
        }
    }

    /// What went wrong: the ACME problem (`rateLimited`, `network`, ...), `hook` for a
    /// deploy command, `verify`, `stale` or `unreachable` for the served-certificate check,
    /// `io` or `config`.
    pub fn problem(&self) -> &str {
        match self {
            Self::Acme { source, .. } => source.problem(),
            Self::Hook { .. } | Self::FleetDeploy { .. } => "hook",
            Self::Verify { .. } => "verify",
            Self::Served { source, .. } => source.problem(),
            Self::Store { .. } | Self::Scratch(_) => "io",
            Self::Lock {
                source: LockError::Held,
                ..
            } => "in_progress",
            Self::Lock { .. } => "io",
            Self::UnknownCertificate(_) | Self::NoAcme => "config",
            Self::NothingToRevoke(_) => "notIssued",
            Self::Gated {
                reason: Reason::RateLimited,
                ..
            } => "rateLimited",
            Self::Gated { .. } => "retryAfter",
        }
    }
}
