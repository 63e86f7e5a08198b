//! A leaf with a critical extension nobody knows: the probe still captures its facts and
//! names the problem, instead of failing the handshake.

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use super::*;

/// An OID under the documentation-free private arc; no implementation knows it.
const UNKNOWN_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 32473, 99, 1];

/// Presents one certificate without checking it against its key, as rustls's own
/// `with_single_cert` would refuse a leaf webpki cannot parse.
#[derive(Debug)]
struct Presents(Arc<CertifiedKey>);

impl ResolvesServerCert for Presents {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A self-signed leaf for [`NAME`] with a critical extension of [`UNKNOWN_OID`], and its key.
fn leaf_with_unknown_critical_extension() -> (
    CertificateDer<'static>,
    PrivateKeyDer<'static>,
    OffsetDateTime,
) {
    let mut params = rcgen::CertificateParams::new(vec![NAME.to_owned()]).expect("SAN");
    let not_after = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("nanoseconds")
        + time::Duration::days(30);
    params.not_after = not_after;
    let mut extension = rcgen::CustomExtension::from_oid_content(UNKNOWN_OID, vec![0x05, 0x00]);
    extension.set_criticality(true);
    params.custom_extensions.push(extension);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = params.self_signed(&key).expect("self-sign");
    let key_der = PrivateKeyDer::try_from(key.serialize_der()).expect("PKCS#8 key");
    (cert.der().clone(), key_der, not_after)
}

fn acceptor(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    tls12_only: bool,
) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .expect("signing key");
    let certified = Arc::new(CertifiedKey::new(vec![cert], signing_key));
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Presents(certified)));
    TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn an_unknown_critical_extension_is_reported_with_the_leaf_facts_over_tls13_and_tls12() {
    let (cert, key, not_after) = leaf_with_unknown_critical_extension();
    let pki = test_pki();
    for tls12_only in [false, true] {
        let server = spawn_tls(
            bind(LOCALHOST).await,
            acceptor(cert.clone(), key.clone_key(), tls12_only),
        );

        let report = probe(&endpoint_at(server.addr, &pki.ca_file)).await;

        let handshake = only_handshake(&report);
        assert_eq!(
            handshake.tls_version,
            if tls12_only { "TLSv1.2" } else { "TLSv1.3" }
        );
        check(
            handshake,
            Expect::leaf_first(false, Some("unsupported_critical_extension"), not_after),
        );
    }
}
