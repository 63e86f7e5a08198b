//! A test PKI: mints roots, intermediates and leaves with chosen names, validity and key
//! types, and writes them as PEM files (keys 0600) for `ca_file` and `client_auth`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

/// The key algorithm of a minted certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256 (the default: fast to generate).
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA with a 2048-bit modulus.
    Rsa2048,
}

/// A validity period, in whole seconds as X.509 stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// Valid from `not_before_days` to `not_after_days` days from now (negative: past).
    pub fn days(not_before_days: i64, not_after_days: i64) -> Validity {
        let now = now_to_the_second();
        Validity {
            not_before: now + Duration::days(not_before_days),
            not_after: now + Duration::days(not_after_days),
        }
    }

    /// Valid since yesterday, for 90 days.
    pub fn current() -> Validity {
        Validity::days(-1, 90)
    }

    /// Valid since yesterday, for `days` days.
    pub fn current_for_days(days: i64) -> Validity {
        Validity::days(-1, days)
    }

    /// Ended ten days ago.
    pub fn expired() -> Validity {
        Validity::days(-100, -10)
    }

    /// Starts in ten days.
    pub fn not_yet_valid() -> Validity {
        Validity::days(10, 100)
    }
}

/// A certificate authority that can issue intermediates and leaves.
pub struct Ca {
    /// The CA certificate.
    pub cert: CertificateDer<'static>,
    /// The CA certificate as PEM.
    pub pem: String,
    /// Its notAfter, exactly as encoded.
    pub not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

/// What a leaf certificate should say.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// subjectAltName entries: DNS names or IP literals. The first is also the CN.
    pub names: Vec<String>,
    /// Validity period.
    pub validity: Validity,
    /// Key algorithm.
    pub key: KeyKind,
    /// A client (TLS client authentication) certificate instead of a server one.
    pub client: bool,
}

/// A leaf certificate with its private key.
pub struct Leaf {
    /// The certificate.
    pub cert: CertificateDer<'static>,
    /// The certificate as PEM.
    pub pem: String,
    /// The private key (PKCS#8 DER).
    pub key: PrivateKeyDer<'static>,
    /// The private key as PEM.
    pub key_pem: String,
    /// Its notAfter, exactly as encoded.
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// A current ECDSA P-256 server certificate for `names`.
    pub fn new(names: &[&str]) -> LeafSpec {
        LeafSpec {
            names: names.iter().map(|name| name.to_string()).collect(),
            validity: Validity::current(),
            key: KeyKind::EcdsaP256,
            client: false,
        }
    }

    /// The same, with another validity.
    pub fn validity(mut self, validity: Validity) -> LeafSpec {
        self.validity = validity;
        self
    }

    /// The same, with another key algorithm.
    pub fn key(mut self, key: KeyKind) -> LeafSpec {
        self.key = key;
        self
    }

    /// The same, as a client-authentication certificate.
    pub fn client(mut self) -> LeafSpec {
        self.client = true;
        self
    }

    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::new(self.names.clone()).expect("valid SAN names");
        if let Some(first) = self.names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.not_before = self.validity.not_before;
        params.not_after = self.validity.not_after;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if self.client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        params.use_authority_key_identifier_extension = true;
        params
    }
}

impl Ca {
    /// A self-signed root named `common_name`.
    pub fn root(common_name: &str, validity: Validity) -> Ca {
        let params = ca_params(common_name, validity);
        let key = generate_key(KeyKind::EcdsaP256);
        let cert = params.self_signed(&key).expect("self-sign root");
        Ca::from_parts(cert, params, key)
    }

    /// An intermediate CA issued by this one.
    pub fn intermediate(&self, common_name: &str, validity: Validity) -> Ca {
        let mut params = ca_params(common_name, validity);
        params.use_authority_key_identifier_extension = true;
        let key = generate_key(KeyKind::EcdsaP256);
        let cert = params.signed_by(&key, &self.issuer).expect("sign CA");
        Ca::from_parts(cert, params, key)
    }

