//! The HTTP client under instant-acme: HTTPS with our roots, retries of 5xx, 429 and
//! network errors (see [`super::retry`]), and one observer call per request for the
//! `certinel_acme_requests_total{endpoint,status}` metric and its duration histogram. It
//! also remembers what the directory advertises and the CA's clock skew (`Date` header).
//! Response bodies are capped ([`capped`]): an oversized one fails at once with
//! [`BodyTooLarge`] and is not retried.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rand::Rng;

use crate::acme::renewal_info::DirectoryFacts;
use crate::acme::retry::{self, AttemptOutcome, RetryDecision, RetryPolicy};

mod capped;
pub(crate) mod exchange;

pub use capped::{BodyTooLarge, MAX_BODY_BYTES};

use exchange::ResponseFacts;

/// Receives one call per HTTP request sent to the CA, retries included.
pub trait AcmeObserver: Send + Sync + 'static {
    /// `endpoint` is a fixed keyword (`directory`, `new_nonce`, `new_account`,
    /// `new_order`, `order`, `authorization`, `challenge`, `finalize`, `certificate`,
    /// `account`, `revoke_cert`, `key_change`, `renewal_info` or `other`); `status` is
    /// the HTTP status code (`"201"`) or `"network"` when no answer came back.
    fn request_done(&self, endpoint: &'static str, status: &str, elapsed: Duration);

    /// [`request_done`](Self::request_done) for a request to the CA the configuration
    /// names `ca`; the renewer's per-CA observers call it. By default the name is dropped.
    fn request_done_at(&self, ca: &str, endpoint: &'static str, status: &str, elapsed: Duration) {
        let _ = ca;
        self.request_done(endpoint, status, elapsed);
    }

    /// The order slots of the CA named `ca` changed: `in_flight` permits are held and
    /// `waiting` renewals wait for one (`order_slots.rs`). Ignored by default.
    fn order_slots_changed(&self, ca: &str, in_flight: usize, waiting: usize) {
        let _ = (ca, in_flight, waiting);
    }
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl AcmeObserver for NoopObserver {
    fn request_done(&self, _endpoint: &'static str, _status: &str, _elapsed: Duration) {}
}

/// The CA could not be reached: what failed on the last attempt.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{url}: {message} (after {attempts} attempt(s))")]
pub struct TransportError {
    url: String,
    attempts: u32,
    message: String,
}

impl TransportError {
    pub(crate) fn new(url: &str, attempts: u32, message: impl Into<String>) -> Self {
        Self {
            url: url.to_owned(),
            attempts,
            message: message.into(),
        }
    }
}

/// Names the ACME resource behind a URL path from words CAs use in their paths (Pebble's
/// `/authZ/`, Let's Encrypt's `/acme/authz/`); directory resources are known by URL first.
pub fn endpoint_for_path(path: &str) -> &'static str {
    let path = path.to_ascii_lowercase();
    const WORDS: [(&str, &str); 7] = [
        ("finalize", "finalize"),
        ("authz", "authorization"),
        ("chal", "challenge"),
        ("cert", "certificate"),
        ("order", "order"),
        ("acct", "account"),
        ("account", "account"),
    ];
    WORDS
        .iter()
        .find(|(word, _)| path.contains(word))
        .map_or("other", |(_, endpoint)| endpoint)
}

/// Builds the HTTP client instant-acme sends everything through.
pub(crate) fn build_client(
    directory: &str,
    ca_file: Option<&Path>,
    policy: RetryPolicy,
    observer: Arc<dyn AcmeObserver>,
) -> Result<InstrumentedClient, std::io::Error> {
    let roots = load_roots(ca_file)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    // The TLS layer checks the scheme (`https_only`).
    tcp.enforce_http(false);
    // A JWS POST leaves as two writes (HTTP/2 HEADERS, then DATA). With Nagle's algorithm
    // the second waits for the CA to acknowledge the first, which a CA waiting for the
    // body does only after its delayed-ACK timer: 40 ms more for every POST.
    tcp.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    let hyper: HyperClient<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build(connector);
    Ok(InstrumentedClient::wrap(
        Box::new(capped::CappedClient::new(hyper, MAX_BODY_BYTES)),
        directory,
        policy,
        observer,
    ))
}

fn load_roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_file {
        // A CA bundle is a few hundred KiB; the cap keeps a wrong path (a log, a device)
        // from being read whole.
        const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;
        let pem =
            crate::disk::read_capped(path, MAX_CA_FILE_BYTES).map_err(|error| match error {
                crate::disk::ReadCappedError::Io(error) => error,
                too_large => std::io::Error::other(too_large),
            })?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert?).map_err(std::io::Error::other)?;
        }
        if roots.is_empty() {
            return Err(std::io::Error::other(format!(
                "{} holds no PEM certificate",
                path.display()
            )));
        }
        return Ok(roots);
    }
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    Ok(roots)
}

