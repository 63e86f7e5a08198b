//! Finds the dotted key (`endpoint[1].timeout`) of a byte range in a parsed TOML document.
//!
//! toml's errors carry a span but not the key path, so the path is recovered by searching
//! the spanned document tree for the node at that span.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The key of the node at `span`: the deepest node whose key or value span equals `span`,
/// or failing that the deepest whose span contains its start.
pub(crate) fn key_at(root: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    let mut best: Option<Candidate> = None;
    let mut path = Vec::new();
    search_table(root, span, &mut path, &mut best);
    best.map(|candidate| candidate.key)
}

/// `parent.child`, quoting `child` when it is not a bare TOML key.
pub(crate) fn join(parent: Option<&str>, child: &str) -> String {
    let bare = !child.is_empty()
        && child
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let child = if bare {
        child.to_owned()
    } else {
        format!("{child:?}")
    };
    match parent {
        Some(parent) => format!("{parent}.{child}"),
        None => child,
    }
}

struct Candidate {
    exact: bool,
    depth: usize,
    key: String,
}

/// One step of a key path: a table key or an array index.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn search_table<'a>(
    table: &'a DeTable<'_>,
    span: &Range<usize>,
    path: &mut Vec<Step<'a>>,
    best: &mut Option<Candidate>,
) {
    for (key, value) in table.iter() {
        path.push(Step::Key(key.get_ref()));
        consider(&key.span(), span, path, best);
        search_value(value, span, path, best);
        path.pop();
    }
}

fn search_value<'a>(
    value: &'a Spanned<DeValue<'_>>,
    span: &Range<usize>,
    path: &mut Vec<Step<'a>>,
    best: &mut Option<Candidate>,
) {
    consider(&value.span(), span, path, best);
    match value.get_ref() {
        DeValue::Table(table) => search_table(table, span, path, best),
        DeValue::Array(array) => {
            for (index, item) in array.iter().enumerate() {
                path.push(Step::Index(index));
                search_value(item, span, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

fn consider(
    node: &Range<usize>,
    span: &Range<usize>,
    path: &[Step<'_>],
    best: &mut Option<Candidate>,
) {
    let exact = node == span;
    let contains = node.start <= span.start && (span.start < node.end || node.start == node.end);
    if !(exact || contains) {
        return;
    }
    let better = best
        .as_ref()
        .is_none_or(|current| (exact, path.len()) > (current.exact, current.depth));
    if better {
        *best = Some(Candidate {
            exact,
            depth: path.len(),
            key: render(path),
        });
    }
}

fn render(path: &[Step<'_>]) -> String {
    let mut key: Option<String> = None;
    for step in path {
        key = Some(match step {
            Step::Key(name) => join(key.as_deref(), name),
            Step::Index(index) => format!("{}[{index}]", key.unwrap_or_default()),
        });
    }
    key.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key `key_at` names for the span of the first `needle` in `text` must be
    /// `expected`.
    fn check(text: &str, needle: &str, expected: &str) {
        let root = DeTable::parse(text).unwrap();
        let start = text.find(needle).unwrap();
        let key = key_at(root.get_ref(), &(start..start + needle.len()));
        assert_eq!(key.as_deref(), Some(expected), "{needle:?} in {text:?}");
    }

    #[test]
    fn values_in_arrays_of_tables_get_indexed_keys() {
        let text =
            "[[endpoint]]\ntarget = \"a\"\n\n[[endpoint]]\ntarget = \"b\"\ntimeout = \"30x\"\n";
        check(text, "\"30x\"", "endpoint[1].timeout");
        let root = DeTable::parse(text).unwrap();
        let second_header = text.rfind("[[endpoint]]").unwrap();
        let span = second_header..second_header + "[[endpoint]]".len();
        assert_eq!(
            key_at(root.get_ref(), &span).as_deref(),
            Some("endpoint[1]")
        );
    }

    #[test]
    fn keys_of_nested_tables_are_dotted_and_quoted_when_needed() {
        let text = "[exporter.module.\"my.mod\"]\ntimeout = 5\n";
        check(text, "5", "exporter.module.\"my.mod\".timeout");
    }

    #[test]
    fn an_unknown_key_is_found_by_its_own_span() {
        check(
            "[scanner]\nconcurency = 1\n",
            "concurency",
            "scanner.concurency",
        );
    }
}
