//! Renders a snapshot of the service state as Prometheus text. Pure: the scrape time is a
//! parameter and nothing here touches the clock, sockets or files.
//!
//! Endpoints are the bulk of a body (10,000 targets are 120,000 samples), so their lines
//! are rendered once per probe result into a [`fragment::Fragment`] and spliced into
//! [`lines::EndpointLines`], which keeps each family's lines of all endpoints together: a
//! scrape copies them, family by family, finishing the few values that count down to a
//! moment (`*_expiry_seconds`). Everything else (service counters, files, managed certificates)
//! is rendered at scrape time into [`text::ScrapeFamilies`]. The body is written to an
//! [`io::Write`] in chunks, so a streamed (and gzipped) response never holds it whole.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::config::model::Endpoint;
use crate::metrics::certificates::{self, AcmeSnapshot, CertificateSnapshot, ServedSample};
use crate::metrics::cluster::{self, ClusterSnapshot};
use crate::metrics::label_values;
use crate::metrics::names::{self, MetricDef};
use crate::metrics::revocation;
use crate::scan::files::FileReport;
use crate::scan::inspect::{CertFacts, ChainFacts};
use crate::scan::probe::{EndpointReport, Handshake};

pub mod fragment;
pub mod lines;
#[cfg(test)]
pub(crate) mod reference;
pub mod text;

pub use fragment::Fragment;
pub use lines::{EndpointLines, LineKey};
pub use text::Sink;

use text::ScrapeFamilies;

/// Everything `/metrics` shows, copied out of the service state under a short lock.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The latest report of every configured endpoint that has been probed, sorted by
    /// target (the status page reads them; a `/metrics` snapshot leaves them out).
    pub endpoints: Vec<Arc<EndpointReport>>,
    /// The pre-rendered lines of the same endpoints, by family: what `/metrics` copies.
    pub endpoint_lines: EndpointLines,
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
    /// This replica's view of its cluster; `None` without `[cluster]`.
    pub cluster: Option<ClusterSnapshot>,
    /// The files of the `[[endpoint_source]]` tables, sorted by path.
    pub endpoint_source_files: Vec<crate::metrics::endpoint_sources::SourceFileStatus>,
}

