//! Tests of the HTTP layer: endpoint names, and retries against a scripted inner client.

use std::collections::VecDeque;

use http_body_util::Full;

use super::*;

/// One scripted answer: a status and maybe a `Retry-After`, or `None` for "connection
/// refused".
type Step = Option<(u16, Option<&'static str>)>;

/// Answers with a script of statuses.
struct Scripted {
    script: Mutex<VecDeque<Step>>,
}

impl HttpClient for Scripted {
    fn request(
        &self,
        _request: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let next = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .expect("script too short");
        Box::pin(async move {
            let (status, retry_after) = next.ok_or(instant_acme::Error::Str("refused"))?;
            let mut response = http::Response::builder().status(status);
            if let Some(value) = retry_after {
                response = response.header(http::header::RETRY_AFTER, value);
            }
            let body = Full::new(Bytes::from_static(b"<html>oops</html>"));
            Ok(BytesResponse::from(response.body(body).unwrap()))
        })
    }
}

#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl AcmeObserver for Seen {
    fn request_done(&self, endpoint: &'static str, status: &str, _elapsed: Duration) {
        self.0.lock().unwrap().push(format!("{endpoint} {status}"));
    }
}

/// A client that answers with `script`, retrying three times at most, reporting to
/// `observer`.
fn scripted_client(script: Vec<Step>, observer: Arc<dyn AcmeObserver>) -> InstrumentedClient {
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(8),
        max_retry_after: Duration::from_secs(60),
        request_timeout: Duration::from_secs(5),
    };
    let scripted = Scripted {
        script: Mutex::new(script.into()),
    };
    InstrumentedClient::wrap(Box::new(scripted), "https://ca.test/dir", policy, observer)
}

/// A request to an order URL (the endpoint `order`).
fn order_request() -> Request<BodyWrapper<Bytes>> {
    Request::builder()
        .uri("https://ca.test/acme/order/1")
        .body(BodyWrapper::from(b"{}".to_vec()))
        .unwrap()
}

async fn run(script: Vec<Step>) -> (Result<BytesResponse, instant_acme::Error>, Vec<String>) {
    let seen = Arc::new(Seen::default());
    let client = scripted_client(script, seen.clone());
    let result = client.request(order_request()).await;
    let seen = seen.0.lock().unwrap().clone();
    (result, seen)
}

#[test]
fn endpoint_for_path_knows_pebble_and_lets_encrypt_paths() {
    let cases = [
        ("/authZ/abc", "authorization"),
        ("/acme/authz/1/2", "authorization"),
        ("/chalZ/abc", "challenge"),
        ("/acme/chall/1/2/x", "challenge"),
        ("/finalize-order/abc", "finalize"),
        ("/acme/finalize/1/2", "finalize"),
        ("/certZ/abc", "certificate"),
        ("/acme/cert/abc", "certificate"),
        ("/my-order/abc", "order"),
        ("/acme/order/1/2", "order"),
        ("/my-account/1", "account"),
        ("/acme/acct/1", "account"),
        ("/whatever", "other"),
    ];
    for (path, endpoint) in cases {
        assert_eq!(endpoint_for_path(path), endpoint, "{path}");
    }
}

#[test]
fn synthetic_problem_types_follow_the_status() {
    let body = synthetic_problem(StatusCode::BAD_GATEWAY);
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["type"], "urn:ietf:params:acme:error:serverInternal");
    assert_eq!(doc["status"], 502);
}

#[tokio::test(start_paused = true)]
async fn server_errors_and_rate_limits_are_retried_until_success() {
    let started = tokio::time::Instant::now();
    let script = vec![
        Some((503, None)),
        Some((429, Some("20"))),
        Some((200, None)),
    ];
    let (result, seen) = run(script).await;
    assert_eq!(result.unwrap().parts.status, 200);
    assert_eq!(seen, ["order 503", "order 429", "order 200"]);
    // 0.5 to 1 s of jittered backoff, then the 20 s the server asked for.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(20_500) && waited <= Duration::from_secs(21),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn last_server_error_gets_a_problem_document_instant_acme_can_read() {
    let (result, seen) = run(vec![Some((502, None)); 3]).await;
    assert_eq!(seen.len(), 3);
    let mut response = result.unwrap();
    assert_eq!(response.parts.status, 502);
    let body = response.body.into_bytes().await.unwrap();
    let problem: instant_acme::Problem = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        problem.r#type.as_deref(),
        Some("urn:ietf:params:acme:error:serverInternal")
    );
}

