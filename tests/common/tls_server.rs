//! Live loopback servers for probe tests: TLS servers presenting a chosen chain, and
//! misbehaving ones (silent, garbage, closing). Every server stops when its handle drops.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// How a TLS test server behaves.
pub struct ServerOptions {
    /// The chain to present, leaf first, in the order given.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// Offer only TLS 1.2.
    pub tls12_only: bool,
    /// Demand a client certificate issued by this CA.
    pub client_ca: Option<CertificateDer<'static>>,
}

impl ServerOptions {
    /// Present `chain` with `key`, TLS 1.2 and 1.3, no client authentication.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        ServerOptions {
            chain,
            key,
            tls12_only: false,
            client_ca: None,
        }
    }

    /// The same, offering only TLS 1.2.
    pub fn tls12_only(mut self) -> Self {
        self.tls12_only = true;
        self
    }

    /// The same, refusing clients without a certificate issued by `ca`.
    pub fn require_client_cert(mut self, ca: CertificateDer<'static>) -> Self {
        self.client_ca = Some(ca);
        self
    }

    /// A reusable acceptor for these options.
    pub fn acceptor(self) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .expect("aws-lc-rs supports these versions");
        let builder = match self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca).expect("client CA parses");
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(self.chain, self.key)
            .expect("certificate and key match");
        TlsAcceptor::from(Arc::new(config))
    }
}

/// A running server; it stops (and drops every open connection) when this drops.
pub struct ServerHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `ip` on a free port.
pub async fn bind(ip: IpAddr) -> TcpListener {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .await
        .unwrap_or_else(|error| panic!("cannot bind {ip}: {error}"))
}

/// Binds two addresses on one shared free port (e.g. 127.0.0.2 and 127.0.0.3).
pub async fn bind_pair(first: IpAddr, second: IpAddr) -> (TcpListener, TcpListener) {
    for _attempt in 0..20 {
        let listener = bind(first).await;
        let port = listener.local_addr().expect("bound address").port();
        // The port is free on `first`; on `second` it usually is too, else try another.
        if let Ok(other) = TcpListener::bind(SocketAddr::new(second, port)).await {
            return (listener, other);
        }
    }
    panic!("no port free on both {first} and {second}");
}

/// Serves every connection on `listener` with `handler`, each in its own task.
pub fn serve<H, F>(listener: TcpListener, handler: H) -> ServerHandle
where
    H: Fn(TcpStream) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr().expect("bound address");
    let task = tokio::spawn(async move {
        // Connection tasks live in this set, so aborting the accept loop ends them too.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        connections.spawn(handler(stream));
                    }
                    Err(_) => return,
                },
                Some(_finished) = connections.join_next() => {}
            }
        }
    });
    ServerHandle { addr, task }
}

/// Completes a TLS handshake on an already accepted (perhaps already upgraded) stream.
pub async fn accept_tls(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    acceptor.accept(stream).await
}

/// A TLS server on `listener`: handshakes, then reads until the client closes.
pub fn spawn_tls(listener: TcpListener, acceptor: TlsAcceptor) -> ServerHandle {
    serve(listener, move |stream| {
        let acceptor = acceptor.clone();
        async move {
            if let Ok(mut tls) = accept_tls(&acceptor, stream).await {
                let _ = tokio::io::copy(&mut tls, &mut tokio::io::sink()).await;
            }
        }
    })
}

/// Accepts TCP connections and never says a word.
pub fn spawn_silent(listener: TcpListener) -> ServerHandle {
    serve(listener, |mut stream| async move {
        let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
    })
}

/// Answers every connection with bytes that are not TLS, then waits for the client.
pub fn spawn_garbage(listener: TcpListener) -> ServerHandle {
    serve(listener, |mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\nThis is not TLS.\r\n\r\n")
            .await;
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(read) if read > 0) {}
    })
}

/// Accepts every connection and closes it at once.
pub fn spawn_closing(listener: TcpListener) -> ServerHandle {
    serve(listener, |stream| async move { drop(stream) })
}
