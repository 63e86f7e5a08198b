//! Probes one endpoint: resolve, then for each address connect, optionally STARTTLS, and
//! complete a TLS handshake that captures the presented chain even when it is invalid.

use std::cell::Cell;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ProtocolVersion};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tracing::Instrument;

use crate::config::model::Endpoint;
use crate::scan::budget::{ConnectionBudget, Demand};
use crate::scan::crl::fetch::CrlFetcher;
use crate::scan::crl::watch::{self, RevocationStatus};
use crate::scan::inspect::{self, CertFacts, ChainFacts};
use crate::scan::resolve::ResolveError;
use crate::scan::trust::TrustRoots;
use crate::scan::verify::{self, Verification};

mod context;
mod tls_client;

pub use context::{DEFAULT_MAX_ADDRESSES, ProbeContext};
pub use tls_client::DangerAcceptAnyChainVerifier;

use tls_client::CLIENT_AUTH_REQUESTED;

/// The result of probing one endpoint on every address it resolved to.
#[derive(Debug, Clone)]
pub struct EndpointReport {
    /// The endpoint as configured.
    pub endpoint: Endpoint,
    /// When the probe started.
    pub started_at: OffsetDateTime,
    /// The probe stopped before any address was probed: name resolution failed
    /// ([`ProbeError::Dns`]) or the endpoint's settings did not load
    /// ([`ProbeError::Config`]).
    pub resolve_error: Option<ProbeError>,
    /// One entry per probed address, in resolver order.
    pub addresses: Vec<AddressReport>,
    /// Resolved addresses left unprobed beyond `[scanner] max_addresses`.
    pub addresses_truncated: usize,
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
    /// What the leaf's CRL says, when CRL checking is on and the leaf names an `http://`
    /// distribution point.
    pub revocation: Option<RevocationStatus>,
}

/// Why an address produced no handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The name did not resolve (or resolved to no address of the wanted family). A
    /// resolver that does not answer before the deadline is a [`ProbeError::Timeout`].
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
        /// `setup` (trust roots, client identity), `resolve`, [`BUDGET_STAGE`] (waiting
        /// for a free connection), `connect`, `starttls` or `handshake`.
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
    /// The endpoint's own settings could not be used: its `ca_file`, client certificate
    /// or key does not load, or its server name is not a valid DNS name or IP address.
    #[error("unusable endpoint settings: {0}")]
    Config(String),
    /// The probe itself failed (a bug in certinel, such as a panic).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ResolveError> for ProbeError {
    fn from(error: ResolveError) -> ProbeError {
        ProbeError::Dns {
            host: error.host,
            detail: error.detail,
        }
    }
}

impl ProbeError {
    /// The stable keyword for metrics and JSON: `dns`, `connect`, `timeout`, `starttls`,
    /// `handshake`, `config`, `internal`.
    pub fn keyword(&self) -> &'static str {
        match self {
            ProbeError::Dns { .. } => "dns",
            ProbeError::Connect(_) => "connect",
            ProbeError::Timeout { .. } => "timeout",
            ProbeError::StartTls(_) => "starttls",
            ProbeError::Handshake(_) => "handshake",
            ProbeError::Config(_) => "config",
            ProbeError::Internal(_) => "internal",
        }
    }
}

/// The [`ProbeError::Timeout`] stage of an address that found no free connection in the
/// [`ConnectionBudget`] before its deadline.
pub const BUDGET_STAGE: &str = "wait for a free connection";

/// Probes `endpoint` on every address it resolves to (or the first, per its settings).
/// Never fails: problems are recorded in the report.
///
/// One deadline, `endpoint.timeout` from the start, covers the whole probe: loading the
/// trust roots and client identity, name resolution, then the addresses (probed concurrently) through connect, STARTTLS and the
/// handshake. A resolver still busy at the deadline is a [`ProbeError::Timeout`] at stage
/// `resolve` (keyword `timeout`); a resolver that answers with an error stays
/// [`ProbeError::Dns`] (keyword `dns`).
pub async fn probe_endpoint(endpoint: &Endpoint, ctx: &ProbeContext) -> EndpointReport {
    let admit_all = |_: &[IpAddr]| Ok::<(), Infallible>(());
    let Ok(report) = probe_endpoint_admitting(endpoint, ctx, Demand::Scheduled, admit_all).await;
    report
}

