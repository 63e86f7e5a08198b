//! Validation of the renewer's settings: `state_dir`, `[acme]` (and the keys every
//! `[ca.NAME]` shares with it) and `[[certificate]]`.
//!
//! The renewal policy is checked here with [`RenewBefore::validate`], so a `renew_before` as long
//! as the certificate's lifetime never reaches the scheduler (cert-manager users burned
//! their CA's rate limits on exactly that loop).

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use toml::Spanned;

use crate::cert::{
    ChallengeSpec, Eab, Identifier, KeyAlgorithm, RenewBefore, RenewBeforeError, is_safe_name,
};
use crate::config::ConfigError;
use crate::config::cas::{ca_choice, max_concurrent_orders};
use crate::config::challenge::{challenge, resolver_addr};
use crate::config::hook_env::hook_env;
use crate::config::locate::join;
use crate::config::model::{AcmeConfig, CertificateConfig};
use crate::config::raw::{RawAcme, RawCertificate};
use crate::config::target::{NameError, parse_dns_name};
use crate::config::validate::Context;
use crate::config::verify_targets;

/// `state_dir` when the file sets none.
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/certinel";
/// How long to wait for the CA when `acme.poll_timeout` is not set.
const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(300);
/// The requested lifetime when a certificate sets no `duration` (Let's Encrypt's).
const DEFAULT_DURATION: Duration = Duration::from_secs(90 * 86_400);
/// The deadline of one deploy command when `deploy_timeout` is not set.
const DEFAULT_DEPLOY_TIMEOUT: Duration = Duration::from_secs(60);
/// Versions kept when `history` is not set.
const DEFAULT_HISTORY: usize = 5;

/// The state directory, resolved against the configuration file's directory.
pub(crate) fn state_dir(
    raw: Option<&Spanned<String>>,
    cx: &Context<'_>,
) -> Result<PathBuf, ConfigError> {
    match raw {
        None => Ok(PathBuf::from(DEFAULT_STATE_DIR)),
        Some(value) => cx.path(value, "state_dir".to_owned()),
    }
}

