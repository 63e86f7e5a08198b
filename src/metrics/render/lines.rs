//! The endpoint lines of `/metrics`, kept family by family, so a scrape copies a few
//! large runs of text instead of visiting every endpoint once per family.
//!
//! Endpoints are ordered by [`LineKey`] and grouped into blocks of at most
//! [`MAX_BLOCK_MEMBERS`]. A block keeps, for each family, the lines of all its members back
//! to back plus each member's length there. Replacing an endpoint's lines splices its
//! span in each family of its block (kilobytes move, never the whole set); blocks split
//! when they grow and merge when they shrink. Blocks are shared and copied on write: a
//! scrape clones the block list (one `Arc` per block) and renders while probes go on
//! updating. The values that count down to a moment (`*_expiry_seconds`) are kept as
//! their line's `name{labels} ` prefix plus the moment, and finished at scrape time.
//!
//! Pure: the scrape time is a parameter.

use std::io;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::metrics::render::fragment::{FAMILY_BITS, Fragment};
use crate::metrics::render::text;

/// The most endpoints one block holds; a block that grows beyond it splits in two.
pub const MAX_BLOCK_MEMBERS: usize = 128;

/// A block with fewer endpoints than this merges with its successor when both fit in one.
const MIN_BLOCK_MEMBERS: usize = MAX_BLOCK_MEMBERS / 4;

/// Where an endpoint's lines sit: by target (`host:port`), then by job.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineKey {
    /// `host:port`; shared with the state's slot, so keys copy no string.
    pub target: Arc<str>,
    /// Tells apart endpoints with the same target (different SNI names, modules).
    pub id: u64,
}

/// The pre-rendered lines of every endpoint, by family, in [`LineKey`] order. Cloning is
/// cheap: one `Arc` per [`MAX_BLOCK_MEMBERS`] endpoints.
#[derive(Debug, Clone, Default)]
pub struct EndpointLines {
    /// Consecutive key ranges; never an empty block.
    blocks: Vec<Arc<Block>>,
}

#[derive(Debug, Clone, Default)]
struct Block {
    /// Sorted.
    keys: Vec<LineKey>,
    /// Sorted by family; only families some member has lines in.
    families: Vec<FamilyText>,
    /// Bit `i` is set when `families` holds the family at `names::ALL[i]`.
    bits: u128,
}

/// The lines of one family of every member of a block.
#[derive(Debug, Clone)]
struct FamilyText {
    family: u8,
    text: String,
    /// Bytes of `text` per member, parallel to [`Block::keys`].
    lengths: Vec<u32>,
    /// Where count-down values go, by ascending offset.
    countdowns: Vec<CountDown>,
}

/// A value computed at scrape time: the seconds until `not_after`, written at offset
/// `at` of the text (just after its line's prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CountDown {
    at: u32,
    not_after: OffsetDateTime,
}

/// One endpoint's lines of one family, ready to be spliced into a block.
struct MemberFamily {
    family: u8,
    text: String,
    /// Offsets relative to `text`.
    countdowns: Vec<CountDown>,
}

impl EndpointLines {
    /// Puts `fragment`'s lines at `key`, replacing the lines held there.
    pub fn upsert(&mut self, key: LineKey, fragment: &Fragment) {
        let member = member_families(fragment);
        if self.blocks.is_empty() {
            self.blocks.push(Arc::default());
        }
        let index = self.block_for(&key);
        let block = Arc::make_mut(&mut self.blocks[index]);
        let position = match block.keys.binary_search(&key) {
            Ok(position) => position,
            Err(position) => {
                block.insert_empty(position, key);
                position
            }
        };
        block.replace(position, &member);
        if block.keys.len() > MAX_BLOCK_MEMBERS {
            let upper = block.split_off(block.keys.len() / 2);
            self.blocks.insert(index + 1, Arc::new(upper));
        }
    }

    /// Drops the lines at `key`, if any.
    pub fn remove(&mut self, key: &LineKey) {
        if self.blocks.is_empty() {
            return;
        }
        let index = self.block_for(key);
        let Ok(position) = self.blocks[index].keys.binary_search(key) else {
            return;
        };
        let block = Arc::make_mut(&mut self.blocks[index]);
        block.remove(position);
        if block.keys.is_empty() {
            self.blocks.remove(index);
            return;
        }
        let small = block.keys.len() < MIN_BLOCK_MEMBERS;
        if small
            && let Some(next) = self.blocks.get(index + 1)
            && self.blocks[index].keys.len() + next.keys.len() <= MAX_BLOCK_MEMBERS
        {
            let next = self.blocks.remove(index + 1);
            Arc::make_mut(&mut self.blocks[index]).append(&next);
        }
    }

