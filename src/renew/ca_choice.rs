//! Which CA a renewal asks, in which order (pure): the certificate's ordered `ca` list, the
//! failures remembered per CA, and whether a failure hands over to the next CA at once.
//!
//! Two kinds of failure: a CA that cannot serve now (unreachable, server errors after the
//! retries, rate-limited, lacking the configured profile) hands over to the next CA within
//! the same attempt and is not remembered; any other failure (validation, CAA, a bad
//! answer) is counted against that CA, and once a CA has failed `failover_after` times in a
//! row the next attempts start with the CA after it. A success forgets every count, so the
//! renewal after one goes back to the first CA.

use std::collections::BTreeMap;

/// How a failed attempt at one CA bears on the choice of CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CaFailure {
    /// The CA cannot serve now: try the next CA within this attempt.
    HandOver,
    /// A failure of another kind: counted against the CA.
    Counted,
}

/// The kind of failure an ACME `stage` and `problem` keyword (as in the failure metrics)
/// are. A CA whose directory or account endpoint answers nonsense or nothing usable cannot
/// serve either (a 503 page instead of the directory surfaces as `protocol`).
pub(crate) fn classify(stage: &str, problem: &str) -> CaFailure {
    match (stage, problem) {
        (_, "network" | "serverInternal" | "rateLimited" | "profileUnavailable") => {
            CaFailure::HandOver
        }
        ("account", "protocol" | "timeout" | "responseTooLarge") => CaFailure::HandOver,
        _ => CaFailure::Counted,
    }
}

/// The CAs one attempt tries, in order: starting with the first configured CA whose
/// consecutive counted failures are below `failover_after`, then the ones after it, then
/// the skipped ones (a CA that failed validation is still better than none). When every CA
/// reached the count, the configured order.
pub(crate) fn attempt_order(
    configured: &[String],
    failures: &BTreeMap<String, u32>,
    failover_after: u32,
) -> Vec<String> {
    let exhausted =
        |name: &String| failures.get(name).copied().unwrap_or(0) >= failover_after.max(1);
    let start = configured
        .iter()
        .position(|name| !exhausted(name))
        .unwrap_or(0);
    configured[start..]
        .iter()
        .chain(&configured[..start])
        .cloned()
        .collect()
}

/// The failure counts after an attempt at `ca` ended with `failure` (`None`: a success,
/// which forgets every count).
pub(crate) fn after_attempt(
    mut failures: BTreeMap<String, u32>,
    ca: &str,
    failure: Option<CaFailure>,
) -> BTreeMap<String, u32> {
    match failure {
        None => BTreeMap::new(),
        Some(CaFailure::HandOver) => failures,
        Some(CaFailure::Counted) => {
            let count = failures.entry(ca.to_owned()).or_insert(0);
            *count = count.saturating_add(1);
            failures
        }
    }
}

/// `order` with the CA that holds a renewal's recorded order first: a renewal interrupted
/// after placing an order at one CA resumes there (the order URL means nothing to another
/// CA, and a second order would spend a limit). The CA is the one whose directory has the
/// order URL's scheme, host and port, among `cas` (name, directory).
pub(crate) fn resume_first<'a>(
    mut order: Vec<String>,
    cas: impl IntoIterator<Item = (&'a str, &'a str)>,
    order_url: &str,
) -> Vec<String> {
    let holder = cas
        .into_iter()
        .find(|(_, directory)| origin(directory) == origin(order_url))
        .map(|(name, _)| name);
    if let Some(index) = holder.and_then(|name| order.iter().position(|ca| ca == name)) {
        let ca = order.remove(index);
        order.insert(0, ca);
    }
    order
}

/// `https://host:port` of a URL (everything before the path).
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |index| index + 3);
    match url[after_scheme..].find('/') {
        Some(index) => &url[..after_scheme + index],
        None => url,
    }
}

