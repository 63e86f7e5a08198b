//! Every metric certinel exports, in one place: name, type and help text.
//!
//! This list is the metric contract. `docs/metrics.md` documents the same names; a unit test
//! checks that every name follows the Prometheus naming rules.

/// The prefix of every certinel metric name.
pub const PREFIX: &str = "certinel_";

/// The name prefixes of the families about managed certificates and the ACME CA that
/// renews them (as opposed to scanned endpoints and files).
pub const MANAGED_PREFIXES: &[&str] = &[
    "certinel_certificate_",
    "certinel_acme_",
    "certinel_clock_skew_",
];

/// Whether a metric is a gauge, a counter or a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A value that only goes up (name ends in `_total`).
    Counter,
    /// Observations counted into [`ACME_DURATION_BUCKETS`]-style buckets, with their sum
    /// and count.
    Histogram,
}

/// One metric family: its name, kind and `# HELP` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// The metric name.
    pub name: &'static str,
    /// Gauge, counter or histogram.
    pub kind: Kind,
    /// The `# HELP` line.
    pub help: &'static str,
}

const fn gauge(name: &'static str, help: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Gauge,
        help,
    }
}

const fn counter(name: &'static str, help: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Counter,
        help,
    }
}

const fn histogram(name: &'static str, help: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Histogram,
        help,
    }
}

