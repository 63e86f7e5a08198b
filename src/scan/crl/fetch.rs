//! Fetches CRLs over plain HTTP with a per-URL cache: bounded size, conditional GET, and
//! at most one fetch per URL per interval however many targets share the URL.
//!
//! Network exposure: CRL URLs come from certificates that endpoints present, so a hostile
//! endpoint chooses where certinel sends a GET. The fetcher limits what that buys it:
//! `http://` only (no https, ldap or file), no user-info in the URL, names resolved by the
//! scanner's [`Resolver`] (hosts file, `.invalid` refused), sockets counted in the
//! process's [`ConnectionBudget`], one deadline ([`FETCH_TIMEOUT`]), bodies capped at
//! [`MAX_CRL_BYTES`], no redirects followed, at most one request per URL per interval, and
//! the answer is only ever parsed as a CRL, never echoed. The destination address is not
//! restricted: a hostile certificate can make certinel send a bodiless GET to an internal
//! HTTP address. Set `[scanner] crl = false` where that matters.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ETAG, HOST, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, USER_AGENT};
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::model::{Host, IpFamily, ResolveMode};
use crate::scan::budget::{ConnectionBudget, Demand};
use crate::scan::crl::verdict;
use crate::scan::resolve::{ResolveError, Resolver};

/// The largest CRL certinel downloads: 10 MiB. Public CAs shard their CRLs well below
/// this; a larger body is refused (`too_large`) instead of filling memory.
pub const MAX_CRL_BYTES: usize = 10 * 1024 * 1024;

/// The most URLs the cache remembers. Past it, URLs no caller is using are forgotten (and
/// fetched again when asked for), so endpoints presenting ever new distribution points
/// cannot grow the cache without bound.
pub const MAX_CACHED_URLS: usize = 1024;

/// The deadline for one fetch: resolution, connection, request and the whole body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// A CRL as last fetched from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedCrl {
    /// The distribution point URL.
    pub url: String,
    /// The CRL as served (DER).
    pub der: Bytes,
    /// Its nextUpdate, when it parses and has one.
    pub next_update: Option<OffsetDateTime>,
    /// The ETag the server sent, for `If-None-Match`.
    etag: Option<HeaderValue>,
    /// The Last-Modified the server sent, for `If-Modified-Since`.
    last_modified: Option<HeaderValue>,
}

/// Why a CRL could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrlFetchError {
    /// The URL is not a plain `http://` URL certinel will fetch.
    #[error("refused CRL URL {url:?}: {problem}")]
    UnsupportedUrl {
        /// The URL as the certificate spells it.
        url: String,
        /// Why it is refused.
        problem: &'static str,
    },
    /// The host did not resolve.
    #[error(transparent)]
    Dns(#[from] ResolveError),
    /// No resolved address accepted a connection.
    #[error("cannot connect to the CRL server: {0}")]
    Connect(String),
    /// The process's connection budget had no free socket before the deadline.
    #[error("no free connection in the process's budget")]
    Budget,
    /// The fetch did not finish within [`FETCH_TIMEOUT`].
    #[error("the CRL fetch did not finish within {FETCH_TIMEOUT:?}")]
    Timeout,
    /// The HTTP exchange failed.
    #[error("HTTP error while fetching the CRL: {0}")]
    Http(String),
    /// The server answered with a status other than 200 or 304.
    #[error("the CRL server answered {0}")]
    Status(u16),
    /// The body is larger than [`MAX_CRL_BYTES`].
    #[error("the CRL is larger than {MAX_CRL_BYTES} bytes")]
    TooLarge,
}

impl CrlFetchError {
    /// The stable keyword, the `reason` label of the fetch error metric.
    pub fn keyword(&self) -> &'static str {
        match self {
            CrlFetchError::UnsupportedUrl { .. } => "unsupported_url",
            CrlFetchError::Dns(_) => "dns",
            CrlFetchError::Connect(_) => "connect",
            CrlFetchError::Budget => "budget",
            CrlFetchError::Timeout => "timeout",
            CrlFetchError::Http(_) => "http",
            CrlFetchError::Status(_) => "http_status",
            CrlFetchError::TooLarge => "too_large",
        }
    }
}

/// The CRL cache shared by every scan of the process.
#[derive(Debug)]
pub struct CrlFetcher {
    resolver: Resolver,
    budget: ConnectionBudget,
    urls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<UrlState>>>>,
    requests: AtomicUsize,
    /// What `/metrics` shows, kept apart from the per-URL locks so that a scrape never
    /// waits for a fetch.
    summary: Mutex<CrlSummary>,
}

