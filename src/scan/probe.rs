//! Probes one endpoint: resolve, then for each address connect, optionally STARTTLS, and
//! complete a TLS handshake that captures the presented chain even when it is invalid.

use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;

use crate::config::model::Endpoint;
use crate::scan::inspect::{CertFacts, ChainFacts};
use crate::scan::verify::Verification;

/// The result of probing one endpoint on every address it resolved to.
#[derive(Debug, Clone)]
pub struct EndpointReport {
    /// The endpoint as configured.
    pub endpoint: Endpoint,
    /// When the probe started.
    pub started_at: OffsetDateTime,
    /// Name resolution failed: no address was probed.
    pub resolve_error: Option<ProbeError>,
    /// One entry per probed address, in resolver order.
    pub addresses: Vec<AddressReport>,
    /// The addresses that completed a handshake did not all present the same leaf.
    pub addresses_disagree: bool,
    /// Facts about the client certificate used for mutual TLS, when configured.
    pub client_cert: Option<CertFacts>,
}

/// The result of probing one address of an endpoint.
#[derive(Debug, Clone)]
pub struct AddressReport {
    /// The address connected to.
    pub ip: IpAddr,
    /// Connect + STARTTLS + handshake time, or the time until failure.
    pub duration: Duration,
    /// The handshake, or why there was none.
    pub outcome: Result<Handshake, ProbeError>,
}

/// What a completed TLS handshake revealed.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Negotiated protocol version (`TLSv1.3`, `TLSv1.2`).
    pub tls_version: String,
    /// Negotiated cipher suite (IANA name).
    pub cipher_suite: String,
    /// The presented chain.
    pub chain: ChainFacts,
    /// Whether the chain is trusted for the server name, and why not.
    pub verification: Verification,
}

/// Why an address produced no handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The name did not resolve (or resolved to no address of the wanted family).
    #[error("cannot resolve {host}: {detail}")]
    Dns {
        /// The name looked up.
        host: String,
        /// What the resolver said.
        detail: String,
    },
    /// The TCP connection failed.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The deadline passed during the named stage.
    #[error("timed out after {after:?} during {stage}")]
    Timeout {
        /// `connect`, `starttls` or `handshake`.
        stage: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// The plaintext upgrade failed.
    #[error("STARTTLS failed: {0}")]
    StartTls(String),
    /// The TLS handshake failed before a chain was presented.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
}

impl ProbeError {
    /// The stable keyword for metrics and JSON: `dns`, `connect`, `timeout`, `starttls`,
    /// `handshake`.
    pub fn keyword(&self) -> &'static str {
        match self {
            ProbeError::Dns { .. } => "dns",
            ProbeError::Connect(_) => "connect",
            ProbeError::Timeout { .. } => "timeout",
            ProbeError::StartTls(_) => "starttls",
            ProbeError::Handshake(_) => "handshake",
        }
    }
}

/// Shared, long-lived things every probe needs.
#[derive(Debug)]
pub struct ProbeContext {
    /// Name resolution (with any hosts-file override).
    pub resolver: crate::scan::resolve::Resolver,
    /// Trust roots per `ca_file`.
    pub trust: crate::scan::trust::TrustCache,
}

/// Probes `endpoint` on every address it resolves to (or the first, per its settings).
/// Never fails: problems are recorded in the report.
pub async fn probe_endpoint(endpoint: &Endpoint, ctx: &ProbeContext) -> EndpointReport {
    let _ = (endpoint, ctx);
    todo!("probe helper")
}
