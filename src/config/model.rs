//! The validated configuration model: what the rest of certinel consumes.
//!
//! Every value here has already been checked; holders of a [`Config`] never re-validate.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A complete, validated certinel configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this configuration was read from, when there was one.
    pub source: Option<PathBuf>,
    /// Settings shared by every probe.
    pub scanner: ScannerSettings,
    /// Live TLS endpoints to probe.
    pub endpoints: Vec<Endpoint>,
    /// Certificate files, directories or globs to inspect.
    pub files: Vec<FileSource>,
    /// Prometheus file_sd files whose targets are probed like endpoints
    /// (`[[endpoint_source]]`); `certinel run` reads them, see `config::file_sd`.
    pub endpoint_sources: Vec<EndpointSource>,
    /// The HTTP exporter (`certinel run`).
    pub exporter: ExporterSettings,
    /// Where accounts, certificate versions, renewal state and the audit log live.
    /// Default `/var/lib/certinel`.
    pub state_dir: PathBuf,
    /// The ACME CA (`[acme]`, named [`DEFAULT_CA`] in a certificate's `ca` list); present
    /// whenever a certificate uses it.
    pub acme: Option<AcmeConfig>,
    /// Further CAs by name (`[ca.NAME]`), for certificates that list them in `ca`.
    pub cas: std::collections::BTreeMap<String, AcmeConfig>,
    /// Certificates certinel obtains and renews.
    pub certificates: Vec<CertificateConfig>,
    /// `[cluster]`: replicas sharing state through etcd. `None`: one machine, the
    /// filesystem store.
    pub cluster: Option<ClusterConfig>,
}

/// The name `[acme]` goes by in a certificate's `ca` list, and the list of a certificate
/// that sets none.
pub const DEFAULT_CA: &str = "acme";

/// Consecutive failures at one CA (other than it being unreachable, failing, rate-limited
/// or lacking the profile, which hand over at once) after which the next attempt starts
/// with the next CA, when a certificate sets no `ca_failover_after`.
pub const DEFAULT_CA_FAILOVER_AFTER: u32 = 3;

/// `max_concurrent_orders` when a CA's table sets none: orders one process keeps open at
/// once at one CA directory.
pub const DEFAULT_MAX_CONCURRENT_ORDERS: usize = 32;

/// The largest `max_concurrent_orders` a CA's table may set.
pub const MAX_CONCURRENT_ORDERS_LIMIT: usize = 1024;

impl Config {
    /// The CA a certificate's `ca` list names `name`: [`DEFAULT_CA`] is `[acme]`, any other
    /// name a `[ca.NAME]` table. Validation guarantees every listed name resolves.
    pub fn ca(&self, name: &str) -> Option<&AcmeConfig> {
        if name == DEFAULT_CA {
            self.acme.as_ref()
        } else {
            self.cas.get(name)
        }
    }
}

/// `[acme]` or `[ca.NAME]`: a CA certificates are obtained from.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeConfig {
    /// The directory URL (Let's Encrypt, its staging, ZeroSSL, Pebble, ...).
    pub directory: String,
    /// The directory `certinel renew --dry-run` uses instead, e.g. a staging CA.
    pub dry_run_directory: Option<String>,
    /// Account contact URLs, usually `mailto:` addresses.
    pub contact: Vec<String>,
    /// Extra trust root for the CA's own HTTPS API (replaces the system roots).
    pub ca_file: Option<PathBuf>,
    /// External account binding, required by some CAs.
    pub eab: Option<crate::cert::Eab>,
    /// How long to wait for validation and issuance. Default 5 minutes.
    pub poll_timeout: Duration,
    /// The DNS server the CAA preflight asks; `None`: the system's first nameserver.
    pub preflight_resolver: Option<std::net::SocketAddr>,
    /// The CA's issuer domain names for the CAA preflight, overriding the directory's
    /// `meta.caaIdentities`.
    pub caa_identities: Vec<String>,
    /// How many orders this process keeps open at once at this CA's directory
    /// (`max_concurrent_orders`); further renewals wait for one to end.
    pub max_concurrent_orders: usize,
}

