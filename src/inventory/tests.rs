//! Data-driven tests of the inventory model helpers and renderings: each rendering is
//! compared with an expected file under tests/fixtures/inventory/.

use std::path::PathBuf;

use time::Duration;
use time::macros::datetime;

use super::format::{OutputFormat, human_duration, render};
use super::*;

fn managed(name: &str) -> ManagedCertificate {
    ManagedCertificate {
        name: name.to_owned(),
        dns_names: vec!["www.example.com".to_owned(), "example.com".to_owned()],
        key_type: "ecdsa-p256".to_owned(),
        issuer: Some("CN=Pebble Intermediate CA 1a2b3c".to_owned()),
        stored_at: format!("/var/lib/certinel/certs/{name}/current"),
        lifetime: Some(Duration::days(90)),
        renewal_rule: RenewalRule::RenewBefore {
            before: Duration::days(30),
        },
        next_renewal: Some(datetime!(2026-12-01 10:00 UTC)),
        automation: Automation {
            directory: "https://127.0.0.1:14000/dir".to_owned(),
            challenge: "http-01".to_owned(),
            ca: vec!["acme".to_owned(), "backup".to_owned()],
            issued_by: Some("backup".to_owned()),
        },
        deploy_commands: vec!["systemctl reload nginx".to_owned()],
        on_failure: FailurePolicy {
            backoff_min: Duration::minutes(5),
            backoff_max: Duration::hours(24),
            rollback_on_deploy_failure: true,
            // A few names are enough to show how the list renders; alerts::tests checks
            // which alerts the rule files give a certificate.
            alerts: [
                "CertinelRenewalFailing",
                "CertinelCertificateNotReady",
                "CertinelAcmeServerErrors",
            ]
            .map(str::to_owned)
            .to_vec(),
        },
        overlap: Some(Duration::days(30)),
        audit_log: "/var/lib/certinel/audit.jsonl".to_owned(),
        last_rotation: Some(datetime!(2026-10-02 10:00 UTC)),
        revocation: Some(Revocation {
            revoked: false,
            revoked_at: None,
            reason_code: None,
            crl: "http://crl.example.com/1.crl".to_owned(),
            checked_at: datetime!(2026-11-26 23:00 UTC),
        }),
    }
}

fn never_issued(name: &str) -> ManagedCertificate {
    ManagedCertificate {
        issuer: None,
        lifetime: None,
        renewal_rule: RenewalRule::Percentage { percent: 33 },
        next_renewal: None,
        deploy_commands: Vec::new(),
        overlap: None,
        last_rotation: None,
        revocation: None,
        ..managed(name)
    }
}

fn sample() -> Inventory {
    Inventory {
        generated_at: datetime!(2026-11-27 00:00 UTC),
        managed: vec![managed("www"), never_issued("api")],
        monitored_not_managed: vec![
            MonitoredCertificate {
                kind: MonitoredKind::Endpoint,
                target: "legacy.example.com:443".to_owned(),
                dns_names: vec!["legacy.example.com".to_owned()],
                not_after: datetime!(2026-12-09 12:00 UTC),
                days_left: 12,
            },
            MonitoredCertificate {
                kind: MonitoredKind::File,
                target: "/etc/ssl/vendor|app.pem".to_owned(),
                dns_names: vec!["vendor.internal".to_owned()],
                not_after: datetime!(2026-11-20 00:00 UTC),
                days_left: -7,
            },
        ],
    }
}

fn empty() -> Inventory {
    Inventory {
        generated_at: datetime!(2026-11-27 00:00 UTC),
        managed: Vec::new(),
        monitored_not_managed: Vec::new(),
    }
}

/// One rendering compared with its expected file under `tests/fixtures/inventory/`.
struct Case {
    /// What the expected file shows; printed when the rendering differs.
    proves: &'static str,
    inventory: fn() -> Inventory,
    format: OutputFormat,
    fixture: &'static str,
}

/// Renders the case and compares it with its fixture, returning the difference as a
/// message. With `CERTINEL_UPDATE_FIXTURES=1` the fixture is rewritten instead.
fn check(case: &Case) -> Result<(), String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inventory")
        .join(case.fixture);
    let actual = render(&(case.inventory)(), case.format);
    if std::env::var_os("CERTINEL_UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {}: {e} (run with CERTINEL_UPDATE_FIXTURES=1)",
            case.proves,
            path.display()
        )
    })?;
    if actual == expected {
        return Ok(());
    }
    Err(format!(
        "{}: rendering differs from {}\n--- expected\n{expected}\n--- actual\n{actual}",
        case.proves,
        path.display()
    ))
}

