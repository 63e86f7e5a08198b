//! Builds the validated [`Config`] from the raw layer, once: fills in defaults, resolves
//! relative paths and runs the checks that relate several values.
//!
//! Invariant: the only file-system access is the `is_file` callback of [`Context`], used for
//! `hosts_file`; every other path is only resolved, because a missing certificate or key
//! is the probe's to report.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::config::ConfigError;
use crate::config::allow;
use crate::config::cas;
use crate::config::certificates;
use crate::config::cluster;
use crate::config::duration::{ConfigDuration, format_duration};
use crate::config::endpoint_source;
use crate::config::locate::join;
use crate::config::model::{
    AllowRule, ClientAuth, Config, ConnectionLimits, Endpoint, ExporterSettings, FileSource, Host,
    IpFamily, ProbeModule, ScannerSettings, StartTls, Target,
};
use crate::config::raw::{RawConfig, RawExporter, RawFile, RawProbeOptions, RawScanner};

/// Most probes in flight when `scanner.concurrency` is not set. Sweeps of remote endpoints
/// wait on round trips, not CPU: 512 sweeps 10,000 endpoints 100 ms away in about 4.5 s
/// (256: 8.3 s), and stays within the default connection budget of a process whose
/// descriptor limit is the usual 1,024.
pub(crate) const DEFAULT_CONCURRENCY: usize = 512;

/// Most addresses probed per target when `scanner.max_addresses` is not set.
pub(crate) const DEFAULT_MAX_ADDRESSES: usize = 16;
/// The probe deadline when neither the endpoint nor `scanner.timeout` sets one.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an endpoint or file is re-checked when it sets no interval.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// How often a managed certificate is checked against its CRLs when
/// `scanner.crl_interval` is not set.
pub(crate) const DEFAULT_CRL_INTERVAL: Duration = Duration::from_secs(3600);
/// The exporter's address when `exporter.listen` is not set: loopback, because a public
/// `/probe` would let anyone make certinel connect anywhere allowed.
pub(crate) const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 9798));
/// The `/probe` module used when a request names none.
pub(crate) const DEFAULT_MODULE: &str = "default";
/// Far more HTTP connections than a process has file descriptors for; a bound that keeps
/// the connection semaphore within its limits.
const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;
/// The longest HTTP header or idle timeout: a day is already no protection.
const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Re-checking more often than this only loads the servers.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What validation needs besides the raw values: the text (for positions), where it came
/// from, and how to look for the one file that must exist.
pub(crate) struct Context<'a> {
    pub(crate) text: &'a str,
    /// The configuration file as named by the user, for messages and `Config::source`.
    pub(crate) source: Option<&'a Path>,
    /// The directory relative paths are resolved against; `None` keeps them as written.
    pub(crate) base_dir: Option<&'a Path>,
    pub(crate) is_file: &'a dyn Fn(&Path) -> bool,
    /// This machine's host name, the default `[cluster] member`; asked only when needed.
    pub(crate) host_name: &'a dyn Fn() -> Option<String>,
}

/// Builds the model from the raw configuration.
pub(crate) fn build(raw: RawConfig, cx: &Context<'_>) -> Result<Config, ConfigError> {
    let scanner = scanner(raw.scanner, cx)?;
    let exporter = exporter(raw.exporter, scanner.default_timeout, cx)?;
    let mut endpoints = Vec::with_capacity(raw.endpoints.len());
    let mut seen: HashMap<(Target, String, Option<StartTls>), (usize, usize)> = HashMap::new();
    for (index, raw_endpoint) in raw.endpoints.into_iter().enumerate() {
        let prefix = format!("endpoint[{index}]");
        let target_span = raw_endpoint.get_ref().target.span();
        let endpoint = endpoint(
            raw_endpoint.into_inner(),
            &prefix,
            scanner.default_timeout,
            cx,
        )?;
        let identity = (
            endpoint.target.clone(),
            endpoint.server_name(),
            endpoint.probe.starttls,
        );
        if let Some((first_index, first_offset)) = seen.get(&identity) {
            let first_line = cx.line_of(*first_offset);
            return Err(cx.error(
                target_span,
                join(Some(&prefix), "target"),
                format!(
                    "duplicate endpoint: same target, sni and starttls as endpoint[{first_index}] \
                     (line {first_line}); remove one or give them different sni or starttls"
                ),
            ));
        }
        seen.insert(identity, (index, target_span.start));
        endpoints.push(endpoint);
    }
    let files = raw
        .files
        .into_iter()
        .enumerate()
        .map(|(index, file)| file_source(file.into_inner(), &format!("file[{index}]"), cx))
        .collect::<Result<_, _>>()?;
    let endpoint_sources =
        endpoint_source::endpoint_sources(raw.endpoint_sources, &exporter, &scanner, cx)?;
    let state_dir = certificates::state_dir(raw.state_dir.as_ref(), cx)?;
    let first_certificate = raw
        .certificates
        .iter()
        .find(|certificate| cas::uses_default_ca(certificate.get_ref()))
        .map(Spanned::span);
    let acme = certificates::acme(raw.acme, first_certificate, cx)?;
    let cas = cas::cas(raw.ca, cx)?;
    let known_cas = cas::known_names(acme.as_ref(), &cas);
    let certificates = certificates::certificates(raw.certificates, &known_cas, cx)?;
    let cluster = cluster::cluster(raw.cluster, cx)?;
    Ok(Config {
        source: cx.source.map(Path::to_owned),
        scanner,
        endpoints,
        files,
        endpoint_sources,
        exporter,
        state_dir,
        acme,
        cas,
        certificates,
        cluster,
    })
}

