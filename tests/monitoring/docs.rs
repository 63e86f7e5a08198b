//! docs/metrics.md and the metric contract (src/metrics/names.rs) list the same metrics,
//! with the same types.

use std::collections::BTreeMap;
use std::path::Path;

use certinel::metrics::names::{ALL, Kind};

#[test]
fn metrics_md_has_a_row_for_exactly_the_metrics_names_rs_defines_with_their_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    let documented = documented_metrics(&text);
    let defined: BTreeMap<&str, &str> = ALL
        .iter()
        .map(|def| {
            let kind = match def.kind {
                Kind::Gauge => "gauge",
                Kind::Counter => "counter",
                Kind::Histogram => "histogram",
            };
            (def.name, kind)
        })
        .collect();
    assert_eq!(
        documented, defined,
        "docs/metrics.md tables (left) and names::ALL (right) differ"
    );
}

/// The `| `name` | type | ...` rows of the markdown tables, by metric name.
fn documented_metrics(markdown: &str) -> BTreeMap<&str, &str> {
    let mut rows = BTreeMap::new();
    for line in markdown.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, name, kind, ..] = cells.as_slice() else {
            continue;
        };
        let Some(name) = name
            .strip_prefix('`')
            .and_then(|name| name.strip_suffix('`'))
            .filter(|name| name.starts_with("certinel_"))
        else {
            continue;
        };
        assert!(
            rows.insert(name, *kind).is_none(),
            "{name} documented twice"
        );
    }
    rows
}
