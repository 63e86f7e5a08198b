//! lego's accounts and certificates into a plan, from fixtures written by lego 4.9.

use std::path::PathBuf;

use super::*;
use crate::acme::ForeignKeyKind;
use crate::import::testing::certificate;

const ACCOUNT: &str = include_str!("../../../tests/fixtures/import/lego-account.json");
const ACCOUNT_KEY: &str = include_str!("../../../tests/fixtures/import/lego-account.key");

fn account(server_dir: &str, email: &str) -> LegoAccountFiles {
    let dir = PathBuf::from(format!(".lego/accounts/{server_dir}/{email}"));
    LegoAccountFiles {
        server_dir: server_dir.to_owned(),
        email: email.to_owned(),
        account_path: dir.join("account.json"),
        account_json: ACCOUNT.as_bytes().to_vec(),
        key_path: dir.join(format!("keys/{email}.key")),
        key_pem: SecretPem::new(ACCOUNT_KEY.to_owned()),
    }
}

fn files(accounts: Vec<LegoAccountFiles>) -> LegoFiles {
    let (crt_pem, key_pem) = certificate(&["d.test", "e.test"], &rcgen::PKCS_ECDSA_P384_SHA384);
    LegoFiles {
        root: PathBuf::from(".lego"),
        accounts,
        certificates: vec![LegoCertificateFiles {
            name: "d.test".to_owned(),
            crt_path: PathBuf::from(".lego/certificates/d.test.crt"),
            crt_pem,
            key_pem,
        }],
    }
}

fn options(server: Option<&str>) -> LegoOptions {
    LegoOptions {
        server: server.map(str::to_owned),
        email: None,
        challenge: ChallengePlan::HttpListen("127.0.0.1:5002".to_owned()),
    }
}

#[test]
fn lego_server_directory_names_are_host_and_port() {
    assert_eq!(
        server_dir_name("https://127.0.0.1:24100/dir"),
        "127.0.0.1_24100"
    );
    assert_eq!(
        server_dir_name("https://acme-v02.api.letsencrypt.org/directory"),
        "acme-v02.api.letsencrypt.org"
    );
}

#[test]
fn a_lego_account_and_certificate_plan_the_p256_account_its_contact_and_the_certificate() {
    let plan = plan(
        &files(vec![account("127.0.0.1_24100", "ops@example.test")]),
        &options(Some("https://127.0.0.1:24100/dir")),
    )
    .unwrap();
    let account = plan.account.as_ref().unwrap();
    assert_eq!(
        account.url,
        "https://127.0.0.1:24100/my-account/416703c0a9c16fd8"
    );
    assert_eq!(account.key.kind(), ForeignKeyKind::EcdsaP256);
    assert_eq!(plan.contact, ["mailto:ops@example.test"]);
    let certificate = &plan.certificates[0];
    assert_eq!(certificate.dns_names, ["d.test", "e.test"]);
    assert_eq!(certificate.key, crate::cert::KeyAlgorithm::EcdsaP384);
    assert_eq!(
        certificate.challenge,
        ChallengePlan::HttpListen("127.0.0.1:5002".to_owned())
    );
}

#[test]
fn without_server_only_lets_encrypt_accounts_are_understood() {
    let error = plan(
        &files(vec![account("127.0.0.1_24100", "a@x")]),
        &options(None),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "lego does not record the ACME directory URL of 127.0.0.1_24100: pass --server URL"
    );
    let plan = plan(
        &files(vec![account("acme-v02.api.letsencrypt.org", "a@x")]),
        &options(None),
    )
    .unwrap();
    assert_eq!(
        plan.directory,
        "https://acme-v02.api.letsencrypt.org/directory"
    );
}

#[test]
fn two_accounts_for_one_server_need_an_email_and_none_means_a_new_registration() {
    let two = files(vec![
        account("127.0.0.1_24100", "a@x"),
        account("127.0.0.1_24100", "b@x"),
    ]);
    let server = Some("https://127.0.0.1:24100/dir");
    let error = plan(&two, &options(server)).unwrap_err();
    assert!(
        error.to_string().contains("choose one with --email"),
        "{error}"
    );
    let chosen = plan(
        &two,
        &LegoOptions {
            email: Some("b@x".to_owned()),
            ..options(server)
        },
    )
    .unwrap();
    assert!(chosen.account.is_some());
    let none = plan(&files(Vec::new()), &options(server)).unwrap();
    assert!(none.account.is_none());
    assert!(
        none.notes[0].contains("certinel registers a new one"),
        "{:?}",
        none.notes
    );
}