impl Context<'_> {
    pub(crate) fn error(&self, span: Range<usize>, key: String, problem: String) -> ConfigError {
        ConfigError::at(self.source, self.text, span, Some(key), problem)
    }

    pub(crate) fn line_of(&self, offset: usize) -> usize {
        crate::config::error::line_of(self.text, offset)
    }

    /// A configured path, made relative to the configuration file's directory.
    pub(crate) fn path(
        &self,
        value: &Spanned<String>,
        key: String,
    ) -> Result<PathBuf, ConfigError> {
        let written = value.get_ref();
        if written.is_empty() {
            return Err(self.error(
                value.span(),
                key,
                "empty path; write a path or remove the key".to_owned(),
            ));
        }
        Ok(match self.base_dir {
            Some(base) => base.join(written),
            None => PathBuf::from(written),
        })
    }

    pub(crate) fn timeout(
        &self,
        value: Option<&Spanned<ConfigDuration>>,
        key: String,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        if value.get_ref().0.is_zero() {
            return Err(self.error(
                value.span(),
                key,
                "timeout must be greater than zero; use e.g. 10s".to_owned(),
            ));
        }
        Ok(value.get_ref().0)
    }

    /// An optional value read with its `FromStr`, `default` when absent; the parse error is
    /// the message.
    pub(crate) fn parsed_or<T>(
        &self,
        value: Option<&Spanned<String>>,
        key: String,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let Some(value) = value else {
            return Ok(default);
        };
        value
            .get_ref()
            .parse()
            .map_err(|error: T::Err| self.error(value.span(), key, error.to_string()))
    }

    /// A whole number of at least `min` converted to `T`, `default` when absent; `problem`
    /// words the refusal of the written number.
    pub(crate) fn at_least<T>(
        &self,
        value: Option<&Spanned<i64>>,
        key: String,
        (min, default): (T, T),
        problem: impl FnOnce(i64) -> String,
    ) -> Result<T, ConfigError>
    where
        T: TryFrom<i64> + PartialOrd,
    {
        let Some(value) = value else {
            return Ok(default);
        };
        match T::try_from(*value.get_ref()) {
            Ok(number) if number >= min => Ok(number),
            _ => Err(self.error(value.span(), key, problem(*value.get_ref()))),
        }
    }

    /// Refuses an empty list with `problem`, which says what to write instead.
    pub(crate) fn non_empty<T>(
        &self,
        list: &Spanned<Vec<T>>,
        key: String,
        problem: &str,
    ) -> Result<(), ConfigError> {
        if list.get_ref().is_empty() {
            return Err(self.error(list.span(), key, problem.to_owned()));
        }
        Ok(())
    }

    /// Adds `entry` to `list`, refusing an entry that is already there with `problem`
    /// (given the entry's text), which says what to do instead.
    pub(crate) fn push_once(
        &self,
        list: &mut Vec<String>,
        entry: &Spanned<String>,
        key: String,
        problem: impl FnOnce(&str) -> String,
    ) -> Result<(), ConfigError> {
        let text = entry.get_ref();
        if list.contains(text) {
            return Err(self.error(entry.span(), key, problem(text)));
        }
        list.push(text.clone());
        Ok(())
    }

    /// A count that must be at least 1 (`None` when the key is absent); a 0 is refused
    /// with `meaning`, which says what the count is for.
    pub(crate) fn count(
        &self,
        value: Option<&Spanned<usize>>,
        key: &str,
        meaning: &str,
    ) -> Result<Option<usize>, ConfigError> {
        match value {
            Some(value) if *value.get_ref() == 0 => Err(self.error(
                value.span(),
                key.to_owned(),
                format!("must be at least 1; {meaning}"),
            )),
            value => Ok(value.map(|value| *value.get_ref())),
        }
    }

    pub(crate) fn interval(
        &self,
        value: Option<&Spanned<ConfigDuration>>,
        key: String,
    ) -> Result<Duration, ConfigError> {
        let Some(value) = value else {
            return Ok(DEFAULT_INTERVAL);
        };
        let interval = value.get_ref().0;
        if interval < MIN_INTERVAL {
            return Err(self.error(
                value.span(),
                key,
                format!(
                    "interval {} is too short; use at least {}",
                    format_duration(interval),
                    format_duration(MIN_INTERVAL)
                ),
            ));
        }
        Ok(interval)
    }
}

