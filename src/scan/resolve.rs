//! Name resolution: a hosts-file override, then the system resolver; every A/AAAA address.
//!
//! The system resolver (`getaddrinfo`) blocks a thread and cannot be cancelled: a caller
//! that gives up at its deadline returns at once, but the lookup runs on. At most
//! [`SYSTEM_LOOKUP_LIMIT`] lookups run at once in the process, each holding its slot until
//! `getaddrinfo` returns, so a slow or hostile DNS server cannot fill tokio's blocking pool
//! with abandoned lookups; waiting for a slot counts against the caller's deadline.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use tokio::sync::Semaphore;

use crate::config::model::{Host, IpFamily, ResolveMode};

/// A name that did not resolve, or resolved to no address of the wanted family. The probe
/// reports it as `ProbeError::Dns`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot resolve {host}: {detail}")]
pub struct ResolveError {
    /// The name looked up.
    pub host: String,
    /// What the resolver said.
    pub detail: String,
}

/// Most system-resolver lookups running at once in the process.
pub const SYSTEM_LOOKUP_LIMIT: usize = 32;

/// The slots of [`SYSTEM_LOOKUP_LIMIT`]; never closed.
static SYSTEM_LOOKUP_SLOTS: Semaphore = Semaphore::const_new(SYSTEM_LOOKUP_LIMIT);

/// Resolves endpoint hosts to the addresses to probe.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    /// Lower-cased names from the hosts file, each with its addresses in file order.
    overrides: HashMap<String, Vec<IpAddr>>,
    /// Tests only: every name lookup first waits this long, like a slow resolver.
    #[cfg(test)]
    lookup_delay: Option<std::time::Duration>,
    /// Tests only: counts name lookups, and a name the overrides do not list fails instead
    /// of reaching the system resolver.
    #[cfg(test)]
    offline_lookups: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
    /// Tests only: a system lookup must also take a slot here first.
    #[cfg(test)]
    extra_lookup_slots: Option<std::sync::Arc<Semaphore>>,
}

impl Resolver {
    /// The system resolver with no overrides.
    pub fn system() -> Resolver {
        Resolver::default()
    }

    /// A resolver whose name lookups do not finish within a day, to test deadlines.
    #[cfg(test)]
    pub(crate) fn stalling() -> Resolver {
        Resolver::default().delayed(std::time::Duration::from_secs(86_400))
    }

    /// A resolver answering names from `hosts` (hosts-file format) only: a name the text
    /// does not list fails without reaching the system resolver. Every name lookup is
    /// counted in [`Resolver::lookups`].
    #[cfg(test)]
    pub(crate) fn with_hosts_text(hosts: &str) -> Resolver {
        Resolver {
            overrides: parse_hosts(hosts).unwrap_or_default(),
            offline_lookups: Some(Default::default()),
            ..Resolver::default()
        }
    }

    /// How many names a [`Resolver::with_hosts_text`] resolver was asked to look up.
    #[cfg(test)]
    pub(crate) fn lookups(&self) -> usize {
        self.offline_lookups
            .as_ref()
            .map_or(0, |count| count.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// This resolver, waiting `delay` before every name lookup.
    #[cfg(test)]
    pub(crate) fn delayed(self, delay: std::time::Duration) -> Resolver {
        Resolver {
            lookup_delay: Some(delay),
            ..self
        }
    }

    /// The system resolver, with names in `path` (hosts-file format) answered from it.
    ///
    /// A line whose first field is not an IP address is an `InvalidData` error naming
    /// `path:line`.
    pub fn with_hosts_file(path: &Path) -> std::io::Result<Resolver> {
        let text = std::fs::read_to_string(path)?;
        let overrides = parse_hosts(&text).map_err(|bad_line| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}:{}: `{}` is not an IP address",
                    path.display(),
                    bad_line.line,
                    bad_line.field
                ),
            )
        })?;
        // Outside tests `overrides` is the only field; the update covers the test-only one.
        #[allow(clippy::needless_update)]
        Ok(Resolver {
            overrides,
            ..Resolver::default()
        })
    }

    /// The addresses of `host` to probe, filtered by family and mode, in resolver order.
    pub async fn resolve(
        &self,
        host: &Host,
        family: IpFamily,
        mode: ResolveMode,
    ) -> Result<Vec<IpAddr>, ResolveError> {
        let found = match host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => self.lookup(name).await?,
        };
        select_addresses(host, found, family, mode)
    }

    /// Every address of `name`: from the hosts file when it lists the name, else from the
    /// system resolver.
    async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        #[cfg(test)]
        if let Some(delay) = self.lookup_delay {
            tokio::time::sleep(delay).await;
        }
        #[cfg(test)]
        if let Some(count) = &self.offline_lookups {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let key = normalize_name(name);
        if let Some(addresses) = self.overrides.get(&key) {
            return Ok(addresses.clone());
        }
        #[cfg(test)]
        if self.offline_lookups.is_some() {
            return Err(dns_error(
                name,
                "not in the test hosts text (offline resolver)",
            ));
        }
        if is_special_use_invalid(&key) {
            // RFC 6761 section 6.4: resolvers should answer names under `invalid.` with an
            // immediate negative response instead of asking DNS.
            return Err(dns_error(
                name,
                "names under .invalid never resolve (RFC 6761)",
            ));
        }
        self.system_lookup(name).await
    }

    /// `getaddrinfo` on a blocking thread, within [`SYSTEM_LOOKUP_LIMIT`].
    async fn system_lookup(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        #[cfg(test)]
        let _test_slot = match &self.extra_lookup_slots {
            Some(slots) => Some(slots.clone().acquire_owned().await),
            None => None,
        };
        let slot = SYSTEM_LOOKUP_SLOTS
            .acquire()
            .await
            .map_err(|_| dns_error(name, "the system resolver is shut down"))?;
        let host = name.to_owned();
        let answers = tokio::task::spawn_blocking(move || {
            // Held until getaddrinfo returns, even when the caller stopped waiting.
            let _slot = slot;
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 0))
                .map(|answers| answers.map(|socket| socket.ip()).collect::<Vec<_>>())
        })
        .await
        .map_err(|error| dns_error(name, &error.to_string()))?;
        answers.map_err(|error| dns_error(name, &error.to_string()))
    }
}

