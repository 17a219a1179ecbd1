//! A map of a live region's bytes, for the tests and fuzzers that corrupt regions on purpose
//! (`Store::layout_map`, `Store::value_parts`). Every range comes from [`Layout`] (its pool
//! geometry included), the offset constants of `layout.rs` (the header's field table included)
//! and of `heap/pool.rs` (pool header and page descriptor fields), and the heap's own offset
//! functions ([`Pool::block_off`], [`Pool::page_off`]); nothing here knows an offset of its own
//! but one: an extent block's payload is its piece locators, 4 bytes each, in piece order
//! (`heap/value.rs`; the unit test below checks the two agree). Hidden from the documentation:
//! not a stable API.

use std::ops::Range;

use super::layout::{
    counter, header, shard, slot, value_offset, Layout, COUNTER_SIZE, HEADER_SIZE, STAT_SLOTS,
    STAT_SLOT_SIZE,
};
use super::raw::RawRegion;
use crate::heap::class::{Loc, Shape, NCLASSES};
use crate::heap::pool::{desc, hdr};
use crate::heap::value::Stored;
use crate::heap::{Pool, BLOCK_HEADER, PAGE};

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
    /// A field of the shard's heap pool header.
    Pool(PoolField),
    /// The shard's used-page map: bit `p % 64` of `u64` word `p / 64` is set while heap page
    /// `p` is in use.
    UsedMap,
    /// The partial-page map of size class `class` (same shape as the used map: a bit per page,
    /// set while the page holds blocks of the class and has a free one).
    PartialMap {
        /// The size class (0 ..= 20).
        class: u8,
    },
    /// A field of the descriptor of heap page `slot` of the shard.
    PageDesc(DescField),
    /// Heap page `slot` of the shard (4 KiB): value blocks of one size class, or one whole page
    /// of a large value.
    Page,
    /// Part of a live value's heap bytes, as [`Store::value_parts`](crate::Store::value_parts)
    /// names them (never in `layout_map`); `slot` is the owning slot.
    Value(ValuePart),
}

/// Fields of a shard's heap pool header.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolField {
    /// Pages in use (`u64`).
    UsedPages,
    /// Bytes of the values stored in the heap (`u64`).
    ValueBytes,
    /// The CLOCK hand of space eviction, a slot index (`u64`; a hint, taken modulo the slots).
    ClockHand,
    /// Where the next free-page search starts, a used-map word (`u64`; a hint).
    FreeCursor,
    /// Non-zero while a lock holder is changing the pool (`u64`): the next locker rebuilds it.
    Dirty,
    /// Pages of size class `class` (`u32`).
    ClassPages {
        /// The size class.
        class: u8,
    },
    /// Blocks in use in size class `class` (`u32`).
    ClassUsed {
        /// The size class.
        class: u8,
    },
    /// Lowest partial-map word of size class `class` that may be non-zero (`u32`; a hint).
    ClassHint {
        /// The size class.
        class: u8,
    },
}

/// Fields of a heap page descriptor.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DescField {
    /// What the page holds (`u32`): 0 free, `1 + class` blocks of a size class, or a large
    /// value's whole page (any other value is corruption).
    Kind,
    /// Owner slot of a large value's page (`u32`; informational).
    Owner,
    /// Bitmap of the used blocks of a class page, or a large value's piece index (`u64`).
    Bits,
}