    /// How many endpoints have lines here.
    pub fn len(&self) -> usize {
        self.blocks.iter().map(|block| block.keys.len()).sum()
    }

    /// Whether no endpoint has lines here.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The families with lines here, as a bit set over the positions in
    /// [`crate::metrics::names::ALL`].
    pub fn family_bits(&self) -> u128 {
        self.blocks.iter().fold(0, |bits, block| bits | block.bits)
    }

    /// Appends the lines of the family at `index` of every endpoint to `out`, in key
    /// order, finishing count-down values at `now`; calls `flush` after each block.
    pub fn write_family(
        &self,
        index: usize,
        now: OffsetDateTime,
        out: &mut String,
        mut flush: impl FnMut(&mut String) -> io::Result<()>,
    ) -> io::Result<()> {
        if index >= FAMILY_BITS {
            return Ok(());
        }
        for block in &self.blocks {
            if block.bits & (1 << index) == 0 {
                continue;
            }
            if let Some(family) = block.family(index) {
                family.write(now, out);
                flush(out)?;
            }
        }
        Ok(())
    }

    /// The block `key` belongs in: the first whose last key is not below it, else the
    /// last. Requires at least one block.
    fn block_for(&self, key: &LineKey) -> usize {
        let index = self
            .blocks
            .partition_point(|block| block.keys.last().is_some_and(|last| last < key));
        index.min(self.blocks.len() - 1)
    }
}

impl Block {
    fn family(&self, index: usize) -> Option<&FamilyText> {
        let position = self
            .families
            .binary_search_by_key(&index, |family| usize::from(family.family))
            .ok()?;
        self.families.get(position)
    }

    /// Adds a member without lines at `position`.
    fn insert_empty(&mut self, position: usize, key: LineKey) {
        self.keys.insert(position, key);
        for family in &mut self.families {
            family.lengths.insert(position, 0);
        }
    }

    /// Replaces the lines of the member at `position` with `member`'s.
    fn replace(&mut self, position: usize, member: &[MemberFamily]) {
        for new in member {
            if let Err(at) = self
                .families
                .binary_search_by_key(&new.family, |family| family.family)
            {
                self.families.insert(
                    at,
                    FamilyText {
                        family: new.family,
                        text: String::new(),
                        lengths: vec![0; self.keys.len()],
                        countdowns: Vec::new(),
                    },
                );
            }
        }
        let mut member = member.iter().peekable();
        for family in &mut self.families {
            match member.next_if(|new| new.family == family.family) {
                Some(new) => family.splice(position, &new.text, &new.countdowns),
                None => family.splice(position, "", &[]),
            }
        }
        self.drop_empty_families();
    }

    fn remove(&mut self, position: usize) {
        self.replace(position, &[]);
        self.keys.remove(position);
        for family in &mut self.families {
            family.lengths.remove(position);
        }
    }

    /// Moves the members from `position` on into a new block.
    fn split_off(&mut self, position: usize) -> Block {
        let keys = self.keys.split_off(position);
        let families = self
            .families
            .iter_mut()
            .map(|family| family.split_off(position))
            .collect();
        let mut upper = Block {
            keys,
            families,
            bits: 0,
        };
        self.drop_empty_families();
        upper.drop_empty_families();
        upper
    }

    /// Appends the members of `next`, whose keys all follow this block's.
    fn append(&mut self, next: &Block) {
        let (ours, theirs) = (self.keys.len(), next.keys.len());
        let mut merged = Vec::with_capacity(self.families.len().max(next.families.len()));
        let mut mine = std::mem::take(&mut self.families).into_iter().peekable();
        let mut others = next.families.iter().peekable();
        loop {
            let family = match (mine.peek(), others.peek()) {
                (None, None) => break,
                (Some(a), Some(b)) if a.family == b.family => {
                    let (Some(mut a), Some(b)) = (mine.next(), others.next()) else {
                        break;
                    };
                    a.append(b);
                    a
                }
                (Some(a), b) if b.is_none_or(|b| a.family < b.family) => {
                    let Some(mut a) = mine.next() else { break };
                    a.lengths.resize(ours + theirs, 0);
                    a
                }
                _ => {
                    let Some(b) = others.next() else { break };
                    let mut b = b.clone();
                    b.lengths.splice(0..0, std::iter::repeat_n(0, ours));
                    b
                }
            };
            merged.push(family);
        }
        self.families = merged;
        self.keys.extend(next.keys.iter().cloned());
        self.drop_empty_families();
    }

