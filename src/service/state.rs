//! The service's in-memory state: the latest result of every scheduled job, the counters
//! and the reload status. The only place results are stored; `/metrics` reads snapshots.
//!
//! Invariant: a job's results live exactly as long as the job is registered. A probe that
//! finishes after its job was removed by a reload is dropped, so a target that leaves the
//! configuration leaves `/metrics` too.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

use crate::acme::AcmeObserver;
use crate::config::model::DEFAULT_CA;
use crate::metrics::certificates::{
    AcmeSnapshot, CertificateSnapshot, CurrentVersion, ManagedRevocation,
};
use crate::metrics::cluster::ClusterSnapshot;
use crate::metrics::endpoint_sources::SourceFileStatus;
use crate::metrics::render::{EndpointLines, Fragment, LineKey, ReloadStatus, Snapshot};
use crate::renew::{CaFacts, CertificateStatus};
use crate::scan::crl::fetch::CrlFetcher;
use crate::scan::files::FileReport;
use crate::scan::probe::EndpointReport;
use crate::service::drift::ServedStore;
use crate::store::VersionId;

mod intern;
#[cfg(test)]
mod lines_tests;

use intern::CertInterner;

/// Identifies one scheduled job (an endpoint or a file source) for its lifetime.
pub type JobId = u64;

/// The reason keywords of [`crate::scan::probe::ProbeError::keyword`], pre-set to zero so
/// the counter series exist before the first failure.
pub const PROBE_ERROR_REASONS: [&str; 7] = [
    "config",
    "connect",
    "dns",
    "handshake",
    "internal",
    "starttls",
    "timeout",
];

/// Results and counters shared by the scheduler (writer) and the HTTP handlers (readers).
#[derive(Debug, Default)]
pub struct State {
    inner: Mutex<Inner>,
    served: Arc<ServedStore>,
    /// The `[[endpoint_source]]` files, replaced whole by the reloader.
    endpoint_sources: Mutex<Vec<SourceFileStatus>>,
}

#[derive(Debug, Default)]
struct Inner {
    endpoints: HashMap<JobId, EndpointSlot>,
    /// The `/metrics` lines of every endpoint with a result, by family.
    endpoint_lines: EndpointLines,
    /// One copy of each certificate the kept reports present.
    certificates_seen: CertInterner,
    files: HashMap<JobId, FileSlot>,
    probe_errors: BTreeMap<&'static str, u64>,
    reload: ReloadStatus,
    /// Managed certificates by name; registered while their renewal task runs.
    certificates: BTreeMap<String, CertificateSnapshot>,
    /// The CRL cache of the current probe context, when `[scanner] crl` is on.
    crl: Option<Arc<CrlFetcher>>,
    acme: AcmeSnapshot,
    /// This replica's view of its cluster; `None` without `[cluster]`.
    cluster: Option<ClusterSnapshot>,
}

#[derive(Debug)]
struct EndpointSlot {
    /// `host:port`, computed once: snapshots sort by it (shared, so a scrape of 100,000
    /// endpoints copies no string).
    sort_key: Arc<str>,
    latest: Option<Arc<EndpointReport>>,
}

#[derive(Debug, Default)]
struct FileSlot {
    latest: Option<Vec<Arc<FileReport>>>,
    read_errors: BTreeMap<String, u64>,
}

impl State {
    /// An empty state: no jobs, zeroed counters, no successful load yet.
    pub fn new() -> State {
        let mut inner = Inner::default();
        for reason in PROBE_ERROR_REASONS {
            inner.probe_errors.insert(reason, 0);
        }
        State {
            inner: Mutex::new(inner),
            served: Arc::default(),
            endpoint_sources: Mutex::default(),
        }
    }

    /// Remembers the CRL cache whose CRLs and fetch errors `/metrics` shows.
    pub fn set_crl_fetcher(&self, fetcher: Option<Arc<CrlFetcher>>) {
        self.lock().crl = fetcher;
    }

