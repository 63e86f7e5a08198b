//! [`gather`]: the inventory built from facts already read (the configuration, what the
//! store holds, the planner's next renewal, the audit history, the scanned leaves and the
//! shipped alert rules). Pure: the caller reads, this decides what each field says.

use std::fmt;

use time::{Duration, OffsetDateTime};

use crate::cert::ChallengeSpec;
use crate::cert::RenewBefore;
use crate::config::model::CertificateConfig;
use crate::inventory::alerts::{self, AlertRule, AlertScope};
use crate::inventory::{
    Automation, FailurePolicy, Inventory, ManagedCertificate, MonitoredCertificate, MonitoredKind,
    RenewalRule, Revocation, days_left, is_managed, overlap,
};
use crate::scan::inspect::CertFacts;
use crate::schedule::history::RevocationCheck;
use crate::schedule::plan::{BACKOFF_BASE, BACKOFF_CAP};
use crate::store::{AuditHistory, Outcome, Step, VersionMetadata};

/// What the store and the planner say about one configured certificate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredCertificate {
    /// The current version, if there is one and its metadata could be read.
    pub current: Option<VersionMetadata>,
    /// The previous version, likewise.
    pub previous: Option<VersionMetadata>,
    /// The serials of every stored version.
    pub serials: Vec<String>,
    /// Where servers read the live files.
    pub live_files: String,
    /// When the planner will renew it.
    pub next_renewal: Option<OffsetDateTime>,
    /// The last CRL verdict about the current version, as `status` reports it.
    pub revocation: Option<RevocationCheck>,
}

/// Everything the inventory is built from.
#[derive(Debug, Clone)]
pub struct InventorySources<'a> {
    /// The moment the facts were read.
    pub now: OffsetDateTime,
    /// The configured CAs as (name, directory URL): `[acme]` as `acme`, each `[ca.NAME]`.
    pub cas: Vec<(&'a str, &'a str)>,
    /// The configured certificates, each with what the store holds for it.
    pub certificates: Vec<(&'a CertificateConfig, StoredCertificate)>,
    /// The audit log read back.
    pub audit: &'a AuditHistory,
    /// Where the audit log lives.
    pub audit_location: &'a str,
    /// The shipped Prometheus alert rules.
    pub alert_rules: &'a [AlertRule],
    /// Each scanned endpoint and file whose leaf could be read.
    pub scanned: Vec<(MonitoredKind, String, CertFacts)>,
}

/// An input the inventory could not read: reported next to it, never silently left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// What was being read (`the current version of web`, `the audit log /var/...`).
    pub what: String,
    /// Why it could not be.
    pub error: String,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read {}: {}", self.what, self.error)
    }
}

/// The inventory of `sources`, and the audit lines that could not be read as events.
pub fn gather(sources: InventorySources<'_>) -> (Inventory, Vec<Unreadable>) {
    let unreadable = sources
        .audit
        .unreadable_lines
        .iter()
        .map(|line| Unreadable {
            what: format!("line {line} of the audit log {}", sources.audit_location),
            error: "not an audit event".to_owned(),
        })
        .collect();
    let stored_serials: Vec<String> = sources
        .certificates
        .iter()
        .flat_map(|(_, stored)| stored.serials.iter().cloned())
        .collect();
    let managed_names: Vec<String> = sources
        .certificates
        .iter()
        .flat_map(|(certificate, _)| certificate.dns_names())
        .collect();
    let managed = sources
        .certificates
        .iter()
        .map(|(certificate, stored)| managed_certificate(&sources, certificate, stored))
        .collect();
    let monitored_not_managed = sources
        .scanned
        .into_iter()
        .filter(|(_, _, leaf)| {
            !is_managed(
                &leaf.serial,
                &leaf.dns_names,
                &stored_serials,
                &managed_names,
            )
        })
        .map(|(kind, target, leaf)| MonitoredCertificate {
            kind,
            target,
            days_left: days_left(leaf.not_after, sources.now),
            dns_names: leaf.dns_names,
            not_after: leaf.not_after,
        })
        .collect();
    let inventory = Inventory {
        generated_at: sources.now,
        managed,
        monitored_not_managed,
    };
    (inventory, unreadable)
}

fn managed_certificate(
    sources: &InventorySources<'_>,
    certificate: &CertificateConfig,
    stored: &StoredCertificate,
) -> ManagedCertificate {
    let current = stored.current.as_ref();
    ManagedCertificate {
        name: certificate.name.clone(),
        dns_names: certificate.dns_names(),
        key_type: certificate.key.to_string(),
        issuer: current.map(|meta| meta.issuer.clone()),
        stored_at: stored.live_files.clone(),
        lifetime: current.map(|meta| meta.not_after - meta.not_before),
        renewal_rule: renewal_rule(certificate),
        next_renewal: stored.next_renewal.filter(|_| current.is_some()),
        automation: Automation {
            directory: certificate
                .ca
                .first()
                .and_then(|first| directory_of(&sources.cas, first))
                .unwrap_or_default()
                .to_owned(),
            challenge: challenge_name(&certificate.challenge).to_owned(),
            ca: certificate.ca.clone(),
            issued_by: current.and_then(|meta| {
                sources
                    .cas
                    .iter()
                    .find(|(_, directory)| *directory == meta.source)
                    .map(|(name, _)| (*name).to_owned())
            }),
        },
        deploy_commands: certificate.deploy.clone(),
        on_failure: FailurePolicy {
            backoff_min: BACKOFF_BASE,
            backoff_max: BACKOFF_CAP,
            rollback_on_deploy_failure: true,
            alerts: alerts::failure_alerts(
                sources.alert_rules,
                AlertScope {
                    has_verify_targets: !certificate.verify.is_empty(),
                    has_profile: certificate.profile.is_some(),
                },
            ),
        },
        overlap: match (&stored.previous, current) {
            (Some(previous), Some(current)) => {
                Some(overlap(previous.not_after, current.not_before))
            }
            _ => None,
        },
        audit_log: sources.audit_location.to_owned(),
        last_rotation: last_rotation(sources.audit, &certificate.name),
        revocation: stored.revocation.as_ref().map(|check| Revocation {
            revoked: check.revoked_at.is_some(),
            revoked_at: check.revoked_at,
            reason_code: check.reason_code,
            crl: check.url.clone(),
            checked_at: check.checked_at,
        }),
    }
}

