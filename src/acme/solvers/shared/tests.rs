//! Shared challenge listeners over real loopback sockets: several orders on one address,
//! answers withdrawn per order, the socket closed after the last one.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::acme::solvers::{http01, tls_alpn};
use crate::cert::Identifier;
use crate::scan::probe::DangerAcceptAnyChainVerifier;

const ANY_PORT: &str = "127.0.0.1:0";

/// `GET /.well-known/acme-challenge/TOKEN` over HTTP/1.0: status and body.
async fn challenge_get(addr: SocketAddr, token: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /.well-known/acme-challenge/{token} HTTP/1.0\r\nHost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

async fn assert_refused(addr: SocketAddr) {
    let error = TcpStream::connect(addr)
        .await
        .expect_err("the listener is closed");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// Two HTTP-01 orders sharing one listener on a free port, the first answering `tokA`,
/// the second `tokB`.
async fn two_http01_orders() -> (http01::Standalone, http01::Standalone, SocketAddr) {
    let mut first = http01::Standalone::start(ANY_PORT.parse().unwrap())
        .await
        .unwrap();
    let addr = first.local_addr();
    let mut second = http01::Standalone::start(addr).await.unwrap();
    assert_eq!(second.local_addr(), addr);
    first.add("tokA", "tokA.thumb").unwrap();
    second.add("tokB", "tokB.thumb").unwrap();
    (first, second, addr)
}

#[tokio::test]
async fn two_http01_orders_on_one_address_answer_their_tokens_and_the_last_closes_it() {
    let (first, second, addr) = two_http01_orders().await;

    assert_eq!(
        challenge_get(addr, "tokA").await,
        (200, "tokA.thumb".into())
    );
    assert_eq!(
        challenge_get(addr, "tokB").await,
        (200, "tokB.thumb".into())
    );
    assert_eq!(challenge_get(addr, "other").await.0, 404);

    first.shutdown().await;
    assert_eq!(
        challenge_get(addr, "tokA").await.0,
        404,
        "first's token gone"
    );
    assert_eq!(
        challenge_get(addr, "tokB").await,
        (200, "tokB.thumb".into())
    );

    second.shutdown().await;
    assert_refused(addr).await;
}

#[tokio::test]
async fn dropping_orders_without_shutdown_also_withdraws_and_closes() {
    let (first, second, addr) = two_http01_orders().await;
    drop(first);
    assert_eq!(challenge_get(addr, "tokA").await.0, 404);
    assert_eq!(challenge_get(addr, "tokB").await.0, 200);

    // An order arriving while the dropped listener closes waits for it, then binds anew.
    drop(second);
    let mut third = http01::Standalone::start(addr).await.unwrap();
    third.add("tokC", "tokC.thumb").unwrap();
    assert_eq!(
        challenge_get(addr, "tokC").await,
        (200, "tokC.thumb".into())
    );
    assert_eq!(challenge_get(addr, "tokB").await.0, 404, "a fresh listener");
    third.shutdown().await;
    assert_refused(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_orders_starting_together_share_one_listener() {
    let first = http01::Standalone::start(ANY_PORT.parse().unwrap())
        .await
        .unwrap();
    let addr = first.local_addr();
    drop(first);
    let starts = (0..8).map(|_| tokio::spawn(http01::Standalone::start(addr)));
    let mut orders: Vec<_> = futures::future::join_all(starts)
        .await
        .into_iter()
        .map(|started| started.unwrap().expect("every order joins"))
        .collect();
    for (index, order) in orders.iter_mut().enumerate() {
        order
            .add(&format!("tok{index}"), &format!("ka{index}"))
            .unwrap();
    }
    for index in 0..orders.len() {
        let reply = challenge_get(addr, &format!("tok{index}")).await;
        assert_eq!(reply, (200, format!("ka{index}")));
    }
    for order in orders {
        order.shutdown().await;
    }
    assert_refused(addr).await;
}

#[tokio::test]
async fn a_busy_address_is_a_responder_error() {
    let taken = std::net::TcpListener::bind(ANY_PORT).unwrap();
    let addr = taken.local_addr().unwrap();
    let error = http01::Standalone::start(addr)
        .await
        .err()
        .expect("the port is taken");
    assert!(
        matches!(
            error,
            AcmeError::Responder {
                kind: "http-01",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn orders_sharing_an_authorization_share_its_answer_until_both_leave() {
    let answers = Answers::<String>::default();
    assert!(answers.publish("tok", b"tok.thumb", "tok.thumb".into()));
    assert!(answers.publish("tok", b"tok.thumb", "tok.thumb".into()));
    assert!(!answers.publish("tok", b"tok.other", "tok.other".into()));
    answers.withdraw(&["tok".into()]);
    assert_eq!(answers.get("tok").as_deref(), Some("tok.thumb"));
    answers.withdraw(&["tok".into()]);
    assert_eq!(answers.get("tok"), None);
}

/// Connects like a tls-alpn-01 validator with SNI `name`; returns the acmeIdentifier
/// digest of the presented certificate, or the handshake error.
async fn presented_digest(addr: SocketAddr, name: &str) -> Result<Vec<u8>, std::io::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // The test only reads the presented certificate, whose critical acmeIdentifier
    // extension webpki would refuse: accept any chain.
    let verifier = DangerAcceptAnyChainVerifier::new(provider.signature_verification_algorithms);
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let tls = connector
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await?;
    let certificate = &tls.get_ref().1.peer_certificates().unwrap()[0];
    let (_, value) = tls_alpn::acme_identifier_of(certificate.as_ref());
    // An OCTET STRING of 32 bytes: tag, length, digest.
    Ok(value[2..].to_vec())
}

#[tokio::test]
async fn two_tls_alpn_orders_on_one_address_answer_each_name_by_sni() {
    let mut first = tls_alpn::Standalone::start(ANY_PORT.parse().unwrap())
        .await
        .unwrap();
    let addr = first.local_addr();
    let mut second = tls_alpn::Standalone::start(addr).await.unwrap();
    first
        .add(&Identifier::Dns("a.certinel.test".into()), &[1; 32])
        .unwrap();
    second
        .add(&Identifier::Dns("b.certinel.test".into()), &[2; 32])
        .unwrap();

    assert_eq!(
        presented_digest(addr, "a.certinel.test").await.unwrap(),
        [1; 32]
    );
    assert_eq!(
        presented_digest(addr, "b.certinel.test").await.unwrap(),
        [2; 32]
    );
    assert!(
        presented_digest(addr, "c.certinel.test").await.is_err(),
        "no certificate for a name nobody answers"
    );

    // A different authorization for a name already answered would show the validator the
    // wrong certificate: refused before anything reaches the CA.
    let conflict = second.add(&Identifier::Dns("a.certinel.test".into()), &[3; 32]);
    assert!(
        matches!(
            conflict,
            Err(AcmeError::Responder {
                kind: "tls-alpn-01",
                ..
            })
        ),
        "{conflict:?}"
    );
    assert_eq!(
        presented_digest(addr, "a.certinel.test").await.unwrap(),
        [1; 32]
    );

    first.shutdown().await;
    assert!(presented_digest(addr, "a.certinel.test").await.is_err());
    assert_eq!(
        presented_digest(addr, "b.certinel.test").await.unwrap(),
        [2; 32]
    );
    second.shutdown().await;
    assert_refused(addr).await;
}