impl Snapshot {
    /// A snapshot of these endpoint reports alone, their lines in the given order.
    pub fn with_endpoints(reports: Vec<EndpointReport>) -> Snapshot {
        let mut endpoint_lines = EndpointLines::default();
        for (position, report) in (0u64..).zip(&reports) {
            let key = LineKey {
                target: Arc::from(""),
                id: position,
            };
            endpoint_lines.upsert(key, &Fragment::of_report(report));
        }
        Snapshot {
            endpoints: reports.into_iter().map(Arc::new).collect(),
            endpoint_lines,
            ..Snapshot::default()
        }
    }
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

/// The body could not be written: the writer failed (a streamed response whose client
/// went away). Rendering itself cannot fail.
#[derive(Debug, thiserror::Error)]
#[error("cannot write metrics: {0}")]
pub struct RenderError(#[from] io::Error);

/// How much text a scrape collects before handing it to the writer.
const CHUNK_BYTES: usize = 64 * 1024;

/// The `/metrics` body for `snapshot` at scrape time `now`.
pub fn render_snapshot(snapshot: &Snapshot, now: OffsetDateTime) -> Result<String, RenderError> {
    let mut body = Vec::new();
    write_snapshot(snapshot, now, &mut body)?;
    Ok(utf8(body))
}

/// Writes the `/metrics` body for `snapshot` at scrape time `now` to `out`, in chunks of
/// about [`CHUNK_BYTES`], one family after the other: one `# HELP`/`# TYPE` per family
/// with samples, then every sample of it.
pub fn write_snapshot(
    snapshot: &Snapshot,
    now: OffsetDateTime,
    out: &mut dyn io::Write,
) -> Result<(), RenderError> {
    let mut families = ScrapeFamilies::new(now);
    push_service(&mut families, snapshot, now);
    let endpoint_families = snapshot.endpoint_lines.family_bits();
    let mut chunk = String::with_capacity(CHUNK_BYTES + 4096);
    for index in 0..names::ALL.len() {
        let scraped = families.family(index);
        let has_endpoints = index < fragment::FAMILY_BITS && endpoint_families & (1 << index) != 0;
        if scraped.is_empty() && !has_endpoints {
            continue;
        }
        chunk.push_str(text::header(index));
        chunk.push_str(scraped);
        if has_endpoints {
            let lines = &snapshot.endpoint_lines;
            lines.write_family(index, now, &mut chunk, |chunk| {
                if chunk.len() >= CHUNK_BYTES {
                    out.write_all(chunk.as_bytes())?;
                    chunk.clear();
                }
                Ok(())
            })?;
        }
        if chunk.len() >= CHUNK_BYTES {
            out.write_all(chunk.as_bytes())?;
            chunk.clear();
        }
    }
    out.write_all(chunk.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Every family but the endpoints', rendered at scrape time.
fn push_service(families: &mut impl Sink, snapshot: &Snapshot, now: OffsetDateTime) {
    families.push(names::BUILD_INFO, BUILD_INFO_LABELS, 1.0);
    if let Some(at) = snapshot.reload.last_success {
        families.push(names::CONFIG_LAST_RELOAD_SUCCESS, &[], timestamp(at));
    }
    families.push(
        names::CONFIG_LAST_RELOAD_SUCCESSFUL,
        &[],
        flag(snapshot.reload.last_successful),
    );
    for (reason, count) in &snapshot.probe_errors {
        families.push(names::PROBE_ERRORS, &[("reason", reason)], *count as f64);
    }
    revocation::push_crls(families, &snapshot.crl);
    for report in &snapshot.files {
        push_file(families, report);
    }
    for (path, count) in &snapshot.file_read_errors {
        families.push(names::FILE_READ_ERRORS, &[("path", path)], *count as f64);
    }
    crate::metrics::endpoint_sources::push(families, &snapshot.endpoint_source_files);
    for certificate in &snapshot.certificates {
        certificates::push_certificate(families, certificate, now);
    }
    certificates::push_served(families, &snapshot.served);
    certificates::push_profiles(families, &snapshot.certificates);
    certificates::push_acme(families, &snapshot.acme);
    if let Some(view) = &snapshot.cluster {
        cluster::push_cluster(families, view);
    }
}

/// The families `/metrics` exports for these endpoints and files, without the service's
/// own (reloads, counters since start): what `certinel check --output prometheus` prints
/// for a node_exporter textfile collector.
pub fn render_targets(
    endpoints: &[EndpointReport],
    files: &[FileReport],
    now: OffsetDateTime,
) -> Result<String, RenderError> {
    let mut families = ScrapeFamilies::new(now);
    families.push(names::BUILD_INFO, BUILD_INFO_LABELS, 1.0);
    for report in endpoints {
        push_endpoint(&mut families, report);
    }
    for report in files {
        push_file(&mut families, report);
    }
    Ok(families.into_body())
}

/// The `/probe` body: `certinel_probe_success` and the endpoint gauges of one probe.
pub fn render_probe(report: &EndpointReport, now: OffsetDateTime) -> Result<String, RenderError> {
    let mut families = ScrapeFamilies::new(now);
    families.push(names::PROBE_SUCCESS, &[], flag(probe_succeeded(report)));
    push_endpoint(&mut families, report);
    Ok(families.into_body())
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

/// Adds the series of one endpoint report. Its only scrape-time values are pushed with
/// [`Sink::push_seconds_until`], so the lines can be rendered once per report.
pub(crate) fn push_endpoint(families: &mut impl Sink, report: &EndpointReport) {
    let target = report.endpoint.target.to_string();
    let endpoint = &report.endpoint;
    let endpoint_labels = with_endpoint_labels(vec![("target", target.as_str())], endpoint);
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
        let labels = with_endpoint_labels(vec![("target", target.as_str()), ("ip", "")], endpoint);
        families.push(names::ENDPOINT_UP, &labels, 0.0);
        families.push(names::ENDPOINT_LAST_PROBE, &labels, started);
    }
    for address in &report.addresses {
        let ip = address.ip.to_string();
        let labels = with_endpoint_labels(
            vec![("target", target.as_str()), ("ip", ip.as_str())],
            endpoint,
        );
        families.push(names::ENDPOINT_UP, &labels, flag(address.outcome.is_ok()));
        families.push(
            names::ENDPOINT_PROBE_DURATION,
            &labels,
            address.duration.as_secs_f64(),
        );
        families.push(names::ENDPOINT_LAST_PROBE, &labels, started);
        if let Ok(handshake) = &address.outcome {
            push_handshake(families, &labels, handshake);
        }
    }
}

fn push_handshake(families: &mut impl Sink, labels: &[(&str, &str)], handshake: &Handshake) {
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
    families.push_seconds_until(names::ENDPOINT_CERT_EXPIRY, labels, leaf.not_after);
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
    revocation::push_status(
        families,
        &revocation::ENDPOINT,
        labels,
        handshake.revocation.as_ref(),
    );
    let mut with_version = labels.to_vec();
    with_version.push(("version", handshake.tls_version.as_str()));
    families.push(names::ENDPOINT_TLS_VERSION_INFO, &with_version, 1.0);
}

fn push_chain(families: &mut impl Sink, labels: &[(&str, &str)], chain: &ChainFacts) {
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

fn push_info(families: &mut impl Sink, def: MetricDef, labels: &[(&str, &str)], cert: &CertFacts) {
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

fn push_file(families: &mut impl Sink, report: &FileReport) {
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
    families.push_seconds_until(names::FILE_CERT_EXPIRY, &labels, leaf.not_after);
    families.push(
        names::FILE_CERT_CHAIN_EARLIEST_NOT_AFTER,
        &labels,
        timestamp(chain.earliest_not_after),
    );
    push_info(families, names::FILE_CERT_INFO, &labels, leaf);
    revocation::push_status(
        families,
        &revocation::FILE,
        &labels,
        report.revocation.as_ref(),
    );
}

/// `labels`, then `sni` when the endpoint sets one, then the endpoint's extra labels (a
/// file_sd group's, checked not to collide with certinel's own).
fn with_endpoint_labels<'a>(
    mut labels: Vec<(&'a str, &'a str)>,
    endpoint: &'a Endpoint,
) -> Vec<(&'a str, &'a str)> {
    if let Some(sni) = endpoint.probe.sni.as_deref() {
        labels.push(("sni", sni));
    }
    labels.extend(
        endpoint
            .labels
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );
    labels
}

pub(super) fn timestamp(at: OffsetDateTime) -> f64 {
    at.unix_timestamp() as f64 + f64::from(at.nanosecond()) / 1e9
}

pub(super) fn flag(value: bool) -> f64 {
    if value { 1.0 } else { 0.0 }
}

/// A body rendered into memory; every renderer writes UTF-8.
fn utf8(body: Vec<u8>) -> String {
    String::from_utf8(body)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

#[cfg(test)]
mod equivalence_tests;
#[cfg(test)]
pub(crate) mod tests;
