//! Deserializers for the small value types of the configuration: keyword enums, server
//! names and the listen address. Each error message lists what is allowed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::de::{Deserializer, Error, Visitor};

use crate::config::model::{IpFamily, OnVerifyFailure, ResolveMode, StartTls};
use crate::config::target::parse_dns_name;

/// An SNI / verification name: a DNS name (lowercased) or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerName(pub(crate) String);

/// The exporter's listen address, `IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenAddr(pub(crate) SocketAddr);

const STARTTLS: &[(&str, StartTls)] = &[
    ("smtp", StartTls::Smtp),
    ("imap", StartTls::Imap),
    ("pop3", StartTls::Pop3),
    ("ftp", StartTls::Ftp),
    ("ldap", StartTls::Ldap),
    ("postgres", StartTls::Postgres),
    ("mysql", StartTls::Mysql),
    ("xmpp", StartTls::Xmpp),
];

const IP_FAMILY: &[(&str, IpFamily)] = &[
    ("any", IpFamily::Any),
    ("ipv4", IpFamily::Ipv4),
    ("ipv6", IpFamily::Ipv6),
];

const RESOLVE: &[(&str, ResolveMode)] = &[("all", ResolveMode::All), ("first", ResolveMode::First)];

const ON_VERIFY_FAILURE: &[(&str, OnVerifyFailure)] = &[
    ("rollback", OnVerifyFailure::Rollback),
    ("keep", OnVerifyFailure::Keep),
];

/// A keyword that is not one of the allowed words; its message lists them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {word:?}; use one of: {allowed}")]
pub struct KeywordError {
    what: &'static str,
    word: String,
    allowed: String,
}

fn parse_keyword<T: Copy>(
    what: &'static str,
    table: &[(&str, T)],
    word: &str,
) -> Result<T, KeywordError> {
    table
        .iter()
        .find(|(name, _)| *name == word)
        .map(|(_, value)| *value)
        .ok_or_else(|| KeywordError {
            what,
            word: word.to_owned(),
            allowed: table
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

impl std::str::FromStr for StartTls {
    type Err = KeywordError;

    /// `smtp`, `imap`, `pop3`, `ftp`, `ldap`, `postgres`, `mysql` or `xmpp`.
    fn from_str(word: &str) -> Result<StartTls, KeywordError> {
        parse_keyword("starttls protocol", STARTTLS, word)
    }
}

impl std::str::FromStr for IpFamily {
    type Err = KeywordError;

    /// `any`, `ipv4` or `ipv6`.
    fn from_str(word: &str) -> Result<IpFamily, KeywordError> {
        parse_keyword("ip_family", IP_FAMILY, word)
    }
}

/// Implements `Deserialize` for keyword enums through their tables; `what` names the
/// value in the error for an unknown word.
macro_rules! deserialize_keywords {
    ($($keyword:ty => $what:literal, $table:expr;)+) => {$(
        impl<'de> serde::Deserialize<'de> for $keyword {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(KeywordVisitor {
                    what: $what,
                    table: $table,
                })
            }
        }
    )+};
}

deserialize_keywords! {
    StartTls => "starttls protocol", STARTTLS;
    IpFamily => "ip_family", IP_FAMILY;
    ResolveMode => "resolve mode", RESOLVE;
    OnVerifyFailure => "on_verify_failure", ON_VERIFY_FAILURE;
}

impl<'de> serde::Deserialize<'de> for ServerName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expecting = "a server name such as \"example.com\"";
        deserializer.deserialize_str(ParsedVisitor(expecting, ServerName::parse))
    }
}

impl<'de> serde::Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expecting = "a listen address such as \"127.0.0.1:9798\"";
        deserializer.deserialize_str(ParsedVisitor(expecting, ListenAddr::parse))
    }
}

impl ServerName {
    fn parse(v: &str) -> Result<ServerName, String> {
        if let Ok(ip) = v.parse::<IpAddr>() {
            return Ok(ServerName(ip.to_string()));
        }
        parse_dns_name(v)
            .map(ServerName)
            .map_err(|e| format!("invalid server name: {e}"))
    }
}

impl ListenAddr {
    fn parse(v: &str) -> Result<ListenAddr, String> {
        v.parse().map(ListenAddr).map_err(|_| {
            format!(
                "invalid listen address {v:?} (write IP:PORT, e.g. 127.0.0.1:9798 or [::1]:9798)"
            )
        })
    }
}

/// Reads a string through a parser whose error is the message; the first field says what
/// is expected.
struct ParsedVisitor<T>(&'static str, fn(&str) -> Result<T, String>);

impl<T> Visitor<'_> for ParsedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<T, E> {
        (self.1)(v).map_err(E::custom)
    }
}

/// Reads one of a fixed set of lowercase words.
struct KeywordVisitor<T: 'static> {
    what: &'static str,
    table: &'static [(&'static str, T)],
}

impl<T: Copy + 'static> Visitor<'_> for KeywordVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} ({})", self.what, allowed(self.table))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<T, E> {
        match self.table.iter().find(|(word, _)| *word == v) {
            Some((_, value)) => Ok(*value),
            None => Err(E::custom(format!(
                "unknown {} {v:?} (use {})",
                self.what,
                allowed(self.table)
            ))),
        }
    }
}

fn allowed<T>(table: &[(&str, T)]) -> String {
    let words: Vec<&str> = table.iter().map(|(word, _)| *word).collect();
    match words.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => words.join(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_values_read_as_a_list() {
        assert_eq!(allowed(RESOLVE), "all or first");
        assert_eq!(allowed(IP_FAMILY), "any, ipv4 or ipv6");
    }
}
