//! Decides a leaf's revocation status from a CRL. Pure: the CRL bytes, the certificates
//! and `now` come in as parameters; no clock, no sockets, no files.

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

/// What a verified CRL says about one leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlVerdict {
    /// The leaf's serial is listed. A revoked serial stays revoked, so this verdict holds
    /// even when the CRL is past its nextUpdate.
    Revoked {
        /// When the CA revoked it (the entry's revocationDate).
        revoked_at: OffsetDateTime,
        /// The CRL entry's reasonCode (RFC 5280 §5.3.1), when the CA gave one.
        reason_code: Option<u8>,
    },
    /// The serial is not listed and the CRL is current.
    NotRevoked {
        /// The CRL's nextUpdate, when it has one.
        next_update: Option<OffsetDateTime>,
    },
    /// The serial is not listed, but the CRL is past its nextUpdate: the CA has not
    /// published what happened since.
    Stale {
        /// The nextUpdate that has passed.
        next_update: OffsetDateTime,
    },
}

impl CrlVerdict {
    /// The stable keyword (`revoked`, `not_revoked`, `crl_stale`).
    pub fn keyword(&self) -> &'static str {
        match self {
            CrlVerdict::Revoked { .. } => "revoked",
            CrlVerdict::NotRevoked { .. } => "not_revoked",
            CrlVerdict::Stale { .. } => "crl_stale",
        }
    }
}

/// Why no verdict could be reached. A CRL that cannot be trusted is an error, never a
/// verdict: a forged "not revoked" must not read as good news, nor a forged entry as a
/// revocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrlCheckError {
    /// The CRL is not a DER CertificateList.
    #[error("the CRL does not parse: {0}")]
    MalformedCrl(String),
    /// The leaf or issuer certificate does not parse.
    #[error("the {role} certificate does not parse: {detail}")]
    MalformedCertificate {
        /// `leaf` or `issuer`.
        role: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// The certificate given as issuer did not issue the leaf (names differ).
    #[error("the presented issuer ({issuer}) is not the leaf's issuer ({leaf_issuer})")]
    IssuerNotLeafIssuer {
        /// The issuer certificate's subject.
        issuer: String,
        /// The leaf's issuer name.
        leaf_issuer: String,
    },
    /// The CRL names another issuer than the leaf's.
    #[error("the CRL is issued by {crl_issuer}, not by the leaf's issuer {leaf_issuer}")]
    IssuerMismatch {
        /// The CRL's issuer name.
        crl_issuer: String,
        /// The leaf's issuer name.
        leaf_issuer: String,
    },
    /// The issuer's keyUsage does not allow signing CRLs.
    #[error("the issuer's keyUsage does not include cRLSign")]
    IssuerCannotSignCrls,
    /// The CRL's signature does not verify with the issuer's public key.
    #[error("the CRL's signature does not verify with the issuer's key")]
    BadSignature,
    /// The CRL's thisUpdate is in the future.
    #[error("the CRL's thisUpdate {this_update} is in the future")]
    NotYetValid {
        /// The CRL's thisUpdate.
        this_update: OffsetDateTime,
    },
}

impl CrlCheckError {
    /// The stable keyword used as the `reason` label of fetch/check error metrics.
    pub fn keyword(&self) -> &'static str {
        match self {
            CrlCheckError::MalformedCrl(_) => "malformed_crl",
            CrlCheckError::MalformedCertificate { .. } => "malformed_certificate",
            CrlCheckError::IssuerNotLeafIssuer { .. } | CrlCheckError::IssuerMismatch { .. } => {
                "issuer_mismatch"
            }
            CrlCheckError::IssuerCannotSignCrls => "issuer_cannot_sign_crls",
            CrlCheckError::BadSignature => "bad_signature",
            CrlCheckError::NotYetValid { .. } => "not_yet_valid",
        }
    }
}

