//! Endpoint targets (`host:port`, `[::1]:port`, `https://host[:port][/path]`) and DNS names.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::config::invalid_input::InvalidInput;
use crate::config::model::{Host, Target};

/// A target string that could not be parsed. The message quotes the input and says what
/// to write instead.
pub type TargetError = InvalidInput<TargetProblem>;

/// What exactly is wrong with a target string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetProblem {
    /// Nothing was written.
    #[error("empty; write host:port, e.g. example.com:443")]
    Empty,
    /// `host` without `:port` in the plain form.
    #[error("no port; add a port, e.g. {host}:443")]
    NoPort {
        /// The host as written.
        host: String,
    },
    /// The port is not a number from 1 to 65535.
    #[error("invalid port {port:?} (use a number from 1 to 65535)")]
    BadPort {
        /// The port as written.
        port: String,
    },
    /// Nothing before the port.
    #[error("empty host; write host:port, e.g. example.com:443")]
    EmptyHost,
    /// The host is not a valid DNS name.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// An IPv6 literal without brackets.
    #[error("IPv6 addresses need brackets, e.g. [::1]:443")]
    UnbracketedIpv6,
    /// The text in brackets is not an IPv6 address.
    #[error("{inside:?} in brackets is not an IPv6 address")]
    BadIpv6 {
        /// The text between the brackets.
        inside: String,
    },
    /// Text after `]` that is not `:port`.
    #[error("expected :PORT after the closing bracket, e.g. [::1]:443")]
    AfterBracket,
    /// A URL scheme other than `https`.
    #[error(
        "unsupported scheme {scheme:?}; certinel probes TLS, write https://HOST[:PORT] or HOST:PORT"
    )]
    Scheme {
        /// The scheme as written.
        scheme: String,
    },
    /// `user@host` in a URL.
    #[error("user info (user@) is not allowed; write https://HOST[:PORT]")]
    UserInfo,
}

/// A host name that is not a valid DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// A character outside letters, digits, `-`, `_` and `.`.
    #[error("bad character {found:?} in host name {name:?} (use letters, digits, '-' and '.')")]
    BadCharacter {
        /// The name as written.
        name: String,
        /// The offending character.
        found: char,
    },
    /// An empty label (`a..b`, a leading dot).
    #[error("empty label in host name {name:?}")]
    EmptyLabel {
        /// The name as written.
        name: String,
    },
    /// A label longer than 63 bytes or a name longer than 253.
    #[error("host name {name:?} is too long (labels up to 63 characters, names up to 253)")]
    TooLong {
        /// The name as written.
        name: String,
    },
    /// A label that starts or ends with `-`.
    #[error("label {label:?} of host name {name:?} starts or ends with '-'")]
    Hyphen {
        /// The name as written.
        name: String,
        /// The offending label.
        label: String,
    },
    /// All-numeric like an IPv4 address, but not a valid one.
    #[error("{name:?} is not a valid IPv4 address")]
    BadIpv4 {
        /// The name as written.
        name: String,
    },
}

impl FromStr for Target {
    type Err = TargetError;

    /// Parses `host:port`, `1.2.3.4:port`, `[::1]:port` or `https://host[:port][/path]`
    /// (port 443 by default, the path is ignored). DNS names are lowercased.
    fn from_str(s: &str) -> Result<Target, TargetError> {
        parse_target(s).map_err(|problem| InvalidInput::new("target", s, problem))
    }
}

impl<'de> serde::Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(FromStrVisitor::<Target>::new(
            "a target such as \"example.com:443\" or \"https://example.com\"",
        ))
    }
}

