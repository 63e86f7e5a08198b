//! Served-certificate verification: after the deploy commands ran, the `verify` endpoints
//! are probed (every resolved address) until each serves the new serial, or
//! `verify_timeout` passes.
//!
//! [`observe`] does the probing through `scan::probe`; [`judge`], [`describe`] and
//! [`retry_delay`] are pure, so what "served" means is tested without sockets or clocks.

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::model::{CertificateConfig, Endpoint, Host, ScannerSettings, Target};
use crate::scan::budget::ConnectionBudget;
use crate::scan::probe::{EndpointReport, ProbeContext, probe_endpoint};
use crate::scan::resolve::Resolver;
use crate::scan::trust::TrustCache;
use crate::store::version_check::name_covered;

/// The first wait between two rounds of probes; it doubles up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The longest wait between two rounds of probes.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// What one address of one `verify` target served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The target as configured.
    pub target: Target,
    /// The address probed; `None` when the target's name did not resolve.
    pub ip: Option<IpAddr>,
    /// The leaf serial it presented, or why there was none.
    pub served: Served,
}

/// The answer of one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// A handshake completed and presented a leaf with this serial (lowercase hex).
    Serial(String),
    /// No handshake: the probe error, as text.
    NoAnswer(String),
}

/// The judgement of one round of probes against the serial that should be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every target answered on every address with the expected serial.
    AllServe,
    /// At least one address presented another serial.
    Stale,
    /// No address presented another serial, but some did not answer (or nothing was
    /// probed at all).
    Unreachable,
}

/// The `verify` endpoints did not all serve the new version within `verify_timeout`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} after {}s: {detail}", verdict_text(*.verdict), .waited.as_secs())]
pub struct ServedError {
    /// [`Verdict::Stale`] or [`Verdict::Unreachable`], from the last round.
    pub verdict: Verdict,
    /// How long certinel waited.
    pub waited: Duration,
    /// Which target and address served which serial in the last round ([`describe`]).
    pub detail: String,
}

impl ServedError {
    /// `stale` or `unreachable`, the `problem` label of a failed renewal.
    pub fn problem(&self) -> &'static str {
        match self.verdict {
            Verdict::Unreachable => "unreachable",
            Verdict::Stale | Verdict::AllServe => "stale",
        }
    }
}

fn verdict_text(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::AllServe => "the new certificate is served",
        Verdict::Stale => "an endpoint still serves another certificate",
        Verdict::Unreachable => "an endpoint did not answer",
    }
}

/// Judges one round: did every observed address serve `expected`? Pure.
pub fn judge(expected: &str, observations: &[Observation]) -> Verdict {
    let stale = observations
        .iter()
        .any(|o| matches!(&o.served, Served::Serial(serial) if serial != expected));
    let all_serve = !observations.is_empty()
        && observations
            .iter()
            .all(|o| matches!(&o.served, Served::Serial(serial) if serial == expected));
    match (all_serve, stale) {
        (true, _) => Verdict::AllServe,
        (false, true) => Verdict::Stale,
        (false, false) => Verdict::Unreachable,
    }
}

/// One line saying which target and address served which serial, for the audit log:
/// `127.0.0.1:443 127.0.0.1 serves 0a1b (new); api.test:443 (unresolved) no answer: ...`.
pub fn describe(expected: &str, observations: &[Observation]) -> String {
    if observations.is_empty() {
        return "nothing was probed".to_owned();
    }
    let parts: Vec<String> = observations
        .iter()
        .map(|o| {
            let ip = match o.ip {
                Some(ip) => ip.to_string(),
                None => "(unresolved)".to_owned(),
            };
            match &o.served {
                Served::Serial(serial) if serial == expected => {
                    format!("{} {ip} serves {serial} (new)", o.target)
                }
                Served::Serial(serial) => {
                    format!("{} {ip} serves {serial} (not {expected})", o.target)
                }
                Served::NoAnswer(error) => format!("{} {ip} no answer: {error}", o.target),
            }
        })
        .collect();
    parts.join("; ")
}

/// The wait after round `round` (0-based): 1s, 2s, 4s, 8s, then 10s. Pure.
pub fn retry_delay(round: u32) -> Duration {
    FIRST_RETRY_DELAY
        .saturating_mul(2u32.saturating_pow(round))
        .min(MAX_RETRY_DELAY)
}

