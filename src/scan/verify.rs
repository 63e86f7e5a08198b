//! Decides whether a presented chain is trusted for a name at a moment, and says why not.
//! Pure: the trust roots, the name and the time are parameters.

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::scan::inspect::{CertFacts, ChainEntry, ChainFacts, Role};
use crate::scan::trust::TrustRoots;

/// Why a chain is not (fully) acceptable. The keyword is stable: it is a metric label,
/// a JSON field and a CLI status reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A certificate in the chain is past its notAfter.
    Expired,
    /// A certificate in the chain is before its notBefore.
    NotYetValid,
    /// The leaf is not valid for the requested name.
    HostnameMismatch,
    /// The leaf is self-signed and not a trusted root.
    SelfSigned,
    /// The leaf's issuer is neither presented nor trusted, but a trusted root could exist
    /// above a missing intermediate.
    MissingIntermediate,
    /// No path to a trusted root can be built.
    UnknownIssuer,
    /// The chain verifies, but certificates are not presented leaf-first in issuing order.
    WrongChainOrder,
    /// A signature in the chain does not verify.
    BadSignature,
    /// A certificate in the chain marks an extension critical that is not understood, so
    /// TLS clients refuse it.
    UnsupportedCriticalExtension,
    /// The certificate is not usable for TLS server authentication, or is malformed.
    Invalid,
}

impl Reason {
    /// The stable keyword (`expired`, `hostname_mismatch`, ...).
    pub fn keyword(self) -> &'static str {
        match self {
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::HostnameMismatch => "hostname_mismatch",
            Reason::SelfSigned => "self_signed",
            Reason::MissingIntermediate => "missing_intermediate",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::WrongChainOrder => "wrong_chain_order",
            Reason::BadSignature => "bad_signature",
            Reason::UnsupportedCriticalExtension => "unsupported_critical_extension",
            Reason::Invalid => "invalid",
        }
    }
}

/// The outcome of verifying one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// A path to a trusted root was built and the leaf is valid for the name.
    pub verified: bool,
    /// The most important problem; may be set on a verified chain for a lint such as
    /// [`Reason::WrongChainOrder`].
    pub reason: Option<Reason>,
    /// Human-readable detail for logs and the table output.
    pub detail: String,
}

/// Verifies `chain` (whose facts are `facts`) against `roots` at `now`; checks the leaf
/// against `server_name` when given (DNS name or IP literal).
///
/// Problems are ranked: validity dates first (computed from `facts`, so the answer does
/// not depend on the order in which webpki happens to check things), then path building,
/// then the name, then chain order (a lint on an otherwise verified chain). The detail
/// names the most important problem and lists the others after it.
pub fn verify_chain(
    chain: &[CertificateDer<'_>],
    facts: &ChainFacts,
    server_name: Option<&str>,
    roots: &TrustRoots,
    now: UnixTime,
) -> Verification {
    let Some(leaf_der) = chain.first() else {
        return Verification {
            verified: false,
            reason: Some(Reason::Invalid),
            detail: "no certificate presented".to_owned(),
        };
    };
    let Some(leaf) = facts.entries.first() else {
        return Verification {
            verified: false,
            reason: Some(Reason::Invalid),
            detail: "no facts about the presented chain".to_owned(),
        };
    };
    let end_entity = match webpki::EndEntityCert::try_from(leaf_der) {
        Ok(end_entity) => end_entity,
        Err(webpki::Error::UnsupportedCriticalExtension) => {
            return Verification {
                verified: false,
                reason: Some(Reason::UnsupportedCriticalExtension),
                detail: format!(
                    "{} marks an extension critical that TLS clients do not understand, \
                     so they refuse it",
                    name_of(leaf)
                ),
            };
        }
        Err(err) => {
            return Verification {
                verified: false,
                reason: Some(Reason::Invalid),
                detail: format!(
                    "{} cannot be used as a TLS certificate: {err}",
                    name_of(leaf)
                ),
            };
        }
    };

    let mut problems: Vec<Problem> = validity_problems(facts, unix_seconds(now));
    if let Err(problem) = check_path(&end_entity, chain, facts, roots, now, &problems) {
        problems.push(problem);
    }
    if let Some(server_name) = server_name {
        if let Err(problem) = check_name(&end_entity, leaf, server_name) {
            problems.push(problem);
        }
    }
    let verified = problems.is_empty();
    if !facts.in_order {
        problems.push(Problem {
            reason: Reason::WrongChainOrder,
            detail: "certificates are not sent leaf first in issuing order; strict clients \
                     may reject the chain"
                .to_owned(),
        });
    }

    let mut problems = problems.into_iter();
    match problems.next() {
        None => Verification {
            verified,
            reason: None,
            detail: format!("{} verified", name_of(leaf)),
        },
        Some(primary) => {
            let secondary: Vec<String> = problems.map(|problem| problem.detail).collect();
            let detail = if secondary.is_empty() {
                primary.detail
            } else {
                format!("{}; also: {}", primary.detail, secondary.join("; "))
            };
            Verification {
                verified,
                reason: Some(primary.reason),
                detail,
            }
        }
    }
}

/// The signature algorithms of aws-lc-rs, taken once instead of building a provider per
/// verification.
static SIGNATURE_ALGORITHMS: std::sync::LazyLock<
    &'static [&'static dyn rustls::pki_types::SignatureVerificationAlgorithm],
