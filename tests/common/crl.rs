//! A test CA that publishes CRLs, and an HTTP server on 127.0.0.1 serving its current CRL
//! (tests/crl.rs and the monitoring end-to-end test).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use certinel::store::{CertStore, NewVersion, Origin, VersionId};
use certinel_testkit::http::read_request_head;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;

use crate::common::tls_server::{ServerHandle, bind, serve};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The name every CRL test leaf is issued for.
pub const NAME: &str = "crl.service.test";

/// A CA that signs leaves pointing at its CRL URL, and CRLs.
pub struct CrlCa {
    /// The CA certificate.
    pub cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl CrlCa {
    /// A self-signed CA that may sign certificates and CRLs.
    pub fn new() -> CrlCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "certinel CRL test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap().der().clone();
        CrlCa {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for [`NAME`] with `serial` whose CRL Distribution Point is `crl_url`.
    pub fn leaf(
        &self,
        serial: u64,
        crl_url: &str,
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut params = CertificateParams::new(vec![NAME.to_owned()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params.use_authority_key_identifier_extension = true;
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![crl_url.to_owned()],
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap().der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert, key)
    }

    /// A current CRL listing `revoked` serials (key compromise).
    pub fn crl(&self, revoked: &[u64]) -> Vec<u8> {
        crl_signed_by(&self.issuer, revoked)
    }
}

/// A current CRL signed by `issuer`.
pub fn crl_signed_by(issuer: &Issuer<'_, KeyPair>, revoked: &[u64]) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(5),
        next_update: now + time::Duration::days(1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from(*serial),
                revocation_time: now - time::Duration::minutes(1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
    .der()
    .to_vec()
}

/// An HTTP server on 127.0.0.1 that serves whatever CRL it currently holds and counts
/// the requests.
pub struct CrlServer {
    /// The CRL's URL.
    pub url: String,
    crl: Arc<Mutex<Vec<u8>>>,
    requests: Arc<AtomicUsize>,
    _handle: ServerHandle,
}

impl CrlServer {
    /// Starts serving an empty body.
    pub async fn start() -> CrlServer {
        let listener = bind(LOCALHOST).await;
        let url = format!("http://{}/ca.crl", listener.local_addr().unwrap());
        let crl = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (crl.clone(), requests.clone());
        let handle = serve(listener, move |mut stream| {
            let (served, counted) = (served.clone(), counted.clone());
            async move {
                if read_request_head(&mut stream).await.is_none() {
                    return;
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let body = served.lock().unwrap().clone();
                let mut answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                answer.extend_from_slice(&body);
                let _ = stream.write_all(&answer).await;
            }
        });
        CrlServer {
            url,
            crl,
            requests,
            _handle: handle,
        }
    }

    /// Serves `crl` from now on.
    pub fn publish(&self, crl: Vec<u8>) {
        *self.crl.lock().unwrap() = crl;
    }

    /// How many requests arrived.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Stores a leaf of `ca` (for [`NAME`], serial `serial`, CRL at `crl_url`) as `v0001`
/// of the managed certificate `name` in `state_dir`, current, as an adoption would.
pub fn adopt_leaf(state_dir: &Path, name: &str, ca: &CrlCa, serial: u64, crl_url: &str) {
    let (leaf, key) = ca.leaf(serial, crl_url);
    let chain = pem("CERTIFICATE", &leaf) + &pem("CERTIFICATE", &ca.cert);
    let key = pem("PRIVATE KEY", key.secret_der());
    let store = CertStore::open(state_dir).unwrap();
    let origin = Origin {
        created_at: OffsetDateTime::now_utc(),
        source: "adopted from the CRL test CA".into(),
    };
    let version = store
        .stage_pending(
            name,
            NewVersion {
                key_pem: &key,
                chain_pem: &chain,
                origin: &origin,
            },
        )
        .unwrap()
        .version;
    store.promote(name, version).unwrap();
    assert_eq!(version, VersionId(1));
}

/// `der` as a PEM block labelled `label`.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}
