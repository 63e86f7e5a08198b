//! The pre-rendered `/metrics` text of one endpoint, built once when its probe result
//! changes, so a scrape copies bytes instead of rendering 10,000 reports again.
//!
//! A [`Fragment`] holds the sample lines of each family as one run of text. The few
//! values that depend on the scrape time (`*_expiry_seconds`) are kept as the line's
//! `name{labels} ` prefix plus the moment they count down to, and finished at scrape time.
//! Pure: the scrape time is a parameter.

use std::ops::Range;

use time::OffsetDateTime;

use crate::metrics::certificates::DurationHistogram;
use crate::metrics::names::MetricDef;
use crate::metrics::render::text::{self, Sink};
use crate::scan::probe::EndpointReport;

/// How many metric families a fragment's bit set can mark: `names::ALL` has at most this
/// many (tested).
pub const FAMILY_BITS: usize = 128;

/// Sample lines grouped by family, ready to be copied into a scrape.
#[derive(Debug, Default)]
pub struct Fragment {
    text: Box<str>,
    /// Runs of `text` in the order of [`crate::metrics::names::ALL`].
    runs: Box<[Run]>,
    /// Bit `i` is set when the family at `names::ALL[i]` has samples here.
    families: u128,
}

/// One run of lines of one family, or one line prefix whose value is computed at scrape
/// time.
#[derive(Debug)]
struct Run {
    family: u8,
    text: Range<u32>,
    /// When set, `text` is a `name{labels} ` prefix and the value is the seconds from the
    /// scrape time until this moment.
    counts_down_to: Option<OffsetDateTime>,
}

/// Collects the samples of one target; [`FragmentBuilder::finish`] groups them by family.
#[derive(Default)]
pub struct FragmentBuilder {
    /// (family index, line or prefix, count-down moment) in push order.
    pieces: Vec<(usize, String, Option<OffsetDateTime>)>,
}

impl Fragment {
    /// Renders the lines of `report` once.
    pub fn of_report(report: &EndpointReport) -> Fragment {
        let mut builder = FragmentBuilder::default();
        crate::metrics::render::push_endpoint(&mut builder, report);
        builder.finish()
    }

    /// Whether the family at `index` in [`crate::metrics::names::ALL`] has samples here.
    pub fn has_family(&self, index: usize) -> bool {
        index < FAMILY_BITS && self.families & (1 << index) != 0
    }

    /// The families with samples here, as a bit set over the positions in [`crate::metrics::names::ALL`].
    pub fn family_bits(&self) -> u128 {
        self.families
    }

    /// Appends the lines of the family at `index` to `out`, finishing count-down values
    /// at `now`.
    pub fn write_family(&self, index: usize, now: OffsetDateTime, out: &mut String) {
        self.write_runs(self.family_runs(index), now, out);
    }

    /// The runs of the family at `index` (empty when it has none).
    fn family_runs(&self, index: usize) -> &[Run] {
        if !self.has_family(index) {
            return &[];
        }
        let start = self
            .runs
            .partition_point(|run| usize::from(run.family) < index);
        let length = self.runs[start..]
            .iter()
            .take_while(|run| usize::from(run.family) == index)
            .count();
        &self.runs[start..start + length]
    }

    /// The pieces of the family at `index` in order: a complete line, or a line's prefix
    /// with the moment its value counts down to.
    pub(super) fn runs_of(
        &self,
        index: usize,
    ) -> impl Iterator<Item = (&str, Option<OffsetDateTime>)> {
        self.family_runs(index)
            .iter()
            .map(|run| (self.run_text(run), run.counts_down_to))
    }

    fn write_runs(&self, runs: &[Run], now: OffsetDateTime, out: &mut String) {
        for run in runs {
            out.push_str(self.run_text(run));
            if let Some(not_after) = run.counts_down_to {
                text::write_value(out, text::seconds_until(not_after, now));
            }
        }
    }

    fn run_text(&self, run: &Run) -> &str {
        self.text
            .get(run.text.start as usize..run.text.end as usize)
            .unwrap_or_default()
    }

    /// Bytes of text held, for capacity estimates.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }
}

