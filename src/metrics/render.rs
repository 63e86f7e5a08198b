//! Renders a snapshot of the service state as Prometheus text. Pure: the scrape time is a
//! parameter and nothing here touches the clock, sockets or files.
//!
//! Families are built directly as `prometheus::proto` values and encoded with
//! `TextEncoder`: no registry, no locking, one pass over the reports, so a scrape of
//! 10,000 endpoints stays cheap.

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus::TextEncoder;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use time::OffsetDateTime;

use crate::metrics::certificates::{self, AcmeSnapshot, CertificateSnapshot, ServedSample};
use crate::metrics::label_values;
use crate::metrics::names::{self, Kind, MetricDef};
use crate::metrics::revocation;
use crate::scan::files::FileReport;
use crate::scan::inspect::{CertFacts, ChainFacts};
use crate::scan::probe::{EndpointReport, Handshake};

/// Everything `/metrics` shows, copied out of the service state under a short lock.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The latest report of every configured endpoint that has been probed.
    pub endpoints: Vec<Arc<EndpointReport>>,
    /// The latest report of every certificate file found by the configured sources.
    pub files: Vec<Arc<FileReport>>,
    /// Failed scheduled probes by reason keyword, since start.
    pub probe_errors: BTreeMap<&'static str, u64>,
    /// Failed reads by file path, for files of sources still configured.
    pub file_read_errors: BTreeMap<String, u64>,
    /// Outcome of the configuration loads.
    pub reload: ReloadStatus,
    /// Every managed certificate, sorted by name.
    pub certificates: Vec<CertificateSnapshot>,
    /// ACME request counters and durations, since start.
    pub acme: AcmeSnapshot,
    /// What the addresses of each managed certificate's verify targets serve.
    pub served: Vec<ServedSample>,
    /// The CRLs held and the CRL fetch errors.
    pub crl: crate::scan::crl::fetch::CrlSummary,
}

/// What the reload gauges report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReloadStatus {
    /// When a configuration was last loaded successfully (the start counts).
    pub last_success: Option<OffsetDateTime>,
    /// Whether the last attempt succeeded.
    pub last_successful: bool,
}

/// The labels of `certinel_build_info`: the package version and the git commit.
const BUILD_INFO_LABELS: &[(&str, &str)] = &[
    ("version", env!("CARGO_PKG_VERSION")),
    ("commit", crate::COMMIT),
];

