//! certbot's renewal confs and accounts into a plan, from fixtures written by certbot 2.1.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::acme::ForeignKeyKind;
use crate::import::testing::certificate;

const STANDALONE: &str = include_str!("../../../tests/fixtures/import/certbot-standalone.conf");
const WEBROOT: &str = include_str!("../../../tests/fixtures/import/certbot-webroot.conf");
const PRIVATE_KEY: &str = include_str!("../../../tests/fixtures/import/certbot-private-key.json");
const REGR: &str = include_str!("../../../tests/fixtures/import/certbot-regr.json");
const ACCOUNT_ID: &str = "326ddd6cce5b21fe92374af14e4d5803";

fn lineage(name: &str, conf: &str, names: &[&str]) -> LineageFiles {
    let (fullchain_pem, key_pem) = certificate(names, &rcgen::PKCS_ECDSA_P256_SHA256);
    LineageFiles {
        name: name.to_owned(),
        conf_path: PathBuf::from(format!("/etc/letsencrypt/renewal/{name}.conf")),
        conf: parse_renewal_conf(conf).unwrap(),
        fullchain_pem,
        key_pem,
    }
}

fn files(lineages: Vec<LineageFiles>) -> CertbotFiles {
    CertbotFiles {
        root: PathBuf::from("/etc/letsencrypt"),
        lineages,
        accounts: vec![AccountFiles {
            id: ACCOUNT_ID.to_owned(),
            dir: PathBuf::from(format!(
                "/etc/letsencrypt/accounts/127.0.0.1:24100/dir/{ACCOUNT_ID}"
            )),
            private_key_json: PRIVATE_KEY.as_bytes().to_vec(),
            regr_json: REGR.as_bytes().to_vec(),
        }],
        deploy_hook_scripts: Vec::new(),
        pre_post_hook_scripts: Vec::new(),
    }
}

#[test]
fn a_renewal_conf_parses_into_top_level_values_renewal_params_and_the_webroot_map() {
    let conf = parse_renewal_conf(WEBROOT).unwrap();
    assert_eq!(
        conf.top.get("fullchain").map(String::as_str),
        Some("/etc/letsencrypt/live/web/fullchain.pem")
    );
    assert_eq!(conf.params["authenticator"], "webroot");
    assert_eq!(conf.params["webroot_path"], "/var/www/html,");
    assert_eq!(conf.params["rsa_key_size"], "3072");
    assert_eq!(
        conf.webroot_map,
        [("c.test".to_owned(), "/var/www/html".to_owned())]
    );
    assert!(!conf.top.contains_key("renew_before_expiry"), "a comment");
}

#[test]
fn quoted_values_comments_and_bad_lines() {
    let conf = parse_renewal_conf(
        "renew_before_expiry = 20 days # sooner\n[renewalparams]\nrenew_hook = \"a, b # c\"\n",
    )
    .unwrap();
    assert_eq!(conf.top["renew_before_expiry"], "20 days");
    assert_eq!(conf.params["renew_hook"], "a, b # c");
    let error = parse_renewal_conf("version = 2\nnonsense\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 2: expected `key = value`, found \"nonsense\""
    );
    assert!(parse_renewal_conf("[[deep]]\n").is_err());
}

#[test]
fn a_standalone_lineage_plans_a_listener_its_hook_its_key_type_and_the_names_of_its_certificate() {
    let plan = plan(
        &files(vec![lineage("a.test", STANDALONE, &["a.test", "b.test"])]),
        None,
    )
    .unwrap();
    assert_eq!(plan.directory, "https://127.0.0.1:24100/dir");
    let account = plan.account.as_ref().unwrap();
    assert_eq!(
        account.url,
        "https://127.0.0.1:24100/my-account/6af058cd806633ff"
    );
    assert_eq!(account.key.kind(), ForeignKeyKind::Rsa);
    let [certificate] = &plan.certificates[..] else {
        panic!("one certificate: {plan:?}");
    };
    assert_eq!(certificate.name, "a.test");
    assert_eq!(certificate.dns_names, ["a.test", "b.test"]);
    assert_eq!(certificate.key, KeyAlgorithm::EcdsaP256);
    assert_eq!(
        certificate.challenge,
        ChallengePlan::HttpListen("127.0.0.1:24102".to_owned())
    );
    assert_eq!(certificate.deploy, ["touch /tmp/imp/deployed"]);
    assert_eq!(
        certificate.live.as_ref().unwrap().privkey,
        PathBuf::from("/etc/letsencrypt/live/a.test/privkey.pem")
    );
    assert!(certificate.notes.is_empty(), "{:?}", certificate.notes);
}

#[test]
fn a_webroot_lineage_plans_its_web_root_and_its_rsa_size() {
    let plan = plan(&files(vec![lineage("web", WEBROOT, &["c.test"])]), None).unwrap();
    let certificate = &plan.certificates[0];
    assert_eq!(
        certificate.challenge,
        ChallengePlan::HttpWebroot("/var/www/html".to_owned())
    );
    assert_eq!(certificate.key, KeyAlgorithm::Rsa3072);
}