/// A hosts-file line whose address field does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BadHostsLine {
    /// One-based line number.
    line: usize,
    /// The offending field.
    field: String,
}

/// Parses `/etc/hosts` format: `address name [alias...]`, `#` starts a comment.
fn parse_hosts(text: &str) -> Result<HashMap<String, Vec<IpAddr>>, BadHostsLine> {
    let mut overrides: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or_default();
        let mut fields = content.split_whitespace();
        let Some(address_field) = fields.next() else {
            continue;
        };
        if address_field.contains('%') {
            // A scoped link-local address (`fe80::1%lo0`) names an interface that only
            // the system resolver can honour; leave such lines to it.
            continue;
        }
        let address: IpAddr = address_field.parse().map_err(|_| BadHostsLine {
            line: index + 1,
            field: address_field.to_string(),
        })?;
        for name in fields {
            overrides
                .entry(normalize_name(name))
                .or_default()
                .push(address);
        }
    }
    Ok(overrides)
}

/// Names compare case-insensitively, and `host.` is the same name as `host`.
fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `invalid` or a name under it; `name` is already normalized.
fn is_special_use_invalid(name: &str) -> bool {
    name == "invalid" || name.ends_with(".invalid")
}

/// Deduplicates (keeping first occurrences), filters by family, then applies the mode.
fn select_addresses(
    host: &Host,
    found: Vec<IpAddr>,
    family: IpFamily,
    mode: ResolveMode,
) -> Result<Vec<IpAddr>, ResolveError> {
    let mut selected: Vec<IpAddr> = Vec::with_capacity(found.len());
    for address in found {
        let wanted = match family {
            IpFamily::Any => true,
            IpFamily::Ipv4 => address.is_ipv4(),
            IpFamily::Ipv6 => address.is_ipv6(),
        };
        if wanted && !selected.contains(&address) {
            selected.push(address);
        }
    }
    if selected.is_empty() {
        let detail = match family {
            IpFamily::Any => "no address",
            IpFamily::Ipv4 => "no IPv4 address",
            IpFamily::Ipv6 => "no IPv6 address",
        };
        return Err(dns_error(&host.to_string(), detail));
    }
    if mode == ResolveMode::First {
        selected.truncate(1);
    }
    Ok(selected)
}

