//! Statistics without shared writes on the read path.
//!
//! Writers count sets, deletes, expirations, evictions, refusals, recoveries and contended waits
//! in their shard's header, which they own while holding the lock. Readers hold no lock, so
//! `get` hits and misses go to a per-process slot (one 128-byte line per process, claimed by
//! pid) and `stats()` sums all slots. A slot whose owner died is taken over with its totals
//! intact; slot 0 is shared by processes that find no free slot.
//!
//! The process id is cached in a static refreshed by a `pthread_atfork` child handler, because
//! `getpid()` is a system call and the cache must be right in a freshly forked worker.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Once;

use crate::layout::{proc_slot, Layout, PROC_SLOTS};
use crate::raw::RawRegion;

static MY_PID: AtomicU32 = AtomicU32::new(0);
static ATFORK: Once = Once::new();

extern "C" fn after_fork_in_child() {
    // SAFETY: getpid is async-signal-safe and has no preconditions.
    MY_PID.store(unsafe { libc::getpid() } as u32, Ordering::Relaxed);
}

/// This process's id, without a system call.
#[inline]
pub(crate) fn my_pid() -> u32 {
    let p = MY_PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    init_pid()
}

#[cold]
fn init_pid() -> u32 {
    ATFORK.call_once(|| {
        // SAFETY: registering a handler that only stores to an atomic; safe to run after fork.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        after_fork_in_child();
    });
    MY_PID.load(Ordering::Relaxed)
}

/// Whether `pid` names a live process (or one we may not signal, which also exists).
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Per-handle cache of this process's stats slot: `pid << 32 | slot`.
#[derive(Debug, Default)]
pub(crate) struct ProcSlot(AtomicU64);

impl ProcSlot {
    /// Offset of this process's stats slot.
    #[inline]
    pub(crate) fn off(&self, r: &RawRegion, l: &Layout) -> usize {
        let pid = my_pid();
        let cached = self.0.load(Ordering::Relaxed);
        if (cached >> 32) as u32 == pid {
            return l.proc_slot_off((cached as u32 as usize).min(PROC_SLOTS as usize - 1));
        }
        let slot = claim(r, l, pid);
        self.0
            .store(u64::from(pid) << 32 | slot as u64, Ordering::Relaxed);
        l.proc_slot_off(slot)
    }
}

#[cold]
fn claim(r: &RawRegion, l: &Layout, pid: u32) -> usize {
    let owner = |i| r.u32_at(l.proc_slot_off(i) + proc_slot::OWNER);
    for i in 1..PROC_SLOTS as usize {
        if owner(i).load(Ordering::Relaxed) == pid {
            return i;
        }
    }
    for i in 1..PROC_SLOTS as usize {
        if owner(i)
            .compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return i;
        }
    }
    for i in 1..PROC_SLOTS as usize {
        let cur = owner(i).load(Ordering::Relaxed);
        if !pid_alive(cur)
            && owner(i)
                .compare_exchange(cur, pid, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return i;
        }
    }
    0
}

/// Adds one to a per-process statistic (relaxed `fetch_add`: threads of a process share it).
#[inline]
pub(crate) fn bump(r: &RawRegion, slot_off: usize, field: usize) {
    r.u64_at(slot_off + field).fetch_add(1, Ordering::Relaxed);
}

pub(crate) const HITS: usize = proc_slot::HITS;
pub(crate) const MISSES: usize = proc_slot::MISSES;

/// Sum of a per-process statistic over all slots.
pub(crate) fn sum(r: &RawRegion, l: &Layout, field: usize) -> u64 {
    (0..PROC_SLOTS as usize)
        .map(|i| r.u64_at(l.proc_slot_off(i) + field).load(Ordering::Relaxed))
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
    /// Lookups (`get`, `get_into`, `contains`, `ttl`) that found a live entry.
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
}
