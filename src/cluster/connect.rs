//! The connection to etcd: TLS and user/password from `[cluster]`, and one read under the
//! prefix to prove etcd answers (and lets certinel in) before anything else starts.
//!
//! etcd's client connects lazily and retries a refused connection without end, so the first
//! request runs under a deadline: an unreachable cluster is one clear error after
//! [`CONNECT_TIMEOUT`], not a hang. A task started with the client keeps members that refuse
//! connections out of its balancer (`endpoints`) for as long as the runtime runs.

use std::path::Path;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};

use crate::cluster::{ClusterError, endpoints};
use crate::config::format_duration;
use crate::config::model::ClusterConfig;

/// gRPC status codes (`etcd_client` re-exports no `tonic::Code`): no endpoint could serve
/// the request in time.
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_UNAVAILABLE: i32 = 14;

/// How long [`connect`] waits for etcd's first answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The first pause before retrying a failed connection; it doubles up to
/// [`LAST_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two connection attempts.
const LAST_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// HTTP/2 pings while a request or watch is open, so a partitioned etcd member is noticed
/// (and another one used) within seconds rather than at the next TCP timeout. etcd sends
/// GOAWAY to clients that ping more often than its `--grpc-keepalive-min-time` (5 s) or
/// on connections without a stream, so the interval stays above it and idle connections
/// are not pinged.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection counts as dead.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the etcd cluster of `[cluster]` and reads one key name under its prefix,
/// waiting at most [`CONNECT_TIMEOUT`]. The client is cheap to clone; share one (each
/// connection probes the endpoints every second until the runtime stops).
pub async fn connect(cluster: &ClusterConfig) -> Result<Client, ClusterError> {
    connect_within(cluster, CONNECT_TIMEOUT).await
}

/// [`connect`] with another deadline for etcd's first answer. Connection failures (a member
/// down, a leader election) are retried until the deadline; etcd refusing certinel is not.
pub async fn connect_within(
    cluster: &ClusterConfig,
    timeout: Duration,
) -> Result<Client, ClusterError> {
    let endpoints = cluster.etcd.join(", ");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = FIRST_RETRY_PAUSE;
    let mut last_failure = format!("no answer within {}", format_duration(timeout));
    loop {
        let options = connect_options(cluster, timeout)?;
        let error = match tokio::time::timeout_at(deadline, first_read(cluster, options)).await {
            Ok(Ok(client)) => {
                tracing::info!(target: "certinel::cluster", %endpoints,
                    member = %cluster.member, "connected to etcd");
                return Ok(client);
            }
            Err(_elapsed) => None,
            Ok(Err(error)) => Some(error),
        };
        match error {
            Some(error) if is_connection_failure(&error) => last_failure = describe(&error),
            Some(error @ etcd_client::Error::GRpcStatus(_)) => {
                return Err(ClusterError::Refused {
                    endpoints,
                    prefix: cluster.prefix.clone(),
                    detail: describe(&error),
                });
            }
            Some(source) => return Err(ClusterError::Settings { endpoints, source }),
            None => {}
        }
        if tokio::time::Instant::now() + pause >= deadline {
            return Err(ClusterError::Unreachable {
                endpoints,
                cause: last_failure,
            });
        }
        tracing::info!(target: "certinel::cluster", %endpoints, cause = %last_failure,
            "etcd not reachable yet; retrying");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LAST_RETRY_PAUSE);
    }
}

/// One attempt: a client over the members that accept connections (all when none does: a
/// request sent to a member that is down fails, see `endpoints`), one read under the
/// prefix, then the task that keeps the balancer to live members.
async fn first_read(
    cluster: &ClusterConfig,
    options: ConnectOptions,
) -> Result<Client, etcd_client::Error> {
    let active = endpoints::active_set(&endpoints::probe_all(&cluster.etcd).await);
    let initial: Vec<&String> = cluster
        .etcd
        .iter()
        .zip(&active)
        .filter_map(|(url, &use_it)| use_it.then_some(url))
        .collect();
    let mut client = Client::connect(initial, Some(options)).await?;
    let probe = GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_limit(1);
    client.get(cluster.prefix.as_str(), Some(probe)).await?;
    tokio::spawn(endpoints::keep_balanced(
        client.clone(),
        cluster.etcd.clone(),
        active,
    ));
    Ok(client)
}

