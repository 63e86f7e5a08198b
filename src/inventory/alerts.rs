//! Which of the shipped Prometheus alerts can fire for a managed certificate: the rules are
//! read from the rule files' text (compiled in by the caller), and an alert is relevant
//! when its expression reads a metric of managed certificates or of their ACME CA.
//!
//! The rule files are read line by line, not with a YAML parser: they are certinel's own
//! files, written in one style (`- alert:` items, `expr:` on one line or as a `|` or `>`
//! block), and the tests run this reader over them.

use crate::metrics::names;

/// One alerting rule: its name and the `certinel_*` metrics its expression reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRule {
    /// The alert name (`CertinelRenewalFailing`).
    pub name: String,
    /// The `certinel_*` metric names in its expression, in order of appearance.
    pub metrics: Vec<String>,
}

/// What a managed certificate is configured with, as far as alerts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlertScope {
    /// The certificate has `verify` targets, so the drift check watches them.
    pub has_verify_targets: bool,
    /// The certificate asks the CA for a `profile`.
    pub has_profile: bool,
}

/// Exported only for certificates with `verify` targets.
const SERVED_CURRENT: &str = names::CERTIFICATE_SERVED_CURRENT.name;
/// Exported only for certificates that ask for a profile.
const PROFILE_AVAILABLE: &str = names::ACME_PROFILE_AVAILABLE.name;

/// The alerting rules of a Prometheus rules file, in file order.
pub fn alert_rules(rules_yaml: &str) -> Vec<AlertRule> {
    let mut rules: Vec<AlertRule> = Vec::new();
    // While inside an `expr: |` block: the indentation of the `expr:` key.
    let mut block_indent: Option<usize> = None;
    for line in rules_yaml.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(key_indent) = block_indent {
            if trimmed.is_empty() || indent > key_indent {
                if let Some(rule) = rules.last_mut() {
                    rule.metrics.extend(metric_names(trimmed));
                }
                continue;
            }
            block_indent = None;
        }
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            rules.push(AlertRule {
                name: name.trim().to_owned(),
                metrics: Vec::new(),
            });
        } else if let Some(expr) = trimmed.strip_prefix("expr:") {
            let expr = expr.trim();
            if expr.starts_with('|') || expr.starts_with('>') {
                block_indent = Some(indent);
            } else if let Some(rule) = rules.last_mut() {
                rule.metrics.extend(metric_names(expr));
            }
        }
    }
    rules.retain(|rule| !rule.name.is_empty());
    rules
}

/// The names of the alerts in `rules` that can fire for a managed certificate configured
/// as `scope` says, in order: those reading a managed-certificate or ACME metric, except
/// the served-certificate alert without `verify` targets and the profile alert without a
/// profile (their metrics have no series for such a certificate).
pub fn failure_alerts(rules: &[AlertRule], scope: AlertScope) -> Vec<String> {
    rules
        .iter()
        .filter(|rule| {
            rule.metrics.iter().any(|metric| {
                names::MANAGED_PREFIXES
                    .iter()
                    .any(|prefix| metric.starts_with(prefix))
            })
        })
        .filter(|rule| scope.has_verify_targets || !reads(rule, SERVED_CURRENT))
        .filter(|rule| scope.has_profile || !reads(rule, PROFILE_AVAILABLE))
        .map(|rule| rule.name.clone())
        .collect()
}

fn reads(rule: &AlertRule, metric: &str) -> bool {
    rule.metrics.iter().any(|name| name == metric)
}

/// The `certinel_*` metric names in a PromQL expression, in order of appearance.
fn metric_names(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find(names::PREFIX) {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        found.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENEWAL_RULES: &str = include_str!("../../config/prometheus/alerts-renewal.yml");
    const OTHER_RULES: &str = include_str!("../../config/prometheus/alerts.yml");

    fn shipped() -> Vec<AlertRule> {
        [OTHER_RULES, RENEWAL_RULES]
            .iter()
            .flat_map(|rules| alert_rules(rules))
            .collect()
    }

    #[test]
    fn rules_are_read_with_the_metrics_of_one_line_and_block_expressions() {
        let rules = alert_rules(
            "groups:\n  - name: g\n    rules:\n      - alert: One\n        # not certinel_comment\n        expr: certinel_a == 0\n        annotations:\n          runbook: see certinel_runbook_total\n      - alert: Two\n        expr: |\n          certinel_b\n            and on (name)\n          certinel_c_total > 0\n        for: 5m\n",
        );
        let summary: Vec<(&str, Vec<&str>)> = rules
            .iter()
            .map(|rule| {
                let metrics = rule.metrics.iter().map(String::as_str).collect();
                (rule.name.as_str(), metrics)
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("One", vec!["certinel_a"]),
                ("Two", vec!["certinel_b", "certinel_c_total"])
            ]
        );
    }

    #[test]
    fn every_shipped_alert_has_an_expression_reading_a_certinel_metric_or_up() {
        let rules = shipped();
        assert!(rules.len() >= 20, "{rules:?}");
        for rule in rules {
            assert!(
                !rule.metrics.is_empty() || rule.name == "CertinelDown",
                "{rule:?}"
            );
        }
    }

    #[test]
    fn a_plain_certificate_gets_every_renewal_and_acme_alert_but_stale_and_profile() {
        let alerts = failure_alerts(&shipped(), AlertScope::default());
        assert_eq!(
            alerts,
            [
                "CertinelManagedCertificateRevoked",
                "CertinelRenewalFailing",
                "CertinelRenewalBehind",
                "CertinelRenewalOverdue",
                "CertinelCertificateNotReady",
                "CertinelManagedCertificateExpiresIn7Days",
                "CertinelManagedCertificateExpiresIn21Days",
                "CertinelManagedCertificateLifetimeLow",
                "CertinelManagedCertificateLifetimeCritical",
                "CertinelAcmeServerErrors",
                "CertinelAcmeClockSkew",
                "CertinelAcmeRequestsSlow",
            ]
        );
    }

    #[test]
    fn verify_targets_and_a_profile_add_the_stale_and_profile_alerts() {
        let scope = AlertScope {
            has_verify_targets: true,
            has_profile: true,
        };
        let alerts = failure_alerts(&shipped(), scope);
        let plain = failure_alerts(&shipped(), AlertScope::default());
        let added: Vec<&String> = alerts.iter().filter(|a| !plain.contains(a)).collect();
        assert_eq!(
            added,
            [
                "CertinelEndpointServingStaleCertificate",
                "CertinelAcmeProfileUnavailable"
            ]
        );
        assert!(
            alerts
                .iter()
                .all(|alert| !alert.starts_with("CertinelEndpointCertificate")),
            "endpoint alerts are about scanned endpoints: {alerts:?}"
        );
    }
}