/// `[acme]`; `first_certificate` is the span of the first `[[certificate]]` that uses it
/// (sets no `ca`, or lists `"acme"`), if any, because such certificates cannot be obtained
/// without a directory.
pub(crate) fn acme(
    raw: Option<Spanned<RawAcme>>,
    first_certificate: Option<Range<usize>>,
    cx: &Context<'_>,
) -> Result<Option<AcmeConfig>, ConfigError> {
    let missing = "required when [[certificate]] tables exist; add e.g. \
                   directory = \"https://acme-staging-v02.api.letsencrypt.org/directory\""
        .to_owned();
    let Some(raw) = raw else {
        return match first_certificate {
            Some(span) => Err(cx.error(span, "acme.directory".to_owned(), missing)),
            None => Ok(None),
        };
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let Some(directory) = &raw.directory else {
        return match first_certificate {
            Some(_) => Err(cx.error(span, "acme.directory".to_owned(), missing)),
            None => Ok(None),
        };
    };
    let directory = directory.clone();
    ca_settings(raw, &directory, "acme", cx).map(Some)
}

/// The keys `[acme]` and every `[ca.NAME]` share, once the directory is known to be set;
/// `prefix` (`acme`, `ca.NAME`) names the table in errors.
pub(crate) fn ca_settings(
    raw: RawAcme,
    directory: &Spanned<String>,
    prefix: &str,
    cx: &Context<'_>,
) -> Result<AcmeConfig, ConfigError> {
    let key = |name: &str| format!("{prefix}.{name}");
    let directory = https_url(directory, &key("directory"), cx)?;
    let dry_run_directory = match &raw.dry_run_directory {
        Some(value) => Some(https_url(value, &key("dry_run_directory"), cx)?),
        None => None,
    };
    let contact = raw
        .contact
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let text = value.get_ref();
            if text.contains(':') && !text.ends_with(':') {
                Ok(text.clone())
            } else {
                Err(cx.error(
                    value.span(),
                    format!("{}[{index}]", key("contact")),
                    format!("{text:?} is not a contact URL; write e.g. \"mailto:ops@example.com\""),
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    let ca_file = match &raw.ca_file {
        Some(value) => Some(cx.path(value, key("ca_file"))?),
        None => None,
    };
    let eab = match raw.eab {
        None => None,
        Some(eab) => {
            let eab = eab.into_inner();
            if eab.kid.get_ref().trim().is_empty() {
                return Err(cx.error(
                    eab.kid.span(),
                    key("eab.kid"),
                    "empty key id; copy the EAB key id your CA gave you".to_owned(),
                ));
            }
            let hmac_key = eab.hmac_key.get_ref().trim();
            if hmac_key.is_empty()
                || URL_SAFE_NO_PAD
                    .decode(hmac_key.trim_end_matches('='))
                    .is_err()
            {
                // Never quote the key: it is a secret.
                return Err(cx.error(
                    eab.hmac_key.span(),
                    key("eab.hmac_key"),
                    "not a base64url key; copy the EAB HMAC key exactly as your CA gave it"
                        .to_owned(),
                ));
            }
            Some(Eab {
                kid: eab.kid.into_inner(),
                hmac_key: hmac_key.to_owned(),
            })
        }
    };
    let poll_timeout = cx.timeout(
        raw.poll_timeout.as_ref(),
        key("poll_timeout"),
        DEFAULT_POLL_TIMEOUT,
    )?;
    let preflight_resolver = resolver_addr(
        raw.preflight_resolver.as_ref(),
        &key("preflight_resolver"),
        cx,
    )?;
    let caa_identities = raw
        .caa_identities
        .iter()
        .flatten()
        .enumerate()
        .map(|(index, value)| {
            let domain = value.get_ref().trim().trim_end_matches('.');
            let valid = !domain.is_empty()
                && domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if valid {
                Ok(domain.to_ascii_lowercase())
            } else {
                Err(cx.error(
                    value.span(),
                    format!("{}[{index}]", key("caa_identities")),
                    format!(
                        "{:?} is not a domain name; write the issuer domain CAA records name \
                         the CA by, e.g. \"letsencrypt.org\"",
                        value.get_ref()
                    ),
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let max_concurrent_orders =
        max_concurrent_orders(raw.max_concurrent_orders.as_ref(), &key, cx)?;
    Ok(AcmeConfig {
        directory,
        dry_run_directory,
        contact,
        ca_file,
        eab,
        poll_timeout,
        preflight_resolver,
        caa_identities,
        max_concurrent_orders,
    })
}

/// Every `[[certificate]]`, with unique names.
pub(crate) fn certificates(
    raw: Vec<Spanned<RawCertificate>>,
    known_cas: &[&str],
    cx: &Context<'_>,
) -> Result<Vec<CertificateConfig>, ConfigError> {
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    let mut certificates = Vec::with_capacity(raw.len());
    for (index, raw_certificate) in raw.into_iter().enumerate() {
        let prefix = format!("certificate[{index}]");
        let name_span = raw_certificate.get_ref().name.span();
        let certificate = certificate(raw_certificate.into_inner(), known_cas, &prefix, cx)?;
        if let Some((first_index, first_offset)) = seen.get(&certificate.name) {
            return Err(cx.error(
                name_span,
                join(Some(&prefix), "name"),
                format!(
                    "duplicate certificate name {:?}, also used by certificate[{first_index}] \
                     (line {}); names must be unique",
                    certificate.name,
                    cx.line_of(*first_offset)
                ),
            ));
        }
        seen.insert(certificate.name.clone(), (index, name_span.start));
        certificates.push(certificate);
    }
    Ok(certificates)
}

fn certificate(
    raw: RawCertificate,
    known_cas: &[&str],
    prefix: &str,
    cx: &Context<'_>,
) -> Result<CertificateConfig, ConfigError> {
    let key = |name: &str| join(Some(prefix), name);
    let name = raw.name.get_ref().clone();
    if !is_safe_name(&name) {
        return Err(cx.error(
            raw.name.span(),
            key("name"),
            format!(
                "{name:?} cannot be a directory name; use letters, digits, '.', '_' or '-', \
                 not starting with '.'"
            ),
        ));
    }
    cx.non_empty(
        &raw.dns_names,
        key("dns_names"),
        "empty list; name at least one DNS name or IP address, e.g. [\"www.example.com\"]",
    )?;
    let identifiers = each_entry(raw.dns_names.get_ref(), &key("dns_names"), cx, identifier)?;
    let algorithm = cx.parsed_or(raw.key.as_ref(), key("key"), KeyAlgorithm::EcdsaP256)?;
    let duration = match &raw.duration {
        None => DEFAULT_DURATION,
        Some(value) if value.get_ref().0 < Duration::from_secs(1) => {
            return Err(cx.error(
                value.span(),
                key("duration"),
                "duration must be at least 1s; Let's Encrypt issues 90d".to_owned(),
            ));
        }
        Some(value) => value.get_ref().0,
    };
    let renew_before = renew_before(&raw, duration, prefix, cx)?;
    let env = hook_env(raw.env.as_ref(), raw.env_passthrough.as_ref(), prefix, cx)?;
    let challenge = challenge(&raw.challenge, &key("challenge"), &env, cx)?;
    // http-01 and tls-alpn-01 validate one host, never a wildcard; dns-01 can.
    let wildcard = raw
        .dns_names
        .get_ref()
        .iter()
        .enumerate()
        .find(|(_, value)| value.get_ref().starts_with("*."));
    if let (Some((index, value)), false) = (wildcard, matches!(challenge, ChallengeSpec::Dns01(_)))
    {
        return Err(cx.error(
            value.span(),
            format!("{}[{index}]", key("dns_names")),
            "wildcard names can only be validated with dns-01; set challenge = { type = \
             \"dns-01\", ... } or list the names instead"
                .to_owned(),
        ));
    }
    if matches!(challenge, ChallengeSpec::Dns01(_)) {
        if let Some(index) = identifiers
            .iter()
            .position(|identifier| matches!(identifier, Identifier::Ip(_)))
        {
            return Err(cx.error(
                raw.dns_names.get_ref()[index].span(),
                format!("{}[{index}]", key("dns_names")),
                "dns-01 cannot validate an IP address; use http-01 or tls-alpn-01 for it"
                    .to_owned(),
            ));
        }
    }
    let deploy = each_entry(&raw.deploy, &key("deploy"), cx, |command| {
        if command.trim().is_empty() {
            Err("empty command; write a shell command or remove the entry")
        } else {
            Ok(command.to_owned())
        }
    })?;
    let deploy_timeout = cx.timeout(
        raw.deploy_timeout.as_ref(),
        key("deploy_timeout"),
        DEFAULT_DEPLOY_TIMEOUT,
    )?;
    let history = cx.at_least(
        raw.history.as_ref(),
        key("history"),
        (2, DEFAULT_HISTORY),
        |written| {
            format!("{written} is too few; keep at least 2 versions so a rollback has a target")
        },
    )?;
    let profile = match &raw.profile {
        Some(value) if value.get_ref().trim().is_empty() => {
            return Err(cx.error(
                value.span(),
                key("profile"),
                "empty profile; name one your CA offers (e.g. \"shortlived\") or remove the key"
                    .to_owned(),
            ));
        }
        Some(value) => Some(value.get_ref().clone()),
        None => None,
    };
    let verify = verify_targets::verify_targets(&raw.verify, prefix, cx)?;
    let verify_timeout = cx.timeout(
        raw.verify_timeout.as_ref(),
        key("verify_timeout"),
        verify_targets::DEFAULT_VERIFY_TIMEOUT,
    )?;
    let (ca, ca_failover_after) = ca_choice(&raw, known_cas, prefix, cx)?;
    Ok(CertificateConfig {
        name,
        identifiers,
        key: algorithm,
        duration,
        renew_before,
        challenge,
        deploy,
        deploy_timeout,
        env,
        history,
        profile,
        verify,
        verify_timeout,
        on_verify_failure: raw.on_verify_failure.unwrap_or_default(),
        ca,
        ca_failover_after,
    })
}

/// `renew_before` or `renew_before_percentage` (not both), checked against `duration`.
fn renew_before(
    raw: &RawCertificate,
    duration: Duration,
    prefix: &str,
    cx: &Context<'_>,
) -> Result<RenewBefore, ConfigError> {
    let key = |name: &str| join(Some(prefix), name);
    let (policy, span, name) = match (&raw.renew_before, &raw.renew_before_percentage) {
        (Some(_), Some(percentage)) => {
            return Err(cx.error(
                percentage.span(),
                key("renew_before_percentage"),
                "set renew_before or renew_before_percentage, not both".to_owned(),
            ));
        }
        (Some(value), None) => (
            RenewBefore::Duration(value.get_ref().0),
            value.span(),
            "renew_before",
        ),
        (None, Some(value)) => {
            let percentage = *value.get_ref();
            if !(1..=99).contains(&percentage) {
                return Err(cx.error(
                    value.span(),
                    key("renew_before_percentage"),
                    format!(
                        "{percentage} is out of range; use a whole number from 1 to 99 \
                         (percent of the lifetime before expiry)"
                    ),
                ));
            }
            // A whole number from 1 to 99 converts exactly.
            (
                RenewBefore::Percentage(percentage as f64),
                value.span(),
                "renew_before_percentage",
            )
        }
        (None, None) => return Ok(RenewBefore::Default),
    };
    policy.validate(duration).map_err(|error| {
        let advice = match error {
            RenewBeforeError::RenewBeforeTooLong { .. } => {
                "; this is cert-manager's renewBefore rule: such a loop burns the CA's rate \
                 limits; shorten renew_before or lengthen duration"
            }
            RenewBeforeError::RenewBeforeZero => "; use e.g. renew_before = \"30d\"",
            _ => "",
        };
        cx.error(span, key(name), format!("{error}{advice}"))
    })?;
    Ok(policy)
}

/// Why an entry of `dns_names` is neither an IP address nor a DNS name.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}; write a DNS name or IP address")]
struct IdentifierError(#[source] NameError);

/// One entry of `dns_names`: an IP address, a DNS name or a `*.` wildcard.
/// Every entry of the list at `key`, read by `entry`; a refused entry is an error at
/// `key[index]` with `entry`'s reason.
fn each_entry<'v, T, E: std::fmt::Display>(
    list: impl IntoIterator<Item = &'v Spanned<String>>,
    key: &str,
    cx: &Context<'_>,
    entry: impl Fn(&str) -> Result<T, E>,
) -> Result<Vec<T>, ConfigError> {
    list.into_iter()
        .enumerate()
        .map(|(index, value)| {
            entry(value.get_ref()).map_err(|problem| {
                cx.error(value.span(), format!("{key}[{index}]"), problem.to_string())
            })
        })
        .collect()
}

fn identifier(text: &str) -> Result<Identifier, IdentifierError> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Identifier::Ip(ip));
    }
    let (wildcard, base) = match text.strip_prefix("*.") {
        Some(base) => (true, base),
        None => (false, text),
    };
    let name = parse_dns_name(base).map_err(IdentifierError)?;
    Ok(Identifier::Dns(if wildcard {
        format!("*.{name}")
    } else {
        name
    }))
}

fn https_url(value: &Spanned<String>, key: &str, cx: &Context<'_>) -> Result<String, ConfigError> {
    let text = value.get_ref().trim();
    match text.strip_prefix("https://") {
        Some(rest) if !rest.is_empty() => Ok(text.to_owned()),
        _ => Err(cx.error(
            value.span(),
            key.to_owned(),
            format!(
                "{text:?} is not an https:// URL; ACME directories are served over HTTPS, e.g. \
                 \"https://acme-v02.api.letsencrypt.org/directory\""
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_ip_addresses_dns_names_or_wildcards() {
        assert_eq!(
            identifier("127.0.0.1"),
            Ok(Identifier::Ip("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            identifier("WWW.Example.com."),
            Ok(Identifier::Dns("www.example.com".into()))
        );
        assert_eq!(
            identifier("*.example.com"),
            Ok(Identifier::Dns("*.example.com".into()))
        );
        assert!(identifier("a b.example").is_err());
        assert!(identifier("*.*.example").is_err());
    }
}
