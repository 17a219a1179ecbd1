//! Verification of a shard (every invariant, under its lock), and the report types of
//! [`Store::verify`](crate::Store::verify), which also checks the header and the counters.

use std::fmt;
use std::sync::atomic::Ordering;

use super::{ctrl, place, Locked};
use crate::clock::LazyNow;
use crate::hash::{hash, HashKey};
use crate::redo;
use crate::region::raw;

impl Locked<'_> {
    /// Records a problem of this shard (at a slot, or of the shard as a whole).
    fn reporter<'p>(
        &self,
        problems: &'p mut Vec<Problem>,
    ) -> impl FnMut(Option<usize>, ProblemKind) + 'p {
        let shard = self.s.index as u32;
        move |slot, kind| {
            problems.push(Problem {
                shard,
                slot: slot.map(|s| s as u32),
                kind,
            })
        }
    }

    /// Checks every invariant of the shard; appends what is wrong to `problems`.
    pub(crate) fn verify(
        &self,
        hash_key: &HashKey,
        now: &LazyNow<'_>,
        problems: &mut Vec<Problem>,
        totals: &mut Totals,
    ) {
        use ProblemKind as K;
        let mut push = self.reporter(problems);
        let rec = self.s.rec();
        let (op, touch) = (rec.op(), rec.touch());
        if op != redo::IDLE || touch != redo::NO_SLOT {
            push(None, K::RecordBusy { op, touch });
        }
        let mut key = Vec::new();
        let (mut full, mut deleted) = (0u64, 0u64);
        for i in 0..self.l().slots_per_shard {
            let b = self.s.ctrl_of(i, Ordering::Relaxed);
            if !ctrl::is_valid(b) {
                push(Some(i), K::InvalidControlByte(b));
                continue;
            }
            if b == ctrl::DELETED {
                deleted += 1;
            }
            if !ctrl::is_full(b) {
                continue;
            }
            full += 1;
            let sv = self.s.slot(i);
            if sv.seq().load(Ordering::Relaxed) & 1 == 1 {
                push(Some(i), K::SlotMidWrite);
            }
            let klen = sv.key_len().load(Ordering::Relaxed) as usize;
            let vlen = sv.val_len().load(Ordering::Relaxed) as usize;
            if klen > self.l().geo.max_key_len as usize {
                push(Some(i), K::KeyTooLong(klen as u64));
                continue;
            }
            if vlen > self.l().geo.max_value_len as usize {
                push(Some(i), K::ValueTooLong(vlen as u64));
            }
            key.clear();
            raw::load_bytes(sv.key_words(klen), klen, &mut key);
            let h = hash(hash_key, &key);
            let p = place(h, self.l().geo.shards, self.l().geo.groups_per_shard);
            if p.shard != self.s.index {
                push(Some(i), K::WrongShard);
                continue;
            }
            if p.tag != b {
                push(Some(i), K::WrongTag);
                continue;
            }
            match self.lookup(&key, p).slot {
                Some(j) if j == i => {}
                Some(_) => push(Some(i), K::DuplicateKey),
                None => push(Some(i), K::Unreachable),
            }
            if self.slot_expired(i, now) {
                totals.expired += 1;
            }
        }
        let len = self.s.len();
        if len != full {
            push(
                None,
                K::LenMismatch {
                    stored: len,
                    counted: full,
                },
            );
        }
        let t = self.s.tombstones();
        if t != deleted {
            push(
                None,
                K::TombstonesMismatch {
                    stored: t,
                    counted: deleted,
                },
            );
        }
        totals.entries += full;
        totals.tombstones += deleted;
        drop(push);
        self.verify_heap(problems, totals);
    }

    /// Checks the heap against the slots: every block and page a live value references is
    /// referenced once, by the slot its header names, and marked used in the descriptors and
    /// maps; nothing else is marked used (no leaked space); the counters agree.
    fn verify_heap(&self, problems: &mut Vec<Problem>, totals: &mut Totals) {
        use crate::heap::class::{block_mask, Loc, NCLASSES};
        use crate::heap::pool::desc;
        use crate::heap::INLINE_MAX;
        use std::collections::HashMap;
        use ProblemKind as K;
        let mut push = self.reporter(problems);
        let pool = self.s.pool();
        // Page -> (kind, bits) as the live values say it should be.
        let mut want: HashMap<u32, (u32, u64)> = HashMap::new();
        let mut value_bytes = 0u64;
        for i in 0..self.l().slots_per_shard {
            if !ctrl::is_full(self.s.ctrl_of(i, Ordering::Relaxed)) {
                continue;
            }
            let vlen = self.s.slot(i).val_len().load(Ordering::Relaxed) as usize;
            if vlen <= INLINE_MAX || vlen > self.l().geo.max_value_len as usize {
                continue; // inline, or already reported
            }
            let Ok(Some(v)) = self.stored(i) else {
                push(Some(i), K::ValueLocator);
                continue;
            };
            value_bytes += vlen as u64;
            for (loc, class, piece) in v.parts() {
                match (loc, class) {
                    (Loc::Block { page, block }, Some(c)) => {
                        let e = want.entry(page).or_insert((1 + c as u32, 0));
                        if e.0 != 1 + c as u32 || e.1 & 1 << block != 0 {
                            push(Some(i), K::BlockShared);
                            continue;
                        }
                        e.1 |= 1 << block;
                        if pool.read_header(pool.block_off(c, page, block)) != (i as u32, piece) {
                            push(Some(i), K::BlockOwner);
                        }
                    }
                    (Loc::Page(page), _) => {
                        if want.insert(page, (desc::LARGE, 0)).is_some() {
                            push(Some(i), K::BlockShared);
                        }
                    }
                    (Loc::Block { .. }, None) => push(Some(i), K::ValueLocator),
                }
            }
        }
        let (mut used_pages, mut class_pages, mut class_used) =
            (0u64, [0u32; NCLASSES], [0u32; NCLASSES]);
        for p in 0..pool.npages() {
            let (kind, bits) = pool.page_state(p);
            let (wkind, wbits) = want.get(&p).copied().unwrap_or((desc::FREE, 0));
            let class = (1..=NCLASSES as u32)
                .contains(&kind)
                .then(|| (kind - 1) as usize);
            let (used_bit, partial_bit) = pool.map_bits(p, class);
            if kind != desc::FREE {
                used_pages += 1;
            }
            if let Some(c) = class {
                class_pages[c] += 1;
                class_used[c] += (bits & block_mask(c)).count_ones();
            }
            // In each class's partial map exactly when the page is that class's and has a free
            // block (a stray bit elsewhere would make that class's allocations fail).
            for k in 0..NCLASSES {
                let (_, bit) = pool.map_bits(p, Some(k));
                let want = class == Some(k) && bits & block_mask(k) != block_mask(k);
                if bit != want {
                    push(None, K::HeapMap { page: p });
                    break;
                }
            }
            let _ = partial_bit;
            if used_bit != (kind != desc::FREE) {
                push(None, K::HeapMap { page: p });
            }
            // Only a class page's bits are a block map (a large page's hold its piece index).
            if kind == wkind && (class.is_none() || bits == wbits) {
                continue;
            }
            // Marked used beyond what the values reference: leaked; the other way: a value
            // whose blocks could be handed out again.
            let leaked = (wkind == desc::FREE && kind != desc::FREE)
                || (kind == wkind && wbits & !bits == 0);
            push(
                None,
                if leaked {
                    K::HeapLeak { page: p }
                } else {
                    K::HeapMap { page: p }
                },
            );
        }
        let (s_used, s_pages, s_blocks) = pool.raw_counts();
        let mut count = |what, stored: u64, counted: u64| {
            if stored != counted {
                push(
                    None,
                    K::HeapCount {
                        what,
                        stored,
                        counted,
                    },
                );
            }
        };
        count("used pages", s_used, used_pages);
        count("value bytes", pool.value_bytes(), value_bytes);
        for c in 0..NCLASSES {
            count(
                "class pages",
                u64::from(s_pages[c]),
                u64::from(class_pages[c]),
            );
            count(
                "class blocks",
                u64::from(s_blocks[c]),
                u64::from(class_used[c]),
            );
        }
        totals.value_bytes += value_bytes;
    }
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Shard index (`u32::MAX` for the header and counter area).
    pub shard: u32,
    /// Slot (or counter) index, if the problem is in one.
    pub slot: Option<u32>,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// The kinds of broken invariants `verify` detects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A control byte that is none of EMPTY, DELETED, FULL.
    InvalidControlByte(u8),
    /// A live slot whose sequence number is odd while we hold the shard lock.
    SlotMidWrite,
    /// A live slot's key length exceeds `max_key_len`.
    KeyTooLong(u64),
    /// A live slot's value length exceeds `max_value_len`.
    ValueTooLong(u64),
    /// The key hashes to another shard.
    WrongShard,
    /// The control byte's hash bits do not match the key.
    WrongTag,
    /// A lookup of the key would not reach this slot.
    Unreachable,
    /// The key is stored in another slot too (found first).
    DuplicateKey,
    /// The shard's entry count disagrees with its control bytes.
    LenMismatch {
        /// Value in the shard header.
        stored: u64,
        /// FULL control bytes counted.
        counted: u64,
    },
    /// The shard's tombstone count disagrees with its control bytes.
    TombstonesMismatch {
        /// Value in the shard header.
        stored: u64,
        /// DELETED control bytes counted.
        counted: u64,
    },
    /// The repair record is not idle while we hold the lock.
    RecordBusy {
        /// Record operation word.
        op: u32,
        /// Record touch word.
        touch: u32,
    },
    /// A header field changed after the region was opened.
    HeaderChanged(&'static str),
    /// A counter entry is malformed (bad state, name length, or hash).
    BadCounter(&'static str),
    /// Two counters have the same name.
    DuplicateCounter,
    /// A shard could not be locked or repaired (the error's message).
    ShardUnavailable(String),
    /// A live slot's heap locator (or one in its extent) is out of range.
    ValueLocator,
    /// A block or page is referenced by two values (or a page by two size classes).
    BlockShared,
    /// A block's header does not name the slot that references it.
    BlockOwner,
    /// Heap space marked used that no value references.
    HeapLeak {
        /// Page number in the shard's pool.
        page: u32,
    },
    /// A page's descriptor or map bits disagree with the values that reference it.
    HeapMap {
        /// Page number in the shard's pool.
        page: u32,
    },
    /// A heap counter disagrees with what the values reference.
    HeapCount {
        /// Which counter.
        what: &'static str,
        /// As stored.
        stored: u64,
        /// As counted.
        counted: u64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shard == u32::MAX {
            write!(f, "header/counters")?;
        } else {
            write!(f, "shard {}", self.shard)?;
        }
        if let Some(s) = self.slot {
            write!(f, " slot {s}")?;
        }
        write!(f, ": {:?}", self.kind)
    }
}

/// Totals gathered by a verification pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Live control bytes.
    pub entries: u64,
    /// Of which expired but not yet reclaimed.
    pub expired: u64,
    /// DELETED control bytes.
    pub tombstones: u64,
    /// Registered counters.
    pub counters: u64,
    /// Bytes of the values stored in the heap (values longer than 24 bytes).
    pub value_bytes: u64,
}

/// The result of [`Store::verify`](crate::Store::verify).
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Shards checked.
    pub shards: u32,
    /// What was counted.
    pub totals: Totals,
    /// Everything found wrong (empty when the region is sound).
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when no invariant is broken.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} shards, {} entries ({} expired), {} tombstones, {} counters: ",
            self.shards,
            self.totals.entries,
            self.totals.expired,
            self.totals.tombstones,
            self.totals.counters
        )?;
        if self.problems.is_empty() {
            write!(f, "ok")
        } else {
            writeln!(f, "{} problems", self.problems.len())?;
            for p in &self.problems {
                writeln!(f, "  {p}")?;
            }
            Ok(())
        }
    }
}