impl FragmentBuilder {
    /// Groups the samples by family (keeping their order within a family).
    pub fn finish(mut self) -> Fragment {
        self.pieces.sort_by_key(|(family, _, _)| *family);
        let mut text = String::with_capacity(self.pieces.iter().map(|p| p.1.len()).sum());
        let mut runs: Vec<Run> = Vec::new();
        let mut families = 0u128;
        for (family, piece, counts_down_to) in self.pieces {
            // Families beyond the bit set cannot be marked; `names::ALL` has fewer (tested).
            let Ok(family_u8) = u8::try_from(family) else {
                continue;
            };
            if family >= FAMILY_BITS {
                continue;
            }
            families |= 1 << family;
            let start = offset(text.len());
            text.push_str(&piece);
            let end = offset(text.len());
            match runs.last_mut() {
                Some(last)
                    if last.family == family_u8
                        && last.counts_down_to.is_none()
                        && counts_down_to.is_none() =>
                {
                    last.text.end = end;
                }
                _ => runs.push(Run {
                    family: family_u8,
                    text: start..end,
                    counts_down_to,
                }),
            }
        }
        Fragment {
            text: text.into_boxed_str(),
            runs: runs.into_boxed_slice(),
            families,
        }
    }
}

/// A text offset; one endpoint's lines are kilobytes, and label values are capped at
/// 1 KiB, so they stay far below 4 GiB.
fn offset(length: usize) -> u32 {
    u32::try_from(length).unwrap_or(u32::MAX)
}

impl Sink for FragmentBuilder {
    fn push(&mut self, def: MetricDef, labels: &[(&str, &str)], value: f64) {
        if text::pushed_histogram(def) {
            return;
        }
        let mut line = String::new();
        text::write_sample(&mut line, def.name, labels, value);
        self.pieces.push((text::family_index(def), line, None));
    }

    fn push_seconds_until(
        &mut self,
        def: MetricDef,
        labels: &[(&str, &str)],
        not_after: OffsetDateTime,
    ) {
        let mut prefix = String::new();
        text::write_prefix(&mut prefix, def.name, "", labels);
        self.pieces
            .push((text::family_index(def), prefix, Some(not_after)));
    }

    fn push_histogram(
        &mut self,
        def: MetricDef,
        labels: &[(&str, &str)],
        histogram: &DurationHistogram,
    ) {
        let mut lines = String::new();
        text::write_histogram(&mut lines, def.name, labels, histogram);
        self.pieces.push((text::family_index(def), lines, None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::names;

    #[test]
    fn every_family_fits_in_the_bit_set() {
        assert!(
            names::ALL.len() <= FAMILY_BITS,
            "Fragment::families is a u128"
        );
    }

    #[test]
    fn lines_come_out_grouped_by_family_in_push_order_with_values_at_scrape_time() {
        let mut builder = FragmentBuilder::default();
        builder.push(names::ENDPOINT_UP, &[("ip", "a")], 1.0);
        builder.push_seconds_until(
            names::ENDPOINT_CERT_EXPIRY,
            &[("ip", "a")],
            OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(100),
        );
        builder.push(names::ENDPOINT_UP, &[("ip", "b")], 0.0);
        let fragment = builder.finish();
        let up = text::family_index(names::ENDPOINT_UP);
        let expiry = text::family_index(names::ENDPOINT_CERT_EXPIRY);
        let mut out = String::new();
        fragment.write_family(up, OffsetDateTime::UNIX_EPOCH, &mut out);
        fragment.write_family(expiry, OffsetDateTime::UNIX_EPOCH, &mut out);
        fragment.write_family(
            expiry,
            OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(30),
            &mut out,
        );
        assert_eq!(
            out,
            "certinel_endpoint_up{ip=\"a\"} 1\ncertinel_endpoint_up{ip=\"b\"} 0\n\
             certinel_endpoint_cert_expiry_seconds{ip=\"a\"} 100\n\
             certinel_endpoint_cert_expiry_seconds{ip=\"a\"} 70\n"
        );
        assert!(!fragment.has_family(text::family_index(names::FILE_CERT_INFO)));
    }
}
