//! A TLS fixture for the `/metrics` scale benchmark (`bench/metrics-scale`): one loopback
//! port that completes a handshake for any SNI name, so 100,000 endpoints need one
//! process instead of 100 nginx ports × 1,000 server blocks.
//!
//! `cargo run --release --example any-sni-server -- DIR [LEAVES]` mints a CA and LEAVES
//! (default 1,000) ECDSA P-256 leaves for `*.bench.test`, `localhost` and `127.0.0.1`, leaf
//! *i* valid for 60 + *i* days, writes `DIR/ca.pem`, listens on a free `127.0.0.1` port and
//! writes it to `DIR/port` once it accepts. Each SNI name gets the leaf its hash picks, so
//! targets differ in notAfter and serial as they would in a real inventory. It runs until
//! killed; nothing leaves loopback.

use std::error::Error;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::{Duration, OffsetDateTime};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Picks a leaf by a hash of the SNI name (no SNI: the first leaf).
#[derive(Debug)]
struct AnySni {
    leaves: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for AnySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = hello.server_name().map_or(0, |name| {
            let mut hasher = DefaultHasher::new();
            name.hash(&mut hasher);
            (hasher.finish() % self.leaves.len() as u64) as usize
        });
        self.leaves.get(index).cloned()
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: any-sni-server DIR [LEAVES]")?);
    let count: usize = args.next().map_or(Ok(1000), |n| n.parse())?;
    std::fs::create_dir_all(&dir)?;
    let provider = Arc::new(aws_lc_rs::default_provider());

    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "certinel bench any-SNI CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - Duration::days(1);
    ca.not_after = now + Duration::days(3650);
    let ca_cert = ca.self_signed(&ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    let issuer = Issuer::from_params(&ca, &ca_key);

    let mut leaves = Vec::with_capacity(count);
    for index in 0..count {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("bench leaf {index}"));
        params.subject_alt_names = vec![
            SanType::DnsName("*.bench.test".try_into()?),
            SanType::DnsName("localhost".try_into()?),
            SanType::IpAddress([127, 0, 0, 1].into()),
        ];
        params.serial_number = Some(SerialNumber::from(
            (index as u64 + 1).to_be_bytes().to_vec(),
        ));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(60 + index as i64);
        let cert = params.signed_by(&key, &issuer)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        leaves.push(Arc::new(CertifiedKey::from_der(chain, der, &provider)?));
    }

    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(AnySni { leaves }));
    let acceptor = TlsAcceptor::from(Arc::new(config));

    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let port = listener.local_addr()?.port();
            std::fs::write(dir.join("port"), format!("{port}\n"))?;
            eprintln!("any-sni-server: {count} leaves on 127.0.0.1:{port}");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A prober closes after the handshake; errors are its business.
                    if let Ok(mut tls) = acceptor.accept(stream).await {
                        let _ = tls.shutdown().await;
                    }
                });
            }
        })
}
