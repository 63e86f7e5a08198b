//! The state's `/metrics` lines against the renderer they replaced
//! ([`reference`], protobuf + `TextEncoder`, fed the state's reports) after changed
//! results, removals, late results and new jobs.

use time::OffsetDateTime;
use time::macros::datetime;

use super::State;
use crate::metrics::render::reference;
use crate::metrics::render::render_snapshot;
use crate::metrics::render::tests::{handshake, report};
use crate::scan::probe::ProbeError;

const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

#[test]
fn the_state_lines_match_the_protobuf_renderer_after_updates_and_removals() {
    let state = State::new();
    let target = |id: u64| format!("host{:03}.test:443", id % 100);
    let result = |id: u64, variant: i64| {
        let not_after = datetime!(2026-02-01 00:00 UTC) + time::Duration::days(variant);
        let outcome = match variant % 3 {
            0 => Err(ProbeError::Connect("refused".to_owned())),
            _ => handshake(&format!("name{id}.test"), not_after),
        };
        let mut report = report(&target(id), vec![("127.0.0.1", outcome)]);
        report.endpoint.probe.sni = Some(format!("name{id}.test"));
        report
    };
    // 400 endpoints on 100 targets (four jobs each, like SNI names on one port), so the
    // lines span several blocks and ties are broken by job.
    for id in 0..400 {
        state.add_endpoint(id, target(id));
        state.record_endpoint(id, result(id, 1));
    }
    // Changed results (longer, shorter, failed), removals (a reload or a file_sd change),
    // new endpoints, and a result that arrives after its job was removed.
    for id in (0..400).step_by(3) {
        state.record_endpoint(id, result(id, (id % 7) as i64));
    }
    for id in (0..400).step_by(5) {
        state.remove(id);
    }
    state.record_endpoint(5, result(5, 2));
    for id in 400..450 {
        state.add_endpoint(id, target(id));
        state.record_endpoint(id, result(id, 4));
    }
    for now in [NOW, NOW + time::Duration::days(40)] {
        let fast = render_snapshot(&state.metrics_snapshot(), now).unwrap();
        let old = reference::render_snapshot(&state.snapshot(), now);
        assert_eq!(
            fast, old,
            "the same bytes, in order: by target, then by job"
        );
    }
    let body = render_snapshot(&state.metrics_snapshot(), NOW).unwrap();
    let up = body
        .lines()
        .filter(|line| line.starts_with("certinel_endpoint_up{"));
    assert_eq!(up.count(), 400 - 80 + 50);
}
