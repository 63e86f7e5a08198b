//! Trust roots for verification: webpki-roots, the platform store and per-endpoint CA files.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rustls::pki_types::{CertificateDer, TrustAnchor};

/// A set of trust anchors.
#[derive(Debug, Clone, Default)]
pub struct TrustRoots {
    anchors: Vec<TrustAnchor<'static>>,
    /// (subject, subjectPublicKeyInfo) of every anchor, both as DER contents without the
    /// outer SEQUENCE header (webpki's representation): identifies a certificate that IS
    /// an anchor, and avoids duplicates.
    identities: HashSet<(Vec<u8>, Vec<u8>)>,
    /// Subjects of every anchor, same representation: tells whether an issuer is trusted.
    subjects: HashSet<Vec<u8>>,
}

/// Trust roots that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot load trust roots from {path}: {detail}")]
pub struct TrustError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub detail: String,
}

/// Loads the base roots once and each `ca_file` once, shared by every probe.
#[derive(Debug)]
pub struct TrustCache {
    base: BaseRoots,
    ca_files: Mutex<HashMap<PathBuf, Arc<TrustRoots>>>,
}

#[derive(Debug)]
enum BaseRoots {
    /// The platform store plus webpki-roots, loaded on first use: reading the platform
    /// store takes time and is useless for runs that only use `ca_file`s.
    System(OnceLock<Arc<TrustRoots>>),
    /// A fixed set (empty for tests and private PKI).
    Fixed(Arc<TrustRoots>),
}

impl TrustRoots {
    /// No anchors at all: nothing verifies.
    pub fn empty() -> TrustRoots {
        TrustRoots::default()
    }

    /// The Mozilla root program's anchors as shipped by the `webpki-roots` crate.
    pub fn webpki_roots() -> TrustRoots {
        let mut roots = TrustRoots::empty();
        for anchor in webpki_roots::TLS_SERVER_ROOTS {
            roots.add_anchor(anchor.to_owned());
        }
        roots
    }

    /// The anchors in a PEM file of one or more CERTIFICATE blocks.
    pub fn from_pem_file(path: &Path) -> Result<TrustRoots, TrustError> {
        TrustRoots::empty().with_pem_file(path)
    }

    /// These anchors plus those in a PEM file.
    pub fn with_pem_file(&self, path: &Path) -> Result<TrustRoots, TrustError> {
        let error = |detail: String| TrustError {
            path: path.to_owned(),
            detail,
        };
        let pem = std::fs::read(path).map_err(|err| error(err.to_string()))?;
        let certificates = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| error(format!("malformed PEM ({err}); the file must be PEM")))?;
        if certificates.is_empty() {
            return Err(error(
                "no CERTIFICATE block found; the file must be PEM".to_owned(),
            ));
        }
        let mut roots = self.clone();
        for (index, certificate) in certificates.iter().enumerate() {
            roots.add_certificate(certificate).map_err(|err| {
                error(format!(
                    "certificate {} cannot be a trust anchor: {err}",
                    index + 1
                ))
            })?;
        }
        Ok(roots)
    }

    /// Adds a certificate as a trust anchor (its subject, key and name constraints).
    pub fn add_certificate(
        &mut self,
        certificate: &CertificateDer<'_>,
    ) -> Result<(), webpki::Error> {
        let anchor = webpki::anchor_from_trusted_cert(certificate)?;
        self.add_anchor(anchor.to_owned());
        Ok(())
    }

    /// The anchors, for webpki.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// How many anchors there are.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// There is no anchor.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// The certificate itself is one of the anchors (same subject and same key).
    pub fn contains_certificate(&self, certificate: &CertificateDer<'_>) -> bool {
        match webpki::anchor_from_trusted_cert(certificate) {
            Ok(anchor) => self.identities.contains(&(
                anchor.subject.as_ref().to_vec(),
                anchor.subject_public_key_info.as_ref().to_vec(),
            )),
            Err(_) => false,
        }
    }

    /// Some anchor has this subject. `name` is a DER Name, with or without its outer
    /// SEQUENCE header.
    pub fn has_subject(&self, name: &[u8]) -> bool {
        self.subjects.contains(sequence_contents(name))
    }

    fn add_anchor(&mut self, anchor: TrustAnchor<'static>) {
        let subject = anchor.subject.as_ref().to_vec();
        let identity = (
            subject.clone(),
            anchor.subject_public_key_info.as_ref().to_vec(),
        );
        if self.identities.insert(identity) {
            self.subjects.insert(subject);
            self.anchors.push(anchor);
        }
    }
}

impl TrustCache {
    /// A cache whose base roots are the platform store plus webpki-roots.
    pub fn system() -> TrustCache {
        TrustCache::with_base(BaseRoots::System(OnceLock::new()))
    }

    /// A cache whose base set is empty: only `ca_file`s are trusted (tests, private PKI).
    pub fn empty() -> TrustCache {
        TrustCache::from_roots(TrustRoots::empty())
    }

    /// A cache whose base set is `roots`.
    pub fn from_roots(roots: TrustRoots) -> TrustCache {
        TrustCache::with_base(BaseRoots::Fixed(Arc::new(roots)))
    }

    /// The base roots plus those in `ca_file`, loaded once per path.
    pub fn get(&self, ca_file: Option<&Path>) -> Result<Arc<TrustRoots>, TrustError> {
        let base = self.base();
        let Some(path) = ca_file else {
            return Ok(base);
        };
        // A poisoned lock only means another thread panicked while inserting; the map
        // itself is still consistent, so keep using it.
        let mut ca_files = self
            .ca_files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(roots) = ca_files.get(path) {
            return Ok(Arc::clone(roots));
        }
        let roots = Arc::new(base.with_pem_file(path)?);
        ca_files.insert(path.to_owned(), Arc::clone(&roots));
        Ok(roots)
    }

