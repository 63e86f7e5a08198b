//! Tests of the loader as a whole: the example file, defaults, paths and error framing.
//! The per-message cases live as fixtures in `tests/fixtures/config/bad/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::config::model::{AllowRule, Host};

fn parse_ok(text: &str) -> Config {
    parse(text, None).unwrap_or_else(|e| panic!("should parse: {e}"))
}

fn parse_err(text: &str) -> String {
    parse(text, None)
        .expect_err("should be rejected")
        .to_string()
}

#[test]
fn the_example_configuration_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/certinel.toml");
    let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
    let config_dir = std::path::absolute(path.parent().unwrap()).unwrap();
    assert_eq!(config.endpoints.len(), 4);
    assert_eq!(config.files.len(), 1);
    assert_eq!(
        config.endpoints[1].probe.ca_file,
        Some(config_dir.join("internal-ca.pem"))
    );
    let modules: Vec<&str> = config.exporter.modules.keys().map(String::as_str).collect();
    assert_eq!(modules, ["default", "mtls", "smtp"]);
    assert!(
        config
            .exporter
            .probe_allow
            .contains(&AllowRule::HostPattern("*.internal.example".into()))
    );
}

#[test]
fn the_default_concurrency_sweeps_ten_thousand_endpoints_100_ms_away_within_five_seconds() {
    // bench/latency: 10,000 endpoints behind 100 ms RTT took 8.3 s at 256 probes in flight
    // and 4.5 s at 512 (CPU-bound beyond that on two cores).
    assert_eq!(parse_ok("").scanner.concurrency, 512);
}

#[test]
fn empty_text_is_the_default_config() {
    assert_eq!(parse_ok(""), default_config());
}

#[test]
fn default_config_is_loopback_only_with_a_default_module() {
    let config = default_config();
    assert!(config.endpoints.is_empty());
    assert_eq!(config.exporter.listen.to_string(), "127.0.0.1:9798");
    assert_eq!(config.exporter.probe_allow.len(), 3);
    assert_eq!(
        config.exporter.modules["default"].timeout,
        Duration::from_secs(10)
    );
}

#[test]
fn endpoints_inherit_the_scanner_timeout() {
    let config =
        parse_ok("[scanner]\ntimeout = \"2s\"\n[[endpoint]]\ntarget = \"a.example:443\"\n");
    assert_eq!(config.endpoints[0].probe.timeout, Duration::from_secs(2));
    assert_eq!(config.endpoints[0].interval, Duration::from_secs(300));
    assert_eq!(
        config.endpoints[0].target.host,
        Host::Name("a.example".into())
    );
}

#[test]
fn relative_paths_resolve_against_the_source_directory() {
    let text = "[[endpoint]]\ntarget = \"a.example:443\"\nca_file = \"ca.pem\"\n\
                client_cert = \"/abs/client.pem\"\nclient_key = \"../key.pem\"\n";
    let config = parse(text, Some(Path::new("etc/certinel/certinel.toml"))).unwrap();
    let endpoint = &config.endpoints[0];
    assert_eq!(
        endpoint.probe.ca_file,
        Some(PathBuf::from("etc/certinel/ca.pem"))
    );
    let client_auth = endpoint.probe.client_auth.as_ref().unwrap();
    assert_eq!(client_auth.cert, PathBuf::from("/abs/client.pem"));
    assert_eq!(client_auth.key, PathBuf::from("etc/certinel/../key.pem"));
}

#[test]
fn without_a_source_paths_stay_as_written_and_errors_say_config() {
    let config = parse_ok("[[file]]\npath = \"certs/*.pem\"\n");
    assert_eq!(config.files[0].path, "certs/*.pem");
    assert_eq!(
        parse_err("[scanner]\nconcurrency = 0\n"),
        "<config>:2:15: scanner.concurrency: must be at least 1; it is how many probes run at once"
    );
}

#[test]
fn crl_checking_is_on_unless_scanner_crl_is_false_and_must_be_a_boolean() {
    assert!(parse_ok("").scanner.crl);
    assert!(parse_ok("[scanner]\ncrl = true\n").scanner.crl);
    assert!(!parse_ok("[scanner]\ncrl = false\n").scanner.crl);
    let error = parse_err("[scanner]\ncrl = \"yes\"\n");
    assert!(error.starts_with("<config>:2:"), "{error}");
    assert!(error.contains("crl"), "{error}");
}

#[test]
fn managed_certificates_are_checked_against_their_crls_hourly_unless_crl_interval_says() {
    assert_eq!(
        parse_ok("").scanner.crl_interval,
        std::time::Duration::from_secs(3600)
    );
    assert_eq!(
        parse_ok("[scanner]\ncrl_interval = \"10m\"\n")
            .scanner
            .crl_interval,
        std::time::Duration::from_secs(600)
    );
    let error = parse_err("[scanner]\ncrl_interval = \"0s\"\n");
    assert!(error.starts_with("<config>:2:"), "{error}");
    assert!(error.contains("scanner.crl_interval"), "{error}");
}

#[test]
fn connection_budget_and_address_cap_are_read_and_checked() {
    let defaults = parse_ok("");
    assert_eq!(defaults.scanner.max_connections, None);
    assert_eq!(defaults.scanner.max_addresses, 16);
    let set = parse_ok("[scanner]\nmax_connections = 300\nmax_addresses = 4\n");
    assert_eq!(set.scanner.max_connections, Some(300));
    assert_eq!(set.scanner.max_addresses, 4);
    assert!(
        parse_err("[scanner]\nmax_connections = 0\n")
            .starts_with("<config>:2:19: scanner.max_connections: must be at least 1")
    );
    assert!(
        parse_err("[scanner]\nmax_addresses = 0\n")
            .starts_with("<config>:2:17: scanner.max_addresses: must be at least 1")
    );
}

