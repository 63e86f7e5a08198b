//! `certinel revoke` against a real Pebble: the CA marks the serial revoked, a replacement
//! with a new key becomes current, and the audit log records the revocation.

use std::path::PathBuf;

use certinel::store::{CertStore, VersionId};

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
    let text = format!(
        "state_dir = {state:?}\n\n[acme]\ndirectory = {directory:?}\nca_file = {ca:?}\n\
         poll_timeout = \"60s\"\n\n[[certificate]]\nname = {name:?}\n\
         dns_names = [\"{name}.certinel.test\"]\n\
         challenge = {{ type = \"http-01\", listen = \"{addr}\" }}\n",
        state = state_dir.display().to_string(),
        directory = pebble.directory_url,
        ca = pebble.api_root.display().to_string(),
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

pub(crate) async fn certinel(setup: &Setup, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_certinel"))
        .args(args)
        .arg("--config")
        .arg(&setup.config)
        .output()
        .await
        .expect("run certinel")
}

pub(crate) fn text(output: &std::process::Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn revoke_marks_the_serial_revoked_at_the_ca_and_installs_a_new_key() {
    let pebble = Pebble::start(PebbleOptions::default()).await;
    let setup = setup(&pebble, "web");
    let issued = certinel(&setup, &["renew", "web"]).await;
    assert!(issued.status.success(), "{}", text(&issued));
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
