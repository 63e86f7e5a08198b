//! Which live member carries which certificate (pure): the value each member keeps under
//! its membership key (a [`Card`]), the pages that list its certificate names, and the
//! [`Roster`] a replica assembles from them.
//!
//! A member's names do not fit one etcd value in every installation (10,000 names of up
//! to 200 bytes are 2 MB; etcd refuses requests over 1.5 MiB by default), so they are cut
//! into pages of at most [`PAGE_BYTES`], one key each, and the card says how many pages
//! there are. A replica of an older certinel stores its own name as the value instead of
//! a card; such a member, and one whose pages cannot be read, counts as carrying every
//! certificate (the rollout waits for it, as it did before replicas could differ).

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// The most bytes of names one page holds; far below etcd's 1.5 MiB request limit.
pub const PAGE_BYTES: usize = 256 * 1024;

/// The value of `P/members/<member>`: how many pages list the member's certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// The number of pages under `P/carrying/<member>/`; page `i` is the key `{i:04}`.
    pub pages: usize,
}

impl Card {
    /// The card as stored.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of one integer: serialising it cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The card in a stored value; `None` for an older replica's value (its own name).
    pub fn decode(value: &[u8]) -> Option<Card> {
        serde_json::from_slice(value).ok()
    }
}

/// The certificates one member carries, as far as this replica knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carried {
    /// Every certificate: an older replica, or one whose list could not be read.
    Every,
    /// Exactly these certificate names.
    Only(BTreeSet<String>),
}

impl Carried {
    /// Whether the member carries `certificate`.
    pub fn carries(&self, certificate: &str) -> bool {
        match self {
            Carried::Every => true,
            Carried::Only(names) => names.contains(certificate),
        }
    }
}

/// The live members and what each carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    /// The live members, sorted.
    pub members: Vec<String>,
    /// What each member carries; a live member missing here carries every certificate.
    pub carried: HashMap<String, Carried>,
}

impl Roster {
    /// The live members that carry `certificate`, sorted.
    pub fn carriers(&self, certificate: &str) -> Vec<String> {
        self.members
            .iter()
            .filter(|member| {
                self.carried
                    .get(member.as_str())
                    .is_none_or(|carried| carried.carries(certificate))
            })
            .cloned()
            .collect()
    }
}

/// Cuts `names` into pages of at most `page_bytes` each (a name longer than that gets a
/// page of its own), one name per line.
pub fn pages(names: &BTreeSet<String>, page_bytes: usize) -> Vec<Vec<u8>> {
    let mut pages = Vec::new();
    let mut page: Vec<u8> = Vec::new();
    for name in names {
        if !page.is_empty() && page.len() + name.len() + 1 > page_bytes {
            pages.push(std::mem::take(&mut page));
        }
        page.extend_from_slice(name.as_bytes());
        page.push(b'\n');
    }
    if !page.is_empty() {
        pages.push(page);
    }
    pages
}

/// The names listed by `card`'s pages, given the stored pages as (index, value) pairs in
/// any order; `None` when one is missing or is not text. Pages beyond the card's count
/// are left over from a longer list and do not count.
pub fn read_pages(card: Card, stored: &[(usize, Vec<u8>)]) -> Option<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for index in 0..card.pages {
        let (_, value) = stored.iter().find(|(stored, _)| *stored == index)?;
        let text = std::str::from_utf8(value).ok()?;
        names.extend(
            text.lines()
                .filter(|line| !line.is_empty())
                .map(str::to_owned),
        );
    }
    Some(names)
}

/// The index of a page from the last segment of its key (`0003`).
pub fn page_index(key: &str) -> Option<usize> {
    key.rsplit('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    fn roster(members: &[&str], carried: &[(&str, Carried)]) -> Roster {
        Roster {
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            carried: carried
                .iter()
                .map(|(member, carried)| ((*member).to_owned(), carried.clone()))
                .collect(),
        }
    }

    #[test]
    fn only_the_members_that_carry_a_certificate_roll_it_out() {
        let tiers = roster(
            &["a1", "a2", "b1", "old"],
            &[
                ("a1", Carried::Only(names(&["shop", "www"]))),
                ("a2", Carried::Only(names(&["shop", "www"]))),
                ("b1", Carried::Only(names(&["api"]))),
                ("old", Carried::Every),
            ],
        );
        assert_eq!(tiers.carriers("www"), ["a1", "a2", "old"]);
        assert_eq!(tiers.carriers("api"), ["b1", "old"]);
        assert_eq!(tiers.carriers("nobody"), ["old"]);
    }

    #[test]
    fn a_member_whose_list_is_unknown_carries_everything() {
        let unknown = roster(&["a", "b"], &[("a", Carried::Only(names(&["x"])))]);
        assert_eq!(unknown.carriers("y"), ["b"]);
        assert_eq!(unknown.carriers("x"), ["a", "b"]);
    }

    #[test]
    fn an_older_replicas_value_is_not_a_card() {
        assert_eq!(Card::decode(b"web-1"), None);
        assert_eq!(Card::decode(b"7"), None);
        let card = Card { pages: 3 };
        assert_eq!(Card::decode(&card.encode()), Some(card));
    }

    #[test]
    fn ten_thousand_long_names_split_into_pages_under_the_limit_and_read_back() {
        let long: BTreeSet<String> = (0..10_000)
            .map(|index| format!("{index:05}-{}", "n".repeat(194)))
            .collect();
        let stored = pages(&long, PAGE_BYTES);
        assert!(stored.len() > 1, "2 MB of names need several pages");
        assert!(stored.iter().all(|page| page.len() <= PAGE_BYTES));
        let card = Card {
            pages: stored.len(),
        };
        let mut indexed: Vec<(usize, Vec<u8>)> = stored.into_iter().enumerate().collect();
        indexed.reverse();
        assert_eq!(read_pages(card, &indexed), Some(long));
    }

    #[test]
    fn a_missing_page_is_no_list_and_leftover_pages_are_ignored() {
        let card = Card { pages: 2 };
        let first = (0, b"a\nb\n".to_vec());
        let second = (1, b"c\n".to_vec());
        let leftover = (2, b"gone\n".to_vec());
        assert_eq!(read_pages(card, std::slice::from_ref(&first)), None);
        assert_eq!(
            read_pages(card, &[leftover, second, first]),
            Some(names(&["a", "b", "c"]))
        );
        assert_eq!(read_pages(Card { pages: 0 }, &[]), Some(BTreeSet::new()));
        assert_eq!(page_index("/p/carrying/web-1/0012"), Some(12));
    }

    #[test]
    fn pages_hold_whole_names() {
        let stored = pages(&names(&["aaaa", "bbbb", "cc"]), 10);
        assert_eq!(stored, [b"aaaa\nbbbb\n".to_vec(), b"cc\n".to_vec()]);
        assert!(pages(&BTreeSet::new(), 10).is_empty());
    }
}