/// What a served-certificate probe needs: the resolver of `[scanner] hosts_file`, no trust
/// roots (only the serial matters, not whether the chain verifies) and a probe deadline.
#[derive(Debug)]
pub struct ServedProber {
    context: ProbeContext,
    probe_timeout: Duration,
}

impl ServedProber {
    /// A prober with the scanner's resolver and default probe deadline; a hosts file that
    /// cannot be read is an error, as in `certinel run`.
    pub fn new(scanner: &ScannerSettings) -> std::io::Result<ServedProber> {
        let resolver = match &scanner.hosts_file {
            Some(path) => Resolver::with_hosts_file(path)?,
            None => Resolver::system(),
        };
        Ok(ServedProber {
            context: ProbeContext::new(
                resolver,
                TrustCache::empty(),
                ConnectionBudget::for_process(scanner.max_connections),
            )
            .with_max_addresses(scanner.max_addresses),
            probe_timeout: scanner.default_timeout,
        })
    }

    /// Probes every `verify` target of `certificate` once, all addresses of each, and
    /// reports what each served. `deadline` caps each probe.
    pub async fn observe(
        &self,
        certificate: &CertificateConfig,
        deadline: Option<Instant>,
    ) -> Vec<Observation> {
        let timeout = match deadline {
            Some(deadline) => self
                .probe_timeout
                .min(deadline.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(100)),
            None => self.probe_timeout,
        };
        let names = certificate.dns_names();
        let probes = certificate.verify.iter().map(|target| {
            let mut endpoint = Endpoint::new(target.clone(), timeout);
            endpoint.probe.sni = server_name(target, &names);
            async move { probe_endpoint(&endpoint, &self.context).await }
        });
        futures::future::join_all(probes)
            .await
            .iter()
            .flat_map(observations)
            .collect()
    }

    /// Probes until every target serves `expected` or `timeout` passes, waiting
    /// [`retry_delay`] between rounds. Returns the last round's observations.
    pub async fn wait_until_served(
        &self,
        certificate: &CertificateConfig,
        expected: &str,
        timeout: Duration,
    ) -> Result<Vec<Observation>, ServedError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut round = 0;
        loop {
            let observed = self.observe(certificate, Some(deadline)).await;
            let verdict = judge(expected, &observed);
            tracing::info!(?verdict, detail = %describe(expected, &observed), "served certificate check");
            let next = Instant::now() + retry_delay(round);
            if verdict == Verdict::AllServe {
                return Ok(observed);
            }
            if next >= deadline {
                return Err(ServedError {
                    verdict,
                    waited: started.elapsed(),
                    detail: describe(expected, &observed),
                });
            }
            tokio::time::sleep_until(next).await;
            round += 1;
        }
    }
}

/// The name sent as SNI. A server picks its virtual host (and so its certificate) by SNI,
/// so it must be one of the certificate's names: the target's own name when the certificate
/// covers it, else the certificate's first non-wildcard name (for `lb1.internal:443` or an
/// address target). `None` sends the target's name (a certificate of wildcards only).
fn server_name(target: &Target, certificate_names: &[String]) -> Option<String> {
    if let Host::Name(host) = &target.host
        && name_covered(host, certificate_names)
    {
        return None;
    }
    certificate_names
        .iter()
        .find(|name| !name.starts_with("*."))
        .cloned()
}

