//! Waiting for dns-01 TXT records to propagate: finds the authoritative servers of the zone
//! that holds each record (through the lookup server), then polls every one of them until
//! each answers with all the values published there. The decisions are pure functions; the
//! loop around them does the queries.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use tokio::time::Instant;

use super::wire::WireError;
use super::{dns_error, poll_pause, wire};
use crate::acme::AcmeError;

/// Where authoritative servers answer unless a test overrides it.
const DNS_PORT: u16 = 53;

/// One server to ask about one name, and the TXT values it must answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Check {
    /// The server polled.
    pub(crate) server: SocketAddr,
    /// The record's name, absolute.
    pub(crate) fqdn: String,
    /// The values still expected there (every value published at `fqdn`).
    pub(crate) values: Vec<String>,
}

/// The checks for `published` `(fqdn, value)` records, each fqdn on its servers: every
/// value at one name is checked together, on every server of that name.
pub(crate) fn plan_checks(
    published: &[(String, String)],
    servers_of: &BTreeMap<String, Vec<SocketAddr>>,
) -> Vec<Check> {
    let mut values_at: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (fqdn, value) in published {
        values_at.entry(fqdn).or_default().insert(value);
    }
    let mut checks = Vec::new();
    for (fqdn, values) in values_at {
        for server in servers_of.get(fqdn).into_iter().flatten() {
            checks.push(Check {
                server: *server,
                fqdn: fqdn.to_owned(),
                values: values.iter().map(|value| (*value).to_owned()).collect(),
            });
        }
    }
    checks
}

/// What `check` still lacks after its server answered with the values `seen` (`None`:
/// the query failed): `None` when every value was there; otherwise the check narrowed to
/// the missing values (all of them when the query failed, since a failure proves nothing).
pub(crate) fn still_lacking(check: &Check, seen: Option<&[String]>) -> Option<Check> {
    let missing: Vec<String> = match seen {
        Some(seen) => check
            .values
            .iter()
            .filter(|value| !seen.contains(value))
            .cloned()
            .collect(),
        None => check.values.clone(),
    };
    (!missing.is_empty()).then(|| Check {
        values: missing,
        ..check.clone()
    })
}

/// The socket addresses to poll for name-server addresses `ips`: `port`, except that an
/// address of the lookup server itself is polled where the lookup server answers (the
/// RFC 2136 primary is usually one of the zone's name servers). Sorted, without repeats.
pub(crate) fn authoritative_addrs(
    ips: &[IpAddr],
    lookup: SocketAddr,
    port: u16,
) -> Vec<SocketAddr> {
    let addrs: BTreeSet<SocketAddr> = ips
        .iter()
        .map(|ip| {
            if *ip == lookup.ip() {
                lookup
            } else {
                SocketAddr::new(*ip, port)
            }
        })
        .collect();
    addrs.into_iter().collect()
}

/// The `nameserver` addresses of a resolv.conf text, on port 53, in order; lines that do
/// not hold a plain IP address (e.g. an IPv6 address with a `%zone`) are skipped.
pub(crate) fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(address)) => address.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .collect()
}

/// The names from `fqdn` up to its top-level label, most specific first (`a.b.c.` gives
/// `a.b.c.`, `b.c.`, `c.`): the candidates for the zone that holds it.
pub(crate) fn enclosing_names(fqdn: &str) -> Vec<String> {
    let trimmed = fqdn.trim_end_matches('.');
    let labels: Vec<&str> = trimmed.split('.').filter(|l| !l.is_empty()).collect();
    (0..labels.len())
        .map(|skip| format!("{}.", labels[skip..].join(".")))
        .collect()
}

/// The servers to poll for `fqdn`: every address of the NS set of its zone, or the lookup
/// server alone (logged) when that set cannot be found.
pub(crate) async fn servers_for(
    lookup: SocketAddr,
    fqdn: &str,
    port: Option<u16>,
) -> Vec<SocketAddr> {
    match discover(lookup, fqdn, port.unwrap_or(DNS_PORT)).await {
        Ok(servers) if !servers.is_empty() => {
            tracing::info!(
                name = %fqdn,
                servers = ?servers,
                "polling the zone's authoritative servers for the dns-01 TXT record"
            );
            servers
        }
        Ok(_) => {
            tracing::warn!(
                name = %fqdn,
                %lookup,
                "found no authoritative server addresses; polling the lookup server alone"
            );
            vec![lookup]
        }
        Err(message) => {
            tracing::warn!(
                name = %fqdn,
                %lookup,
                %message,
                "cannot find the zone's authoritative servers; polling the lookup server alone"
            );
            vec![lookup]
        }
    }
}

