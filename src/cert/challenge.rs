//! How certinel proves control of a certificate's identifiers, as data: the challenge kind
//! and, for dns-01, the DNS provider that publishes the TXT records and where and how long
//! to look for them before telling the CA they are ready. The responders live in `acme`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::cert::HookEnv;

/// How certinel proves control of the identifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChallengeSpec {
    /// http-01 answered by a built-in HTTP listener on this address (usually port 80).
    Http01Listen(SocketAddr),
    /// http-01 answered by files written under `DIR/.well-known/acme-challenge/`, served by
    /// an existing web server, and removed afterwards.
    Http01Webroot(PathBuf),
    /// tls-alpn-01 answered by a built-in TLS listener on this address (usually port 443).
    TlsAlpn01Listen(SocketAddr),
    /// dns-01: TXT records published through a DNS provider; the only type that can
    /// validate wildcard names.
    Dns01(Dns01Spec),
}

/// How long to wait for a TXT record to become visible when the config sets no
/// `propagation_timeout`.
pub const DEFAULT_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(120);

/// dns-01 (RFC 8555 section 8.4): a TXT record at `_acme-challenge.NAME`, also for
/// wildcards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dns01Spec {
    /// Who publishes and removes the TXT records.
    pub provider: DnsProvider,
    /// The lookup server: asked for `_acme-challenge` CNAMEs, for the zone's NS set and for
    /// the addresses of those name servers, every one of which is then polled until it
    /// answers with the TXT values. `None` means the RFC 2136 `server`, or for an exec
    /// provider the first `nameserver` of `/etc/resolv.conf`.
    pub propagation_resolver: Option<SocketAddr>,
    /// How long to poll before giving up (and how long an exec command may run).
    pub propagation_timeout: Duration,
    /// Tests only: the port the authoritative servers are polled on instead of 53, so that
    /// two test servers on `127.0.0.1` and `127.0.0.2` can share a free port. `None` (the
    /// configuration never sets it) means port 53.
    #[doc(hidden)]
    pub authoritative_port_override: Option<u16>,
}

impl Dns01Spec {
    /// The configured server asked about CNAMEs and name servers, if any; an exec provider
    /// without `propagation_resolver` has none (the solver then reads `/etc/resolv.conf`).
    pub fn resolver(&self) -> Option<SocketAddr> {
        match (&self.propagation_resolver, &self.provider) {
            (Some(resolver), _) => Some(*resolver),
            (None, DnsProvider::Rfc2136(settings)) => Some(settings.server),
            (None, DnsProvider::Exec { .. }) => None,
        }
    }
}

/// The ways certinel can publish a TXT record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsProvider {
    /// RFC 2136 dynamic update, signed with TSIG (RFC 8945), sent to the primary server.
    Rfc2136(Rfc2136Settings),
    /// A program called as `COMMAND present FQDN VALUE` and `COMMAND cleanup FQDN VALUE`
    /// (lego's exec convention; the FQDN ends with a dot), run like a deploy command by
    /// `crate::hook`: own process group killed on timeout or when it exits, minimal
    /// environment, bounded and redacted output.
    Exec {
        /// The program, run directly (no shell).
        command: PathBuf,
        /// What the configuration adds to its minimal environment.
        env: HookEnv,
    },
}

/// Where and how to send RFC 2136 updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rfc2136Settings {
    /// The primary server of the zone, `IP:PORT`.
    pub server: SocketAddr,
    /// The zone to update, absolute (`example.com.`).
    pub zone: String,
    /// The TSIG key's name as the server knows it.
    pub tsig_key_name: String,
    /// The TSIG secret (decoded from base64).
    pub tsig_key: TsigSecret,
    /// The TSIG MAC algorithm.
    pub tsig_algorithm: TsigAlgorithm,
}

/// A TSIG shared secret; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigSecret(pub Vec<u8>);

impl fmt::Debug for TsigSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TsigSecret(<redacted>)")
    }
}

/// The TSIG algorithms certinel signs with (those hickory implements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsigAlgorithm {
    /// `hmac-sha256`, the usual choice.
    HmacSha256,
    /// `hmac-sha384`.
    HmacSha384,
    /// `hmac-sha512`.
    HmacSha512,
}

impl TsigAlgorithm {
    /// The configuration keyword, e.g. `hmac-sha256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha384 => "hmac-sha384",
            Self::HmacSha512 => "hmac-sha512",
        }
    }
}

/// The text was not one of the supported TSIG algorithm names.
#[derive(Debug, thiserror::Error)]
#[error("unknown TSIG algorithm {0:?}; use \"hmac-sha256\", \"hmac-sha384\" or \"hmac-sha512\"")]
pub struct UnknownTsigAlgorithm(pub String);

impl FromStr for TsigAlgorithm {
    type Err = UnknownTsigAlgorithm;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "hmac-sha256" => Ok(Self::HmacSha256),
            "hmac-sha384" => Ok(Self::HmacSha384),
            "hmac-sha512" => Ok(Self::HmacSha512),
            _ => Err(UnknownTsigAlgorithm(text.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsig_algorithms_parse_case_insensitively_and_round_trip() {
        for algorithm in [
            TsigAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512,
        ] {
            assert_eq!(
                algorithm.as_str().parse::<TsigAlgorithm>().ok(),
                Some(algorithm)
            );
        }
        assert_eq!(
            "HMAC-SHA256".parse::<TsigAlgorithm>().ok(),
            Some(TsigAlgorithm::HmacSha256)
        );
        assert!("hmac-md5".parse::<TsigAlgorithm>().is_err());
    }

    #[test]
    fn debug_output_never_contains_the_tsig_secret() {
        let secret = TsigSecret(b"SECRET".to_vec());
        assert!(!format!("{secret:?}").contains("SECRET"));
    }

    #[test]
    fn the_resolver_defaults_to_the_update_server_only_for_rfc2136() {
        let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let rfc2136 = Dns01Spec {
            provider: DnsProvider::Rfc2136(Rfc2136Settings {
                server,
                zone: "example.com.".into(),
                tsig_key_name: "key".into(),
                tsig_key: TsigSecret(vec![1]),
                tsig_algorithm: TsigAlgorithm::HmacSha256,
            }),
            propagation_resolver: None,
            propagation_timeout: DEFAULT_PROPAGATION_TIMEOUT,
            authoritative_port_override: None,
        };
        assert_eq!(rfc2136.resolver(), Some(server));
        let exec = Dns01Spec {
            provider: DnsProvider::Exec {
                command: "/bin/true".into(),
                env: HookEnv::default(),
            },
            ..rfc2136
        };
        assert_eq!(exec.resolver(), None);
    }
}
