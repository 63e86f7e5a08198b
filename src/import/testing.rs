//! Test helpers for the import planners: certificates and keys made in memory.

use crate::store::SecretPem;

/// A self-signed certificate for `names` (PEM) and its key (PKCS#8 PEM).
pub(crate) fn certificate(
    names: &[&str],
    algorithm: &'static rcgen::SignatureAlgorithm,
) -> (String, SecretPem) {
    let key = if algorithm == &rcgen::PKCS_RSA_SHA256 {
        rcgen::KeyPair::generate_rsa_for(algorithm, rcgen::RsaKeySize::_2048).unwrap()
    } else {
        rcgen::KeyPair::generate_for(algorithm).unwrap()
    };
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let certificate = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (certificate.pem(), SecretPem::new(key.serialize_pem()))
}
