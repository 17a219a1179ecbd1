//! What `Store::verify` reports.

use std::fmt;

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
