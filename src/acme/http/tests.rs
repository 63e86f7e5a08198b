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

async fn run(script: Vec<Step>) -> (Result<BytesResponse, instant_acme::Error>, Vec<String>) {
    let seen = Arc::new(Seen::default());
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
    let client = InstrumentedClient::wrap(
        Box::new(scripted),
        "https://ca.test/dir",
        policy,
        seen.clone(),
    );
    let request = Request::builder()
        .uri("https://ca.test/acme/order/1")
        .body(BodyWrapper::from(b"{}".to_vec()))
        .unwrap();
    let result = client.request(request).await;
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
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(8),
        max_retry_after: Duration::from_secs(60),
        request_timeout: Duration::from_secs(5),
    };
    let scripted = Scripted {
        script: Mutex::new(vec![Some((429, Some("3600"))), Some((200, Some("30")))].into()),
    };
    let client = InstrumentedClient::wrap(
        Box::new(scripted),
        "https://ca.test/dir",
        policy,
        Arc::new(NoopObserver),
    );
    let request = || {
        Request::builder()
            .uri("https://ca.test/acme/order/1")
            .body(BodyWrapper::from(b"{}".to_vec()))
            .unwrap()
    };
    let before = time::OffsetDateTime::now_utc();
    let response = client.request(request()).await.unwrap();
    assert_eq!(response.parts.status, 429);
    let until = client.take_retry_after().expect("the 429's Retry-After");
    let wait = until - before;
    assert!(
        wait >= time::Duration::seconds(3599) && wait <= time::Duration::seconds(3660),
        "{wait}"
    );
    assert_eq!(client.take_retry_after(), None, "handed out once");
    // A Retry-After on a success (an order still processing) is a polling hint, not a limit.
    client.request(request()).await.unwrap();
    assert_eq!(client.take_retry_after(), None);
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

/// Serves TLS on `127.0.0.1`; every connection gets response headers announcing a body,
/// one byte of it, and then nothing. Returns the URL and the root to trust.
async fn stalling_server(dir: &Path) -> (String, std::path::PathBuf, tokio::task::JoinHandle<()>) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{";
    tls_server(dir, head.as_bytes().to_vec(), true).await
}

/// Serves TLS on `127.0.0.1`; every connection gets `answer` and then, when `stall`,
/// nothing more (else the connection closes). Returns the URL and the root to trust.
async fn tls_server(
    dir: &Path,
    answer: Vec<u8>,
    stall: bool,
) -> (String, std::path::PathBuf, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let root = dir.join("root.pem");
    std::fs::write(&root, cert.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/acme/order/1", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = [0u8; 4096];
                let _ = tls.read(&mut request).await;
                let _ = tls.write_all(&answer).await;
                let _ = tls.flush().await;
                if stall {
                    std::future::pending::<()>().await;
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, root, task)
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
    let client = build_client("https://127.0.0.1/dir", Some(&root), policy, seen.clone()).unwrap();
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

#[tokio::test]
async fn a_ca_response_body_beyond_the_cap_is_refused_instead_of_buffered() {
    let temp = tempfile::tempdir().unwrap();
    let length = 8 * limited::MAX_RESPONSE_BODY;
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/pem-certificate-chain\r\n\
         content-length: {length}\r\n\r\n"
    )
    .into_bytes();
    answer.resize(answer.len() + length, b'A');
    let (url, root, server) = tls_server(temp.path(), answer, false).await;
    let policy = RetryPolicy {
        max_attempts: 1,
        request_timeout: Duration::from_secs(30),
        ..RetryPolicy::default()
    };
    let client = build_client(
        "https://127.0.0.1/dir",
        Some(&root),
        policy,
        Arc::new(NoopObserver),
    )
    .unwrap();
    let request = Request::builder()
        .uri(url.as_str())
        .body(BodyWrapper::default())
        .unwrap();
    let result = match client.request(request).await {
        Ok(mut response) => response.body.into_bytes().await.map(|body| body.len()),
        Err(error) => Err(error.to_string().into()),
    };
    server.abort();
    let error = result.expect_err("an 8 MiB body must be refused, not read");
    assert!(
        error.to_string().contains("larger than 1048576 bytes"),
        "{error}"
    );
}