/// [`probe_endpoint`], with `admit` shown the resolved addresses before any connection:
/// its error stops the probe before a socket is opened and is returned as is. `/probe`
/// checks its allow-list here, so the addresses it checked are exactly the ones probed.
/// Its sockets count against the connection budget as `demand`.
pub async fn probe_endpoint_admitting<E>(
    endpoint: &Endpoint,
    ctx: &ProbeContext,
    demand: Demand,
    admit: impl FnOnce(&[IpAddr]) -> Result<(), E>,
) -> Result<EndpointReport, E> {
    let span = tracing::info_span!("probe", target = %endpoint.target);
    probe_endpoint_in_span(endpoint, ctx, demand, admit)
        .instrument(span)
        .await
}

/// What every address of one endpoint is probed with, prepared once per probe.
struct ProbePlan {
    /// SNI and verification name as text.
    server_name: String,
    /// The same name for rustls (an IP literal sends no SNI).
    sni: ServerName<'static>,
    /// The client configuration, with the endpoint's client certificate if any.
    tls: Arc<ClientConfig>,
    /// Trust anchors for `verify_chain`.
    roots: Arc<TrustRoots>,
    /// Facts about the client certificate, when one is configured.
    client_cert: Option<CertFacts>,
    /// Where every socket takes its permit, and as whose demand.
    budget: ConnectionBudget,
    demand: Demand,
    /// The CRL cache for scheduled probes; `/probe` requests never fetch CRLs.
    crl: Option<Arc<CrlFetcher>>,
}

/// What the TLS connection revealed, before any judgement.
struct Session {
    chain: Vec<CertificateDer<'static>>,
    tls_version: String,
    cipher_suite: String,
}

async fn probe_endpoint_in_span<E>(
    endpoint: &Endpoint,
    ctx: &ProbeContext,
    demand: Demand,
    admit: impl FnOnce(&[IpAddr]) -> Result<(), E>,
) -> Result<EndpointReport, E> {
    let mut report = EndpointReport {
        endpoint: endpoint.clone(),
        started_at: OffsetDateTime::now_utc(),
        resolve_error: None,
        addresses: Vec::new(),
        addresses_truncated: 0,
        addresses_disagree: false,
        client_cert: None,
    };
    // One deadline for the whole probe: slow trust roots, client identity or resolver eat
    // into the time left for the addresses instead of adding to it.
    let deadline = Instant::now() + endpoint.probe.timeout;
    let planned = timeout_at(deadline, plan_probe(endpoint, ctx, demand))
        .await
        .unwrap_or(Err(ProbeError::Timeout {
            stage: "setup",
            after: endpoint.probe.timeout,
        }));
    let plan = match planned {
        Ok(plan) => plan,
        Err(error) => {
            tracing::info!(%error, "endpoint settings are unusable");
            report.resolve_error = Some(error);
            return Ok(report);
        }
    };
    report.client_cert = plan.client_cert.clone();
    let resolving = ctx.resolver.resolve(
        &endpoint.target.host,
        endpoint.probe.ip_family,
        endpoint.probe.resolve,
    );
    let resolved = timeout_at(deadline, resolving)
        .await
        .map(|found| found.map_err(ProbeError::from))
        .unwrap_or(Err(ProbeError::Timeout {
            stage: "resolve",
            after: endpoint.probe.timeout,
        }));
    let mut addresses = match resolved {
        Ok(addresses) => addresses,
        Err(error) => {
            tracing::info!(%error, "name resolution failed");
            report.resolve_error = Some(error);
            return Ok(report);
        }
    };
    admit(&addresses)?;
    if addresses.len() > ctx.max_addresses {
        report.addresses_truncated = addresses.len() - ctx.max_addresses;
        tracing::warn!(
            resolved = addresses.len(),
            probed = ctx.max_addresses,
            skipped = report.addresses_truncated,
            "the name has more addresses than scanner.max_addresses; probing the first ones"
        );
        addresses.truncate(ctx.max_addresses);
    }
    let probes = addresses.into_iter().map(|ip| {
        let span = tracing::info_span!("address", %ip);
        probe_address(ip, endpoint, &plan, deadline).instrument(span)
    });
    report.addresses = futures::future::join_all(probes).await;
    report.addresses_disagree = leaves_disagree(&report.addresses);
    if report.addresses_disagree {
        tracing::info!("addresses present different leaf certificates");
    }
    Ok(report)
}

