//! The raw layer: a serde mirror of the configuration file, one struct per table.
//!
//! Values that can be parsed on their own (durations, targets, keywords) are parsed here by
//! their `Deserialize` impls, so their errors carry the value's position. Checks that relate
//! several values live in `validate.rs`, which reads the [`Spanned`] positions kept here.
//! A new top-level section is one field on [`RawConfig`] and one struct.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::config::duration::ConfigDuration;
use crate::config::hook_env::{RawEnv, RawPassthrough};
use crate::config::keywords::{ListenAddr, ServerName};
use crate::config::model::{IpFamily, OnVerifyFailure, ResolveMode, StartTls, Target};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) scanner: RawScanner,
    #[serde(default)]
    pub(crate) exporter: RawExporter,
    #[serde(default, rename = "endpoint")]
    pub(crate) endpoints: Vec<Spanned<RawEndpoint>>,
    #[serde(default, rename = "file")]
    pub(crate) files: Vec<Spanned<RawFile>>,
    #[serde(default, rename = "endpoint_source")]
    pub(crate) endpoint_sources: Vec<Spanned<RawEndpointSource>>,
    pub(crate) state_dir: Option<Spanned<String>>,
    pub(crate) acme: Option<Spanned<RawAcme>>,
    /// `[ca.NAME]`: further CAs, with the keys of `[acme]`.
    #[serde(default)]
    pub(crate) ca: BTreeMap<Spanned<String>, Spanned<RawAcme>>,
    #[serde(default, rename = "certificate")]
    pub(crate) certificates: Vec<Spanned<RawCertificate>>,
    pub(crate) cluster: Option<Spanned<RawCluster>>,
}

/// `[cluster]`. `etcd` and `key_encryption_key_file` are required; their absence is
/// reported in validation with an example.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub(crate) etcd: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) ca_file: Option<Spanned<String>>,
    pub(crate) client_cert: Option<Spanned<String>>,
    pub(crate) client_key: Option<Spanned<String>>,
    pub(crate) username: Option<Spanned<String>>,
    pub(crate) password: Option<Spanned<String>>,
    pub(crate) prefix: Option<Spanned<String>>,
    pub(crate) member: Option<Spanned<String>>,
    pub(crate) lease_ttl: Option<Spanned<ConfigDuration>>,
    pub(crate) audit_retention: Option<Spanned<ConfigDuration>>,
    pub(crate) key_encryption_key_file: Option<Spanned<String>>,
    pub(crate) key_encryption_key_previous: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[acme]`, and each `[ca.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcme {
    pub(crate) directory: Option<Spanned<String>>,
    pub(crate) dry_run_directory: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) contact: Vec<Spanned<String>>,
    pub(crate) ca_file: Option<Spanned<String>>,
    pub(crate) eab: Option<Spanned<RawEab>>,
    pub(crate) poll_timeout: Option<Spanned<ConfigDuration>>,
    pub(crate) preflight_resolver: Option<Spanned<String>>,
    pub(crate) caa_identities: Option<Vec<Spanned<String>>>,
}

/// `[acme] eab = { kid, hmac_key }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEab {
    pub(crate) kid: Spanned<String>,
    pub(crate) hmac_key: Spanned<String>,
}

/// `[[certificate]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub(crate) name: Spanned<String>,
    pub(crate) dns_names: Spanned<Vec<Spanned<String>>>,
    pub(crate) key: Option<Spanned<String>>,
    pub(crate) duration: Option<Spanned<ConfigDuration>>,
    pub(crate) renew_before: Option<Spanned<ConfigDuration>>,
    pub(crate) renew_before_percentage: Option<Spanned<i64>>,
    pub(crate) challenge: Spanned<RawChallenge>,
    #[serde(default)]
    pub(crate) deploy: Vec<Spanned<String>>,
    pub(crate) deploy_timeout: Option<Spanned<ConfigDuration>>,
    pub(crate) env: Option<RawEnv>,
    pub(crate) env_passthrough: Option<RawPassthrough>,
    pub(crate) history: Option<Spanned<i64>>,
    pub(crate) profile: Option<Spanned<String>>,
    // Entries are parsed in validation, so an error points at the bad entry.
    #[serde(default)]
    pub(crate) verify: Vec<Spanned<String>>,
    pub(crate) verify_timeout: Option<Spanned<ConfigDuration>>,
    pub(crate) on_verify_failure: Option<OnVerifyFailure>,
    // Names are checked against `[acme]` and the `[ca.NAME]` tables in validation.
    pub(crate) ca: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) ca_failover_after: Option<Spanned<i64>>,
}

/// `challenge = { type = "...", listen = "..." | webroot = "..." }`, or for dns-01
/// `{ type = "dns-01", provider = "rfc2136" | "exec", ... }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChallenge {
    #[serde(rename = "type")]
    pub(crate) kind: Spanned<String>,
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) webroot: Option<Spanned<String>>,
    pub(crate) provider: Option<Spanned<String>>,
    pub(crate) server: Option<Spanned<String>>,
    pub(crate) zone: Option<Spanned<String>>,
    pub(crate) tsig_key_name: Option<Spanned<String>>,
    pub(crate) tsig_key: Option<Spanned<String>>,
    pub(crate) tsig_algorithm: Option<Spanned<String>>,
    pub(crate) command: Option<Spanned<String>>,
    pub(crate) propagation_resolver: Option<Spanned<String>>,
    pub(crate) propagation_timeout: Option<Spanned<ConfigDuration>>,
    pub(crate) env: Option<RawEnv>,
    pub(crate) env_passthrough: Option<RawPassthrough>,
}

