//! Keeps one copy of each certificate's facts among the reports the state holds.
//! Thousands of endpoints behind a few CAs present the same intermediates (and behind a
//! load balancer the same leaves), whose subject and issuer names, SAN lists, serials and
//! fingerprints would otherwise be copied into every kept report.
//!
//! Entries are weak: a certificate no kept report presents any more is freed with the
//! last such report (a probe result replaced, an endpoint removed by a reload or a
//! file_sd change), and dead entries are swept once the table has doubled.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use crate::scan::inspect::CertFacts;
use crate::scan::probe::EndpointReport;

/// The table size below which dead entries are not worth a sweep.
const MIN_SWEEP_ENTRIES: usize = 1024;

/// Shared certificate facts by SHA-256 fingerprint.
#[derive(Debug, Default)]
pub(super) struct CertInterner {
    /// The facts of a certificate are a function of its DER, which the fingerprint names.
    by_fingerprint: HashMap<String, Weak<CertFacts>>,
    /// Entries left after the last sweep.
    swept_to: usize,
}

impl CertInterner {
    /// Points every certificate of `report`'s handshakes at the copy already held, or
    /// makes its own the shared one.
    pub(super) fn intern_report(&mut self, report: &mut EndpointReport) {
        let handshakes = report
            .addresses
            .iter_mut()
            .filter_map(|address| address.outcome.as_mut().ok());
        for handshake in handshakes {
            for entry in &mut handshake.chain.entries {
                entry.facts = self.intern(&entry.facts);
            }
        }
        if self.by_fingerprint.len() > 2 * self.swept_to.max(MIN_SWEEP_ENTRIES) {
            self.by_fingerprint
                .retain(|_, facts| facts.strong_count() > 0);
            self.swept_to = self.by_fingerprint.len();
        }
    }

    fn intern(&mut self, facts: &Arc<CertFacts>) -> Arc<CertFacts> {
        let held = self
            .by_fingerprint
            .get(facts.fingerprint_sha256.as_str())
            .and_then(Weak::upgrade);
        match held {
            Some(shared) if *shared == **facts => shared,
            // Compared whole: facts built by hand (tests) may share a fingerprint; the
            // first stays shared, the other is kept unshared.
            Some(_) => Arc::clone(facts),
            None => {
                self.by_fingerprint
                    .insert(facts.fingerprint_sha256.clone(), Arc::downgrade(facts));
                Arc::clone(facts)
            }
        }
    }

    /// Certificates with a live entry, for tests.
    #[cfg(test)]
    pub(super) fn live(&self) -> usize {
        self.by_fingerprint
            .values()
            .filter(|facts| facts.strong_count() > 0)
            .count()
    }
}