#[test]
fn every_rendering_matches_its_expected_file() {
    let cases = [
        Case {
            proves: "the table answers every checklist question and lists unmanaged certificates",
            inventory: sample,
            format: OutputFormat::Table,
            fixture: "sample.txt",
        },
        Case {
            proves: "markdown escapes pipes and answers every checklist question",
            inventory: sample,
            format: OutputFormat::Markdown,
            fixture: "sample.md",
        },
        Case {
            proves: "json carries durations as seconds and times as RFC 3339",
            inventory: sample,
            format: OutputFormat::Json,
            fixture: "sample.json",
        },
        Case {
            proves: "an empty inventory says none as a table",
            inventory: empty,
            format: OutputFormat::Table,
            fixture: "empty.txt",
        },
        Case {
            proves: "an empty inventory says none in markdown",
            inventory: empty,
            format: OutputFormat::Markdown,
            fixture: "empty.md",
        },
        Case {
            proves: "an empty inventory says none in json",
            inventory: empty,
            format: OutputFormat::Json,
            fixture: "empty.json",
        },
    ];
    let failures: Vec<String> = cases.iter().filter_map(|case| check(case).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_revoked_current_version_says_when_why_and_that_it_is_renewed_at_once() {
    let mut revoked = managed("www");
    revoked.revocation = Some(Revocation {
        revoked: true,
        revoked_at: Some(datetime!(2026-11-26 20:00 UTC)),
        reason_code: Some(1),
        crl: "http://crl.example.com/1.crl".to_owned(),
        checked_at: datetime!(2026-11-26 23:00 UTC),
    });
    let inventory = Inventory {
        managed: vec![revoked],
        ..empty()
    };
    let table = render(&inventory, OutputFormat::Table);
    assert!(
        table.contains(
            "REVOKED at 2026-11-26T20:00:00Z, reason code 1 per http://crl.example.com/1.crl \
             (since 2026-11-26T23:00:00Z); renewed at once"
        ),
        "{table}"
    );
    let json = render(&inventory, OutputFormat::Json);
    assert!(json.contains("\"revoked\": true"), "{json}");
    assert!(json.contains("\"reason_code\": 1"), "{json}");
}

#[test]
fn overlap_is_previous_end_minus_current_start_and_never_negative() {
    let current_not_before = datetime!(2026-10-02 10:00 UTC);
    assert_eq!(
        overlap(datetime!(2026-11-01 10:00 UTC), current_not_before),
        Duration::days(30)
    );
    assert_eq!(
        overlap(datetime!(2026-10-01 10:00 UTC), current_not_before),
        Duration::ZERO
    );
}

#[test]
fn days_left_rounds_down_and_goes_negative_after_expiry() {
    let now = datetime!(2026-11-27 00:00 UTC);
    assert_eq!(days_left(datetime!(2026-12-09 12:00 UTC), now), 12);
    assert_eq!(days_left(datetime!(2026-11-26 23:00 UTC), now), -1);
}

#[test]
fn a_leaf_is_managed_by_stored_serial_or_by_all_names_configured() {
    let stored = vec!["1a2b".to_owned()];
    let managed = vec!["www.example.com".to_owned()];
    let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert!(is_managed(
        "001A2B",
        &names(&["other.test"]),
        &stored,
        &managed
    ));
    assert!(is_managed(
        "ff",
        &names(&["WWW.example.com"]),
        &stored,
        &managed
    ));
    assert!(!is_managed(
        "ff",
        &names(&["www.example.com", "x.test"]),
        &stored,
        &managed
    ));
    assert!(!is_managed("ff", &[], &stored, &managed));
}

#[test]
fn human_duration_uses_the_largest_whole_unit() {
    assert_eq!(human_duration(Duration::days(90)), "90d");
    assert_eq!(human_duration(Duration::hours(36)), "36h");
    assert_eq!(human_duration(Duration::minutes(5)), "5m");
    assert_eq!(human_duration(Duration::seconds(17)), "17s");
}

#[test]
fn control_characters_in_scanned_names_are_escaped_in_table_and_markdown() {
    let mut inventory = empty();
    inventory.monitored_not_managed.push(MonitoredCertificate {
        kind: MonitoredKind::File,
        target: "/certs/evil\x1b[2J.pem".to_owned(),
        dns_names: vec!["a\r\nforged.example".to_owned()],
        not_after: datetime!(2026-12-09 12:00 UTC),
        days_left: 12,
    });
    for format in [OutputFormat::Table, OutputFormat::Markdown] {
        let text = render(&inventory, format);
        assert!(
            text.split('\n')
                .all(|line| !line.contains(char::is_control)),
            "{format:?}: {text:?}"
        );
        assert!(text.contains(r"evil\x1b[2J.pem"), "{text}");
        assert!(text.contains(r"a\r\nforged.example"), "{text}");
    }
}
