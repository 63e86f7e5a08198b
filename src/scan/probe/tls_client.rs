//! The probe's rustls client: a verifier that captures any chain, cached client configs,
//! and client-certificate identities for mutual TLS.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::config::model::ClientAuth;
use crate::scan::inspect::{self, CertFacts};

tokio::task_local! {
    /// Set while one address is probed; the client-certificate resolvers flip it when the
    /// server sends a CertificateRequest. rustls asks the resolver synchronously while the
    /// handshake future is polled, so the flag belongs to the address being probed.
    pub(super) static CLIENT_AUTH_REQUESTED: Cell<bool>;
}

/// The rustls client configurations shared by every probe.
#[derive(Debug)]
pub(super) struct TlsClients {
    provider: Arc<CryptoProvider>,
    /// For endpoints without `client_auth`.
    anonymous: Arc<ClientConfig>,
    /// One identity per (certificate, key) path pair, rebuilt when either file changes.
    identities: Mutex<HashMap<(PathBuf, PathBuf), CachedIdentity>>,
}

/// A client certificate and key, loaded and ready to present.
#[derive(Debug)]
pub(super) struct ClientIdentity {
    /// A client configuration that presents the certificate when asked.
    pub config: Arc<ClientConfig>,
    /// Facts about the client (leaf) certificate.
    pub leaf: CertFacts,
}

#[derive(Debug)]
struct CachedIdentity {
    /// Modification times of the certificate and key files when they were loaded.
    stamp: (SystemTime, SystemTime),
    identity: Arc<ClientIdentity>,
}

impl TlsClients {
    /// Builds the configuration without client authentication; identities load lazily.
    pub(super) fn new() -> TlsClients {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let anonymous = client_config(&provider, Arc::new(RecordRequest(None)));
        TlsClients {
            provider,
            anonymous,
            identities: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration for endpoints without mutual TLS.
    pub(super) fn anonymous(&self) -> Arc<ClientConfig> {
        self.anonymous.clone()
    }

    /// The identity for `auth`, loading it on first use and again after either file changed.
    pub(super) async fn identity(
        &self,
        auth: &ClientAuth,
    ) -> Result<Arc<ClientIdentity>, ClientIdentityError> {
        let key = (auth.cert.clone(), auth.key.clone());
        let stamp = (modified(&auth.cert).await?, modified(&auth.key).await?);
        let fresh = self
            .lock_identities()
            .get(&key)
            .filter(|cached| cached.stamp == stamp)
            .map(|cached| cached.identity.clone());
        if let Some(identity) = fresh {
            return Ok(identity);
        }
        // Two probes may load the same files at once; both results are equal, the last
        // insert wins, and the lock is never held across the file reads.
        let identity = Arc::new(self.load_identity(auth).await?);
        self.lock_identities().insert(
            key,
            CachedIdentity {
                stamp,
                identity: identity.clone(),
            },
        );
        Ok(identity)
    }

    async fn load_identity(
        &self,
        auth: &ClientAuth,
    ) -> Result<ClientIdentity, ClientIdentityError> {
        let chain = read_certificates(&auth.cert).await?;
        let key = read_private_key(&auth.key).await?;
        // Invariant: `read_certificates` never returns an empty chain.
        let leaf = inspect::inspect_certificate(&chain[0]).map_err(|source| {
            ClientIdentityError::Leaf {
                path: auth.cert.clone(),
                source,
            }
        })?;
        let certified = CertifiedKey::from_der(chain, key, &self.provider).map_err(|source| {
            ClientIdentityError::Unusable {
                cert: auth.cert.clone(),
                key: auth.key.clone(),
                source,
            }
        })?;
        let resolver = Arc::new(RecordRequest(Some(Arc::new(certified))));
        Ok(ClientIdentity {
            config: client_config(&self.provider, resolver),
            leaf,
        })
    }

    fn lock_identities(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(PathBuf, PathBuf), CachedIdentity>> {
        // A panic while holding the lock cannot leave the map half-updated (single
        // get/insert calls), so a poisoned lock is still safe to use.
        self.identities
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A TLS 1.2 + 1.3 client that captures whatever chain the server presents.
fn client_config(
    provider: &Arc<CryptoProvider>,
    client_cert: Arc<dyn ResolvesClientCert>,
) -> Arc<ClientConfig> {
    let verifier = Arc::new(DangerAcceptAnyChainVerifier::new(
        provider.signature_verification_algorithms,
    ));
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        // Invariant: the aws-lc-rs default provider has cipher suites and key exchange
        // groups for both TLS 1.2 and TLS 1.3, so this never fails.
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(client_cert);
    Arc::new(config)
}

/// Accepts ANY server certificate chain, while still verifying the handshake signatures.
///
/// Why this is safe here: the probe's only purpose is to see the chain, including expired,
/// self-signed or misnamed ones, so rejecting during the handshake would hide exactly what
/// we report. The probe never sends application data over the connection, and trust is
/// decided afterwards by `verify::verify_chain` against the configured roots. The
/// handshake signatures are still checked so the server proves it holds the leaf's key.
///
/// Tests that only read what a server presents use it too, so there is one such verifier.
#[derive(Debug)]
pub struct DangerAcceptAnyChainVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl DangerAcceptAnyChainVerifier {
    /// A verifier checking handshake signatures with `algorithms` (a crypto provider's
    /// `signature_verification_algorithms`).
    pub fn new(algorithms: WebPkiSupportedAlgorithms) -> DangerAcceptAnyChainVerifier {
        DangerAcceptAnyChainVerifier { algorithms }
    }
}

impl ServerCertVerifier for DangerAcceptAnyChainVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let verified = rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms);
        or_leaf_key(verified, cert, |key| {
            verify_tls12_signature_with_raw_key(message, key, dss, &self.algorithms)
        })
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let verified = rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms);
        or_leaf_key(verified, cert, |key| {
            rustls::crypto::verify_tls13_signature_with_raw_key(message, key, dss, &self.algorithms)
        })
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// webpki refuses to parse a certificate with a critical extension it does not know, so
/// rustls cannot check the handshake signature against it. The probe still wants the
/// chain (it reports the extension as `unsupported_critical_extension` afterwards), and
/// the proof of key possession only needs the leaf's public key, read separately.
///
/// So: the usual handshake-signature check's answer `verified`, unless it failed only
/// because webpki cannot parse the leaf; then `check` judges the signature against the
/// leaf's public key alone. The leaf is parsed again only when the usual check fails, not
/// for every probe.
fn or_leaf_key<F>(
    verified: Result<HandshakeSignatureValid, rustls::Error>,
    cert: &CertificateDer<'_>,
    check: F,
) -> Result<HandshakeSignatureValid, rustls::Error>
where
    F: FnOnce(&SubjectPublicKeyInfoDer<'_>) -> Result<HandshakeSignatureValid, rustls::Error>,
{
    if verified.is_ok() || !has_unsupported_critical_extension(cert) {
        return verified;
    }
    check(&leaf_public_key(cert)?)
}

/// The TLS 1.2 handshake signature checked against the leaf's public key alone (see
/// [`or_leaf_key`]): the counterpart of rustls's `verify_tls13_signature_with_raw_key`.
fn verify_tls12_signature_with_raw_key(
    message: &[u8],
    key: &SubjectPublicKeyInfoDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let key = webpki::RawPublicKeyEntity::try_from(key).map_err(bad_leaf)?;
    // TLS 1.2 allows any algorithm mapped to the scheme, as rustls does for a parsed leaf.
    let candidates = algorithms
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, algorithms)| *algorithms)
        .unwrap_or_default();
    candidates
        .iter()
        .find(|algorithm| {
            key.verify_signature(**algorithm, message, dss.signature())
                .is_ok()
        })
        .map(|_| HandshakeSignatureValid::assertion())
        .ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature,
        ))
}

