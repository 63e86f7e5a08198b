//! CAA decisions (RFC 8659, with RFC 8657's `accounturi` and `validationmethods`): which
//! names to look at, what an `issue` value says, and whether a relevant record set lets
//! this CA, this account and this challenge type issue. Pure: the lookups happen in
//! `preflight`.

use std::fmt;

/// One CAA record as found in DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CaaRecord {
    /// The issuer-critical flag (bit 128 of the flags byte).
    pub(crate) critical: bool,
    /// The property tag: `issue`, `issuewild`, `iodef`, or another.
    pub(crate) tag: String,
    /// The property value, as text.
    pub(crate) value: String,
}

impl fmt::Display for CaaRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = if self.critical { 128 } else { 0 };
        write!(f, "CAA {flags} {} \"{}\"", self.tag, self.value)
    }
}

/// What is asked of the records: who issues, to which account, validated how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CaaRequest<'a> {
    /// The identifier is a wildcard (`*.example.com`).
    pub(crate) wildcard: bool,
    /// The CA's issuer domain names (its `caaIdentities`), lower case.
    pub(crate) issuer_domains: &'a [String],
    /// This account's URL.
    pub(crate) account_uri: &'a str,
    /// The ACME challenge type that will validate: `http-01`, `dns-01`, `tls-alpn-01`.
    pub(crate) method: &'a str,
}

/// Why a relevant record set forbids the issuance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CaaDenial {
    /// No `issue`/`issuewild` record names one of the CA's issuer domains.
    IssuerNotAuthorised {
        /// The issuers the records do authorise (empty: no CA at all).
        authorised: Vec<String>,
    },
    /// Records name this CA, but each is bound to other accounts (`accounturi`).
    AccountNotAuthorised {
        /// The account URLs the records allow.
        allowed: Vec<String>,
    },
    /// Records name this CA for this account, but not with this challenge type
    /// (`validationmethods`).
    MethodNotAuthorised {
        /// The challenge types the records allow.
        allowed: Vec<String>,
    },
    /// A record with the critical flag and a tag certinel does not know: RFC 8659 forbids
    /// issuance then.
    UnknownCritical {
        /// The record's tag.
        tag: String,
    },
}

impl fmt::Display for CaaDenial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IssuerNotAuthorised { authorised } if authorised.is_empty() => {
                f.write_str("CAA forbids every CA (an empty issuer)")
            }
            Self::IssuerNotAuthorised { authorised } => write!(
                f,
                "CAA authorises only {}, not this CA",
                authorised.join(", ")
            ),
            Self::AccountNotAuthorised { allowed } => write!(
                f,
                "CAA binds this CA to other accounts (accounturi {})",
                allowed.join(", ")
            ),
            Self::MethodNotAuthorised { allowed } => write!(
                f,
                "CAA allows this CA only with validationmethods {}",
                allowed.join(", ")
            ),
            Self::UnknownCritical { tag } => {
                write!(f, "CAA has a critical record with unknown tag {tag:?}")
            }
        }
    }
}

/// The parsed value of an `issue` or `issuewild` record: `issuer-domain [; key=value]*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IssueValue {
    /// The issuer domain, lower case; `None` for an empty issuer (`";"`: no CA may issue).
    pub(crate) issuer: Option<String>,
    /// The parameters, keys lower case, in order.
    pub(crate) parameters: Vec<(String, String)>,
}

impl IssueValue {
    fn parameter(&self, key: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }
}

/// Parses an `issue`/`issuewild` value. Returns `None` for a malformed value, which
/// RFC 8659 says to treat as naming no issuer we know (so it authorises nobody of ours).
pub(crate) fn parse_issue_value(text: &str) -> Option<IssueValue> {
    let mut parts = text.split(';');
    let issuer = parts.next().unwrap_or_default().trim();
    let issuer = if issuer.is_empty() {
        None
    } else if issuer
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        Some(issuer.trim_end_matches('.').to_ascii_lowercase())
    } else {
        return None;
    };
    let mut parameters = Vec::new();
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (key, value) = part.split_once('=')?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        parameters.push((key.to_ascii_lowercase(), value.trim().to_owned()));
    }
    Some(IssueValue { issuer, parameters })
}