fn scanner(raw: RawScanner, cx: &Context<'_>) -> Result<ScannerSettings, ConfigError> {
    let count = |value: &Option<Spanned<usize>>, name: &str, meaning: &str| {
        cx.count(value.as_ref(), &format!("scanner.{name}"), meaning)
    };
    let concurrency = count(
        &raw.concurrency,
        "concurrency",
        "it is how many probes run at once",
    )?
    .unwrap_or(DEFAULT_CONCURRENCY);
    let default_timeout = cx.timeout(
        raw.timeout.as_ref(),
        "scanner.timeout".to_owned(),
        DEFAULT_TIMEOUT,
    )?;
    let hosts_file = match &raw.hosts_file {
        None => None,
        Some(value) => {
            let key = "scanner.hosts_file".to_owned();
            let path = cx.path(value, key.clone())?;
            if !(cx.is_file)(&path) {
                // Name the file as written: the resolved path depends on the machine.
                let written = value.get_ref();
                let place = match cx.base_dir {
                    Some(_) if Path::new(written).is_relative() => {
                        " in the configuration file's directory"
                    }
                    _ => "",
                };
                return Err(cx.error(
                    value.span(),
                    key,
                    format!("no such file {written:?}{place}; create it or remove hosts_file"),
                ));
            }
            Some(path)
        }
    };
    let max_connections = count(
        &raw.max_connections,
        "max_connections",
        "it is how many probe sockets may be open at once (remove it to derive it from the \
         file descriptor limit)",
    )?;
    let addresses_meaning = "it is how many addresses of one target are probed";
    let max_addresses = count(&raw.max_addresses, "max_addresses", addresses_meaning)?
        .unwrap_or(DEFAULT_MAX_ADDRESSES);
    Ok(ScannerSettings {
        concurrency,
        default_timeout,
        hosts_file,
        max_connections,
        max_addresses,
        crl: raw.crl.is_none_or(Spanned::into_inner),
        crl_interval: match &raw.crl_interval {
            None => DEFAULT_CRL_INTERVAL,
            Some(value) => cx.interval(Some(value), "scanner.crl_interval".to_owned())?,
        },
    })
}

