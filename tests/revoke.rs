//! `certinel revoke` against a real Pebble: the CA marks the serial revoked, a replacement
//! with a new key becomes current, and the audit log records the revocation.

use std::path::PathBuf;

use certinel::store::{CertStore, VersionId};

pub(crate) use crate::common::cli::output_text as text;
use crate::common::cli::run_certinel;
use crate::common::config_text::{http01_certificate, pebble_acme_table, write_config_file};
use crate::common::pebble::{Pebble, PebbleOptions};

/// A configuration with one http-01 certificate named `name`, in a temporary directory.
pub(crate) struct Setup {
    _dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
    pub(crate) state_dir: PathBuf,
}

pub(crate) fn setup(pebble: &Pebble, name: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let text =
        pebble_acme_table(&state_dir, pebble) + &http01_certificate(name, pebble.http_addr(), "");
    let config = write_config_file(dir.path(), &text);
    Setup {
        _dir: dir,
        config,
        state_dir,
    }
}

/// Runs `certinel ARGS` with the configuration of `setup`.
pub(crate) async fn certinel(setup: &Setup, args: &[&str]) -> std::process::Output {
    run_certinel(args, &setup.config).await
}

/// `setup(pebble, name)` with `name`'s first certificate issued by `certinel renew`.
pub(crate) async fn issued(pebble: &Pebble, name: &str) -> Setup {
    let setup = setup(pebble, name);
    let issued = certinel(&setup, &["renew", name]).await;
    assert!(issued.status.success(), "{}", text(&issued));
    setup
}

#[tokio::test]
async fn revoke_marks_the_serial_revoked_at_the_ca_and_installs_a_new_key() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let setup = issued(&pebble, "web").await;
    let store = CertStore::open(&setup.state_dir).unwrap();
    let revoked_serial = store.metadata("web", VersionId(1)).unwrap().serial;

    let revoked = certinel(&setup, &["revoke", "web", "--reason", "key-compromise"]).await;
    assert_eq!(revoked.status.code(), Some(0), "{}", text(&revoked));

    let status = pebble
        .management_get(&format!("/cert-status-by-serial/{revoked_serial}"))
        .await;
    assert!(status.contains("Revoked"), "Pebble says: {status}");
    assert_eq!(store.current("web").unwrap(), Some(VersionId(2)));
    let key = |version| std::fs::read(store.files("web", version).unwrap().key).unwrap();
    assert_ne!(
        key(VersionId(1)),
        key(VersionId(2)),
        "the replacement has a new key"
    );
    let audit = std::fs::read_to_string(setup.state_dir.join("audit.jsonl")).unwrap();
    assert!(
        audit.contains(r#""step":"revoke","outcome":"ok""#),
        "{audit}"
    );
}

#[tokio::test]
async fn revoke_without_a_current_certificate_fails_and_names_the_certificate() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let setup = setup(&pebble, "web");
    let output = certinel(&setup, &["revoke", "web"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("no current certificate to revoke"),
        "{}",
        text(&output)
    );
}
