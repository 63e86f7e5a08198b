//! ACME failures, each with the stage it happened in and a short problem keyword, the two
//! labels of `certinel_certificate_renewal_failures_total{stage,problem}`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;

use crate::acme::http::{BodyTooLarge, TransportError};

/// The step of the ACME flow that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Loading, creating or binding the account.
    Account,
    /// Checks before ordering (CAA).
    Preflight,
    /// Creating the order or reading its authorizations.
    Order,
    /// Answering challenges and waiting for validation.
    Challenge,
    /// Generating the key and CSR, finalizing, waiting for issuance.
    Finalize,
    /// Downloading the certificate chain.
    Download,
    /// Revoking a certificate.
    Revoke,
}

impl Stage {
    /// The metric label value: `account`, `preflight`, `order`, `challenge`, `finalize`, `download` or `revoke`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Preflight => "preflight",
            Self::Order => "order",
            Self::Challenge => "challenge",
            Self::Finalize => "finalize",
            Self::Download => "download",
            Self::Revoke => "revoke",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why obtaining a certificate failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The CA answered with an RFC 7807 problem document.
    #[error("{stage}: the ACME server said {problem}: {detail}")]
    Server {
        /// Where it happened.
        stage: Stage,
        /// The problem type without the `urn:ietf:params:acme:error:` prefix,
        /// for example `rateLimited` or `unauthorized`.
        problem: String,
        /// The server's explanation, with the identifier when the problem is about one.
        detail: String,
        /// When the CA said it may be asked again (`Retry-After` on a 429, a 503 or a
        /// `rateLimited` problem), if it did.
        retry_after: Option<OffsetDateTime>,
        /// The identifiers whose authorization the CA marked invalid (a failed validation),
        /// as configured (`*.example.com` for a wildcard). Empty for problems that are not
        /// about an authorization.
        invalid_authorizations: Vec<String>,
    },
    /// The CA could not be reached even after retrying.
    #[error("{stage}: cannot reach the ACME server: {source}")]
    Network {
        /// Where it happened.
        stage: Stage,
        /// What the transport reported on the last attempt.
        #[source]
        source: TransportError,
    },
    /// The CA's answer was larger than certinel reads ([`crate::acme::http::MAX_BODY_BYTES`]).
    #[error("{stage}: refused the ACME server's answer: {source}")]
    ResponseTooLarge {
        /// Where it happened.
        stage: Stage,
        /// The URL and the limit.
        #[source]
        source: BodyTooLarge,
    },
    /// The CA did not finish validation or issuance in time.
    #[error("{stage}: gave up after waiting {waited:?} for the ACME server")]
    Timeout {
        /// Where it happened.
        stage: Stage,
        /// How long certinel waited.
        waited: Duration,
    },
    /// The CA's answer made no sense to certinel (bad JSON, missing URL, unexpected state).
    #[error("{stage}: unexpected answer from the ACME server: {message}")]
    Protocol {
        /// Where it happened.
        stage: Stage,
        /// What was wrong.
        message: String,
    },
    /// The CA offers none of the challenge types certinel was configured to answer.
    #[error("challenge: the ACME server offers no {wanted} challenge for {identifier}")]
    ChallengeNotOffered {
        /// The configured challenge type.
        wanted: &'static str,
        /// The identifier whose authorization lacks it.
        identifier: String,
    },
    /// The built-in challenge responder could not start or write its files.
    #[error("challenge: cannot set up the {kind} responder at {location}: {source}")]
    Responder {
        /// `http-01`, `http-01 webroot` or `tls-alpn-01`.
        kind: &'static str,
        /// The listen address or webroot path.
        location: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The dns-01 provider could not publish, find or remove a TXT record.
    #[error("challenge: dns-01 for {name}: {message}")]
    Dns {
        /// `dnsUpdate` (the server refused or never answered the update, TSIG included),
        /// `dnsLookup` (CNAME lookup or zone mismatch), `dnsPropagation` (the value never
        /// became visible in time) or `dnsExec` (the exec command failed).
        problem: &'static str,
        /// The record's name (`_acme-challenge.example.com.` or its CNAME target).
        name: String,
        /// What went wrong, without secrets.
        message: String,
        /// The DNS or exec-hook error behind `message`, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Reading or writing the account credentials file failed.
    #[error("account: credentials file {path}: {source}")]
    AccountFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The settings or the request cannot work (empty name list, undecodable EAB key).
    #[error("{stage}: invalid setting: {message}")]
    Invalid {
        /// Where it was noticed.
        stage: Stage,
        /// What is wrong.
        message: String,
    },
    /// The CAA records of an identifier forbid this CA, account or challenge type; no
    /// order was placed.
    #[error("preflight: {0}")]
    CaaForbids(Box<crate::acme::preflight::CaaRefusal>),
    /// A recorded order can no longer be completed (already finalized, invalid or expired).
    #[error("order: the order {url} cannot be completed: it is {status}")]
    OrderUnusable {
        /// The order URL.
        url: String,
        /// Its status, e.g. `valid` or `invalid`.
        status: String,
    },
    /// The certificate asks for a profile the CA's directory does not advertise; no order
    /// was placed.
    #[error(
        "order: the ACME server does not offer the profile {profile:?} (it offers: {})",
        offered_list(offered)
    )]
    ProfileUnavailable {
        /// The configured profile.
        profile: String,
        /// The profiles the directory advertises.
        offered: Vec<String>,
    },
    /// Generating the private key or the CSR failed.
    #[error("finalize: cannot generate the {algorithm} key or CSR: {message}")]
    Key {
        /// The requested key type.
        algorithm: &'static str,
        /// What the generator reported.
        message: String,
    },
}

