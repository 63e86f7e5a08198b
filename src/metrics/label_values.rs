//! Label values short enough for every Prometheus: a certificate's SAN list is summarised
//! (`a,b,c,+1997 more`) and every value is capped at [`MAX_LABEL_VALUE_BYTES`].
//!
//! Prometheus drops a whole scrape when one label value passes its
//! `label_value_length_limit`, so one certificate with 2,000 names (37 KB joined) or a
//! hostile subject would blank out every metric of the target. Pure: strings in, strings out.

use std::borrow::Cow;

/// The longest label value certinel exports, in bytes. Well under any limit a Prometheus
/// operator would set, well over any honest subject, issuer or path.
pub const MAX_LABEL_VALUE_BYTES: usize = 1024;

/// The most names a `dns_names` label lists before summarising the rest.
pub const MAX_LISTED_NAMES: usize = 20;

/// Marks a value cut at [`MAX_LABEL_VALUE_BYTES`].
const CUT_MARK: &str = "...";

/// `names` joined with commas: the first ones, at most [`MAX_LISTED_NAMES`] and within
/// [`MAX_LABEL_VALUE_BYTES`], then `+N more` for the rest.
pub fn name_list(names: &[String]) -> String {
    // Room for ",+NNNNNNNNNN more" keeps the summary itself under the cap.
    const SUMMARY_ROOM: usize = 24;
    let mut listed = String::new();
    let mut count = 0;
    for name in names.iter().take(MAX_LISTED_NAMES) {
        let separator = usize::from(count > 0);
        if listed.len() + separator + name.len() > MAX_LABEL_VALUE_BYTES - SUMMARY_ROOM {
            break;
        }
        if count > 0 {
            listed.push(',');
        }
        listed.push_str(name);
        count += 1;
    }
    let rest = names.len() - count;
    if rest > 0 {
        if count > 0 {
            listed.push(',');
        }
        listed.push_str(&format!("+{rest} more"));
    }
    listed
}

/// `value` when it fits in [`MAX_LABEL_VALUE_BYTES`], else its start (cut at a character
/// boundary) followed by `...`.
pub fn capped(value: &str) -> Cow<'_, str> {
    if value.len() <= MAX_LABEL_VALUE_BYTES {
        return Cow::Borrowed(value);
    }
    let mut end = MAX_LABEL_VALUE_BYTES - CUT_MARK.len();
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{CUT_MARK}", &value[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(count: usize) -> Vec<String> {
        (0..count)
            .map(|i| format!("host-{i:04}.example.com"))
            .collect()
    }

    #[test]
    fn a_short_list_is_joined_whole() {
        assert_eq!(
            name_list(&names(2)),
            "host-0000.example.com,host-0001.example.com"
        );
        assert_eq!(name_list(&[]), "");
    }

    #[test]
    fn two_thousand_names_become_the_first_twenty_and_a_count() {
        let label = name_list(&names(2000));
        assert!(
            label.starts_with("host-0000.example.com,host-0001"),
            "{label}"
        );
        assert!(label.ends_with(",+1980 more"), "{label}");
        assert!(label.len() <= MAX_LABEL_VALUE_BYTES, "{}", label.len());
    }

    #[test]
    fn long_names_stop_the_list_at_the_byte_cap() {
        let long: Vec<String> = (0..5).map(|i| format!("{i}{}", "a".repeat(400))).collect();
        let label = name_list(&long);
        assert!(label.len() <= MAX_LABEL_VALUE_BYTES, "{}", label.len());
        assert!(label.ends_with(",+3 more"), "{label}");
        let huge = vec!["x".repeat(5000)];
        assert_eq!(name_list(&huge), "+1 more");
    }

    #[test]
    fn capped_cuts_at_a_character_boundary() {
        let value = "é".repeat(MAX_LABEL_VALUE_BYTES);
        let cut = capped(&value);
        assert!(cut.len() <= MAX_LABEL_VALUE_BYTES);
        assert!(cut.ends_with("é..."), "{cut}");
        assert!(matches!(capped("short"), Cow::Borrowed("short")));
    }
}
