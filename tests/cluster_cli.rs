//! `certinel cluster keygen` and `certinel config check` with `[cluster]`, run as a user
//! runs them: the built binary, files in a temporary directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use certinel::store::sealed::Kek;

use crate::common::cli::output_text;

fn certinel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certinel"))
        .args(args)
        .output()
        .expect("run certinel")
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

#[test]
fn keygen_writes_an_owner_only_key_prints_its_id_and_never_overwrites_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("cluster.kek");
    let output = certinel(&["cluster", "keygen", path_arg(&file)]);
    assert!(output.status.success(), "{}", output_text(&output));
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(id.len(), 16, "{}", output_text(&output));
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    let mode = std::fs::metadata(&file)
        .expect("key file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(Kek::load(&file).expect("the key loads").id_hex(), id);

    let written = std::fs::read(&file).expect("read the key");
    let again = certinel(&["cluster", "keygen", path_arg(&file)]);
    assert_eq!(again.status.code(), Some(2), "{}", output_text(&again));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(again.stdout.is_empty(), "{}", output_text(&again));
    assert_eq!(std::fs::read(&file).expect("read the key"), written);
}

#[test]
fn config_check_summarises_the_cluster_and_refuses_a_key_others_can_read() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let kek = dir.path().join("cluster.kek");
    let key_id = Kek::generate_file(&kek).expect("write a key");
    let config = dir.path().join("certinel.toml");
    std::fs::write(
        &config,
        "[cluster]\netcd = [\"http://127.0.0.1:2379\", \"http://127.0.0.2:2379\"]\n\
         username = \"certinel\"\npassword = \"S3CR3T\"\nmember = \"web-1\"\n\
         key_encryption_key_file = \"cluster.kek\"\n",
    )
    .expect("write the configuration");
    let output = certinel(&["config", "check", path_arg(&config)]);
    assert!(output.status.success(), "{}", output_text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = format!(
        "cluster: member web-1 via etcd http://127.0.0.1:2379, http://127.0.0.2:2379 \
         (user certinel), prefix /certinel/, lease_ttl 15s, key-encryption key {key_id} ({})",
        kek.display()
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(!stdout.contains("S3CR3T"), "{stdout}");

    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let output = certinel(&["config", "check", path_arg(&config)]);
    assert_eq!(output.status.code(), Some(2), "{}", output_text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
}
