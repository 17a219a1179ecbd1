//! A map of a live region's bytes, for the tests and fuzzers that corrupt regions on purpose
//! (`Store::layout_map`). Every range comes from [`Layout`] and the offset constants of
//! `layout.rs` (the header's field table included); nothing here knows an offset of its own. Hidden from the documentation: not a
//! stable API.

use std::ops::Range;

use super::layout::{
    counter, header, shard, slot, value_offset, Layout, COUNTER_SIZE, HEADER_SIZE, STAT_SLOTS,
    STAT_SLOT_SIZE,
};

/// What a range of the region holds.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartKind {
    /// A header field, by name (`"magic"`, `"version"`, ..., `"creator_pid"`).
    Header(&'static str),
    /// The counter registry's robust mutex (in the header).
    RegistryMutex,
    /// A field of counter record `slot`.
    Counter(CounterField),
    /// Per-thread statistics slot `slot` (owner tid and the per-thread totals).
    StatSlot,
    /// A field of per-thread scratch slot `slot` (1 ≤ slot < 256).
    ThreadScratch(SlotField),
    /// The shard's robust mutex.
    ShardMutex,
    /// A field of the shard's repair record.
    Repair(RepairField),
    /// One of the shard's counts.
    Count(CountField),
    /// The shard's control bytes, one per slot (byte `i` is slot `i`'s).
    ControlBytes,
    /// A field of the shard's own scratch slot.
    ShardScratch(SlotField),
    /// A field of slot `slot` of the shard.
    Slot(SlotField),
}

/// Fields of a counter record.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterField {
    /// The value (`AtomicI64`).
    Value,
    /// EMPTY / LIVE.
    State,
    /// Length of the name.
    NameLen,
    /// Hash of the name.
    Hash,
    /// The name bytes (room for 112).
    Name,
}

/// Fields of a shard's repair record.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepairField {
    /// IDLE / REDO_PUT / REDO_CLEAR.
    Op,
    /// Slot a pending put copies into.
    Target,
    /// Control byte a pending put publishes.
    Tag,
    /// Slot being written, plus one (0: none).
    Touch,
    /// Which scratch slot holds the redo copy (0: the shard's).
    Scratch,
}

/// A shard's counts.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CountField {
    /// FULL control bytes.
    Len,
    /// DELETED control bytes.
    Tombstones,
    /// Where the next amortized expiry sweep starts.
    SweepCursor,
}

/// Fields of a slot (table slot or scratch slot).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotField {
    /// Sequence number (odd: being written).
    Seq,
    /// Key length.
    KeyLen,
    /// Value length.
    ValLen,
    /// Flags (CLOCK reference bit).
    Flags,
    /// Expiry, wall-clock milliseconds (0: never).
    Expires,
    /// The key room (`round8(max_key_len)` bytes).
    Key,
    /// The value room (`round8(max_value_len)` bytes).
    Value,
}

/// One named range of the region's bytes.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionPart {
    /// What the bytes hold.
    pub kind: PartKind,
    /// The shard, for shard parts.
    pub shard: Option<u32>,
    /// The slot, counter record, statistics slot or scratch slot index, where there is one.
    pub slot: Option<u32>,
    /// Byte offsets in the region.
    pub range: Range<usize>,
}

const MUTEX_SIZE: usize = std::mem::size_of::<libc::pthread_mutex_t>();

/// The parts of a slot (or scratch slot) starting at `off`.
fn slot_parts(l: &Layout, off: usize) -> [(SlotField, Range<usize>); 7] {
    let field = |f: usize, n: usize| off + f..off + f + n;
    let val = off + value_offset(l.key_cap);
    [
        (SlotField::Seq, field(slot::SEQ, 4)),
        (SlotField::KeyLen, field(slot::KEY_LEN, 4)),
        (SlotField::ValLen, field(slot::VAL_LEN, 4)),
        (SlotField::Flags, field(slot::FLAGS, 4)),
        (SlotField::Expires, field(slot::EXPIRES, 8)),
        (SlotField::Key, field(slot::KEY, l.key_cap)),
        (SlotField::Value, val..val + l.val_cap),
    ]
}