/// The [`HttpClient`] given to instant-acme. Clones share the connection pool.
#[derive(Clone)]
pub(crate) struct InstrumentedClient {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Box<dyn HttpClient>,
    policy: RetryPolicy,
    observer: Arc<dyn AcmeObserver>,
    directory: String,
    /// URL → endpoint keyword, learnt from the directory document.
    known_urls: Mutex<HashMap<String, &'static str>>,
    /// What the last directory document advertised.
    facts: Mutex<DirectoryFacts>,
    /// CA time minus local time in seconds, from the latest answer with a `Date` header:
    /// a fact about the CA (the clock-skew gauge), copied from each request's
    /// [`ResponseFacts`] after the request returned. The order code never reads it.
    clock_skew: Mutex<Option<f64>>,
}

impl InstrumentedClient {
    /// Wraps `inner`, the client that actually talks to the network.
    fn wrap(
        inner: Box<dyn HttpClient>,
        directory: &str,
        policy: RetryPolicy,
        observer: Arc<dyn AcmeObserver>,
    ) -> Self {
        let mut known = HashMap::new();
        known.insert(directory.to_owned(), "directory");
        Self {
            shared: Arc::new(Shared {
                inner,
                policy,
                observer,
                directory: directory.to_owned(),
                known_urls: Mutex::new(known),
                facts: Mutex::new(DirectoryFacts::default()),
                clock_skew: Mutex::new(None),
            }),
        }
    }

    /// What the last directory document advertised (empty before the first one).
    pub(crate) fn directory_facts(&self) -> DirectoryFacts {
        lock(&self.shared.facts).clone()
    }

    /// CA time minus local time in seconds, from the latest response's `Date` header.
    pub(crate) fn clock_skew(&self) -> Option<f64> {
        *lock(&self.shared.clock_skew)
    }
}

/// Locks `mutex`; a panic elsewhere while it was held leaves plain data that is still
/// usable, so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// CA time minus `local` in seconds, from a `Date` header value (RFC 9110 IMF-fixdate).
pub(crate) fn clock_skew_from_date(date: &str, local: SystemTime) -> Option<f64> {
    let ca =
        time::OffsetDateTime::parse(date.trim(), &time::format_description::well_known::Rfc2822)
            .ok()?;
    let local = time::OffsetDateTime::from(local);
    Some((ca - local).as_seconds_f64())
}

impl HttpClient for InstrumentedClient {
    fn request(
        &self,
        request: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let exchange = shared.send_with_retries(request).await;
            if exchange.facts.clock_skew.is_some() {
                *lock(&shared.clock_skew) = exchange.facts.clock_skew;
            }
            exchange::deliver(&exchange.facts);
            exchange.result
        })
    }
}

/// One request's outcome after retries, with what its answer said besides the body.
struct Exchange {
    result: Result<BytesResponse, instant_acme::Error>,
    facts: ResponseFacts,
}