    /// Forgets families no member has lines in any more and recomputes the bit set.
    fn drop_empty_families(&mut self) {
        self.families.retain(|family| !family.text.is_empty());
        self.bits = self
            .families
            .iter()
            .fold(0, |bits, family| bits | (1 << family.family));
    }
}

impl FamilyText {
    /// Replaces the span of the member at `position` with `text`, whose count-downs are
    /// `countdowns` (offsets relative to `text`).
    ///
    /// `position` indexes a member: [`Block`] keeps `lengths` as long as its `keys`.
    fn splice(&mut self, position: usize, text: &str, countdowns: &[CountDown]) {
        let start: usize = self.lengths[..position]
            .iter()
            .map(|length| *length as usize)
            .sum();
        let end = start + self.lengths[position] as usize;
        if start == end && text.is_empty() {
            return;
        }
        self.text.replace_range(start..end, text);
        self.lengths[position] = offset(text.len());
        // A member's count-downs sit after its first byte and at most at its end: an
        // offset equal to `start` is the end of the previous member's last line.
        let first = self.countdowns.partition_point(|c| c.at as usize <= start);
        let last = self.countdowns.partition_point(|c| c.at as usize <= end);
        let added = countdowns.iter().map(|c| CountDown {
            at: offset(c.at as usize + start),
            not_after: c.not_after,
        });
        self.countdowns.splice(first..last, added);
        let shifted_from = first + countdowns.len();
        for countdown in &mut self.countdowns[shifted_from..] {
            countdown.at = offset(countdown.at as usize - end + start + text.len());
        }
    }

    /// Moves the members from `position` on (at most their count) into a new family text.
    fn split_off(&mut self, position: usize) -> FamilyText {
        let cut: usize = self.lengths[..position]
            .iter()
            .map(|length| *length as usize)
            .sum();
        let text = self.text.split_off(cut);
        let lengths = self.lengths.split_off(position);
        let first = self.countdowns.partition_point(|c| c.at as usize <= cut);
        let countdowns = self
            .countdowns
            .split_off(first)
            .into_iter()
            .map(|c| CountDown {
                at: offset(c.at as usize - cut),
                not_after: c.not_after,
            })
            .collect();
        FamilyText {
            family: self.family,
            text,
            lengths,
            countdowns,
        }
    }

    /// Appends the members of `next`, the same family of the following block.
    fn append(&mut self, next: &FamilyText) {
        let base = self.text.len();
        self.text.push_str(&next.text);
        self.lengths.extend_from_slice(&next.lengths);
        self.countdowns
            .extend(next.countdowns.iter().map(|c| CountDown {
                at: offset(c.at as usize + base),
                not_after: c.not_after,
            }));
    }

    fn write(&self, now: OffsetDateTime, out: &mut String) {
        let mut copied = 0;
        for countdown in &self.countdowns {
            let at = countdown.at as usize;
            out.push_str(self.text.get(copied..at).unwrap_or_default());
            text::write_value(out, text::seconds_until(countdown.not_after, now));
            copied = at;
        }
        out.push_str(self.text.get(copied..).unwrap_or_default());
    }
}

/// `fragment`'s lines, one text per family, by ascending family.
fn member_families(fragment: &Fragment) -> Vec<MemberFamily> {
    (0..FAMILY_BITS)
        .filter(|index| fragment.has_family(*index))
        .filter_map(|index| {
            let family = u8::try_from(index).ok()?;
            let mut text = String::new();
            let mut countdowns = Vec::new();
            for (piece, counts_down_to) in fragment.runs_of(index) {
                text.push_str(piece);
                if let Some(not_after) = counts_down_to {
                    countdowns.push(CountDown {
                        at: offset(text.len()),
                        not_after,
                    });
                }
            }
            Some(MemberFamily {
                family,
                text,
                countdowns,
            })
        })
        .collect()
}

/// A text offset within one block's family: at most [`MAX_BLOCK_MEMBERS`] endpoints of
/// kilobytes each (label values are capped at 1 KiB), far below 4 GiB.
fn offset(length: usize) -> u32 {
    u32::try_from(length).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
