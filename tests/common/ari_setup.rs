//! The starting point of the ARI tests: Pebble behind the ARI front, a configuration with
//! certificate `api` answering http-01 against the front, and a renewer for it.

use std::path::{Path, PathBuf};

use certinel::renew::{CertificateStatus, RenewError, RenewOptions, RenewOutcome, Renewer};
use certinel::store::CertStore;
use time::OffsetDateTime;

use crate::common::ari_front::AriFront;
use crate::common::pebble::Pebble;

/// Pebble issues 30-day certificates: the default rule renews 10 days before expiry.
pub const VALIDITY_SECONDS: u64 = 30 * 86_400;

/// A configuration with one certificate `api` answering http-01, against `directory`.
pub struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    /// The configured `state_dir`.
    pub state_dir: PathBuf,
}

impl Setup {
    /// Writes the configuration: `directory` trusted through `ca_file`, the http-01
    /// listener where `pebble` validates, and `profile` when given.
    pub fn new(directory: &str, ca_file: &Path, pebble: &Pebble, profile: Option<&str>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let profile = profile.map_or(String::new(), |p| format!("profile = {p:?}\n"));
        let text = format!(
            "state_dir = {state:?}\n\n[acme]\ndirectory = {directory:?}\nca_file = {ca:?}\n\
             poll_timeout = \"60s\"\n\n[[certificate]]\nname = \"api\"\n\
             dns_names = [\"api.certinel.test\"]\n\
             challenge = {{ type = \"http-01\", listen = \"{addr}\" }}\n{profile}",
            state = state_dir.display().to_string(),
            ca = ca_file.display().to_string(),
            addr = pebble.http_addr(),
        );
        let config = dir.path().join("certinel.toml");
        std::fs::write(&config, text).unwrap();
        Setup {
            _dir: dir,
            config,
            state_dir,
        }
    }

    /// Points the configuration at another ACME directory (another CA, as far as the
    /// stored certificates' origin goes).
    pub fn switch_directory(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, text.replace(from, to)).unwrap();
    }

    /// A renewer for the configuration as it is on disk now.
    pub fn renewer(&self) -> Renewer {
        let config = certinel::config::load(&self.config).unwrap_or_else(|e| panic!("{e}"));
        Renewer::new(&config)
    }

    /// The status of `api` at `now`.
    pub fn status(&self, renewer: &Renewer, now: OffsetDateTime) -> CertificateStatus {
        renewer.status(now).unwrap().remove(0)
    }

    /// The current certificate of `api`, as PEM.
    pub fn current_cert_pem(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("certs/api/current/cert.pem")).unwrap()
    }

    /// The bytes of `api`'s schedule file, if there is one.
    pub fn schedule_json(&self) -> Option<Vec<u8>> {
        let store = CertStore::open(&self.state_dir).unwrap();
        std::fs::read(store.schedule_path("api").unwrap()).ok()
    }
}

/// Pebble (30-day certificates) behind an ARI front and certificate `api` configured
/// against the front, with a renewer.
pub struct AriCase {
    /// The CA.
    pub pebble: Pebble,
    /// The front the configuration points at.
    pub front: AriFront,
    /// The configuration.
    pub setup: Setup,
    /// A renewer for the configuration.
    pub renewer: Renewer,
}

impl AriCase {
    /// A front advertising `renewalInfo` when `renewal_info` is set, and no profiles.
    pub async fn start(renewal_info: bool) -> AriCase {
        AriCase::with_profiles(renewal_info, &[], None).await
    }

    /// A front advertising `renewalInfo` and `profiles`; `api` asks for `profile`.
    pub async fn with_profiles(
        renewal_info: bool,
        profiles: &[(&str, &str)],
        profile: Option<&str>,
    ) -> AriCase {
        let pebble = Pebble::start_with_validity(VALIDITY_SECONDS).await;
        let front = AriFront::start(&pebble, renewal_info, profiles).await;
        let setup = Setup::new(&front.directory_url, &front.ca_file, &pebble, profile);
        let renewer = setup.renewer();
        AriCase {
            pebble,
            front,
            setup,
            renewer,
        }
    }

    /// Renews `api` at `at` as the schedule says.
    pub async fn renew(&self, at: OffsetDateTime) -> Result<RenewOutcome, RenewError> {
        self.renewer.renew("api", RenewOptions::default(), at).await
    }

    /// Renews `api` at `at` whatever the schedule says.
    pub async fn renew_forced(&self, at: OffsetDateTime) -> Result<RenewOutcome, RenewError> {
        self.renewer.renew("api", forced(), at).await
    }

    /// The status of `api` at `at`.
    pub fn status(&self, at: OffsetDateTime) -> CertificateStatus {
        self.setup.status(&self.renewer, at)
    }

    /// Fails with the outcome and Pebble's log unless `renewed` is a new version.
    pub fn assert_renewed(&self, renewed: &Result<RenewOutcome, RenewError>) {
        assert!(
            matches!(renewed, Ok(RenewOutcome::Renewed { .. })),
            "{renewed:?}\n{}",
            self.pebble.log()
        );
    }

    /// [`AriCase::start`] with `api`'s first certificate issued now (nothing to ask ARI
    /// about yet); returns the moment and the certificate's serial too.
    pub async fn issued(renewal_info: bool) -> (AriCase, OffsetDateTime, String) {
        let case = AriCase::start(renewal_info).await;
        let now = OffsetDateTime::now_utc();
        let serial = issue_first(&case.renewer, &case.pebble, now).await;
        (case, now, serial)
    }
}

/// Issues the first certificate (nothing to ask ARI about yet) and returns its serial.
pub async fn issue_first(renewer: &Renewer, pebble: &Pebble, now: OffsetDateTime) -> String {
    match renewer.renew("api", RenewOptions::default(), now).await {
        Ok(RenewOutcome::Renewed { serial, .. }) => serial,
        other => panic!("first issuance: {other:?}\n{}", pebble.log()),
    }
}

/// Renewal options with `force` set: renew whatever the schedule says.
pub fn forced() -> RenewOptions {
    RenewOptions {
        force: true,
        ..RenewOptions::default()
    }
}
