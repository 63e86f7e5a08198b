//! Renders the CRL watch: each endpoint leaf's revocation verdict and the CRLs held.

use crate::metrics::names::{self, MetricDef};
use crate::metrics::render::{Sink, flag, timestamp};
use crate::scan::crl::fetch::CrlSummary;
use crate::scan::crl::verdict::CrlVerdict;
use crate::scan::crl::watch::RevocationStatus;

/// The three families of one kind of target: revoked, revocation time, CRL error.
pub(super) struct RevocationDefs {
    revoked: MetricDef,
    revocation_time: MetricDef,
    crl_error: MetricDef,
}

/// The families of an address's leaf (`labels`: target, ip, sni).
pub(super) const ENDPOINT: RevocationDefs = RevocationDefs {
    revoked: names::ENDPOINT_CERT_REVOKED,
    revocation_time: names::ENDPOINT_CERT_REVOCATION_TIME,
    crl_error: names::ENDPOINT_CRL_ERROR_INFO,
};

/// The families of a file's leaf (`labels`: path).
pub(super) const FILE: RevocationDefs = RevocationDefs {
    revoked: names::FILE_CERT_REVOKED,
    revocation_time: names::FILE_CERT_REVOCATION_TIME,
    crl_error: names::FILE_CRL_ERROR_INFO,
};

/// The revocation series of one leaf in the families `defs` ([`ENDPOINT`] or [`FILE`]).
/// Nothing when the leaf names no CRL or CRL checking is off.
pub(super) fn push_status(
    families: &mut impl Sink,
    defs: &RevocationDefs,
    labels: &[(&str, &str)],
    status: Option<&RevocationStatus>,
) {
    let RevocationDefs {
        revoked,
        revocation_time,
        crl_error,
    } = *defs;
    let Some(status) = status else {
        return;
    };
    match &status.outcome {
        Ok(CrlVerdict::Revoked {
            revoked_at,
            reason_code,
        }) => {
            families.push(revoked, labels, 1.0);
            let code = reason_code.map(|code| code.to_string()).unwrap_or_default();
            let mut with_code = labels.to_vec();
            with_code.push(("reason_code", code.as_str()));
            families.push(revocation_time, &with_code, timestamp(*revoked_at));
        }
        Ok(CrlVerdict::NotRevoked { .. } | CrlVerdict::Stale { .. }) => {
            families.push(revoked, labels, flag(false));
        }
        Err(error) => {
            let mut with_reason = labels.to_vec();
            with_reason.push(("reason", error.keyword()));
            families.push(crl_error, &with_reason, 1.0);
        }
    }
}

/// The CRLs the fetcher holds (nextUpdate per URL) and its fetch errors by reason.
pub(super) fn push_crls(families: &mut impl Sink, summary: &CrlSummary) {
    for (url, next_update) in &summary.next_updates {
        if let Some(next_update) = next_update {
            families.push(
                names::CRL_NEXT_UPDATE,
                &[("url", url.as_str())],
                timestamp(*next_update),
            );
        }
    }
    for (reason, count) in &summary.fetch_errors {
        families.push(
            names::CRL_FETCH_ERRORS,
            &[("reason", reason)],
            *count as f64,
        );
    }
}