fn exporter(
    raw: RawExporter,
    default_timeout: Duration,
    cx: &Context<'_>,
) -> Result<ExporterSettings, ConfigError> {
    let connections = connection_limits(&raw, cx)?;
    let probe_allow = match raw.probe_allow {
        None => allow::loopback_only(),
        Some(entries) => entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                entry.get_ref().parse::<AllowRule>().map_err(|e| {
                    cx.error(
                        entry.span(),
                        format!("exporter.probe_allow[{index}]"),
                        e.to_string(),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let mut modules = BTreeMap::new();
    for (name, options) in raw.module {
        let prefix = join(Some("exporter.module"), &name);
        let module = probe_options(options.into_inner(), &prefix, default_timeout, cx)?;
        modules.insert(name, module);
    }
    modules
        .entry(DEFAULT_MODULE.to_owned())
        .or_insert_with(|| ProbeModule::with_timeout(default_timeout));
    Ok(ExporterSettings {
        listen: raw.listen.map_or(DEFAULT_LISTEN, |listen| listen.0),
        probe_allow,
        modules,
        connections,
    })
}

/// `[exporter] header_read_timeout`, `idle_timeout` and `max_connections`.
fn connection_limits(raw: &RawExporter, cx: &Context<'_>) -> Result<ConnectionLimits, ConfigError> {
    let defaults = ConnectionLimits::default();
    let key = "exporter.max_connections";
    let meaning = "it is how many HTTP clients may be connected at once";
    let max_connections = match &raw.max_connections {
        Some(value) if *value.get_ref() > MAX_CONNECTIONS_LIMIT => {
            return Err(cx.error(
                value.span(),
                key.to_owned(),
                format!("must be at most {MAX_CONNECTIONS_LIMIT}"),
            ));
        }
        value => cx
            .count(value.as_ref(), key, meaning)?
            .unwrap_or(defaults.max_connections),
    };
    let timeout = |value: &Option<Spanned<ConfigDuration>>, name: &str, default| {
        let key = format!("exporter.{name}");
        let timeout = cx.timeout(value.as_ref(), key.clone(), default)?;
        match value {
            Some(value) if timeout > MAX_HTTP_TIMEOUT => Err(cx.error(
                value.span(),
                key,
                format!("must be at most {}", format_duration(MAX_HTTP_TIMEOUT)),
            )),
            _ => Ok(timeout),
        }
    };
    Ok(ConnectionLimits {
        header_read_timeout: timeout(
            &raw.header_read_timeout,
            "header_read_timeout",
            defaults.header_read_timeout,
        )?,
        idle_timeout: timeout(&raw.idle_timeout, "idle_timeout", defaults.idle_timeout)?,
        max_connections,
    })
}

fn endpoint(
    mut raw: crate::config::raw::RawEndpoint,
    prefix: &str,
    default_timeout: Duration,
    cx: &Context<'_>,
) -> Result<Endpoint, ConfigError> {
    let options = raw.take_probe_options();
    if let Some(family) = &options.ip_family {
        check_family(raw.target.get_ref(), family, prefix, cx)?;
    }
    let interval = cx.interval(raw.interval.as_ref(), join(Some(prefix), "interval"))?;
    let module = probe_options(options, prefix, default_timeout, cx)?;
    Ok(Endpoint::probed_with(
        raw.target.into_inner(),
        module,
        interval,
    ))
}

/// A literal address of one family can never be probed over the other.
fn check_family(
    target: &Target,
    family: &Spanned<IpFamily>,
    prefix: &str,
    cx: &Context<'_>,
) -> Result<(), ConfigError> {
    let (literal, wanted) = match (&target.host, family.get_ref()) {
        (Host::Ip(IpAddr::V4(_)), IpFamily::Ipv6) => ("IPv4", "ipv6"),
        (Host::Ip(IpAddr::V6(_)), IpFamily::Ipv4) => ("IPv6", "ipv4"),
        _ => return Ok(()),
    };
    Err(cx.error(
        family.span(),
        join(Some(prefix), "ip_family"),
        format!(
            "target {target} is an {literal} address but ip_family is {wanted:?}; \
             remove ip_family or change the target"
        ),
    ))
}

/// A client certificate file and its key file, as written.
pub(crate) type ClientFiles<'a> = (&'a Spanned<String>, &'a Spanned<String>);

/// `client_cert` and `client_key` of a table whose keys `key` names: both or neither.
pub(crate) fn client_cert_and_key<'a>(
    cert: Option<&'a Spanned<String>>,
    key_file: Option<&'a Spanned<String>>,
    key: impl Fn(&str) -> String,
    cx: &Context<'_>,
) -> Result<Option<ClientFiles<'a>>, ConfigError> {
    match (cert, key_file) {
        (Some(cert), Some(key_file)) => Ok(Some((cert, key_file))),
        (None, None) => Ok(None),
        (Some(cert), None) => Err(cx.error(
            cert.span(),
            key("client_cert"),
            "client_cert needs client_key; add client_key = \"...\" (the certificate's \
             private key, PEM)"
                .to_owned(),
        )),
        (None, Some(key_file)) => Err(cx.error(
            key_file.span(),
            key("client_key"),
            "client_key needs client_cert; add client_cert = \"...\" or remove client_key"
                .to_owned(),
        )),
    }
}

/// The options shared by endpoints and `/probe` modules; `prefix` is the table's key.
pub(crate) fn probe_options(
    raw: RawProbeOptions,
    prefix: &str,
    default_timeout: Duration,
    cx: &Context<'_>,
) -> Result<ProbeModule, ConfigError> {
    let key = |name: &str| join(Some(prefix), name);
    let pair = client_cert_and_key(raw.client_cert.as_ref(), raw.client_key.as_ref(), key, cx)?;
    let client_auth = match pair {
        Some((cert, key_file)) => Some(ClientAuth {
            cert: cx.path(cert, key("client_cert"))?,
            key: cx.path(key_file, key("client_key"))?,
        }),
        None => None,
    };
    let ca_file = match &raw.ca_file {
        Some(path) => Some(cx.path(path, key("ca_file"))?),
        None => None,
    };
    Ok(ProbeModule {
        sni: raw.sni.map(|sni| sni.0),
        starttls: raw.starttls,
        ca_file,
        client_auth,
        timeout: cx.timeout(raw.timeout.as_ref(), key("timeout"), default_timeout)?,
        ip_family: raw.ip_family.map(Spanned::into_inner).unwrap_or_default(),
        resolve: raw.resolve.unwrap_or_default(),
    })
}

fn file_source(raw: RawFile, prefix: &str, cx: &Context<'_>) -> Result<FileSource, ConfigError> {
    let path = cx.path(&raw.path, join(Some(prefix), "path"))?;
    Ok(FileSource {
        path: path.to_string_lossy().into_owned(),
        interval: cx.interval(raw.interval.as_ref(), join(Some(prefix), "interval"))?,
    })
}