    /// The CRL cache of the current probe context, when `[scanner] crl` is on; the
    /// managed certificates' revocation watch shares it with the endpoint watch.
    pub fn crl_fetcher(&self) -> Option<Arc<CrlFetcher>> {
        self.lock().crl.clone()
    }

    /// Registers an endpoint job; it counts as pending until its first result.
    pub fn add_endpoint(&self, id: JobId, target: String) {
        let mut inner = self.lock();
        let slot = EndpointSlot {
            sort_key: target.into(),
            latest: None,
        };
        if let Some(previous) = inner.endpoints.insert(id, slot) {
            let key = LineKey {
                target: previous.sort_key,
                id,
            };
            inner.endpoint_lines.remove(&key);
        }
    }

    /// Registers a file-source job; it counts as pending until its first result.
    pub fn add_file_source(&self, id: JobId) {
        self.lock().files.insert(id, FileSlot::default());
    }

    /// Forgets a job and every series it produced.
    pub fn remove(&self, id: JobId) {
        let mut inner = self.lock();
        if let Some(slot) = inner.endpoints.remove(&id) {
            let key = LineKey {
                target: slot.sort_key,
                id,
            };
            inner.endpoint_lines.remove(&key);
        }
        inner.files.remove(&id);
    }

    /// Stores an endpoint's latest report and counts its failures; dropped when the job
    /// is no longer registered.
    pub fn record_endpoint(&self, id: JobId, mut report: EndpointReport) {
        // Rendered before taking the lock: under it the lines are only spliced in.
        let fragment = Fragment::of_report(&report);
        let mut guard = self.lock();
        let inner = &mut *guard;
        let failures: Vec<&'static str> = report
            .resolve_error
            .iter()
            .chain(
                report
                    .addresses
                    .iter()
                    .filter_map(|a| a.outcome.as_ref().err()),
            )
            .map(|error| error.keyword())
            .collect();
        let Some(slot) = inner.endpoints.get_mut(&id) else {
            return;
        };
        let key = LineKey {
            target: slot.sort_key.clone(),
            id,
        };
        inner.certificates_seen.intern_report(&mut report);
        slot.latest = Some(Arc::new(report));
        inner.endpoint_lines.upsert(key, &fragment);
        for reason in failures {
            *inner.probe_errors.entry(reason).or_default() += 1;
        }
    }

    /// Stores the files a source expanded to and counts the unreadable ones; dropped when
    /// the job is no longer registered.
    pub fn record_files(&self, id: JobId, reports: Vec<FileReport>) {
        let mut inner = self.lock();
        let Some(slot) = inner.files.get_mut(&id) else {
            return;
        };
        for report in &reports {
            if report.outcome.is_err() {
                *slot
                    .read_errors
                    .entry(report.path.display().to_string())
                    .or_default() += 1;
            }
        }
        slot.latest = Some(reports.into_iter().map(Arc::new).collect());
    }

    /// Replaces what `/metrics` shows about the endpoint source files.
    pub fn set_endpoint_source_files(&self, files: Vec<SourceFileStatus>) {
        *self
            .endpoint_sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = files;
    }

    /// Records a configuration load attempt at `at`.
    pub fn record_reload(&self, at: OffsetDateTime, successful: bool) {
        let mut inner = self.lock();
        inner.reload.last_successful = successful;
        if successful {
            inner.reload.last_success = Some(at);
        }
    }

    /// Registers a managed certificate: zeroed counters, no facts until
    /// [`update_certificate`](Self::update_certificate). Registering it again keeps its
    /// counters (a changed configuration restarts the task, not the counting).
    pub fn add_certificate(&self, name: &str) {
        self.lock()
            .certificates
            .entry(name.to_owned())
            .or_insert_with(|| CertificateSnapshot {
                name: name.to_owned(),
                ..CertificateSnapshot::default()
            });
    }

    /// Forgets a managed certificate and every series it produced.
    pub fn remove_certificate(&self, name: &str) {
        self.lock().certificates.remove(name);
    }