/// The fetcher's state as metrics show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrlSummary {
    /// The nextUpdate of every CRL held, by URL (`None`: the CRL has none or does not
    /// parse).
    pub next_updates: BTreeMap<String, Option<OffsetDateTime>>,
    /// Failed fetches by reason keyword, since start.
    pub fetch_errors: BTreeMap<&'static str, u64>,
}

/// What is known about one URL. Its async lock is what makes fetches single-flight: a
/// second caller waits for the first one's answer and then finds it fresh.
#[derive(Debug, Default)]
struct UrlState {
    /// When the last request was made (successful or not).
    checked_at: Option<OffsetDateTime>,
    /// The last CRL received.
    crl: Option<Arc<FetchedCrl>>,
    /// The last request's error, when it failed.
    error: Option<CrlFetchError>,
}

enum Answer {
    NotModified,
    Fresh {
        der: Bytes,
        etag: Option<HeaderValue>,
        last_modified: Option<HeaderValue>,
    },
}

impl CrlFetcher {
    /// A fetcher resolving with `resolver` and opening sockets within `budget`.
    pub fn new(resolver: Resolver, budget: ConnectionBudget) -> CrlFetcher {
        CrlFetcher {
            resolver,
            budget,
            urls: Mutex::new(HashMap::new()),
            requests: AtomicUsize::new(0),
            summary: Mutex::new(CrlSummary::default()),
        }
    }

    /// How many HTTP requests this fetcher has sent (conditional ones included).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The CRL at `url`, fetched when the last request is at least `interval` old (by
    /// `now`) or none was made; otherwise the remembered answer, CRL or error. A fetch
    /// that fails keeps no CRL from an earlier one: the error is the answer until the
    /// next request, so a CRL server that went away shows as an error.
    pub async fn get(
        &self,
        url: &str,
        now: OffsetDateTime,
        interval: Duration,
    ) -> Result<Arc<FetchedCrl>, CrlFetchError> {
        let state = self.state_of(url);
        let mut state = state.lock().await;
        let due = state
            .checked_at
            .is_none_or(|checked_at| now - checked_at >= interval);
        if due {
            state.checked_at = Some(now);
            match self.request(url, state.crl.as_deref()).await {
                Ok(Answer::NotModified) if state.crl.is_some() => state.error = None,
                Ok(Answer::NotModified) => {
                    self.count_error(&CrlFetchError::Status(304));
                    state.error = Some(CrlFetchError::Status(304));
                }
                Ok(Answer::Fresh {
                    der,
                    etag,
                    last_modified,
                }) => {
                    tracing::debug!(target: "certinel::crl", url, bytes = der.len(), "fetched CRL");
                    let next_update = verdict::next_update(&der);
                    state.crl = Some(Arc::new(FetchedCrl {
                        url: url.to_owned(),
                        next_update,
                        der,
                        etag,
                        last_modified,
                    }));
                    self.with_summary(|summary| {
                        summary.next_updates.insert(url.to_owned(), next_update);
                    });
                    state.error = None;
                }
                Err(error) => {
                    tracing::warn!(target: "certinel::crl", url, %error, "CRL fetch failed");
                    self.count_error(&error);
                    state.error = Some(error);
                }
            }
        }
        match (&state.error, &state.crl) {
            (Some(error), _) => Err(error.clone()),
            (None, Some(crl)) => Ok(crl.clone()),
            // Every request leaves a CRL or an error behind, and `due` holds without one.
            (None, None) => Err(CrlFetchError::Http("no answer recorded".to_owned())),
        }
    }

    /// The CRLs held and the fetch errors so far, for metrics. Never waits for a fetch.
    pub fn summary(&self) -> CrlSummary {
        let mut copy = CrlSummary::default();
        self.with_summary(|summary| copy = summary.clone());
        copy
    }

    fn count_error(&self, error: &CrlFetchError) {
        self.with_summary(|summary| *summary.fetch_errors.entry(error.keyword()).or_default() += 1);
    }

    fn with_summary(&self, change: impl FnOnce(&mut CrlSummary)) {
        // The summary is plain data replaced field by field: a panic elsewhere cannot leave
        // it half-written, so a poisoned lock is still usable.
        let mut summary = match self.summary.lock() {
            Ok(summary) => summary,
            Err(poisoned) => poisoned.into_inner(),
        };
        change(&mut summary);
    }

