//! Validation of `[cluster]`: the etcd endpoints and how to authenticate to them, the key
//! prefix, this replica's member name, the lease TTL, the audit retention and the
//! key-encryption key files.
//!
//! Validation stays pure: the host name (the default member name) comes from
//! [`Context::host_name`], and the key files are only checked to exist; their mode is
//! checked when they are loaded (`cluster::keyring`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::config::ConfigError;
use crate::config::duration::{ConfigDuration, format_duration};
use crate::config::model::{ClusterConfig, ClusterPassword, DEFAULT_CLUSTER_PREFIX, Target};
use crate::config::raw::RawCluster;
use crate::config::target::TargetProblem;
use crate::config::validate::{Context, client_cert_and_key};

/// `lease_ttl` when the file sets none.
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// The shortest lease: below it a replica's keep-alives compete with network hiccups.
const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
/// The longest lease: a crashed holder blocks its certificates for this long.
const MAX_LEASE_TTL: Duration = Duration::from_secs(300);
/// `audit_retention` when the file sets none.
const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(90 * 86_400);
/// The shortest audit retention: events must outlive the renewal that wrote them.
const MIN_AUDIT_RETENTION: Duration = Duration::from_secs(86_400);
/// The longest audit retention (about 100 years: "keep everything").
const MAX_AUDIT_RETENTION: Duration = Duration::from_secs(36_500 * 86_400);
/// The longest member name (a DNS label's limit, so host names fit).
const MAX_MEMBER_LEN: usize = 63;
/// Where Linux keeps the host name.
const HOST_NAME_FILE: &str = "/proc/sys/kernel/hostname";
/// The key of the current key-encryption key file.
const KEK_KEY: &str = "cluster.key_encryption_key_file";
/// The example in messages about a missing or empty `etcd`.
const ETCD_EXAMPLE: &str =
    r#"etcd = ["https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"]"#;

/// The TLS files of `[cluster]`, resolved and found to exist.
struct TlsFiles {
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

/// `[cluster]`, validated; `None` when the file has no such table.
pub(crate) fn cluster(
    raw: Option<Spanned<RawCluster>>,
    cx: &Context<'_>,
) -> Result<Option<ClusterConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let table = raw.span();
    let raw = raw.into_inner();
    // Values first, then the files that must exist, so a fixture for one value's message
    // needs no files.
    let (etcd, tls) = endpoints(raw.etcd.as_ref(), &table, cx)?;
    let (username, password) = credentials(&raw, cx)?;
    let prefix = prefix(raw.prefix.as_ref(), cx)?;
    let member = member(raw.member.as_ref(), &table, cx)?;
    let lease_ttl = lease_ttl(raw.lease_ttl.as_ref(), cx)?;
    // From a day to about a hundred years.
    let audit_retention = duration_within(
        raw.audit_retention.as_ref(),
        "cluster.audit_retention",
        (
            MIN_AUDIT_RETENTION,
            DEFAULT_AUDIT_RETENTION,
            MAX_AUDIT_RETENTION,
        ),
        cx,
    )?;
    let tls_files = tls_files(&raw, tls, cx)?;
    let Some(current_key) = &raw.key_encryption_key_file else {
        return Err(cx.error(
            table,
            KEK_KEY.to_owned(),
            "required; write a key with `certinel cluster keygen /etc/certinel/cluster.kek` \
             and add key_encryption_key_file = \"/etc/certinel/cluster.kek\""
                .to_owned(),
        ));
    };
    let key_encryption_key_file = existing_file(current_key, KEK_KEY, cx)?;
    let key_encryption_key_previous = previous_keys(
        raw.key_encryption_key_previous.as_ref(),
        &key_encryption_key_file,
        cx,
    )?;
    Ok(Some(ClusterConfig {
        etcd,
        ca_file: tls_files.ca_file,
        client_cert: tls_files.client_cert,
        client_key: tls_files.client_key,
        username,
        password,
        prefix,
        member,
        lease_ttl,
        audit_retention,
        key_encryption_key_file,
        key_encryption_key_previous,
    }))
}