/// 1 when the TLS handshake with this address completed.
pub const ENDPOINT_UP: MetricDef = gauge(
    "certinel_endpoint_up",
    "1 when the TLS handshake with this address completed, 0 otherwise.",
);
/// Leaf notAfter.
pub const ENDPOINT_CERT_NOT_AFTER: MetricDef = gauge(
    "certinel_endpoint_cert_not_after_timestamp_seconds",
    "End of validity of the leaf certificate, as a Unix timestamp.",
);
/// Leaf notBefore.
pub const ENDPOINT_CERT_NOT_BEFORE: MetricDef = gauge(
    "certinel_endpoint_cert_not_before_timestamp_seconds",
    "Start of validity of the leaf certificate, as a Unix timestamp.",
);
/// Seconds until the leaf expires, at scrape time.
pub const ENDPOINT_CERT_EXPIRY: MetricDef = gauge(
    "certinel_endpoint_cert_expiry_seconds",
    "Seconds until the leaf certificate expires, computed at scrape time; negative once expired.",
);
/// Earliest notAfter of the presented chain minus its trust anchor.
pub const ENDPOINT_CHAIN_EARLIEST_NOT_AFTER: MetricDef = gauge(
    "certinel_endpoint_chain_earliest_not_after_timestamp_seconds",
    "Earliest end of validity among the presented certificates, excluding a self-signed trust anchor.",
);
/// notAfter of each presented certificate.
pub const ENDPOINT_CHAIN_CERT_NOT_AFTER: MetricDef = gauge(
    "certinel_endpoint_chain_cert_not_after_timestamp_seconds",
    "End of validity of each presented certificate, by position and role.",
);
/// The addresses of one name serve different leaves.
pub const ENDPOINT_ADDRESSES_DISAGREE: MetricDef = gauge(
    "certinel_endpoint_addresses_disagree",
    "1 when the addresses of one endpoint serve different leaf certificates.",
);
/// Resolved addresses beyond `[scanner] max_addresses`, not probed.
pub const ENDPOINT_ADDRESSES_TRUNCATED: MetricDef = gauge(
    "certinel_endpoint_addresses_truncated",
    "Resolved addresses of the endpoint left unprobed beyond scanner.max_addresses.",
);
/// The chain verifies against the trust roots for the name.
pub const ENDPOINT_CERT_VERIFIED: MetricDef = gauge(
    "certinel_endpoint_cert_verified",
    "1 when the presented chain verifies against the trust roots for the server name.",
);
/// The current verification problem.
pub const ENDPOINT_CERT_ERROR_INFO: MetricDef = gauge(
    "certinel_endpoint_cert_error_info",
    "1 for the current verification problem of the presented chain, by reason.",
);
/// Identity of the leaf.
pub const ENDPOINT_CERT_INFO: MetricDef = gauge(
    "certinel_endpoint_cert_info",
    "Always 1; labels describe the leaf certificate.",
);
/// Negotiated TLS version.
pub const ENDPOINT_TLS_VERSION_INFO: MetricDef = gauge(
    "certinel_endpoint_tls_version_info",
    "Always 1; the label names the negotiated TLS version.",
);
/// The client certificate's notAfter (mutual TLS).
pub const CLIENT_CERT_NOT_AFTER: MetricDef = gauge(
    "certinel_client_cert_not_after_timestamp_seconds",
    "End of validity of the client certificate used for mutual TLS, as a Unix timestamp.",
);
/// Duration of the last probe of an address.
pub const ENDPOINT_PROBE_DURATION: MetricDef = gauge(
    "certinel_endpoint_probe_duration_seconds",
    "Duration of the last probe of this address: connect, STARTTLS and handshake.",
);
/// When the last probe started.
pub const ENDPOINT_LAST_PROBE: MetricDef = gauge(
    "certinel_endpoint_last_probe_timestamp_seconds",
    "When the last probe of this endpoint started, as a Unix timestamp.",
);
/// Probe failures by reason, since start.
pub const PROBE_ERRORS: MetricDef = counter(
    "certinel_probe_errors_total",
    "Scheduled probe failures, by reason (connect, dns, timeout, starttls, handshake, config, internal).",
);
/// `/probe` outcome.
pub const PROBE_SUCCESS: MetricDef = gauge(
    "certinel_probe_success",
    "1 when every probed address of the /probe target completed a TLS handshake.",
);
/// File leaf notAfter.
pub const FILE_CERT_NOT_AFTER: MetricDef = gauge(
    "certinel_file_cert_not_after_timestamp_seconds",
    "End of validity of the first certificate in the file, as a Unix timestamp.",
);
/// File leaf notBefore.
pub const FILE_CERT_NOT_BEFORE: MetricDef = gauge(
    "certinel_file_cert_not_before_timestamp_seconds",
    "Start of validity of the first certificate in the file, as a Unix timestamp.",
);
/// Seconds until the file's leaf expires.
pub const FILE_CERT_EXPIRY: MetricDef = gauge(
    "certinel_file_cert_expiry_seconds",
    "Seconds until the first certificate in the file expires, computed at scrape time; negative once expired.",
);
/// Earliest notAfter in the file.
pub const FILE_CERT_CHAIN_EARLIEST_NOT_AFTER: MetricDef = gauge(
    "certinel_file_cert_chain_earliest_not_after_timestamp_seconds",
    "Earliest end of validity among the certificates in the file, excluding a self-signed root.",
);
/// Identity of the file's leaf.
pub const FILE_CERT_INFO: MetricDef = gauge(
    "certinel_file_cert_info",
    "Always 1; labels describe the first certificate in the file.",
);
/// Failed reads of a file.
pub const FILE_READ_ERRORS: MetricDef = counter(
    "certinel_file_read_errors_total",
    "Reads of a configured certificate file that failed (missing, unreadable or unparsable).",
);
/// Whether an `[[endpoint_source]]` file's last read was accepted.
pub const ENDPOINT_SOURCE_LAST_RELOAD_SUCCESSFUL: MetricDef = gauge(
    "certinel_endpoint_source_last_reload_successful",
    "1 when the endpoint source file was last read and accepted, 0 when it was rejected (its last good targets are still probed).",
);
/// Targets of an `[[endpoint_source]]` file.
pub const ENDPOINT_SOURCE_TARGETS: MetricDef = gauge(
    "certinel_endpoint_source_targets",
    "Targets in the last accepted version of the endpoint source file (duplicates of earlier targets included).",
);
/// Build information.
pub const BUILD_INFO: MetricDef = gauge(
    "certinel_build_info",
    "Always 1; the labels name the certinel version and the git commit it was built from.",
);
/// When the configuration was last loaded successfully.
pub const CONFIG_LAST_RELOAD_SUCCESS: MetricDef = gauge(
    "certinel_config_last_reload_success_timestamp_seconds",
    "When the configuration was last loaded successfully, as a Unix timestamp.",
);
/// Whether the last load attempt succeeded.
pub const CONFIG_LAST_RELOAD_SUCCESSFUL: MetricDef = gauge(
    "certinel_config_last_reload_successful",
    "1 when the last configuration load succeeded, 0 when it was rejected.",
);

