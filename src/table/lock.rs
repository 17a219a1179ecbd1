//! Taking a shard's lock: a dead previous holder (or a busy redo record) is repaired through
//! the new [`Locked`] before it is handed out; and what a lock holder reads (the locked lookup
//! and the value readers).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::space::HeapState;
use super::{ctrl, Placement, Probe, Shard, Stat};
use crate::clock::LazyNow;
use crate::error::{Error, Result};
use crate::region::layout::{shard, Layout, GROUP_WIDTH};
use crate::region::raw;
use crate::stats::ThreadSlot;
use crate::sync::{MutexGuard, RobustMutex};

impl<'a> Shard<'a> {
    /// Takes the shard lock, repairing first if the previous holder died (or left the repair
    /// record busy). With `force`, a failed repair does not fail the lock (used by `clear`,
    /// which rewrites the whole shard). `ts` is the calling thread's statistics slot: writer
    /// statistics go there, and its scratch slot holds this thread's redo copies.
    pub(crate) fn lock(
        &self,
        timeout: Duration,
        force: bool,
        ts: ThreadSlot,
    ) -> Result<Locked<'a>> {
        let m = RobustMutex::at(self.r, self.off + shard::MUTEX);
        let (guard, acq) = m
            .lock(timeout)
            .map_err(|e| e.into_error("shard lock is not recoverable"))?;
        // From here the guard is owned by `locked`: any early return unlocks.
        let mut locked = Locked {
            s: *self,
            ts,
            heap: HeapState::default(),
            guard,
        };
        if acq.contended {
            locked.bump(Stat::Contended);
        }
        let mut repaired = Ok(());
        if acq.owner_died || self.rec().is_busy() || self.pool().is_dirty() {
            // Counted before repairing, so a repairer that dies is counted too.
            locked.bump(Stat::Recoveries);
            repaired = locked.repair();
        }
        if acq.owner_died {
            // Only after the repair ran through this guard (a failed repair is reported below;
            // `clear` with `force` rewrites the shard anyway).
            locked
                .guard
                .mark_consistent()
                .map_err(|e| Error::io("pthread_mutex_consistent", e))?;
        }
        failpoint!("lock.acquired");
        if !force {
            repaired?;
        }
        Ok(locked)
    }
}

/// A shard whose lock we hold. Not `Send` (its guard is not): a lock is released by the
/// thread that took it, as pthread requires.
pub(crate) struct Locked<'a> {
    pub(super) s: Shard<'a>,
    pub(super) ts: ThreadSlot,
    pub(super) heap: HeapState,
    /// Held for as long as the `Locked` lives (dropping it unlocks). Never absent: repair runs
    /// through a `Locked`, so the lock is ours while it does.
    guard: MutexGuard<'a>,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Before the guard (a field) unlocks.
        self.release_heap();
    }
}

/// Result of a locked lookup.
#[derive(Debug, Default)]
pub(crate) struct Lookup {
    /// Slot holding the key (live or expired).
    pub slot: Option<usize>,
    /// Its expiry (0 = none).
    pub expires_ms: u64,
    /// First free (EMPTY/DELETED) slot on the probe path.
    pub free: Option<usize>,
    /// Groups visited (the window a new entry may be placed in).
    pub visited: usize,
}

impl Lookup {
    pub(crate) fn live(&self, now: &LazyNow<'_>) -> Option<usize> {
        self.slot
            .filter(|_| self.expires_ms == 0 || now.get() < self.expires_ms)
    }
}

impl<'a> Locked<'a> {
    pub(super) fn l(&self) -> &'a Layout {
        self.s.l
    }

    pub(crate) fn bump(&self, s: Stat) {
        self.ts.bump(self.s.r, s as usize);
    }

    /// Finds `key`, and the first free slot on its path.
    pub(crate) fn lookup(&self, key: &[u8], p: Placement) -> Lookup {
        let mut lk = Lookup::default();
        for g in Probe::new(p.home, self.s.groups()) {
            lk.visited += 1;
            let grp = self.s.group(g).load(Ordering::Relaxed);
            let mut m = ctrl::match_byte(grp, p.tag);
            while m != 0 {
                let i = g * GROUP_WIDTH + ctrl::lowest(m);
                m &= m - 1;
                let sv = self.s.slot(i);
                if sv.key_len().load(Ordering::Relaxed) as usize == key.len()
                    && raw::words_eq(sv.key_words(key.len()), key)
                {
                    lk.slot = Some(i);
                    lk.expires_ms = sv.expires().load(Ordering::Relaxed);
                    return lk;
                }
            }
            if lk.free.is_none() {
                let f = ctrl::match_free(grp);
                if f != 0 {
                    lk.free = Some(g * GROUP_WIDTH + ctrl::lowest(f));
                }
            }
            if ctrl::match_empty(grp) != 0 {
                break;
            }
        }
        lk
    }

    /// Copies slot `i`'s value into `out` (no concurrent writer: we hold the lock).
    pub(crate) fn read_value(&self, i: usize, out: &mut Vec<u8>) -> Result<()> {
        let sv = self.s.slot(i);
        let vlen = sv.val_len().load(Ordering::Relaxed) as usize;
        if vlen > self.l().geo.max_value_len as usize {
            return Err(Error::corrupted("slot value length exceeds max_value_len"));
        }
        if !self.s.copy_value(sv, vlen, out) {
            return Err(Error::corrupted("slot value locator out of range"));
        }
        Ok(())
    }

    /// Length of slot `i`'s value, as stored (callers bound it before reading).
    pub(crate) fn value_len(&self, i: usize) -> usize {
        self.s.slot(i).val_len().load(Ordering::Relaxed) as usize
    }

    /// Reads the first `dst.len()` bytes of slot `i`'s value field (callers read values of at
    /// most [`INLINE_MAX`](crate::heap::INLINE_MAX) bytes this way).
    pub(crate) fn read_small(&self, i: usize, dst: &mut [u8]) {
        let sv = self.s.slot(i);
        let n = dst.len().min(sv.val_cap());
        raw::load_into(sv.value_words(n), &mut dst[..n]);
    }

    /// Whether slot `i`'s value equals `v`; `Corrupted` if its stored length is past the limit.
    pub(crate) fn value_eq(&self, i: usize, v: &[u8]) -> Result<bool> {
        let sv = self.s.slot(i);
        let vlen = sv.val_len().load(Ordering::Relaxed) as usize;
        if vlen > self.l().geo.max_value_len as usize {
            return Err(Error::corrupted("slot value length exceeds max_value_len"));
        }
        if vlen != v.len() {
            return Ok(false);
        }
        if vlen <= crate::heap::INLINE_MAX {
            return Ok(raw::words_eq(sv.value_words(vlen), v));
        }
        let mut cur = Vec::new();
        self.read_value(i, &mut cur)?;
        Ok(cur == v)
    }
}