/// `[cluster]`: the etcd cluster replicas share state through, and this replica's place in
/// it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// etcd client URLs, `http://HOST:PORT` or `https://HOST:PORT`, all of one scheme.
    pub etcd: Vec<String>,
    /// Trust root for the etcd servers' certificates (`https://` only); `None`: the
    /// platform's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate for etcd's `--client-cert-auth` (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (with `client_cert`).
    pub client_key: Option<PathBuf>,
    /// etcd user name (with `password`).
    pub username: Option<String>,
    /// etcd password (with `username`).
    pub password: Option<ClusterPassword>,
    /// Every key certinel writes starts with it; starts and ends with `/`. Default
    /// [`DEFAULT_CLUSTER_PREFIX`].
    pub prefix: String,
    /// This replica's name among the members: letters, digits, `.`, `_`, `-`, at most 63.
    /// Default: the host name.
    pub member: String,
    /// TTL of this replica's etcd leases (membership, locks), whole seconds from 2 s to
    /// 5 min. Default 15 s.
    pub lease_ttl: Duration,
    /// How long audit events are kept in etcd (by their time); older ones are deleted.
    /// From 1 day to 100 years, default 90 days.
    pub audit_retention: Duration,
    /// The key-encryption key that seals private keys and account keys in etcd (a 0600
    /// file written by `certinel cluster keygen`).
    pub key_encryption_key_file: PathBuf,
    /// Earlier key-encryption keys, still able to open values sealed before a rotation.
    pub key_encryption_key_previous: Vec<PathBuf>,
}

/// The key prefix of `[cluster]` when the file sets none.
pub const DEFAULT_CLUSTER_PREFIX: &str = "/certinel/";

/// An etcd password. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterPassword(pub String);

impl std::fmt::Debug for ClusterPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterPassword(<redacted>)")
    }
}

/// `[[certificate]]`: one certificate to obtain and keep renewed.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateConfig {
    /// Unique, file-system-safe name: the directory under `state_dir/certs/`.
    pub name: String,
    /// The names to cover, in order: DNS names, wildcards and IP addresses.
    pub identifiers: Vec<crate::cert::Identifier>,
    /// The private key type. Default ecdsa-p256.
    pub key: crate::cert::KeyAlgorithm,
    /// The lifetime asked for (cert-manager `duration`), where the CA honours it.
    /// Default 90 days.
    pub duration: Duration,
    /// When to renew (cert-manager `renewBefore` / `renewBeforePercentage`).
    pub renew_before: crate::cert::RenewBefore,
    /// How control of the names is proven.
    pub challenge: crate::cert::ChallengeSpec,
    /// Shell commands run (`sh -c`) after a new version goes live.
    pub deploy: Vec<String>,
    /// Deadline for each deploy command. Default 60 seconds.
    pub deploy_timeout: Duration,
    /// What the deploy commands (and a dns-01 exec hook) get beyond their minimal
    /// environment: `env` and `env_passthrough`.
    pub env: crate::cert::HookEnv,
    /// Versions kept on disk (at least 2). Default 5.
    pub history: usize,
    /// The ACME profile to request, passed through to CAs that offer profiles.
    pub profile: Option<String>,
    /// Endpoints that must serve a new version after its deploy commands ran (`verify`),
    /// probed on every resolved address. Empty: no served-certificate check.
    pub verify: Vec<Target>,
    /// How long the endpoints in `verify` may take to serve a new version. Default 2 minutes.
    pub verify_timeout: Duration,
    /// What a failed served-certificate check does. Default [`OnVerifyFailure::Rollback`].
    pub on_verify_failure: OnVerifyFailure,
    /// The CAs to obtain from, by name, in order of preference (`ca`). Never empty; default
    /// `[DEFAULT_CA]`. A CA that cannot serve within an attempt hands over to the next.
    pub ca: Vec<String>,
    /// Consecutive failures of other kinds (validation) at one CA after which the next
    /// attempt starts with the next CA. Default [`DEFAULT_CA_FAILOVER_AFTER`].
    pub ca_failover_after: u32,
}