> = std::sync::LazyLock::new(|| {
    rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all
});

/// One problem found with a chain.
struct Problem {
    reason: Reason,
    detail: String,
}

/// Every presented certificate that is outside its validity at `now`, in chain order.
/// Roots sent along are skipped: clients use their own copy or none.
fn validity_problems(facts: &ChainFacts, now: i64) -> Vec<Problem> {
    facts
        .entries
        .iter()
        .filter(|entry| entry.role != Role::Root)
        .filter_map(|entry| {
            let certificate = &entry.facts;
            if now > certificate.not_after.unix_timestamp() {
                Some(Problem {
                    reason: Reason::Expired,
                    detail: format!(
                        "{} expired at {}",
                        name_of(entry),
                        rfc3339(certificate.not_after)
                    ),
                })
            } else if now < certificate.not_before.unix_timestamp() {
                Some(Problem {
                    reason: Reason::NotYetValid,
                    detail: format!(
                        "{} is not valid before {}",
                        name_of(entry),
                        rfc3339(certificate.not_before)
                    ),
                })
            } else {
                None
            }
        })
        .collect()
}

/// Builds a path from the leaf to a trust anchor. When dates already failed, the path is
/// built at a moment when every presented certificate is valid, so that the detail can
/// still say whether the chain is otherwise sound.
fn check_path(
    end_entity: &webpki::EndEntityCert<'_>,
    chain: &[CertificateDer<'_>],
    facts: &ChainFacts,
    roots: &TrustRoots,
    now: UnixTime,
    validity_problems: &[Problem],
) -> Result<(), Problem> {
    let when = if validity_problems.is_empty() {
        now
    } else {
        match moment_all_valid(facts) {
            Some(moment) => moment,
            None => return Ok(()),
        }
    };
    let algorithms = *SIGNATURE_ALGORITHMS;
    let intermediates = chain.get(1..).unwrap_or_default();
    let result = end_entity.verify_for_usage(
        algorithms,
        roots.anchors(),
        intermediates,
        when,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    );
    match result {
        Ok(_) => Ok(()),
        Err(err) => Err(classify_path_failure(&err, chain, facts, roots)),
    }
}

/// The latest notBefore of the presented non-root certificates, when it is before their
/// earliest notAfter.
fn moment_all_valid(facts: &ChainFacts) -> Option<UnixTime> {
    let presented = || {
        facts
            .entries
            .iter()
            .filter(|entry| entry.role != Role::Root)
    };
    let latest_start = presented().map(|entry| entry.facts.not_before).max()?;
    let earliest_end = presented().map(|entry| entry.facts.not_after).min()?;
    if latest_start > earliest_end {
        return None;
    }
    let seconds = u64::try_from(latest_start.unix_timestamp()).ok()?;
    Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        seconds,
    )))
}

