//! `certinel check` as a user runs it: the real binary against fixture files and live
//! loopback servers, asserting exact expiry (to the second), reason keywords and exit codes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Output;

use rustls::pki_types::CertificateDer;
use serde_json::Value;

use crate::common::pki::{Leaf, LeafSpec, TwoTierPki, Validity, write_pem};
use crate::common::tls_server::{
    ServerHandle, ServerOptions, bind, spawn_garbage, spawn_silent, spawn_tls,
};

const NAME: &str = "service.test";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the certinel binary with `args` (servers keep serving: this does not block the
/// runtime) and returns its output.
async fn certinel(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_certinel"))
        .args(args)
        .current_dir(manifest_dir())
        .env_remove("RUST_BACKTRACE")
        .output()
        .await
        .expect("run certinel")
}

/// The JSON lines of a `--output json` run.
fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// A root and intermediate; leaves for [`NAME`] served on loopback; a hosts file mapping
/// [`NAME`] to 127.0.0.1 so targets can be written `service.test:PORT`.
struct Lab {
    pki: TwoTierPki,
    hosts_file: PathBuf,
    servers: Vec<ServerHandle>,
}

impl Lab {
    fn new() -> Lab {
        let pki = TwoTierPki::new("Check", NAME);
        let hosts_file = write_pem(pki.dir.path(), "hosts", &format!("127.0.0.1 {NAME}\n"));
        Lab {
            pki,
            hosts_file,
            servers: Vec::new(),
        }
    }

    /// Serves `chain` with `leaf`'s key; returns the target `service.test:PORT`.
    async fn serve(&mut self, leaf: &Leaf, chain: Vec<CertificateDer<'static>>) -> String {
        let acceptor = ServerOptions::new(chain, leaf.key.clone_key()).acceptor();
        let server = spawn_tls(bind(LOCALHOST).await, acceptor);
        let target = format!("{NAME}:{}", server.addr.port());
        self.servers.push(server);
        target
    }

    /// Serves a leaf for `names` with `validity`, issued by the intermediate, with the
    /// intermediate in the chain.
    async fn serve_leaf(&mut self, names: &[&str], validity: Validity) -> (String, Leaf) {
        let leaf = self
            .pki
            .intermediate
            .leaf(&LeafSpec::new(names).validity(validity));
        let chain = self.pki.chain_with(&leaf);
        (self.serve(&leaf, chain).await, leaf)
    }

    fn common_args(&self) -> Vec<String> {
        vec![
            "check".into(),
            "--output".into(),
            "json".into(),
            "--timeout".into(),
            "2s".into(),
            "--ca-file".into(),
            self.pki.ca_file.display().to_string(),
            "--hosts-file".into(),
            self.hosts_file.display().to_string(),
        ]
    }

    async fn check(&self, targets: &[&str]) -> Output {
        let mut args = self.common_args();
        args.extend(targets.iter().map(|target| target.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        certinel(&args).await
    }
}

/// The JSON line whose `target` is `target`.
fn line_for<'a>(lines: &'a [Value], target: &str) -> &'a Value {
    lines
        .iter()
        .find(|line| line["target"] == target)
        .unwrap_or_else(|| panic!("no line for {target} in {lines:#?}"))
}

fn assert_line(line: &Value, status: &str, reason: &str) {
    assert_eq!(
        (line["status"].as_str(), line["reason"].as_str()),
        (Some(status), Some(reason)),
        "{line:#}"
    );
}

#[tokio::test]
async fn fixture_directory_reports_every_file_with_its_exact_expiry() {
    let output = certinel(&["check", "tests/fixtures/certs", "--output", "json"]).await;
    let lines = json_lines(&output);
    let expected: toml::Table =
        std::fs::read_to_string(manifest_dir().join("tests/fixtures/certs/expected.toml"))
            .expect("expected.toml")
            .parse()
            .expect("expected.toml parses");
    let files = expected["files"].as_table().expect("[files]");
    let by_path: BTreeMap<&str, &Value> = lines
        .iter()
        .map(|line| (line["path"].as_str().expect("file rows have a path"), line))
        .collect();
    for (file, facts) in files {
        let line = by_path
            .get(format!("tests/fixtures/certs/{file}").as_str())
            .unwrap_or_else(|| panic!("{file} missing from {lines:#?}"));
        assert_eq!(
            line["leaf"]["not_after_unix"].as_i64(),
            facts["leaf_not_after"].as_integer(),
            "{file}"
        );
        assert_eq!(
            line["earliest_not_after_unix"].as_i64(),
            facts["earliest_not_after"].as_integer(),
            "{file}"
        );
    }
    assert_line(
        by_path["tests/fixtures/certs/expired.pem"],
        "CRITICAL",
        "expired",
    );
    assert_line(
        by_path["tests/fixtures/certs/short-intermediate.pem"],
        "CRITICAL",
        "expired",
    );
    assert_line(
        by_path["tests/fixtures/certs/not-yet-valid.pem"],
        "CRITICAL",
        "not_yet_valid",
    );
    assert_line(
        by_path["tests/fixtures/certs/wrong-order.pem"],
        "WARNING",
        "wrong_chain_order",
    );
    assert_line(
        by_path["tests/fixtures/certs/garbage.pem"],
        "UNKNOWN",
        "file",
    );
    assert_line(by_path["tests/fixtures/certs/valid.pem"], "OK", "ok");
    assert_eq!(
        output.status.code(),
        Some(2),
        "expired files make the run CRITICAL"
    );
}

#[tokio::test]
async fn live_servers_report_the_reason_and_exact_expiry_of_each_broken_case() {
    let mut lab = Lab::new();
    let (valid, valid_leaf) = lab.serve_leaf(&[NAME], Validity::current()).await;
    let (expired, expired_leaf) = lab.serve_leaf(&[NAME], Validity::expired()).await;
    let (future, future_leaf) = lab.serve_leaf(&[NAME], Validity::not_yet_valid()).await;
    let (wrong_host, _) = lab.serve_leaf(&["other.test"], Validity::current()).await;
    let self_signed_leaf = Leaf::self_signed(&LeafSpec::new(&[NAME]).validity(Validity::current()));
    let self_signed = lab
        .serve(&self_signed_leaf, vec![self_signed_leaf.cert.clone()])
        .await;
    let bare_leaf = lab
        .pki
        .intermediate
        .leaf(&LeafSpec::new(&[NAME]).validity(Validity::current()));
    let missing_intermediate = lab.serve(&bare_leaf, vec![bare_leaf.cert.clone()]).await;
    let short = lab
        .pki
        .root
        .intermediate("Short Intermediate", Validity::days(-5, 3));
    let short_leaf = short.leaf(&LeafSpec::new(&[NAME]).validity(Validity::current()));
    let short_chain = lab
        .serve(
            &short_leaf,
            vec![short_leaf.cert.clone(), short.cert.clone()],
        )
        .await;
    let silent_server = spawn_silent(bind(LOCALHOST).await);
    let silent = format!("{NAME}:{}", silent_server.addr.port());
    let garbage_server = spawn_garbage(bind(LOCALHOST).await);
    let garbage = format!("{NAME}:{}", garbage_server.addr.port());
    let closed = {
        let listener = bind(LOCALHOST).await;
        format!("{NAME}:{}", listener.local_addr().expect("addr").port())
    };

    let targets = [
        &valid,
        &expired,
        &future,
        &wrong_host,
        &self_signed,
        &missing_intermediate,
        &short_chain,
        &silent,
        &garbage,
        &closed,
    ];
    let targets: Vec<&str> = targets.iter().map(|target| target.as_str()).collect();
    let output = lab.check(&targets).await;
    let lines = json_lines(&output);
    assert_eq!(lines.len(), targets.len(), "{lines:#?}");

    let cases = [
        (&valid, "OK", "ok", Some(&valid_leaf)),
        (&expired, "CRITICAL", "expired", Some(&expired_leaf)),
        (&future, "CRITICAL", "not_yet_valid", Some(&future_leaf)),
        (&wrong_host, "CRITICAL", "hostname_mismatch", None),
        (
            &self_signed,
            "CRITICAL",
            "self_signed",
            Some(&self_signed_leaf),
        ),
        (
            &missing_intermediate,
            "CRITICAL",
            "missing_intermediate",
            Some(&bare_leaf),
        ),
        (&short_chain, "CRITICAL", "expiring_soon", Some(&short_leaf)),
        (&silent, "UNKNOWN", "timeout", None),
        (&garbage, "UNKNOWN", "handshake", None),
        (&closed, "UNKNOWN", "connect", None),
    ];
    for (target, status, reason, leaf) in cases {
        let line = line_for(&lines, target);
        assert_line(line, status, reason);
        assert_eq!(line["ip"], "127.0.0.1");
        if let Some(leaf) = leaf {
            assert_eq!(
                line["leaf"]["not_after_unix"].as_i64(),
                Some(leaf.not_after.unix_timestamp()),
                "{target}"
            );
        }
    }
    // The short-lived intermediate decides when the chain as served stops working.
    assert_eq!(
        line_for(&lines, &short_chain)["earliest_not_after_unix"].as_i64(),
        Some(short.not_after.unix_timestamp())
    );
    assert_eq!(output.status.code(), Some(2));
    drop(lab.pki.dir);
}

#[tokio::test]
async fn exit_code_follows_the_monitoring_plugin_convention() {
    let mut lab = Lab::new();
    let (valid, _) = lab.serve_leaf(&[NAME], Validity::current()).await;
    let (soon, _) = lab
        .serve_leaf(&[NAME], Validity::current_for_days(10))
        .await;
    let (expired, _) = lab.serve_leaf(&[NAME], Validity::expired()).await;
    let closed = {
        let listener = bind(LOCALHOST).await;
        format!("{NAME}:{}", listener.local_addr().expect("addr").port())
    };

    // (the targets checked together, the exit code, what it says)
    let (valid, soon, expired, closed) = (&*valid, &*soon, &*expired, &*closed);
    let cases: [(&[&str], i32, &str); 4] = [
        (&[valid], 0, "OK"),
        (&[valid, soon], 1, "WARNING"),
        (&[valid, closed], 3, "UNKNOWN"),
        (
            &[soon, closed, expired],
            2,
            "CRITICAL outranks UNKNOWN and WARNING",
        ),
    ];
    for (targets, code, says) in cases {
        let output = lab.check(targets).await;
        assert_eq!(output.status.code(), Some(code), "{says}");
    }
}

#[tokio::test]
async fn table_output_names_target_days_and_reason() {
    let mut lab = Lab::new();
    let (expired, _) = lab.serve_leaf(&[NAME], Validity::expired()).await;
    let mut args = lab.common_args();
    args[2] = "table".into();
    args.push(expired.clone());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = certinel(&args).await;
    let table = String::from_utf8_lossy(&output.stdout);
    let row = table
        .lines()
        .find(|line| line.starts_with(&expired))
        .unwrap_or_else(|| panic!("no row for {expired}:\n{table}"));
    for expected in [
        "127.0.0.1",
        "-10.0",
        "Check Intermediate",
        "CRITICAL expired",
    ] {
        assert!(row.contains(expected), "{expected:?} not in {row:?}");
    }
}

#[tokio::test]
async fn config_endpoints_are_checked_when_no_target_is_given() {
    let mut lab = Lab::new();
    let (valid, valid_leaf) = lab.serve_leaf(&[NAME], Validity::current()).await;
    let config = format!(
        "[scanner]\nhosts_file = {hosts:?}\n\n[[endpoint]]\ntarget = {valid:?}\nca_file = {ca:?}\n\n[[file]]\npath = {file:?}\n",
        hosts = lab.hosts_file.display().to_string(),
        ca = lab.pki.ca_file.display().to_string(),
        file = manifest_dir()
            .join("tests/fixtures/certs/valid.pem")
            .display()
            .to_string(),
    );
    let config_path = write_pem(lab.pki.dir.path(), "certinel.toml", &config);
    let output = certinel(&[
        "check",
        "--config",
        &config_path.display().to_string(),
        "-o",
        "json",
    ])
    .await;
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let endpoint = line_for(&lines, &valid);
    assert_line(endpoint, "OK", "ok");
    assert_eq!(
        endpoint["leaf"]["not_after_unix"].as_i64(),
        Some(valid_leaf.not_after.unix_timestamp())
    );
    assert_eq!(lines[1]["kind"], "file");
    assert_eq!(output.status.code(), Some(0));
}

#[tokio::test]
async fn a_bad_config_is_one_line_naming_file_line_and_key_with_exit_code_2() {
    let output = certinel(&[
        "check",
        "--config",
        "tests/fixtures/config/bad/duration_unit.toml",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr.trim(),
        "certinel: error: tests/fixtures/config/bad/duration_unit.toml:4:11: endpoint[1].timeout: \
         invalid duration \"30x\": unknown unit \"x\" (use ms, s, m, h or d)"
    );
    let output = certinel(&["config", "check", "config/certinel.toml"]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
}

#[tokio::test]
async fn a_bad_target_or_flag_is_a_clear_error_with_exit_code_2() {
    let output = certinel(&["check", "example.com"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("target \"example.com\""), "{stderr}");
    assert!(stderr.contains("add a port"), "{stderr}");
    let output = certinel(&["check", "--warn", "3x", "localhost:1"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--warn"));
}

#[tokio::test]
async fn a_signed_port_is_refused_and_the_message_names_the_target_once() {
    let output = certinel(&["check", "127.0.0.1:+443"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        "certinel: error: invalid target \"127.0.0.1:+443\": invalid port \"+443\" \
         (use a number from 1 to 65535)"
    );
}

#[tokio::test]
async fn a_huge_certificate_file_is_refused_with_a_clear_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("huge.pem");
    // Sparse, so the test costs no disk; certinel must not read it whole either.
    let file = std::fs::File::create(&path).expect("create");
    file.set_len(certinel::scan::files::MAX_FILE_BYTES + 1)
        .expect("set length");
    let output = certinel(&["check", "--output", "json", path.to_str().unwrap()]).await;
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_line(&lines[0], "UNKNOWN", "file");
    let detail = lines[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("too large for a certificate file"),
        "{detail}"
    );
}

#[tokio::test]
async fn prometheus_output_and_the_textfile_hold_the_families_metrics_would_export() {
    let mut lab = Lab::new();
    let (target, leaf) = lab.serve_leaf(&[NAME], Validity::days(-1, 30)).await;
    let file = write_pem(lab.pki.dir.path(), "leaf.pem", &leaf.pem);
    let textfile_dir = tempfile::tempdir().unwrap();
    let textfile = textfile_dir.path().join("certinel.prom");
    let mut args = lab.common_args();
    args.retain(|arg| arg != "json");
    args[1] = "--textfile".into();
    args.insert(2, textfile.display().to_string());
    args.extend(["--output".into(), "prometheus".into(), target.clone()]);
    args.push(file.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = certinel(&args).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let body = String::from_utf8(output.stdout).unwrap();

    let (code, problems) = crate::common::service::promtool_check(&body);
    assert_eq!(code, 0, "promtool check metrics: {problems}\n{body}");
    let not_after = leaf_not_after(&leaf);
    let endpoint = format!(
        "certinel_endpoint_cert_not_after_timestamp_seconds{{target=\"{target}\",ip=\"127.0.0.1\"}} {not_after}"
    );
    assert!(
        body.lines().any(|line| line == endpoint),
        "{endpoint}\n{body}"
    );
    let file_line = format!(
        "certinel_file_cert_not_after_timestamp_seconds{{path=\"{}\"}} {not_after}",
        file.display()
    );
    assert!(
        body.lines().any(|line| line == file_line),
        "{file_line}\n{body}"
    );
    assert!(
        !body.contains("certinel_config_last_reload"),
        "only the checked targets' families: {body}"
    );

    // The textfile holds the same families, readable by node_exporter, and nothing else
    // is left in its directory.
    let written = std::fs::read_to_string(&textfile).unwrap();
    assert!(written.lines().any(|line| line == endpoint), "{written}");
    let mode = std::fs::metadata(&textfile).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o644
    );
    let entries: Vec<_> = std::fs::read_dir(textfile_dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["certinel.prom"]);
}

/// The leaf's notAfter as Unix seconds.
fn leaf_not_after(leaf: &Leaf) -> i64 {
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf.cert).unwrap();
    parsed.validity().not_after.timestamp()
}
