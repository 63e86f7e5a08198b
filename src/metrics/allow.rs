//! The `/probe` allow-list: which targets an HTTP caller may make certinel connect to.
//! Pure: resolution happens in the caller, between [`precheck`] and [`check_addresses`].
//!
//! The rule, in order:
//! 1. An IP literal is allowed when it falls inside a network (CIDR) rule.
//! 2. A name is resolved only when a host-name rule (`db.example.com`, or `*.example.com`
//!    for one or more labels) matches it; any other name is refused before any lookup, so
//!    an HTTP caller cannot make certinel ask DNS about names nobody authorised.
//! 3. Every address a matched name resolves to must fall inside a network rule too (no
//!    name is exempt, `localhost` included); the probe then connects to exactly those
//!    checked addresses, so a second, different DNS answer cannot slip past the check.
//! 4. Everything else is refused with 403 before any connection is made.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are judged as the IPv4 address they
//! carry. A name a resolver would read as an IPv4 address (`0x7f.0x1`) is refused.

use std::net::IpAddr;

use crate::config::model::{AllowRule, Host};

/// What the allow-list says about a target before any network I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precheck {
    /// An address inside a network rule: probe it.
    Allowed,
    /// A name a host-name rule matched: resolve it, then [`check_addresses`].
    Resolve,
    /// Refuse it; the text says why, in one line.
    Denied(String),
}

/// Why `/probe` refuses a target: the one line of its 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// [`precheck`] denied the target before any lookup.
    #[error("{0}")]
    Denied(String),
    /// The name resolved to nothing.
    #[error("name {name} resolved to no address")]
    NoAddress {
        /// The name.
        name: String,
    },
    /// The name resolved to an address outside every network rule.
    #[error("name {name} resolves to {ip}, which is not in the /probe allow-list")]
    OutsideTheList {
        /// The name.
        name: String,
        /// The first address outside the list.
        ip: IpAddr,
    },
}

/// The allow-list's verdict on `host` before resolution.
pub fn precheck(host: &Host, rules: &[AllowRule]) -> Precheck {
    match host {
        Host::Ip(ip) => {
            if ip_allowed(*ip, rules) {
                Precheck::Allowed
            } else {
                Precheck::Denied(format!("address {ip} is not in the /probe allow-list"))
            }
        }
        Host::Name(name) if reads_as_ipv4(name) => Precheck::Denied(format!(
            "name {name} would be read as an IPv4 address; write the address in dotted decimal"
        )),
        Host::Name(name) => {
            let matched = rules.iter().any(|rule| match rule {
                AllowRule::HostPattern(pattern) => host_pattern_matches(pattern, name),
                AllowRule::Cidr { .. } => false,
            });
            if matched {
                Precheck::Resolve
            } else {
                Precheck::Denied(format!(
                    "name {name} matches no host name in the /probe allow-list"
                ))
            }
        }
    }
}

/// Every resolved address of a name must fall inside a network rule.
pub fn check_addresses(
    name: &str,
    addresses: &[IpAddr],
    rules: &[AllowRule],
) -> Result<(), Refusal> {
    if addresses.is_empty() {
        return Err(Refusal::NoAddress {
            name: name.to_owned(),
        });
    }
    match addresses.iter().find(|ip| !ip_allowed(**ip, rules)) {
        Some(ip) => Err(Refusal::OutsideTheList {
            name: name.to_owned(),
            ip: *ip,
        }),
        None => Ok(()),
    }
}

/// `ip` falls inside one of the CIDR rules.
pub fn ip_allowed(ip: IpAddr, rules: &[AllowRule]) -> bool {
    let ip = ip.to_canonical();
    rules.iter().any(|rule| match rule {
        AllowRule::Cidr { network, prefix } => cidr_contains(network.to_canonical(), *prefix, ip),
        AllowRule::HostPattern(_) => false,
    })
}