/// A snapshot that could not be encoded (a bug: every family rendered has samples).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode metrics: {0}")]
pub struct RenderError(#[from] prometheus::Error);

/// The `/metrics` body for `snapshot` at scrape time `now`.
pub fn render_snapshot(snapshot: &Snapshot, now: OffsetDateTime) -> Result<String, RenderError> {
    let mut families = Families::default();
    families.push(names::BUILD_INFO, BUILD_INFO_LABELS, 1.0);
    if let Some(at) = snapshot.reload.last_success {
        families.push(names::CONFIG_LAST_RELOAD_SUCCESS, &[], timestamp(at));
    }
    families.push(
        names::CONFIG_LAST_RELOAD_SUCCESSFUL,
        &[],
        flag(snapshot.reload.last_successful),
    );
    for report in &snapshot.endpoints {
        push_endpoint(&mut families, report, now);
    }
    for (reason, count) in &snapshot.probe_errors {
        families.push(names::PROBE_ERRORS, &[("reason", reason)], *count as f64);
    }
    revocation::push_crls(&mut families, &snapshot.crl);
    for report in &snapshot.files {
        push_file(&mut families, report, now);
    }
    for (path, count) in &snapshot.file_read_errors {
        families.push(names::FILE_READ_ERRORS, &[("path", path)], *count as f64);
    }
    for certificate in &snapshot.certificates {
        certificates::push_certificate(&mut families, certificate, now);
    }
    certificates::push_served(&mut families, &snapshot.served);
    certificates::push_profiles(&mut families, &snapshot.certificates);
    certificates::push_acme(&mut families, &snapshot.acme);
    families.encode()
}

/// The families `/metrics` exports for these endpoints and files, without the service's
/// own (reloads, counters since start): what `certinel check --output prometheus` prints
/// for a node_exporter textfile collector.
pub fn render_targets(
    endpoints: &[EndpointReport],
    files: &[FileReport],
    now: OffsetDateTime,
) -> Result<String, RenderError> {
    let mut families = Families::default();
    families.push(names::BUILD_INFO, BUILD_INFO_LABELS, 1.0);
    for report in endpoints {
        push_endpoint(&mut families, report, now);
    }
    for report in files {
        push_file(&mut families, report, now);
    }
    families.encode()
}

/// The `/probe` body: `certinel_probe_success` and the endpoint gauges of one probe.
pub fn render_probe(report: &EndpointReport, now: OffsetDateTime) -> Result<String, RenderError> {
    let mut families = Families::default();
    families.push(names::PROBE_SUCCESS, &[], flag(probe_succeeded(report)));
    push_endpoint(&mut families, report, now);
    families.encode()
}

/// A probe succeeded when the name resolved and every probed address completed a handshake.
pub fn probe_succeeded(report: &EndpointReport) -> bool {
    report.resolve_error.is_none()
        && !report.addresses.is_empty()
        && report
            .addresses
            .iter()
            .all(|address| address.outcome.is_ok())
}

/// Seconds from `now` until `not_after`, negative once past.
fn seconds_left(not_after: OffsetDateTime, now: OffsetDateTime) -> f64 {
    (not_after - now).as_seconds_f64()
}

fn push_endpoint(families: &mut Families, report: &EndpointReport, now: OffsetDateTime) {
    let target = report.endpoint.target.to_string();
    let sni = report.endpoint.sni.as_deref();
    let endpoint_labels = with_sni(vec![("target", target.as_str())], sni);
    let started = timestamp(report.started_at);
    families.push(
        names::ENDPOINT_ADDRESSES_DISAGREE,
        &endpoint_labels,
        flag(report.addresses_disagree),
    );
    families.push(
        names::ENDPOINT_ADDRESSES_TRUNCATED,
        &endpoint_labels,
        report.addresses_truncated as f64,
    );
    if let Some(client) = &report.client_cert {
        families.push(
            names::CLIENT_CERT_NOT_AFTER,
            &endpoint_labels,
            timestamp(client.not_after),
        );
    }
    if report.resolve_error.is_some() {
        // No address to label: one `up` series with an empty `ip` keeps `up == 0` alerts
        // working for names that stopped resolving.
        let labels = with_sni(vec![("target", target.as_str()), ("ip", "")], sni);
        families.push(names::ENDPOINT_UP, &labels, 0.0);
        families.push(names::ENDPOINT_LAST_PROBE, &labels, started);
    }
    for address in &report.addresses {
        let ip = address.ip.to_string();
        let labels = with_sni(vec![("target", target.as_str()), ("ip", ip.as_str())], sni);
        families.push(names::ENDPOINT_UP, &labels, flag(address.outcome.is_ok()));
        families.push(
            names::ENDPOINT_PROBE_DURATION,
            &labels,
            address.duration.as_secs_f64(),
        );
        families.push(names::ENDPOINT_LAST_PROBE, &labels, started);
        if let Ok(handshake) = &address.outcome {
            push_handshake(families, &labels, handshake, now);
        }
    }
}

fn push_handshake(
    families: &mut Families,
    labels: &[(&str, &str)],
    handshake: &Handshake,
    now: OffsetDateTime,
) {
    let leaf = handshake.chain.leaf();
    families.push(
        names::ENDPOINT_CERT_NOT_AFTER,
        labels,
        timestamp(leaf.not_after),
    );
    families.push(
        names::ENDPOINT_CERT_NOT_BEFORE,
        labels,
        timestamp(leaf.not_before),
    );
    families.push(
        names::ENDPOINT_CERT_EXPIRY,
        labels,
        seconds_left(leaf.not_after, now),
    );
    push_chain(families, labels, &handshake.chain);
    families.push(
        names::ENDPOINT_CERT_VERIFIED,
        labels,
        flag(handshake.verification.verified),
    );
    if let Some(reason) = handshake.verification.reason {
        let mut with_reason = labels.to_vec();
        with_reason.push(("reason", reason.keyword()));
        families.push(names::ENDPOINT_CERT_ERROR_INFO, &with_reason, 1.0);
    }
    push_info(families, names::ENDPOINT_CERT_INFO, labels, leaf);
    revocation::push_endpoint(families, labels, handshake.revocation.as_ref());
    let mut with_version = labels.to_vec();
    with_version.push(("version", handshake.tls_version.as_str()));
    families.push(names::ENDPOINT_TLS_VERSION_INFO, &with_version, 1.0);
}

fn push_chain(families: &mut Families, labels: &[(&str, &str)], chain: &ChainFacts) {
    families.push(
        names::ENDPOINT_CHAIN_EARLIEST_NOT_AFTER,
        labels,
        timestamp(chain.earliest_not_after),
    );
    for entry in &chain.entries {
        let position = entry.position.to_string();
        let mut entry_labels = labels.to_vec();
        entry_labels.push(("position", position.as_str()));
        entry_labels.push(("role", entry.role.label()));
        families.push(
            names::ENDPOINT_CHAIN_CERT_NOT_AFTER,
            &entry_labels,
            timestamp(entry.facts.not_after),
        );
    }
}

fn push_info(families: &mut Families, def: MetricDef, labels: &[(&str, &str)], cert: &CertFacts) {
    let key_type = cert.key.label();
    let dns_names = label_values::name_list(&cert.dns_names);
    let mut info = labels.to_vec();
    info.extend([
        ("subject", cert.subject.as_str()),
        ("issuer", cert.issuer.as_str()),
        ("serial", cert.serial.as_str()),
        ("fingerprint_sha256", cert.fingerprint_sha256.as_str()),
        ("key_type", key_type.as_str()),
        ("dns_names", dns_names.as_str()),
    ]);
    families.push(def, &info, 1.0);
}

fn push_file(families: &mut Families, report: &FileReport, now: OffsetDateTime) {
    let Ok(chain) = &report.outcome else {
        return;
    };
    let path = report.path.display().to_string();
    let labels = [("path", path.as_str())];
    let leaf = chain.leaf();
    families.push(
        names::FILE_CERT_NOT_AFTER,
        &labels,
        timestamp(leaf.not_after),
    );
    families.push(
        names::FILE_CERT_NOT_BEFORE,
        &labels,
        timestamp(leaf.not_before),
    );
    families.push(
        names::FILE_CERT_EXPIRY,
        &labels,
        seconds_left(leaf.not_after, now),
    );
    families.push(
        names::FILE_CERT_CHAIN_EARLIEST_NOT_AFTER,
        &labels,
        timestamp(chain.earliest_not_after),
    );
    push_info(families, names::FILE_CERT_INFO, &labels, leaf);
    revocation::push_file(families, &labels, report.revocation.as_ref());
}

/// A sample with `labels` and no value yet; every value is capped
/// ([`label_values::capped`]) so one long name never makes Prometheus drop the scrape.
pub(super) fn labelled(labels: &[(&str, &str)]) -> Metric {
    let pairs = labels
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value(label_values::capped(value).into_owned());
            pair
        })
        .collect();
    Metric::from_label(pairs)
}

