//! [`EndpointLines`] against the fragments it was built from: after any sequence of
//! updates, insertions and removals (blocks splitting and merging), every family reads
//! back as the fragments' lines in key order, with count-down values at scrape time.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use time::macros::datetime;

use super::*;
use crate::metrics::names;
use crate::metrics::render::fragment::FragmentBuilder;
use crate::metrics::render::text::{Sink, family_index};

const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

/// A fragment whose size and families depend on `variant`: some endpoints have no
/// certificate lines, some several addresses, some a count-down.
fn fragment(target: &str, variant: u64) -> Fragment {
    let mut builder = FragmentBuilder::default();
    let addresses = variant % 4;
    if addresses == 0 {
        builder.push(names::ENDPOINT_UP, &[("target", target), ("ip", "")], 0.0);
    }
    for address in 0..addresses {
        let ip = format!("10.0.{variant}.{address}");
        let labels = [("target", target), ("ip", ip.as_str())];
        builder.push(names::ENDPOINT_UP, &labels, 1.0);
        builder.push(
            names::ENDPOINT_PROBE_DURATION,
            &labels,
            variant as f64 / 7.0,
        );
        if variant % 3 != 0 {
            let not_after = NOW + time::Duration::seconds(variant as i64 * 1000 - 5000);
            builder.push_seconds_until(names::ENDPOINT_CERT_EXPIRY, &labels, not_after);
            builder.push(names::ENDPOINT_CERT_VERIFIED, &labels, 1.0);
        }
    }
    builder.finish()
}

fn key(target: &str, id: u64) -> LineKey {
    LineKey {
        target: Arc::from(target),
        id,
    }
}

/// Every family of `lines`, and what the fragments of `model` give in key order.
fn families_of(lines: &EndpointLines, model: &BTreeMap<LineKey, Fragment>, now: OffsetDateTime) {
    let expected_bits = model.values().fold(0, |bits, f| bits | f.family_bits());
    assert_eq!(lines.family_bits(), expected_bits);
    assert_eq!(lines.len(), model.len());
    for index in 0..names::ALL.len() {
        let mut actual = String::new();
        lines
            .write_family(index, now, &mut actual, |_| Ok(()))
            .unwrap();
        let mut expected = String::new();
        for fragment in model.values() {
            fragment.write_family(index, now, &mut expected);
        }
        assert_eq!(actual, expected, "family {}", names::ALL[index].name);
    }
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Steps(u64);

impl Steps {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[test]
fn lines_read_back_in_key_order_after_updates_insertions_and_removals() {
    let mut lines = EndpointLines::default();
    let mut model = BTreeMap::new();
    let mut steps = Steps(0x9e37_79b9_7f4a_7c15);
    // Enough endpoints for many blocks; targets repeat so ids break ties.
    for round in 0..4000 {
        let target = format!("host{:03}.test:443", steps.next(300));
        let id = steps.next(3);
        let key = key(&target, id);
        if steps.next(4) == 0 {
            lines.remove(&key);
            model.remove(&key);
        } else {
            let fragment = fragment(&target, steps.next(40));
            lines.upsert(key.clone(), &fragment);
            model.insert(key, fragment);
        }
        if round % 500 == 0 {
            families_of(&lines, &model, NOW);
        }
    }
    families_of(&lines, &model, NOW);
    families_of(&lines, &model, NOW + time::Duration::hours(3));
    assert!(lines.blocks.len() > 3, "the test must split blocks");
    // Remove everything: blocks merge, then vanish.
    let keys: Vec<LineKey> = model.keys().cloned().collect();
    for (position, key) in keys.iter().enumerate() {
        lines.remove(key);
        model.remove(key);
        if position % 97 == 0 {
            families_of(&lines, &model, NOW);
        }
    }
    assert!(lines.is_empty());
    assert_eq!(lines.family_bits(), 0);
}

#[test]
fn a_scrape_keeps_the_lines_it_cloned_while_updates_go_on() {
    let mut lines = EndpointLines::default();
    for id in 0..300 {
        lines.upsert(key("a.test:443", id), &fragment("a.test:443", 1));
    }
    let scraped = lines.clone();
    for id in 0..300 {
        lines.upsert(key("a.test:443", id), &fragment("a.test:443", 0));
    }
    let up = family_index(names::ENDPOINT_UP);
    let mut before = String::new();
    scraped
        .write_family(up, NOW, &mut before, |_| Ok(()))
        .unwrap();
    assert_eq!(before.matches(" 1\n").count(), 300, "{before}");
    let mut after = String::new();
    lines.write_family(up, NOW, &mut after, |_| Ok(())).unwrap();
    assert_eq!(after.matches(" 0\n").count(), 300, "{after}");
}

#[test]
fn a_family_no_endpoint_has_lines_in_any_more_is_gone() {
    let mut lines = EndpointLines::default();
    lines.upsert(key("a.test:443", 1), &fragment("a.test:443", 1));
    let expiry = family_index(names::ENDPOINT_CERT_EXPIRY);
    assert_ne!(lines.family_bits() & (1 << expiry), 0);
    lines.upsert(key("a.test:443", 1), &fragment("a.test:443", 0));
    assert_eq!(lines.family_bits() & (1 << expiry), 0);
}