/// `[scanner]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScanner {
    pub(crate) concurrency: Option<Spanned<usize>>,
    pub(crate) timeout: Option<Spanned<ConfigDuration>>,
    pub(crate) hosts_file: Option<Spanned<String>>,
    pub(crate) max_connections: Option<Spanned<usize>>,
    pub(crate) max_addresses: Option<Spanned<usize>>,
    pub(crate) crl: Option<Spanned<bool>>,
    pub(crate) crl_interval: Option<Spanned<ConfigDuration>>,
}

/// `[exporter]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExporter {
    pub(crate) listen: Option<ListenAddr>,
    // Entries are parsed in validation: toml reports an element's error at the whole
    // array, and the position of the bad entry is worth more than parsing here.
    pub(crate) probe_allow: Option<Vec<Spanned<String>>>,
    pub(crate) header_read_timeout: Option<Spanned<ConfigDuration>>,
    pub(crate) idle_timeout: Option<Spanned<ConfigDuration>>,
    pub(crate) max_connections: Option<Spanned<usize>>,
    #[serde(default)]
    pub(crate) module: BTreeMap<String, Spanned<RawProbeOptions>>,
}

/// `[exporter.module.NAME]`: the probe options an endpoint can also set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProbeOptions {
    pub(crate) sni: Option<ServerName>,
    pub(crate) starttls: Option<StartTls>,
    pub(crate) ca_file: Option<Spanned<String>>,
    pub(crate) client_cert: Option<Spanned<String>>,
    pub(crate) client_key: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<ConfigDuration>>,
    pub(crate) ip_family: Option<Spanned<IpFamily>>,
    pub(crate) resolve: Option<ResolveMode>,
}

/// `[[endpoint]]`: a target, an interval and the probe options of [`RawProbeOptions`].
///
/// The options are repeated rather than flattened because serde cannot combine
/// `flatten` with `deny_unknown_fields`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoint {
    pub(crate) target: Spanned<Target>,
    pub(crate) interval: Option<Spanned<ConfigDuration>>,
    pub(crate) sni: Option<ServerName>,
    pub(crate) starttls: Option<StartTls>,
    pub(crate) ca_file: Option<Spanned<String>>,
    pub(crate) client_cert: Option<Spanned<String>>,
    pub(crate) client_key: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<ConfigDuration>>,
    pub(crate) ip_family: Option<Spanned<IpFamily>>,
    pub(crate) resolve: Option<ResolveMode>,
}

/// `[[endpoint_source]]`: file_sd files, an interval, and either a module or the probe
/// options of [`RawProbeOptions`] for the targets they list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpointSource {
    pub(crate) files: Spanned<Vec<Spanned<String>>>,
    pub(crate) interval: Option<Spanned<ConfigDuration>>,
    pub(crate) module: Option<Spanned<String>>,
    pub(crate) sni: Option<ServerName>,
    pub(crate) starttls: Option<StartTls>,
    pub(crate) ca_file: Option<Spanned<String>>,
    pub(crate) client_cert: Option<Spanned<String>>,
    pub(crate) client_key: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<ConfigDuration>>,
    pub(crate) ip_family: Option<Spanned<IpFamily>>,
    pub(crate) resolve: Option<ResolveMode>,
}

/// `[[file]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub(crate) path: Spanned<String>,
    pub(crate) interval: Option<Spanned<ConfigDuration>>,
}

impl RawEndpoint {
    /// Splits off the options an endpoint shares with a `/probe` module.
    pub(crate) fn into_parts(
        self,
    ) -> (
        Spanned<Target>,
        Option<Spanned<ConfigDuration>>,
        RawProbeOptions,
    ) {
        let options = RawProbeOptions {
            sni: self.sni,
            starttls: self.starttls,
            ca_file: self.ca_file,
            client_cert: self.client_cert,
            client_key: self.client_key,
            timeout: self.timeout,
            ip_family: self.ip_family,
            resolve: self.resolve,
        };
        (self.target, self.interval, options)
    }
}

impl RawEndpointSource {
    /// The probe options set in the table, `None` when it sets none of them.
    pub(crate) fn take_options(&mut self) -> Option<RawProbeOptions> {
        let options = RawProbeOptions {
            sni: self.sni.take(),
            starttls: self.starttls.take(),
            ca_file: self.ca_file.take(),
            client_cert: self.client_cert.take(),
            client_key: self.client_key.take(),
            timeout: self.timeout.take(),
            ip_family: self.ip_family.take(),
            resolve: self.resolve.take(),
        };
        let none_set = options.sni.is_none()
            && options.starttls.is_none()
            && options.ca_file.is_none()
            && options.client_cert.is_none()
            && options.client_key.is_none()
            && options.timeout.is_none()
            && options.ip_family.is_none()
            && options.resolve.is_none();
        (!none_set).then_some(options)
    }
}