/// Parses a DNS name (not an IP address), lowercased, without a trailing dot.
pub(crate) fn parse_dns_name(name: &str) -> Result<String, NameError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if let Some(found) = trimmed
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(NameError::BadCharacter {
            name: name.to_owned(),
            found,
        });
    }
    if trimmed.len() > 253 {
        return Err(NameError::TooLong {
            name: name.to_owned(),
        });
    }
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel {
                name: name.to_owned(),
            });
        }
        if label.len() > 63 {
            return Err(NameError::TooLong {
                name: name.to_owned(),
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameError::Hyphen {
                name: name.to_owned(),
                label: label.to_owned(),
            });
        }
    }
    // A name whose last label is numeric would be read as an IPv4 address by resolvers.
    let last_label = trimmed.rsplit('.').next().unwrap_or(trimmed);
    if last_label.chars().all(|c| c.is_ascii_digit()) {
        return Err(NameError::BadIpv4 {
            name: name.to_owned(),
        });
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// A serde visitor for string values parsed with [`FromStr`], whose error message becomes
/// the configuration error.
pub(crate) struct FromStrVisitor<T> {
    expecting: &'static str,
    marker: std::marker::PhantomData<T>,
}

impl<T> FromStrVisitor<T> {
    pub(crate) fn new(expecting: &'static str) -> Self {
        FromStrVisitor {
            expecting,
            marker: std::marker::PhantomData,
        }
    }
}

impl<T> serde::de::Visitor<'_> for FromStrVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

fn parse_target(s: &str) -> Result<Target, TargetProblem> {
    if s.is_empty() {
        return Err(TargetProblem::Empty);
    }
    match s.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => parse_url_authority(rest),
        Some((scheme, _)) => Err(TargetProblem::Scheme {
            scheme: scheme.to_owned(),
        }),
        None => parse_host_port(s, None),
    }
}

/// The part of an `https://` URL after the scheme; the path, query and fragment are ignored.
fn parse_url_authority(rest: &str) -> Result<Target, TargetProblem> {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if authority.contains('@') {
        return Err(TargetProblem::UserInfo);
    }
    parse_host_port(authority, Some(443))
}

/// `host:port`, `[v6]:port`, or (with a default port) `host` and `[v6]`.
fn parse_host_port(s: &str, default_port: Option<u16>) -> Result<Target, TargetProblem> {
    if let Some(after_bracket) = s.strip_prefix('[') {
        let Some((inside, after)) = after_bracket.split_once(']') else {
            return Err(TargetProblem::BadIpv6 {
                inside: after_bracket.to_owned(),
            });
        };
        let ip: Ipv6Addr = inside.parse().map_err(|_| TargetProblem::BadIpv6 {
            inside: inside.to_owned(),
        })?;
        let port = match (after.strip_prefix(':'), default_port) {
            (Some(port), _) => parse_port(port)?,
            (None, Some(port)) if after.is_empty() => port,
            (None, None) if after.is_empty() => {
                return Err(TargetProblem::NoPort {
                    host: format!("[{ip}]"),
                });
            }
            (None, _) => return Err(TargetProblem::AfterBracket),
        };
        return Ok(Target {
            host: Host::Ip(IpAddr::V6(ip)),
            port,
        });
    }
    let (host, port) = match (s.split_once(':'), default_port) {
        (Some((_, after)), _) if after.contains(':') => {
            return Err(TargetProblem::UnbracketedIpv6);
        }
        (Some((host, port)), _) => (host, parse_port(port)?),
        (None, Some(port)) => (s, port),
        (None, None) => {
            return Err(TargetProblem::NoPort { host: s.to_owned() });
        }
    };
    Ok(Target {
        host: parse_host(host)?,
        port,
    })
}