/// Checks `leaf` (DER) against `crl` (DER), signed by `issuer` (DER, the certificate that
/// follows the leaf in the presented chain), at `now`.
///
/// The CRL must name the leaf's issuer, be signed by the issuer's key (and the issuer
/// may sign CRLs) and not start in the future; then the leaf's serial decides.
pub fn check(
    leaf: &[u8],
    issuer: &[u8],
    crl: &[u8],
    now: OffsetDateTime,
) -> Result<CrlVerdict, CrlCheckError> {
    let leaf = parse_certificate(leaf, "leaf")?;
    let issuer = parse_certificate(issuer, "issuer")?;
    let (_, crl) = CertificateRevocationList::from_der(crl)
        .map_err(|error| CrlCheckError::MalformedCrl(error.to_string()))?;

    if issuer.subject().as_raw() != leaf.issuer().as_raw() {
        return Err(CrlCheckError::IssuerNotLeafIssuer {
            issuer: issuer.subject().to_string(),
            leaf_issuer: leaf.issuer().to_string(),
        });
    }
    if crl.issuer().as_raw() != leaf.issuer().as_raw() {
        return Err(CrlCheckError::IssuerMismatch {
            crl_issuer: crl.issuer().to_string(),
            leaf_issuer: leaf.issuer().to_string(),
        });
    }
    if let Ok(Some(usage)) = issuer.key_usage() {
        if !usage.value.crl_sign() {
            return Err(CrlCheckError::IssuerCannotSignCrls);
        }
    }
    crl.verify_signature(issuer.public_key())
        .map_err(|_| CrlCheckError::BadSignature)?;

    let this_update = unix_time(crl.last_update().timestamp())?;
    if this_update > now {
        return Err(CrlCheckError::NotYetValid { this_update });
    }
    let next_update = crl
        .next_update()
        .map(|time| unix_time(time.timestamp()))
        .transpose()?;

    let serial = trim_leading_zeros(leaf.raw_serial());
    for entry in crl.iter_revoked_certificates() {
        if trim_leading_zeros(entry.raw_serial()) == serial {
            return Ok(CrlVerdict::Revoked {
                revoked_at: unix_time(entry.revocation_date.timestamp())?,
                reason_code: entry.reason_code().map(|(_, code)| code.0),
            });
        }
    }
    Ok(match next_update {
        Some(next_update) if next_update < now => CrlVerdict::Stale { next_update },
        next_update => CrlVerdict::NotRevoked { next_update },
    })
}

/// The CRL's nextUpdate, without checking anything else: how long a fetched CRL may be
/// cached. `None` when the CRL does not parse or has no nextUpdate.
pub fn next_update(crl: &[u8]) -> Option<OffsetDateTime> {
    let (_, crl) = CertificateRevocationList::from_der(crl).ok()?;
    OffsetDateTime::from_unix_timestamp(crl.next_update()?.timestamp()).ok()
}

/// The `http://` URLs of the leaf's CRL Distribution Points, in order, without
/// duplicates. Other schemes (https, ldap, file) are skipped: certinel fetches CRLs over
/// plain HTTP only, as RFC 5280 §4.2.1.13 expects of them. A leaf that does not parse
/// has none.
pub fn distribution_points(leaf: &[u8]) -> Vec<String> {
    let Ok((_, leaf)) = X509Certificate::from_der(leaf) else {
        return Vec::new();
    };
    let mut urls: Vec<String> = Vec::new();
    for extension in leaf.extensions() {
        let ParsedExtension::CRLDistributionPoints(points) = extension.parsed_extension() else {
            continue;
        };
        for point in points.iter() {
            let Some(DistributionPointName::FullName(names)) = &point.distribution_point else {
                continue;
            };
            for name in names {
                if let GeneralName::URI(uri) = name {
                    let is_http = uri
                        .get(..7)
                        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"));
                    if is_http && !urls.iter().any(|known| known == uri) {
                        urls.push((*uri).to_owned());
                    }
                }
            }
        }
    }
    urls
}

fn parse_certificate<'a>(
    der: &'a [u8],
    role: &'static str,
) -> Result<X509Certificate<'a>, CrlCheckError> {
    X509Certificate::from_der(der)
        .map(|(_, certificate)| certificate)
        .map_err(|error| CrlCheckError::MalformedCertificate {
            role,
            detail: error.to_string(),
        })
}

fn unix_time(seconds: i64) -> Result<OffsetDateTime, CrlCheckError> {
    OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|error| CrlCheckError::MalformedCrl(error.to_string()))
}

fn trim_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests;
