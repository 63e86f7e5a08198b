//! Tests of `[cluster]` validation with an injected host name and file system: the model it
//! builds, its defaults, and one exact message per rule.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::model::{ClusterConfig, ClusterPassword};
use crate::config::validate::Context;
use crate::config::{ConfigError, parse_with};

/// Files that exist for these tests, relative to `/etc/certinel/certinel.toml`.
const EXISTING: [&str; 5] = [
    "ca.pem",
    "client.pem",
    "client-key.pem",
    "new.kek",
    "old.kek",
];

/// Parses `text` as `/etc/certinel/certinel.toml` on a machine named `host`, where only the
/// [`EXISTING`] files exist.
fn parse_as(text: &str, host: Option<&str>) -> Result<Option<ClusterConfig>, ConfigError> {
    let is_file = |path: &Path| {
        EXISTING
            .iter()
            .any(|name| path == Path::new("/etc/certinel").join(name))
    };
    parse_on(text, host, &is_file)
}

fn parse_on(
    text: &str,
    host: Option<&str>,
    is_file: &dyn Fn(&Path) -> bool,
) -> Result<Option<ClusterConfig>, ConfigError> {
    let host_name = || host.map(str::to_owned);
    let context = Context {
        text,
        source: None,
        base_dir: Some(Path::new("/etc/certinel")),
        is_file,
        host_name: &host_name,
    };
    parse_with(&context).map(|config| config.cluster)
}

fn cluster_ok(text: &str) -> ClusterConfig {
    parse_as(text, Some("node-1"))
        .unwrap_or_else(|e| panic!("should parse: {e}"))
        .expect("a [cluster] table")
}

fn cluster_err(text: &str) -> String {
    parse_as(text, Some("node-1"))
        .expect_err("should be rejected")
        .to_string()
}

/// A valid table; cases append keys to it or replace its lines.
const MINIMAL: &str = "[cluster]\netcd = [\"http://127.0.0.1:2379\"]\n\
                       key_encryption_key_file = \"new.kek\"\n";

#[test]
fn without_a_cluster_table_there_is_no_cluster() {
    assert_eq!(parse_as("", None).unwrap(), None);
}

#[test]
fn a_minimal_table_gets_the_documented_defaults_and_the_host_name_as_member() {
    let cluster = cluster_ok(MINIMAL);
    assert_eq!(
        cluster,
        ClusterConfig {
            etcd: vec!["http://127.0.0.1:2379".to_owned()],
            ca_file: None,
            client_cert: None,
            client_key: None,
            username: None,
            password: None,
            prefix: "/certinel/".to_owned(),
            member: "node-1".to_owned(),
            lease_ttl: Duration::from_secs(15),
            audit_retention: Duration::from_secs(90 * 86_400),
            key_encryption_key_file: PathBuf::from("/etc/certinel/new.kek"),
            key_encryption_key_previous: Vec::new(),
        }
    );
}

#[test]
fn every_key_is_read_and_paths_resolve_against_the_configuration_directory() {
    let text = r#"
[cluster]
etcd = ["https://10.0.0.1:2379", "https://[fd00::2]:2379", "https://etcd-3.internal:2379"]
ca_file = "ca.pem"
client_cert = "client.pem"
client_key = "/etc/certinel/client-key.pem"
username = "certinel"
password = "pa55word"
prefix = "/prod/certinel/"
member = "web-2.example"
lease_ttl = "30s"
audit_retention = "30d"
key_encryption_key_file = "new.kek"
key_encryption_key_previous = ["old.kek"]
"#;
    let cluster = cluster_ok(text);
    let dir = Path::new("/etc/certinel");
    assert_eq!(cluster.etcd.len(), 3);
    assert_eq!(cluster.ca_file, Some(dir.join("ca.pem")));
    assert_eq!(cluster.client_cert, Some(dir.join("client.pem")));
    assert_eq!(cluster.client_key, Some(dir.join("client-key.pem")));
    assert_eq!(cluster.username.as_deref(), Some("certinel"));
    assert_eq!(cluster.password, Some(ClusterPassword("pa55word".into())));
    assert_eq!(cluster.prefix, "/prod/certinel/");
    assert_eq!(cluster.member, "web-2.example");
    assert_eq!(cluster.lease_ttl, Duration::from_secs(30));
    assert_eq!(cluster.audit_retention, Duration::from_secs(30 * 86_400));
    assert_eq!(cluster.key_encryption_key_previous, [dir.join("old.kek")]);
}

