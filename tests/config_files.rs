//! Configuration files on disk: every bad fixture fails with its exact one-line message,
//! every good fixture loads into the expected model.
//!
//! Bad fixtures are `tests/fixtures/config/bad/NAME.toml` with the expected message in
//! `NAME.err`. Run with `CERTINEL_BLESS=1` to rewrite the `.err` files from the current
//! messages (then review the diff).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use certinel::config::model::{AllowRule, Host, IpFamily, ResolveMode, StartTls, Target};
use certinel::config::{default_config, load};

const BAD_DIR: &str = "tests/fixtures/config/bad";
const GOOD_DIR: &str = "tests/fixtures/config/good";

/// Messages name the path as given to `load`, so fixtures are loaded by their path relative
/// to the package root, which cargo makes the working directory of tests.
fn assert_in_package_root() {
    let cwd = std::env::current_dir().expect("current directory");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        cwd.canonicalize().unwrap(),
        root.canonicalize().unwrap(),
        "config fixture tests must run from the package root (cargo test does this)"
    );
}

fn bad_fixtures() -> Vec<PathBuf> {
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(BAD_DIR)
        .unwrap_or_else(|e| panic!("cannot list {BAD_DIR}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .map(|path| Path::new(BAD_DIR).join(path.file_name().expect("file name")))
        .collect();
    fixtures.sort();
    fixtures
}

#[test]
fn every_bad_fixture_fails_with_its_expected_message() {
    assert_in_package_root();
    let bless = std::env::var_os("CERTINEL_BLESS").is_some_and(|v| v == "1");
    let fixtures = bad_fixtures();
    assert!(
        fixtures.len() >= 20,
        "expected the bad fixtures in {BAD_DIR}"
    );
    let mut mismatches = Vec::new();
    for fixture in &fixtures {
        let actual = match load(fixture) {
            Ok(_) => "(loaded without error)".to_owned(),
            Err(error) => error.to_string(),
        };
        assert!(
            !actual.contains('\n'),
            "{}: message is not one line:\n{actual}",
            fixture.display()
        );
        let expected_file = fixture.with_extension("err");
        if bless {
            std::fs::write(&expected_file, format!("{actual}\n")).expect("write .err");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_file.display()));
        let expected = expected.trim_end_matches('\n');
        if actual != expected {
            mismatches.push(format!(
                "{}\n  expected: {expected}\n  actual:   {actual}",
                fixture.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} bad fixtures gave another message (CERTINEL_BLESS=1 rewrites the .err files):\n{}",
        mismatches.len(),
        fixtures.len(),
        mismatches.join("\n")
    );
}

#[test]
fn every_expected_message_has_a_fixture() {
    let orphans: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(BAD_DIR))
            .expect("list bad fixtures")
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "err"))
            .filter(|path| !path.with_extension("toml").exists())
            .map(|path| path.display().to_string())
            .collect();
    assert!(
        orphans.is_empty(),
        ".err files without a .toml: {orphans:?}"
    );
}

/// The `secret_*` fixtures hold secrets marked `S3CR3T` or `7331`, followed by `tail7f9a`
/// where text runs on after them: a message names the line and the key, never any of it.
#[test]
fn errors_about_secret_keys_name_the_key_and_line_but_never_the_secret() {
    assert_in_package_root();
    let fixtures: Vec<PathBuf> = bad_fixtures()
        .into_iter()
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("secret_"))
        })
        .collect();
    assert!(fixtures.len() >= 6, "expected the secret_* fixtures");
    for fixture in &fixtures {
        let text = std::fs::read_to_string(fixture).expect("read fixture");
        assert!(
            text.contains("S3CR3T") || text.contains("7331"),
            "{}",
            fixture.display()
        );
        let error = load(fixture).expect_err("secret fixtures are invalid");
        let message = format!("{error} {error:?}");
        for part in ["S3CR3T", "7331", "tail7f9a", "zWNDZM6e"] {
            assert!(
                !message.contains(part),
                "{}: the message quotes the secret or its neighbourhood: {message}",
                fixture.display()
            );
        }
        let key = error.key().unwrap_or_default();
        assert!(
            key.ends_with("hmac_key")
                || key.ends_with("tsig_key")
                || key.ends_with("eab")
                || key.ends_with("password"),
            "{}: the message names the secret key: {error}",
            fixture.display()
        );
        assert!(
            error.line().is_some(),
            "{}: no line: {error}",
            fixture.display()
        );
    }
}

#[test]
fn error_accessors_name_the_file_line_and_key() {
    assert_in_package_root();
    let path = Path::new(BAD_DIR).join("duration_unit.toml");
    let error = load(&path).expect_err("duration_unit.toml is invalid");
    assert_eq!(error.path(), Some(path.as_path()));
    assert_eq!(error.line(), Some(4));
    assert_eq!(error.column(), Some(11));
    assert_eq!(error.key(), Some("endpoint[1].timeout"));
}

#[test]
fn an_empty_file_loads_as_the_default_config() {
    assert_in_package_root();
    let path = Path::new(GOOD_DIR).join("empty.toml");
    let config = load(&path).expect("empty.toml loads");
    assert_eq!(config.source.as_deref(), Some(path.as_path()));
    assert_eq!(
        certinel::config::model::Config {
            source: None,
            ..config
        },
        default_config()
    );
}

