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
    /// Checks every invariant of the shard; appends what is wrong to `problems`.
    pub(crate) fn verify(
        &self,
        hash_key: &HashKey,
        now: &LazyNow<'_>,
        problems: &mut Vec<Problem>,
        totals: &mut Totals,
    ) {
        use ProblemKind as K;
        let shard_no = self.s.index as u32;
        let mut push = |slot: Option<usize>, kind| {
            problems.push(Problem {
                shard: shard_no,
                slot: slot.map(|s| s as u32),
                kind,
            })
        };
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
