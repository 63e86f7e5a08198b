//! Judges what the CRL watch found: revoked is critical, a stale CRL or no verdict a
//! warning, not revoked nothing to report.

use crate::report::{Status, rfc3339};
use crate::scan::crl::verdict::CrlVerdict;
use crate::scan::crl::watch::RevocationStatus;

/// The row verdict for `status`: `(Critical, "revoked", ..)` with the revocation time and
/// reason code, `(Warning, "crl_stale" | "crl_error", ..)`, or `(Ok, "ok", ..)`.
pub(super) fn judge(status: &RevocationStatus) -> (Status, &'static str, String) {
    match &status.outcome {
        Ok(CrlVerdict::Revoked {
            revoked_at,
            reason_code,
        }) => {
            let reason = match reason_code {
                Some(code) => format!("reason code {code} ({})", reason_name(*code)),
                None => "no reason code".to_owned(),
            };
            let detail = format!(
                "revoked at {} ({reason}) per {}",
                rfc3339(*revoked_at),
                status.url
            );
            (Status::Critical, "revoked", detail)
        }
        Ok(CrlVerdict::Stale { next_update }) => {
            let detail = format!(
                "the CRL at {} is past its nextUpdate {}",
                status.url,
                rfc3339(*next_update)
            );
            (Status::Warning, "crl_stale", detail)
        }
        Ok(CrlVerdict::NotRevoked { .. }) => (Status::Ok, "ok", String::new()),
        Err(error) => {
            let detail = format!(
                "no revocation verdict from {} ({}): {error}",
                status.url,
                error.keyword()
            );
            (Status::Warning, "crl_error", detail)
        }
    }
}

/// The RFC 5280 §5.3.1 name of a CRLReason code.
pub(crate) fn reason_name(code: u8) -> &'static str {
    match code {
        0 => "unspecified",
        1 => "keyCompromise",
        2 => "cACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        _ => "unknown",
    }
}
