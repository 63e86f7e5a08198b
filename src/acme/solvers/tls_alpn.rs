//! tls-alpn-01 (RFC 8737): a TLS listener that speaks only `acme-tls/1` and presents,
//! for each server name, a self-signed certificate carrying the acmeIdentifier extension.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, CustomExtension, DistinguishedName, KeyPair, SanType};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::acme::solvers::shared::{Answers, Guard, Registry};
use crate::acme::{AcmeError, Stage};
use crate::cert::Identifier;

/// The ALPN protocol name of RFC 8737.
const ACME_TLS_1: &[u8] = b"acme-tls/1";

/// Every built-in tls-alpn-01 listener of the process, by address: server name ->
/// challenge certificate.
static LISTENERS: Registry<Arc<CertifiedKey>> = Registry::new("tls-alpn-01");

/// The built-in tls-alpn-01 listener: this order's share of the one on its address.
pub(crate) struct Standalone {
    guard: Guard<Arc<CertifiedKey>>,
}

impl Standalone {
    /// Joins the listener on `addr`, binding it when no other order is using it.
    pub(crate) async fn start(addr: SocketAddr) -> Result<Self, AcmeError> {
        let guard = LISTENERS
            .join(addr, |listener, answers, stop| {
                let acceptor = acceptor(answers)?;
                Ok(serve(listener, acceptor, stop))
            })
            .await?;
        Ok(Self { guard })
    }

    /// The address the listener is bound to.
    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.guard.local_addr()
    }

    /// Presents a challenge certificate for `identifier` carrying `digest` until this
    /// order's responder shuts down.
    ///
    /// Another order may answer for the same identifier only with the same digest (the
    /// same authorization); otherwise the validator could be shown the wrong certificate,
    /// so this order fails before anything is announced to the CA.
    pub(crate) fn add(&mut self, identifier: &Identifier, digest: &[u8]) -> Result<(), AcmeError> {
        let certified = challenge_certificate(identifier, digest)?;
        for name in server_names(identifier) {
            self.guard.publish(&name, digest, Arc::clone(&certified))?;
        }
        Ok(())
    }

    /// Withdraws this order's certificates; the last order on the address closes the
    /// listener.
    pub(crate) async fn shutdown(self) {
        self.guard.leave().await;
    }
}

/// The TLS side of a listener: only `acme-tls/1`, certificates picked from `answers`.
fn acceptor(answers: Arc<Answers<Arc<CertifiedKey>>>) -> std::io::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ChallengeCerts { answers }));
    config.alpn_protocols = vec![ACME_TLS_1.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "tls-alpn-01 responder cannot accept");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // The validator only needs the handshake; then the connection is closed.
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
            if let Ok(Ok(mut tls)) = handshake.await {
                let _ = tls.shutdown().await;
            }
        });
    }
}

/// Picks the challenge certificate by SNI.
struct ChallengeCerts {
    answers: Arc<Answers<Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for ChallengeCerts {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ChallengeCerts")
    }
}

impl ResolvesServerCert for ChallengeCerts {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match client_hello.server_name() {
            Some(name) => self.answers.get(&name.to_ascii_lowercase()),
            // Without SNI there is no telling which identifier is being validated, unless
            // there is only one.
            None => self.answers.only(),
        }
    }
}

/// The SNI values a validator may send for `identifier`: the DNS name, or for an IP
/// address its reverse-mapping name (RFC 8738 section 6).
fn server_names(identifier: &Identifier) -> Vec<String> {
    match identifier {
        Identifier::Dns(name) => vec![name.to_ascii_lowercase()],
        Identifier::Ip(ip) => vec![reverse_name(*ip), ip.to_string()],
    }
}

fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut name = String::new();
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

fn challenge_certificate(
    identifier: &Identifier,
    digest: &[u8],
) -> Result<Arc<CertifiedKey>, AcmeError> {
    let error = |message: String| AcmeError::Protocol {
        stage: Stage::Challenge,
        message: format!("cannot build the tls-alpn-01 certificate for {identifier}: {message}"),
    };
    if digest.len() != 32 {
        return Err(error(format!(
            "key authorization digest has {} bytes",
            digest.len()
        )));
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![match identifier {
        Identifier::Dns(name) => SanType::DnsName(
            name.clone()
                .try_into()
                .map_err(|e: rcgen::Error| error(e.to_string()))?,
        ),
        Identifier::Ip(ip) => SanType::IpAddress(*ip),
    }];
    params
        .custom_extensions
        .push(CustomExtension::new_acme_identifier(digest));
    let key = KeyPair::generate().map_err(|e| error(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| error(e.to_string()))?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key_der)
        .map_err(|e| error(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing_key,
    )))
}

/// The acmeIdentifier extension of a DER certificate: whether it is critical, and its raw
/// value. Panics when the certificate has none.
#[cfg(test)]
pub(crate) fn acme_identifier_of(certificate_der: &[u8]) -> (bool, Vec<u8>) {
    use x509_parser::prelude::{FromDer, X509Certificate};

    let (_, certificate) = X509Certificate::from_der(certificate_der).unwrap();
    let acme_oid = x509_parser::oid_registry::Oid::from(&[1, 3, 6, 1, 5, 5, 7, 1, 31]).unwrap();
    let extension = certificate
        .extensions()
        .iter()
        .find(|extension| extension.oid == acme_oid)
        .expect("acmeIdentifier extension");
    (extension.critical, extension.value.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_follow_rfc_8738() {
        assert_eq!(
            reverse_name("192.0.2.5".parse().unwrap()),
            "5.2.0.192.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn challenge_certificate_carries_a_critical_acme_identifier_with_the_digest() {
        let digest = [7u8; 32];
        let certified =
            challenge_certificate(&Identifier::Dns("a.example".into()), &digest).unwrap();
        let (critical, value) = acme_identifier_of(certified.cert[0].as_ref());
        assert!(critical);
        // The value is an OCTET STRING (tag 4, length 32) holding the digest.
        assert_eq!(&value[..2], &[4, 32]);
        assert_eq!(&value[2..], &digest);
    }

    #[test]
    fn wrong_digest_length_is_an_error_not_a_panic() {
        assert!(challenge_certificate(&Identifier::Dns("a.example".into()), &[1, 2]).is_err());
    }
}
