//! What hooks see of certinel's environment, through the real binary: `certinel renew` with
//! a dns-01 exec hook (real Knot, real Pebble) and a deploy command, each writing its
//! environment to a file. certinel itself runs with a secret that is not passed through.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::cli::certinel_command;
use crate::common::config_text::{pebble_acme_table, write_config_file};
use crate::common::process::write_script;
use crate::dns01::{assert_renewed_to_v1, knot_pebble_and_calls_log, write_hook};

/// `NAME=value` lines of an `env` dump, as a map.
fn environment(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

#[tokio::test]
async fn hooks_get_a_minimal_environment_plus_what_the_certificate_passes_them() {
    let (knot, pebble, dir, calls) = knot_pebble_and_calls_log().await;
    let publisher = write_hook(&knot, dir.path(), &calls);
    let dns_env = dir.path().join("dns.env");
    let deploy_env = dir.path().join("deploy.env");
    let body = format!(
        "[ \"$1\" = present ] && env > {}\nexec {} \"$@\"\n",
        dns_env.display(),
        publisher.display()
    );
    let hook = write_script(dir.path(), "dns-hook", &body);
    let state_dir = dir.path().join("state");
    let certificate = format!(
        "\n[[certificate]]\nname = \"env\"\n\
         dns_names = [\"env.certinel.test\"]\n\
         env = {{ SET_BY_CERTIFICATE = \"for every hook\" }}\n\
         env_passthrough = [\"PASSED_THROUGH\"]\n\
         challenge = {{ type = \"dns-01\", provider = \"exec\", command = {hook:?}, \
         propagation_resolver = \"{resolver}\", propagation_timeout = \"20s\", \
         env = {{ DNS_ONLY = \"dns\" }}, env_passthrough = [\"DNS_TOKEN\"] }}\n\
         deploy = [\"env > {deploy_env}\"]\n",
        hook = hook.display().to_string(),
        resolver = knot.addr,
        deploy_env = deploy_env.display(),
    );
    let text = pebble_acme_table(&state_dir, &pebble) + &certificate;
    let config = write_config_file(dir.path(), &text);
    let output = certinel_command(&["renew", "env"], &config)
        .env("HOME", dir.path())
        .env("LANG", "C.UTF-8")
        .env("PASSED_THROUGH", "passed")
        .env("DNS_TOKEN", "token")
        .env("NOT_PASSED", "certinel's own secret")
        .output()
        .await
        .expect("run certinel");
    assert_renewed_to_v1(&output, "env", &knot);

    let home = dir.path().display().to_string();
    for (hook, env) in [
        ("dns-01 hook", environment(&dns_env)),
        ("deploy", environment(&deploy_env)),
    ] {
        assert!(env.contains_key("PATH"), "{hook}: {env:?}");
        assert_eq!(env.get("HOME"), Some(&home), "{hook}");
        assert_eq!(
            env.get("LANG").map(String::as_str),
            Some("C.UTF-8"),
            "{hook}"
        );
        assert_eq!(
            env.get("PASSED_THROUGH").map(String::as_str),
            Some("passed"),
            "{hook}"
        );
        assert_eq!(
            env.get("SET_BY_CERTIFICATE").map(String::as_str),
            Some("for every hook"),
            "{hook}"
        );
        assert!(!env.contains_key("NOT_PASSED"), "{hook}: {env:?}");
    }
    let dns = environment(&dns_env);
    assert_eq!(dns.get("DNS_ONLY").map(String::as_str), Some("dns"));
    assert_eq!(dns.get("DNS_TOKEN").map(String::as_str), Some("token"));
    let deploy = environment(&deploy_env);
    assert!(
        !deploy.contains_key("DNS_ONLY") && !deploy.contains_key("DNS_TOKEN"),
        "the DNS provider's variables are its own: {deploy:?}"
    );
    assert_eq!(deploy.get("CERTINEL_NAME").map(String::as_str), Some("env"));
}