    fn state_of(&self, url: &str) -> Arc<tokio::sync::Mutex<UrlState>> {
        // A panic while holding this lock cannot leave the map inconsistent: it only
        // inserts a default entry.
        let mut urls = match self.urls.lock() {
            Ok(urls) => urls,
            Err(poisoned) => poisoned.into_inner(),
        };
        if urls.len() >= MAX_CACHED_URLS && !urls.contains_key(url) {
            // An entry only this map holds is not being fetched or read right now.
            urls.retain(|_, state| Arc::strong_count(state) > 1);
            let kept: Vec<String> = urls.keys().cloned().collect();
            self.with_summary(|summary| {
                summary.next_updates.retain(|known, _| kept.contains(known));
            });
        }
        urls.entry(url.to_owned()).or_default().clone()
    }

    async fn request(
        &self,
        url: &str,
        cached: Option<&FetchedCrl>,
    ) -> Result<Answer, CrlFetchError> {
        let target = parse_url(url)?;
        self.requests.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + FETCH_TIMEOUT;
        tokio::time::timeout_at(deadline, self.exchange(&target, cached, deadline))
            .await
            .map_err(|_| CrlFetchError::Timeout)?
    }

    async fn exchange(
        &self,
        target: &HttpTarget,
        cached: Option<&FetchedCrl>,
        deadline: Instant,
    ) -> Result<Answer, CrlFetchError> {
        let addresses = self
            .resolver
            .resolve(&target.host, IpFamily::Any, ResolveMode::All)
            .await?;
        let _permit = self
            .budget
            .acquire_before(Demand::Scheduled, deadline)
            .await
            .map_err(|_| CrlFetchError::Budget)?;
        let mut last_error = String::from("no address");
        let mut stream = None;
        for address in addresses {
            match TcpStream::connect((address, target.port)).await {
                Ok(connected) => {
                    stream = Some(connected);
                    break;
                }
                Err(error) => last_error = format!("{address}: {error}"),
            }
        }
        let stream = stream.ok_or(CrlFetchError::Connect(last_error))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| CrlFetchError::Http(error.to_string()))?;
        let driver = tokio::spawn(connection);

        let mut request = Request::get(target.path.clone())
            .header(HOST, target.authority.as_str())
            .header(USER_AGENT, concat!("certinel/", env!("CARGO_PKG_VERSION")));
        if let Some(cached) = cached {
            if let Some(etag) = &cached.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(last_modified) = &cached.last_modified {
                request = request.header(IF_MODIFIED_SINCE, last_modified);
            }
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|error| CrlFetchError::Http(error.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| CrlFetchError::Http(error.to_string()))?;
        let answer = match response.status() {
            StatusCode::NOT_MODIFIED => Ok(Answer::NotModified),
            StatusCode::OK => {
                let etag = response.headers().get(ETAG).cloned();
                let last_modified = response.headers().get(LAST_MODIFIED).cloned();
                let body = Limited::new(response.into_body(), MAX_CRL_BYTES)
                    .collect()
                    .await
                    .map_err(|error| {
                        if error.downcast_ref::<LengthLimitError>().is_some() {
                            CrlFetchError::TooLarge
                        } else {
                            CrlFetchError::Http(error.to_string())
                        }
                    })?;
                Ok(Answer::Fresh {
                    der: body.to_bytes(),
                    etag,
                    last_modified,
                })
            }
            status => Err(CrlFetchError::Status(status.as_u16())),
        };
        driver.abort();
        answer
    }
}

/// Where an `http://` CRL URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpTarget {
    host: Host,
    port: u16,
    authority: String,
    path: String,
}

fn parse_url(url: &str) -> Result<HttpTarget, CrlFetchError> {
    let refuse = |problem| CrlFetchError::UnsupportedUrl {
        url: url.to_owned(),
        problem,
    };
    let uri: Uri = url.parse().map_err(|_| refuse("not a valid URL"))?;
    if uri
        .scheme_str()
        .is_none_or(|scheme| !scheme.eq_ignore_ascii_case("http"))
    {
        return Err(refuse("only http:// CRL URLs are fetched"));
    }
    let authority = uri.authority().ok_or_else(|| refuse("no host"))?;
    if authority.as_str().contains('@') {
        return Err(refuse("user-info in a CRL URL is refused"));
    }
    let host_text = authority.host();
    let bare = host_text.trim_start_matches('[').trim_end_matches(']');
    let host = match bare.parse() {
        Ok(ip) => Host::Ip(ip),
        Err(_) if !bare.is_empty() => Host::Name(bare.to_ascii_lowercase()),
        Err(_) => return Err(refuse("no host")),
    };
    Ok(HttpTarget {
        host,
        port: authority.port_u16().unwrap_or(80),
        authority: authority.as_str().to_owned(),
        path: uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |path| path.as_str().to_owned()),
    })
}

#[cfg(test)]
mod tests;
