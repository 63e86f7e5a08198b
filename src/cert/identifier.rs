//! The names a certificate is requested for: DNS names and IP addresses.

use std::fmt;
use std::net::IpAddr;

/// A name a certificate is requested for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identifier {
    /// A DNS name, possibly a wildcard (`*.example.com`).
    Dns(String),
    /// An IP address (RFC 8738).
    Ip(IpAddr),
}

impl Identifier {
    /// Reads `text` as an IP address when it is one, as a DNS name otherwise.
    pub fn parse(text: &str) -> Self {
        match text.parse::<IpAddr>() {
            Ok(ip) => Self::Ip(ip),
            Err(_) => Self::Dns(text.to_ascii_lowercase()),
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => f.write_str(name),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_parse_tells_ip_addresses_from_dns_names() {
        assert_eq!(
            Identifier::parse("127.0.0.1"),
            Identifier::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            Identifier::parse("::1"),
            Identifier::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            Identifier::parse("WWW.Example.com"),
            Identifier::Dns("www.example.com".into())
        );
    }
}