#[test]
fn other_authenticators_hooks_and_renew_before_become_settings_or_notes() {
    let conf = STANDALONE
        .replace("authenticator = standalone", "authenticator = nginx")
        .replace(
            "# renew_before_expiry = 30 days",
            "renew_before_expiry = 20 days",
        )
        .replace(
            "renew_hook = touch /tmp/imp/deployed",
            "pre_hook = systemctl stop nginx\nrenew_hook = cp $RENEWED_LINEAGE/privkey.pem /x",
        );
    let plan = plan(&files(vec![lineage("a.test", &conf, &["a.test"])]), None).unwrap();
    let certificate = &plan.certificates[0];
    assert_eq!(
        certificate.challenge,
        ChallengePlan::HttpListen("0.0.0.0:80".to_owned())
    );
    assert_eq!(certificate.renew_before_days, Some(20));
    let notes = certificate.notes.join("\n");
    assert!(notes.contains("\"nginx\" authenticator"), "{notes}");
    assert!(notes.contains("pre_hook `systemctl stop nginx`"), "{notes}");
    assert!(notes.contains("RENEWED_LINEAGE"), "{notes}");
}

#[test]
fn lineages_of_two_servers_need_a_server_choice() {
    let staging = STANDALONE.replace(
        "server = https://127.0.0.1:24100/dir",
        "server = https://acme-staging-v02.api.letsencrypt.org/directory",
    );
    let both = files(vec![
        lineage("a.test", STANDALONE, &["a.test"]),
        lineage("s.test", &staging, &["s.test"]),
    ]);
    let error = plan(&both, None).unwrap_err();
    assert!(
        matches!(error, ImportError::SeveralServers { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("--server URL"), "{error}");
    let chosen = plan(&both, Some("https://127.0.0.1:24100/dir")).unwrap();
    let names: Vec<&str> = chosen
        .certificates
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["a.test"]);
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_skipped_and_a_missing_account_named() {
    let mut mismatched = lineage("a.test", STANDALONE, &["a.test"]);
    mismatched.key_pem = certificate(&["other"], &rcgen::PKCS_ECDSA_P256_SHA256).1;
    let good = lineage("b.test", STANDALONE, &["b.test"]);
    let plan_with_one_bad = plan(&files(vec![mismatched, good]), None).unwrap();
    let names: Vec<&str> = plan_with_one_bad
        .certificates
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["b.test"], "the good lineage goes on");
    let [(name, error)] = &plan_with_one_bad.skipped[..] else {
        panic!("one skipped: {:?}", plan_with_one_bad.skipped);
    };
    assert_eq!(name, "a.test");
    assert_eq!(
        error.to_string(),
        "/etc/letsencrypt/renewal/a.test.conf: private key does not match the certificate's \
         public key; renew it with certbot first or leave it out"
    );
    let mut no_account = files(vec![lineage("a.test", STANDALONE, &["a.test"])]);
    no_account.accounts.clear();
    let error = plan(&no_account, None).unwrap_err();
    assert!(
        error.to_string().starts_with(&format!(
            "/etc/letsencrypt/accounts holds no account {ACCOUNT_ID}"
        )),
        "{error}"
    );
}

#[test]
fn key_types_follow_certbots_settings() {
    let key = |pairs: &[(&str, &str)]| {
        let params: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        renewal_key(&params, crate::cert::KeyType::EcdsaP256, &mut Vec::new())
    };
    assert_eq!(key(&[]), KeyAlgorithm::Rsa2048);
    assert_eq!(
        key(&[("key_type", "rsa"), ("rsa_key_size", "4096")]),
        KeyAlgorithm::Rsa4096
    );
    assert_eq!(key(&[("key_type", "ecdsa")]), KeyAlgorithm::EcdsaP256);
    assert_eq!(
        key(&[("key_type", "ecdsa"), ("elliptic_curve", "secp384r1")]),
        KeyAlgorithm::EcdsaP384
    );
    assert_eq!(
        key(&[("key_type", "ecdsa"), ("elliptic_curve", "secp521r1")]),
        KeyAlgorithm::EcdsaP256,
        "the current key's type"
    );
}

#[test]
fn dns_plugins_and_wildcard_names_plan_a_dns01_hook_to_write() {
    let conf = STANDALONE.replace(
        "authenticator = standalone",
        "authenticator = dns-cloudflare",
    );
    let plan = plan(&files(vec![lineage("a.test", &conf, &["a.test"])]), None).unwrap();
    assert_plans_the_dns_hook(&plan.certificates[0], |note| {
        note.contains("\"dns-cloudflare\" plugin")
    });
    assert_plans_the_dns_hook(&plan_for_wildcard(), |note| {
        note.starts_with("wildcard names need dns-01")
    });
}

/// Asserts that `certificate` plans a DNS-01 hook still to write, and that its first note
/// (the reason) passes `says`.
fn assert_plans_the_dns_hook(certificate: &CertificatePlan, says: impl Fn(&str) -> bool) {
    assert_eq!(
        certificate.challenge,
        ChallengePlan::Dns01Exec(DNS_HOOK_PLACEHOLDER.to_owned())
    );
    assert!(says(&certificate.notes[0]), "{:?}", certificate.notes);
}

fn plan_for_wildcard() -> CertificatePlan {
    let wildcard = lineage("w", STANDALONE, &["*.w.test", "w.test"]);
    plan(&files(vec![wildcard]), None)
        .unwrap()
        .certificates
        .remove(0)
}
