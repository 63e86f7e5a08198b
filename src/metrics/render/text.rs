//! The Prometheus text format, written by hand: one sample line, escaping, `# HELP` and
//! `# TYPE` headers, and [`ScrapeFamilies`], the per-family buffers that families rendered
//! at scrape time are collected into. Pure: strings in, strings out.
//!
//! The format matches what the `prometheus` crate's `TextEncoder` writes (values through
//! `f64`'s `Display`, label values escaped for `\`, newline and `"`), so switching encoders
//! changed no sample.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use time::OffsetDateTime;

use crate::metrics::certificates::DurationHistogram;
use crate::metrics::label_values;
use crate::metrics::names::{self, ACME_DURATION_BUCKETS, Kind, MetricDef};

/// Where the renderers put samples: the scrape-time text buffers, the pre-rendered
/// fragment of one endpoint, or (in tests) the reference protobuf encoder.
pub trait Sink {
    /// Adds one gauge or counter sample.
    fn push(&mut self, def: MetricDef, labels: &[(&str, &str)], value: f64);
    /// Adds a sample whose value is the seconds from the scrape time until `not_after`
    /// (negative once past), so it can be cached apart from the scrape time.
    fn push_seconds_until(
        &mut self,
        def: MetricDef,
        labels: &[(&str, &str)],
        not_after: OffsetDateTime,
    );
    /// Adds one histogram with [`ACME_DURATION_BUCKETS`].
    fn push_histogram(
        &mut self,
        def: MetricDef,
        labels: &[(&str, &str)],
        histogram: &DurationHistogram,
    );
}

/// Whether `def` is a histogram, which [`Sink::push`] cannot take as one value: a bug in
/// the caller, logged so that the sample is dropped visibly.
pub fn pushed_histogram(def: MetricDef) -> bool {
    if def.kind != Kind::Histogram {
        return false;
    }
    tracing::error!(
        metric = def.name,
        "a histogram pushed as one value; dropped"
    );
    true
}

/// Families rendered at scrape time: one text buffer per entry of [`names::ALL`].
pub struct ScrapeFamilies {
    now: OffsetDateTime,
    buffers: Vec<String>,
}

/// The position of `def` in [`names::ALL`], which orders the families of a body.
pub fn family_index(def: MetricDef) -> usize {
    static INDEX: OnceLock<HashMap<&'static str, usize>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        names::ALL
            .iter()
            .enumerate()
            .map(|(position, def)| (def.name, position))
            .collect()
    });
    match index.get(def.name) {
        Some(position) => *position,
        None => {
            // A definition missing from `names::ALL` is a bug the names test catches; its
            // samples go last rather than nowhere.
            tracing::error!(metric = def.name, "metric missing from names::ALL");
            names::ALL.len()
        }
    }
}

/// The `# HELP` and `# TYPE` lines of the family at `index` in [`names::ALL`], escaped
/// once per process instead of once per body (empty past the end).
pub fn header(index: usize) -> &'static str {
    static HEADERS: OnceLock<Vec<String>> = OnceLock::new();
    let headers = HEADERS.get_or_init(|| {
        names::ALL
            .iter()
            .map(|def| {
                let mut header = String::new();
                write_header(&mut header, *def);
                header
            })
            .collect()
    });
    headers.get(index).map_or("", String::as_str)
}

/// Writes `# HELP` and `# TYPE` for `def`.
pub fn write_header(out: &mut String, def: MetricDef) {
    out.push_str("# HELP ");
    out.push_str(def.name);
    out.push(' ');
    escape_into(out, def.help, false);
    out.push_str("\n# TYPE ");
    out.push_str(def.name);
    out.push_str(match def.kind {
        Kind::Gauge => " gauge\n",
        Kind::Counter => " counter\n",
        Kind::Histogram => " histogram\n",
    });
}

/// Writes `name{labels} ` (with the trailing space, without the value). Every label value
/// is capped ([`label_values::capped`]) so one long name never makes Prometheus drop the
/// scrape.
pub fn write_prefix(out: &mut String, name: &str, suffix: &str, labels: &[(&str, &str)]) {
    out.push_str(name);
    out.push_str(suffix);
    let mut separator = '{';
    for (label, value) in labels {
        out.push(separator);
        out.push_str(label);
        out.push_str("=\"");
        escape_into(out, &label_values::capped(value), true);
        out.push('"');
        separator = ',';
    }
    if separator == ',' {
        out.push('}');
    }
    out.push(' ');
}

/// Whole numbers below this (2^53) are exact in an `f64`, and their shortest decimal form is
/// the integer itself.
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// Writes a sample value the way the text encoder does, followed by a newline.
pub fn write_value(out: &mut String, value: f64) {
    // Writing into a String cannot fail. Timestamps, counts and flags are whole numbers:
    // written as integers they skip the shortest-float search and read the same ("-0"
    // keeps the float path, an integer has no sign for zero).
    let whole = value.fract() == 0.0 && value.abs() < EXACT_INTEGERS;
    if whole && !(value == 0.0 && value.is_sign_negative()) {
        // In range and whole, so the conversion is exact.
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
    out.push('\n');
}

/// Writes one complete sample line.
pub fn write_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    write_prefix(out, name, "", labels);
    write_value(out, value);
}