/// notAfter of a managed certificate's current version.
pub const CERTIFICATE_NOT_AFTER: MetricDef = gauge(
    "certinel_certificate_not_after_timestamp_seconds",
    "End of validity of the current version of a managed certificate, as a Unix timestamp.",
);
/// Seconds until a managed certificate expires, at scrape time.
pub const CERTIFICATE_EXPIRY: MetricDef = gauge(
    "certinel_certificate_expiry_seconds",
    "Seconds until the current version of a managed certificate expires, computed at scrape time; negative once expired.",
);
/// notAfter minus notBefore of the current version.
pub const CERTIFICATE_LIFETIME: MetricDef = gauge(
    "certinel_certificate_lifetime_seconds",
    "Lifetime (notAfter minus notBefore) of the current version of a managed certificate.",
);
/// When the next renewal is planned.
pub const CERTIFICATE_RENEWAL_SCHEDULED: MetricDef = gauge(
    "certinel_certificate_renewal_scheduled_timestamp_seconds",
    "When the next renewal attempt of a managed certificate is planned, as a Unix timestamp.",
);
/// Renewal attempts by outcome.
pub const CERTIFICATE_RENEWALS: MetricDef = counter(
    "certinel_certificate_renewals_total",
    "Renewal attempts of a managed certificate, by outcome (success or failure).",
);
/// Failed renewals by stage and problem.
pub const CERTIFICATE_RENEWAL_FAILURES: MetricDef = counter(
    "certinel_certificate_renewal_failures_total",
    "Failed renewals of a managed certificate, by the stage that failed and the problem (ACME problem type, hook, ...).",
);
/// When a renewal last succeeded.
pub const CERTIFICATE_LAST_RENEWAL_SUCCESS: MetricDef = gauge(
    "certinel_certificate_last_renewal_success_timestamp_seconds",
    "When a renewal of a managed certificate last succeeded, as a Unix timestamp.",
);
/// When a renewal was last attempted.
pub const CERTIFICATE_LAST_RENEWAL_ATTEMPT: MetricDef = gauge(
    "certinel_certificate_last_renewal_attempt_timestamp_seconds",
    "When a renewal of a managed certificate was last attempted, as a Unix timestamp.",
);
/// Failures since the last success.
pub const CERTIFICATE_RENEWAL_CONSECUTIVE_FAILURES: MetricDef = gauge(
    "certinel_certificate_renewal_consecutive_failures",
    "Failed renewal attempts of a managed certificate since its last success.",
);
/// A valid, unexpired certificate covering the configured names is current.
pub const CERTIFICATE_READY: MetricDef = gauge(
    "certinel_certificate_ready",
    "1 when a valid, unexpired certificate covering the configured names is current, 0 otherwise.",
);
/// Facts about the current version as labels.
pub const CERTIFICATE_INFO: MetricDef = gauge(
    "certinel_certificate_info",
    "Always 1; the labels describe the current version of a managed certificate.",
);
/// Whether each address of a verify target serves the current version.
pub const CERTIFICATE_SERVED_CURRENT: MetricDef = gauge(
    "certinel_certificate_served_current",
    "1 when this address of a verify target serves the current version of a managed certificate, 0 when it serves another one.",
);
/// Whether a managed certificate's current version is revoked.
pub const CERTIFICATE_REVOKED: MetricDef = gauge(
    "certinel_certificate_revoked",
    "1 when the current version of a managed certificate is listed on the CRL its distribution point names (it is renewed at once), 0 when it is not; absent without a verdict.",
);
/// When a managed certificate's current version was revoked.
pub const CERTIFICATE_REVOCATION_TIME: MetricDef = gauge(
    "certinel_certificate_revocation_timestamp_seconds",
    "When the CA revoked the current version of a managed certificate (Unix time), with the CRL entry's reason code (empty when none).",
);
/// ACME requests by endpoint and HTTP status.
pub const ACME_REQUESTS: MetricDef = counter(
    "certinel_acme_requests_total",
    "Requests sent to the ACME server, by endpoint and HTTP status (or error).",
);
/// Duration of ACME requests.
pub const ACME_REQUEST_DURATION: MetricDef = histogram(
    "certinel_acme_request_duration_seconds",
    "Duration of requests sent to the ACME server, by endpoint; retries count separately.",
);
/// Orders held open at a CA now.
pub const ACME_ORDERS_IN_FLIGHT: MetricDef = gauge(
    "certinel_acme_orders_in_flight",
    "Renewals that hold one of the CA directory's order slots now (max_concurrent_orders caps it), by configured CA name.",
);
/// Renewals waiting for an order slot now.
pub const ACME_ORDERS_WAITING: MetricDef = gauge(
    "certinel_acme_orders_waiting",
    "Renewals waiting for one of the CA directory's order slots now (every slot taken), by configured CA name.",
);

/// Upper bounds (seconds) of the ACME request duration buckets: a local CA answers in
/// milliseconds, a loaded public CA in seconds, and a request times out at 30 s.
pub const ACME_DURATION_BUCKETS: [f64; 10] =
    [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0];