/// The CA name of a version whose metadata says it came from `source` (a directory URL),
/// among `cas` (name, directory); `None` for a directory no longer configured.
pub(crate) fn ca_of_source<'a>(
    cas: impl IntoIterator<Item = (&'a str, &'a str)>,
    source: &str,
) -> Option<&'a str> {
    cas.into_iter()
        .find(|(_, directory)| *directory == source)
        .map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    fn counts(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
        list.iter()
            .map(|(name, count)| ((*name).to_owned(), *count))
            .collect()
    }

    /// Remembered failures, `ca_failover_after`, the expected order.
    type OrderCase<'a> = (&'a [(&'a str, u32)], u32, &'a [&'a str]);

    #[test]
    fn attempt_order_table() {
        let configured = names(&["first", "second", "third"]);
        let cases: &[OrderCase<'_>] = &[
            // Nothing remembered: the configured order.
            (&[], 3, &["first", "second", "third"]),
            // Below the count: still the first.
            (&[("first", 2)], 3, &["first", "second", "third"]),
            // The first reached the count: start with the second, the first last.
            (&[("first", 3)], 3, &["second", "third", "first"]),
            (&[("first", 1)], 1, &["second", "third", "first"]),
            // The first two reached it.
            (
                &[("first", 3), ("second", 4)],
                3,
                &["third", "first", "second"],
            ),
            // Only a later CA reached it: the first still leads.
            (&[("second", 9)], 3, &["first", "second", "third"]),
            // All reached it: the configured order.
            (
                &[("first", 3), ("second", 3), ("third", 3)],
                3,
                &["first", "second", "third"],
            ),
            // A count of 0 behaves as 1.
            (&[("first", 1)], 0, &["second", "third", "first"]),
        ];
        for (failures, failover_after, expected) in cases {
            assert_eq!(
                attempt_order(&configured, &counts(failures), *failover_after),
                names(expected),
                "failures {failures:?}, failover_after {failover_after}"
            );
        }
    }

    #[test]
    fn a_single_ca_is_always_asked() {
        let configured = names(&["acme"]);
        assert_eq!(
            attempt_order(&configured, &counts(&[("acme", 10)]), 3),
            names(&["acme"])
        );
    }

    #[test]
    fn classify_table() {
        for problem in [
            "network",
            "serverInternal",
            "rateLimited",
            "profileUnavailable",
        ] {
            assert_eq!(classify("order", problem), CaFailure::HandOver, "{problem}");
        }
        for problem in ["protocol", "timeout", "responseTooLarge"] {
            assert_eq!(
                classify("account", problem),
                CaFailure::HandOver,
                "{problem}"
            );
            assert_eq!(
                classify("finalize", problem),
                CaFailure::Counted,
                "{problem}"
            );
        }
        for problem in [
            "unauthorized",
            "incorrectResponse",
            "connection",
            "dns",
            "caa",
            "timeout",
            "rejectedIdentifier",
            "hook",
            "stale",
        ] {
            assert_eq!(
                classify("challenge", problem),
                CaFailure::Counted,
                "{problem}"
            );
        }
    }

    #[test]
    fn after_attempt_table() {
        let before = counts(&[("first", 2), ("second", 1)]);
        assert_eq!(
            after_attempt(before.clone(), "first", Some(CaFailure::Counted)),
            counts(&[("first", 3), ("second", 1)])
        );
        assert_eq!(
            after_attempt(before.clone(), "third", Some(CaFailure::Counted)),
            counts(&[("first", 2), ("second", 1), ("third", 1)])
        );
        assert_eq!(
            after_attempt(before.clone(), "first", Some(CaFailure::HandOver)),
            before
        );
        assert_eq!(after_attempt(before, "second", None), counts(&[]));
    }

    #[test]
    fn a_recorded_order_is_resumed_at_the_ca_that_holds_it() {
        let cas = [
            ("acme", "https://127.0.0.1:14000/dir"),
            ("backup", "https://127.0.0.1:15000/dir"),
        ];
        let order = names(&["acme", "backup"]);
        assert_eq!(
            resume_first(order.clone(), cas, "https://127.0.0.1:15000/my-order/7"),
            names(&["backup", "acme"])
        );
        assert_eq!(
            resume_first(order.clone(), cas, "https://127.0.0.1:14000/my-order/7"),
            order
        );
        // An order at a CA no longer configured changes nothing.
        assert_eq!(
            resume_first(order.clone(), cas, "https://127.0.0.1:16000/my-order/7"),
            order
        );
    }

    #[test]
    fn a_version_maps_to_the_ca_of_its_directory() {
        let cas = [
            ("acme", "https://one.test/dir"),
            ("backup", "https://two.test/dir"),
        ];
        assert_eq!(ca_of_source(cas, "https://two.test/dir"), Some("backup"));
        assert_eq!(ca_of_source(cas, "https://gone.test/dir"), None);
    }
}