#[test]
fn missing_certificate_files_are_not_a_load_error() {
    let config =
        parse_ok("[[endpoint]]\ntarget = \"a.example:443\"\nca_file = \"/nonexistent/ca.pem\"\n");
    assert_eq!(
        config.endpoints[0].probe.ca_file,
        Some(PathBuf::from("/nonexistent/ca.pem"))
    );
}

#[test]
fn an_existing_hosts_file_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hosts"), "127.0.0.1 a.example\n").unwrap();
    let config_path = dir.path().join("certinel.toml");
    std::fs::write(&config_path, "[scanner]\nhosts_file = \"hosts\"\n").unwrap();
    let config = load(&config_path).unwrap();
    assert_eq!(config.scanner.hosts_file, Some(dir.path().join("hosts")));
    assert_eq!(config.source, Some(config_path));
}

#[test]
fn an_unreadable_file_names_the_path_and_the_os_error() {
    let error = load(Path::new("/nonexistent/certinel.toml")).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/certinel.toml: cannot read: "),
        "{error}"
    );
    assert!(error.to_string().ends_with("; check the path"), "{error}");
    assert_eq!(error.line(), None);
    assert_eq!(error.key(), None);
}

#[test]
fn endpoints_differing_only_in_starttls_are_not_duplicates() {
    let config = parse_ok(
        "[[endpoint]]\ntarget = \"m.example:25\"\n\
         [[endpoint]]\ntarget = \"m.example:25\"\nstarttls = \"smtp\"\n",
    );
    assert_eq!(config.endpoints.len(), 2);
}

#[test]
fn a_configured_default_module_replaces_the_builtin_one() {
    let config = parse_ok("[exporter.module.default]\ntimeout = \"3s\"\nresolve = \"first\"\n");
    let module = &config.exporter.modules["default"];
    assert_eq!(module.timeout, Duration::from_secs(3));
    assert_eq!(module.resolve, model::ResolveMode::First);
}

#[test]
fn an_empty_probe_allow_list_allows_nothing() {
    let config = parse_ok("[exporter]\nprobe_allow = []\n");
    assert!(config.exporter.probe_allow.is_empty());
}

#[test]
fn exporter_connection_limits_load_and_default() {
    assert_eq!(
        parse_ok("").exporter.connections,
        model::ConnectionLimits::default()
    );
    let config = parse_ok(
        "[exporter]\nheader_read_timeout = \"2s\"\nidle_timeout = \"500ms\"\nmax_connections = 3\n",
    );
    let limits = config.exporter.connections;
    assert_eq!(limits.header_read_timeout, Duration::from_secs(2));
    assert_eq!(limits.idle_timeout, Duration::from_millis(500));
    assert_eq!(limits.max_connections, 3);
}

#[test]
fn renewer_settings_load_with_their_defaults() {
    use crate::cert::RenewBefore;
    use crate::cert::{ChallengeSpec, Identifier, KeyAlgorithm};

    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/good/renewer.toml");
    let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
    let dir = std::path::absolute(path.parent().unwrap()).unwrap();
    assert_eq!(config.state_dir, dir.join("state"));
    let acme = config.acme.as_ref().expect("[acme]");
    assert_eq!(acme.directory, "https://127.0.0.1:14000/dir");
    assert_eq!(acme.ca_file, Some(dir.join("pebble-root.pem")));
    assert_eq!(acme.poll_timeout, Duration::from_secs(120));
    assert!(
        !format!("{:?}", acme.eab).contains("zWNDZM6"),
        "EAB key redacted"
    );

    let [api, www, mail] = &config.certificates[..] else {
        panic!("three certificates expected");
    };
    assert_eq!(
        api.identifiers,
        [
            Identifier::Dns("api.example.com".into()),
            Identifier::Ip("127.0.0.1".parse().unwrap())
        ]
    );
    assert_eq!(api.dns_names(), ["api.example.com"]);
    assert_eq!(api.key, KeyAlgorithm::EcdsaP256);
    assert_eq!(api.duration, Duration::from_secs(90 * 86_400));
    assert_eq!(api.renew_before, RenewBefore::Default);
    assert_eq!(api.deploy_timeout, Duration::from_secs(60));
    assert_eq!(api.history, 5);
    assert_eq!(
        api.challenge,
        ChallengeSpec::Http01Listen("127.0.0.1:5002".parse().unwrap())
    );
    assert_eq!(www.key, KeyAlgorithm::Rsa2048);
    assert_eq!(www.renew_before, RenewBefore::Percentage(25.0));
    assert_eq!(www.challenge, ChallengeSpec::Http01Webroot(dir.join("www")));
    assert_eq!(
        (www.history, www.profile.as_deref()),
        (3, Some("shortlived"))
    );
    assert_eq!(www.deploy, ["true", "echo deployed"]);
    assert_eq!(
        mail.renew_before,
        RenewBefore::Duration(Duration::from_secs(10 * 86_400))
    );
    assert_eq!(
        mail.challenge,
        ChallengeSpec::TlsAlpn01Listen("[::1]:5001".parse().unwrap())
    );
}

#[test]
fn without_certificates_acme_and_state_dir_are_optional() {
    let config = parse_ok("");
    assert_eq!(config.state_dir, PathBuf::from("/var/lib/certinel"));
    assert!(config.acme.is_none() && config.certificates.is_empty());
}
