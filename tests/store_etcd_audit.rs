//! The audit retention of the etcd store against a real etcd: events older than the
//! retention are deleted by one DeleteRange request (counted in etcd's own metrics), recent
//! ones stay readable, and appending never scans the log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use certinel::store::{AuditEvent, Outcome, Step, Store};
use time::OffsetDateTime;

use crate::common::etcd::EtcdCluster;
use crate::store_etcd::store_on_one_member;

const DAY: Duration = Duration::from_secs(86_400);

fn event(time: OffsetDateTime, certificate: &str) -> AuditEvent {
    AuditEvent::new(time, certificate, Step::Begin, Outcome::Ok)
}

/// A counter from the `/metrics` of the (one) member of `cluster`.
fn etcd_counter(cluster: &EtcdCluster, name: &str) -> u64 {
    let endpoint = &cluster.endpoints()[0];
    let address = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect to etcd's /metrics");
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .unwrap_or_else(|| panic!("no {name} in etcd's /metrics"))
}

#[test]
fn events_past_the_retention_go_in_one_range_request_and_recent_ones_stay() {
    let (cluster, _dir, store) = store_on_one_member();
    let store = store.with_audit_retention(90 * DAY);
    let now = OffsetDateTime::now_utc();
    let old = now - time::Duration::days(120);
    for second in 0..50 {
        store
            .append_audit(&event(old + time::Duration::seconds(second), "old"))
            .unwrap();
    }
    let edge = now - time::Duration::days(89);
    store.append_audit(&event(edge, "edge")).unwrap();
    assert_eq!(store.audit_history().unwrap().events.len(), 51);

    let deletes = etcd_counter(&cluster, "etcd_mvcc_delete_total");
    let ranges = etcd_counter(&cluster, "etcd_mvcc_range_total");
    for second in 0..3 {
        store
            .append_audit(&event(now + time::Duration::seconds(second), "recent"))
            .unwrap();
    }
    assert_eq!(
        etcd_counter(&cluster, "etcd_mvcc_delete_total") - deletes,
        1,
        "the 50 old events went in one DeleteRange"
    );
    assert_eq!(
        etcd_counter(&cluster, "etcd_mvcc_range_total") - ranges,
        0,
        "appending and pruning read nothing"
    );

    let history = store.audit_history().unwrap();
    let kept: Vec<&str> = history
        .events
        .iter()
        .map(|event| event.certificate.as_str())
        .collect();
    assert_eq!(kept, ["edge", "recent", "recent", "recent"]);
    assert!(history.unreadable_lines.is_empty());
}