fn parse_host(host: &str) -> Result<Host, TargetProblem> {
    if host.is_empty() {
        return Err(TargetProblem::EmptyHost);
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    Ok(Host::Name(parse_dns_name(host)?))
}

/// A port is decimal digits only: `u16::from_str` would also take a sign (`+443`).
fn parse_port(port: &str) -> Result<u16, TargetProblem> {
    if port.is_empty() || !port.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(TargetProblem::BadPort {
            port: port.to_owned(),
        });
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(TargetProblem::BadPort {
            port: port.to_owned(),
        }),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::invalid_input::{parsed, refusal};

    fn ok(s: &str) -> Target {
        parsed(s, str::parse)
    }

    fn err(s: &str) -> String {
        refusal(s, str::parse::<Target>)
    }

    fn name(host: &str, port: u16) -> Target {
        Target {
            host: Host::Name(host.to_owned()),
            port,
        }
    }

    fn ip(addr: &str, port: u16) -> Target {
        Target {
            host: Host::Ip(addr.parse().unwrap()),
            port,
        }
    }

    #[test]
    fn plain_forms_parse() {
        assert_eq!(ok("example.com:443"), name("example.com", 443));
        assert_eq!(ok("Mail.Example.COM:25"), name("mail.example.com", 25));
        assert_eq!(ok("localhost:8443"), name("localhost", 8443));
        assert_eq!(ok("192.0.2.1:993"), ip("192.0.2.1", 993));
        assert_eq!(ok("[::1]:443"), ip("::1", 443));
        assert_eq!(ok("[2001:db8::1]:65535"), ip("2001:db8::1", 65535));
    }

    #[test]
    fn https_urls_default_to_port_443_and_ignore_the_path() {
        assert_eq!(ok("https://example.com"), name("example.com", 443));
        assert_eq!(ok("HTTPS://Example.com/"), name("example.com", 443));
        assert_eq!(
            ok("https://example.com:8443/a/b?c#d"),
            name("example.com", 8443)
        );
        assert_eq!(ok("https://[::1]/health"), ip("::1", 443));
        assert_eq!(ok("https://[::1]:9443"), ip("::1", 9443));
        assert_eq!(ok("https://127.0.0.1?x"), ip("127.0.0.1", 443));
    }

    #[test]
    fn display_round_trips() {
        for s in ["example.com:443", "192.0.2.1:993", "[2001:db8::1]:443"] {
            assert_eq!(ok(s).to_string(), s);
        }
    }

    #[test]
    fn missing_port_suggests_one() {
        assert_eq!(
            err("example.com"),
            r#"invalid target "example.com": no port; add a port, e.g. example.com:443"#
        );
        assert_eq!(
            err("[::1]"),
            r#"invalid target "[::1]": no port; add a port, e.g. [::1]:443"#
        );
    }

    #[test]
    fn out_of_range_ports_are_rejected() {
        for port in [
            "0", "65536", "99999", "", "https", "-1", "+443", " 443", "443 ",
        ] {
            assert_eq!(
                err(&format!("example.com:{port}")),
                format!(
                    r#"invalid target "example.com:{port}": invalid port "{port}" (use a number from 1 to 65535)"#
                )
            );
        }
    }

    #[test]
    fn a_signed_port_is_rejected_in_every_form() {
        assert_eq!(
            err("example.com:+443"),
            r#"invalid target "example.com:+443": invalid port "+443" (use a number from 1 to 65535)"#
        );
        assert!(err("[::1]:+443").contains(r#"invalid port "+443""#));
        assert!(err("https://example.com:+443/").contains(r#"invalid port "+443""#));
    }

    #[test]
    fn empty_input_and_empty_host_are_rejected() {
        assert_eq!(
            err(""),
            r#"invalid target "": empty; write host:port, e.g. example.com:443"#
        );
        assert_eq!(
            err(":443"),
            r#"invalid target ":443": empty host; write host:port, e.g. example.com:443"#
        );
        assert_eq!(
            err("https://:443"),
            r#"invalid target "https://:443": empty host; write host:port, e.g. example.com:443"#
        );
    }

    #[test]
    fn bad_dns_names_are_rejected() {
        assert_eq!(
            err("exa mple.com:443"),
            r#"invalid target "exa mple.com:443": bad character ' ' in host name "exa mple.com" (use letters, digits, '-' and '.')"#
        );
        assert_eq!(
            err("a..b:443"),
            r#"invalid target "a..b:443": empty label in host name "a..b""#
        );
        assert_eq!(
            err("-a.example:443"),
            r#"invalid target "-a.example:443": label "-a" of host name "-a.example" starts or ends with '-'"#
        );
        assert_eq!(
            err("1.2.3.256:443"),
            r#"invalid target "1.2.3.256:443": "1.2.3.256" is not a valid IPv4 address"#
        );
        let long_label = "a".repeat(64);
        assert!(err(&format!("{long_label}.example:443")).contains("too long"));
    }

    #[test]
    fn other_schemes_are_rejected() {
        assert_eq!(
            err("http://example.com"),
            r#"invalid target "http://example.com": unsupported scheme "http"; certinel probes TLS, write https://HOST[:PORT] or HOST:PORT"#
        );
        assert!(err("smtp://mail.example.com:25").contains(r#"scheme "smtp""#));
    }

    #[test]
    fn ipv6_needs_brackets() {
        assert_eq!(
            err("::1:443"),
            r#"invalid target "::1:443": IPv6 addresses need brackets, e.g. [::1]:443"#
        );
        assert_eq!(
            err("[::g]:443"),
            r#"invalid target "[::g]:443": "::g" in brackets is not an IPv6 address"#
        );
        assert_eq!(
            err("[::1]443"),
            r#"invalid target "[::1]443": expected :PORT after the closing bracket, e.g. [::1]:443"#
        );
    }

    #[test]
    fn user_info_is_rejected() {
        assert!(err("https://user@example.com").contains("user info"));
    }

    #[test]
    fn dns_names_lose_the_trailing_dot() {
        assert_eq!(parse_dns_name("Example.COM.").unwrap(), "example.com");
    }
}