/// Where a live value's heap bytes are. `piece: None` is the value's root block (the value
/// itself, or the extent listing its pieces); `Some(i)` is piece `i` of the extent.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValuePart {
    /// A block's header (owner slot `u32`, piece index `u32`; whole pages have none).
    BlockHeader {
        /// The piece (`None`: the root block).
        piece: Option<u32>,
    },
    /// The value's bytes held by a block or a whole page (exactly those bytes, in order).
    Bytes {
        /// The piece (`None`: the root block of a value stored in one block).
        piece: Option<u32>,
    },
    /// The extent's locator of piece `piece` (`u32`).
    Locator {
        /// The piece it locates.
        piece: u32,
    },
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
    /// The value field (24 bytes): a value of at most 24 bytes, or the heap locator of a
    /// longer one.
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
    /// The slot, counter record, statistics slot or scratch slot index, or the heap page
    /// number (page descriptors and pages), where there is one.
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
/// length is proportional to the number of slots and heap pages (seven parts per slot, four per
/// page, and per shard 68 parts of heap metadata).
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
        // The heap pool: header fields, maps, descriptors, pages.
        let g = &l.pool;
        let h = off + g.hdr;
        for (f, start) in [
            (PoolField::UsedPages, hdr::USED_PAGES),
            (PoolField::ValueBytes, hdr::VALUE_BYTES),
            (PoolField::ClockHand, hdr::CLOCK_HAND),
            (PoolField::FreeCursor, hdr::FREE_CURSOR),
            (PoolField::Dirty, hdr::DIRTY),
        ] {
            push(PartKind::Pool(f), Some(s), None, h + start..h + start + 8);
        }
        type ClassField = fn(u8) -> PoolField;
        let class_fields: [(ClassField, usize); 3] = [
            (|class| PoolField::ClassPages { class }, hdr::CLASS_PAGES),
            (|class| PoolField::ClassUsed { class }, hdr::CLASS_USED),
            (|class| PoolField::ClassHint { class }, hdr::CLASS_HINT),
        ];
        for (f, base) in class_fields {
            for c in 0..NCLASSES {
                let at = h + base + 4 * c;
                push(PartKind::Pool(f(c as u8)), Some(s), None, at..at + 4);
            }
        }
        let map = 8 * g.map_words;
        let used = off + g.used_map;
        push(PartKind::UsedMap, Some(s), None, used..used + map);
        for c in 0..NCLASSES {
            let at = off + g.partial_maps + c * map;
            push(
                PartKind::PartialMap { class: c as u8 },
                Some(s),
                None,
                at..at + map,
            );
        }
        for p in 0..g.npages as usize {
            let d = off + g.descs + p * desc::SIZE;
            for (f, start, n) in [
                (DescField::Kind, desc::KIND, 4),
                (DescField::Owner, desc::OWNER, 4),
                (DescField::Bits, desc::BITS, 8),
            ] {
                push(
                    PartKind::PageDesc(f),
                    Some(s),
                    Some(p),
                    d + start..d + start + n,
                );
            }
        }
        for p in 0..g.npages as usize {
            let at = off + g.pages + p * PAGE;
            push(PartKind::Page, Some(s), Some(p), at..at + PAGE);
        }
    }
    out
}