#[test]
fn the_commented_example_in_config_certinel_toml_is_valid_when_uncommented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/certinel.toml");
    let example = std::fs::read_to_string(path).expect("read the example configuration");
    let (_, section) = example
        .split_once("\n# [cluster]\n")
        .expect("a commented [cluster] example");
    let mut text = "[cluster]\n".to_owned();
    for line in section.lines() {
        let Some(setting) = line.strip_prefix("# ") else {
            continue;
        };
        let is_setting = setting
            .split_once(" = ")
            .is_some_and(|(key, _)| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        if is_setting {
            text.push_str(setting);
            text.push('\n');
        }
    }
    let cluster = parse_on(&text, None, &|_| true)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .expect("a [cluster] table");
    assert_eq!(cluster.etcd.len(), 3);
    assert_eq!(cluster.member, "web-1");
    assert!(cluster.password.is_some() && cluster.client_key.is_some());
    assert_eq!(cluster.key_encryption_key_previous.len(), 1);
}

#[test]
fn the_password_is_never_shown_by_debug_or_in_messages() {
    let text = format!("{MINIMAL}username = \"u\"\npassword = \"S3CR3T\"\n");
    let config = parse_as(&text, Some("node-1")).unwrap();
    assert!(!format!("{config:?}").contains("S3CR3T"));
    let errors = [
        format!("{MINIMAL}password = \"S3CR3T\"\n"),
        format!("{MINIMAL}username = \"\"\npassword = \"S3CR3T\"\n"),
        format!("{MINIMAL}username = \"u\"\npassword = 7331\n"),
        "[cluster]\npassword = \"S3CR3T\ndef\"\n".to_owned(),
    ];
    for text in errors {
        let error = cluster_err(&text);
        assert!(
            !error.contains("S3CR3T") && !error.contains("7331"),
            "{error}"
        );
        assert!(
            error.contains("password") || error.contains("username"),
            "{error}"
        );
    }
}

#[test]
fn the_default_member_must_be_a_readable_safe_host_name() {
    assert_eq!(
        parse_as(MINIMAL, None).unwrap_err().to_string(),
        "<config>:1:1: cluster.member: cannot read this machine's host name (the default member \
         name); set member = \"...\""
    );
    let long = "h".repeat(64);
    let error = parse_as(MINIMAL, Some(&long)).unwrap_err().to_string();
    assert!(error.contains("is not a member name"), "{error}");
    assert!(error.ends_with("set member = \"...\""), "{error}");
    let set = format!("{MINIMAL}member = \"api-1\"\n");
    assert_eq!(parse_as(&set, None).unwrap().unwrap().member, "api-1");
}