    /// A leaf issued by this CA.
    pub fn leaf(&self, spec: &LeafSpec) -> Leaf {
        let key = generate_key(spec.key);
        let cert = spec
            .params()
            .signed_by(&key, &self.issuer)
            .expect("sign leaf");
        Leaf::from_parts(cert, key, spec.validity)
    }

    fn from_parts(cert: rcgen::Certificate, params: CertificateParams, key: KeyPair) -> Ca {
        Ca {
            not_after: params.not_after,
            cert: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }
}

impl Leaf {
    /// A self-signed leaf (not a CA).
    pub fn self_signed(spec: &LeafSpec) -> Leaf {
        let key = generate_key(spec.key);
        let cert = spec.params().self_signed(&key).expect("self-sign leaf");
        Leaf::from_parts(cert, key, spec.validity)
    }

    fn from_parts(cert: rcgen::Certificate, key: KeyPair, validity: Validity) -> Leaf {
        Leaf {
            cert: cert.der().clone(),
            pem: cert.pem(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            key_pem: key.serialize_pem(),
            not_after: validity.not_after,
        }
    }
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_pem(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write PEM");
    path
}

/// Writes a private key to `dir/name`, readable by its owner only.
pub fn write_key(dir: &Path, name: &str, key_pem: &str) -> PathBuf {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .expect("create key file");
    file.write_all(key_pem.as_bytes()).expect("write key");
    path
}

/// Now, truncated to the second, so minted times compare exactly with parsed ones.
pub fn now_to_the_second() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero nanoseconds are valid")
}

fn ca_params(common_name: &str, validity: Validity) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params
}

fn generate_key(kind: KeyKind) -> KeyPair {
    match kind {
        KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyKind::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyKind::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        KeyKind::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
    }
    .expect("generate key")
}

/// A fresh root named `root_name` and a leaf for `localhost` and `127.0.0.1` signed by it,
/// with the leaf's key: what the loopback HTTPS servers of the tests (Pebble's API, the ARI
/// front) present.
pub fn loopback_server_certificate(
    root_name: &str,
) -> (rcgen::Certificate, rcgen::Certificate, KeyPair) {
    let root_key = KeyPair::generate().expect("root key");
    let mut root_params = CertificateParams::new(Vec::<String>::new()).expect("root params");
    root_params
        .distinguished_name
        .push(DnType::CommonName, root_name);
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root = root_params
        .self_signed(&root_key)
        .expect("root certificate");
    let issuer = Issuer::new(root_params, root_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");
    (root, leaf, leaf_key)
}

/// A root and an intermediate it signed, issuing leaves for one name; the root is written
/// as `root.pem` (an endpoint's `ca_file`) in a temporary directory that lives as long.
pub struct TwoTierPki {
    /// The directory holding `root.pem`.
    pub dir: TempDir,
    /// The root, valid from 10 days ago for 10 years.
    pub root: Ca,
    /// The intermediate, valid from 5 days ago for 1,000 days.
    pub intermediate: Ca,
    /// The root as PEM.
    pub ca_file: PathBuf,
    name: &'static str,
}

impl TwoTierPki {
    /// "`label` Root" and "`label` Intermediate", issuing leaves for `name`.
    pub fn new(label: &str, name: &'static str) -> TwoTierPki {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Ca::root(&format!("{label} Root"), Validity::days(-10, 3650));
        let intermediate =
            root.intermediate(&format!("{label} Intermediate"), Validity::days(-5, 1000));
        let ca_file = write_pem(dir.path(), "root.pem", &root.pem);
        TwoTierPki {
            dir,
            root,
            intermediate,
            ca_file,
            name,
        }
    }

    /// A leaf for the name, issued by the intermediate.
    pub fn leaf(&self, validity: Validity) -> Leaf {
        self.intermediate
            .leaf(&LeafSpec::new(&[self.name]).validity(validity))
    }

    /// The usual served chain: leaf, then intermediate.
    pub fn chain_with(&self, leaf: &Leaf) -> Vec<CertificateDer<'static>> {
        vec![leaf.cert.clone(), self.intermediate.cert.clone()]
    }
}
