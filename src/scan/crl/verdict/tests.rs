//! Unit tests of the CRL verdict with rcgen-issued CAs, leaves and CRLs.

use rcgen::{
    CertificateRevocationListParams, CrlDistributionPoint, Issuer, KeyIdMethod, KeyPair,
    RevocationReason, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;
use time::macros::datetime;

use super::{CrlCheckError, CrlVerdict, check, distribution_points, next_update};
use crate::scan::testing::Minted;

const NOW: OffsetDateTime = datetime!(2030-06-01 12:00:00 UTC);
const THIS_UPDATE: OffsetDateTime = datetime!(2030-06-01 00:00:00 UTC);
const NEXT_UPDATE: OffsetDateTime = datetime!(2030-06-08 00:00:00 UTC);
const REVOKED_AT: OffsetDateTime = datetime!(2030-05-30 10:00:00 UTC);

fn crl_by(ca: &Minted, revoked: &[(&Minted, Option<RevocationReason>)]) -> Vec<u8> {
    let params = CertificateRevocationListParams {
        this_update: THIS_UPDATE,
        next_update: NEXT_UPDATE,
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|(leaf, reason)| RevokedCertParams {
                serial_number: leaf.params.serial_number.clone().unwrap(),
                revocation_time: REVOKED_AT,
                reason_code: *reason,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    params
        .signed_by(&Issuer::from_params(&ca.params, &ca.key))
        .unwrap()
        .der()
        .to_vec()
}

fn leaf_of(ca: &Minted, serial: u64) -> Minted {
    ca.leaf_with(&["www.example.test"], |params| {
        params.serial_number = Some(SerialNumber::from(serial));
    })
}

/// A root's leaves `unlisted` and `listed`, and the root's CRL that lists only `listed`.
struct OneListed {
    ca: Minted,
    unlisted: Minted,
    listed: Minted,
    crl: Vec<u8>,
}

/// [`OneListed`] with serials `serial` (unlisted) and `serial + 1` (listed).
fn one_listed(serial: u64) -> OneListed {
    let ca = Minted::root("Test CA");
    let unlisted = leaf_of(&ca, serial);
    let listed = leaf_of(&ca, serial + 1);
    let crl = crl_by(&ca, &[(&listed, None)]);
    OneListed {
        ca,
        unlisted,
        listed,
        crl,
    }
}

#[test]
fn a_listed_serial_is_revoked_with_its_time_and_reason_code() {
    let ca = Minted::root("Test CA");
    let leaf = leaf_of(&ca, 0x1234);
    let crl = crl_by(&ca, &[(&leaf, Some(RevocationReason::KeyCompromise))]);

    let verdict = check(&leaf.der, &ca.der, &crl, NOW).unwrap();

    assert_eq!(
        verdict,
        CrlVerdict::Revoked {
            revoked_at: REVOKED_AT,
            reason_code: Some(1),
        }
    );
    assert_eq!(verdict.keyword(), "revoked");
}

#[test]
fn an_unlisted_serial_is_not_revoked_until_next_update() {
    let OneListed {
        ca, unlisted, crl, ..
    } = one_listed(7);

    assert_eq!(
        check(&unlisted.der, &ca.der, &crl, NOW).unwrap(),
        CrlVerdict::NotRevoked {
            next_update: Some(NEXT_UPDATE)
        }
    );
    assert_eq!(next_update(&crl), Some(NEXT_UPDATE));
}

#[test]
fn a_revocation_without_reason_code_has_none() {
    let ca = Minted::root("Test CA");
    let leaf = leaf_of(&ca, 9);
    let crl = crl_by(&ca, &[(&leaf, None)]);

    let verdict = check(&leaf.der, &ca.der, &crl, NOW).unwrap();

    assert!(matches!(
        verdict,
        CrlVerdict::Revoked {
            reason_code: None,
            ..
        }
    ));
}

#[test]
fn a_crl_past_next_update_is_stale_but_a_listed_serial_stays_revoked() {
    let OneListed {
        ca,
        unlisted,
        listed,
        crl,
    } = one_listed(10);
    let later = datetime!(2030-06-09 00:00:00 UTC);

    assert_eq!(
        check(&unlisted.der, &ca.der, &crl, later).unwrap(),
        CrlVerdict::Stale {
            next_update: NEXT_UPDATE
        }
    );
    assert_eq!(
        check(&listed.der, &ca.der, &crl, later).unwrap().keyword(),
        "revoked"
    );
}

#[test]
fn a_crl_signed_by_another_key_with_the_same_name_is_a_bad_signature_error() {
    let ca = Minted::root("Test CA");
    let impostor = Minted::ca("Test CA", None, KeyPair::generate().unwrap());
    let leaf = leaf_of(&ca, 12);
    let forged = crl_by(&impostor, &[(&leaf, None)]);

    assert_eq!(
        check(&leaf.der, &ca.der, &forged, NOW),
        Err(CrlCheckError::BadSignature)
    );
}

#[test]
fn a_crl_or_an_issuer_that_does_not_belong_to_the_leaf_is_an_issuer_mismatch() {
    let ca = Minted::root("Test CA");
    let other = Minted::root("Other CA");
    let leaf = leaf_of(&ca, 13);
    let crl = crl_by(&other, &[]);
    type Expected = fn(&CrlCheckError) -> bool;
    let cases: [(&str, &Minted, Expected); 2] = [
        ("a CRL of another issuer", &ca, |error| {
            matches!(error, CrlCheckError::IssuerMismatch { .. })
        }),
        ("an issuer that did not issue the leaf", &other, |error| {
            matches!(error, CrlCheckError::IssuerNotLeafIssuer { .. })
        }),
    ];
    for (case, issuer, expected) in cases {
        let Err(error) = check(&leaf.der, &issuer.der, &crl, NOW) else {
            panic!("{case}: accepted");
        };
        assert!(expected(&error), "{case}: {error}");
        assert_eq!(error.keyword(), "issuer_mismatch", "{case}");
    }
}

#[test]
fn a_crl_from_the_future_and_garbage_are_errors() {
    let ca = Minted::root("Test CA");
    let leaf = leaf_of(&ca, 15);
    let crl = crl_by(&ca, &[]);

    assert!(matches!(
        check(&leaf.der, &ca.der, &crl, datetime!(2030-05-01 00:00:00 UTC)),
        Err(CrlCheckError::NotYetValid { .. })
    ));
    assert!(matches!(
        check(&leaf.der, &ca.der, b"not a CRL", NOW),
        Err(CrlCheckError::MalformedCrl(_))
    ));
    assert_eq!(next_update(b"not a CRL"), None);
}

#[test]
fn only_http_distribution_points_are_taken_once_each() {
    let ca = Minted::root("Test CA");
    let leaf = ca.leaf_with(&["www.example.test"], |params| {
        params.crl_distribution_points = vec![
            CrlDistributionPoint {
                uris: vec![
                    "http://127.0.0.1:8080/ca.crl".to_owned(),
                    "ldap://ldap.example.test/cn=CA".to_owned(),
                ],
            },
            CrlDistributionPoint {
                uris: vec![
                    "https://127.0.0.1/ca.crl".to_owned(),
                    "HTTP://127.0.0.1:8080/other.crl".to_owned(),
                    "http://127.0.0.1:8080/ca.crl".to_owned(),
                ],
            },
        ];
    });

    assert_eq!(
        distribution_points(&leaf.der),
        vec![
            "http://127.0.0.1:8080/ca.crl".to_owned(),
            "HTTP://127.0.0.1:8080/other.crl".to_owned(),
        ]
    );
    assert!(distribution_points(&ca.der).is_empty());
    assert!(distribution_points(b"garbage").is_empty());
}