/// This machine's host name, or `None` when it cannot be read.
pub(crate) fn system_host_name() -> Option<String> {
    let name = std::fs::read_to_string(HOST_NAME_FILE).ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The `etcd` URLs and whether they use TLS: at least one, each `http://HOST:PORT` or
/// `https://HOST:PORT`, all of one scheme, none twice.
fn endpoints(
    raw: Option<&Spanned<Vec<Spanned<String>>>>,
    table: &std::ops::Range<usize>,
    cx: &Context<'_>,
) -> Result<(Vec<String>, bool), ConfigError> {
    let Some(list) = raw else {
        return Err(cx.error(
            table.clone(),
            "cluster.etcd".to_owned(),
            format!("required; list the etcd client URLs, e.g. {ETCD_EXAMPLE}"),
        ));
    };
    if list.get_ref().is_empty() {
        return Err(cx.error(
            list.span(),
            "cluster.etcd".to_owned(),
            format!("empty list; list the etcd client URLs, e.g. {ETCD_EXAMPLE}"),
        ));
    }
    let mut urls: Vec<String> = Vec::with_capacity(list.get_ref().len());
    let mut first_tls = None;
    for (index, entry) in list.get_ref().iter().enumerate() {
        let key = format!("cluster.etcd[{index}]");
        let url = entry.get_ref();
        let tls = etcd_url(url).map_err(|problem| cx.error(entry.span(), key.clone(), problem))?;
        match first_tls {
            None => first_tls = Some(tls),
            Some(first) if first != tls => {
                return Err(cx.error(
                    entry.span(),
                    key,
                    "mixes http:// and https:// endpoints; use one scheme for every endpoint"
                        .to_owned(),
                ));
            }
            Some(_) => {}
        }
        cx.push_once(&mut urls, entry, key, |url| {
            format!("{url:?} is listed twice; list each endpoint once")
        })?;
    }
    Ok((urls, first_tls.unwrap_or(false)))
}

/// Checks one etcd URL; `Ok(true)` for `https://`.
fn etcd_url(url: &str) -> Result<bool, String> {
    const FORM: &str = "write http://HOST:PORT or https://HOST:PORT";
    let (tls, authority) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(match url.split_once("://") {
            Some((scheme, _)) => format!("unsupported scheme {scheme:?}; {FORM}"),
            None => format!("{url:?} has no scheme; {FORM}"),
        });
    };
    if let Some(start) = authority.find(['/', '?', '#']) {
        return Err(format!(
            "{url:?} has a path; an etcd URL is only a scheme, host and port, remove {:?}",
            &authority[start..]
        ));
    }
    if authority.contains('@') {
        return Err("user info (user@) is not allowed; set username and password".to_owned());
    }
    match authority.parse::<Target>() {
        Ok(_) => Ok(tls),
        Err(error) => Err(match error.problem() {
            TargetProblem::NoPort { host } => {
                let scheme = if tls { "https" } else { "http" };
                format!("no port; add etcd's client port, e.g. {scheme}://{host}:2379")
            }
            problem => format!("{url:?}: {problem}"),
        }),
    }
}

/// `ca_file`, `client_cert` and `client_key`: files that exist, the last two together, and
/// only for `https://` endpoints.
fn tls_files(raw: &RawCluster, tls: bool, cx: &Context<'_>) -> Result<TlsFiles, ConfigError> {
    let settings = [
        ("ca_file", &raw.ca_file),
        ("client_cert", &raw.client_cert),
        ("client_key", &raw.client_key),
    ];
    if !tls {
        if let Some((name, Some(value))) = settings.iter().find(|(_, value)| value.is_some()) {
            return Err(cx.error(
                value.span(),
                format!("cluster.{name}"),
                format!(
                    "{name} is for TLS but the etcd endpoints are http://; write https:// URLs \
                     or remove {name}"
                ),
            ));
        }
    }
    client_cert_and_key(
        raw.client_cert.as_ref(),
        raw.client_key.as_ref(),
        |name| format!("cluster.{name}"),
        cx,
    )?;
    let file = |value: &Option<Spanned<String>>, name: &str| {
        value
            .as_ref()
            .map(|value| existing_file(value, &format!("cluster.{name}"), cx))
            .transpose()
    };
    Ok(TlsFiles {
        ca_file: file(&raw.ca_file, "ca_file")?,
        client_cert: file(&raw.client_cert, "client_cert")?,
        client_key: file(&raw.client_key, "client_key")?,
    })
}

/// `username` and `password`, both or neither, neither empty. Messages never quote the
/// password.
fn credentials(
    raw: &RawCluster,
    cx: &Context<'_>,
) -> Result<(Option<String>, Option<ClusterPassword>), ConfigError> {
    match (&raw.username, &raw.password) {
        (None, None) => Ok((None, None)),
        (Some(username), None) => Err(cx.error(
            username.span(),
            "cluster.username".to_owned(),
            "username needs password; add password = \"...\" or remove username".to_owned(),
        )),
        (None, Some(password)) => Err(cx.error(
            password.span(),
            "cluster.password".to_owned(),
            "password needs username; add username = \"...\" or remove password".to_owned(),
        )),
        (Some(username), Some(_)) if username.get_ref().is_empty() => Err(cx.error(
            username.span(),
            "cluster.username".to_owned(),
            "empty; write the etcd user name or remove username and password".to_owned(),
        )),
        (Some(_), Some(password)) if password.get_ref().is_empty() => Err(cx.error(
            password.span(),
            "cluster.password".to_owned(),
            "empty; write the etcd user's password or remove username and password".to_owned(),
        )),
        (Some(username), Some(password)) => Ok((
            Some(username.get_ref().clone()),
            Some(ClusterPassword(password.get_ref().clone())),
        )),
    }
}