/// Whether an error means no connection could be made or kept (rather than etcd refusing
/// the request): a transport error, or a status the client made up from one (a status
/// etcd sent has no source).
fn is_connection_failure(error: &etcd_client::Error) -> bool {
    match error {
        // A transport error comes from building the endpoints (the TLS settings); failures
        // to connect arrive as statuses with the transport error as their source.
        etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            std::error::Error::source(status).is_some()
                || matches!(
                    i32::from(status.code()),
                    GRPC_UNAVAILABLE | GRPC_DEADLINE_EXCEEDED
                )
        }
        _ => false,
    }
}

/// The part of an error a user can act on: the innermost cause of a connection failure
/// (`Connection refused (os error 111)`), or the message etcd sent.
fn describe(error: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = error else {
        return error.to_string();
    };
    let mut innermost: Option<&dyn std::error::Error> = None;
    let mut next = std::error::Error::source(status);
    while let Some(cause) = next {
        innermost = Some(cause);
        next = cause.source();
    }
    match innermost {
        Some(cause) => cause.to_string(),
        None => status.message().to_owned(),
    }
}

/// The client options `[cluster]` asks for: TLS files (read here), user and password, and
/// the connection deadlines.
fn connect_options(
    cluster: &ClusterConfig,
    timeout: Duration,
) -> Result<ConnectOptions, ClusterError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
        // etcd_client pings idle connections unless told not to.
        .with_keep_alive_while_idle(false);
    if let (Some(username), Some(password)) = (&cluster.username, &cluster.password) {
        // etcd forgets a token unused for --auth-token-ttl (5 minutes by default); without
        // the refresh, a replica idle that long would be refused for good.
        options = options
            .with_user(username.clone(), password.0.clone())
            .with_auto_token_refresh(true);
    }
    if cluster.etcd.iter().any(|url| url.starts_with("https://")) {
        options = options.with_tls(tls_options(cluster)?);
    }
    Ok(options)
}

/// TLS for `https://` endpoints: `ca_file` as the only trust root (the platform's roots
/// without it) and the client identity when configured.
fn tls_options(cluster: &ClusterConfig) -> Result<TlsOptions, ClusterError> {
    let mut tls = TlsOptions::new();
    tls = match &cluster.ca_file {
        Some(path) => tls.ca_certificate(Certificate::from_pem(certificates(path, "ca_file")?)),
        None => tls.trust_anchors(platform_roots()),
    };
    if let (Some(cert), Some(key)) = (&cluster.client_cert, &cluster.client_key) {
        let identity = Identity::from_pem(certificates(cert, "client_cert")?, private_key(key)?);
        tls = tls.identity(identity);
    }
    Ok(tls)
}

/// A PEM file of certificates, checked here: the client library takes what it can parse
/// and would fail later, at the handshake, with a less helpful message.
fn certificates(path: &Path, key: &'static str) -> Result<Vec<u8>, ClusterError> {
    let pem = read(path, key)?;
    let mut found = 0;
    for certificate in rustls_pemfile::certs(&mut pem.as_slice()) {
        if certificate.is_err() {
            found = 0;
            break;
        }
        found += 1;
    }
    if found == 0 {
        return Err(ClusterError::NotPem {
            key,
            path: path.to_owned(),
            expected: "PEM certificate",
        });
    }
    Ok(pem)
}

/// The client key file, checked to hold a PEM private key.
fn private_key(path: &Path) -> Result<Vec<u8>, ClusterError> {
    let pem = read(path, "client_key")?;
    match rustls_pemfile::private_key(&mut pem.as_slice()) {
        Ok(Some(_)) => Ok(pem),
        _ => Err(ClusterError::NotPem {
            key: "client_key",
            path: path.to_owned(),
            expected: "PEM private key",
        }),
    }
}

/// The platform's trust roots; certificates that are not usable roots are skipped, as
/// every TLS client does.
fn platform_roots() -> Vec<rustls::pki_types::TrustAnchor<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(target: "certinel::cluster", %error, "skipping a platform trust root");
    }
    found
        .certs
        .iter()
        .filter_map(|der| webpki::anchor_from_trusted_cert(der).ok())
        .map(|anchor| anchor.to_owned())
        .collect()
}

fn read(path: &Path, key: &'static str) -> Result<Vec<u8>, ClusterError> {
    std::fs::read(path).map_err(|source| ClusterError::TlsFile {
        key,
        path: path.to_owned(),
        source,
    })
}
