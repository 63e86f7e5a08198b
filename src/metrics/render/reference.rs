//! The renderer `/metrics` used before the pre-rendered fragments: every sample built as a
//! `prometheus::proto` value and encoded by the `prometheus` crate's `TextEncoder`. Kept
//! for tests only, as the reference the fast path's output is compared with.

use std::collections::BTreeMap;

use prometheus::TextEncoder;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use time::OffsetDateTime;

use super::{Sink, Snapshot, flag, push_endpoint, push_service, text};
use crate::metrics::certificates::DurationHistogram;
use crate::metrics::label_values;
use crate::metrics::names::{self, ACME_DURATION_BUCKETS, Kind, MetricDef};

/// The body the old renderer produced for `snapshot` at `now`.
pub(crate) fn render_snapshot(snapshot: &Snapshot, now: OffsetDateTime) -> String {
    let mut families = ProtoFamilies {
        now,
        samples: BTreeMap::new(),
    };
    push_service(&mut families, snapshot, now);
    for endpoint in &snapshot.endpoints {
        push_endpoint(&mut families, endpoint);
    }
    families.encode()
}

/// The old `/probe` body.
pub(crate) fn render_probe(
    report: &crate::scan::probe::EndpointReport,
    now: OffsetDateTime,
) -> String {
    let mut families = ProtoFamilies {
        now,
        samples: BTreeMap::new(),
    };
    families.push(
        names::PROBE_SUCCESS,
        &[],
        flag(super::probe_succeeded(report)),
    );
    push_endpoint(&mut families, report);
    families.encode()
}

struct ProtoFamilies {
    now: OffsetDateTime,
    samples: BTreeMap<&'static str, Vec<Metric>>,
}

fn labelled(labels: &[(&str, &str)]) -> Metric {
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

impl Sink for ProtoFamilies {
    fn push(&mut self, def: MetricDef, labels: &[(&str, &str)], value: f64) {
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
            Kind::Histogram => return,
        }
        self.samples.entry(def.name).or_default().push(metric);
    }

    fn push_seconds_until(
        &mut self,
        def: MetricDef,
        labels: &[(&str, &str)],
        not_after: OffsetDateTime,
    ) {
        let value = text::seconds_until(not_after, self.now);
        self.push(def, labels, value);
    }

    fn push_histogram(
        &mut self,
        def: MetricDef,
        labels: &[(&str, &str)],
        histogram: &DurationHistogram,
    ) {
        let mut cumulative = 0;
        let buckets = ACME_DURATION_BUCKETS
            .iter()
            .zip(histogram.counts)
            .map(|(bound, count)| {
                cumulative += count;
                let mut bucket = Bucket::default();
                bucket.set_upper_bound(*bound);
                bucket.set_cumulative_count(cumulative);
                bucket
            })
            .collect();
        let mut proto = Histogram::default();
        proto.set_bucket(buckets);
        proto.set_sample_count(histogram.count());
        proto.set_sample_sum(histogram.sum);
        let mut metric = labelled(labels);
        metric.set_histogram(proto);
        self.samples.entry(def.name).or_default().push(metric);
    }
}

impl ProtoFamilies {
    fn encode(mut self) -> String {
        let mut families = Vec::new();
        for def in names::ALL {
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
        TextEncoder::new()
            .encode_utf8(&families, &mut body)
            .expect("every family has samples");
        body
    }
}