/// Every named range of a region with layout `l`, in address order within each section. Its
/// length is proportional to the number of slots (seven parts per slot).
pub(crate) fn layout_map(l: &Layout) -> Vec<RegionPart> {
    let mut out = Vec::new();
    let mut push = |kind, shard: Option<usize>, slot: Option<usize>, range: Range<usize>| {
        debug_assert!(range.end <= l.total_len);
        out.push(RegionPart {
            kind,
            shard: shard.map(|s| s as u32),
            slot: slot.map(|i| i as u32),
            range,
        });
    };
    for (name, off, n) in header::FIELDS {
        push(PartKind::Header(name), None, None, off..off + n);
    }
    const _: () = assert!(header::REGISTRY_MUTEX + MUTEX_SIZE <= HEADER_SIZE);
    let m = header::REGISTRY_MUTEX;
    push(PartKind::RegistryMutex, None, None, m..m + MUTEX_SIZE);
    for i in 0..l.geo.max_counters as usize {
        let off = l.counter_off(i);
        for (f, start, n) in [
            (CounterField::Value, counter::VALUE, 8),
            (CounterField::State, counter::STATE, 4),
            (CounterField::NameLen, counter::NAME_LEN, 4),
            (CounterField::Hash, counter::HASH, 8),
            (
                CounterField::Name,
                counter::NAME,
                COUNTER_SIZE - counter::NAME,
            ),
        ] {
            push(
                PartKind::Counter(f),
                None,
                Some(i),
                off + start..off + start + n,
            );
        }
    }
    for i in 0..STAT_SLOTS as usize {
        let off = l.stat_slot_off(i);
        push(PartKind::StatSlot, None, Some(i), off..off + STAT_SLOT_SIZE);
    }
    for i in 1..STAT_SLOTS as usize {
        for (f, r) in slot_parts(l, l.thread_scratch_slot_off(i)) {
            push(PartKind::ThreadScratch(f), None, Some(i), r);
        }
    }
    for s in 0..l.geo.shards as usize {
        let off = l.shard_off(s);
        let field = |f: usize, n: usize| off + f..off + f + n;
        push(
            PartKind::ShardMutex,
            Some(s),
            None,
            field(shard::MUTEX, MUTEX_SIZE),
        );
        for (f, start) in [
            (RepairField::Op, shard::REC_OP),
            (RepairField::Target, shard::REC_TARGET),
            (RepairField::Tag, shard::REC_TAG),
            (RepairField::Touch, shard::REC_TOUCH),
            (RepairField::Scratch, shard::REC_SCRATCH),
        ] {
            push(PartKind::Repair(f), Some(s), None, field(start, 4));
        }
        for (f, start) in [
            (CountField::Len, shard::LEN),
            (CountField::Tombstones, shard::TOMBSTONES),
            (CountField::SweepCursor, shard::SWEEP_CURSOR),
        ] {
            push(PartKind::Count(f), Some(s), None, field(start, 8));
        }
        let ctrl = l.group_off(off, 0);
        push(
            PartKind::ControlBytes,
            Some(s),
            None,
            ctrl..ctrl + l.slots_per_shard,
        );
        for (f, r) in slot_parts(l, l.scratch_off(off)) {
            push(PartKind::ShardScratch(f), Some(s), None, r);
        }
        for i in 0..l.slots_per_shard {
            for (f, r) in slot_parts(l, l.slot_off(off, i)) {
                push(PartKind::Slot(f), Some(s), Some(i), r);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::region::layout::Geometry;

    #[test]
    fn parts_are_in_bounds_and_disjoint() {
        let cfg = Config::new()
            .capacity(100)
            .shards(2)
            .max_key_len(13)
            .max_value_len(30);
        let l = Layout::new(Geometry::from_config(&cfg).unwrap()).unwrap();
        let mut parts = layout_map(&l);
        assert_eq!(
            parts
                .iter()
                .filter(|p| p.kind == PartKind::Slot(SlotField::Seq))
                .count(),
            2 * l.slots_per_shard
        );
        parts.sort_by_key(|p| p.range.start);
        for w in parts.windows(2) {
            assert!(w[0].range.end <= w[1].range.start, "{w:?} overlap");
        }
        assert!(parts.iter().all(|p| p.range.start < p.range.end));
        assert!(parts.last().unwrap().range.end <= l.total_len);
    }
}
