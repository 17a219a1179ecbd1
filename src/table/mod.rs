//! The sharded hash table: probing, lock-free reads, locked writes, expiry, eviction, repair
//! and verification. Works on a [`RawRegion`] through the offsets of [`Layout`].
//!
//! | file         | job                                                                  |
//! |--------------|----------------------------------------------------------------------|
//! | `ctrl.rs`    | control-byte values and SWAR matching over a group                   |
//! | `probe.rs`   | where a key goes ([`Placement`]) and the bounded probe sequence      |
//! | `read.rs`    | the lock-free read (seqlock per slot)                                |
//! | `lock.rs`    | taking the lock (repairing first) and locked lookups                 |
//! | `write.rs`   | inserts, overwrites, deletes, eviction, sweep, scan, clear           |
//! | `repair.rs`  | finishing what a dead writer committed                               |
//! | `verify.rs`  | checking every invariant of a shard, and the report types            |
//!
//! # Table design
//!
//! Each shard is an open-addressing table of `groups x 8` fixed-size slots with one control
//! byte per slot (hashbrown's scheme, with our own byte values so a zero-filled region is an
//! empty table; the values are in `ctrl.rs`).
//!
//! A key's probe sequence visits groups `home, home+1, home+3, home+6, ...` (triangular
//! numbers, modulo the group count), at most [`MAX_PROBE_GROUPS`]. A lookup stops at the first
//! group that contains an EMPTY byte. A delete may write EMPTY only when its group already has
//! an EMPTY byte (then no lookup ever continued past this group, so none is cut short);
//! otherwise it writes DELETED. Keys never move, which is what lets readers probe without a lock.
//! Bounded probing means a key that finds no slot within the bound is refused (`Full`) or
//! evicts, never causes a longer scan; a shard also refuses past 7/8 load.
//!
//! # Writes and crash consistency
//!
//! Writers hold the shard's robust mutex. Every write is one of:
//! * **insert into a free slot**: write the slot (seqlock odd), then publish the control byte
//!   with one store. Before the store nothing is visible; after it the entry is complete.
//! * **overwrite a FULL slot** (update, incr, CAS, reuse of an expired slot, eviction): write the
//!   new entry into a scratch slot (the writing thread's own, or the shard's), then commit by
//!   storing `REDO_PUT` (with target, tag and which scratch slot) in the redo record
//!   ([`crate::redo`]), then copy into the target, then idle the record. A crash before the
//!   commit leaves the old entry; after it, repair redoes the copy from scratch.
//! * **delete / change expiry**: one store to the control byte (or the expiry word) inside the
//!   slot's odd window.
//! * **clear**: commit `REDO_CLEAR`, then empty every control group.
//!
//! The record's `touch` word names the slot whose sequence number may be odd. Repair (run by the
//! next holder after `EOWNERDEAD`, or whenever a holder finds the record not idle) redoes a
//! committed put or clear, makes `touch`'s sequence even, recounts the shard, then idles the
//! record; every step is idempotent, so a repairer that dies is simply repaired after.

mod ctrl;
mod lock;
mod probe;
mod read;
mod repair;
mod space;
mod verify;
mod write;

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use lock::{Locked, Lookup};
use probe::Probe;
pub(crate) use probe::{place, Placement};
pub(crate) use read::Read;
pub use verify::{Problem, ProblemKind, Totals, VerifyReport};
pub(crate) use write::Entry;

use crate::heap::Pool;
use crate::redo::Record;
use crate::region::layout::{shard, stat_slot, Layout, GROUP_WIDTH};
use crate::region::raw::{RawRegion, SlotView};

/// Writer statistics, counted in the writing thread's own statistics slot.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stat {
    Sets = stat_slot::SETS as isize,
    Deletes = stat_slot::DELETES as isize,
    Expirations = stat_slot::EXPIRATIONS as isize,
    Evictions = stat_slot::EVICTIONS as isize,
    Full = stat_slot::FULL as isize,
    Recoveries = stat_slot::RECOVERIES as isize,
    Contended = stat_slot::CONTENDED as isize,
}

/// One shard of a region.
#[derive(Clone, Copy)]
pub(crate) struct Shard<'a> {
    r: &'a RawRegion,
    l: &'a Layout,
    off: usize,
    pub(crate) index: usize,
}

impl<'a> Shard<'a> {
    pub(crate) fn new(r: &'a RawRegion, l: &'a Layout, index: usize) -> Self {
        Shard {
            r,
            l,
            off: l.shard_off(index),
            index,
        }
    }

    #[inline]
    fn groups(&self) -> usize {
        self.l.geo.groups_per_shard as usize
    }
    #[inline]
    fn group(&self, g: usize) -> &'a AtomicU64 {
        self.r.u64_at(self.l.group_off(self.off, g))
    }
    /// Slot `i` (checked in bounds once).
    #[inline]
    fn slot(&self, i: usize) -> SlotView<'a> {
        self.r
            .slot(self.l.slot_off(self.off, i), self.l.key_cap, self.l.val_cap)
    }
    /// The shard's scratch slot.
    #[inline]
    fn scratch(&self) -> SlotView<'a> {
        self.r
            .slot(self.l.scratch_off(self.off), self.l.key_cap, self.l.val_cap)
    }
    /// Thread scratch slot `i` (1 ≤ i < STAT_SLOTS).
    #[inline]
    fn thread_scratch(&self, i: usize) -> SlotView<'a> {
        self.r.slot(
            self.l.thread_scratch_slot_off(i),
            self.l.key_cap,
            self.l.val_cap,
        )
    }
    /// The shard's value heap.
    #[inline]
    fn pool(&self) -> Pool<'a> {
        Pool::new(self.r, &self.l.pool, self.off)
    }
    /// The shard's redo record.
    #[inline]
    fn rec(&self) -> Record<'a> {
        Record::at(self.r, self.off)
    }
    #[inline]
    fn hdr_u64(&self, field: usize) -> &'a AtomicU64 {
        self.r.u64_at(self.off + field)
    }
    #[inline]
    fn ctrl_of(&self, i: usize, order: Ordering) -> u8 {
        ctrl::byte(self.group(i / GROUP_WIDTH).load(order), i % GROUP_WIDTH)
    }

    pub(crate) fn len(&self) -> u64 {
        self.hdr_u64(shard::LEN).load(Ordering::Relaxed)
    }
    /// The heap's free space ([`Pool::space`](crate::heap::Pool::space)) and value bytes, read
    /// without the lock.
    pub(crate) fn heap_space(&self) -> ((u64, u64, u64), u64) {
        let pool = self.pool();
        (pool.space(), pool.value_bytes())
    }
    pub(crate) fn tombstones(&self) -> u64 {
        self.hdr_u64(shard::TOMBSTONES).load(Ordering::Relaxed)
    }
}
