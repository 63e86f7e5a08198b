//! An HTTPS front for Pebble 2.4, which has neither ACME Renewal Information nor profiles:
//! it adds `renewalInfo` (pointing to itself) and `meta.profiles` to the directory, answers
//! renewalInfo requests with the window the test chooses, records the payloads of newOrder
//! requests (and echoes their `replaces` in the order, as an ARI CA does), and passes
//! everything else to Pebble unchanged.
//!
//! The `Host` header is passed on as the client sent it, so Pebble writes the front's
//! address into every URL it returns and checks JWS `url` fields against it: the client
//! only ever talks to the front.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::common::pebble::Pebble;
use crate::common::pki::loopback_server_certificate;

/// How the front answers a renewalInfo request.
#[derive(Clone, Debug)]
pub struct AriReply {
    /// The suggestedWindow (sent as given, even when the end is not after the start).
    pub window: (OffsetDateTime, OffsetDateTime),
    /// The Retry-After header value; none sends no header.
    pub retry_after: Option<String>,
    /// The `explanationURL` to send, if any.
    pub explanation_url: Option<String>,
}

/// What the test chooses and what the front saw.
#[derive(Default)]
struct Shared {
    ari: Option<AriReply>,
    profiles: Vec<(String, String)>,
    renewal_info: bool,
    new_orders: Vec<serde_json::Value>,
    renewal_info_ids: Vec<String>,
    new_order_path: Option<String>,
    reject_replaces: bool,
    ignore_replaces: bool,
    /// Requests whose path starts with this get a 503 instead of reaching Pebble.
    failing_prefix: Option<String>,
    /// Every request's path and the status it was answered with, in order.
    answered: Vec<(String, u16)>,
    /// newOrder requests get 429 `rateLimited` with this `Retry-After` (seconds).
    rate_limit_new_orders: Option<u64>,
}

