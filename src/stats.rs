//! Statistics without shared writes, and the per-thread slots that hold them.
//!
//! Every statistic (`get` hits and misses, and the writers' sets, deletes, expirations,
//! evictions, refusals, recoveries and contended waits) is counted in the calling thread's own
//! slot: one 128-byte line per thread, claimed by thread id, written only by its owner with a
//! plain load and store (no `lock`-prefixed instruction, no line shared with another thread).
//! `stats()` sums all slots. A slot whose owner thread is gone is taken over with its totals
//! intact; slot 0 is shared (with atomic adds) by threads that find no free slot. A thread's
//! slot index also names its scratch slot for redo copies (`redo.rs`), so a dead thread's slot
//! is not handed on while a pending redo record still names its scratch.
//!
//! Each thread caches its slot per store in a small thread-local table, invalidated by the fork
//! generation of `process.rs` (a forked child must not keep writing its parent's slot).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::process::{self, pid_alive};
use crate::redo::scratch_pending;
use crate::region::layout::{stat_slot, Layout, STAT_SLOTS};
use crate::region::raw::RawRegion;

static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Clone, Copy)]
struct Cached {
    store: u64,
    gen: u64,
    slot: ThreadSlot,
}

/// The calling thread's statistics slot in one region.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThreadSlot {
    /// Offset of the slot.
    pub off: usize,
    /// Its index (0 = the shared overflow slot).
    pub index: u32,
    /// Owned by this thread alone: plain load+store updates, and its scratch slot is ours.
    pub exclusive: bool,
}