/// The observations in one endpoint report: one per probed address, or one without an
/// address when nothing was probed.
fn observations(report: &EndpointReport) -> Vec<Observation> {
    let target = &report.endpoint.target;
    if let Some(error) = &report.resolve_error {
        return vec![Observation {
            target: target.clone(),
            ip: None,
            served: Served::NoAnswer(error.to_string()),
        }];
    }
    report
        .addresses
        .iter()
        .map(|address| Observation {
            target: target.clone(),
            ip: Some(address.ip),
            served: match &address.outcome {
                Ok(handshake) => Served::Serial(handshake.chain.leaf().serial.clone()),
                Err(error) => Served::NoAnswer(error.to_string()),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sni(target: &str, names: &[&str]) -> Option<String> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        server_name(&target.parse().unwrap(), &names)
    }

    #[test]
    fn a_target_named_like_the_certificate_sends_its_own_name() {
        assert_eq!(
            sni("api.example:443", &["www.example", "api.example"]),
            None
        );
        assert_eq!(sni("API.example:443", &["api.example"]), None);
        assert_eq!(sni("lb1.example:443", &["*.example", "api.example"]), None);
    }

    #[test]
    fn a_load_balancer_name_sends_the_certificates_first_plain_name() {
        assert_eq!(
            sni(
                "lb1.internal:443",
                &["*.example", "api.example", "www.example"]
            ),
            Some("api.example".to_owned())
        );
    }

    #[test]
    fn an_address_target_sends_the_certificates_first_plain_name() {
        assert_eq!(
            sni("127.0.0.1:8443", &["api.example"]),
            Some("api.example".to_owned())
        );
        assert_eq!(
            sni("[::1]:8443", &["*.example", "www.example"]),
            Some("www.example".to_owned())
        );
    }

    #[test]
    fn a_certificate_of_wildcards_only_leaves_the_targets_name() {
        assert_eq!(sni("lb1.internal:443", &["*.example"]), None);
        assert_eq!(sni("127.0.0.1:443", &["*.example"]), None);
    }

    fn seen(target: &str, ip: Option<&str>, served: Served) -> Observation {
        Observation {
            target: target.parse().unwrap(),
            ip: ip.map(|ip| ip.parse().unwrap()),
            served,
        }
    }

    fn serial(s: &str) -> Served {
        Served::Serial(s.to_owned())
    }

    fn unanswered(target: &str, ip: Option<&str>, why: &str) -> Observation {
        seen(target, ip, Served::NoAnswer(why.to_owned()))
    }

    #[test]
    fn every_address_serving_the_new_serial_passes() {
        let observed = [
            seen("api.test:443", Some("127.0.0.1"), serial("0b")),
            seen("api.test:443", Some("::1"), serial("0b")),
            seen("127.0.0.2:8443", Some("127.0.0.2"), serial("0b")),
        ];
        assert_eq!(judge("0b", &observed), Verdict::AllServe);
    }

    #[test]
    fn one_address_serving_the_old_serial_is_stale_even_when_another_is_down() {
        let observed = [
            seen("api.test:443", Some("127.0.0.1"), serial("0b")),
            seen("api.test:443", Some("127.0.0.2"), serial("0a")),
            unanswered("api.test:443", Some("127.0.0.3"), "cannot connect"),
        ];
        assert_eq!(judge("0b", &observed), Verdict::Stale);
    }

    #[test]
    fn addresses_that_do_not_answer_are_unreachable_not_passing() {
        let observed = [
            seen("api.test:443", Some("127.0.0.1"), serial("0b")),
            unanswered("api.test:443", None, "cannot resolve"),
        ];
        assert_eq!(judge("0b", &observed), Verdict::Unreachable);
        assert_eq!(judge("0b", &[]), Verdict::Unreachable);
    }

    #[test]
    fn the_description_names_target_address_and_serial() {
        let observed = [
            seen("127.0.0.1:8443", Some("127.0.0.1"), serial("0a")),
            seen("[::1]:8443", Some("::1"), serial("0b")),
            unanswered("gone.test:443", None, "cannot resolve"),
        ];
        assert_eq!(
            describe("0b", &observed),
            "127.0.0.1:8443 127.0.0.1 serves 0a (not 0b); [::1]:8443 ::1 serves 0b (new); \
             gone.test:443 (unresolved) no answer: cannot resolve"
        );
    }

    #[test]
    fn the_retry_delay_doubles_from_one_second_up_to_ten() {
        let delays: Vec<u64> = (0..6).map(|round| retry_delay(round).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }

    #[test]
    fn the_problem_label_is_stale_or_unreachable() {
        let error = |verdict| ServedError {
            verdict,
            waited: Duration::from_secs(3),
            detail: "x".into(),
        };
        assert_eq!(error(Verdict::Stale).problem(), "stale");
        assert_eq!(error(Verdict::Unreachable).problem(), "unreachable");
        assert_eq!(
            error(Verdict::Stale).to_string(),
            "an endpoint still serves another certificate after 3s: x"
        );
    }
}