/// The names whose CAA record sets are looked at, in order, for `identifier`: the name
/// itself (for `*.example.com`, `example.com`), then each parent up to the top-level domain.
/// The first non-empty set is the relevant one.
pub(crate) fn names_to_climb(identifier: &str) -> Vec<String> {
    let name = identifier
        .strip_prefix("*.")
        .unwrap_or(identifier)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let mut names = Vec::new();
    let mut rest = name.as_str();
    while !rest.is_empty() {
        names.push(rest.to_owned());
        rest = rest.split_once('.').map_or("", |(_, parent)| parent);
    }
    names
}

/// Whether the relevant record set `records` lets this CA issue for the request. An empty
/// set, or one without `issue` records (and, for a wildcard, without `issuewild` ones), lets
/// any CA issue.
pub(crate) fn evaluate(records: &[CaaRecord], request: &CaaRequest<'_>) -> Result<(), CaaDenial> {
    if let Some(unknown) = records
        .iter()
        .find(|record| record.critical && !is_known_tag(&record.tag))
    {
        return Err(CaaDenial::UnknownCritical {
            tag: unknown.tag.clone(),
        });
    }
    let with_tag = |tag: &str| -> Vec<&CaaRecord> {
        records
            .iter()
            .filter(|record| record.tag.eq_ignore_ascii_case(tag))
            .collect()
    };
    let issuewild = with_tag("issuewild");
    let governing = if request.wildcard && !issuewild.is_empty() {
        issuewild
    } else {
        with_tag("issue")
    };
    if governing.is_empty() {
        return Ok(());
    }
    let values: Vec<IssueValue> = governing
        .iter()
        .filter_map(|record| parse_issue_value(&record.value))
        .collect();
    let ours: Vec<&IssueValue> = values
        .iter()
        .filter(|value| {
            value.issuer.as_ref().is_some_and(|issuer| {
                request
                    .issuer_domains
                    .iter()
                    .any(|domain| domain.eq_ignore_ascii_case(issuer))
            })
        })
        .collect();
    if ours.is_empty() {
        let mut authorised: Vec<String> = values
            .iter()
            .filter_map(|value| value.issuer.clone())
            .collect();
        authorised.dedup();
        return Err(CaaDenial::IssuerNotAuthorised { authorised });
    }
    let for_account: Vec<&&IssueValue> = ours
        .iter()
        .filter(|value| {
            value
                .parameter("accounturi")
                .is_none_or(|uri| uri == request.account_uri)
        })
        .collect();
    if for_account.is_empty() {
        return Err(CaaDenial::AccountNotAuthorised {
            allowed: ours
                .iter()
                .filter_map(|value| value.parameter("accounturi").map(str::to_owned))
                .collect(),
        });
    }
    let with_method = for_account.iter().any(|value| {
        value.parameter("validationmethods").is_none_or(|methods| {
            methods
                .split(',')
                .any(|method| method.trim().eq_ignore_ascii_case(request.method))
        })
    });
    if with_method {
        Ok(())
    } else {
        Err(CaaDenial::MethodNotAuthorised {
            allowed: for_account
                .iter()
                .filter_map(|value| value.parameter("validationmethods"))
                .flat_map(|methods| methods.split(','))
                .map(|method| method.trim().to_owned())
                .collect(),
        })
    }
}

