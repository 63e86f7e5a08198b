//! The starting point of the ARI tests: Pebble behind the ARI front, a configuration with
//! certificate `api` answering http-01 against the front, and a renewer for it.

use std::path::{Path, PathBuf};

use certinel::renew::{CertificateStatus, RenewError, RenewOptions, RenewOutcome, Renewer};
use certinel::store::CertStore;
use time::{Duration, OffsetDateTime};

use crate::common::ari_front::{AriFront, AriReply};
use crate::common::config_text::{acme_table, http01_certificate, write_config_file};
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
        let text = acme_table(&state_dir, directory, ca_file)
            + &http01_certificate("api", pebble.http_addr(), &profile);
        let config = write_config_file(dir.path(), &text);
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

    /// Renews `api` at `at`, fails unless it is not due, and returns when it will be
    /// renewed and when certinel looks again.
    pub async fn renew_not_due(&self, at: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
        match self.renew(at).await {
            Ok(RenewOutcome::NotDue {
                renew_at,
                next_check,
                ..
            }) => (renew_at, next_check),
            other => panic!("expected not due, got {other:?}"),
        }
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

    /// Serves a window that opened an hour before `now`, renews at `now`, fails unless
    /// that renewed, and returns the payloads of every newOrder so far.
    pub async fn renew_in_a_window_due_now(&self, now: OffsetDateTime) -> Vec<serde_json::Value> {
        self.front.set_window(due_now(now));
        let renewed = self.renew(now).await;
        self.assert_renewed(&renewed);
        self.front.new_orders()
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

/// A window that opened an hour before `now`: the renewal is due at once.
pub fn due_now(now: OffsetDateTime) -> AriReply {
    AriReply {
        window: (now - Duration::HOUR, now + Duration::HOUR),
        retry_after: Some("60".to_owned()),
        explanation_url: None,
    }
}

/// Renewal options with `force` set: renew whatever the schedule says.
pub fn forced() -> RenewOptions {
    RenewOptions {
        force: true,
        ..RenewOptions::default()
    }
}
