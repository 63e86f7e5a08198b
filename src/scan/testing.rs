//! Test helpers shared by the scanner's unit tests: fixture files and in-memory certificates.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;

use crate::scan::trust::TrustRoots;

/// The path of a file under tests/fixtures/certs/.
pub(crate) fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/certs")
        .join(name)
}

/// The certificates of a fixture file: its PEM CERTIFICATE blocks, or the file as DER.
pub(crate) fn fixture_chain(name: &str) -> Vec<CertificateDer<'static>> {
    let bytes = std::fs::read(fixture_path(name)).unwrap();
    if bytes.starts_with(b"-----") {
        rustls_pemfile::certs(&mut bytes.as_slice())
            .collect::<Result<_, _>>()
            .unwrap()
    } else {
        vec![CertificateDer::from(bytes)]
    }
}

/// The fixtures' own root, the only trust anchor `expected.toml` assumes.
pub(crate) fn fixture_roots() -> TrustRoots {
    TrustRoots::from_pem_file(&fixture_path("root.pem")).unwrap()
}

/// tests/fixtures/certs/expected.toml, written by `examples/mint-fixtures.rs`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Expected {
    /// Unix seconds at which the reasons hold.
    pub(crate) now: i64,
    pub(crate) files: BTreeMap<String, ExpectedFile>,
}

/// What one fixture file holds and how it verifies.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ExpectedFile {
    pub(crate) leaf_not_after: i64,
    pub(crate) earliest_not_after: i64,
    pub(crate) server_name: Option<String>,
    /// A `Reason` keyword, or `none`.
    pub(crate) reason: String,
    pub(crate) verified: bool,
}

pub(crate) fn expected() -> Expected {
    let text = std::fs::read_to_string(fixture_path("expected.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

/// A `UnixTime` from unix seconds.
pub(crate) fn unix(seconds: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(seconds).unwrap()))
}

/// A `UnixTime` from a date.
pub(crate) fn at(moment: OffsetDateTime) -> UnixTime {
    unix(moment.unix_timestamp())
}

/// An in-memory certificate and its key, able to issue others.
pub(crate) struct Minted {
    pub(crate) params: CertificateParams,
    pub(crate) key: KeyPair,
    pub(crate) der: CertificateDer<'static>,
}

impl Minted {
    /// A self-signed CA named `CN={common_name}`, valid 2020..2100.
    pub(crate) fn root(common_name: &str) -> Minted {
        Minted::ca(common_name, None, KeyPair::generate().unwrap())
    }

    /// A CA certificate signed by `issuer` (or self-signed), with the given key.
    pub(crate) fn ca(common_name: &str, issuer: Option<&Minted>, key: KeyPair) -> Minted {
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_only(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = time::macros::datetime!(2020-01-01 00:00:00 UTC);
        params.not_after = time::macros::datetime!(2100-01-01 00:00:00 UTC);
        params.use_authority_key_identifier_extension = issuer.is_some();
        Minted::sign(params, key, issuer)
    }

    /// A server certificate for `names` (DNS names or IP literals) issued by `self`, valid
    /// 2020..2100.
    pub(crate) fn leaf(&self, names: &[&str]) -> Minted {
        self.leaf_with(names, |_| {})
    }

    /// Like [`Minted::leaf`], with the parameters adjusted by `adjust` before signing.
    pub(crate) fn leaf_with(
        &self,
        names: &[&str],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Minted {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name = common_name_only(&names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = time::macros::datetime!(2020-01-01 00:00:00 UTC);
        params.not_after = time::macros::datetime!(2100-01-01 00:00:00 UTC);
        params.use_authority_key_identifier_extension = true;
        adjust(&mut params);
        Minted::sign(params, KeyPair::generate().unwrap(), Some(self))
    }

    /// Roots that trust exactly this certificate.
    pub(crate) fn as_roots(&self) -> TrustRoots {
        let mut roots = TrustRoots::empty();
        roots.add_certificate(&self.der).unwrap();
        roots
    }

    fn sign(params: CertificateParams, key: KeyPair, issuer: Option<&Minted>) -> Minted {
        let certificate = match issuer {
            Some(issuer) => params
                .signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key))
                .unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        Minted {
            params,
            key,
            der: certificate.der().clone(),
        }
    }
}

fn common_name_only(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}
