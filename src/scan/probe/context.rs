//! What every probe shares: resolver, trust roots, TLS client configurations, the
//! process's connection budget and the per-target address cap.

use crate::scan::budget::ConnectionBudget;

use super::tls_client::TlsClients;

/// Most addresses probed per target unless [`ProbeContext::with_max_addresses`] says.
pub const DEFAULT_MAX_ADDRESSES: usize = 16;

/// Shared, long-lived things every probe needs.
#[derive(Debug)]
pub struct ProbeContext {
    /// Name resolution (with any hosts-file override).
    pub resolver: crate::scan::resolve::Resolver,
    /// Trust roots per `ca_file`.
    pub trust: crate::scan::trust::TrustCache,
    /// The process's connection budget: every probe socket holds one of its permits.
    pub budget: ConnectionBudget,
    /// Most addresses probed per target.
    pub max_addresses: usize,
    /// rustls client configurations, built once and shared.
    pub(super) tls: TlsClients,
    /// The CRL cache, when `[scanner] crl` is on: scheduled probes then check the leaf
    /// against the CRLs its distribution points name.
    pub crl: Option<std::sync::Arc<crate::scan::crl::fetch::CrlFetcher>>,
}

impl ProbeContext {
    /// A context that resolves with `resolver`, verifies against `trust` and opens sockets
    /// within `budget`.
    pub fn new(
        resolver: crate::scan::resolve::Resolver,
        trust: crate::scan::trust::TrustCache,
        budget: ConnectionBudget,
    ) -> ProbeContext {
        ProbeContext {
            resolver,
            trust,
            budget,
            max_addresses: DEFAULT_MAX_ADDRESSES,
            tls: TlsClients::new(),
            crl: None,
        }
    }

    /// This context, checking revocation with `fetcher` on scheduled probes.
    pub fn with_crl(
        self,
        fetcher: std::sync::Arc<crate::scan::crl::fetch::CrlFetcher>,
    ) -> ProbeContext {
        ProbeContext {
            crl: Some(fetcher),
            ..self
        }
    }

    /// This context, probing at most `max_addresses` addresses per target (at least one).
    pub fn with_max_addresses(self, max_addresses: usize) -> ProbeContext {
        ProbeContext {
            max_addresses: max_addresses.max(1),
            ..self
        }
    }
}