/// `on_verify_failure`: what happens when the `verify` endpoints do not serve a new version
/// within `verify_timeout`. Either way the renewal counts as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnVerifyFailure {
    /// `current` returns to `previous` and the deploy commands run again.
    #[default]
    Rollback,
    /// The new version stays current.
    Keep,
}

impl CertificateConfig {
    /// The DNS names among the identifiers (IP addresses left out), as the store and the
    /// planner compare them with a certificate's DNS subjectAltNames.
    pub fn dns_names(&self) -> Vec<String> {
        self.identifiers
            .iter()
            .filter_map(|identifier| match identifier {
                crate::cert::Identifier::Dns(name) => Some(name.clone()),
                crate::cert::Identifier::Ip(_) => None,
            })
            .collect()
    }
}

/// Settings of the HTTP exporter served by `certinel run`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterSettings {
    /// Listen address; default `127.0.0.1:9798` (loopback: a public `/probe` is an open relay).
    pub listen: std::net::SocketAddr,
    /// Targets `/probe` may connect to. Default: loopback only.
    pub probe_allow: Vec<AllowRule>,
    /// Named `/probe` modules (`module=NAME`); `default` always exists.
    pub modules: std::collections::BTreeMap<String, ProbeModule>,
    /// How long a client may take and how many may be connected; read at start only.
    pub connections: ConnectionLimits,
}

/// What the exporter allows its HTTP clients: `[exporter] header_read_timeout`,
/// `idle_timeout` and `max_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time from a request's first byte to the end of its head. Default 10 s.
    pub header_read_timeout: Duration,
    /// Time a connection may wait for the first byte of its next request (after accept or
    /// after the previous response). Default 60 s.
    pub idle_timeout: Duration,
    /// Connections open at once; further ones are closed as soon as they are accepted.
    /// Default 1,024.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// One entry of the `/probe` allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowRule {
    /// A network in CIDR notation; an address target (or every resolved address of a
    /// name) must fall inside it.
    Cidr {
        /// Network address.
        network: IpAddr,
        /// Prefix length.
        prefix: u8,
    },
    /// A host name pattern: exact (`db.example.com`) or `*.example.com` (one or more labels).
    HostPattern(String),
}

/// How a TLS endpoint is probed: the settings of a `/probe?module=NAME` module
/// (blackbox_exporter's module concept), of an `[[endpoint]]` and of an
/// `[[endpoint_source]]`'s targets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeModule {
    /// The name sent as SNI and checked against the certificate; `None`: the target's host
    /// (or, for `/probe`, the request's `hostname=`, which overrides it).
    pub sni: Option<String>,
    /// A plaintext protocol to upgrade with before the TLS handshake.
    pub starttls: Option<StartTls>,
    /// Extra trust roots (PEM) added to the platform and webpki roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and key for endpoints that demand mutual TLS.
    pub client_auth: Option<ClientAuth>,
    /// Deadline covering connect, STARTTLS and handshake for one address (for `/probe`,
    /// capped by the scrape timeout Prometheus sends).
    pub timeout: Duration,
    /// Which address families to probe.
    pub ip_family: IpFamily,
    /// Whether to probe every resolved address or only the first.
    pub resolve: ResolveMode,
}

/// Settings that apply to the whole sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct ScannerSettings {
    /// Most probes in flight at once.
    pub concurrency: usize,
    /// Deadline for one probe when an endpoint sets none.
    pub default_timeout: Duration,
    /// A hosts file consulted before DNS (same format as `/etc/hosts`).
    pub hosts_file: Option<PathBuf>,
    /// Most probe sockets open at once in the whole process (sweeps, `/probe`, served
    /// checks). `None`: derived from `RLIMIT_NOFILE` when the budget is created
    /// (`scan::budget::default_max_connections`).
    pub max_connections: Option<usize>,
    /// Most addresses probed per target; the rest are reported as truncated. Default 16.
    pub max_addresses: usize,
    /// Check scheduled endpoint probes' leaves against the CRLs their distribution points
    /// name (`http://` only). Default on; a leaf without distribution points costs nothing.
    pub crl: bool,
    /// How often `certinel run` checks each managed certificate's current version against
    /// the CRLs its leaf names (with `crl` on). Default 1 hour.
    pub crl_interval: Duration,
}

