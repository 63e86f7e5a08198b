//! A running `certinel run` whose `[[endpoint_source]]` lists two file_sd files (JSON and
//! YAML) naming loopback TLS servers: their series carry the files' labels; a rewrite of
//! one file adds a target while the other file, broken, keeps its targets probed and
//! reports the failure in `/metrics` and the log.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use crate::common::pki::{Ca, LeafSpec, Validity, write_pem};
use crate::common::service::Service;
use crate::common::tls_server::{ServerHandle, ServerOptions, bind, spawn_tls};

async fn server(ca: &Ca) -> ServerHandle {
    let leaf = ca.leaf(&LeafSpec::new(&["localhost"]));
    let acceptor = ServerOptions::new(vec![leaf.cert.clone()], leaf.key.clone_key()).acceptor();
    spawn_tls(bind(IpAddr::V4(Ipv4Addr::LOCALHOST)).await, acceptor)
}

/// A TLS server whose leaf a fresh root named `root` issued, and an empty directory for
/// the configuration and the file that lists the server.
async fn listed_server(root: &str) -> (ServerHandle, tempfile::TempDir) {
    let ca = Ca::root(root, Validity::days(-1, 30));
    (server(&ca).await, tempfile::tempdir().unwrap())
}

/// Replaces `path` atomically, as file_sd writers should.
fn replace(path: &Path, contents: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).expect("write file_sd file");
    std::fs::rename(&temporary, path).expect("rename file_sd file");
}

fn up_line(addr: SocketAddr, labels: &str) -> String {
    format!(
        "certinel_endpoint_up{{target=\"{addr}\",ip=\"{}\",{labels}}} 1",
        addr.ip()
    )
}

/// The value of `certinel_endpoint_last_probe_timestamp_seconds` for `addr`.
fn last_probe(body: &str, addr: SocketAddr) -> Option<f64> {
    let prefix = format!("certinel_endpoint_last_probe_timestamp_seconds{{target=\"{addr}\",");
    body.lines()
        .find(|line| line.starts_with(&prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_targets_are_probed_with_their_labels_and_a_broken_file_keeps_its_targets() {
    let ca = Ca::root("File SD Root", Validity::days(-1, 30));
    let [web_a, web_b, web_c, mail] = [
        server(&ca).await,
        server(&ca).await,
        server(&ca).await,
        server(&ca).await,
    ];
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    std::fs::create_dir(dir.path().join("more")).unwrap();
    let web_file = dir.path().join("targets/web.json");
    let mail_file = dir.path().join("more/mail.yml");
    replace(
        &web_file,
        &format!(
            r#"[{{"targets": ["{}", "{}"], "labels": {{"team": "web", "__meta_ignored": "x"}}}}]"#,
            web_a.addr, web_b.addr
        ),
    );
    replace(
        &mail_file,
        &format!("- targets: ['{}']\n  labels:\n    team: mail\n", mail.addr),
    );
    let config = write_pem(
        dir.path(),
        "certinel.toml",
        "[[endpoint_source]]\nfiles = [\"targets/*.json\", \"more/*.yml\"]\ninterval = \"1s\"\n",
    );
    let mut service = Service::start(Some(&config)).await;
    let web_status = format!(
        "certinel_endpoint_source_last_reload_successful{{file=\"{}\"}}",
        web_file.display()
    );
    let mail_status = format!(
        "certinel_endpoint_source_last_reload_successful{{file=\"{}\"}}",
        mail_file.display()
    );
    service
        .metrics_until("both files' targets up with their labels", |body| {
            body.contains(&up_line(web_a.addr, "team=\"web\""))
                && body.contains(&up_line(web_b.addr, "team=\"web\""))
                && body.contains(&up_line(mail.addr, "team=\"mail\""))
                && body.contains(&format!("{web_status} 1"))
                && body.contains(&format!("{mail_status} 1"))
        })
        .await;

    replace(
        &web_file,
        &format!(
            r#"[{{"targets": ["{}", "{}", "{}"], "labels": {{"team": "web"}}}}]"#,
            web_a.addr, web_b.addr, web_c.addr
        ),
    );
    replace(&mail_file, "- targets: ['unterminated\n");
    let rejected = service
        .wait_for_log("endpoint source file rejected; its last good targets are still probed")
        .await;
    assert_eq!(
        rejected["fields"]["file"].as_str(),
        Some(mail_file.display().to_string().as_str()),
        "{rejected}"
    );
    let error = rejected["fields"]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("line "),
        "the parser's position: {rejected}"
    );
    let body = service
        .metrics_until("the third web target up and the mail file failed", |body| {
            body.contains(&up_line(web_c.addr, "team=\"web\""))
                && body.contains(&format!("{mail_status} 0"))
                && body.contains(&format!("{web_status} 1"))
        })
        .await;
    let before = last_probe(&body, mail.addr).expect("the mail target is still listed");
    service
        .metrics_until("the broken file's target probed again", |body| {
            last_probe(body, mail.addr).is_some_and(|at| at > before)
                && body.contains(&up_line(mail.addr, "team=\"mail\""))
        })
        .await;
}

#[tokio::test]
async fn config_check_lists_each_endpoint_source_file_and_fails_on_a_rejected_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("good.json"),
        r#"[{"targets": ["127.0.0.1:443", "[::1]:443"]}]"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.yml"),
        "- targets: ['127.0.0.1:1']\n  labels: {ip: x}\n",
    )
    .unwrap();
    let config = write_pem(
        dir.path(),
        "certinel.toml",
        "[[endpoint_source]]\nfiles = [\"*.json\", \"*.yml\"]\n",
    );
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_certinel"))
        .args(["config", "check"])
        .arg(&config)
        .output()
        .await
        .expect("run certinel");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let lines: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            format!(
                "{}: rejected: group[0]: label \"ip\" is one of certinel's own labels; rename it",
                dir.path().join("bad.yml").display()
            ),
            format!("{}: 2 targets", dir.path().join("good.json").display()),
        ],
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certinel_check_with_a_config_probes_the_endpoint_source_targets_once() {
    let (listed, dir) = listed_server("File SD Check Root").await;
    replace(
        &dir.path().join("web.yaml"),
        &format!("- targets: ['{}']\n", listed.addr),
    );
    let config = write_pem(
        dir.path(),
        "certinel.toml",
        "[[endpoint_source]]\nfiles = [\"*.yaml\"]\n",
    );
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_certinel"))
        .args(["check", "-o", "json", "--config"])
        .arg(&config)
        .output()
        .await
        .expect("run certinel");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0]["target"], listed.addr.to_string(), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_adds_or_removes_an_endpoint_source_adds_or_removes_its_targets() {
    let (listed, dir) = listed_server("File SD Reload Root").await;
    replace(
        &dir.path().join("web.json"),
        &format!(
            r#"[{{"targets": ["{}"], "labels": {{"site": "a"}}}}]"#,
            listed.addr
        ),
    );
    let config = write_pem(dir.path(), "certinel.toml", "");
    let service = Service::start(Some(&config)).await;
    replace(
        &config,
        "[[endpoint_source]]\nfiles = [\"*.json\"]\ninterval = \"1s\"\n",
    );
    service.signal("HUP");
    service
        .metrics_until("the listed target up", |body| {
            body.contains(&up_line(listed.addr, "site=\"a\""))
        })
        .await;
    replace(&config, "");
    service.signal("HUP");
    // The poller may see the edit before the signal arrives; either reload removes them.
    service
        .metrics_until("the target and the file's series gone", |body| {
            !body.contains(&listed.addr.to_string()) && !body.contains("certinel_endpoint_source_")
        })
        .await;
}
