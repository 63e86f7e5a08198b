//! Prometheus file_sd target files, parsed without I/O: text → [`TargetGroup`]s (labels
//! checked) → [`Endpoint`]s with an `[[endpoint_source]]`'s settings, and the merge of
//! every file's endpoints with the configured ones ([`merge`]). The service reads the
//! files (`service::endpoint_sources`).
//!
//! A file is a JSON or YAML list of `{"targets": ["host:port", ...], "labels": {...}}`
//! groups. Labels starting with `__` are reserved: [`MODULE_LABEL`] selects an
//! `[exporter.module.NAME]` for the group, the others are ignored. Every other label is
//! added to the series of the group's targets, within the limits checked here.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::config::TargetError;
use crate::config::model::{
    Endpoint, EndpointSource, Host, IpFamily, ProbeModule, StartTls, Target,
};

/// The reserved label that selects an `[exporter.module.NAME]` for a group, as
/// blackbox_exporter users write it in relabelling rules.
pub const MODULE_LABEL: &str = "__param_module";

/// The most extra labels one target may carry (reserved `__` labels do not count).
pub const MAX_EXTRA_LABELS: usize = 16;

/// The labels certinel itself puts on endpoint series; a file may not set them.
pub const CERTINEL_LABELS: &[&str] = &[
    "target",
    "ip",
    "sni",
    "position",
    "role",
    "reason",
    "reason_code",
    "subject",
    "issuer",
    "serial",
    "fingerprint_sha256",
    "key_type",
    "dns_names",
    "version",
];

/// How a file_sd file is written, told by its extension as Prometheus does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.json`
    Json,
    /// `.yml` or `.yaml`
    Yaml,
}

/// One group of a file: its targets, the module it selects and its extra labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    /// The targets, parsed like `[[endpoint]] target`.
    pub targets: Vec<Target>,
    /// The module named by [`MODULE_LABEL`], if any.
    pub module: Option<String>,
    /// The extra labels, sorted by name.
    pub labels: Vec<(String, String)>,
}

/// Why a file_sd file was rejected. Groups are numbered from 0 in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileSdError {
    /// The file name ends in neither `.json`, `.yml` nor `.yaml`.
    #[error("unsupported file name; file_sd files end in .json, .yml or .yaml")]
    UnsupportedExtension,
    /// The text is not a list of groups; `line` and `column` count from 1 (0: unknown).
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// The line the parser stopped at.
        line: usize,
        /// The column the parser stopped at.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A target that `[[endpoint]] target` would reject.
    #[error("group[{group}].targets[{index}]: {error}")]
    Target {
        /// The group.
        group: usize,
        /// The target's position in the group.
        index: usize,
        /// What is wrong with it.
        error: TargetError,
    },
    /// A label name outside `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error(
        "group[{group}]: label name {name:?} is not a Prometheus label name \
         (letters, digits and '_', not starting with a digit)"
    )]
    BadLabelName {
        /// The group.
        group: usize,
        /// The name as written.
        name: String,
    },
    /// A label certinel sets itself.
    #[error("group[{group}]: label {name:?} is one of certinel's own labels; rename it")]
    CertinelLabel {
        /// The group.
        group: usize,
        /// The name as written.
        name: String,
    },
    /// More than [`MAX_EXTRA_LABELS`] extra labels.
    #[error(
        "group[{group}]: {count} labels; at most {MAX_EXTRA_LABELS} are allowed \
         (labels starting with __ do not count)"
    )]
    TooManyLabels {
        /// The group.
        group: usize,
        /// How many it has.
        count: usize,
    },
    /// [`MODULE_LABEL`] names a module the configuration does not define.
    #[error(
        "group[{group}]: {MODULE_LABEL} {name:?} names no [exporter.module.{name}]; known modules: {known}"
    )]
    UnknownModule {
        /// The group.
        group: usize,
        /// The module as written.
        name: String,
        /// The modules defined, comma-separated.
        known: String,
    },
    /// A literal address the group's `ip_family` excludes.
    #[error("group[{group}]: target {target} is an {literal} address but ip_family is {wanted}")]
    IpFamily {
        /// The group.
        group: usize,
        /// The target.
        target: String,
        /// `IPv4` or `IPv6`.
        literal: &'static str,
        /// `ipv4` or `ipv6`.
        wanted: &'static str,
    },
}

/// Where a merged endpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An `[[endpoint]]` of the configuration file.
    Config,
    /// The file at this position of the list given to [`merge`].
    File(usize),
}

/// A target left out of [`Merged::endpoints`] because an earlier one has the same target,
/// server name and STARTTLS protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The target, `host:port`.
    pub target: String,
    /// The file it was listed in (its position in the list given to [`merge`]).
    pub file: usize,
    /// Where the endpoint that is probed came from.
    pub kept: Origin,
}

/// The endpoints to schedule and the targets left out as duplicates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    /// The configured endpoints, then each file's new ones, in order.
    pub endpoints: Vec<Endpoint>,
    /// Targets listed again after their first appearance.
    pub duplicates: Vec<Duplicate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl Format {
    /// The format of the file at `path`, from its extension.
    pub fn for_path(path: &Path) -> Result<Format, FileSdError> {
        match path.extension().and_then(|extension| extension.to_str()) {
            Some("json") => Ok(Format::Json),
            Some("yml" | "yaml") => Ok(Format::Yaml),
            _ => Err(FileSdError::UnsupportedExtension),
        }
    }
}

