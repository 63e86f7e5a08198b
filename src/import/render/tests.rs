//! The rendered configuration loads as it is and says what the plan says.

use std::path::PathBuf;

use super::*;
use crate::cert::{ChallengeSpec, KeyAlgorithm};
use crate::import::plan::{CertificatePlan, Tool};
use crate::import::testing::certificate;

fn plan() -> ImportPlan {
    let (chain_pem, key_pem) = certificate(&["a.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let certificate = |name: &str, challenge: ChallengePlan| CertificatePlan {
        name: name.to_owned(),
        dns_names: match challenge {
            ChallengePlan::Dns01Exec(_) => vec!["*.a.test".to_owned()],
            _ => vec!["a.test".to_owned(), "b.test".to_owned()],
        },
        serial: "1".to_owned(),
        not_after: time::macros::datetime!(2027-03-01 00:00 UTC),
        key: KeyAlgorithm::Rsa3072,
        challenge,
        renew_before_days: Some(20),
        deploy: vec!["systemctl reload \"nginx\"".to_owned()],
        chain_pem: chain_pem.clone(),
        key_pem: key_pem.clone(),
        live: None,
        described_by: PathBuf::from("/etc/letsencrypt/renewal/a.conf"),
        notes: vec!["look here".to_owned()],
    };
    ImportPlan {
        tool: Tool::Certbot,
        source: PathBuf::from("/etc/letsencrypt"),
        directory: "https://127.0.0.1:14000/dir".to_owned(),
        contact: vec!["mailto:ops@example.test".to_owned()],
        account: None,
        certificates: vec![
            certificate("a", ChallengePlan::HttpListen("127.0.0.1:5002".to_owned())),
            certificate("b", ChallengePlan::HttpWebroot("/var/www/html".to_owned())),
            certificate(
                "c",
                ChallengePlan::Dns01Exec("/usr/local/bin/hook".to_owned()),
            ),
        ],
        skipped: vec![(
            "broken".to_owned(),
            crate::import::ImportError::Server("why".to_owned()),
        )],
        notes: vec!["several accounts".to_owned()],
    }
}

#[test]
fn the_rendered_configuration_loads_with_every_planned_setting() {
    let text = config_toml(
        &plan(),
        Path::new("/var/lib/certinel"),
        Some(Path::new("/etc/certinel/ca.pem")),
    );
    let config =
        crate::config::parse(&text, None).unwrap_or_else(|error| panic!("{error}\n{text}"));
    assert_eq!(config.state_dir, PathBuf::from("/var/lib/certinel"));
    let acme = config.acme.as_ref().unwrap();
    assert_eq!(acme.directory, "https://127.0.0.1:14000/dir");
    assert_eq!(acme.contact, ["mailto:ops@example.test"]);
    assert_eq!(
        acme.ca_file.as_deref(),
        Some(Path::new("/etc/certinel/ca.pem"))
    );
    let [a, b, c] = &config.certificates[..] else {
        panic!("three certificates");
    };
    assert!(
        matches!(c.challenge, ChallengeSpec::Dns01(_)),
        "{:?}",
        c.challenge
    );
    assert!(text.contains("# NOT IMPORTED: broken: why\n"), "{text}");
    assert_eq!((a.name.as_str(), b.name.as_str()), ("a", "b"));
    assert_eq!(a.identifiers.len(), 2);
    assert_eq!(a.key, KeyAlgorithm::Rsa3072);
    assert_eq!(a.deploy, ["systemctl reload \"nginx\""]);
    assert_eq!(
        a.challenge,
        ChallengeSpec::Http01Listen("127.0.0.1:5002".parse().unwrap())
    );
    assert_eq!(
        b.challenge,
        ChallengeSpec::Http01Webroot(PathBuf::from("/var/www/html"))
    );
    assert!(text.contains("# CHECK: several accounts\n"), "{text}");
    assert!(
        text.contains("# CHECK: look here\n[[certificate]]"),
        "{text}"
    );
    assert!(
        text.contains("# From /etc/letsencrypt/renewal/a.conf; expires 2027-03-01T00:00:00Z."),
        "{text}"
    );
}