/// `prefix`: starts and ends with `/`, no spaces or control characters.
fn prefix(raw: Option<&Spanned<String>>, cx: &Context<'_>) -> Result<String, ConfigError> {
    let Some(value) = raw else {
        return Ok(DEFAULT_CLUSTER_PREFIX.to_owned());
    };
    let prefix = value.get_ref();
    let problem = if !prefix.starts_with('/') || !prefix.ends_with('/') {
        format!("{prefix:?} must start and end with '/', e.g. \"{DEFAULT_CLUSTER_PREFIX}\"")
    } else if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        format!("{prefix:?} contains spaces or control characters; remove them")
    } else {
        return Ok(prefix.clone());
    };
    Err(cx.error(value.span(), "cluster.prefix".to_owned(), problem))
}

/// `member`, or the host name when unset; either way a safe name.
fn member(
    raw: Option<&Spanned<String>>,
    table: &std::ops::Range<usize>,
    cx: &Context<'_>,
) -> Result<String, ConfigError> {
    const RULE: &str = "letters, digits, '.', '_' or '-', starting with a letter or digit, \
                        at most 63 characters";
    if let Some(value) = raw {
        let name = value.get_ref();
        if is_member_name(name) {
            return Ok(name.clone());
        }
        return Err(cx.error(
            value.span(),
            "cluster.member".to_owned(),
            format!("{name:?} is not a member name; use {RULE}"),
        ));
    }
    let key = "cluster.member".to_owned();
    match (cx.host_name)() {
        Some(name) if is_member_name(&name) => Ok(name),
        Some(name) => Err(cx.error(
            table.clone(),
            key,
            format!(
                "the host name {name:?} (the default member name) is not a member name ({RULE}); \
                 set member = \"...\""
            ),
        )),
        None => Err(cx.error(
            table.clone(),
            key,
            "cannot read this machine's host name (the default member name); \
             set member = \"...\""
                .to_owned(),
        )),
    }
}

fn is_member_name(name: &str) -> bool {
    name.len() <= MAX_MEMBER_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `lease_ttl`: whole seconds (etcd grants leases in seconds) within the limits.
fn lease_ttl(
    raw: Option<&Spanned<ConfigDuration>>,
    cx: &Context<'_>,
) -> Result<Duration, ConfigError> {
    let key = "cluster.lease_ttl";
    let limits = (MIN_LEASE_TTL, DEFAULT_LEASE_TTL, MAX_LEASE_TTL);
    let ttl = duration_within(raw, key, limits, cx)?;
    match raw {
        Some(value) if ttl.subsec_nanos() != 0 => Err(cx.error(
            value.span(),
            key.to_owned(),
            format!(
                "{} is not whole seconds (etcd grants leases in seconds); write e.g. {}s",
                format_duration(ttl),
                ttl.as_secs()
            ),
        )),
        _ => Ok(ttl),
    }
}

/// The duration at `key`, `default` when absent; outside `min..=max` is refused with the
/// limits and the default.
fn duration_within(
    raw: Option<&Spanned<ConfigDuration>>,
    key: &str,
    (min, default, max): (Duration, Duration, Duration),
    cx: &Context<'_>,
) -> Result<Duration, ConfigError> {
    let Some(value) = raw else {
        return Ok(default);
    };
    let duration = value.get_ref().0;
    if (min..=max).contains(&duration) {
        return Ok(duration);
    }
    let problem = format!(
        "{} is out of range; use {} to {} (default {})",
        format_duration(duration),
        format_duration(min),
        format_duration(max),
        format_duration(default)
    );
    Err(cx.error(value.span(), key.to_owned(), problem))
}

/// `key_encryption_key_previous`: files that exist, none of them the current key.
fn previous_keys(
    raw: Option<&Spanned<Vec<Spanned<String>>>>,
    current: &Path,
    cx: &Context<'_>,
) -> Result<Vec<PathBuf>, ConfigError> {
    let Some(list) = raw else {
        return Ok(Vec::new());
    };
    let mut paths = Vec::with_capacity(list.get_ref().len());
    for (index, entry) in list.get_ref().iter().enumerate() {
        let key = format!("cluster.key_encryption_key_previous[{index}]");
        let path = existing_file(entry, &key, cx)?;
        if path == current {
            return Err(cx.error(
                entry.span(),
                key,
                "this is key_encryption_key_file, the current key; list only earlier keys here"
                    .to_owned(),
            ));
        }
        paths.push(path);
    }
    Ok(paths)
}

/// A path that must name an existing file, resolved like every configured path. The
/// message names the file as written: the resolved path depends on the machine.
fn existing_file(
    value: &Spanned<String>,
    key: &str,
    cx: &Context<'_>,
) -> Result<PathBuf, ConfigError> {
    let path = cx.path(value, key.to_owned())?;
    if (cx.is_file)(&path) {
        return Ok(path);
    }
    let written = value.get_ref();
    let place = match cx.base_dir {
        Some(_) if Path::new(written).is_relative() => " in the configuration file's directory",
        _ => "",
    };
    let action = if key == KEK_KEY {
        format!("write one with `certinel cluster keygen {written}` or fix the path")
    } else {
        "fix the path".to_owned()
    };
    Err(cx.error(
        value.span(),
        key.to_owned(),
        format!("no such file {written:?}{place}; {action}"),
    ))
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
