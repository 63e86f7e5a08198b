//! What the watch keeps per certificate ([`Watched`]) and how one etcd key's value changes
//! it: pure, no I/O. `watch.rs` feeds it the range read and the watch events.
//!
//! The watched keys are `P/certs/NAME/links` (the `current` pointer),
//! `P/certs/NAME/inflight` (present or not) and `P/locks/NAME` (the holder's member name);
//! every other key under the watched range is ignored.

use std::collections::HashMap;

use crate::store::backend::{LockHolder, Watched};
use crate::store::etcd::cert_state::Links;
use crate::store::etcd::keys::Keys;

/// Which watched value of a certificate a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// `P/certs/NAME/links`.
    Links,
    /// `P/certs/NAME/inflight`.
    Inflight,
    /// `P/locks/NAME`.
    Lock,
}

/// The certificate and field `key` stands for, or `None` for a key the view ignores.
pub(crate) fn classify<'k>(keys: &Keys, key: &'k str) -> Option<(&'k str, Field)> {
    let rest = key.strip_prefix(keys.prefix())?;
    if let Some(name) = rest.strip_prefix("locks/") {
        return (!name.contains('/')).then_some((name, Field::Lock));
    }
    let (name, leaf) = rest.strip_prefix("certs/")?.split_once('/')?;
    match leaf {
        "links" => Some((name, Field::Links)),
        "inflight" => Some((name, Field::Inflight)),
        _ => None,
    }
}

/// `before` after `field` took the value `value` (`None`: the key was deleted). `member`
/// is this replica's name, compared with a lock's value. A `links` value that does not
/// parse leaves `current` as it was: the store's own reads report that value's error.
pub(crate) fn apply(before: Watched, field: Field, value: Option<&[u8]>, member: &str) -> Watched {
    let mut after = before;
    match field {
        Field::Links => match value {
            None => after.current = None,
            Some(bytes) => {
                if let Ok(links) = serde_json::from_slice::<Links>(bytes) {
                    after.current = links.current;
                }
            }
        },
        Field::Inflight => after.inflight = value.is_some(),
        Field::Lock => {
            after.lock = match value {
                None => LockHolder::Free,
                Some(holder) if holder == member.as_bytes() => LockHolder::ThisMember,
                Some(_) => LockHolder::OtherMember,
            }
        }
    }
    after
}

/// Every certificate's [`Watched`] from the key-value pairs of one range read.
pub(crate) fn snapshot<'e>(
    keys: &Keys,
    member: &str,
    entries: impl IntoIterator<Item = (&'e str, &'e [u8])>,
) -> HashMap<String, Watched> {
    let mut view: HashMap<String, Watched> = HashMap::new();
    for (key, value) in entries {
        if let Some((name, field)) = classify(keys, key) {
            let slot = view.entry(name.to_owned()).or_default();
            *slot = apply(*slot, field, Some(value), member);
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use crate::store::metadata::VersionId;

    use super::*;

    #[test]
    fn only_links_inflight_and_lock_keys_are_watched() {
        let keys = Keys::new("/p/");
        assert_eq!(
            classify(&keys, "/p/certs/web/links"),
            Some(("web", Field::Links))
        );
        assert_eq!(
            classify(&keys, "/p/certs/web/inflight"),
            Some(("web", Field::Inflight))
        );
        assert_eq!(classify(&keys, "/p/locks/web"), Some(("web", Field::Lock)));
        for ignored in [
            "/p/certs/web/v/v0001",
            "/p/certs/web/schedule",
            "/p/certs/web/rollout/v0001/r1",
            "/p/dry-run/accounts/a",
            "/q/certs/web/links",
            "/p/locks/web/extra",
        ] {
            assert_eq!(classify(&keys, ignored), None, "{ignored}");
        }
    }

    #[test]
    fn values_set_current_inflight_and_the_holder_and_deletes_clear_them() {
        let links = br#"{"current":"v0002","previous":"v0001"}"#;
        let mut view = apply(Watched::default(), Field::Links, Some(links), "r1");
        assert_eq!(view.current, Some(VersionId(2)));
        view = apply(view, Field::Inflight, Some(b"{}"), "r1");
        view = apply(view, Field::Lock, Some(b"r2"), "r1");
        assert!(view.inflight);
        assert_eq!(view.lock, LockHolder::OtherMember);
        assert_eq!(
            apply(view, Field::Lock, Some(b"r1"), "r1").lock,
            LockHolder::ThisMember
        );
        view = apply(view, Field::Lock, None, "r1");
        view = apply(view, Field::Inflight, None, "r1");
        assert_eq!(view.lock, LockHolder::Free);
        assert!(!view.inflight);
        // A damaged pointer changes nothing; a deleted one means no version.
        assert_eq!(
            apply(view, Field::Links, Some(b"{oops"), "r1").current,
            Some(VersionId(2))
        );
        assert_eq!(apply(view, Field::Links, None, "r1").current, None);
    }

    #[test]
    fn a_snapshot_gathers_each_certificates_keys_and_skips_the_others() {
        let keys = Keys::new("/p/");
        let entries: [(&str, &[u8]); 5] = [
            (
                "/p/certs/a/links",
                br#"{"current":"v0001","previous":null}"#,
            ),
            ("/p/certs/a/v/v0001", b"{}"),
            ("/p/certs/b/inflight", b"{}"),
            ("/p/locks/b", b"r1"),
            ("/p/dry-run/accounts/x", b"{}"),
        ];
        let view = snapshot(&keys, "r1", entries);
        assert_eq!(view.len(), 2);
        assert_eq!(view["a"].current, Some(VersionId(1)));
        assert_eq!(view["a"].lock, LockHolder::Free);
        assert!(view["b"].inflight && view["b"].current.is_none());
        assert_eq!(view["b"].lock, LockHolder::ThisMember);
    }
}