/// One live TLS endpoint to probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Where to connect.
    pub target: Target,
    /// How to probe it: SNI, STARTTLS, trust roots, client certificate, deadline, address
    /// families and resolution, the same settings a `/probe` module has.
    pub probe: ProbeModule,
    /// How often `certinel run` re-probes this endpoint (jittered).
    pub interval: Duration,
    /// Extra labels on every series of this endpoint, sorted by name: a file_sd group's
    /// labels. Empty for `[[endpoint]]`.
    pub labels: Vec<(String, String)>,
}

/// `[[endpoint_source]]`: Prometheus file_sd files listing targets to probe.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSource {
    /// Glob patterns of the files, resolved against the configuration file's directory.
    pub files: Vec<String>,
    /// How often each target is re-probed (jittered).
    pub interval: Duration,
    /// The probe settings of targets whose group selects no module: the source's `module`
    /// or its own options.
    pub probe: ProbeModule,
}

impl ProbeModule {
    /// No options (the `default` `/probe` module): the usual trust roots, every address of
    /// either family, and `timeout`.
    pub fn with_timeout(timeout: Duration) -> ProbeModule {
        ProbeModule {
            sni: None,
            starttls: None,
            ca_file: None,
            client_auth: None,
            timeout,
            ip_family: IpFamily::Any,
            resolve: ResolveMode::All,
        }
    }
}

impl Endpoint {
    /// An endpoint with defaults for everything but its target.
    pub fn new(target: Target, timeout: Duration) -> Endpoint {
        let probe = ProbeModule::with_timeout(timeout);
        Endpoint::probed_with(target, probe, Duration::from_secs(300))
    }

    /// An endpoint probed with `probe`'s settings every `interval`, without labels.
    pub fn probed_with(target: Target, probe: ProbeModule, interval: Duration) -> Endpoint {
        Endpoint {
            target,
            probe,
            interval,
            labels: Vec::new(),
        }
    }

    /// The server name used for SNI and hostname verification.
    pub fn server_name(&self) -> String {
        match &self.probe.sni {
            Some(sni) => sni.clone(),
            None => self.target.host.to_string(),
        }
    }
}

/// A host and port, as written by the user (`host:port`, `[v6]:port` or `https://host[:port]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The host part.
    pub host: Host,
    /// The TCP port.
    pub port: u16,
}

/// The host part of a [`Target`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, resolved at probe time.
    Name(String),
    /// A literal IP address.
    Ip(IpAddr),
}

/// Plaintext protocols certinel can upgrade to TLS before the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartTls {
    /// SMTP `STARTTLS` (RFC 3207).
    Smtp,
    /// IMAP `STARTTLS` (RFC 3501).
    Imap,
    /// POP3 `STLS` (RFC 2595).
    Pop3,
    /// FTP `AUTH TLS` (RFC 4217).
    Ftp,
    /// LDAP StartTLS extended operation (RFC 4511).
    Ldap,
    /// PostgreSQL `SSLRequest`.
    Postgres,
    /// MySQL `SSL_REQUEST` in the handshake response.
    Mysql,
    /// XMPP `<starttls/>` (RFC 6120).
    Xmpp,
}

/// Paths of a client certificate and its private key (PEM).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientAuth {
    /// The client certificate chain.
    pub cert: PathBuf,
    /// The client private key.
    pub key: PathBuf,
}

/// Which address families of a name to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IpFamily {
    /// IPv4 and IPv6.
    #[default]
    Any,
    /// IPv4 only.
    Ipv4,
    /// IPv6 only.
    Ipv6,
}

/// How many resolved addresses to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResolveMode {
    /// Every address: load balancers often serve different certificates per address.
    #[default]
    All,
    /// Only the first address the resolver returns.
    First,
}

/// A certificate file, a directory of PEM files, or a glob pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileSource {
    /// The path or pattern as configured.
    pub path: String,
    /// How often `certinel run` re-reads it.
    pub interval: Duration,
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl std::fmt::Display for Target {
    /// `host:port`, with IPv6 literals in brackets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}