/// Seconds from `now` until `not_after`, negative once past.
pub fn seconds_until(not_after: OffsetDateTime, now: OffsetDateTime) -> f64 {
    (not_after - now).as_seconds_f64()
}

/// Writes the `_bucket`, `_sum` and `_count` lines of one histogram.
pub fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    histogram: &DurationHistogram,
) {
    let mut with_bound = labels.to_vec();
    let mut cumulative = 0;
    let bounds: Vec<String> = ACME_DURATION_BUCKETS.iter().map(f64::to_string).collect();
    for (bound, count) in bounds.iter().zip(histogram.counts) {
        cumulative += count;
        with_bound.truncate(labels.len());
        with_bound.push(("le", bound));
        write_prefix(out, name, "_bucket", &with_bound);
        write_value(out, cumulative as f64);
    }
    with_bound.truncate(labels.len());
    with_bound.push(("le", "+Inf"));
    write_prefix(out, name, "_bucket", &with_bound);
    write_value(out, histogram.count() as f64);
    write_prefix(out, name, "_sum", labels);
    write_value(out, histogram.sum);
    write_prefix(out, name, "_count", labels);
    write_value(out, histogram.count() as f64);
}

fn escape_into(out: &mut String, value: &str, quote: bool) {
    let special = |c: char| c == '\\' || c == '\n' || (quote && c == '"');
    if !value.contains(special) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

impl ScrapeFamilies {
    /// Empty buffers for a scrape at `now`.
    pub fn new(now: OffsetDateTime) -> ScrapeFamilies {
        ScrapeFamilies {
            now,
            buffers: vec![String::new(); names::ALL.len() + 1],
        }
    }

    /// The sample lines of the family at `index` in [`names::ALL`] (empty when none).
    pub fn family(&self, index: usize) -> &str {
        self.buffers.get(index).map_or("", String::as_str)
    }

    /// The whole body: each family with samples under its headers, in the order of
    /// [`names::ALL`].
    pub fn into_body(self) -> String {
        let size = (self.buffers.iter().enumerate())
            .filter(|(_, lines)| !lines.is_empty())
            .map(|(index, lines)| header(index).len() + lines.len())
            .sum();
        let mut body = String::with_capacity(size);
        for (index, lines) in self.buffers.iter().take(names::ALL.len()).enumerate() {
            if !lines.is_empty() {
                body.push_str(header(index));
                body.push_str(lines);
            }
        }
        body
    }

    fn buffer(&mut self, def: MetricDef) -> &mut String {
        let index = family_index(def);
        &mut self.buffers[index]
    }
}

impl Sink for ScrapeFamilies {
    fn push(&mut self, def: MetricDef, labels: &[(&str, &str)], value: f64) {
        if pushed_histogram(def) {
            return;
        }
        write_sample(self.buffer(def), def.name, labels, value);
    }

    fn push_seconds_until(
        &mut self,
        def: MetricDef,
        labels: &[(&str, &str)],
        not_after: OffsetDateTime,
    ) {
        let value = seconds_until(not_after, self.now);
        self.push(def, labels, value);
    }

    fn push_histogram(
        &mut self,
        def: MetricDef,
        labels: &[(&str, &str)],
        histogram: &DurationHistogram,
    ) {
        write_histogram(self.buffer(def), def.name, labels, histogram);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_like_the_text_encoder() {
        let mut out = String::new();
        for value in [1.0, 0.25, -172800.0, 1769860800.0, 1e21, f64::NAN] {
            write_value(&mut out, value);
        }
        assert_eq!(
            out,
            "1\n0.25\n-172800\n1769860800\n1000000000000000000000\nNaN\n"
        );
    }

    #[test]
    fn whole_values_are_written_exactly_as_floats_are() {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            9_007_199_254_740_991.0,
            -9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            4_503_599_627_370_497.0,
            1e15,
            1e16,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.5,
            1769860800.25,
        ];
        // Spread over every magnitude up to 2^53, with a fixed LCG.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let magnitude = (seed >> 58) as i32;
            let whole = ((seed >> 11) % (1 << magnitude.min(53))) as f64;
            values.push(if seed & 1 == 0 { whole } else { -whole });
        }
        for value in values {
            let mut out = String::new();
            write_value(&mut out, value);
            assert_eq!(out, format!("{value}\n"), "value {value:e}");
        }
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut out = String::new();
        write_sample(&mut out, "m", &[("a", "x\"y\\z\nw")], 1.0);
        assert_eq!(out, "m{a=\"x\\\"y\\\\z\\nw\"} 1\n");
        let mut header = String::new();
        escape_into(&mut header, "say \"hi\"\\\n", false);
        assert_eq!(header, "say \"hi\"\\\\\\n");
        let mut bare = String::new();
        write_sample(&mut bare, "m", &[], 2.0);
        assert_eq!(bare, "m 2\n");
    }
}
