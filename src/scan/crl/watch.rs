//! Checks a presented chain's leaf against the CRLs its distribution points name.

use std::time::Duration;

use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::scan::crl::fetch::{CrlFetchError, CrlFetcher};
use crate::scan::crl::verdict::{self, CrlCheckError, CrlVerdict};
use crate::scan::files::{FileReport, read_der_chain};

/// The most distribution points tried for one leaf. A leaf names one or two in practice;
/// a hostile one naming thousands must not turn one probe into thousands of fetches.
pub const MAX_DISTRIBUTION_POINTS: usize = 4;

/// What the CRL watch found for one presented leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationStatus {
    /// The distribution point that decided (or the last one tried, on error).
    pub url: String,
    /// The verdict, or why there is none.
    pub outcome: Result<CrlVerdict, RevocationError>,
}

/// Why a leaf with distribution points got no revocation verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The chain holds only the leaf, so no issuer key can verify the CRL.
    #[error("the issuer certificate is not presented; cannot verify the CRL")]
    NoIssuer,
    /// The CRL could not be fetched.
    #[error(transparent)]
    Fetch(#[from] CrlFetchError),
    /// The CRL could not be trusted.
    #[error(transparent)]
    Check(#[from] CrlCheckError),
}

impl RevocationError {
    /// The stable keyword (`no_issuer`, or the fetch or check error's).
    pub fn keyword(&self) -> &'static str {
        match self {
            RevocationError::NoIssuer => "no_issuer",
            RevocationError::Fetch(error) => error.keyword(),
            RevocationError::Check(error) => error.keyword(),
        }
    }
}

/// The revocation status of `chain`'s leaf (checked with the next certificate as its
/// issuer) at `now`, reusing CRLs fetched less than `interval` ago. `None` when the leaf
/// names no `http://` distribution point. The first [`MAX_DISTRIBUTION_POINTS`] points
/// are tried in order until one gives a verdict.
pub async fn check_chain(
    fetcher: &CrlFetcher,
    chain: &[CertificateDer<'_>],
    now: OffsetDateTime,
    interval: Duration,
) -> Option<RevocationStatus> {
    let leaf = chain.first()?;
    let mut urls = verdict::distribution_points(leaf);
    urls.truncate(MAX_DISTRIBUTION_POINTS);
    let first_url = urls.first()?.clone();
    let Some(issuer) = chain.get(1) else {
        return Some(RevocationStatus {
            url: first_url,
            outcome: Err(RevocationError::NoIssuer),
        });
    };
    let mut last = None;
    for url in urls {
        let outcome = match fetcher.get(&url, now, interval).await {
            Ok(crl) => verdict::check(leaf, issuer, &crl.der, now).map_err(RevocationError::from),
            Err(error) => Err(RevocationError::from(error)),
        };
        if let Err(error) = &outcome {
            tracing::info!(target: "certinel::crl", url, %error, "no revocation verdict from this CRL");
        }
        let decided = outcome.is_ok();
        last = Some(RevocationStatus { url, outcome });
        if decided {
            break;
        }
    }
    last
}

/// Fills in the revocation status of every readable file in `reports`, reading each file
/// again for its DER. A file holding the leaf alone is left unchecked (`None`): the
/// issuer's key is needed to verify the CRL, and a bare leaf file is normal next to a
/// separate chain file.
pub async fn check_files(
    fetcher: &CrlFetcher,
    reports: &mut [FileReport],
    now: OffsetDateTime,
    interval: Duration,
) {
    for report in reports.iter_mut().filter(|report| report.outcome.is_ok()) {
        let path = report.path.clone();
        let Ok(Ok(chain)) = tokio::task::spawn_blocking(move || read_der_chain(&path)).await else {
            continue;
        };
        if chain.len() >= 2 {
            report.revocation = check_chain(fetcher, &chain, now, interval).await;
        }
    }
}

#[cfg(test)]
mod tests;
