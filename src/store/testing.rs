//! Test helpers: certificates issued by a throwaway CA with rcgen, and the audit log's steps.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    SignatureAlgorithm,
};
use time::OffsetDateTime;

use crate::store::{FsStore, NewVersion, Origin, Store};

/// A leaf certificate with its key and issuing chain, as PEM.
pub(crate) struct Issued {
    /// Leaf followed by the CA certificate.
    pub fullchain: String,
    /// The leaf's private key.
    pub key_pem: String,
}

impl Issued {
    /// This certificate as a new version obtained as `origin` says, for
    /// [`Store::stage_pending`].
    pub(crate) fn new_version<'a>(&'a self, origin: &'a Origin) -> NewVersion<'a> {
        NewVersion {
            key_pem: &self.key_pem,
            chain_pem: &self.fullchain,
            origin,
        }
    }
}

/// A leaf for `names` with a fresh key of `alg`, valid for 90 days from 2025-01-01.
pub(crate) fn issue(names: &[&str], alg: &'static SignatureAlgorithm) -> Issued {
    let not_before = time::macros::datetime!(2025-01-01 0:00 UTC);
    issue_valid(
        names,
        alg,
        not_before,
        not_before + time::Duration::days(90),
    )
}

/// A leaf for `names` with a fresh key of `alg` and the given validity.
pub(crate) fn issue_valid(
    names: &[&str],
    alg: &'static SignatureAlgorithm,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Issued {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "certinel test CA");
    ca_params.distinguished_name = dn;
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate_for(alg).unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.not_before = not_before;
    params.not_after = not_after;
    let leaf = params.signed_by(&key, &issuer).unwrap();
    Issued {
        fullchain: format!("{}{}", leaf.pem(), ca_cert.pem()),
        key_pem: key.serialize_pem(),
    }
}

/// A fresh private key of `alg`, as PEM.
pub(crate) fn key_pem_of(alg: &'static SignatureAlgorithm) -> String {
    KeyPair::generate_for(alg).unwrap().serialize_pem()
}

/// The steps of the audit log in `state_dir` as written (`"begin"`, `"done"`, ...), in
/// order; none before the first renewal step. Every line must be an event.
pub(crate) fn audit_steps(state_dir: &std::path::Path) -> Vec<String> {
    let history = FsStore::new(state_dir).audit_history().unwrap();
    assert_eq!(
        history.unreadable_lines,
        Vec::<usize>::new(),
        "torn audit lines"
    );
    history
        .events
        .iter()
        .map(|event| {
            let step = serde_json::to_value(event.step).unwrap();
            step.as_str().unwrap().to_owned()
        })
        .collect()
}