/// Which rule placed a managed certificate's renewal window.
pub const CERTIFICATE_RENEWAL_WINDOW_INFO: MetricDef = gauge(
    "certinel_certificate_renewal_window_info",
    "Always 1; the source label says which rule placed the renewal window: ari (the CA's suggested window) or renew_before.",
);
/// Start of the CA's suggested renewal window (ARI).
pub const CERTIFICATE_ARI_WINDOW_START: MetricDef = gauge(
    "certinel_certificate_ari_window_start_timestamp_seconds",
    "Start of the renewal window the CA suggests for the current certificate (ACME Renewal Information), as a Unix timestamp.",
);
/// End of the CA's suggested renewal window (ARI).
pub const CERTIFICATE_ARI_WINDOW_END: MetricDef = gauge(
    "certinel_certificate_ari_window_end_timestamp_seconds",
    "End of the renewal window the CA suggests for the current certificate (ACME Renewal Information), as a Unix timestamp.",
);
/// When the renewer asks the CA for renewal information again.
pub const CERTIFICATE_ARI_NEXT_POLL: MetricDef = gauge(
    "certinel_certificate_ari_next_poll_timestamp_seconds",
    "When certinel next asks the CA for the certificate's renewal information, as a Unix timestamp.",
);
/// Whether the CA's directory advertises a configured profile.
pub const ACME_PROFILE_AVAILABLE: MetricDef = gauge(
    "certinel_acme_profile_available",
    "1 when the ACME directory advertises this configured profile, 0 when it does not (renewals asking for it fail).",
);
/// CA clock minus local clock.
pub const CLOCK_SKEW: MetricDef = gauge(
    "certinel_clock_skew_seconds",
    "The other party's clock minus the local clock in seconds (source=acme: the Date header of the ACME server's last answer).",
);

/// Whether the endpoint's leaf is on its CRL.
pub const ENDPOINT_CERT_REVOKED: MetricDef = gauge(
    "certinel_endpoint_cert_revoked",
    "1 when the presented leaf is listed on the CRL its distribution point names, 0 when it is not (also when that CRL is stale); absent without a verdict.",
);
/// When the endpoint's leaf was revoked.
pub const ENDPOINT_CERT_REVOCATION_TIME: MetricDef = gauge(
    "certinel_endpoint_cert_revocation_timestamp_seconds",
    "When the CA revoked the presented leaf (Unix time), with the CRL entry's reason code (empty when none).",
);
/// Why the endpoint's leaf got no revocation verdict.
pub const ENDPOINT_CRL_ERROR_INFO: MetricDef = gauge(
    "certinel_endpoint_crl_error_info",
    "1 when the leaf names a CRL but no verdict was reached, by reason (fetch errors, bad_signature, issuer_mismatch, no_issuer, ...).",
);
/// Whether a file's leaf is on its CRL.
pub const FILE_CERT_REVOKED: MetricDef = gauge(
    "certinel_file_cert_revoked",
    "1 when the file's leaf is listed on the CRL its distribution point names, 0 when it is not (also when that CRL is stale); absent without a verdict.",
);
/// When a file's leaf was revoked.
pub const FILE_CERT_REVOCATION_TIME: MetricDef = gauge(
    "certinel_file_cert_revocation_timestamp_seconds",
    "When the CA revoked the file's leaf (Unix time), with the CRL entry's reason code (empty when none).",
);
/// Why a file's leaf got no revocation verdict.
pub const FILE_CRL_ERROR_INFO: MetricDef = gauge(
    "certinel_file_crl_error_info",
    "1 when the file's leaf names a CRL but no verdict was reached, by reason.",
);
/// nextUpdate of each CRL held.
pub const CRL_NEXT_UPDATE: MetricDef = gauge(
    "certinel_crl_next_update_timestamp_seconds",
    "nextUpdate of the CRL last fetched from this distribution point URL (Unix time); past it, the CRL is stale.",
);
/// Failed CRL fetches.
pub const CRL_FETCH_ERRORS: MetricDef = counter(
    "certinel_crl_fetch_errors_total",
    "Failed CRL fetches, by reason (unsupported_url, dns, connect, budget, timeout, http, http_status, too_large).",
);
/// Whether this replica reaches etcd.
pub const CLUSTER_CONNECTED: MetricDef = gauge(
    "certinel_cluster_connected",
    "1 when this replica's last membership round reached etcd (lease renewed, members read), 0 otherwise.",
);
/// The live members this replica sees.
pub const CLUSTER_MEMBER_UP: MetricDef = gauge(
    "certinel_cluster_member_up",
    "1 for each live cluster member this replica sees, itself included.",
);
/// This replica's share of the scheduled endpoints.
pub const CLUSTER_ENDPOINTS_OWNED: MetricDef = gauge(
    "certinel_cluster_endpoints_owned",
    "Scheduled endpoints this replica probes: its rendezvous-hash share among the live members.",
);
/// The version of a managed certificate this replica last rolled out.
pub const CERTIFICATE_LOCAL_VERSION: MetricDef = gauge(
    "certinel_certificate_local_version",
    "With [cluster]: the version number of a managed certificate this replica last rolled out (deployed and checked) since it started.",
);
/// Whether this replica holds a managed certificate's renewal lock.
pub const CERTIFICATE_LOCK_HELD: MetricDef = gauge(
    "certinel_certificate_lock_held",
    "With [cluster]: 1 while this replica holds the certificate's renewal lock in etcd (the lock names this member), 0 otherwise.",
);