#[test]
fn a_minimal_endpoint_gets_every_default() {
    let config = load(&Path::new(GOOD_DIR).join("minimal.toml")).expect("minimal.toml loads");
    let [endpoint] = config.endpoints.as_slice() else {
        panic!("one endpoint expected: {:?}", config.endpoints);
    };
    let target = Target {
        host: Host::Name("localhost".into()),
        port: 8443,
    };
    let mut expected = certinel::config::model::Endpoint::new(target, Duration::from_secs(10));
    expected.interval = Duration::from_secs(300);
    assert_eq!(endpoint, &expected);
    assert_eq!(config.scanner.concurrency, 512);
    assert_eq!(config.exporter.listen.to_string(), "127.0.0.1:9798");
}

#[test]
fn a_file_setting_every_key_loads_into_the_model() {
    let dir = std::path::absolute(GOOD_DIR).expect("absolute fixture dir");
    let config = load(&dir.join("full.toml")).expect("full.toml loads");

    assert_eq!(config.scanner.concurrency, 16);
    assert_eq!(config.scanner.default_timeout, Duration::from_secs(3));
    assert_eq!(config.scanner.hosts_file, Some(dir.join("hosts")));

    let exporter = &config.exporter;
    assert_eq!(exporter.listen.to_string(), "[::1]:9100");
    let cidr = |network: &str, prefix| AllowRule::Cidr {
        network: network.parse::<IpAddr>().unwrap(),
        prefix,
    };
    assert_eq!(
        exporter.probe_allow,
        vec![
            cidr("10.0.0.0", 8),
            cidr("fd00::", 8),
            cidr("192.0.2.7", 32),
            AllowRule::HostPattern("db.internal.example".into()),
            AllowRule::HostPattern("*.internal.example".into()),
        ]
    );
    let names: Vec<&str> = exporter.modules.keys().map(String::as_str).collect();
    assert_eq!(names, ["default", "mtls", "smtp"]);
    assert_eq!(
        exporter.modules["default"].timeout,
        Duration::from_secs(3),
        "an unconfigured default module uses the scanner timeout"
    );
    let smtp = &exporter.modules["smtp"];
    assert_eq!(smtp.starttls, Some(StartTls::Smtp));
    assert_eq!(smtp.timeout, Duration::from_secs(7));
    assert_eq!(smtp.ip_family, IpFamily::Ipv4);
    assert_eq!(smtp.resolve, ResolveMode::First);
    let mtls = &exporter.modules["mtls"];
    assert_eq!(mtls.sni.as_deref(), Some("api.internal.example"));
    assert_eq!(mtls.ca_file, Some(dir.join("ca.pem")));
    let client_auth = mtls.client_auth.as_ref().expect("mtls client auth");
    assert_eq!(client_auth.cert, PathBuf::from("/etc/certinel/client.pem"));
    assert_eq!(client_auth.key, dir.join("keys/client-key.pem"));

    let [first, second, third] = config.endpoints.as_slice() else {
        panic!("three endpoints expected");
    };
    assert_eq!(first.target.to_string(), "app.internal.example:443");
    assert_eq!(first.probe.sni.as_deref(), Some("app.internal.example"));
    assert_eq!(first.probe.starttls, Some(StartTls::Imap));
    assert_eq!(first.probe.ca_file, Some(dir.join("ca.pem")));
    let client_auth = first.probe.client_auth.as_ref().expect("client auth");
    assert_eq!(client_auth.cert, dir.join("client.pem"));
    assert_eq!(client_auth.key, dir.join("client-key.pem"));
    assert_eq!(first.probe.timeout, Duration::from_millis(1500));
    assert_eq!(first.probe.ip_family, IpFamily::Ipv6);
    assert_eq!(first.probe.resolve, ResolveMode::First);
    assert_eq!(first.interval, Duration::from_secs(5400));
    assert_eq!(second.target.to_string(), "192.0.2.1:993");
    assert_eq!(second.probe.timeout, Duration::from_secs(3));
    assert_eq!(third.probe.starttls, Some(StartTls::Imap));

    let [certs, example] = config.files.as_slice() else {
        panic!("two file sources expected");
    };
    assert_eq!(Path::new(&certs.path), dir.join("certs/*.pem"));
    assert_eq!(certs.interval, Duration::from_secs(86_400));
    assert_eq!(example.path, "/etc/ssl/certs/example.pem");
    assert_eq!(example.interval, Duration::from_secs(300));
}

#[test]
fn a_cluster_table_loads_with_its_key_file_relative_to_the_configuration() {
    let dir = std::path::absolute(GOOD_DIR).expect("absolute fixture dir");
    let config = load(&Path::new(GOOD_DIR).join("cluster.toml")).expect("cluster.toml loads");
    let cluster = config.cluster.expect("a [cluster] table");
    assert_eq!(cluster.etcd.len(), 3);
    assert_eq!(cluster.prefix, "/staging/certinel/");
    assert_eq!(cluster.member, "replica-a");
    assert_eq!(cluster.lease_ttl, Duration::from_secs(10));
    assert_eq!(cluster.key_encryption_key_file, dir.join("cluster.kek"));
    assert!(cluster.key_encryption_key_previous.is_empty());
    assert_eq!(cluster.username, None);
    assert_eq!(default_config().cluster, None);
}
