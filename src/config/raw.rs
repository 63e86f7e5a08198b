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
    pub(crate) max_concurrent_orders: Option<Spanned<i64>>,
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

/// Declares a table struct with its own fields followed by the probe options every probing
/// table shares (`sni` ... `resolve`), and a `take_probe_options` that moves them out.
///
/// A macro rather than `#[serde(flatten)]`: serde cannot combine `flatten` with
/// `deny_unknown_fields`, and `Spanned` positions do not survive flattening.
macro_rules! table_with_probe_options {
    (
        $(#[$attribute:meta])*
        struct $name:ident { $($field:ident: $type:ty,)* }
    ) => {
        $(#[$attribute])*
        #[serde(deny_unknown_fields)]
        pub(crate) struct $name {
            $(pub(crate) $field: $type,)*
            pub(crate) sni: Option<ServerName>,
            pub(crate) starttls: Option<StartTls>,
            pub(crate) ca_file: Option<Spanned<String>>,
            pub(crate) client_cert: Option<Spanned<String>>,
            pub(crate) client_key: Option<Spanned<String>>,
            pub(crate) timeout: Option<Spanned<ConfigDuration>>,
            pub(crate) ip_family: Option<Spanned<IpFamily>>,
            pub(crate) resolve: Option<ResolveMode>,
        }

        impl $name {
            /// Moves the probe options out, leaving `None` in their place.
            #[allow(dead_code)] // `RawProbeOptions` itself never needs it.
            pub(crate) fn take_probe_options(&mut self) -> RawProbeOptions {
                RawProbeOptions {
                    sni: self.sni.take(),
                    starttls: self.starttls.take(),
                    ca_file: self.ca_file.take(),
                    client_cert: self.client_cert.take(),
                    client_key: self.client_key.take(),
                    timeout: self.timeout.take(),
                    ip_family: self.ip_family.take(),
                    resolve: self.resolve.take(),
                }
            }
        }
    };
}

table_with_probe_options! {
    /// `[exporter.module.NAME]`: the probe options an endpoint can also set.
    #[derive(Debug, Default, Deserialize)]
    struct RawProbeOptions {}
}

table_with_probe_options! {
    /// `[[endpoint]]`: a target, an interval and the probe options of [`RawProbeOptions`].
    #[derive(Debug, Deserialize)]
    struct RawEndpoint {
        target: Spanned<Target>,
        interval: Option<Spanned<ConfigDuration>>,
    }
}

table_with_probe_options! {
    /// `[[endpoint_source]]`: file_sd files, an interval, and either a module or the probe
    /// options of [`RawProbeOptions`] for the targets they list.
    #[derive(Debug, Deserialize)]
    struct RawEndpointSource {
        files: Spanned<Vec<Spanned<String>>>,
        interval: Option<Spanned<ConfigDuration>>,
        module: Option<Spanned<String>>,
    }
}

impl RawProbeOptions {
    /// Whether the table sets none of the options.
    pub(crate) fn is_empty(&self) -> bool {
        self.sni.is_none()
            && self.starttls.is_none()
            && self.ca_file.is_none()
            && self.client_cert.is_none()
            && self.client_key.is_none()
            && self.timeout.is_none()
            && self.ip_family.is_none()
            && self.resolve.is_none()
    }
}

/// `[[file]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub(crate) path: Spanned<String>,
    pub(crate) interval: Option<Spanned<ConfigDuration>>,
}
