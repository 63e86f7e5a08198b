//! dns-01 (RFC 8555 section 8.4): publishes a TXT record at `_acme-challenge.NAME` (or
//! where a CNAME there points) for every authorization, waits until every authoritative
//! server of each record's zone answers with them all, and removes every record it
//! published when the order is done, successful or not.

mod exec;
mod propagation;
mod wire;

pub(crate) use wire::{CaaAnswer, WireError, caa_records};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::acme::AcmeError;

use crate::cert::{Dns01Spec, DnsProvider, Identifier};

/// How many CNAMEs are followed from `_acme-challenge.NAME` before giving up on a loop.
const MAX_CNAME_HOPS: usize = 8;
/// The first and the longest pause between two propagation checks.
const FIRST_POLL: Duration = Duration::from_millis(250);
const LONGEST_POLL: Duration = Duration::from_secs(5);
/// Where an exec provider without `propagation_resolver` finds its lookup server.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The TXT records of one order.
pub(crate) struct Dns01 {
    spec: Dns01Spec,
    /// `(fqdn, value)` of every record the provider may have published, for the cleanup.
    /// A record goes here before the provider runs: an update or a hook that fails or
    /// times out may still have published it, and removing a record that is not there is
    /// harmless.
    published: Vec<(String, String)>,
}

impl Dns01 {
    pub(crate) fn new(spec: &Dns01Spec) -> Self {
        Self {
            spec: spec.clone(),
            published: Vec::new(),
        }
    }

    /// Publishes `value` for `identifier`, at the end of its `_acme-challenge` CNAMEs.
    pub(crate) async fn add(
        &mut self,
        identifier: &Identifier,
        value: &str,
    ) -> Result<(), AcmeError> {
        let Identifier::Dns(name) = identifier else {
            return Err(dns_error(
                "dnsLookup",
                &identifier.to_string(),
                "dns-01 cannot validate an IP address; use http-01 or tls-alpn-01".into(),
            ));
        };
        let challenge = challenge_name(name);
        let fqdn = match self.lookup_server().await {
            Some(lookup) => follow_cnames(lookup, &challenge).await?,
            None => challenge,
        };
        self.check_publishable(&fqdn)?;
        self.published.push((fqdn.clone(), value.to_owned()));
        self.publish(&fqdn, value).await
    }

    /// Returns once every authoritative server of each record's zone answers with every
    /// value published there, all within one `propagation_timeout`.
    pub(crate) async fn wait_until_visible(&self) -> Result<(), AcmeError> {
        let Some(lookup) = self.lookup_server().await else {
            tracing::warn!(
                records = self.published.len(),
                "no propagation_resolver and no nameserver in /etc/resolv.conf: not waiting \
                 for the dns-01 TXT records"
            );
            return Ok(());
        };
        let started = Instant::now();
        let deadline = started + self.spec.propagation_timeout;
        let mut servers_of = BTreeMap::new();
        for (fqdn, _) in &self.published {
            if !servers_of.contains_key(fqdn) {
                let port = self.spec.authoritative_port_override;
                let discovery = propagation::servers_for(lookup, fqdn, port);
                // Discovery counts against the same timeout as the polling.
                let servers = tokio::time::timeout_at(deadline, discovery)
                    .await
                    .unwrap_or_else(|_| {
                        tracing::warn!(
                            name = %fqdn,
                            %lookup,
                            "no name servers found before propagation_timeout; polling the \
                             lookup server alone"
                        );
                        vec![lookup]
                    });
                servers_of.insert(fqdn.clone(), servers);
            }
        }
        let checks = propagation::plan_checks(&self.published, &servers_of);
        propagation::wait_for_all(checks, started, deadline).await
    }

    /// The server asked about CNAMEs and name servers: the configured one, else the first
    /// `nameserver` of `/etc/resolv.conf` (read each time, as the system does).
    async fn lookup_server(&self) -> Option<SocketAddr> {
        match self.spec.resolver() {
            Some(resolver) => Some(resolver),
            None => system_nameserver().await,
        }
    }

    /// Removes every record this order published; failures are logged, never returned,
    /// because the certificate's fate is already decided.
    pub(crate) async fn cleanup(self) {
        for (fqdn, value) in &self.published {
            let removed = match &self.spec.provider {
                DnsProvider::Rfc2136(settings) => {
                    wire::update(settings, fqdn, value, wire::Change::Remove)
                        .await
                        .map_err(|error| error.to_string())
                }
                DnsProvider::Exec { command, env } => self
                    .run_exec(command, env, exec::Action::Cleanup, fqdn, value)
                    .await
                    .map_err(|error| error.to_string()),
            };
            if let Err(error) = removed {
                tracing::warn!(name = %fqdn, %error, "cannot remove the dns-01 TXT record");
            }
        }
    }

    /// Refuses, before anything is published, a name the provider cannot update.
    fn check_publishable(&self, fqdn: &str) -> Result<(), AcmeError> {
        match &self.spec.provider {
            DnsProvider::Rfc2136(settings) if !in_zone(fqdn, &settings.zone) => Err(dns_error(
                "dnsLookup",
                fqdn,
                format!(
                    "the name is outside zone {}; point its _acme-challenge CNAME into that \
                     zone or configure the zone that holds it",
                    settings.zone
                ),
            )),
            DnsProvider::Rfc2136(_) | DnsProvider::Exec { .. } => Ok(()),
        }
    }

    /// Runs the exec provider's `command action fqdn value` within the propagation timeout.
    async fn run_exec(
        &self,
        command: &std::path::Path,
        env: &crate::cert::HookEnv,
        action: exec::Action,
        fqdn: &str,
        value: &str,
    ) -> Result<(), crate::hook::HookError> {
        let timeout = self.spec.propagation_timeout;
        exec::run(command, env, action, fqdn, value, timeout).await
    }