impl AcmeError {
    /// The step that failed (metric label `stage`).
    pub fn stage(&self) -> Stage {
        match self {
            Self::Server { stage, .. }
            | Self::Network { stage, .. }
            | Self::ResponseTooLarge { stage, .. }
            | Self::Timeout { stage, .. }
            | Self::Protocol { stage, .. }
            | Self::Invalid { stage, .. } => *stage,
            Self::ChallengeNotOffered { .. } | Self::Responder { .. } | Self::Dns { .. } => {
                Stage::Challenge
            }
            Self::AccountFile { .. } => Stage::Account,
            Self::OrderUnusable { .. } | Self::ProfileUnavailable { .. } => Stage::Order,
            Self::Key { .. } => Stage::Finalize,
            Self::CaaForbids(_) => Stage::Preflight,
        }
    }

    /// A short keyword for what went wrong (metric label `problem`): the ACME problem type
    /// for server problems (`rateLimited`, `unauthorized`, `dns`, `connection`, ...), else
    /// one of `network`, `responseTooLarge`, `timeout`, `protocol`, `challengeNotOffered`,
    /// `responder`, `io`, `invalid`, `key`, `orderUnusable`, `profileUnavailable`, `caa`, or
    /// for dns-01 `dnsUpdate`, `dnsLookup`,
    /// `dnsPropagation` and `dnsExec`.
    pub fn problem(&self) -> &str {
        match self {
            Self::Server { problem, .. } => problem,
            Self::Network { .. } => "network",
            Self::ResponseTooLarge { .. } => "responseTooLarge",
            Self::Timeout { .. } => "timeout",
            Self::Protocol { .. } => "protocol",
            Self::ChallengeNotOffered { .. } => "challengeNotOffered",
            Self::Responder { .. } => "responder",
            Self::Dns { problem, .. } => problem,
            Self::AccountFile { .. } => "io",
            Self::Invalid { .. } => "invalid",
            Self::Key { .. } => "key",
            Self::OrderUnusable { .. } => "orderUnusable",
            Self::ProfileUnavailable { .. } => "profileUnavailable",
            Self::CaaForbids(_) => "caa",
        }
    }