    fn with_base(base: BaseRoots) -> TrustCache {
        TrustCache {
            base,
            ca_files: Mutex::new(HashMap::new()),
        }
    }

    fn base(&self) -> Arc<TrustRoots> {
        match &self.base {
            BaseRoots::System(cell) => Arc::clone(cell.get_or_init(|| Arc::new(system_roots()))),
            BaseRoots::Fixed(roots) => Arc::clone(roots),
        }
    }
}

/// The platform store plus webpki-roots. Problems with the platform store are logged and
/// otherwise ignored: webpki-roots alone still verifies the public web.
fn system_roots() -> TrustRoots {
    let mut roots = TrustRoots::webpki_roots();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "cannot read part of the platform trust store; ignoring it");
    }
    let mut unusable = 0usize;
    for certificate in &native.certs {
        if roots.add_certificate(certificate).is_err() {
            unusable += 1;
        }
    }
    if unusable > 0 {
        tracing::debug!(
            unusable,
            "skipped platform certificates that are not usable as trust anchors"
        );
    }
    tracing::debug!(anchors = roots.len(), "loaded system trust roots");
    roots
}

/// The contents of a DER SEQUENCE (tag 0x30) without its header; other input as is.
/// webpki keeps names and keys without the header, x509-parser keeps them with it.
fn sequence_contents(der: &[u8]) -> &[u8] {
    let Some((&0x30, rest)) = der.split_first() else {
        return der;
    };
    let Some((&first_length_byte, rest)) = rest.split_first() else {
        return der;
    };
    let contents = if first_length_byte < 0x80 {
        Some(rest)
    } else {
        let length_bytes = usize::from(first_length_byte & 0x7f);
        rest.get(length_bytes..)
    };
    contents.unwrap_or(der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::testing::fixture_path as fixture;

    #[test]
    fn pem_file_with_one_root_gives_one_anchor() {
        let roots = TrustRoots::from_pem_file(&fixture("root.pem")).unwrap();
        assert_eq!(roots.len(), 1);
    }

    #[test]
    fn loading_the_same_root_twice_keeps_one_anchor() {
        let roots = TrustRoots::from_pem_file(&fixture("root.pem")).unwrap();
        let again = roots.with_pem_file(&fixture("root.pem")).unwrap();
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn garbage_file_error_names_the_file_and_asks_for_pem() {
        let error = TrustRoots::from_pem_file(&fixture("garbage.pem")).unwrap_err();
        assert_eq!(error.path, fixture("garbage.pem"));
        assert!(
            error
                .detail
                .contains("no CERTIFICATE block found; the file must be PEM")
        );
        assert!(error.to_string().contains("garbage.pem"));
    }

    #[test]
    fn missing_file_error_names_the_file() {
        let error = TrustRoots::from_pem_file(&fixture("does-not-exist.pem")).unwrap_err();
        assert!(error.to_string().contains("does-not-exist.pem"));
    }

    #[test]
    fn root_is_recognised_as_an_anchor_and_leaf_is_not() {
        let roots = TrustRoots::from_pem_file(&fixture("root.pem")).unwrap();
        let root = first_certificate("root.pem");
        let leaf = first_certificate("valid.pem");
        assert!(roots.contains_certificate(&root));
        assert!(!roots.contains_certificate(&leaf));
    }

    #[test]
    fn has_subject_accepts_names_with_and_without_header() {
        let roots = TrustRoots::from_pem_file(&fixture("root.pem")).unwrap();
        let root = first_certificate("root.pem");
        let (_, parsed) = x509_parser::parse_x509_certificate(root.as_ref()).unwrap();
        let with_header = parsed.subject().as_raw();
        assert!(roots.has_subject(with_header));
        assert!(roots.has_subject(sequence_contents(with_header)));
        assert!(!roots.has_subject(parsed.subject().as_raw().get(..3).unwrap()));
    }

    #[test]
    fn webpki_roots_are_not_empty() {
        assert!(TrustRoots::webpki_roots().len() > 100);
    }

    #[test]
    fn empty_cache_trusts_only_the_ca_file_and_loads_it_once() {
        let cache = TrustCache::empty();
        assert!(cache.get(None).unwrap().is_empty());
        let first = cache.get(Some(&fixture("root.pem"))).unwrap();
        let second = cache.get(Some(&fixture("root.pem"))).unwrap();
        assert_eq!(first.len(), 1);
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn cache_reports_a_bad_ca_file_and_keeps_working() {
        let cache = TrustCache::empty();
        assert!(cache.get(Some(&fixture("garbage.pem"))).is_err());
        assert_eq!(cache.get(Some(&fixture("root.pem"))).unwrap().len(), 1);
    }

    #[test]
    fn system_cache_adds_the_ca_file_to_the_public_roots() {
        let cache = TrustCache::system();
        let base = cache.get(None).unwrap().len();
        assert!(base > 100);
        assert_eq!(
            cache.get(Some(&fixture("root.pem"))).unwrap().len(),
            base + 1
        );
    }

    fn first_certificate(name: &str) -> CertificateDer<'static> {
        let pem = std::fs::read(fixture(name)).unwrap();
        rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .unwrap()
            .unwrap()
    }
}