fn dns_error(host: &str, detail: &str) -> ResolveError {
    ResolveError {
        host: host.to_string(),
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn name(text: &str) -> Host {
        Host::Name(text.to_string())
    }

    async fn lookup(
        resolver: &Resolver,
        host: &str,
        family: IpFamily,
        mode: ResolveMode,
    ) -> Result<Vec<IpAddr>, ResolveError> {
        resolver.resolve(&name(host), family, mode).await
    }

    fn resolver_from(text: &str) -> Resolver {
        Resolver {
            overrides: parse_hosts(text).unwrap(),
            ..Resolver::default()
        }
    }

    #[test]
    fn hosts_file_maps_every_alias_and_skips_comments_and_blank_lines() {
        let overrides = parse_hosts(
            "# a comment\n\n127.0.0.2  web.test  www.test # trailing comment\n::1 web.test\n",
        )
        .unwrap();
        assert_eq!(overrides["web.test"], vec![ip("127.0.0.2"), ip("::1")]);
        assert_eq!(overrides["www.test"], vec![ip("127.0.0.2")]);
        assert_eq!(overrides.len(), 2);
    }

    #[test]
    fn hosts_file_line_with_a_bad_address_names_its_line() {
        let error = parse_hosts("127.0.0.1 ok.test\nnot-an-ip bad.test\n").unwrap_err();
        assert_eq!(
            error,
            BadHostsLine {
                line: 2,
                field: "not-an-ip".to_string()
            }
        );
    }

    #[test]
    fn hosts_file_skips_scoped_link_local_lines() {
        let overrides = parse_hosts("fe80::1%lo0 localhost\n").unwrap();
        assert!(overrides.is_empty());
    }

    #[tokio::test]
    async fn hosts_file_names_match_case_insensitively_and_with_trailing_dot() {
        let resolver = resolver_from("127.0.0.2 Web.Test\n");
        for spelling in ["web.test", "WEB.TEST", "web.test."] {
            let found = resolver
                .resolve(&name(spelling), IpFamily::Any, ResolveMode::All)
                .await
                .unwrap();
            assert_eq!(found, vec![ip("127.0.0.2")], "{spelling}");
        }
    }

    #[tokio::test]
    async fn lookups_keep_file_order_without_duplicates_and_apply_family_and_mode() {
        let multi = "127.0.0.3 multi.test\n127.0.0.2 multi.test\n127.0.0.3 multi.test\n";
        let dual = "127.0.0.2 dual.test\n::1 dual.test\n";
        // (what it proves, hosts file, name, family, mode, the addresses found)
        let cases = [
            (
                "several addresses keep file order without duplicates",
                multi,
                "multi.test",
                IpFamily::Any,
                ResolveMode::All,
                &["127.0.0.3", "127.0.0.2"][..],
            ),
            (
                "first mode keeps only the first address",
                multi,
                "multi.test",
                IpFamily::Any,
                ResolveMode::First,
                &["127.0.0.3"],
            ),
            (
                "the IPv6 filter keeps only IPv6",
                dual,
                "dual.test",
                IpFamily::Ipv6,
                ResolveMode::All,
                &["::1"],
            ),
            (
                "the IPv4 filter keeps only IPv4",
                dual,
                "dual.test",
                IpFamily::Ipv4,
                ResolveMode::All,
                &["127.0.0.2"],
            ),
        ];
        for (proves, hosts, host, family, mode, expected) in cases {
            let found = lookup(&resolver_from(hosts), host, family, mode).await;
            let expected: Vec<IpAddr> = expected.iter().map(|text| ip(text)).collect();
            assert_eq!(found, Ok(expected), "{proves}");
        }
    }

    #[tokio::test]
    async fn family_filter_that_empties_the_list_is_a_dns_error() {
        let resolver = resolver_from("127.0.0.2 v4only.test\n");
        let error = lookup(&resolver, "v4only.test", IpFamily::Ipv6, ResolveMode::All)
            .await
            .unwrap_err();
        assert_eq!(
            error,
            ResolveError {
                host: "v4only.test".to_string(),
                detail: "no IPv6 address".to_string()
            }
        );
    }

    #[tokio::test]
    async fn literal_addresses_pass_through_and_obey_the_family_filter() {
        let resolver = Resolver::system();
        let literal = Host::Ip(ip("::1"));
        let found = resolver
            .resolve(&literal, IpFamily::Any, ResolveMode::All)
            .await
            .unwrap();
        assert_eq!(found, vec![ip("::1")]);
        let error = resolver
            .resolve(&literal, IpFamily::Ipv4, ResolveMode::All)
            .await
            .unwrap_err();
        assert_eq!(error.detail, "no IPv4 address");
    }

    #[tokio::test]
    async fn names_under_invalid_fail_without_asking_dns() {
        let error = Resolver::system()
            .resolve(
                &name("nonexistent.INVALID"),
                IpFamily::Any,
                ResolveMode::All,
            )
            .await
            .unwrap_err();
        assert!(error.host == "nonexistent.INVALID", "{error:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_system_lookup_slot_ends_at_the_callers_deadline() {
        let resolver = Resolver {
            extra_lookup_slots: Some(std::sync::Arc::new(Semaphore::new(0))),
            ..Resolver::default()
        };
        let started = tokio::time::Instant::now();
        let deadline = std::time::Duration::from_secs(2);
        let host = name("localhost");
        let lookup = resolver.resolve(&host, IpFamily::Any, ResolveMode::All);
        assert!(tokio::time::timeout(deadline, lookup).await.is_err());
        assert_eq!(started.elapsed(), deadline);
    }

    #[tokio::test]
    async fn system_lookups_answer_through_the_bounded_path() {
        // `localhost` comes from /etc/hosts, never from a DNS server.
        let found = Resolver::system()
            .resolve(&name("localhost"), IpFamily::Any, ResolveMode::All)
            .await
            .unwrap();
        assert!(found.iter().all(IpAddr::is_loopback), "{found:?}");
    }

    #[tokio::test]
    async fn hosts_file_is_read_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "127.0.0.9 disk.test\n").unwrap();
        let found = Resolver::with_hosts_file(&path)
            .unwrap()
            .resolve(&name("disk.test"), IpFamily::Any, ResolveMode::All)
            .await
            .unwrap();
        assert_eq!(found, vec![ip("127.0.0.9")]);

        std::fs::write(&path, "bogus disk.test\n").unwrap();
        let error = Resolver::with_hosts_file(&path).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert!(
            error
                .to_string()
                .ends_with(":1: `bogus` is not an IP address")
        );
    }
}
