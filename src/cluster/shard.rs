//! Which live member owns which key: rendezvous (highest-random-weight) hashing. Pure.
//!
//! Every member scores every key with a stable hash of `(member, key)` and the highest
//! score owns it. Each replica computes the same owner from the same member list without
//! talking to the others, and a change of membership moves only the keys it must: when a
//! member leaves, only its keys move (each to the member that scored second); when one
//! joins, it takes about `1/n` of the keys, each from a single previous owner.
//!
//! The hash is SHA-256, not std's `DefaultHasher`: that one is randomly seeded per process,
//! and two replicas must agree on every score.

use sha2::{Digest, Sha256};

/// The member that owns `key` among `members`, or `None` when there are no members.
/// Duplicate names count once; the order of `members` does not matter.
pub fn owner<'a>(key: &str, members: &'a [impl AsRef<str>]) -> Option<&'a str> {
    members
        .iter()
        .map(AsRef::as_ref)
        // Ties (astronomically unlikely with 64 bits) go to the greater name, so every
        // replica breaks them the same way.
        .max_by_key(|member| (weight(member, key), *member))
}

/// The keys of `keys` that `me` owns among `members`, in their order. `me` counts as a
/// member even when the list does not name it yet: a replica always sees itself alive.
pub fn share<'k, K: AsRef<str>>(
    keys: &'k [K],
    members: &[impl AsRef<str>],
    me: &str,
) -> Vec<&'k K> {
    keys.iter()
        .filter(|key| owns(key.as_ref(), members, me))
        .collect()
}

/// Whether `me` owns `key` among `members` (`me` counted as in [`share`]).
pub fn owns(key: &str, members: &[impl AsRef<str>], me: &str) -> bool {
    let mut everyone: Vec<&str> = members.iter().map(AsRef::as_ref).collect();
    if !everyone.contains(&me) {
        everyone.push(me);
    }
    owner(key, &everyone) == Some(me)
}

/// The score of `member` for `key`: the first 8 bytes of SHA-256 over the member's name,
/// a zero byte (names never contain one, so no two pairs hash the same input) and the key.
fn weight(member: &str, key: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(member.as_bytes());
    hasher.update([0]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn keys(count: usize) -> Vec<String> {
        (0..count)
            .map(|index| format!("host{index}.test:443"))
            .collect()
    }

    fn owners(keys: &[String], members: &[&str]) -> Vec<String> {
        keys.iter()
            .map(|key| owner(key, members).expect("members").to_owned())
            .collect()
    }

    #[test]
    fn nobody_owns_anything_without_members() {
        assert_eq!(owner("a.test:443", &[] as &[&str]), None);
    }

    #[test]
    fn the_owner_is_the_same_whatever_the_order_of_the_list() {
        let keys = keys(50);
        assert_eq!(
            owners(&keys, &["a", "b", "c"]),
            owners(&keys, &["c", "a", "b"])
        );
    }

    #[test]
    fn the_hash_is_stable_across_processes_and_releases() {
        // Replicas of different builds must agree: these values are SHA-256 as computed by
        // `printf 'a\0k' | sha256sum` and Python's hashlib, not by this code.
        assert_eq!(weight("a", "k"), 0x9a2a_77af_b0d5_0c76);
        assert_eq!(
            owners(&keys(4), &["m0", "m1", "m2"]),
            ["m2", "m2", "m1", "m0"]
        );
    }

    #[test]
    fn three_hundred_keys_over_three_members_are_split_roughly_evenly() {
        let keys = keys(300);
        let members = ["replica-a", "replica-b", "replica-c"];
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for member in members {
            let mine = share(&keys, &members, member);
            counts.insert(member, mine.len());
        }
        assert_eq!(counts.values().sum::<usize>(), 300, "{counts:?}");
        for (member, count) in &counts {
            assert!((60..=140).contains(count), "{member} owns {count}");
        }
    }

    #[test]
    fn a_replica_missing_from_the_list_still_counts_itself() {
        let keys = keys(30);
        let alone = share(&keys, &[] as &[&str], "me");
        assert_eq!(alone.len(), 30);
        let with_others = share(&keys, &["other"], "me");
        assert_eq!(
            with_others.len(),
            share(&keys, &["other", "me"], "me").len()
        );
    }

    #[test]
    fn a_joining_member_takes_about_a_third_from_two() {
        let keys = keys(300);
        let before = owners(&keys, &["a", "b"]);
        let after = owners(&keys, &["a", "b", "c"]);
        let moved: Vec<usize> = (0..keys.len())
            .filter(|&index| before[index] != after[index])
            .collect();
        assert!((60..=140).contains(&moved.len()), "{} moved", moved.len());
        assert!(
            moved.iter().all(|&index| after[index] == "c"),
            "keys move only to the new member"
        );
    }

    fn member_names() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::btree_set("[a-z0-9-]{1,12}", 2..8)
            .prop_map(|names| names.into_iter().collect())
    }

    proptest! {
        #[test]
        fn every_key_has_exactly_one_owner_among_the_members(
            members in member_names(),
            keys in proptest::collection::vec("[a-z.:0-9]{1,30}", 1..60),
        ) {
            for key in &keys {
                let owned_by: Vec<&String> = members
                    .iter()
                    .filter(|me| share(std::slice::from_ref(key), &members, me).len() == 1)
                    .collect();
                prop_assert_eq!(owned_by.len(), 1, "{} owned by {:?}", key, owned_by);
            }
        }

        #[test]
        fn removing_a_member_moves_only_that_members_keys(
            members in member_names(),
            gone in any::<prop::sample::Index>(),
            keys in proptest::collection::vec("[a-z.:0-9]{1,30}", 1..60),
        ) {
            let gone = gone.get(&members).clone();
            let remaining: Vec<&String> = members.iter().filter(|m| **m != gone).collect();
            for key in &keys {
                let before = owner(key, &members).expect("members");
                let after = owner(key, &remaining).expect("members");
                if before != gone {
                    prop_assert_eq!(before, after, "{} moved without cause", key);
                }
            }
        }
    }
}
