//! Checks a presented chain's leaf against the CRLs its distribution points name.

use std::time::Duration;

use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::scan::crl::fetch::{CrlFetchError, CrlFetcher};
use crate::scan::crl::verdict::{self, CrlCheckError, CrlVerdict};

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
/// names no `http://` distribution point. The points are tried in order until one gives
/// a verdict.
pub async fn check_chain(
    fetcher: &CrlFetcher,
    chain: &[CertificateDer<'_>],
    now: OffsetDateTime,
    interval: Duration,
) -> Option<RevocationStatus> {
    let leaf = chain.first()?;
    let urls = verdict::distribution_points(leaf);
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