    async fn publish(&self, fqdn: &str, value: &str) -> Result<(), AcmeError> {
        match &self.spec.provider {
            DnsProvider::Rfc2136(settings) => {
                wire::update(settings, fqdn, value, wire::Change::Add)
                    .await
                    .map_err(|error| dns_error_from("dnsUpdate", fqdn, error))
            }
            DnsProvider::Exec { command, env } => self
                .run_exec(command, env, exec::Action::Present, fqdn, value)
                .await
                .map_err(|error| dns_error_from("dnsExec", fqdn, error)),
        }
    }
}

/// `_acme-challenge.` + the name without its wildcard label, absolute and lower case.
fn challenge_name(name: &str) -> String {
    let base = name.strip_prefix("*.").unwrap_or(name);
    let base = base.trim_end_matches('.').to_ascii_lowercase();
    format!("_acme-challenge.{base}.")
}

/// Whether the absolute name `fqdn` lies in (or is) the zone `zone`.
fn in_zone(fqdn: &str, zone: &str) -> bool {
    let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    zone.is_empty() || fqdn == zone || fqdn.ends_with(&format!(".{zone}"))
}

/// The pause before propagation check number `polls` (0-based): doubling, capped.
fn poll_pause(polls: u32) -> Duration {
    FIRST_POLL
        .saturating_mul(2u32.saturating_pow(polls.min(16)))
        .min(LONGEST_POLL)
}

/// Follows `_acme-challenge` CNAMEs (delegation to another zone) to the name to update.
async fn follow_cnames(resolver: SocketAddr, challenge: &str) -> Result<String, AcmeError> {
    let mut name = challenge.to_owned();
    for _ in 0..MAX_CNAME_HOPS {
        match wire::cname(resolver, &name).await {
            Ok(Some(target)) => {
                tracing::debug!(from = %name, to = %target, "following dns-01 CNAME");
                name = target;
            }
            Ok(None) => return Ok(name),
            Err(error) => return Err(dns_error_from("dnsLookup", &name, error)),
        }
    }
    Err(dns_error(
        "dnsLookup",
        challenge,
        format!("more than {MAX_CNAME_HOPS} CNAMEs; is there a loop?"),
    ))
}

fn dns_error(problem: &'static str, name: &str, message: String) -> AcmeError {
    AcmeError::Dns {
        problem,
        name: name.to_owned(),
        message,
        source: None,
    }
}

/// [`dns_error`] whose message is `source`, kept as the error's source.
fn dns_error_from(
    problem: &'static str,
    name: &str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> AcmeError {
    AcmeError::Dns {
        problem,
        name: name.to_owned(),
        message: source.to_string(),
        source: Some(Box::new(source)),
    }
}

/// The first `nameserver` of `/etc/resolv.conf` (read each time, as the system does).
pub(crate) async fn system_nameserver() -> Option<SocketAddr> {
    match tokio::fs::read_to_string(RESOLV_CONF).await {
        Ok(text) => propagation::resolv_conf_nameservers(&text)
            .into_iter()
            .next(),
        Err(error) => {
            tracing::warn!(%error, "cannot read {RESOLV_CONF}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback address nothing listens on (bound, then released).
    fn closed_port() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    #[tokio::test]
    async fn a_failed_cname_lookup_keeps_the_dns_error_chain_behind_its_message() {
        let server = closed_port();
        let error = follow_cnames(server, "_acme-challenge.example.test.")
            .await
            .unwrap_err();
        let AcmeError::Dns {
            problem, message, ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(*problem, "dnsLookup");
        assert!(message.contains(&server.to_string()), "{message}");
        // The wire error, and below it hickory's own, stay reachable as sources.
        let wire = std::error::Error::source(&error).expect("the DNS error is the source");
        assert_eq!(wire.to_string(), *message);
        assert!(wire.source().is_some(), "hickory's error below: {wire:?}");
    }

    #[test]
    fn wildcards_and_their_base_name_share_one_challenge_name() {
        assert_eq!(
            challenge_name("*.Example.com"),
            "_acme-challenge.example.com."
        );
        assert_eq!(
            challenge_name("example.com."),
            "_acme-challenge.example.com."
        );
        assert_eq!(
            challenge_name("www.example.com"),
            "_acme-challenge.www.example.com."
        );
    }

    #[test]
    fn zone_membership_is_decided_on_whole_labels() {
        assert!(in_zone("_acme-challenge.example.com.", "example.com."));
        assert!(in_zone("example.com.", "Example.COM"));
        assert!(!in_zone("_acme-challenge.badexample.com.", "example.com."));
        assert!(!in_zone("_acme-challenge.example.org.", "example.com."));
        assert!(in_zone("anything.", "."));
    }

    #[test]
    fn propagation_polls_back_off_to_a_ceiling() {
        assert_eq!(poll_pause(0), FIRST_POLL);
        assert_eq!(poll_pause(1), FIRST_POLL * 2);
        assert_eq!(poll_pause(40), LONGEST_POLL);
    }

    #[tokio::test]
    async fn an_ip_address_is_rejected_before_any_dns_traffic() {
        let spec = Dns01Spec {
            provider: DnsProvider::Exec {
                command: "/nonexistent".into(),
                env: Default::default(),
            },
            propagation_resolver: None,
            propagation_timeout: Duration::from_secs(1),
            authoritative_port_override: None,
        };
        let error = Dns01::new(&spec)
            .add(&Identifier::Ip("127.0.0.1".parse().unwrap()), "v")
            .await
            .unwrap_err();
        assert_eq!(error.problem(), "dnsLookup");
        assert_eq!(error.stage().as_str(), "challenge");
    }
}