    /// Replaces the stored facts of a certificate with `status` (read from the store),
    /// keeping the counters; dropped when the certificate is not registered.
    pub fn update_certificate(&self, status: &CertificateStatus) {
        let mut inner = self.lock();
        let Some(slot) = inner.certificates.get_mut(&status.name) else {
            return;
        };
        slot.current = current_version(status);
        slot.matches_config = status.matches_config;
        slot.renewal_scheduled = Some(status.next_renewal);
        slot.last_success_at = status.last_success_at;
        slot.last_attempt_at = status.last_attempt_at;
        slot.consecutive_failures = status.consecutive_failures;
        slot.renewal_rule = Some(status.renewal_rule.as_str());
        slot.ari_window = status.ari_window_start.zip(status.ari_window_end);
        slot.ari_next_poll = status.ari_next_poll;
        slot.revocation = status.revocation.as_ref().map(|check| ManagedRevocation {
            revoked_at: check.revoked_at,
            reason_code: check.reason_code,
        });
    }

    /// Records the version of `name` this replica last rolled out (`[cluster]`).
    pub fn set_local_version(&self, name: &str, version: Option<VersionId>) {
        if let Some(slot) = self.lock().certificates.get_mut(name) {
            slot.local_version = version.map(|version| version.0);
        }
    }

    /// The version of `name` this replica last rolled out as `state` shows it, if any.
    pub fn local_version(&self, name: &str) -> Option<VersionId> {
        let inner = self.lock();
        let slot = inner.certificates.get(name)?;
        slot.local_version.map(VersionId)
    }

    /// Records whether this replica holds `name`'s renewal lock per etcd (`[cluster]`).
    pub fn set_lock_held(&self, name: &str, held: Option<bool>) {
        if let Some(slot) = self.lock().certificates.get_mut(name) {
            slot.lock_held = held;
        }
    }

    /// Records what `name`'s renewer knows about its CA: whether the certificate's
    /// `profile` is advertised, and the CA's clock skew.
    pub fn update_ca_facts(&self, name: &str, profile: Option<&str>, facts: &CaFacts) {
        let mut inner = self.lock();
        if facts.clock_skew.is_some() {
            inner.acme.clock_skew = facts.clock_skew;
        }
        let Some(slot) = inner.certificates.get_mut(name) else {
            return;
        };
        slot.profile = profile.and_then(|profile| {
            let available = facts.profiles_available.get(profile)?;
            Some((profile.to_owned(), *available))
        });
    }

    /// Records what the membership task sees: whether etcd answers and the live members.
    /// The first call makes `/metrics` show the cluster families.
    pub fn set_cluster_membership(&self, connected: bool, members: Vec<String>) {
        let mut inner = self.lock();
        let cluster = inner.cluster.get_or_insert_with(ClusterSnapshot::default);
        cluster.connected = connected;
        cluster.members = members;
    }

    /// Records how many scheduled endpoints this replica owns (its share).
    pub fn set_endpoints_owned(&self, owned: usize) {
        let mut inner = self.lock();
        inner
            .cluster
            .get_or_insert_with(ClusterSnapshot::default)
            .endpoints_owned = owned;
    }

    /// The drift check's results, shared with its loop.
    pub fn served(&self) -> Arc<ServedStore> {
        self.served.clone()
    }

    /// Counts a finished renewal attempt of `name`: `Ok` for a new version, else the CA
    /// it failed at, the failed stage and problem. Dropped when the certificate is not
    /// registered.
    pub fn record_renewal(&self, name: &str, outcome: Result<(), (&str, &str, &str)>) {
        let mut inner = self.lock();
        let Some(slot) = inner.certificates.get_mut(name) else {
            return;
        };
        match outcome {
            Ok(()) => slot.renewals_succeeded += 1,
            Err((ca, stage, problem)) => {
                slot.renewals_failed += 1;
                *slot
                    .failures
                    .entry((ca.to_owned(), stage.to_owned(), problem.to_owned()))
                    .or_default() += 1;
            }
        }
    }

    /// Every registered job has produced at least one result.
    pub fn is_ready(&self) -> bool {
        let inner = self.lock();
        inner.endpoints.values().all(|slot| slot.latest.is_some())
            && inner.files.values().all(|slot| slot.latest.is_some())
    }