fn is_known_tag(tag: &str) -> bool {
    ["issue", "issuewild", "iodef"]
        .iter()
        .any(|known| tag.eq_ignore_ascii_case(known))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "https://ca.test/acct/1";

    fn record(tag: &str, value: &str) -> CaaRecord {
        CaaRecord {
            critical: false,
            tag: tag.to_owned(),
            value: value.to_owned(),
        }
    }

    fn check(records: &[CaaRecord], wildcard: bool, method: &str) -> Result<(), CaaDenial> {
        let issuers = ["ca.test".to_owned(), "ca-alias.test".to_owned()];
        evaluate(
            records,
            &CaaRequest {
                wildcard,
                issuer_domains: &issuers,
                account_uri: ACCOUNT,
                method,
            },
        )
    }

    #[test]
    fn climbing_starts_below_a_wildcard_and_stops_at_the_top_level_domain() {
        assert_eq!(
            names_to_climb("*.www.Example.COM."),
            ["www.example.com", "example.com", "com"]
        );
        assert_eq!(names_to_climb("example.com"), ["example.com", "com"]);
    }

    #[test]
    fn issue_values_parse_issuer_and_parameters() {
        assert_eq!(
            parse_issue_value(
                " CA.test. ; accounturi=https://ca.test/acct/1 ;validationmethods=dns-01,http-01"
            ),
            Some(IssueValue {
                issuer: Some("ca.test".to_owned()),
                parameters: vec![
                    ("accounturi".to_owned(), ACCOUNT.to_owned()),
                    ("validationmethods".to_owned(), "dns-01,http-01".to_owned()),
                ],
            })
        );
        assert_eq!(
            parse_issue_value(";"),
            Some(IssueValue {
                issuer: None,
                parameters: vec![],
            })
        );
        assert_eq!(parse_issue_value("ca test"), None);
        assert_eq!(parse_issue_value("ca.test; novalue"), None);
    }

    #[test]
    fn an_empty_set_or_one_without_issue_records_allows_any_ca() {
        assert_eq!(check(&[], false, "http-01"), Ok(()));
        assert_eq!(
            check(
                &[record("iodef", "mailto:sec@example.com")],
                false,
                "http-01"
            ),
            Ok(())
        );
    }

    #[test]
    fn issue_records_must_name_one_of_the_ca_issuer_domains() {
        assert_eq!(
            check(&[record("issue", "ca-alias.test")], false, "http-01"),
            Ok(())
        );
        assert_eq!(
            check(
                &[record("issue", "other.test"), record("issue", "third.test")],
                false,
                "http-01"
            ),
            Err(CaaDenial::IssuerNotAuthorised {
                authorised: vec!["other.test".to_owned(), "third.test".to_owned()]
            })
        );
        assert_eq!(
            check(&[record("issue", ";")], false, "http-01"),
            Err(CaaDenial::IssuerNotAuthorised { authorised: vec![] })
        );
    }

    #[test]
    fn wildcards_follow_issuewild_when_present_and_issue_otherwise() {
        let records = [
            record("issue", "ca.test"),
            record("issuewild", "other.test"),
        ];
        assert!(check(&records, true, "dns-01").is_err());
        assert_eq!(check(&records, false, "dns-01"), Ok(()));
        assert_eq!(check(&[record("issue", "ca.test")], true, "dns-01"), Ok(()));
        // issuewild says nothing about non-wildcard names.
        assert_eq!(check(&[record("issuewild", ";")], false, "dns-01"), Ok(()));
    }

    #[test]
    fn accounturi_binds_the_ca_to_one_account() {
        let ours = format!("ca.test; accounturi={ACCOUNT}");
        assert_eq!(check(&[record("issue", &ours)], false, "http-01"), Ok(()));
        assert_eq!(
            check(
                &[record(
                    "issue",
                    "ca.test; accounturi=https://ca.test/acct/2"
                )],
                false,
                "http-01"
            ),
            Err(CaaDenial::AccountNotAuthorised {
                allowed: vec!["https://ca.test/acct/2".to_owned()]
            })
        );
    }

    #[test]
    fn validationmethods_limit_the_challenge_types() {
        let value = "ca.test; validationmethods=dns-01,tls-alpn-01";
        assert_eq!(
            check(&[record("issue", value)], false, "tls-alpn-01"),
            Ok(())
        );
        assert_eq!(
            check(&[record("issue", value)], false, "http-01"),
            Err(CaaDenial::MethodNotAuthorised {
                allowed: vec!["dns-01".to_owned(), "tls-alpn-01".to_owned()]
            })
        );
    }

    #[test]
    fn an_unknown_critical_tag_forbids_and_an_unknown_plain_one_is_ignored() {
        let mut critical = record("future", "x");
        critical.critical = true;
        assert_eq!(
            check(&[critical], false, "http-01"),
            Err(CaaDenial::UnknownCritical {
                tag: "future".to_owned()
            })
        );
        assert_eq!(check(&[record("future", "x")], false, "http-01"), Ok(()));
    }
}