impl ThreadSlot {
    /// Adds one to `field` of this slot.
    #[inline]
    pub(crate) fn bump(&self, r: &RawRegion, field: usize) {
        let w = r.u64_at(self.off + field);
        if self.exclusive {
            w.store(w.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        } else {
            w.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The thread scratch slot to use for redo copies (0 = the shard's own).
    #[inline]
    pub(crate) fn scratch(&self) -> u32 {
        if self.exclusive {
            self.index
        } else {
            0
        }
    }
}

const NO_ENTRY: Cached = Cached {
    store: 0,
    gen: 0,
    slot: ThreadSlot {
        off: 0,
        index: 0,
        exclusive: false,
    },
};
const CACHE_WAYS: usize = 4;

thread_local! {
    static CACHE: [Cell<Cached>; CACHE_WAYS] = const { [const { Cell::new(NO_ENTRY) }; CACHE_WAYS] };
    static NEXT_WAY: Cell<usize> = const { Cell::new(0) };
}

/// The statistics slots one store handle's threads use in this process.
#[derive(Debug)]
pub(crate) struct StatSlots {
    id: u64,
    /// Slots claimed through this handle (released when it is dropped).
    claimed: Mutex<Vec<usize>>,
}

impl Default for StatSlots {
    fn default() -> Self {
        StatSlots {
            id: NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed),
            claimed: Mutex::new(Vec::new()),
        }
    }
}

impl StatSlots {
    /// The calling thread's slot (claimed on first use).
    #[inline]
    pub(crate) fn current(&self, r: &RawRegion, l: &Layout) -> ThreadSlot {
        let gen = process::fork_generation();
        let hit = CACHE.with(|c| {
            c.iter()
                .map(Cell::get)
                .find(|e| e.store == self.id && e.gen == gen)
        });
        match hit {
            Some(e) => e.slot,
            None => self.claim(r, l, gen).slot,
        }
    }

    /// Adds one to `field` of the calling thread's slot.
    #[inline]
    pub(crate) fn bump(&self, r: &RawRegion, l: &Layout, field: usize) {
        self.current(r, l).bump(r, field);
    }

    #[cold]
    fn claim(&self, r: &RawRegion, l: &Layout, gen: u64) -> Cached {
        process::my_pid(); // registers the fork handler
        let tid = process::my_tid();
        let owner = |i| r.u32_at(l.stat_slot_off(i) + stat_slot::OWNER);
        let mut slot = (1..STAT_SLOTS as usize).find(|&i| owner(i).load(Ordering::Relaxed) == tid);
        if slot.is_none() {
            slot = (1..STAT_SLOTS as usize).find(|&i| {
                owner(i)
                    .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            });
        }
        if slot.is_none() {
            // A dead thread's slot, unless a shard's pending redo record still names its
            // scratch slot (the next locker of that shard needs the copy; only the dead owner
            // could have written such a record, so the check cannot go stale).
            slot = (1..STAT_SLOTS as usize).find(|&i| {
                let cur = owner(i).load(Ordering::Relaxed);
                !pid_alive(cur)
                    && !scratch_pending(r, l, i as u32)
                    && owner(i)
                        .compare_exchange(cur, tid, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
            });
        }
        if let Some(i) = slot {
            self.claimed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(i);
        }
        let e = Cached {
            store: self.id,
            gen,
            slot: ThreadSlot {
                off: l.stat_slot_off(slot.unwrap_or(0)),
                index: slot.unwrap_or(0) as u32,
                exclusive: slot.is_some(),
            },
        };
        let way = NEXT_WAY.with(|w| {
            let v = w.get();
            w.set((v + 1) % CACHE_WAYS);
            v
        });
        CACHE.with(|c| c[way].set(e));
        e
    }

    /// Gives back every slot claimed through this handle (its totals stay in the region).
    /// Called when the handle's mapping is about to be unmapped.
    pub(crate) fn release(&self, r: &RawRegion, l: &Layout) {
        let claimed = std::mem::take(&mut *self.claimed.lock().unwrap_or_else(|p| p.into_inner()));
        for i in claimed {
            let o = r.u32_at(l.stat_slot_off(i) + stat_slot::OWNER);
            let cur = o.load(Ordering::Relaxed);
            // Only our own threads' claims; a forked child's copy of this list must not free
            // slots its parent still uses.
            if pid_alive(cur) && thread_in_this_process(cur) {
                let _ = o.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }
}

/// Whether thread id `tid` belongs to this process.
fn thread_in_this_process(tid: u32) -> bool {
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

pub(crate) const HITS: usize = stat_slot::HITS;
pub(crate) const MISSES: usize = stat_slot::MISSES;

/// Sum of a per-thread statistic (a `stat_slot` field) over all slots.
pub(crate) fn sum(r: &RawRegion, l: &Layout, field: usize) -> u64 {
    (0..STAT_SLOTS as usize)
        .map(|i| r.u64_at(l.stat_slot_off(i) + field).load(Ordering::Relaxed))
        .fold(0u64, u64::wrapping_add)
}

/// A snapshot of a store's statistics (counts since the region was created).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Entries stored (including expired ones not yet reclaimed).
    pub entries: u64,
    /// Configured capacity.
    pub capacity: u64,
    /// Slots in the table (capacity plus headroom).
    pub slots: u64,
    /// Tombstones (deleted slots that still lengthen lookups).
    pub tombstones: u64,
    /// Lock-free lookups (`get`, `get_into`, `contains`) that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing (or an expired entry).
    pub misses: u64,
    /// Writes that stored a value (set, add, replace, incr, compare_and_swap).
    pub sets: u64,
    /// Entries removed by `delete` or `compare_and_swap`.
    pub deletes: u64,
    /// Expired entries reclaimed.
    pub expirations: u64,
    /// Live entries evicted to make room (`WhenFull::Evict`).
    pub evictions: u64,
    /// Writes refused with `Error::Full`.
    pub full_refusals: u64,
    /// Shard repairs after a lock holder died (or left a repair pending).
    pub lock_recoveries: u64,
    /// Lock acquisitions that found the lock taken.
    pub lock_contended: u64,
    /// Registered counters.
    pub counters: u64,
    /// Bytes of the region.
    pub region_bytes: u64,
    /// Bytes of the values stored in the heap (values longer than 24 bytes; shorter ones live
    /// in their slot).
    pub value_bytes: u64,
    /// Size of the value heap (all shards' pages).
    pub heap_bytes: u64,
    /// Heap bytes free: in free pages, plus in free blocks of partly used pages.
    pub heap_free_bytes: u64,
    /// Of `heap_free_bytes`, those in free blocks of partly used pages (usable by values of
    /// their size class now, by any value after compaction).
    pub heap_partial_free_bytes: u64,
    /// The largest value a write can store now without evicting (a conservative estimate; the
    /// shard a key maps to may have less room than the roomiest one counted here).
    pub largest_value: u64,
}

impl Stats {
    /// Share of the free heap bytes that sit in partly used pages (0 when nothing is free).
    /// Compaction turns them back into free pages when a value needs one.
    pub fn fragmentation(&self) -> f64 {
        if self.heap_free_bytes == 0 {
            0.0
        } else {
            self.heap_partial_free_bytes as f64 / self.heap_free_bytes as f64
        }
    }
}
