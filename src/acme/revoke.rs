//! Certificate revocation (RFC 8555 section 7.6), signed with the account key.

use std::fmt;
use std::str::FromStr;

use instant_acme::RevocationRequest;
use rustls::pki_types::CertificateDer;

use crate::acme::error::retry_bad_nonce;
use crate::acme::{AcmeAccount, AcmeError, Stage};

/// Why a certificate is revoked: the CRL reason codes a subscriber may choose (RFC 5280
/// section 5.3.1, as restricted by the CA/Browser Forum baseline requirements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    /// No reason given.
    Unspecified,
    /// The private key leaked or may have leaked.
    KeyCompromise,
    /// The subscriber's affiliation or name changed.
    AffiliationChanged,
    /// A new certificate replaces this one.
    Superseded,
    /// The certificate is no longer needed.
    CessationOfOperation,
}

/// A `--reason` keyword that names no [`RevocationReason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown revocation reason {0:?}: expected unspecified, key-compromise, superseded, \
     cessation-of-operation or affiliation-changed"
)]
pub struct UnknownRevocationReason(String);

impl RevocationReason {
    /// The command-line keyword: `key-compromise`, `superseded`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "key-compromise",
            Self::AffiliationChanged => "affiliation-changed",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessation-of-operation",
        }
    }

    fn to_acme(self) -> instant_acme::RevocationReason {
        match self {
            Self::Unspecified => instant_acme::RevocationReason::Unspecified,
            Self::KeyCompromise => instant_acme::RevocationReason::KeyCompromise,
            Self::AffiliationChanged => instant_acme::RevocationReason::AffiliationChanged,
            Self::Superseded => instant_acme::RevocationReason::Superseded,
            Self::CessationOfOperation => instant_acme::RevocationReason::CessationOfOperation,
        }
    }
}

impl FromStr for RevocationReason {
    type Err = UnknownRevocationReason;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            Self::Unspecified,
            Self::KeyCompromise,
            Self::AffiliationChanged,
            Self::Superseded,
            Self::CessationOfOperation,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
        .ok_or_else(|| UnknownRevocationReason(text.to_owned()))
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Asks the CA to revoke `leaf_der` (the DER of the leaf certificate) for `reason`,
/// signing the request with the account key. The account must be the one that ordered it.
pub async fn revoke(
    account: &AcmeAccount,
    leaf_der: &[u8],
    reason: RevocationReason,
) -> Result<(), AcmeError> {
    let certificate = CertificateDer::from(leaf_der);
    let request = RevocationRequest {
        certificate: &certificate,
        reason: Some(reason.to_acme()),
    };
    retry_bad_nonce!(account.acme().revoke(&request).await)
        .map_err(|error| AcmeError::from_acme(Stage::Revoke, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_keyword_parses_back_to_itself() {
        for keyword in [
            "unspecified",
            "key-compromise",
            "affiliation-changed",
            "superseded",
            "cessation-of-operation",
        ] {
            let reason: RevocationReason = keyword.parse().unwrap();
            assert_eq!(reason.as_str(), keyword);
        }
    }

    #[test]
    fn ca_only_reasons_are_rejected() {
        assert!("ca-compromise".parse::<RevocationReason>().is_err());
        assert!("Superseded".parse::<RevocationReason>().is_err());
    }
}
