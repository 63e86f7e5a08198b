//! Entries of the `/probe` allow-list: CIDR networks, addresses and host name patterns.

use std::net::IpAddr;
use std::str::FromStr;

use crate::config::invalid_input::InvalidInput;
use crate::config::model::AllowRule;
use crate::config::target::{NameError, parse_dns_name};

/// An allow-list entry that could not be parsed.
pub type AllowRuleError = InvalidInput<AllowRuleProblem>;

/// What exactly is wrong with an allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllowRuleProblem {
    /// The part before `/` is not an IP address.
    #[error("{address:?} is not an IP address (write a network such as 10.0.0.0/8)")]
    BadAddress {
        /// The address as written.
        address: String,
    },
    /// The prefix is not a number or too long for the address family.
    #[error("prefix /{prefix} is not valid for {family} (use 0 to {max})")]
    BadPrefix {
        /// The prefix as written.
        prefix: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The longest prefix of the family.
        max: u8,
    },
    /// Bits below the prefix are set, so the entry probably does not mean what it says.
    #[error("host bits are set; write {network}/{prefix}")]
    HostBits {
        /// The network address with the host bits cleared.
        network: IpAddr,
        /// The prefix length.
        prefix: u8,
    },
    /// A `*` anywhere but as the whole first label.
    #[error("a wildcard may only be the first label, e.g. *.internal.example")]
    Wildcard,
    /// The name is not a valid DNS name.
    #[error(transparent)]
    BadName(#[from] NameError),
}

impl FromStr for AllowRule {
    type Err = AllowRuleError;

    /// Parses `10.0.0.0/8`, `::1/128`, a bare address (a single-host network), a host name
    /// (`localhost`) or a wildcard pattern (`*.internal.example`). Names are lowercased.
    fn from_str(s: &str) -> Result<AllowRule, AllowRuleError> {
        parse_rule(s).map_err(|problem| InvalidInput::new("allow rule", s, problem))
    }
}

/// The default `/probe` allow-list: loopback only.
pub(crate) fn loopback_only() -> Vec<AllowRule> {
    vec![
        AllowRule::Cidr {
            network: IpAddr::from([127, 0, 0, 0]),
            prefix: 8,
        },
        AllowRule::Cidr {
            network: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            prefix: 128,
        },
        AllowRule::HostPattern("localhost".to_owned()),
    ]
}

fn parse_rule(s: &str) -> Result<AllowRule, AllowRuleProblem> {
    if let Some((address, prefix)) = s.split_once('/') {
        let network: IpAddr = address.parse().map_err(|_| AllowRuleProblem::BadAddress {
            address: address.to_owned(),
        })?;
        return parse_network(network, prefix);
    }
    if let Ok(address) = s.parse::<IpAddr>() {
        let prefix = max_prefix(address);
        return Ok(AllowRule::Cidr {
            network: address,
            prefix,
        });
    }
    let (wildcard, name) = match s.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if name.contains('*') {
        return Err(AllowRuleProblem::Wildcard);
    }
    let name = parse_dns_name(name)?;
    Ok(AllowRule::HostPattern(if wildcard {
        format!("*.{name}")
    } else {
        name
    }))
}

fn parse_network(network: IpAddr, prefix: &str) -> Result<AllowRule, AllowRuleProblem> {
    let max = max_prefix(network);
    let bad_prefix = || AllowRuleProblem::BadPrefix {
        prefix: prefix.to_owned(),
        family: if network.is_ipv4() { "IPv4" } else { "IPv6" },
        max,
    };
    // Only plain decimal digits: `u8::from_str` would also accept "+8".
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad_prefix());
    }
    let prefix_len: u8 = prefix.parse().map_err(|_| bad_prefix())?;
    if prefix_len > max {
        return Err(bad_prefix());
    }
    let masked = mask(network, prefix_len);
    if masked != network {
        return Err(AllowRuleProblem::HostBits {
            network: masked,
            prefix: prefix_len,
        });
    }
    Ok(AllowRule::Cidr {
        network,
        prefix: prefix_len,
    })
}

fn max_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `address` with every bit after the first `prefix` bits cleared.
fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = bits.checked_shr(32 - u32::from(prefix)).unwrap_or(0);
            let cleared = kept.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from(cleared.to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = bits.checked_shr(128 - u32::from(prefix)).unwrap_or(0);
            let cleared = kept.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from(cleared.to_be_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::invalid_input::{parsed, refusal};

    fn ok(s: &str) -> AllowRule {
        parsed(s, str::parse)
    }

    fn err(s: &str) -> String {
        refusal(s, str::parse::<AllowRule>)
    }

    fn cidr(network: &str, prefix: u8) -> AllowRule {
        AllowRule::Cidr {
            network: network.parse().unwrap(),
            prefix,
        }
    }

    #[test]
    fn networks_parse() {
        assert_eq!(ok("127.0.0.0/8"), cidr("127.0.0.0", 8));
        assert_eq!(ok("0.0.0.0/0"), cidr("0.0.0.0", 0));
        assert_eq!(ok("::1/128"), cidr("::1", 128));
        assert_eq!(ok("fd00::/8"), cidr("fd00::", 8));
    }

    #[test]
    fn bare_addresses_are_single_host_networks() {
        assert_eq!(ok("192.0.2.7"), cidr("192.0.2.7", 32));
        assert_eq!(ok("2001:db8::7"), cidr("2001:db8::7", 128));
    }

    #[test]
    fn names_and_wildcards_parse_lowercased() {
        assert_eq!(ok("localhost"), AllowRule::HostPattern("localhost".into()));
        assert_eq!(
            ok("*.Internal.Example"),
            AllowRule::HostPattern("*.internal.example".into())
        );
    }

    #[test]
    fn bad_prefixes_say_the_valid_range() {
        assert_eq!(
            err("10.0.0.0/33"),
            r#"invalid allow rule "10.0.0.0/33": prefix /33 is not valid for IPv4 (use 0 to 32)"#
        );
        assert_eq!(
            err("::/129"),
            r#"invalid allow rule "::/129": prefix /129 is not valid for IPv6 (use 0 to 128)"#
        );
        assert!(err("10.0.0.0/").contains("prefix / is not valid"));
        assert!(err("10.0.0.0/+8").contains("prefix /+8 is not valid"));
    }

    #[test]
    fn host_bits_suggest_the_network() {
        assert_eq!(
            err("10.1.2.3/8"),
            r#"invalid allow rule "10.1.2.3/8": host bits are set; write 10.0.0.0/8"#
        );
        assert_eq!(
            err("2001:db8::1/32"),
            r#"invalid allow rule "2001:db8::1/32": host bits are set; write 2001:db8::/32"#
        );
    }

    #[test]
    fn bad_addresses_and_wildcards_are_rejected() {
        assert!(err("10.0.0/8").contains(r#""10.0.0" is not an IP address"#));
        assert!(err("a.*.example").contains("wildcard"));
        assert!(err("*").contains("wildcard"));
        assert!(err("bad name").contains("bad character ' '"));
    }
}