impl Shared {
    async fn send_with_retries(&self, request: Request<BodyWrapper<Bytes>>) -> Exchange {
        let (parts, body) = request.into_parts();
        // The body is an in-memory buffer: collecting it cannot fail and lets us resend it.
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        let url = parts.uri.to_string();
        let endpoint = self.endpoint(&url, parts.uri.path());
        let mut facts = ResponseFacts::default();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut attempt = Request::new(if body.is_empty() {
                BodyWrapper::default()
            } else {
                BodyWrapper::from(body.to_vec())
            });
            *attempt.method_mut() = parts.method.clone();
            *attempt.uri_mut() = parts.uri.clone();
            *attempt.version_mut() = parts.version;
            *attempt.headers_mut() = parts.headers.clone();

            let started = tokio::time::Instant::now();
            let sent =
                tokio::time::timeout(self.policy.request_timeout, self.request_and_body(attempt))
                    .await;
            let elapsed = started.elapsed();
            let (outcome, result) = match sent {
                Ok(Ok(response)) => {
                    let status = response.parts.status;
                    let skew = response
                        .parts
                        .headers
                        .get(http::header::DATE)
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| clock_skew_from_date(value, SystemTime::now()));
                    if skew.is_some() {
                        facts.clock_skew = skew;
                    }
                    self.observer
                        .request_done(endpoint, status.as_str(), elapsed);
                    if endpoint == "new_order" {
                        facts.new_order_location = response
                            .parts
                            .headers
                            .get(http::header::LOCATION)
                            .and_then(|value| value.to_str().ok())
                            .map(str::to_owned);
                    }
                    let retry_after = response
                        .parts
                        .headers
                        .get(http::header::RETRY_AFTER)
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| retry::parse_retry_after(value, SystemTime::now()));
                    let outcome = AttemptOutcome::Status {
                        status: status.as_u16(),
                        retry_after,
                    };
                    (outcome, Ok(response))
                }
                Ok(Err(AttemptError::TooLarge(status))) => {
                    // Retrying would only download the same oversized answer again.
                    self.observer
                        .request_done(endpoint, status.as_str(), elapsed);
                    tracing::warn!(%url, limit = MAX_BODY_BYTES, "ACME response body too large");
                    return Exchange {
                        result: Err(instant_acme::Error::Other(Box::new(BodyTooLarge::new(
                            &url,
                            MAX_BODY_BYTES,
                        )))),
                        facts,
                    };
                }
                Ok(Err(AttemptError::Failed(error))) => {
                    self.observer.request_done(endpoint, "network", elapsed);
                    (AttemptOutcome::NetworkError, Err(error_chain(&error)))
                }
                Err(_elapsed) => {
                    self.observer.request_done(endpoint, "network", elapsed);
                    let message = format!("no answer within {:?}", self.policy.request_timeout);
                    (AttemptOutcome::NetworkError, Err(message))
                }
            };
            let jitter = rand::rng().random::<f64>();
            match retry::decide(&self.policy, attempts, outcome, jitter) {
                RetryDecision::Retry(wait) => {
                    tracing::debug!(%url, attempts, ?wait, ?outcome, "retrying ACME request");
                    tokio::time::sleep(wait).await;
                }
                RetryDecision::Stop => {
                    if let AttemptOutcome::Status {
                        status,
                        retry_after: Some(wait),
                    } = outcome
                    {
                        if !(200..400).contains(&status) {
                            let until = time::OffsetDateTime::now_utc()
                                + time::Duration::try_from(wait).unwrap_or(time::Duration::MAX);
                            facts.retry_after = Some(until);
                        }
                    }
                    let result = match result {
                        Ok(response) => Ok(self.finish(&url, response).await),
                        Err(message) => Err(instant_acme::Error::Other(Box::new(
                            TransportError::new(&url, attempts, message),
                        ))),
                    };
                    return Exchange { result, facts };
                }
            }
        }
    }

    /// Sends one attempt and reads its whole body (up to the cap the inner client enforces),
    /// so that a CA sending headers and then stalling hits the per-attempt timeout instead
    /// of hanging whoever reads the body.
    async fn request_and_body(
        &self,
        attempt: Request<BodyWrapper<Bytes>>,
    ) -> Result<BytesResponse, AttemptError> {
        let BytesResponse { parts, mut body } = self
            .inner
            .request(attempt)
            .await
            .map_err(AttemptError::Failed)?;
        let bytes = body.into_bytes().await.map_err(|error| {
            if capped::is_over_limit(error.as_ref()) {
                AttemptError::TooLarge(parts.status)
            } else {
                AttemptError::Failed(instant_acme::Error::Other(error))
            }
        })?;
        Ok(BytesResponse {
            parts,
            body: Box::new(bytes),
        })
    }

    fn endpoint(&self, url: &str, path: &str) -> &'static str {
        let known = self
            .known_urls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        known
            .get(url)
            .copied()
            .unwrap_or_else(|| endpoint_for_path(path))
    }

    /// Learns the directory's URLs, and gives error responses that are not problem
    /// documents (a proxy's HTML 502 page) a problem body instant-acme can read.
    async fn finish(&self, url: &str, response: BytesResponse) -> BytesResponse {
        let status = response.parts.status;
        let is_directory = url == self.directory && status.is_success();
        if !is_directory && (status.is_success() || status.is_redirection()) {
            return response;
        }
        let BytesResponse { parts, mut body } = response;
        let bytes = body.into_bytes().await.unwrap_or_default();
        let json = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
        let bytes = if is_directory {
            if let Some(json) = &json {
                self.learn_directory(json);
            }
            bytes
        } else if json.as_ref().is_some_and(|doc| doc.get("type").is_some()) {
            bytes
        } else {
            synthetic_problem(status)
        };
        BytesResponse {
            parts,
            body: Box::new(bytes),
        }
    }

    fn learn_directory(&self, directory: &serde_json::Value) {
        const RESOURCES: [(&str, &str); 6] = [
            ("newNonce", "new_nonce"),
            ("newAccount", "new_account"),
            ("newOrder", "new_order"),
            ("revokeCert", "revoke_cert"),
            ("keyChange", "key_change"),
            ("renewalInfo", "renewal_info"),
        ];
        *lock(&self.facts) = DirectoryFacts::from_directory(directory);
        let mut known = lock(&self.known_urls);
        for (field, endpoint) in RESOURCES {
            if let Some(url) = directory.get(field).and_then(|value| value.as_str()) {
                known.insert(url.to_owned(), endpoint);
            }
        }
    }
}

/// Why one attempt brought back no usable answer.
enum AttemptError {
    /// The request or the body failed in transit; worth another attempt.
    Failed(instant_acme::Error),
    /// The answer (with this status) has a body past the cap; final.
    TooLarge(StatusCode),
}

fn synthetic_problem(status: StatusCode) -> Bytes {
    let problem_type = match status.as_u16() {
        429 => "urn:ietf:params:acme:error:rateLimited",
        500..=599 => "urn:ietf:params:acme:error:serverInternal",
        _ => "urn:ietf:params:acme:error:malformed",
    };
    let document = serde_json::json!({
        "type": problem_type,
        "detail": format!("HTTP {status} without a problem document"),
        "status": status.as_u16(),
    });
    Bytes::from(document.to_string())
}

/// Flattens an error and its sources into one line ("connection refused" is often
/// three levels down in hyper's errors).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let next = inner.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = inner.source();
    }
    text
}

impl fmt::Debug for InstrumentedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstrumentedClient")
            .field("directory", &self.shared.directory)
            .field("policy", &self.shared.policy)
            .finish()
    }
}

#[cfg(test)]
mod tests;