/// Every metric, in the order `/metrics` renders them.
pub const ALL: &[MetricDef] = &[
    BUILD_INFO,
    CONFIG_LAST_RELOAD_SUCCESS,
    CONFIG_LAST_RELOAD_SUCCESSFUL,
    PROBE_SUCCESS,
    ENDPOINT_UP,
    ENDPOINT_CERT_NOT_AFTER,
    ENDPOINT_CERT_NOT_BEFORE,
    ENDPOINT_CERT_EXPIRY,
    ENDPOINT_CHAIN_EARLIEST_NOT_AFTER,
    ENDPOINT_CHAIN_CERT_NOT_AFTER,
    ENDPOINT_ADDRESSES_DISAGREE,
    ENDPOINT_ADDRESSES_TRUNCATED,
    ENDPOINT_CERT_VERIFIED,
    ENDPOINT_CERT_ERROR_INFO,
    ENDPOINT_CERT_INFO,
    ENDPOINT_TLS_VERSION_INFO,
    CLIENT_CERT_NOT_AFTER,
    ENDPOINT_PROBE_DURATION,
    ENDPOINT_LAST_PROBE,
    ENDPOINT_CERT_REVOKED,
    ENDPOINT_CERT_REVOCATION_TIME,
    ENDPOINT_CRL_ERROR_INFO,
    FILE_CERT_REVOKED,
    FILE_CERT_REVOCATION_TIME,
    FILE_CRL_ERROR_INFO,
    CRL_NEXT_UPDATE,
    CRL_FETCH_ERRORS,
    PROBE_ERRORS,
    FILE_CERT_NOT_AFTER,
    FILE_CERT_NOT_BEFORE,
    FILE_CERT_EXPIRY,
    FILE_CERT_CHAIN_EARLIEST_NOT_AFTER,
    FILE_CERT_INFO,
    FILE_READ_ERRORS,
    ENDPOINT_SOURCE_LAST_RELOAD_SUCCESSFUL,
    ENDPOINT_SOURCE_TARGETS,
    CERTIFICATE_READY,
    CERTIFICATE_NOT_AFTER,
    CERTIFICATE_EXPIRY,
    CERTIFICATE_LIFETIME,
    CERTIFICATE_INFO,
    CERTIFICATE_RENEWAL_SCHEDULED,
    CERTIFICATE_RENEWALS,
    CERTIFICATE_RENEWAL_FAILURES,
    CERTIFICATE_LAST_RENEWAL_SUCCESS,
    CERTIFICATE_LAST_RENEWAL_ATTEMPT,
    CERTIFICATE_RENEWAL_CONSECUTIVE_FAILURES,
    CERTIFICATE_RENEWAL_WINDOW_INFO,
    CERTIFICATE_ARI_WINDOW_START,
    CERTIFICATE_ARI_WINDOW_END,
    CERTIFICATE_ARI_NEXT_POLL,
    CERTIFICATE_SERVED_CURRENT,
    CERTIFICATE_REVOKED,
    CERTIFICATE_REVOCATION_TIME,
    ACME_REQUESTS,
    ACME_REQUEST_DURATION,
    ACME_ORDERS_IN_FLIGHT,
    ACME_ORDERS_WAITING,
    ACME_PROFILE_AVAILABLE,
    CLOCK_SKEW,
    CLUSTER_CONNECTED,
    CLUSTER_MEMBER_UP,
    CLUSTER_ENDPOINTS_OWNED,
    CERTIFICATE_LOCAL_VERSION,
    CERTIFICATE_LOCK_HELD,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_unique_prefixed_and_counters_end_in_total() {
        let mut seen = std::collections::BTreeSet::new();
        for def in ALL {
            assert!(seen.insert(def.name), "duplicate {}", def.name);
            assert!(def.name.starts_with(PREFIX), "{}", def.name);
            assert!(
                def.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                def.name
            );
            assert_eq!(def.kind == Kind::Counter, def.name.ends_with("_total"));
            assert!(!def.help.is_empty());
        }
    }
}
