//! Scripted plaintext servers for STARTTLS tests: each speaks a fixed exchange on
//! 127.0.0.1:0, then hands its socket to a TLS acceptor with a fresh self-signed certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use certinel::config::model::StartTls;
use certinel::scan::probe::DangerAcceptAnyChainVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Every protocol certinel upgrades, for tests that run them all.
pub const EVERY_STARTTLS: [StartTls; 8] = [
    StartTls::Smtp,
    StartTls::Imap,
    StartTls::Pop3,
    StartTls::Ftp,
    StartTls::Ldap,
    StartTls::Postgres,
    StartTls::Mysql,
    StartTls::Xmpp,
];

/// A self-signed certificate for `localhost` and its key.
pub struct TestCert {
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM.
    pub key_pem: String,
    key_der: Vec<u8>,
}

impl TestCert {
    /// A fresh P-256 certificate for `localhost`.
    pub fn localhost() -> TestCert {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("rcgen generates a self-signed certificate");
        TestCert {
            der: certified.cert.der().clone(),
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
            key_der: certified.signing_key.serialize_der(),
        }
    }

    /// A TLS acceptor presenting this certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the default provider supports the default versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.der.clone()], key)
            .expect("rcgen's certificate and key match");
        TlsAcceptor::from(Arc::new(config))
    }
}

/// One step of a server's script.
pub enum Step {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Read exactly these bytes from the client.
    Expect(Vec<u8>),
    /// Read this many bytes and check them.
    ExpectWith(usize, fn(&[u8]) -> Result<(), String>),
    /// Read until these bytes arrive, then require the read to contain the second ones.
    ExpectUntil(Vec<u8>, Vec<u8>),
    /// Accept a TLS handshake with the server's certificate; this ends the script.
    Tls,
}

/// `Step::Send`.
pub fn send(bytes: impl AsRef<[u8]>) -> Step {
    Step::Send(bytes.as_ref().to_vec())
}

/// `Step::Expect`.
pub fn expect(bytes: impl AsRef<[u8]>) -> Step {
    Step::Expect(bytes.as_ref().to_vec())
}

/// A server running one script for one connection.
pub struct ScriptedServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The script's outcome: what went wrong on the server side, if anything.
    pub done: JoinHandle<Result<(), String>>,
}

impl ScriptedServer {
    /// Listens on 127.0.0.1:0 and runs `script` on the first connection. A script that does
    /// not end in [`Step::Tls`] then closes its sending side and waits for the client to hang
    /// up, so the client reads everything sent and then end-of-file, never a reset.
    pub async fn start(script: Vec<Step>, cert: &TestCert) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        let acceptor = cert.acceptor();
        let done = tokio::spawn(async move {
            let (socket, _) = listener
                .accept()
                .await
                .map_err(|e| format!("accept: {e}"))?;
            run_script(socket, script, acceptor).await
        });
        ScriptedServer { addr, done }
    }
}

/// A TLS client for tests that accepts any certificate, so the test can compare it itself.
pub fn connector_accepting_any_certificate() -> TlsConnector {
    let provider = provider();
    let verifier = DangerAcceptAnyChainVerifier::new(provider.signature_verification_algorithms);
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Completes a TLS handshake for `localhost` on `stream` and returns the presented leaf.
pub async fn handshake_leaf(stream: TcpStream) -> Result<CertificateDer<'static>, String> {
    let name = ServerName::try_from("localhost").expect("a valid DNS name");
    let tls = connector_accepting_any_certificate()
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or("server presented no certificate")?;
    Ok(leaf.clone().into_owned())
}

async fn run_script(
    mut socket: TcpStream,
    script: Vec<Step>,
    acceptor: TlsAcceptor,
) -> Result<(), String> {
    for step in script {
        match step {
            Step::Send(bytes) => socket
                .write_all(&bytes)
                .await
                .map_err(|e| format!("send: {e}"))?,
            Step::Expect(wanted) => {
                let got = read_exact(&mut socket, wanted.len()).await?;
                if got != wanted {
                    return Err(format!(
                        "expected {:?}, client sent {:?}",
                        wanted.escape_ascii().to_string(),
                        got.escape_ascii().to_string()
                    ));
                }
            }
            Step::ExpectWith(count, check) => check(&read_exact(&mut socket, count).await?)?,
            Step::ExpectUntil(end, must_contain) => {
                let got = read_until(&mut socket, &end).await?;
                if !got
                    .windows(must_contain.len())
                    .any(|window| window == must_contain)
                {
                    return Err(format!("client sent {:?}", got.escape_ascii().to_string()));
                }
            }
            Step::Tls => {
                acceptor
                    .accept(socket)
                    .await
                    .map_err(|e| format!("TLS accept: {e}"))?;
                return Ok(());
            }
        }
    }
    socket
        .shutdown()
        .await
        .map_err(|e| format!("shutdown: {e}"))?;
    let mut drained = Vec::new();
    socket
        .read_to_end(&mut drained)
        .await
        .map_err(|e| format!("drain: {e}"))?;
    Ok(())
}

async fn read_exact(socket: &mut TcpStream, count: usize) -> Result<Vec<u8>, String> {
    let mut got = vec![0; count];
    socket
        .read_exact(&mut got)
        .await
        .map_err(|e| format!("reading {count} bytes: {e}"))?;
    Ok(got)
}

async fn read_until(socket: &mut TcpStream, end: &[u8]) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    while !got.ends_with(end) {
        if got.len() > 4096 {
            return Err(format!("no {:?} in 4 KiB", end.escape_ascii().to_string()));
        }
        got.push(socket.read_u8().await.map_err(|e| format!("read: {e}"))?);
    }
    Ok(got)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