/// Parses a file's text into its groups, checking targets and labels. An empty file (or
/// one holding only whitespace) has no groups, as in Prometheus.
pub fn parse(text: &str, format: Format) -> Result<Vec<TargetGroup>, FileSdError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<RawGroup> = match format {
        Format::Json => serde_json::from_str(text)
            .map_err(|error| syntax(error.line(), error.column(), &error))?,
        Format::Yaml => serde_yaml_ng::from_str(text).map_err(|error| {
            let (line, column) = error
                .location()
                .map_or((0, 0), |location| (location.line(), location.column()));
            syntax(line, column, &error)
        })?,
    };
    raw.into_iter()
        .enumerate()
        .map(|(group, raw)| target_group(group, raw))
        .collect()
}

/// The endpoints of `groups` under `source`'s settings; a group naming a module takes
/// that module's probe settings (and the source's interval).
pub fn endpoints(
    groups: &[TargetGroup],
    source: &EndpointSource,
    modules: &BTreeMap<String, ProbeModule>,
) -> Result<Vec<Endpoint>, FileSdError> {
    let mut endpoints = Vec::with_capacity(groups.iter().map(|g| g.targets.len()).sum());
    for (index, group) in groups.iter().enumerate() {
        let probe = match &group.module {
            None => &source.probe,
            Some(name) => modules
                .get(name)
                .ok_or_else(|| FileSdError::UnknownModule {
                    group: index,
                    name: name.clone(),
                    known: modules.keys().cloned().collect::<Vec<_>>().join(", "),
                })?,
        };
        for target in &group.targets {
            check_family(index, target, probe.ip_family)?;
            endpoints.push(Endpoint {
                labels: group.labels.clone(),
                ..Endpoint::probed_with(target.clone(), probe.clone(), source.interval)
            });
        }
    }
    Ok(endpoints)
}

/// The configured endpoints followed by each file's, in order, keeping the first of
/// endpoints with the same target, server name and STARTTLS protocol. Linear in the
/// number of endpoints.
pub fn merge<'a>(
    configured: &'a [Endpoint],
    files: impl IntoIterator<Item = &'a [Endpoint]>,
) -> Merged {
    type Identity<'e> = (&'e Target, String, Option<StartTls>);
    let identity = |endpoint: &'a Endpoint| -> Identity<'a> {
        (
            &endpoint.target,
            endpoint.server_name(),
            endpoint.probe.starttls,
        )
    };
    let files: Vec<&'a [Endpoint]> = files.into_iter().collect();
    let total = configured.len() + files.iter().map(|file| file.len()).sum::<usize>();
    let mut seen: HashMap<Identity<'_>, Origin> = HashMap::with_capacity(total);
    let mut merged = Merged {
        endpoints: Vec::with_capacity(total),
        duplicates: Vec::new(),
    };
    for endpoint in configured {
        seen.insert(identity(endpoint), Origin::Config);
        merged.endpoints.push(endpoint.clone());
    }
    for (file, endpoints) in files.iter().enumerate() {
        for endpoint in endpoints.iter() {
            match seen.entry(identity(endpoint)) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    merged.duplicates.push(Duplicate {
                        target: endpoint.target.to_string(),
                        file,
                        kept: *first.get(),
                    });
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Origin::File(file));
                    merged.endpoints.push(endpoint.clone());
                }
            }
        }
    }
    merged
}

/// A parser's error without the position its message repeats at the end.
fn syntax(line: usize, column: usize, error: &dyn std::fmt::Display) -> FileSdError {
    let message = error.to_string();
    let message = message
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&message)
        .to_owned();
    FileSdError::Syntax {
        line,
        column,
        message,
    }
}

fn target_group(group: usize, raw: RawGroup) -> Result<TargetGroup, FileSdError> {
    let targets = raw
        .targets
        .iter()
        .enumerate()
        .map(|(index, written)| {
            written
                .parse::<Target>()
                .map_err(|error| FileSdError::Target {
                    group,
                    index,
                    error,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut module = None;
    let mut labels = Vec::new();
    // A BTreeMap: the labels come out sorted by name.
    for (name, value) in raw.labels {
        if name == MODULE_LABEL {
            module = Some(value);
            continue;
        }
        if name.starts_with("__") {
            continue;
        }
        if !is_label_name(&name) {
            return Err(FileSdError::BadLabelName { group, name });
        }
        if CERTINEL_LABELS.contains(&name.as_str()) {
            return Err(FileSdError::CertinelLabel { group, name });
        }
        labels.push((name, value));
    }
    if labels.len() > MAX_EXTRA_LABELS {
        return Err(FileSdError::TooManyLabels {
            group,
            count: labels.len(),
        });
    }
    Ok(TargetGroup {
        targets,
        module,
        labels,
    })
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, Prometheus' label names.
fn is_label_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A literal address of one family can never be probed over the other.
fn check_family(group: usize, target: &Target, family: IpFamily) -> Result<(), FileSdError> {
    let (literal, wanted) = match (&target.host, family) {
        (Host::Ip(IpAddr::V4(_)), IpFamily::Ipv6) => ("IPv4", "ipv6"),
        (Host::Ip(IpAddr::V6(_)), IpFamily::Ipv4) => ("IPv6", "ipv4"),
        _ => return Ok(()),
    };
    Err(FileSdError::IpFamily {
        group,
        target: target.to_string(),
        literal,
        wanted,
    })
}

#[cfg(test)]
mod tests;
