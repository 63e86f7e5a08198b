//! Tests of the CRL fetcher against a small HTTP server on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use certinel_testkit::http::read_request_head;
use time::macros::datetime;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::{CrlFetchError, CrlFetcher, MAX_CRL_BYTES};
use crate::scan::budget::ConnectionBudget;
use crate::scan::resolve::Resolver;

const T0: time::OffsetDateTime = datetime!(2030-06-01 12:00:00 UTC);
const INTERVAL: Duration = Duration::from_secs(300);

/// A one-path HTTP server that answers with `body` and an ETag, 304 to a matching
/// `If-None-Match`, and records every request head.
struct CrlServer {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl CrlServer {
    async fn start(body: Vec<u8>) -> CrlServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ca.crl", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = heads.clone();
        let body = Arc::new(body);
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let recorded = recorded.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    let Some(head) = read_request_head(&mut socket).await else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&head).to_lowercase();
                    recorded.lock().unwrap().push(head.clone());
                    // Slow enough that concurrent callers overlap with this request.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let answer = if head.contains("if-none-match: \"v1\"") {
                        b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".to_vec()
                    } else {
                        let mut answer = format!(
                            "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nLast-Modified: Sat, 01 Jun 2030 00:00:00 GMT\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        answer.extend_from_slice(&body);
                        answer
                    };
                    let _ = socket.write_all(&answer).await;
                });
            }
        });
        CrlServer { url, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn fetcher() -> CrlFetcher {
    CrlFetcher::new(Resolver::with_hosts_text(""), ConnectionBudget::new(64))
}

#[tokio::test]
async fn many_callers_sharing_a_url_cause_one_request_per_interval() {
    let server = CrlServer::start(b"crl bytes".to_vec()).await;
    let fetcher = Arc::new(fetcher());

    let callers: Vec<_> = (0..20)
        .map(|_| {
            let fetcher = fetcher.clone();
            let url = server.url.clone();
            tokio::spawn(async move { fetcher.get(&url, T0, INTERVAL).await })
        })
        .collect();
    for caller in callers {
        assert_eq!(&caller.await.unwrap().unwrap().der[..], b"crl bytes");
    }
    let later_in_interval = T0 + Duration::from_secs(299);
    fetcher
        .get(&server.url, later_in_interval, INTERVAL)
        .await
        .unwrap();

    assert_eq!(server.heads().len(), 1);
    assert_eq!(fetcher.requests(), 1);
}

#[tokio::test]
async fn the_next_interval_revalidates_with_etag_and_last_modified_and_keeps_the_crl() {
    let server = CrlServer::start(b"crl bytes".to_vec()).await;
    let fetcher = fetcher();

    let first = fetcher.get(&server.url, T0, INTERVAL).await.unwrap();
    let second = fetcher
        .get(&server.url, T0 + INTERVAL, INTERVAL)
        .await
        .unwrap();

    let heads = server.heads();
    assert_eq!(heads.len(), 2);
    assert!(!heads[0].contains("if-none-match"), "{}", heads[0]);
    assert!(heads[1].contains("if-none-match: \"v1\""), "{}", heads[1]);
    assert!(
        heads[1].contains("if-modified-since: sat, 01 jun 2030 00:00:00 gmt"),
        "{}",
        heads[1]
    );
    assert_eq!(first, second);
}

#[tokio::test]
async fn a_crl_larger_than_the_cap_is_refused() {
    let server = CrlServer::start(vec![0u8; MAX_CRL_BYTES + 1]).await;

    let error = fetcher().get(&server.url, T0, INTERVAL).await.unwrap_err();

    assert_eq!(error, CrlFetchError::TooLarge);
    assert_eq!(error.keyword(), "too_large");
}

#[tokio::test]
async fn urls_other_than_plain_http_are_refused_before_any_lookup() {
    let resolver = Resolver::with_hosts_text("");
    let fetcher = CrlFetcher::new(resolver.clone(), ConnectionBudget::new(4));
    for url in [
        "https://127.0.0.1/ca.crl",
        "ldap://metadata.google.internal/cn=CA",
        "file:///etc/passwd",
        "http://user@metadata.google.internal/ca.crl",
        "not a url",
    ] {
        let error = fetcher.get(url, T0, INTERVAL).await.unwrap_err();
        assert_eq!(error.keyword(), "unsupported_url", "{url}: {error}");
    }
    assert_eq!(resolver.lookups(), 0);
    assert_eq!(fetcher.requests(), 0);
}

#[tokio::test]
async fn a_name_goes_through_the_scanners_resolver() {
    let resolver = Resolver::with_hosts_text("");
    let fetcher = CrlFetcher::new(resolver.clone(), ConnectionBudget::new(4));

    let error = fetcher
        .get("http://crl.example.invalid/ca.crl", T0, INTERVAL)
        .await
        .unwrap_err();

    assert_eq!(error.keyword(), "dns", "{error}");
    assert_eq!(resolver.lookups(), 1);
}

#[tokio::test]
async fn a_failed_fetch_is_remembered_until_the_next_interval() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/gone.crl", listener.local_addr().unwrap());
    drop(listener);
    let fetcher = fetcher();

    let first = fetcher.get(&url, T0, INTERVAL).await.unwrap_err();
    let again = fetcher
        .get(&url, T0 + Duration::from_secs(10), INTERVAL)
        .await
        .unwrap_err();

    assert_eq!(first.keyword(), "connect", "{first}");
    assert_eq!(first, again);
    assert_eq!(fetcher.requests(), 1);
    let summary = fetcher.summary();
    assert_eq!(summary.fetch_errors.get("connect"), Some(&1));
    assert!(summary.next_updates.is_empty());
}

#[tokio::test]
async fn the_cache_forgets_idle_urls_beyond_its_cap() {
    let fetcher = fetcher();
    for index in 0..=super::MAX_CACHED_URLS {
        let url = format!("ftp://127.0.0.1/{index}.crl");
        let _ = fetcher.get(&url, T0, INTERVAL).await;
    }

    let cached = fetcher.urls.lock().unwrap().len();
    assert!(cached <= super::MAX_CACHED_URLS, "{cached} URLs cached");
    assert_eq!(fetcher.requests(), 0);
}