fn with_sni<'a>(
    mut labels: Vec<(&'a str, &'a str)>,
    sni: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    if let Some(sni) = sni {
        labels.push(("sni", sni));
    }
    labels
}

pub(super) fn timestamp(at: OffsetDateTime) -> f64 {
    at.unix_timestamp() as f64 + f64::from(at.nanosecond()) / 1e9
}

pub(super) fn flag(value: bool) -> f64 {
    if value { 1.0 } else { 0.0 }
}

/// Samples grouped by family, encoded in the order of [`names::ALL`].
#[derive(Default)]
pub(super) struct Families {
    samples: BTreeMap<&'static str, Vec<Metric>>,
}

impl Families {
    /// Adds one gauge or counter sample. A histogram takes [`Families::push_metric`].
    pub(super) fn push(&mut self, def: MetricDef, labels: &[(&str, &str)], value: f64) {
        let mut metric = labelled(labels);
        match def.kind {
            Kind::Gauge => {
                let mut gauge = Gauge::default();
                gauge.set_value(value);
                metric.set_gauge(gauge);
            }
            Kind::Counter => {
                let mut counter = Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
            }
            Kind::Histogram => {
                tracing::error!(
                    metric = def.name,
                    "a histogram pushed as one value; dropped"
                );
                return;
            }
        }
        self.push_metric(def, metric);
    }

    /// Adds a sample built by the caller (a histogram).
    pub(super) fn push_metric(&mut self, def: MetricDef, metric: Metric) {
        self.samples.entry(def.name).or_default().push(metric);
    }

    fn encode(mut self) -> Result<String, RenderError> {
        let mut families = Vec::with_capacity(self.samples.len());
        for def in names::ALL {
            // The encoder rejects empty families, so absent metrics are simply left out.
            let Some(metrics) = self.samples.remove(def.name) else {
                continue;
            };
            let mut family = MetricFamily::default();
            family.set_name(def.name.to_owned());
            family.set_help(def.help.to_owned());
            family.set_field_type(match def.kind {
                Kind::Gauge => MetricType::GAUGE,
                Kind::Counter => MetricType::COUNTER,
                Kind::Histogram => MetricType::HISTOGRAM,
            });
            family.set_metric(metrics);
            families.push(family);
        }
        let mut body = String::new();
        TextEncoder::new().encode_utf8(&families, &mut body)?;
        Ok(body)
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
pub(crate) mod tests;