    /// A copy of everything `/metrics` and the status page show, sorted by target and
    /// path. Holds the lock only while cloning `Arc`s.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_with(true)
    }

    /// What `/metrics` shows: [`State::snapshot`] without the endpoint reports, whose
    /// lines [`Snapshot::endpoint_lines`] holds already sorted (one `Arc` per block).
    pub fn metrics_snapshot(&self) -> Snapshot {
        self.snapshot_with(false)
    }

    fn snapshot_with(&self, with_reports: bool) -> Snapshot {
        let (
            mut endpoints,
            endpoint_lines,
            files,
            file_read_errors,
            probe_errors,
            reload,
            certificates,
            acme,
            crl,
            cluster,
        ) = {
            let inner = self.lock();
            let endpoints: Vec<(Arc<str>, JobId, Arc<EndpointReport>)> = inner
                .endpoints
                .iter()
                .filter(|_| with_reports)
                .filter_map(|(id, slot)| Some((slot.sort_key.clone(), *id, slot.latest.clone()?)))
                .collect();
            let files: Vec<Arc<FileReport>> = inner
                .files
                .values()
                .filter_map(|slot| slot.latest.as_ref())
                .flatten()
                .cloned()
                .collect();
            let mut file_read_errors = BTreeMap::new();
            for slot in inner.files.values() {
                for (path, count) in &slot.read_errors {
                    *file_read_errors.entry(path.clone()).or_default() += count;
                }
            }
            (
                endpoints,
                inner.endpoint_lines.clone(),
                files,
                file_read_errors,
                inner.probe_errors.clone(),
                inner.reload,
                inner.certificates.values().cloned().collect(),
                inner.acme.clone(),
                inner.crl.clone(),
                inner.cluster.clone(),
            )
        };
        endpoints.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut files = files;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Snapshot {
            endpoints: endpoints.into_iter().map(|(_, _, report)| report).collect(),
            endpoint_lines,
            files,
            probe_errors,
            file_read_errors,
            reload,
            certificates,
            acme,
            served: self.served.snapshot(),
            crl: crl.map(|fetcher| fetcher.summary()).unwrap_or_default(),
            cluster,
            endpoint_source_files: self
                .endpoint_sources
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update above leaves `Inner` consistent at each step, so the data behind a
        // poisoned lock is still sound.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl AcmeObserver for State {
    /// A request without a CA name went to `[acme]` (account commands, single-CA renewals).
    fn request_done(&self, endpoint: &'static str, status: &str, elapsed: Duration) {
        self.request_done_at(DEFAULT_CA, endpoint, status, elapsed);
    }

    fn request_done_at(&self, ca: &str, endpoint: &'static str, status: &str, elapsed: Duration) {
        let mut inner = self.lock();
        *inner
            .acme
            .requests
            .entry((ca.to_owned(), endpoint, status.to_owned()))
            .or_default() += 1;
        inner
            .acme
            .durations
            .entry((ca.to_owned(), endpoint))
            .or_default()
            .observe(elapsed);
    }

    fn order_slots_changed(&self, ca: &str, in_flight: usize, waiting: usize) {
        self.lock()
            .acme
            .orders
            .insert(ca.to_owned(), (in_flight, waiting));
    }
}

fn current_version(status: &CertificateStatus) -> Option<CurrentVersion> {
    Some(CurrentVersion {
        version: status.version?.to_string(),
        serial: status.serial.clone()?,
        issuer: status.issuer.clone().unwrap_or_default(),
        ca: status.ca.clone().unwrap_or_else(|| "unknown".to_owned()),
        key_type: status.key_type.clone().unwrap_or_default(),
        dns_names: status.dns_names.clone(),
        not_before: status.not_before?,
        not_after: status.not_after?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use time::macros::datetime;

    use super::*;
    use crate::metrics::render::tests::{handshake, report};
    use crate::scan::files::FileError;
    use crate::scan::probe::ProbeError;

    fn ok_report(target: &str) -> EndpointReport {
        report(
            target,
            vec![(
                "127.0.0.1",
                handshake("a.test", datetime!(2026-02-01 00:00 UTC)),
            )],
        )
    }

    #[test]
    fn endpoints_presenting_one_certificate_share_its_facts_until_they_are_removed() {
        let state = State::new();
        for id in 0..3 {
            let target = format!("h{id}.test:443");
            let mut report = ok_report(&target);
            if let Ok(handshake) = &mut report.addresses[0].outcome {
                let intermediate = Arc::make_mut(&mut handshake.chain.entries[1].facts);
                intermediate.fingerprint_sha256 = "cd".repeat(32);
            }
            state.add_endpoint(id, target.clone());
            state.record_endpoint(id, report);
        }
        let chain_of = |report: &EndpointReport| match &report.addresses[0].outcome {
            Ok(handshake) => handshake.chain.entries.clone(),
            Err(error) => panic!("{error}"),
        };
        let snapshot = state.snapshot();
        let first = chain_of(&snapshot.endpoints[0]);
        for report in &snapshot.endpoints {
            for (entry, shared) in chain_of(report).iter().zip(&first) {
                assert!(Arc::ptr_eq(&entry.facts, &shared.facts), "{entry:?}");
            }
        }
        assert_eq!(
            state.lock().certificates_seen.live(),
            2,
            "leaf and intermediate"
        );
        drop((snapshot, first));
        for id in 0..3 {
            state.remove(id);
        }
        assert_eq!(
            state.lock().certificates_seen.live(),
            0,
            "freed with the reports"
        );
    }

    #[test]
    fn ready_only_after_every_job_has_a_result() {
        let state = State::new();
        assert!(state.is_ready(), "no jobs: ready at once");
        state.add_endpoint(1, "a.test:443".to_owned());
        state.add_file_source(2);
        assert!(!state.is_ready());
        state.record_endpoint(1, ok_report("a.test:443"));
        assert!(!state.is_ready());
        state.record_files(2, Vec::new());
        assert!(state.is_ready());
    }

    #[test]
    fn removed_jobs_vanish_and_late_results_are_dropped() {
        let state = State::new();
        state.add_endpoint(1, "a.test:443".to_owned());
        state.record_endpoint(1, ok_report("a.test:443"));
        assert_eq!(state.snapshot().endpoints.len(), 1);
        state.remove(1);
        state.record_endpoint(1, ok_report("a.test:443"));
        assert!(state.snapshot().endpoints.is_empty());
    }

    #[test]
    fn failures_are_counted_by_reason_and_file_errors_by_path() {
        let state = State::new();
        state.add_endpoint(1, "b.test:443".to_owned());
        let failing = report(
            "b.test:443",
            vec![
                ("127.0.0.1", Err(ProbeError::Connect("refused".to_owned()))),
                ("127.0.0.2", Err(ProbeError::Connect("refused".to_owned()))),
            ],
        );
        state.record_endpoint(1, failing.clone());
        state.record_endpoint(1, failing);
        state.add_file_source(2);
        let broken = FileReport {
            revocation: None,
            path: PathBuf::from("/x.pem"),
            outcome: Err(FileError::NoMatch {
                pattern: "/x.pem".to_owned(),
            }),
        };
        state.record_files(2, vec![broken]);
        let snapshot = state.snapshot();
        assert_eq!(snapshot.probe_errors["connect"], 4);
        assert_eq!(snapshot.probe_errors["timeout"], 0);
        assert_eq!(snapshot.file_read_errors["/x.pem"], 1);
        state.remove(2);
        assert!(state.snapshot().file_read_errors.is_empty());
    }

    #[test]
    fn snapshots_are_sorted_by_target() {
        let state = State::new();
        for (id, target) in [(1, "c.test:443"), (2, "a.test:443"), (3, "b.test:443")] {
            state.add_endpoint(id, target.to_owned());
            state.record_endpoint(id, ok_report(target));
        }
        let order: Vec<String> = state
            .snapshot()
            .endpoints
            .iter()
            .map(|report| report.endpoint.target.to_string())
            .collect();
        assert_eq!(order, ["a.test:443", "b.test:443", "c.test:443"]);
    }

    #[test]
    fn a_rejected_reload_keeps_the_last_success_time() {
        let state = State::new();
        state.record_reload(datetime!(2026-01-01 00:00 UTC), true);
        state.record_reload(datetime!(2026-01-02 00:00 UTC), false);
        let reload = state.snapshot().reload;
        assert!(!reload.last_successful);
        assert_eq!(reload.last_success, Some(datetime!(2026-01-01 00:00 UTC)));
    }

    fn status(name: &str, failures: u32) -> CertificateStatus {
        CertificateStatus {
            name: name.to_owned(),
            version: Some(crate::store::VersionId(1)),
            serial: Some("0a".to_owned()),
            not_before: Some(datetime!(2026-01-01 00:00 UTC)),
            not_after: Some(datetime!(2026-02-01 00:00 UTC)),
            issuer: Some("CN=CA".to_owned()),
            ca: Some("acme".to_owned()),
            key_type: Some("ecdsa-p256".to_owned()),
            dns_names: vec!["a.test".to_owned()],
            matches_config: true,
            ready: true,
            days_left: Some(31),
            next_renewal: datetime!(2026-01-21 00:00 UTC),
            next_renewal_reason: crate::schedule::plan::Reason::Scheduled,
            renewal_rule: crate::schedule::plan::Rule::RenewBefore,
            ari_window_start: None,
            ari_window_end: None,
            ari_next_poll: None,
            ari_error: None,
            ari_explanation_url: None,
            last_outcome: Some(crate::renew::LastOutcome::Success),
            consecutive_failures: failures,
            last_error: None,
            inflight: None,
            last_success_at: Some(datetime!(2026-01-01 00:00 UTC)),
            last_attempt_at: Some(datetime!(2026-01-01 00:00 UTC)),
            revocation: None,
        }
    }

    #[test]
    fn certificate_facts_are_refreshed_and_counters_kept_until_removal() {
        let state = State::new();
        state.add_certificate("api");
        state.record_renewal("api", Ok(()));
        state.record_renewal("api", Err(("acme", "order", "network")));
        state.record_renewal("api", Err(("acme", "order", "network")));
        state.update_certificate(&status("api", 2));
        // Registering again (a changed configuration) keeps the counters.
        state.add_certificate("api");
        let certificates = state.snapshot().certificates;
        assert_eq!(certificates.len(), 1);
        let api = &certificates[0];
        assert_eq!(api.renewals_succeeded, 1);
        assert_eq!(api.renewals_failed, 2);
        assert_eq!(
            api.failures[&("acme".to_owned(), "order".to_owned(), "network".to_owned())],
            2
        );
        assert_eq!(api.consecutive_failures, 2);
        assert_eq!(
            api.current.as_ref().map(|c| c.version.as_str()),
            Some("v0001")
        );
        assert!(api.is_ready(datetime!(2026-01-10 00:00 UTC)));

        state.remove_certificate("api");
        state.update_certificate(&status("api", 0));
        state.record_renewal("api", Ok(()));
        assert!(
            state.snapshot().certificates.is_empty(),
            "late results are dropped"
        );
    }

    #[test]
    fn acme_requests_are_counted_by_ca_endpoint_and_status() {
        let state = State::new();
        state.request_done("new_order", "201", Duration::from_millis(30));
        state.request_done("new_order", "201", Duration::from_millis(70));
        state.request_done("directory", "network", Duration::from_secs(2));
        state.request_done_at("backup", "new_order", "201", Duration::from_millis(10));
        let acme = state.snapshot().acme;
        let key = |ca: &str, endpoint, status: &str| (ca.to_owned(), endpoint, status.to_owned());
        assert_eq!(acme.requests[&key("acme", "new_order", "201")], 2);
        assert_eq!(acme.requests[&key("acme", "directory", "network")], 1);
        assert_eq!(acme.requests[&key("backup", "new_order", "201")], 1);
        assert_eq!(acme.durations[&("acme".to_owned(), "new_order")].count(), 2);
    }
}
