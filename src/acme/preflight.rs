//! The CAA preflight: before an order is placed, every DNS identifier's relevant CAA record
//! set (RFC 8659: the name, then its parents; CNAMEs followed) must let this CA, this
//! account and this challenge type issue. A refusal costs nothing at the CA: no order, no
//! failed authorization counted against its limits. A DNS failure only warns, because the
//! CA checks CAA itself and decides.

use std::net::SocketAddr;

use crate::acme::caa::{self, CaaRecord, CaaRequest};
use crate::acme::solvers::{CaaAnswer, WireError, caa_records, system_nameserver};
use crate::acme::{AcmeAccount, AcmeError, IssueRequest};
use crate::cert::{ChallengeSpec, Identifier};

/// How many CNAMEs one lookup follows before it gives up.
const MAX_ALIASES: usize = 8;

/// Where the preflight asks and whom it expects in CAA records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreflightSettings {
    /// The DNS server asked for CAA records; `None`: the first `nameserver` of
    /// `/etc/resolv.conf`.
    pub resolver: Option<SocketAddr>,
    /// The CA's issuer domain names, overriding the directory's `meta.caaIdentities`.
    pub caa_identities: Vec<String>,
}

/// What the CAA preflight refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CAA at {owner} forbids issuing for {identifier}: {reason} ({records})")]
pub struct CaaRefusal {
    /// The identifier refused.
    pub identifier: String,
    /// Where the relevant record set was found (the identifier or a parent).
    pub owner: String,
    /// The relevant records, as text.
    pub records: String,
    /// What they forbid.
    pub reason: String,
}

/// Checks CAA for every DNS identifier of `request`; `Err` (stage `preflight`, problem
/// `caa`) when the records forbid the issuance. Skipped, with a log line, when neither
/// the configuration nor the directory names the CA's issuer domains.
pub(crate) async fn check_caa(
    account: &AcmeAccount,
    request: &IssueRequest,
) -> Result<(), AcmeError> {
    let settings = account.preflight_settings();
    let issuer_domains: Vec<String> = if settings.caa_identities.is_empty() {
        account.directory_facts().caa_identities
    } else {
        settings.caa_identities.clone()
    };
    if issuer_domains.is_empty() {
        tracing::info!(
            directory = %account.directory(),
            "CAA preflight skipped: neither caa_identities nor the directory's caaIdentities name the CA"
        );
        return Ok(());
    }
    let server = match settings.resolver {
        Some(resolver) => resolver,
        None => match system_nameserver().await {
            Some(server) => server,
            None => {
                tracing::warn!("CAA preflight skipped: no preflight_resolver and no nameserver");
                return Ok(());
            }
        },
    };
    let issuer_domains: Vec<String> = issuer_domains
        .iter()
        .map(|domain| domain.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    let method = method_of(&request.challenge);
    for identifier in &request.names {
        // CAA is defined for DNS names only (RFC 8738 leaves IP addresses out).
        let Identifier::Dns(name) = identifier else {
            continue;
        };
        let relevant = match relevant_record_set(server, name).await {
            Ok(relevant) => relevant,
            Err(error) => {
                tracing::warn!(
                    identifier = %name,
                    %server,
                    %error,
                    "CAA preflight could not look up CAA; the CA will check it itself"
                );
                continue;
            }
        };
        let Some((owner, records)) = relevant else {
            tracing::debug!(identifier = %name, "no CAA records: any CA may issue");
            continue;
        };
        let verdict = caa::evaluate(
            &records,
            &CaaRequest {
                wildcard: name.starts_with("*."),
                issuer_domains: &issuer_domains,
                account_uri: account.url(),
                method,
            },
        );
        if let Err(denial) = verdict {
            let found: Vec<String> = records.iter().map(CaaRecord::to_string).collect();
            return Err(AcmeError::CaaForbids(Box::new(CaaRefusal {
                identifier: name.clone(),
                owner,
                records: found.join("; "),
                reason: denial.to_string(),
            })));
        }
        tracing::debug!(identifier = %name, %owner, "CAA allows this CA");
    }
    Ok(())
}

/// The ACME method name CAA's `validationmethods` uses for a challenge.
fn method_of(challenge: &ChallengeSpec) -> &'static str {
    match challenge {
        ChallengeSpec::Http01Listen(_) | ChallengeSpec::Http01Webroot(_) => "http-01",
        ChallengeSpec::TlsAlpn01Listen(_) => "tls-alpn-01",
        ChallengeSpec::Dns01(_) => "dns-01",
    }
}

/// Why the CAA records of a name could not be found.
#[derive(Debug, thiserror::Error)]
enum CaaLookupError {
    /// A CAA query failed.
    #[error(transparent)]
    Dns(#[from] WireError),
    /// A CNAME chain longer than certinel follows.
    #[error("{name}: more than {MAX_ALIASES} CNAMEs")]
    TooManyAliases { name: String },
}

/// The first non-empty CAA record set on the way from `identifier` up to its top-level
/// domain, with the name it was found at; `None` when every set is empty.
async fn relevant_record_set(
    server: SocketAddr,
    identifier: &str,
) -> Result<Option<(String, Vec<CaaRecord>)>, CaaLookupError> {
    for name in caa::names_to_climb(identifier) {
        let records = records_following_aliases(server, &name).await?;
        if !records.is_empty() {
            return Ok(Some((name, records)));
        }
    }
    Ok(None)
}

/// The CAA records at `name`, following CNAMEs the server's answer left unresolved.
async fn records_following_aliases(
    server: SocketAddr,
    name: &str,
) -> Result<Vec<CaaRecord>, CaaLookupError> {
    let mut current = name.to_owned();
    for _ in 0..=MAX_ALIASES {
        match caa_records(server, &current).await? {
            CaaAnswer::Records(records) => return Ok(records),
            CaaAnswer::Alias(target) => current = target,
        }
    }
    Err(CaaLookupError::TooManyAliases {
        name: name.to_owned(),
    })
}