async fn plan_probe(
    endpoint: &Endpoint,
    ctx: &ProbeContext,
    demand: Demand,
) -> Result<ProbePlan, ProbeError> {
    let server_name = endpoint.server_name();
    let sni = ServerName::try_from(server_name.clone()).map_err(|_| {
        ProbeError::Config(format!(
            "server name `{server_name}` is neither a DNS name nor an IP address"
        ))
    })?;
    let roots = ctx
        .trust
        .roots(endpoint.probe.ca_file.as_deref())
        .await
        .map_err(|error| ProbeError::Config(error.to_string()))?;
    let (tls, client_cert) = match &endpoint.probe.client_auth {
        None => (ctx.tls.anonymous(), None),
        Some(auth) => {
            let identity = ctx
                .tls
                .identity(auth)
                .await
                .map_err(|error| ProbeError::Config(error.to_string()))?;
            (identity.config.clone(), Some(identity.leaf.clone()))
        }
    };
    Ok(ProbePlan {
        server_name,
        sni,
        tls,
        roots,
        client_cert,
        budget: ctx.budget.clone(),
        demand,
        crl: match demand {
            Demand::Scheduled => ctx.crl.clone(),
            Demand::OnRequest => None,
        },
    })
}

async fn probe_address(
    ip: IpAddr,
    endpoint: &Endpoint,
    plan: &ProbePlan,
    deadline: Instant,
) -> AddressReport {
    let started = Instant::now();
    let address = SocketAddr::new(ip, endpoint.target.port);
    let session = CLIENT_AUTH_REQUESTED
        .scope(
            Cell::new(false),
            open_session(address, endpoint, plan, deadline),
        )
        .await;
    let duration = started.elapsed();
    let revocation = match (&session, &plan.crl) {
        (Ok(session), Some(fetcher)) => {
            let now = OffsetDateTime::now_utc();
            watch::check_chain(fetcher, &session.chain, now, endpoint.interval).await
        }
        _ => None,
    };
    let outcome = session
        .and_then(|session| assess(session, plan))
        .map(|handshake| Handshake {
            revocation,
            ..handshake
        });
    match &outcome {
        Ok(handshake) => tracing::debug!(
            subject = %handshake.chain.leaf().subject,
            version = %handshake.tls_version,
            verified = handshake.verification.verified,
            reason = handshake.verification.reason.map(|reason| reason.keyword()),
            ?duration,
            "handshake complete"
        ),
        Err(error) => tracing::info!(%error, kind = error.keyword(), ?duration, "probe failed"),
    }
    AddressReport {
        ip,
        duration,
        outcome,
    }
}

/// Connects, upgrades and handshakes, all before `deadline`.
async fn open_session(
    address: SocketAddr,
    endpoint: &Endpoint,
    plan: &ProbePlan,
    deadline: Instant,
) -> Result<Session, ProbeError> {
    let timed_out = |stage| ProbeError::Timeout {
        stage,
        after: endpoint.probe.timeout,
    };
    // Held until this function returns, after the socket below is closed.
    let _permit = plan
        .budget
        .acquire_before(plan.demand, deadline)
        .await
        .map_err(|_| timed_out(BUDGET_STAGE))?;
    let mut tcp = timeout_at(deadline, TcpStream::connect(address))
        .await
        .map_err(|_| timed_out("connect"))?
        .map_err(|error| ProbeError::Connect(error.to_string()))?;
    if let Some(protocol) = endpoint.probe.starttls {
        timeout_at(
            deadline,
            crate::scan::starttls::upgrade(&mut tcp, protocol, &plan.server_name),
        )
        .await
        .map_err(|_| timed_out("starttls"))?
        .map_err(|error| ProbeError::StartTls(error.to_string()))?;
    }
    let connector = tokio_rustls::TlsConnector::from(plan.tls.clone());
    let mut tls = timeout_at(deadline, connector.connect(plan.sni.clone(), tcp))
        .await
        .map_err(|_| timed_out("handshake"))?
        .map_err(|error| ProbeError::Handshake(error.to_string()))?;

    let (tcp, connection) = tls.get_mut();
    let client_auth_requested = CLIENT_AUTH_REQUESTED.try_with(Cell::get).unwrap_or(false);
    if client_auth_requested && connection.protocol_version() == Some(ProtocolVersion::TLSv1_3) {
        await_client_auth_verdict(tcp, connection, deadline).await?;
    }
    let session = Session {
        chain: connection.peer_certificates().unwrap_or_default().to_vec(),
        tls_version: version_name(connection.protocol_version()),
        cipher_suite: suite_name(connection.negotiated_cipher_suite()),
    };
    // Close politely (close_notify, then FIN) so servers do not log a truncated
    // connection; the outcome no longer depends on the server.
    let _ = timeout_at(deadline, tls.shutdown()).await;
    Ok(session)
}