#[tokio::test(start_paused = true)]
async fn long_retry_after_is_handed_back_instead_of_waited_for() {
    let (result, seen) = run(vec![Some((429, Some("3600")))]).await;
    assert_eq!(seen, ["order 429"]);
    assert_eq!(result.unwrap().parts.status, 429);
}

#[tokio::test(start_paused = true)]
async fn a_final_error_with_retry_after_leaves_the_moment_for_the_acme_error() {
    let client = scripted_client(
        vec![Some((429, Some("3600"))), Some((200, Some("30")))],
        Arc::new(NoopObserver),
    );
    let before = time::OffsetDateTime::now_utc();
    let (response, facts) = exchange::recorded(client.request(order_request())).await;
    assert_eq!(response.unwrap().parts.status, 429);
    let until = facts.retry_after.expect("the 429's Retry-After");
    let wait = until - before;
    assert!(
        wait >= time::Duration::seconds(3599) && wait <= time::Duration::seconds(3660),
        "{wait}"
    );
    // A Retry-After on a success (an order still processing) is a polling hint, not a limit.
    let (response, facts) = exchange::recorded(client.request(order_request())).await;
    response.unwrap();
    assert_eq!(facts.retry_after, None);
}

#[tokio::test(start_paused = true)]
async fn network_errors_become_a_transport_error_after_the_last_attempt() {
    let (result, seen) = run(vec![None, None, None]).await;
    assert_eq!(seen, ["order network"; 3]);
    let Err(instant_acme::Error::Other(error)) = result else {
        panic!("expected a transport error");
    };
    let transport = error.downcast::<TransportError>().expect("TransportError");
    assert!(transport.to_string().contains("3 attempt"), "{transport}");
}

#[test]
fn clock_skew_is_the_ca_date_minus_local_time() {
    let local = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_752_000);
    // 1_795_752_000 is Fri, 27 Nov 2026 04:00:00 GMT.
    assert_eq!(
        clock_skew_from_date("Fri, 27 Nov 2026 04:00:30 GMT", local),
        Some(30.0)
    );
    assert_eq!(
        clock_skew_from_date("Fri, 27 Nov 2026 03:59:58 GMT", local),
        Some(-2.0)
    );
    assert_eq!(clock_skew_from_date("yesterday", local), None);
}

/// A TLS acceptor for `127.0.0.1` with a fresh self-signed certificate offering `alpn`,
/// and the certificate written to `dir/root.pem` for the client to trust.
fn acceptor_for_localhost(
    dir: &Path,
    alpn: Vec<Vec<u8>>,
) -> (tokio_rustls::TlsAcceptor, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let root = dir.join("root.pem");
    std::fs::write(&root, cert.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    tls.alpn_protocols = alpn;
    (tokio_rustls::TlsAcceptor::from(Arc::new(tls)), root)
}

/// Serves TLS on `127.0.0.1`: every connection's request is read and `answer` writes the
/// raw HTTP/1.1 response. Returns the URL of `/acme/order/1` and the root to trust.
async fn tls_server<F, A>(
    dir: &Path,
    answer: F,
) -> (String, std::path::PathBuf, tokio::task::JoinHandle<()>)
where
    F: Fn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> A + Clone + Send + 'static,
    A: Future<Output = ()> + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    let (acceptor, root) = acceptor_for_localhost(dir, Vec::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/acme/order/1", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = [0u8; 4096];
                let _ = tls.read(&mut request).await;
                answer(tls).await;
            });
        }
    });
    (url, root, task)
}