#[test]
fn each_rule_has_one_message_naming_line_key_and_what_to_do() {
    let cases: &[(&str, &str)] = &[
        (
            "[cluster]\nkey_encryption_key_file = \"new.kek\"\n",
            "<config>:1:1: cluster.etcd: required; list the etcd client URLs, e.g. etcd = \
             [\"https://10.0.0.1:2379\", \"https://10.0.0.2:2379\", \"https://10.0.0.3:2379\"]",
        ),
        (
            "[cluster]\netcd = []\n",
            "<config>:2:8: cluster.etcd: empty list; list the etcd client URLs, e.g. etcd = \
             [\"https://10.0.0.1:2379\", \"https://10.0.0.2:2379\", \"https://10.0.0.3:2379\"]",
        ),
        (
            "[cluster]\netcd = [\"10.0.0.1:2379\"]\n",
            "<config>:2:9: cluster.etcd[0]: \"10.0.0.1:2379\" has no scheme; write \
             http://HOST:PORT or https://HOST:PORT",
        ),
        (
            "[cluster]\netcd = [\"unix://etcd.sock\"]\n",
            "<config>:2:9: cluster.etcd[0]: unsupported scheme \"unix\"; write http://HOST:PORT \
             or https://HOST:PORT",
        ),
        (
            "[cluster]\netcd = [\"https://10.0.0.1:2379/v3\"]\n",
            "<config>:2:9: cluster.etcd[0]: \"https://10.0.0.1:2379/v3\" has a path; an etcd \
             URL is only a scheme, host and port, remove \"/v3\"",
        ),
        (
            "[cluster]\netcd = [\"https://10.0.0.1\"]\n",
            "<config>:2:9: cluster.etcd[0]: no port; add etcd's client port, e.g. \
             https://10.0.0.1:2379",
        ),
        (
            "[cluster]\netcd = [\"http://root@10.0.0.1:2379\"]\n",
            "<config>:2:9: cluster.etcd[0]: user info (user@) is not allowed; set username and \
             password",
        ),
        (
            "[cluster]\netcd = [\"http://10.0.0.1:99999\"]\n",
            "<config>:2:9: cluster.etcd[0]: \"http://10.0.0.1:99999\": invalid port \"99999\" \
             (use a number from 1 to 65535)",
        ),
        (
            "[cluster]\netcd = [\"https://a:2379\", \"http://b:2379\"]\n",
            "<config>:2:27: cluster.etcd[1]: mixes http:// and https:// endpoints; use one \
             scheme for every endpoint",
        ),
        (
            "[cluster]\netcd = [\"http://a:2379\", \"http://a:2379\"]\n",
            "<config>:2:26: cluster.etcd[1]: \"http://a:2379\" is listed twice; list each \
             endpoint once",
        ),
        (
            &format!("{MINIMAL}ca_file = \"ca.pem\"\n"),
            "<config>:4:11: cluster.ca_file: ca_file is for TLS but the etcd endpoints are \
             http://; write https:// URLs or remove ca_file",
        ),
        (
            "[cluster]\netcd = [\"https://a:2379\"]\nclient_cert = \"client.pem\"\n",
            "<config>:3:15: cluster.client_cert: client_cert needs client_key; add client_key = \
             \"...\" (the certificate's private key, PEM)",
        ),
        (
            "[cluster]\netcd = [\"https://a:2379\"]\nclient_key = \"client-key.pem\"\n",
            "<config>:3:14: cluster.client_key: client_key needs client_cert; add client_cert = \
             \"...\" or remove client_key",
        ),
        (
            "[cluster]\netcd = [\"https://a:2379\"]\nca_file = \"missing.pem\"\n",
            "<config>:3:11: cluster.ca_file: no such file \"missing.pem\" in the configuration \
             file's directory; fix the path",
        ),
        (
            &format!("{MINIMAL}username = \"certinel\"\n"),
            "<config>:4:12: cluster.username: username needs password; add password = \"...\" \
             or remove username",
        ),
        (
            &format!("{MINIMAL}password = \"x\"\n"),
            "<config>:4:12: cluster.password: password needs username; add username = \"...\" \
             or remove password",
        ),
        (
            &format!("{MINIMAL}username = \"u\"\npassword = \"\"\n"),
            "<config>:5:12: cluster.password: empty; write the etcd user's password or remove \
             username and password",
        ),
        (
            &format!("{MINIMAL}prefix = \"certinel\"\n"),
            "<config>:4:10: cluster.prefix: \"certinel\" must start and end with '/', e.g. \
             \"/certinel/\"",
        ),
        (
            &format!("{MINIMAL}prefix = \"/a b/\"\n"),
            "<config>:4:10: cluster.prefix: \"/a b/\" contains spaces or control characters; \
             remove them",
        ),
        (
            &format!("{MINIMAL}member = \"web/1\"\n"),
            "<config>:4:10: cluster.member: \"web/1\" is not a member name; use letters, digits, \
             '.', '_' or '-', starting with a letter or digit, at most 63 characters",
        ),
        (
            &format!("{MINIMAL}lease_ttl = \"1s\"\n"),
            "<config>:4:13: cluster.lease_ttl: 1s is out of range; use 2s to 5m (default 15s)",
        ),
        (
            &format!("{MINIMAL}lease_ttl = \"6m\"\n"),
            "<config>:4:13: cluster.lease_ttl: 6m is out of range; use 2s to 5m (default 15s)",
        ),
        (
            &format!("{MINIMAL}lease_ttl = \"2500ms\"\n"),
            "<config>:4:13: cluster.lease_ttl: 2500ms is not whole seconds (etcd grants leases \
             in seconds); write e.g. 2s",
        ),
        (
            &format!("{MINIMAL}audit_retention = \"12h\"\n"),
            "<config>:4:19: cluster.audit_retention: 12h is out of range; use 1d to 36500d \
             (default 90d)",
        ),
        (
            "[cluster]\netcd = [\"http://a:2379\"]\n",
            "<config>:1:1: cluster.key_encryption_key_file: required; write a key with \
             `certinel cluster keygen /etc/certinel/cluster.kek` and add \
             key_encryption_key_file = \"/etc/certinel/cluster.kek\"",
        ),
        (
            "[cluster]\netcd = [\"http://a:2379\"]\nkey_encryption_key_file = \"none.kek\"\n",
            "<config>:3:27: cluster.key_encryption_key_file: no such file \"none.kek\" in the \
             configuration file's directory; write one with `certinel cluster keygen none.kek` \
             or fix the path",
        ),
        (
            &format!("{MINIMAL}key_encryption_key_previous = [\"/etc/certinel/new.kek\"]\n"),
            "<config>:4:32: cluster.key_encryption_key_previous[0]: this is \
             key_encryption_key_file, the current key; list only earlier keys here",
        ),
        (
            &format!("{MINIMAL}etcd_endpoints = []\n"),
            "<config>:4:1: cluster.etcd_endpoints: unknown key; valid keys here: etcd, ca_file, \
             client_cert, client_key, username, password, prefix, member, lease_ttl, \
             audit_retention, key_encryption_key_file, key_encryption_key_previous",
        ),
    ];
    let mut mismatches = Vec::new();
    for (text, expected) in cases {
        let actual = match parse_as(text, Some("node-1")) {
            Ok(_) => "(accepted)".to_owned(),
            Err(error) => error.to_string(),
        };
        if actual != *expected {
            mismatches.push(format!(
                "{text}\n  expected: {expected}\n  actual:   {actual}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