/// In TLS 1.3 the client completes its side of the handshake before the server has judged
/// the client certificate (or its absence), so a rejection arrives as an alert just after.
/// This waits for the server's first post-handshake bytes: an alert or a close means the
/// server refused; anything else (normally a NewSessionTicket) means it accepted. A server
/// that sends nothing counts as accepting once the deadline passes.
async fn await_client_auth_verdict(
    tcp: &mut TcpStream,
    connection: &mut rustls::ClientConnection,
    deadline: Instant,
) -> Result<(), ProbeError> {
    let refused = |detail: String| {
        ProbeError::Handshake(format!("server refused client authentication: {detail}"))
    };
    let mut buffer = vec![0; 16 * 1024];
    let read = match timeout_at(deadline, tcp.read(&mut buffer)).await {
        Err(_elapsed) => return Ok(()),
        Ok(Err(error)) => return Err(refused(error.to_string())),
        Ok(Ok(0)) => return Err(refused("connection closed".to_string())),
        Ok(Ok(read)) => read,
    };
    let mut received = &buffer[..read];
    while !received.is_empty() {
        let consumed = connection
            .read_tls(&mut received)
            .map_err(|error| refused(error.to_string()))?;
        let state = connection
            .process_new_packets()
            .map_err(|error| refused(error.to_string()))?;
        if state.peer_has_closed() {
            return Err(refused("close_notify received".to_string()));
        }
        if consumed == 0 {
            break;
        }
    }
    Ok(())
}

/// Turns the captured session into facts and a trust verdict.
fn assess(session: Session, plan: &ProbePlan) -> Result<Handshake, ProbeError> {
    let chain = inspect::inspect_chain(&session.chain).map_err(|error| {
        ProbeError::Handshake(format!("the presented chain is unreadable: {error}"))
    })?;
    let verification = verify::verify_chain(
        &session.chain,
        &chain,
        Some(&plan.server_name),
        &plan.roots,
        UnixTime::now(),
    );
    Ok(Handshake {
        tls_version: session.tls_version,
        cipher_suite: session.cipher_suite,
        chain,
        verification,
        revocation: None,
    })
}

/// `TLSv1.3`, `TLSv1.2`, or the rustls name of anything else.
fn version_name(version: Option<ProtocolVersion>) -> String {
    match version {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    }
}

/// The IANA name of the suite (`TLS_AES_128_GCM_SHA256`,
/// `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`); rustls prefixes TLS 1.3 suites `TLS13_`.
fn suite_name(suite: Option<rustls::SupportedCipherSuite>) -> String {
    let Some(suite) = suite else {
        return "unknown".to_string();
    };
    let code = suite.suite();
    match code.as_str() {
        Some(name) => match name.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => name.to_string(),
        },
        None => format!("0x{:04X}", u16::from(code)),
    }
}

/// Whether the addresses that completed a handshake presented different leaves.
/// The addresses that completed a handshake did not all present the same leaf.
pub fn leaves_disagree(addresses: &[AddressReport]) -> bool {
    let mut fingerprints = addresses
        .iter()
        .filter_map(|address| address.outcome.as_ref().ok())
        .map(|handshake| &handshake.chain.leaf().fingerprint_sha256);
    match fingerprints.next() {
        Some(first) => fingerprints.any(|other| other != first),
        None => false,
    }
}

#[cfg(test)]
mod tests;