/// Every answer announces a body, sends one byte of it, and then nothing.
async fn stalling_server(dir: &Path) -> (String, std::path::PathBuf, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncWriteExt;
    tls_server(dir, |mut tls| async move {
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{";
        let _ = tls.write_all(head.as_bytes()).await;
        let _ = tls.flush().await;
        std::future::pending::<()>().await;
    })
    .await
}

/// Every answer is a 200 whose body is `size` bytes of JSON whitespace, with or without a
/// `content-length` (without one, the body ends when the connection closes).
async fn oversized_server(
    dir: &Path,
    size: usize,
    announce_length: bool,
) -> (String, std::path::PathBuf, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncWriteExt;
    tls_server(dir, move |mut tls| async move {
        let length = if announce_length {
            format!("content-length: {size}\r\n")
        } else {
            "connection: close\r\n".to_owned()
        };
        let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{length}\r\n");
        let _ = tls.write_all(head.as_bytes()).await;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < size {
            let n = chunk.len().min(size - sent);
            if tls.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            sent += n;
        }
        let _ = tls.shutdown().await;
    })
    .await
}

/// A client for a test server whose certificate `root` signs, retrying with `policy`.
fn client_trusting(
    root: &Path,
    policy: RetryPolicy,
    observer: Arc<dyn AcmeObserver>,
) -> InstrumentedClient {
    build_client("https://127.0.0.1/dir", Some(root), policy, observer).unwrap()
}

fn quick_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
        max_retry_after: Duration::from_secs(1),
        request_timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn an_oversized_answer_is_refused_once_with_a_clear_problem() {
    for announce_length in [true, false] {
        let temp = tempfile::tempdir().unwrap();
        let (url, root, server) =
            oversized_server(temp.path(), 2 * MAX_BODY_BYTES, announce_length).await;
        let seen = Arc::new(Seen::default());
        let client = client_trusting(&root, quick_policy(), seen.clone());
        let request = Request::builder()
            .uri(url.as_str())
            .body(BodyWrapper::default())
            .unwrap();
        let result = client.request(request).await;
        server.abort();
        let Err(error) = result else {
            panic!("a 2 MiB answer was accepted (content-length: {announce_length})");
        };
        let error = crate::acme::AcmeError::from_acme(crate::acme::Stage::Download, error);
        assert_eq!(error.problem(), "responseTooLarge", "{error}");
        assert!(
            error.to_string().contains("exceeds 1048576 bytes"),
            "{error}"
        );
        assert_eq!(
            *seen.0.lock().unwrap(),
            ["order 200"],
            "refused after one attempt, not retried"
        );
    }
}

#[tokio::test]
async fn an_answer_just_under_the_cap_is_read_whole() {
    let temp = tempfile::tempdir().unwrap();
    let (url, root, server) = oversized_server(temp.path(), MAX_BODY_BYTES, true).await;
    let client = client_trusting(&root, quick_policy(), Arc::new(NoopObserver));
    let request = Request::builder()
        .uri(url.as_str())
        .body(BodyWrapper::default())
        .unwrap();
    let mut response = client.request(request).await.unwrap();
    server.abort();
    let body = response.body.into_bytes().await.unwrap();
    assert_eq!(body.len(), MAX_BODY_BYTES);
}

#[tokio::test]
async fn a_ca_that_sends_headers_then_stalls_hits_the_request_timeout() {
    let temp = tempfile::tempdir().unwrap();
    let (url, root, server) = stalling_server(temp.path()).await;
    let seen = Arc::new(Seen::default());
    let policy = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
        max_retry_after: Duration::from_secs(1),
        request_timeout: Duration::from_millis(300),
    };
    let client = client_trusting(&root, policy, seen.clone());
    let request = Request::builder()
        .uri(url.as_str())
        .body(BodyWrapper::default())
        .unwrap();
    // What instant-acme does with an answer: read the status, then the whole body.
    let answer = async {
        let mut response = client.request(request).await?;
        response
            .body
            .into_bytes()
            .await
            .map_err(instant_acme::Error::Other)
    };
    let result = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("the stalled body must not hang the caller past the request timeout");
    server.abort();
    let Err(instant_acme::Error::Other(error)) = result else {
        panic!("expected a transport error, got {result:?}");
    };
    let transport = error.downcast::<TransportError>().expect("TransportError");
    assert!(
        transport.to_string().contains("no answer within"),
        "{transport}"
    );
    assert_eq!(*seen.0.lock().unwrap(), ["order network"; 2]);
}