fn classify_path_failure(
    error: &webpki::Error,
    chain: &[CertificateDer<'_>],
    facts: &ChainFacts,
    roots: &TrustRoots,
) -> Problem {
    // Invariant: `verify_chain` returns early when the chain or its facts are empty.
    let leaf = &facts.entries[0];
    if leaf.facts.self_signed && !roots.contains_certificate(&chain[0]) {
        return Problem {
            reason: Reason::SelfSigned,
            detail: format!("{} is self-signed and not a trusted root", name_of(leaf)),
        };
    }
    match error {
        webpki::Error::UnsupportedCriticalExtension => Problem {
            reason: Reason::UnsupportedCriticalExtension,
            detail: format!(
                "a certificate in the chain of {} marks an extension critical that TLS \
                 clients do not understand",
                name_of(leaf)
            ),
        },
        webpki::Error::InvalidSignatureForPublicKey => Problem {
            reason: Reason::BadSignature,
            detail: format!(
                "a signature in the chain of {} does not verify",
                name_of(leaf)
            ),
        },
        // Dates only reach here for certificates that are not part of a path to a trust
        // anchor anyway (a presented root): the path is what is missing.
        webpki::Error::UnknownIssuer
        | webpki::Error::CertExpired { .. }
        | webpki::Error::CertNotValidYet { .. } => missing_issuer(chain, facts, roots),
        other => Problem {
            reason: Reason::Invalid,
            detail: format!("{} does not verify: {other}", name_of(leaf)),
        },
    }
}

/// Follows issuer names from the leaf through the presented certificates and says where
/// the chain stops.
fn missing_issuer(chain: &[CertificateDer<'_>], facts: &ChainFacts, roots: &TrustRoots) -> Problem {
    let top = top_of_chain(facts);
    let entry = &facts.entries[top];
    if entry.facts.self_signed {
        return Problem {
            reason: Reason::UnknownIssuer,
            detail: format!(
                "the chain ends at {}, which is not a trusted root",
                name_of(entry)
            ),
        };
    }
    let issuer_trusted = chain
        .get(top)
        .and_then(|der| issuer_der(der.as_ref()))
        .is_some_and(|issuer| roots.has_subject(&issuer));
    if issuer_trusted {
        Problem {
            reason: Reason::UnknownIssuer,
            detail: format!(
                "no path from {} to a trusted root: issuer \"{}\" is trusted under that \
                 name but did not sign it",
                name_of(entry),
                entry.facts.issuer
            ),
        }
    } else {
        Problem {
            reason: Reason::MissingIntermediate,
            detail: format!(
                "issuer \"{}\" of {} is neither presented nor trusted; the server must also \
                 send the intermediate certificate",
                entry.facts.issuer,
                name_of(entry)
            ),
        }
    }
}

/// The index of the last certificate reached by following issuer names from the leaf
/// through the presented certificates (in any order).
fn top_of_chain(facts: &ChainFacts) -> usize {
    // Invariant: `verify_chain` returns early when the facts are empty.
    let mut current = 0;
    let mut visited = vec![false; facts.entries.len()];
    visited[0] = true;
    loop {
        let certificate = &facts.entries[current].facts;
        if certificate.self_signed {
            return current;
        }
        let next = (0..facts.entries.len()).find(|&index| {
            !visited[index] && facts.entries[index].facts.subject == certificate.issuer
        });
        match next {
            Some(index) => {
                visited[index] = true;
                current = index;
            }
            None => return current,
        }
    }
}

fn issuer_der(der: &[u8]) -> Option<Vec<u8>> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(certificate.issuer().as_raw().to_vec())
}

fn check_name(
    end_entity: &webpki::EndEntityCert<'_>,
    leaf: &ChainEntry,
    server_name: &str,
) -> Result<(), Problem> {
    let mismatch = |why: &str| Problem {
        reason: Reason::HostnameMismatch,
        detail: format!(
            "{} is not valid for \"{server_name}\"{why}; it covers {}",
            name_of(leaf),
            covered_names(&leaf.facts)
        ),
    };
    let Ok(name) = ServerName::try_from(server_name) else {
        return Err(mismatch(" (not a DNS name or IP address)"));
    };
    end_entity
        .verify_is_valid_for_subject_name(&name)
        .map_err(|_| mismatch(""))
}

fn covered_names(facts: &CertFacts) -> String {
    let names: Vec<String> = facts
        .dns_names
        .iter()
        .map(|dns| format!("DNS:{dns}"))
        .chain(facts.ip_addresses.iter().map(|ip| format!("IP:{ip}")))
        .collect();
    if names.is_empty() {
        "no subjectAltName".to_owned()
    } else {
        names.join(", ")
    }
}

/// `leaf "CN=example.com"`: how messages name a certificate.
fn name_of(entry: &ChainEntry) -> String {
    format!("{} \"{}\"", entry.role.label(), entry.facts.subject)
}

fn rfc3339(moment: OffsetDateTime) -> String {
    moment
        .format(&Rfc3339)
        .unwrap_or_else(|_| moment.unix_timestamp().to_string())
}

fn unix_seconds(now: UnixTime) -> i64 {
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