fn has_unsupported_critical_extension(cert: &CertificateDer<'_>) -> bool {
    matches!(
        webpki::EndEntityCert::try_from(cert),
        Err(webpki::Error::UnsupportedCriticalExtension)
    )
}

/// The leaf's SubjectPublicKeyInfo, read without judging its extensions.
fn leaf_public_key(
    cert: &CertificateDer<'_>,
) -> Result<SubjectPublicKeyInfoDer<'static>, rustls::Error> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok(SubjectPublicKeyInfoDer::from(
        parsed.tbs_certificate.subject_pki.raw.to_vec(),
    ))
}

fn bad_leaf(_error: webpki::Error) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
}

/// Presents the client certificate it holds, if any; either way records that the server
/// asked for one.
#[derive(Debug)]
struct RecordRequest(Option<Arc<CertifiedKey>>);

impl ResolvesClientCert for RecordRequest {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        note_client_auth_requested();
        self.0.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.is_some()
    }
}

fn note_client_auth_requested() {
    // Outside a probe scope (never the case in certinel) there is nobody to tell.
    let _ = CLIENT_AUTH_REQUESTED.try_with(|requested| requested.set(true));
}

/// Why a client certificate and key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(super) enum ClientIdentityError {
    /// A file could not be read (or its modification time not be had).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{}: {source}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{}: no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    /// The key file holds no private key.
    #[error("{}: no PEM private key", path.display())]
    NoKey { path: PathBuf },
    /// The client certificate does not parse.
    #[error("client certificate {}: {source}", path.display())]
    Leaf {
        path: PathBuf,
        #[source]
        source: inspect::InspectError,
    },
    /// rustls refuses the pair (unsupported key, or a key that does not match).
    #[error("client certificate {} with key {}: {source}", cert.display(), key.display())]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

async fn modified(path: &Path) -> Result<SystemTime, ClientIdentityError> {
    tokio::fs::metadata(path)
        .await
        .and_then(|metadata| metadata.modified())
        .map_err(|source| read_error(path, source))
}

async fn read_certificates(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ClientIdentityError> {
    let pem = tokio::fs::read(path)
        .await
        .map_err(|source| read_error(path, source))?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| pem_error(path, source))?;
    if chain.is_empty() {
        return Err(ClientIdentityError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

async fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ClientIdentityError> {
    let pem = tokio::fs::read(path)
        .await
        .map_err(|source| read_error(path, source))?;
    // The parser's messages never include key material.
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| pem_error(path, source))?
        .ok_or_else(|| ClientIdentityError::NoKey {
            path: path.to_owned(),
        })
}

fn read_error(path: &Path, source: std::io::Error) -> ClientIdentityError {
    ClientIdentityError::Read {
        path: path.to_owned(),
        source,
    }
}

fn pem_error(path: &Path, source: std::io::Error) -> ClientIdentityError {
    ClientIdentityError::Pem {
        path: path.to_owned(),
        source,
    }
}