fn renewal_rule(certificate: &CertificateConfig) -> RenewalRule {
    match certificate.renew_before {
        RenewBefore::Duration(before) => RenewalRule::RenewBefore {
            before: Duration::seconds(i64::try_from(before.as_secs()).unwrap_or(i64::MAX)),
        },
        // Validation keeps the percentage in (0, 100), so it fits a u8 once rounded.
        RenewBefore::Percentage(percent) => RenewalRule::Percentage {
            percent: percent.round().clamp(1.0, 99.0) as u8,
        },
        RenewBefore::Default => RenewalRule::Default,
    }
}

fn challenge_name(challenge: &ChallengeSpec) -> &'static str {
    match challenge {
        ChallengeSpec::Http01Listen(_) | ChallengeSpec::Http01Webroot(_) => "http-01",
        ChallengeSpec::TlsAlpn01Listen(_) => "tls-alpn-01",
        ChallengeSpec::Dns01(_) => "dns-01",
    }
}

/// The time of the last completed renewal (`done`, `ok`) of `name`.
fn last_rotation(audit: &AuditHistory, name: &str) -> Option<OffsetDateTime> {
    audit
        .events
        .iter()
        .filter(|event| {
            event.certificate == name && event.step == Step::Done && event.outcome == Outcome::Ok
        })
        .map(|event| event.time)
        .max()
}

/// The directory URL of the CA named `name`.
fn directory_of<'a>(cas: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    cas.iter()
        .find(|(ca, _)| *ca == name)
        .map(|(_, directory)| *directory)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::config::model::Config;
    use crate::store::{AuditEvent, AuditLog};

    fn config() -> Config {
        crate::config::parse(
            "state_dir = \"/var/lib/certinel\"\n[acme]\ndirectory = \"https://127.0.0.1:9/dir\"\n\
             [[certificate]]\nname = \"web\"\ndns_names = [\"web.test\"]\n\
             challenge = { type = \"http-01\", listen = \"127.0.0.1:0\" }\n",
            None,
        )
        .expect("test config")
    }

    fn done(certificate: &str, time: OffsetDateTime, outcome: Outcome) -> AuditEvent {
        AuditEvent {
            time,
            certificate: certificate.into(),
            version: None,
            serial: None,
            step: Step::Done,
            outcome,
            error: None,
            detail: None,
        }
    }

    fn audit_text(events: &[AuditEvent]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        for event in events {
            log.append(event).unwrap();
        }
        std::fs::read_to_string(path).unwrap()
    }

    /// The sources of an inventory of `config`'s first certificate, with nothing stored,
    /// on 2026-05-01.
    fn sources<'a>(config: &'a Config, audit: &'a AuditHistory) -> InventorySources<'a> {
        InventorySources {
            now: datetime!(2026-05-01 0:00 UTC),
            cas: vec![("acme", "https://127.0.0.1:9/dir")],
            certificates: vec![(&config.certificates[0], StoredCertificate::default())],
            audit,
            audit_location: "/var/lib/certinel/audit.jsonl",
            alert_rules: &[],
            scanned: Vec::new(),
        }
    }

    #[test]
    fn last_rotation_is_the_latest_completed_renewal_and_a_torn_audit_line_is_reported() {
        let config = config();
        let mut text = audit_text(&[
            done("web", datetime!(2026-01-01 10:00 UTC), Outcome::Ok),
            done("web", datetime!(2026-02-01 10:00 UTC), Outcome::Error),
            done("api", datetime!(2026-03-01 10:00 UTC), Outcome::Ok),
        ]);
        text.push_str("{\"time\":\"2026-04-01T10:00:00Z\",\"certif");
        let audit = AuditHistory::parse(&text);
        let (inventory, unreadable) = gather(sources(&config, &audit));
        let web = &inventory.managed[0];
        assert_eq!(web.last_rotation, Some(datetime!(2026-01-01 10:00 UTC)));
        assert_eq!(web.audit_log, "/var/lib/certinel/audit.jsonl");
        assert_eq!(
            unreadable,
            [Unreadable {
                what: "line 4 of the audit log /var/lib/certinel/audit.jsonl".into(),
                error: "not an audit event".into(),
            }]
        );
    }

    #[test]
    fn the_failure_policy_states_the_planners_backoff() {
        let config = config();
        let audit = AuditHistory::default();
        let (inventory, _) = gather(sources(&config, &audit));
        let policy = &inventory.managed[0].on_failure;
        assert_eq!(
            (policy.backoff_min, policy.backoff_max),
            (BACKOFF_BASE, BACKOFF_CAP)
        );
        assert_eq!(
            inventory.managed[0].next_renewal, None,
            "nothing stored yet"
        );
    }
}