/// `pattern` (exact, or `*.suffix` for one or more labels) matches `name`, ignoring ASCII
/// case and a trailing dot.
pub fn host_pattern_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .strip_suffix(suffix)
            .and_then(|prefix| prefix.strip_suffix('.'))
            .is_some_and(|labels| !labels.is_empty() && !labels.starts_with('.')),
        None => name == pattern,
    }
}

/// One to four labels, each a decimal, octal or `0x` hexadecimal number: the forms
/// `inet_aton` (and so the system resolver) accepts as an IPv4 address.
fn reads_as_ipv4(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() <= 4
        && labels.iter().all(|label| {
            let hex = label
                .strip_prefix("0x")
                .or_else(|| label.strip_prefix("0X"));
            match hex {
                Some(digits) => digits.chars().all(|c| c.is_ascii_hexdigit()),
                None => !label.is_empty() && label.chars().all(|c| c.is_ascii_digit()),
            }
        })
}

fn cidr_contains(network: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (network, ip) {
        (IpAddr::V4(network), IpAddr::V4(ip)) => {
            masked(u32::from(network).into(), 32, prefix)
                == masked(u32::from(ip).into(), 32, prefix)
        }
        (IpAddr::V6(network), IpAddr::V6(ip)) => {
            masked(u128::from(network), 128, prefix) == masked(u128::from(ip), 128, prefix)
        }
        _ => false,
    }
}

