//! The redo record: how a write that changes more than one word survives its writer being
//! killed. Each shard has one record, in the first cache line of its header next to the mutex
//! (offsets in [`layout::shard`](crate::region::layout::shard)); only the lock holder writes it.
//!
//! | `op`         | meaning                                                                  |
//! |--------------|--------------------------------------------------------------------------|
//! | `IDLE`       | nothing to redo                                                          |
//! | `REDO_PUT`   | committed: copy scratch slot `scratch` over slot `target`, publish `tag` |
//! | `REDO_CLEAR` | committed: empty every control byte of the shard                         |
//!
//! `touch` is independent of `op`: the index plus one of the slot whose sequence number may be
//! odd (a write in progress), or `NO_SLOT`. A writer stores the new entry in a scratch slot
//! first, then commits by storing `op` (one Release store: the commit point), applies, then
//! idles the record. A holder that finds the record busy ([`Record::is_busy`]), or gets the
//! lock from a dead owner, repairs (`table/repair.rs`): it redoes a committed operation, makes
//! `touch`'s sequence even, recounts, and idles the record. Every step is idempotent, so a
//! repairer that dies is simply repaired after.
//!
//! The protocol is written for any metadata change that needs more than one store: the table's
//! overwrites and clears use it today.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::region::layout::{shard, Layout};
use crate::region::raw::RawRegion;

/// `op` values.
pub(crate) const IDLE: u32 = 0;
/// Copy the scratch slot over `target`, then publish `tag` in its control byte.
pub(crate) const REDO_PUT: u32 = 1;
/// Empty every control byte of the shard.
pub(crate) const REDO_CLEAR: u32 = 2;
/// `touch` value meaning no slot is being written (a zero-filled region needs no setup);
/// otherwise `touch` is the slot index plus one.
pub(crate) const NO_SLOT: u32 = 0;

/// A committed put: what repair must redo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Put {
    /// Slot to copy into (unchecked: the caller bounds it).
    pub target: u32,
    /// Control byte to publish (unchecked).
    pub tag: u32,
    /// Which scratch slot holds the copy: 0 = the shard's own, i = thread scratch i (unchecked).
    pub scratch: u32,
}

/// The redo record of the shard whose header starts at a given offset.
#[derive(Clone, Copy)]
pub(crate) struct Record<'a> {
    r: &'a RawRegion,
    shard_off: usize,
}

impl<'a> Record<'a> {
    pub(crate) fn at(r: &'a RawRegion, shard_off: usize) -> Self {
        Record { r, shard_off }
    }

    #[inline]
    fn word(&self, field: usize) -> &'a AtomicU32 {
        self.r.u32_at(self.shard_off + field)
    }

    /// The operation word.
    #[inline]
    pub(crate) fn op(&self) -> u32 {
        self.word(shard::REC_OP).load(Ordering::Acquire)
    }

    /// The touch word (slot index plus one, or [`NO_SLOT`]).
    #[inline]
    pub(crate) fn touch(&self) -> u32 {
        self.word(shard::REC_TOUCH).load(Ordering::Acquire)
    }

    /// Whether a lock holder must repair before doing anything else.
    #[inline]
    pub(crate) fn is_busy(&self) -> bool {
        self.op() != IDLE || self.touch() != NO_SLOT
    }

    /// The committed put, if `op` is `REDO_PUT` (fields as stored: validate before use).
    pub(crate) fn pending_put(&self) -> Put {
        Put {
            target: self.word(shard::REC_TARGET).load(Ordering::Relaxed),
            tag: self.word(shard::REC_TAG).load(Ordering::Relaxed),
            scratch: self.word(shard::REC_SCRATCH).load(Ordering::Relaxed),
        }
    }

    /// Commits a put whose new entry is complete in its scratch slot: from here on, repair
    /// redoes it.
    #[inline]
    pub(crate) fn commit_put(&self, put: Put) {
        self.word(shard::REC_SCRATCH)
            .store(put.scratch, Ordering::Relaxed);
        self.word(shard::REC_TARGET)
            .store(put.target, Ordering::Relaxed);
        self.word(shard::REC_TAG).store(put.tag, Ordering::Relaxed);
        self.word(shard::REC_OP).store(REDO_PUT, Ordering::Release); // the commit point
    }

    /// Commits a clear of the whole shard.
    pub(crate) fn commit_clear(&self) {
        self.word(shard::REC_OP)
            .store(REDO_CLEAR, Ordering::Release);
    }

    /// Names the slot about to be written (`Some`), or says none is (`None`).
    #[inline]
    pub(crate) fn set_touch(&self, slot: Option<usize>) {
        let v = slot.map_or(NO_SLOT, |i| i as u32 + 1);
        self.word(shard::REC_TOUCH).store(v, Ordering::Release);
    }

    /// The committed operation is done.
    #[inline]
    pub(crate) fn idle(&self) {
        self.word(shard::REC_OP).store(IDLE, Ordering::Release);
    }
}

/// Whether any shard's record is a pending put whose copy is in thread scratch slot `i` (that
/// slot must not change hands until the put is redone).
pub(crate) fn scratch_pending(r: &RawRegion, l: &Layout, i: u32) -> bool {
    (0..l.geo.shards as usize).any(|s| {
        let rec = Record::at(r, l.shard_off(s));
        rec.op() == REDO_PUT && rec.word(shard::REC_SCRATCH).load(Ordering::Acquire) == i
    })
}
