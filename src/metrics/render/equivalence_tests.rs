//! The fast path (pre-rendered fragments, hand-written text) against the renderer it
//! replaced ([`super::reference`], protobuf + `TextEncoder`): the same samples, the same
//! headers, every family grouped, and promtool accepts the body.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use time::OffsetDateTime;
use time::macros::datetime;

use super::tests::{chain, facts, handshake, report, served};
use super::{ReloadStatus, Snapshot, reference, render_probe, render_snapshot};
use crate::metrics::certificates::tests::on_ari_window;
use crate::metrics::certificates::{
    AcmeSnapshot, CertificateSnapshot, DurationHistogram, ServedSample,
};
use crate::scan::files::{FileError, FileReport};
use crate::scan::probe::ProbeError;
use crate::scan::verify::{Reason, Verification};

const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

/// Samples as (series name, sorted labels) -> value text, and the comment lines.
#[derive(Debug, PartialEq)]
struct Parsed {
    samples: BTreeMap<(String, BTreeMap<String, String>), String>,
    comments: BTreeSet<String>,
}

fn parse(body: &str) -> Parsed {
    let mut samples = BTreeMap::new();
    let mut comments = BTreeSet::new();
    for line in body.lines() {
        if line.starts_with('#') {
            assert!(comments.insert(line.to_owned()), "repeated {line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("}"))),
            None => (series, BTreeMap::new()),
        };
        let previous = samples.insert((name.to_owned(), labels), value.to_owned());
        assert!(previous.is_none(), "duplicate series {series}");
    }
    Parsed { samples, comments }
}

/// `a="x",b="y\"z"` into a map, unescaping values.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => panic!("dangling escape"),
                },
                c => value.push(c),
            }
        }
        if chars.peek() == Some(&',') {
            chars.next();
        }
        labels.insert(name, value);
    }
    labels
}

/// Every family's samples follow its `# TYPE` line and no family comes back later.
fn assert_grouped(body: &str) {
    let mut seen = BTreeSet::new();
    let mut current = String::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            current = rest.split(' ').next().unwrap_or_default().to_owned();
            assert!(seen.insert(current.clone()), "{current} appears twice");
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|f| *f == current))
                .unwrap_or(name);
            assert_eq!(family, current, "{line} outside its family");
        }
    }
}

fn every_kind_of_result() -> Snapshot {
    let mut healthy = report(
        "ok.test:443",
        vec![
            (
                "127.0.0.1",
                handshake("ok.test", datetime!(2026-01-31 12:00 UTC)),
            ),
            ("::1", handshake("ok.test", datetime!(2026-01-31 12:00 UTC))),
        ],
    );
    // A file_sd target's extra labels.
    healthy.endpoint.labels = vec![("team".to_owned(), "web".to_owned())];
    let mut expired = served("old.test:8443", "10.0.0.1", datetime!(2025-12-30 00:00 UTC));
    if let Ok(handshake) = &mut expired.addresses[0].outcome {
        handshake.verification = Verification {
            verified: false,
            reason: Some(Reason::Expired),
            detail: "expired".to_owned(),
        };
        Arc::make_mut(&mut handshake.chain.entries[0].facts).subject =
            "CN=a \"quoted\" \\ name\nx".to_owned();
    }
    expired.endpoint.probe.sni = Some("alias.test".to_owned());
    expired.client_cert = Some(facts("client", datetime!(2026-03-01 00:00 UTC)));
    expired.addresses_disagree = true;
    expired.addresses_truncated = 2;
    let down = report(
        "down.test:443",
        vec![
            ("127.0.0.2", Err(ProbeError::Connect("refused".to_owned()))),
            (
                "127.0.0.3",
                handshake("down.test", datetime!(2026-06-01 00:00 UTC)),
            ),
        ],
    );
    let mut gone = report("gone.test:443", vec![]);
    gone.resolve_error = Some(ProbeError::Dns {
        host: "gone.test".to_owned(),
        detail: "NXDOMAIN".to_owned(),
    });
    let mut durations = DurationHistogram::default();
    for millis in [30, 70, 400, 45_000] {
        durations.observe(std::time::Duration::from_millis(millis));
    }
    let mut failing = CertificateSnapshot {
        name: "failing".to_owned(),
        consecutive_failures: 2,
        renewals_failed: 2,
        renewal_rule: Some("renew_before"),
        ..CertificateSnapshot::default()
    };
    failing.failures.insert(
        ("acme".to_owned(), "order".to_owned(), "network".to_owned()),
        2,
    );
    Snapshot {
        files: vec![
            Arc::new(FileReport {
                path: PathBuf::from("/etc/ssl/site.pem"),
                outcome: Ok(chain("site.test", datetime!(2026-01-11 00:00 UTC))),
                revocation: None,
            }),
            Arc::new(FileReport {
                path: PathBuf::from("/etc/ssl/broken.pem"),
                outcome: Err(FileError::Parse {
                    path: PathBuf::from("/etc/ssl/broken.pem"),
                    detail: "no certificate".to_owned(),
                }),
                revocation: None,
            }),
        ],
        probe_errors: [("connect", 3), ("dns", 1), ("timeout", 0)].into(),
        file_read_errors: [("/etc/ssl/broken.pem".to_owned(), 2)].into(),
        crl: Default::default(),
        cluster: Some(crate::metrics::cluster::ClusterSnapshot {
            connected: true,
            members: vec!["web-1".to_owned(), "web-2".to_owned()],
            endpoints_owned: 2,
        }),
        endpoint_source_files: vec![
            crate::metrics::endpoint_sources::SourceFileStatus {
                file: "/etc/certinel/targets/web.json".to_owned(),
                successful: true,
                targets: 12,
            },
            crate::metrics::endpoint_sources::SourceFileStatus {
                file: "/etc/certinel/targets/broken.yml".to_owned(),
                successful: false,
                targets: 0,
            },
        ],
        reload: ReloadStatus {
            last_success: Some(datetime!(2025-12-31 00:00 UTC)),
            last_successful: false,
        },
        certificates: vec![on_ari_window(true), failing],
        acme: AcmeSnapshot {
            requests: [(("acme".to_owned(), "new_order", "201".to_owned()), 4)].into(),
            durations: [(("acme".to_owned(), "new_order"), durations)].into(),
            clock_skew: Some(-1.5),
            orders: [("acme".to_owned(), (2, 1))].into(),
        },
        served: vec![ServedSample {
            name: "api".to_owned(),
            target: "api.test:443".to_owned(),
            ip: "127.0.0.1".parse().unwrap(),
            current: true,
            served_serial: "1a2b".to_owned(),
        }],
        ..Snapshot::with_endpoints(vec![healthy, expired, down, gone])
    }
}