#[test]
fn an_endless_ca_file_is_refused_without_reading_it_whole() {
    let error = load_roots(Some(Path::new("/dev/zero"))).unwrap_err();
    assert!(error.to_string().contains("larger than"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_reaches_only_the_operation_whose_request_got_it() {
    let policy = RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(8),
        max_retry_after: Duration::from_secs(60),
        request_timeout: Duration::from_secs(5),
    };
    let scripted = Scripted {
        script: Mutex::new(vec![Some((429, Some("3600"))), Some((500, None))].into()),
    };
    let client = InstrumentedClient::wrap(
        Box::new(scripted),
        "https://ca.test/dir",
        policy,
        Arc::new(NoopObserver),
    );
    let request = |path: &str| {
        Request::builder()
            .uri(format!("https://ca.test/acme/order/{path}"))
            .body(BodyWrapper::from(b"{}".to_vec()))
            .unwrap()
    };
    // Certificate A's request is rate limited; before A's order code looks, certificate
    // B's request (on the same shared client) fails without any Retry-After.
    let (a_gate, a_may_finish) = tokio::sync::oneshot::channel::<()>();
    let (b_done, b_finished) = tokio::sync::oneshot::channel::<()>();
    let renewal_a = exchange::recorded(async {
        client.request(request("a")).await.unwrap();
        a_may_finish.await.unwrap();
    });
    let renewal_b = async {
        let ((), facts) = exchange::recorded(async {
            client.request(request("b")).await.unwrap();
        })
        .await;
        b_done.send(()).unwrap();
        facts
    };
    let b_gate = async {
        b_finished.await.unwrap();
        a_gate.send(()).unwrap();
    };
    let (((), a_facts), b_facts, ()) = tokio::join!(renewal_a, renewal_b, b_gate);
    assert_eq!(b_facts.retry_after, None, "B must not get A's Retry-After");
    assert!(a_facts.retry_after.is_some(), "A keeps its own Retry-After");
}

/// Serves HTTP/2 over TLS on `127.0.0.1` as a CA does (Pebble, Let's Encrypt): every
/// request's whole body is read before the answer, a 200 with `{}`. Returns the URL of
/// `/acme/order/1` and the root to trust.
async fn h2_server_reading_bodies(dir: &Path) -> (String, std::path::PathBuf) {
    let (acceptor, root) = acceptor_for_localhost(dir, vec![b"h2".to_vec()]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/acme/order/1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |request: Request<hyper::body::Incoming>| async move {
                        let _body = request.into_body().collect().await?;
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from("{}"))))
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, root)
}

#[tokio::test]
async fn a_post_is_answered_without_waiting_for_the_cas_delayed_ack() {
    // A JWS POST goes out as an HTTP/2 HEADERS frame and then a DATA frame. With Nagle's
    // algorithm on, the DATA frame waited until the CA acknowledged the HEADERS, and a CA
    // waiting for the body acknowledges only after its delayed-ACK timer (40 ms on Linux):
    // every POST of every order cost 40 ms more.
    const POSTS: u32 = 20;
    let temp = tempfile::tempdir().unwrap();
    let (url, root) = h2_server_reading_bodies(temp.path()).await;
    let client = client_trusting(&root, quick_policy(), Arc::new(NoopObserver));
    let post = || {
        Request::builder()
            .method("POST")
            .uri(url.as_str())
            .header("content-type", "application/jose+json")
            .body(BodyWrapper::from(vec![b'x'; 1200]))
            .unwrap()
    };
    // The connection and its TLS handshake are not what is measured.
    client.request(post()).await.unwrap();
    let started = std::time::Instant::now();
    for _ in 0..POSTS {
        let response = client.request(post()).await.unwrap();
        assert_eq!(response.parts.status, StatusCode::OK);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(20) * POSTS,
        "{POSTS} POSTs took {elapsed:?}: about 40 ms each is a delayed ACK per request"
    );
}
