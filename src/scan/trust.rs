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
    /// Shared with the blocking task that reads the files.
    inner: Arc<CacheInner>,
}

#[derive(Debug)]
struct CacheInner {
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

    /// The base roots plus those in `ca_file`, loaded once per path. Reads files on the
    /// calling thread the first time: async code calls [`TrustCache::roots`] instead.
    pub fn get(&self, ca_file: Option<&Path>) -> Result<Arc<TrustRoots>, TrustError> {
        self.inner.get(ca_file)
    }

    /// [`TrustCache::get`] for async code: what is cached comes back at once, and the
    /// first load of the platform store or of a `ca_file` runs on the blocking pool.
    pub async fn roots(&self, ca_file: Option<&Path>) -> Result<Arc<TrustRoots>, TrustError> {
        if let Some(roots) = self.inner.cached(ca_file) {
            return Ok(roots);
        }
        let inner = Arc::clone(&self.inner);
        let path = ca_file.map(Path::to_owned);
        let loading = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || inner.get(path.as_deref()))
        };
        loading.await.unwrap_or_else(|join_error| {
            Err(TrustError {
                path: path.unwrap_or_default(),
                detail: format!("loading the trust roots failed: {join_error}"),
            })
        })
    }

    fn with_base(base: BaseRoots) -> TrustCache {
        TrustCache {
            inner: Arc::new(CacheInner {
                base,
                ca_files: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl CacheInner {
    fn get(&self, ca_file: Option<&Path>) -> Result<Arc<TrustRoots>, TrustError> {
        let base = self.base();
        let Some(path) = ca_file else {
            return Ok(base);
        };
        if let Some(roots) = self.cached_ca_file(path) {
            return Ok(roots);
        }
        // Read without holding the lock; should two probes load the same file at once,
        // the first insertion wins and both get it.
        let roots = Arc::new(base.with_pem_file(path)?);
        let mut ca_files = self.lock_ca_files();
        Ok(Arc::clone(ca_files.entry(path.to_owned()).or_insert(roots)))
    }

    /// What `get` would return, when it needs no file read.
    fn cached(&self, ca_file: Option<&Path>) -> Option<Arc<TrustRoots>> {
        let base = match &self.base {
            BaseRoots::System(cell) => Arc::clone(cell.get()?),
            BaseRoots::Fixed(roots) => Arc::clone(roots),
        };
        match ca_file {
            None => Some(base),
            Some(path) => self.cached_ca_file(path),
        }
    }

    fn cached_ca_file(&self, path: &Path) -> Option<Arc<TrustRoots>> {
        self.lock_ca_files().get(path).map(Arc::clone)
    }

    fn lock_ca_files(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<TrustRoots>>> {
        // A poisoned lock only means another thread panicked while inserting; the map
        // itself is still consistent, so keep using it.
        self.ca_files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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

    #[tokio::test(flavor = "current_thread")]
    async fn loading_a_ca_file_leaves_the_async_thread_free() {
        // A FIFO blocks its reader until a writer comes; the writer below waits for the
        // test's signal, which only comes if the runtime's only thread is not stuck in
        // the read.
        let temp = tempfile::tempdir().unwrap();
        let fifo = temp.path().join("ca.pem");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let (go, wait_for_go) = std::sync::mpsc::channel::<()>();
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let signalled = wait_for_go.recv_timeout(std::time::Duration::from_secs(10));
                std::fs::write(&fifo, std::fs::read(fixture("root.pem")).unwrap()).unwrap();
                signalled.is_ok()
            })
        };
        let cache = Arc::new(TrustCache::empty());
        let loading = {
            let cache = Arc::clone(&cache);
            let fifo = fifo.clone();
            tokio::spawn(async move { cache.roots(Some(&fifo)).await })
        };
        tokio::task::yield_now().await;
        go.send(()).unwrap();
        assert_eq!(loading.await.unwrap().unwrap().len(), 1);
        assert!(
            writer.join().unwrap(),
            "the file read blocked the async thread"
        );
        // Cached now: no second read of the FIFO (which would block forever).
        assert_eq!(cache.roots(Some(&fifo)).await.unwrap().len(), 1);
    }

    fn first_certificate(name: &str) -> CertificateDer<'static> {
        let pem = std::fs::read(fixture(name)).unwrap();
        rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .unwrap()
            .unwrap()
    }
}