/// A running front; it stops when dropped.
pub struct AriFront {
    /// The directory URL to configure (`https://127.0.0.1:PORT/dir`).
    pub directory_url: String,
    /// A PEM bundle with the front's root and Pebble's API root: configure it as `ca_file`.
    pub ca_file: PathBuf,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for AriFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AriFront {
    /// Starts a front for `pebble` on a free loopback port, advertising `renewalInfo` when
    /// `renewal_info` is set and the given `profiles` (name, description).
    pub async fn start(pebble: &Pebble, renewal_info: bool, profiles: &[(&str, &str)]) -> AriFront {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (tls, root_pem) = front_tls();
        let ca_file = dir.path().join("front-and-pebble-roots.pem");
        let pebble_root = std::fs::read_to_string(&pebble.api_root).expect("Pebble API root");
        std::fs::write(&ca_file, format!("{root_pem}{pebble_root}")).expect("write roots");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the front");
        let addr = listener.local_addr().expect("front address");
        let pebble_base = pebble
            .directory_url
            .strip_suffix("/dir")
            .expect("Pebble's directory ends in /dir")
            .to_owned();
        let shared = Arc::new(Mutex::new(Shared {
            renewal_info,
            profiles: profiles
                .iter()
                .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
                .collect(),
            ..Shared::default()
        }));
        let client = pebble_client(&pebble.api_root);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let task = tokio::spawn(serve(
            listener,
            acceptor,
            Arc::new(Forward {
                client,
                pebble_base,
                front: addr,
                shared: shared.clone(),
            }),
        ));
        AriFront {
            directory_url: format!("https://{addr}/dir"),
            ca_file,
            shared,
            task,
            _dir: dir,
        }
    }

    /// Answers the next renewalInfo requests with `reply`.
    pub fn set_window(&self, reply: AriReply) {
        self.shared.lock().unwrap().ari = Some(reply);
    }

    /// Starts (or stops) advertising `renewalInfo` in the directory, as a CA that rolls
    /// ARI out while clients run.
    pub fn set_renewal_info(&self, advertised: bool) {
        self.shared.lock().unwrap().renewal_info = advertised;
    }

    /// Changes the profiles the directory advertises.
    pub fn set_profiles(&self, profiles: &[(&str, &str)]) {
        self.shared.lock().unwrap().profiles = profiles
            .iter()
            .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
            .collect();
    }

    /// Answers the next newOrder that carries `replaces` with 409 `alreadyReplaced`.
    pub fn reject_next_replaces(&self) {
        self.shared.lock().unwrap().reject_replaces = true;
    }

    /// Creates orders with `replaces` without echoing it, as a CA that ignores the field.
    pub fn ignore_replaces(&self) {
        self.shared.lock().unwrap().ignore_replaces = true;
    }

    /// Answers every request whose path starts with `prefix` with a 503 (Pebble's
    /// certificate downloads: `/certZ/`), until called again with `None`.
    pub fn fail_paths(&self, prefix: Option<&str>) {
        self.shared.lock().unwrap().failing_prefix = prefix.map(str::to_owned);
    }

    /// Answers every newOrder with 429 `rateLimited` and `Retry-After: seconds`, until
    /// called again with `None`.
    pub fn rate_limit_new_orders(&self, retry_after: Option<u64>) {
        self.shared.lock().unwrap().rate_limit_new_orders = retry_after;
    }

    /// The JSON payloads of every newOrder request so far.
    pub fn new_orders(&self) -> Vec<serde_json::Value> {
        self.shared.lock().unwrap().new_orders.clone()
    }

    /// Every request so far: its path and the status the front answered it with.
    pub fn answered(&self) -> Vec<(String, u16)> {
        self.shared.lock().unwrap().answered.clone()
    }

    /// The certificate identifiers of every renewalInfo request so far.
    pub fn renewal_info_requests(&self) -> Vec<String> {
        self.shared.lock().unwrap().renewal_info_ids.clone()
    }
}

struct Forward {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    pebble_base: String,
    front: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    forward: Arc<Forward>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let forward = forward.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |request| {
                let forward = forward.clone();
                async move { Ok::<_, Infallible>(forward.handle(request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

impl Forward {
    /// Answers `request` and records its path and status.
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let response = self.answer(request).await;
        let status = response.status().as_u16();
        self.shared.lock().unwrap().answered.push((path, status));
        response
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let failing = self.shared.lock().unwrap().failing_prefix.clone();
        if failing.is_some_and(|prefix| path.starts_with(&prefix)) {
            return Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .body(Full::new(Bytes::from_static(b"front: failing on purpose")))
                .expect("503");
        }
        if let Some(cert_id) = path.strip_prefix("/renewal-info/") {
            return self.renewal_info(cert_id);
        }
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let new_order_path = self.shared.lock().unwrap().new_order_path.clone();
        let mut replaces = None;
        if Some(&path) == new_order_path.as_ref() {
            let rate_limited = self.shared.lock().unwrap().rate_limit_new_orders;
            if let Some(retry_after) = rate_limited {
                return Response::builder()
                    .status(StatusCode::TOO_MANY_REQUESTS)
                    .header("content-type", "application/problem+json")
                    .header("retry-after", retry_after.to_string())
                    .body(Full::new(Bytes::from_static(
                        br#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"front: too many new orders"}"#,
                    )))
                    .expect("429");
            }
            if let Some(payload) = jws_payload(&body) {
                replaces = payload.get("replaces").cloned();
                let mut shared = self.shared.lock().unwrap();
                shared.new_orders.push(payload);
                if replaces.is_some() && std::mem::take(&mut shared.reject_replaces) {
                    return already_replaced();
                }
            }
        }
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut upstream = Request::builder()
            .method(parts.method.clone())
            .uri(format!("{}{path_and_query}", self.pebble_base));
        for (name, value) in &parts.headers {
            if name != http::header::TRANSFER_ENCODING && name != http::header::CONNECTION {
                upstream = upstream.header(name, value);
            }
        }
        let upstream = upstream.body(Full::new(body)).expect("upstream request");
        let response = match self.client.request(upstream).await {
            Ok(response) => response,
            Err(error) => {
                return Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Full::new(Bytes::from(format!("front: {error}"))))
                    .expect("502");
            }
        };
        let (parts, body) = response.into_parts();
        let mut body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if path == "/dir" && parts.status.is_success() {
            body = self.rewrite_directory(&body);
        }
        let echo = !self.shared.lock().unwrap().ignore_replaces;
        if let Some(replaces) = replaces.filter(|_| echo && parts.status.is_success()) {
            // A CA with ARI echoes `replaces` in the order (RFC 9773 section 5).
            if let Ok(mut order) = serde_json::from_slice::<serde_json::Value>(&body) {
                order["replaces"] = replaces;
                body = Bytes::from(order.to_string());
            }
        }
        let mut out = Response::builder().status(parts.status);
        for (name, value) in &parts.headers {
            if name != http::header::TRANSFER_ENCODING
                && name != http::header::CONNECTION
                && name != http::header::CONTENT_LENGTH
            {
                out = out.header(name, value);
            }
        }
        out.body(Full::new(body)).expect("response")
    }

    fn rewrite_directory(&self, body: &Bytes) -> Bytes {
        let mut directory: serde_json::Value =
            serde_json::from_slice(body).expect("Pebble's directory is JSON");
        let mut shared = self.shared.lock().unwrap();
        shared.new_order_path = directory["newOrder"]
            .as_str()
            .and_then(|url| url.parse::<http::Uri>().ok())
            .map(|uri| uri.path().to_owned());
        if shared.renewal_info {
            directory["renewalInfo"] = format!("https://{}/renewal-info", self.front).into();
        }
        if !shared.profiles.is_empty() {
            let profiles: serde_json::Map<String, serde_json::Value> = shared
                .profiles
                .iter()
                .map(|(name, text)| (name.clone(), text.clone().into()))
                .collect();
            directory["meta"]["profiles"] = profiles.into();
        }
        Bytes::from(directory.to_string())
    }

    fn renewal_info(&self, cert_id: &str) -> Response<Full<Bytes>> {
        let mut shared = self.shared.lock().unwrap();
        shared.renewal_info_ids.push(cert_id.to_owned());
        let Some(reply) = shared.ari.clone() else {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Full::new(Bytes::from_static(b"no window set")))
                .expect("404");
        };
        let stamp = |t: OffsetDateTime| t.format(&Rfc3339).expect("RFC 3339");
        let mut document = serde_json::json!({
            "suggestedWindow": {"start": stamp(reply.window.0), "end": stamp(reply.window.1)}
        });
        if let Some(url) = &reply.explanation_url {
            document["explanationURL"] = url.clone().into();
        }
        let mut response = Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(retry_after) = &reply.retry_after {
            response = response.header(http::header::RETRY_AFTER, retry_after);
        }
        response
            .body(Full::new(Bytes::from(document.to_string())))
            .expect("renewal info")
    }
}

/// The problem a CA sends when another order already replaced the certificate.
fn already_replaced() -> Response<Full<Bytes>> {
    let problem = serde_json::json!({
        "type": "urn:ietf:params:acme:error:alreadyReplaced",
        "detail": "the certificate was already replaced by another order",
        "status": 409,
    });
    Response::builder()
        .status(StatusCode::CONFLICT)
        .header(http::header::CONTENT_TYPE, "application/problem+json")
        .body(Full::new(Bytes::from(problem.to_string())))
        .expect("409")
}

/// The decoded payload of a flattened JWS (`{"protected", "payload", "signature"}`).
fn jws_payload(body: &[u8]) -> Option<serde_json::Value> {
    let jws: serde_json::Value = serde_json::from_slice(body).ok()?;
    let payload = URL_SAFE_NO_PAD.decode(jws["payload"].as_str()?).ok()?;
    serde_json::from_slice(&payload).ok()
}

/// A TLS config for 127.0.0.1 signed by a fresh root; returns it and the root's PEM.
fn front_tls() -> (rustls::ServerConfig, String) {
    let (root, leaf, leaf_key) = loopback_server_certificate("certinel test ARI front root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .expect("front certificate");
    (config, root.pem())
}

/// An HTTPS client that trusts Pebble's API root.
fn pebble_client(root: &Path) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(root).expect("Pebble API root");
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.expect("PEM")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}