    /// Whether asking again later may well succeed: the CA was unreachable, too slow, or
    /// answered with a server error or a rate limit. An order kept across such a failure
    /// is worth resuming.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network { .. } | Self::Timeout { .. } => true,
            Self::Server { problem, .. } => {
                matches!(problem.as_str(), "serverInternal" | "rateLimited")
            }
            _ => false,
        }
    }

    /// When the CA said it may be asked again, if it sent a `Retry-After` with the problem.
    pub fn retry_after(&self) -> Option<OffsetDateTime> {
        match self {
            Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The identifiers whose authorization became invalid, which count against the CA's
    /// failed-validation limit; empty for every other failure.
    pub fn invalid_authorizations(&self) -> &[String] {
        match self {
            Self::Server {
                invalid_authorizations,
                ..
            } => invalid_authorizations,
            _ => &[],
        }
    }

    /// Attaches the `Retry-After` moment the HTTP layer saw on the CA's last error
    /// response to a server problem that has none yet.
    pub(crate) fn with_retry_after(mut self, at: Option<OffsetDateTime>) -> Self {
        if let Self::Server { retry_after, .. } = &mut self {
            if retry_after.is_none() {
                *retry_after = at;
            }
        }
        self
    }

    /// Whether the CA no longer knows the account that signed the request
    /// (`accountDoesNotExist`): it was reset or restarted, and a new account is needed.
    pub fn is_account_gone(&self) -> bool {
        matches!(self, Self::Server { problem, .. } if problem == "accountDoesNotExist")
    }

    /// Converts an instant-acme error met during `stage`.
    pub(crate) fn from_acme(stage: Stage, error: instant_acme::Error) -> Self {
        match error {
            instant_acme::Error::Api(problem) => Self::from_problem(stage, &problem),
            instant_acme::Error::Other(inner) => match inner.downcast::<TransportError>() {
                Ok(transport) => Self::Network {
                    stage,
                    source: *transport,
                },
                Err(other) => match other.downcast::<BodyTooLarge>() {
                    Ok(too_large) => Self::ResponseTooLarge {
                        stage,
                        source: *too_large,
                    },
                    Err(other) => Self::Protocol {
                        stage,
                        message: other.to_string(),
                    },
                },
            },
            instant_acme::Error::Timeout(_) => Self::Timeout {
                stage,
                waited: Duration::ZERO,
            },
            other => Self::Protocol {
                stage,
                message: other.to_string(),
            },
        }
    }

    /// Converts a problem document the CA sent during `stage`.
    pub(crate) fn from_problem(stage: Stage, problem: &instant_acme::Problem) -> Self {
        let mut detail = problem.detail.clone().unwrap_or_default();
        for sub in &problem.subproblems {
            detail.push_str("; ");
            detail.push_str(&sub.to_string());
        }
        Self::Server {
            stage,
            problem: problem_keyword(problem.r#type.as_deref()),
            detail,
            retry_after: None,
            invalid_authorizations: Vec::new(),
        }
    }
}

fn offered_list(offered: &[String]) -> String {
    if offered.is_empty() {
        "none".to_owned()
    } else {
        offered.join(", ")
    }
}

/// Whether the CA refused an order because of its `replaces` field (RFC 9773 section 5):
/// `alreadyReplaced`, a 409 `conflict`, or `malformed` mentioning replaces; or answered
/// with an order that does not echo it (instant-acme refuses such an order). The order is
/// then placed again without it.
pub fn is_replaces_rejection(error: &AcmeError) -> bool {
    match error {
        AcmeError::Protocol {
            stage: Stage::Order,
            message,
        } => message.contains("replaces field mismatch"),
        AcmeError::Server {
            stage: Stage::Order,
            problem,
            detail,
            ..
        } => {
            problem == "alreadyReplaced"
                || problem == "conflict"
                || (problem == "malformed" && detail.to_ascii_lowercase().contains("replaces"))
        }
        _ => false,
    }
}

/// How many times a step is repeated after instant-acme gave up on rejected nonces (it
/// tries three times itself). CAs that reject many nonces, such as Pebble with
/// `PEBBLE_WFE_NONCEREJECT=30`, need these extra rounds.
pub(crate) const BAD_NONCE_ROUNDS: u32 = 5;

/// Whether the CA rejected the request's nonce.
pub(crate) fn is_bad_nonce(problem: &instant_acme::Problem) -> bool {
    problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce")
}

/// Evaluates `$call` (an awaited instant-acme call) again while it fails with `badNonce`,
/// at most [`BAD_NONCE_ROUNDS`] extra times.
macro_rules! retry_bad_nonce {
    ($call:expr) => {{
        let mut rounds = 0;
        loop {
            match $call {
                Err(instant_acme::Error::Api(problem))
                    if $crate::acme::error::is_bad_nonce(&problem)
                        && rounds < $crate::acme::error::BAD_NONCE_ROUNDS =>
                {
                    rounds += 1;
                    tracing::debug!(rounds, "ACME server rejected the nonce again, repeating");
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use retry_bad_nonce;

/// Shortens an ACME problem type URN to its last part (`...:error:dns` → `dns`).
pub(crate) fn problem_keyword(problem_type: Option<&str>) -> String {
    match problem_type {
        None | Some("") => "unknown".to_owned(),
        Some(urn) => urn
            .strip_prefix("urn:ietf:params:acme:error:")
            .unwrap_or(urn)
            .to_owned(),
    }
}

#[cfg(test)]
mod tests;