async fn discover(
    lookup: SocketAddr,
    fqdn: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, DiscoveryError> {
    let mut zone = None;
    for candidate in enclosing_names(fqdn) {
        if let Some(owner) = wire::soa_owner(lookup, &candidate).await? {
            zone = Some(owner);
            break;
        }
    }
    let Some(zone) = zone else {
        return Err(DiscoveryError::NoZone {
            lookup,
            fqdn: fqdn.to_owned(),
        });
    };
    let mut ips = Vec::new();
    for name in wire::ns_names(lookup, &zone).await? {
        match wire::addresses(lookup, &name).await {
            Ok(found) => ips.extend(found),
            Err(error) => {
                tracing::warn!(
                    zone = %zone,
                    server = %name,
                    message = %error,
                    "cannot resolve a name server of the zone"
                );
            }
        }
    }
    Ok(authoritative_addrs(&ips, lookup, port))
}

/// Why the authoritative servers of a zone could not be found.
#[derive(Debug, thiserror::Error)]
enum DiscoveryError {
    /// A query failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// No SOA for the name or any name above it.
    #[error("{lookup} named no zone (SOA) for {fqdn}")]
    NoZone { lookup: SocketAddr, fqdn: String },
}

/// Why one propagation check got no TXT values.
#[derive(Debug, thiserror::Error)]
enum PollError {
    /// The query failed.
    #[error(transparent)]
    Wire(WireError),
    /// The overall deadline came first.
    #[error("no answer before the deadline")]
    Deadline,
}

/// Polls every check until none lacks a value, or fails at `deadline` naming the servers
/// that still lag.
pub(crate) async fn wait_for_all(
    mut pending: Vec<Check>,
    started: Instant,
    deadline: Instant,
) -> Result<(), AcmeError> {
    let mut polls = 0;
    loop {
        let mut lagging = Vec::new();
        for check in &pending {
            let answer = match tokio::time::timeout_at(
                deadline,
                wire::txt_values(check.server, &check.fqdn),
            )
            .await
            {
                Ok(answer) => answer.map_err(PollError::Wire),
                Err(_) => Err(PollError::Deadline),
            };
            if let Some(lacking) = still_lacking(check, answer.as_deref().ok()) {
                let last = match &answer {
                    Ok(values) => format!("it answered {values:?}"),
                    Err(error) => error.to_string(),
                };
                lagging.push((lacking, last));
            }
        }
        if lagging.is_empty() {
            return Ok(());
        }
        tracing::debug!(
            lagging = lagging.len(),
            "dns-01 TXT records not yet visible everywhere"
        );
        let pause = poll_pause(polls);
        if Instant::now() + pause > deadline {
            let (first, last) = &lagging[0];
            let servers: Vec<String> = lagging
                .iter()
                .map(|(check, _)| check.server.to_string())
                .collect();
            return Err(dns_error(
                "dnsPropagation",
                &first.fqdn,
                format!(
                    "the TXT value was not visible at {} after {:?} ({} at {last}); raise \
                     propagation_timeout or check propagation_resolver",
                    servers.join(", "),
                    started.elapsed(),
                    first.server,
                ),
            ));
        }
        tokio::time::sleep(pause).await;
        pending = lagging.into_iter().map(|(check, _)| check).collect();
        polls += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn check(server: &str, fqdn: &str, values: &[&str]) -> Check {
        Check {
            server: addr(server),
            fqdn: fqdn.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn every_value_at_a_name_is_checked_on_every_server_of_that_name() {
        let published = vec![
            ("_acme-challenge.a.test.".to_owned(), "wild".to_owned()),
            ("_acme-challenge.a.test.".to_owned(), "apex".to_owned()),
            ("x.other.test.".to_owned(), "x".to_owned()),
        ];
        let servers_of = BTreeMap::from([
            (
                "_acme-challenge.a.test.".to_owned(),
                vec![addr("127.0.0.1:53"), addr("127.0.0.2:53")],
            ),
            ("x.other.test.".to_owned(), vec![addr("127.0.0.3:53")]),
        ]);
        assert_eq!(
            plan_checks(&published, &servers_of),
            [
                check("127.0.0.1:53", "_acme-challenge.a.test.", &["apex", "wild"]),
                check("127.0.0.2:53", "_acme-challenge.a.test.", &["apex", "wild"]),
                check("127.0.0.3:53", "x.other.test.", &["x"]),
            ]
        );
    }

    #[test]
    fn a_server_lacks_exactly_the_values_it_did_not_answer() {
        let wanted = check("127.0.0.2:53", "n.test.", &["one", "two"]);
        assert_eq!(
            still_lacking(&wanted, Some(&["two".into(), "stale".into()])),
            Some(check("127.0.0.2:53", "n.test.", &["one"]))
        );
        assert_eq!(
            still_lacking(&wanted, Some(&["one".into(), "two".into()])),
            None
        );
        assert_eq!(still_lacking(&wanted, Some(&[])), Some(wanted.clone()));
    }

    #[test]
    fn a_failed_query_leaves_every_value_lacking() {
        let wanted = check("127.0.0.2:53", "n.test.", &["one"]);
        assert_eq!(still_lacking(&wanted, None), Some(wanted.clone()));
    }

    #[test]
    fn name_servers_are_polled_on_the_port_except_the_lookup_server_itself() {
        let lookup = addr("127.0.0.1:5300");
        let ips: Vec<IpAddr> = ["127.0.0.2", "127.0.0.1", "127.0.0.2", "::1"]
            .iter()
            .map(|ip| ip.parse().unwrap())
            .collect();
        assert_eq!(
            authoritative_addrs(&ips, lookup, 53),
            [
                addr("127.0.0.1:5300"),
                addr("127.0.0.2:53"),
                addr("[::1]:53")
            ]
        );
    }

    #[test]
    fn resolv_conf_yields_its_nameservers_in_order_on_port_53() {
        let text = "# generated\nsearch example.com\nnameserver 127.0.0.53\n\
                    nameserver ::1\nnameserver fe80::1%eth0\noptions edns0\n";
        assert_eq!(
            resolv_conf_nameservers(text),
            [addr("127.0.0.53:53"), addr("[::1]:53")]
        );
        assert!(resolv_conf_nameservers("search example.com\n").is_empty());
    }

    #[test]
    fn zone_candidates_go_from_the_name_up_to_the_top_level_label() {
        assert_eq!(
            enclosing_names("_acme-challenge.www.Example.com."),
            [
                "_acme-challenge.www.Example.com.",
                "www.Example.com.",
                "Example.com.",
                "com."
            ]
        );
        assert!(enclosing_names(".").is_empty());
    }
}