/// Where the heap bytes of the value `v` held by slot `slot` of shard `shard` are: each block's
/// header and value bytes, the extent's locators, each whole page's value bytes, in piece order
/// (the root block first). Empty for a value stored in its slot.
pub(crate) fn value_parts(
    r: &RawRegion,
    l: &Layout,
    shard: usize,
    slot: usize,
    v: &Stored,
) -> Vec<RegionPart> {
    let pool = Pool::new(r, &l.pool, l.shard_off(shard));
    let mut out = Vec::new();
    let mut push = |kind, range: Range<usize>| {
        debug_assert!(range.end <= l.total_len);
        out.push(RegionPart {
            kind: PartKind::Value(kind),
            shard: Some(shard as u32),
            slot: Some(slot as u32),
            range,
        });
    };
    for (loc, class, piece) in v.parts() {
        let is_root = piece == crate::heap::class::ROOT_PIECE;
        let p = (!is_root).then_some(piece);
        let len = match (is_root, v.shape) {
            (true, Shape::Direct { .. }) => v.len,
            (true, _) => 0, // an extent: its locators follow
            (false, shape) => shape.piece_len(piece as usize),
        };
        let data = match (loc, class) {
            (Loc::Page(page), _) => pool.page_off(page),
            (Loc::Block { page, block }, Some(c)) => {
                let at = pool.block_off(c, page, block);
                push(ValuePart::BlockHeader { piece: p }, at..at + BLOCK_HEADER);
                at + BLOCK_HEADER
            }
            (Loc::Block { .. }, None) => continue, // not produced by a decoded value
        };
        if is_root && matches!(v.shape, Shape::Extent { .. }) {
            for i in 0..v.pieces.len() {
                let at = data + 4 * i;
                push(ValuePart::Locator { piece: i as u32 }, at..at + 4);
            }
        } else {
            push(ValuePart::Bytes { piece: p }, data..data + len);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::heap::class::{class_for, CLASSES};
    use crate::heap::value;
    use crate::region::layout::Geometry;
    use crate::region::map::Mapping;
    use std::sync::atomic::Ordering::Relaxed;

    fn layout(max_value_len: u32, memory: Option<u64>) -> Layout {
        let mut cfg = Config::new()
            .capacity(100)
            .shards(2)
            .max_key_len(13)
            .max_value_len(max_value_len);
        if let Some(m) = memory {
            cfg = cfg.memory(m);
        }
        Layout::new(Geometry::from_config(&cfg).unwrap()).unwrap()
    }

    fn count(parts: &[RegionPart], f: impl Fn(&PartKind) -> bool) -> usize {
        parts.iter().filter(|p| f(&p.kind)).count()
    }

    #[test]
    fn parts_are_in_bounds_and_disjoint() {
        for l in [layout(30, None), layout(10_000, Some(1 << 20))] {
            let mut parts = layout_map(&l);
            let slots = 2 * l.slots_per_shard;
            let pages = 2 * l.geo.pages_per_shard as usize;
            assert!(pages >= 6, "{pages} pages");
            assert_eq!(
                count(&parts, |k| *k == PartKind::Slot(SlotField::Seq)),
                slots
            );
            assert_eq!(count(&parts, |k| *k == PartKind::Page), pages);
            assert_eq!(
                count(&parts, |k| matches!(k, PartKind::PageDesc(_))),
                3 * pages
            );
            assert_eq!(
                count(&parts, |k| matches!(k, PartKind::Pool(_))),
                2 * (5 + 3 * NCLASSES)
            );
            assert_eq!(count(&parts, |k| *k == PartKind::UsedMap), 2);
            assert_eq!(
                count(&parts, |k| matches!(k, PartKind::PartialMap { .. })),
                2 * NCLASSES
            );
            // Proportional to slots and pages (the heap metadata is per shard).
            assert!(
                parts.len() <= 7 * slots + 4 * pages + 5000,
                "{}",
                parts.len()
            );
            // Every page is a whole, page-aligned page in the region.
            for p in parts.iter().filter(|p| p.kind == PartKind::Page) {
                assert_eq!(p.range.start % PAGE, 0);
                assert_eq!(p.range.len(), PAGE);
            }
            parts.sort_by_key(|p| p.range.start);
            for w in parts.windows(2) {
                assert!(w[0].range.end <= w[1].range.start, "{w:?} overlap");
            }
            assert!(parts.iter().all(|p| p.range.start < p.range.end));
            assert!(parts.last().unwrap().range.end <= l.total_len);
        }
    }

    fn find(parts: &[RegionPart], kind: PartKind, shard: u32, slot: Option<u32>) -> &RegionPart {
        parts
            .iter()
            .find(|p| p.kind == kind && p.shard == Some(shard) && p.slot == slot)
            .unwrap_or_else(|| panic!("no {kind:?} {shard} {slot:?}"))
    }

    /// The map names what the pool really writes: values of three shapes stored through the
    /// heap in shard 1 show up in the parts' bytes (counters, maps, descriptors, block headers,
    /// value bytes), and a scribbled locator part is what makes a value undecodable.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "searches a map of 10 000 slots per part: minutes under Miri; the heap's \
                  accesses run under Miri in heap::value and table::"
    )]
    fn parts_name_what_the_heap_writes() {
        let l = layout(10_000, Some(1 << 20));
        let m = Mapping::anonymous(l.total_len).unwrap();
        let r = m.raw();
        let shard = 1usize;
        let pool = Pool::new(r, &l.pool, l.shard_off(shard));
        let map = layout_map(&l);
        let s = shard as u32;
        let u64_of = |p: &RegionPart| r.u64_at(p.range.start).load(Relaxed);
        let u32_of = |p: &RegionPart| r.u32_at(p.range.start).load(Relaxed);
        let mut stored = Vec::new();
        for (owner, len) in [(3u32, 100usize), (7, 3 * 1024), (9, 9 * 1024)] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + owner as usize) as u8).collect();
            let root = value::store(&pool, owner, &bytes).unwrap().unwrap();
            let v = value::decode(&pool, root, len).unwrap();
            stored.push((owner, bytes, root, v));
        }
        // Pool header fields.
        let used = pool.used_pages();
        assert!(used >= 4);
        assert_eq!(
            u64_of(find(&map, PartKind::Pool(PoolField::UsedPages), s, None)),
            used
        );
        assert_eq!(
            u64_of(find(&map, PartKind::Pool(PoolField::ValueBytes), s, None)),
            (100 + 3 * 1024 + 9 * 1024) as u64
        );
        let c100 = class_for(100 + BLOCK_HEADER).unwrap();
        let pages = |c: usize| {
            find(
                &map,
                PartKind::Pool(PoolField::ClassPages { class: c as u8 }),
                s,
                None,
            )
        };
        let blocks = |c: usize| {
            find(
                &map,
                PartKind::Pool(PoolField::ClassUsed { class: c as u8 }),
                s,
                None,
            )
        };
        assert_eq!(u32_of(pages(c100)), 1);
        assert_eq!(u32_of(blocks(c100)), 1);
        let total: u32 = (0..NCLASSES).map(|c| u32_of(pages(c))).sum();
        // Used map, descriptors: every used page has its bit, and a kind that says what it is.
        let used_map = find(&map, PartKind::UsedMap, s, None);
        let mut bits = 0u32;
        let mut large = 0;
        for p in 0..l.geo.pages_per_shard {
            let word = r
                .u64_at(used_map.range.start + 8 * (p as usize / 64))
                .load(Relaxed);
            let on = word >> (p % 64) & 1 == 1;
            let kind = u32_of(find(&map, PartKind::PageDesc(DescField::Kind), s, Some(p)));
            assert_eq!(on, kind != 0, "page {p}");
            bits += u32::from(on);
            if kind as usize > NCLASSES {
                large += 1;
                assert_eq!(kind, desc::LARGE);
            }
        }
        assert_eq!(u64::from(bits), used);
        assert_eq!(large, 2, "the 9 KiB value's two whole pages");
        assert_eq!(total + large, bits);
        // The other shard's heap is untouched.
        assert_eq!(
            u64_of(find(&map, PartKind::Pool(PoolField::UsedPages), 0, None)),
            0
        );
        for (owner, bytes, root, v) in &stored {
            let parts = value_parts(r, &l, shard, *owner as usize, v);
            assert!(parts
                .iter()
                .all(|p| p.shard == Some(s) && p.slot == Some(*owner)));
            // The value's bytes, in order.
            let mut got = Vec::new();
            for p in &parts {
                if let PartKind::Value(ValuePart::Bytes { .. }) = p.kind {
                    r.read_bytes(p.range.start, p.range.len(), &mut got);
                }
            }
            assert_eq!(&got, bytes, "value of {} bytes", bytes.len());
            // Block headers name the owner and the piece.
            let headers: Vec<_> = parts
                .iter()
                .filter_map(|p| match p.kind {
                    PartKind::Value(ValuePart::BlockHeader { piece }) => Some((p, piece)),
                    _ => None,
                })
                .collect();
            assert_eq!(headers[0].1, None, "the root block comes first");
            for (p, piece) in headers {
                assert_eq!(p.range.len(), BLOCK_HEADER);
                assert_eq!(
                    pool.read_header(p.range.start),
                    (*owner, piece.unwrap_or(crate::heap::class::ROOT_PIECE))
                );
                // The header is the start of a block of the page's class.
                let page = map
                    .iter()
                    .find(|q| q.kind == PartKind::Page && q.range.contains(&p.range.start))
                    .unwrap();
                let kind = u32_of(find(
                    &map,
                    PartKind::PageDesc(DescField::Kind),
                    s,
                    page.slot,
                ));
                let size = CLASSES[kind as usize - 1] as usize;
                assert_eq!((p.range.start - page.range.start) % size, 0);
            }
            // Each locator part is the locator: scribbling it makes the value undecodable.
            let locators: Vec<_> = parts
                .iter()
                .filter(|p| matches!(p.kind, PartKind::Value(ValuePart::Locator { .. })))
                .collect();
            assert_eq!(locators.len(), v.pieces.len());
            for p in locators {
                // Through its word, as the heap accesses it (locators are 4-byte halves).
                let w = r.u64_at(p.range.start & !7);
                let shift = 8 * (p.range.start & 7);
                let old = w.load(Relaxed);
                w.store(old | u64::from(u32::MAX) << shift, Relaxed);
                assert!(value::decode(&pool, *root, bytes.len()).is_none());
                w.store(old, Relaxed);
                assert!(value::decode(&pool, *root, bytes.len()).is_some());
            }
        }
        // Shapes: direct (header + bytes), two tails (root header, 2 locators, 2 x (header +
        // bytes)), two pages and a tail (root header, 3 locators, 2 pages, header + bytes).
        let kinds = |i: usize| value_parts(r, &l, shard, stored[i].0 as usize, &stored[i].3).len();
        assert_eq!((kinds(0), kinds(1), kinds(2)), (2, 7, 8));
    }
}