/// The top `prefix` bits of a `width`-bit address.
fn masked(bits: u128, width: u32, prefix: u8) -> u128 {
    let prefix = u32::from(prefix).min(width);
    if prefix == 0 {
        return 0;
    }
    let shift = width - prefix;
    bits >> shift
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> AllowRule {
        let (network, prefix) = text.split_once('/').unwrap();
        AllowRule::Cidr {
            network: network.parse().unwrap(),
            prefix: prefix.parse().unwrap(),
        }
    }

    fn loopback() -> Vec<AllowRule> {
        vec![cidr("127.0.0.0/8"), cidr("::1/128")]
    }

    fn ip(text: &str) -> Host {
        Host::Ip(text.parse().unwrap())
    }

    #[test]
    fn loopback_addresses_pass_and_others_are_denied_by_the_default_list() {
        assert_eq!(precheck(&ip("127.0.0.1"), &loopback()), Precheck::Allowed);
        assert_eq!(precheck(&ip("127.255.0.9"), &loopback()), Precheck::Allowed);
        assert_eq!(precheck(&ip("::1"), &loopback()), Precheck::Allowed);
        assert_eq!(
            precheck(&ip("::ffff:127.0.0.1"), &loopback()),
            Precheck::Allowed
        );
        assert!(matches!(
            precheck(&ip("128.0.0.1"), &loopback()),
            Precheck::Denied(_)
        ));
        assert!(matches!(
            precheck(&ip("10.0.0.1"), &loopback()),
            Precheck::Denied(_)
        ));
        assert!(matches!(
            precheck(&ip("::2"), &loopback()),
            Precheck::Denied(_)
        ));
    }

    #[test]
    fn cidr_prefixes_cut_at_the_right_bit() {
        let rules = vec![cidr("10.1.0.0/17"), cidr("fd00::/8"), cidr("192.0.2.7/32")];
        assert!(ip_allowed("10.1.127.255".parse().unwrap(), &rules));
        assert!(!ip_allowed("10.1.128.0".parse().unwrap(), &rules));
        assert!(ip_allowed("fdff::1".parse().unwrap(), &rules));
        assert!(!ip_allowed("fe00::1".parse().unwrap(), &rules));
        assert!(ip_allowed("192.0.2.7".parse().unwrap(), &rules));
        assert!(!ip_allowed("192.0.2.8".parse().unwrap(), &rules));
        assert!(ip_allowed("8.8.8.8".parse().unwrap(), &[cidr("0.0.0.0/0")]));
    }

    #[test]
    fn host_patterns_match_exact_names_and_one_or_more_wildcard_labels() {
        assert!(host_pattern_matches("db.example.com", "DB.example.com."));
        assert!(!host_pattern_matches("db.example.com", "x.db.example.com"));
        assert!(host_pattern_matches("*.example.com", "a.example.com"));
        assert!(host_pattern_matches("*.example.com", "a.b.example.com"));
        assert!(!host_pattern_matches("*.example.com", "example.com"));
        assert!(!host_pattern_matches("*.example.com", "badexample.com"));
        assert!(!host_pattern_matches("*.example.com", ".example.com"));
    }

    #[test]
    fn names_matched_by_a_pattern_are_resolved_then_checked() {
        let mut rules = loopback();
        rules.push(AllowRule::HostPattern("*.internal.test".to_owned()));
        let name = Host::Name("api.internal.test".to_owned());
        assert_eq!(precheck(&name, &rules), Precheck::Resolve);
        let inside = ["127.0.0.5".parse().unwrap()];
        assert_eq!(
            check_addresses("api.internal.test", &inside, &rules),
            Ok(())
        );
        let outside = ["10.1.2.3".parse().unwrap()];
        assert!(check_addresses("api.internal.test", &outside, &rules).is_err());
    }

    #[test]
    fn localhost_has_no_exemption_from_the_address_check() {
        let mut rules = loopback();
        rules.push(AllowRule::HostPattern("localhost".to_owned()));
        for spelling in ["localhost", "localhost.", "LOCALHOST"] {
            let name = Host::Name(spelling.to_owned());
            assert_eq!(precheck(&name, &rules), Precheck::Resolve, "{spelling}");
        }
        let metadata = ["169.254.169.254".parse().unwrap()];
        assert!(check_addresses("localhost", &metadata, &rules).is_err());
    }

    #[test]
    fn names_no_host_rule_matches_are_denied_before_resolution() {
        for name in ["localhost", "localhost.", "metadata.google.internal"] {
            let host = Host::Name(name.to_owned());
            assert!(
                matches!(precheck(&host, &loopback()), Precheck::Denied(_)),
                "{name}"
            );
        }
    }

    #[test]
    fn names_a_resolver_reads_as_ipv4_are_denied_even_when_a_pattern_matches() {
        let rules = vec![AllowRule::HostPattern("*.0x1".to_owned())];
        for name in ["0x7f.0x1", "0x7f000001", "127.0x1", "0X7F.0.0.0x1"] {
            let host = Host::Name(name.to_owned());
            assert!(
                matches!(precheck(&host, &rules), Precheck::Denied(reason) if reason.contains("IPv4")),
                "{name}"
            );
        }
        assert!(!reads_as_ipv4("0x7f.example"));
        assert!(!reads_as_ipv4("a.b.c.d.1"));
    }

    #[test]
    fn mapped_ipv6_is_judged_as_the_ipv4_address_it_carries() {
        assert!(matches!(
            precheck(&ip("::ffff:169.254.169.254"), &loopback()),
            Precheck::Denied(_)
        ));
    }

    #[test]
    fn every_address_of_a_name_must_be_allowed() {
        let loopbacks = ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(
            check_addresses("localhost", &loopbacks, &loopback()),
            Ok(())
        );
        let mixed = ["127.0.0.1".parse().unwrap(), "192.0.2.1".parse().unwrap()];
        assert!(check_addresses("mixed", &mixed, &loopback()).is_err());
        assert!(check_addresses("empty", &[], &loopback()).is_err());
    }

    #[test]
    fn names_are_denied_before_resolution_when_the_list_has_no_networks() {
        let rules = vec![AllowRule::HostPattern("only.test".to_owned())];
        let name = Host::Name("other.test".to_owned());
        assert!(matches!(precheck(&name, &rules), Precheck::Denied(_)));
        assert!(matches!(precheck(&name, &[]), Precheck::Denied(_)));
    }
}