#[test]
fn the_fast_path_renders_the_same_samples_as_the_protobuf_renderer() {
    let snapshot = every_kind_of_result();
    // Twice, at two scrape times: cached lines must not freeze the expiry values.
    for now in [NOW, NOW + time::Duration::hours(5)] {
        let fast = render_snapshot(&snapshot, now).unwrap();
        let old = reference::render_snapshot(&snapshot, now);
        assert_grouped(&fast);
        let (fast_parsed, old_parsed) = (parse(&fast), parse(&old));
        assert!(fast_parsed.samples.len() > 60, "{fast}");
        assert_eq!(fast_parsed, old_parsed, "fast:\n{fast}\nold:\n{old}");
        assert_eq!(fast, old, "the fast path even keeps the byte order");
    }
}

#[test]
fn the_probe_body_is_the_same_as_the_protobuf_renderers() {
    let snapshot = every_kind_of_result();
    for report in &snapshot.endpoints {
        let fast = render_probe(report, NOW).unwrap();
        let old = reference::render_probe(report, NOW);
        assert_eq!(parse(&fast), parse(&old), "fast:\n{fast}\nold:\n{old}");
    }
}

#[test]
fn promtool_accepts_the_fast_path_body() {
    let body = render_snapshot(&every_kind_of_result(), NOW).unwrap();
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is required (Debian package `prometheus`)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{findings}\n{body}");
}

#[test]
fn endpoint_series_use_only_the_label_names_file_sd_files_may_not_set() {
    let body = render_snapshot(&every_kind_of_result(), NOW).unwrap();
    let endpoint_series = parse(&body).samples.into_keys().filter(|(name, _)| {
        (name.starts_with("certinel_endpoint_") || name.starts_with("certinel_client_cert_"))
            && !name.starts_with("certinel_endpoint_source_")
    });
    let mut names = BTreeSet::new();
    for (_, labels) in endpoint_series {
        names.extend(labels.into_keys());
    }
    names.remove("team");
    let reserved: BTreeSet<String> = crate::config::file_sd::CERTINEL_LABELS
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
    let unreserved: Vec<&String> = names.difference(&reserved).collect();
    assert!(
        unreserved.is_empty(),
        "certinel labels missing from file_sd::CERTINEL_LABELS: {unreserved:?}"
    );
}
