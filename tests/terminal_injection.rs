//! A hostile certificate with ESC, CR, LF and BEL in its subject, issuer and SANs, read by
//! `certinel check` from a file and from a live TLS server, and probed by `certinel run`:
//! neither the table nor the log lines pass a control byte to the terminal.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Output;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::pki::{Ca, Leaf, LeafSpec, Validity, write_pem};
use crate::common::service::{PATIENCE, spawn_run};
use crate::common::tls_server::{ServerHandle, ServerOptions, bind, spawn_tls};

/// Clears the screen, sets the window title and forges a new table row and log line.
const EVIL_ISSUER: &str = "Evil\x1b[2J\x1b]0;pwned\x07\r\nRoot";
const EVIL_NAMES: [&str; 2] = ["host\x1b[31m.test", "forged\r\nOK.test"];

fn hostile_leaf() -> (Ca, Leaf) {
    let root = Ca::root(EVIL_ISSUER, Validity::days(-10, 3650));
    let leaf = root.leaf(&LeafSpec::new(&EVIL_NAMES));
    (root, leaf)
}

/// Serves the hostile leaf and its root on loopback; returns the server and `127.0.0.1:PORT`.
async fn serve_hostile() -> (ServerHandle, String) {
    let (root, leaf) = hostile_leaf();
    let chain = vec![leaf.cert.clone(), root.cert.clone()];
    let acceptor = ServerOptions::new(chain, leaf.key.clone_key()).acceptor();
    let server = spawn_tls(bind(IpAddr::V4(Ipv4Addr::LOCALHOST)).await, acceptor);
    let target = format!("127.0.0.1:{}", server.addr.port());
    (server, target)
}

async fn certinel(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_certinel"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "certinel=debug")
        .env_remove("RUST_BACKTRACE")
        .output()
        .await
        .expect("run certinel")
}

/// Fails with the offending line when `bytes` hold a control byte other than the newlines
/// that end lines.
fn assert_no_control_bytes(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for line in text.split('\n') {
        assert!(
            !line.contains(char::is_control),
            "{what} passes a control character to the terminal: {line:?}"
        );
    }
}

#[tokio::test]
async fn hostile_names_in_a_certificate_file_are_escaped_in_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let (root, leaf) = hostile_leaf();
    let path: PathBuf = write_pem(dir.path(), "evil.pem", &format!("{}{}", leaf.pem, root.pem));
    let output = certinel(&["check", path.to_str().unwrap()]).await;
    assert_no_control_bytes("stdout", &output.stdout);
    assert_no_control_bytes("stderr", &output.stderr);
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(table.lines().count(), 2, "one header and one row:\n{table}");
    assert!(
        // The `\;` is the RFC 4514 escape the inspector already applied.
        table.contains(r"Evil\x1b[2J\x1b]0\;pwned\x07\r\nRoot"),
        "the issuer is shown escaped:\n{table}"
    );
}

#[tokio::test]
async fn hostile_names_from_a_live_server_are_escaped_in_the_table() {
    let (_server, target) = serve_hostile().await;
    let output = certinel(&["check", "--timeout", "5s", &target]).await;
    assert_no_control_bytes("stdout", &output.stdout);
    assert_no_control_bytes("stderr", &output.stderr);
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(table.lines().count(), 2, "one header and one row:\n{table}");
    assert!(table.contains(r"Evil\x1b[2J"), "{table}");
}

#[tokio::test]
async fn hostile_names_probed_by_the_service_are_escaped_in_its_text_log() {
    let (_server, target) = serve_hostile().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_pem(
        dir.path(),
        "certinel.toml",
        &format!("[[endpoint]]\ntarget = \"{target}\"\ninterval = \"1s\"\n"),
    );
    let mut child = spawn_run("text", Some(&config), "certinel=debug");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).split(b'\n');
    let handshake_line = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_segment().await.expect("read the log") {
            assert_no_control_bytes("the log", &line);
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.contains("handshake complete") {
                return line;
            }
        }
        panic!("certinel exited before probing");
    })
    .await
    .expect("a handshake log line");
    assert!(
        handshake_line.contains(r"subject=CN=host\x1b[31m.test"),
        "the log names the subject, escaped: {handshake_line}"
    );
}
