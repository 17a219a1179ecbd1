//! The table's side of the value heap ([`crate::heap`]): a slot's value field (inline bytes or
//! the locator of its heap blocks), storing a value for a slot and making room when the heap has
//! none (expired entries, compaction, then CLOCK eviction), freeing a slot's value, rebuilding
//! the heap's metadata from the slots (repair), and compaction.
//!
//! # Making room
//!
//! A value that does not fit, in order: (1) every expired entry of the shard is removed, once
//! per insert; (2) the heap compacts: the sparsest page of a class holding at least a page's
//! worth of free blocks is emptied by moving its blocks into the class's other pages, each move
//! one slot update through the redo record; (3) under [`WhenFull::Evict`], the shard's CLOCK hand
//! evicts an entry that holds heap bytes and was not read since the hand last passed, at most
//! [`MAX_EVICTIONS_PER_INSERT`] per insert. Then [`Error::Full`]. The entry being written is
//! never one of those removed or evicted. The loop is bounded by construction: one reclaim, at
//! most [`MAX_COMPACTIONS_PER_INSERT`] compactions (moving a tail may take a fresh page for its
//! new extent, so a compaction does not always leave one more free page, and nothing else would
//! stop a cycle) and at most [`MAX_EVICTIONS_PER_INSERT`] evictions.

use std::cell::Cell;
use std::sync::atomic::Ordering::Relaxed;

use super::{ctrl, Locked, Shard, Stat};
use crate::clock::LazyNow;
use crate::config::WhenFull;
use crate::error::{Error, Result};
use crate::heap::class::{
    block_mask, blocks_per_page, Loc, CLASSES, MAX_BLOCKS_PER_PAGE, NCLASSES, ROOT_PIECE,
};
use crate::heap::value::{self, Stored};
use crate::heap::{Shape, BLOCK_HEADER, INLINE_MAX};
use crate::region::layout::slot;
use crate::region::raw::{self, SlotView};

use crate::config::limits::MAX_EVICTIONS_PER_INSERT;

/// Most compactions (pages emptied) one insert may run while making room.
const MAX_COMPACTIONS_PER_INSERT: usize = 256;

/// A value as a slot holds it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val<'e> {
    /// The bytes themselves (at most [`INLINE_MAX`]).
    Inline(&'e [u8]),
    /// `len` bytes in the heap, found through the root locator.
    Heap { len: usize, root: u32 },
}

impl Val<'_> {
    pub(crate) fn len(&self) -> usize {
        match *self {
            Val::Inline(b) => b.len(),
            Val::Heap { len, .. } => len,
        }
    }
}

/// The root locator in a slot's value field (meaningful when the value is longer than
/// [`INLINE_MAX`]).
#[inline]
pub(super) fn root_of(sv: SlotView<'_>) -> u32 {
    sv.value_words(8)[0].load(Relaxed) as u32
}

/// Writes a value into a slot's value field (the slot's `val_len` is written by the caller).
#[inline]
pub(super) fn write_val(sv: SlotView<'_>, v: &Val<'_>) {
    match *v {
        Val::Inline(b) => raw::store_bytes(sv.value_words(b.len()), b),
        Val::Heap { root, .. } => sv.value_words(8)[0].store(u64::from(root), Relaxed),
    }
}

impl Shard<'_> {
    /// Copies the value of the slot viewed by `sv` (its length `vlen` already bounded by
    /// `max_value_len`) into `out`. `false` if its heap locator is out of range (a torn read,
    /// or corruption). Relaxed loads only: lock-free callers validate with the seqlock.
    #[inline]
    pub(super) fn copy_value(&self, sv: SlotView<'_>, vlen: usize, out: &mut Vec<u8>) -> bool {
        out.clear();
        if vlen <= INLINE_MAX {
            raw::load_bytes(sv.value_words(vlen), vlen, out);
            true
        } else {
            self.copy_heap_value(sv, vlen, out)
        }
    }

    /// The heap half of [`copy_value`](Self::copy_value), kept out of line so the inline path
    /// (counter-sized values) stays as small as it was before the heap.
    #[inline(never)]
    fn copy_heap_value(&self, sv: SlotView<'_>, vlen: usize, out: &mut Vec<u8>) -> bool {
        value::read(&self.pool(), root_of(sv), vlen, out)
    }
}

/// Per-lock bookkeeping: whether this holder changed the heap (see [`Locked::touch_heap`]).
#[derive(Default)]
pub(crate) struct HeapState {
    dirtied: Cell<bool>,
}

impl Locked<'_> {
    /// Marks the heap as being changed by this holder (once per lock). Cleared when the lock is
    /// released normally; left set if the holder panics, so the next holder rebuilds it. (A
    /// holder that is killed is caught by the robust mutex anyway.)
    ///
    /// Also the release fence of the heap protocol: blocks freed by an earlier lock holder may
    /// be written again by this one, while a lock-free reader that took an old locator copies
    /// them. The fence (before any block write of this holder) makes a reader that sees one of
    /// these writes also see the earlier holder's sequence change when it validates (fence-fence
    /// synchronization with the reader's acquire fence), so it retries. Free on x86-64.
    pub(super) fn touch_heap(&self) {
        if !self.heap.dirtied.replace(true) {
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            self.s.pool().set_dirty(true);
        }
    }

    /// Called when the lock is released.
    pub(super) fn release_heap(&self) {
        if self.heap.dirtied.get() && !std::thread::panicking() {
            self.s.pool().set_dirty(false);
        }
    }

    /// The heap value of FULL slot `i`, decoded and checked (`None`: stored inline).
    pub(crate) fn stored(&self, i: usize) -> Result<Option<Stored>> {
        let sv = self.s.slot(i);
        let vlen = sv.val_len().load(Relaxed) as usize;
        if vlen > self.l().geo.max_value_len as usize {
            return Err(Error::corrupted("slot value length exceeds max_value_len"));
        }
        if vlen <= INLINE_MAX {
            return Ok(None);
        }
        value::decode(&self.s.pool(), root_of(sv), vlen)
            .map(Some)
            .ok_or(Error::corrupted("slot value locator out of range"))
    }

    /// Frees the heap blocks of a value no slot references any more.
    pub(super) fn free_value(&self, v: &Stored) -> Result<()> {
        self.touch_heap();
        value::free(&self.s.pool(), v)
    }

    /// Puts `bytes` where slot `owner` can reference it: inline, or in fresh heap blocks,
    /// making room if the heap has none (never removing slot `owner` itself). Nothing is
    /// referenced yet: the caller publishes the slot, then frees the slot's old value.
    pub(super) fn store_value<'e>(
        &self,
        owner: usize,
        bytes: &'e [u8],
        now: &LazyNow<'_>,
    ) -> Result<Val<'e>> {
        if bytes.len() <= INLINE_MAX {
            return Ok(Val::Inline(bytes));
        }
        self.touch_heap();
        let pool = self.s.pool();
        let mut swept = false;
        let (mut compacted, mut evicted) = (0, 0);
        loop {
            if let Some(root) = value::store(&pool, owner as u32, bytes)? {
                failpoint!("heap.stored");
                return Ok(Val::Heap {
                    len: bytes.len(),
                    root,
                });
            }
            if !swept {
                swept = true;
                if self.reclaim_expired(owner, now)? > 0 {
                    continue;
                }
            }
            if compacted < MAX_COMPACTIONS_PER_INSERT && self.compact_one(owner)? {
                compacted += 1;
                continue;
            }
            if self.l().geo.policy == WhenFull::Evict
                && evicted < MAX_EVICTIONS_PER_INSERT
                && self.evict_for_space(owner, now)?
            {
                evicted += 1;
                continue;
            }
            self.bump(Stat::Full);
            return Err(Error::Full);
        }
    }

    /// Removes every expired entry of the shard except slot `protect`; returns how many.
    fn reclaim_expired(&self, protect: usize, now: &LazyNow<'_>) -> Result<usize> {
        let mut removed = 0;
        for i in 0..self.l().slots_per_shard {
            if i != protect
                && ctrl::is_full(self.s.ctrl_of(i, Relaxed))
                && self.slot_expired(i, now)
            {
                self.remove(i)?;
                failpoint!("heap.reclaimed");
                self.bump(Stat::Expirations);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// CLOCK over the shard's slots: evicts the next entry holding heap bytes that was not
    /// read since the hand last passed it (clearing the reference bits it passes). Never slot
    /// `protect`. `false` if a full turn found none.
    fn evict_for_space(&self, protect: usize, now: &LazyNow<'_>) -> Result<bool> {
        let n = self.l().slots_per_shard;
        let hand = self.s.pool().clock_hand();
        let mut i = (hand.load(Relaxed) % n as u64) as usize;
        // Two turns: the first may only clear reference bits.
        for _ in 0..2 * n {
            let cur = i;
            i = if i + 1 == n { 0 } else { i + 1 };
            if cur == protect || !ctrl::is_full(self.s.ctrl_of(cur, Relaxed)) {
                continue;
            }
            let sv = self.s.slot(cur);
            if sv.val_len().load(Relaxed) as usize <= INLINE_MAX {
                continue; // frees no heap bytes
            }
            let flags = sv.flags();
            let f = flags.load(Relaxed);
            if f & slot::FLAG_REFERENCED != 0 && !self.slot_expired(cur, now) {
                flags.store(f & !slot::FLAG_REFERENCED, Relaxed);
                continue;
            }
            hand.store(i as u64, Relaxed);
            failpoint!("heap.evicting");
            self.remove(cur)?;
            failpoint!("heap.evicted");
            self.bump(Stat::Evictions);
            return Ok(true);
        }
        hand.store(i as u64, Relaxed);
        Ok(false)
    }

    /// Empties one page of the class with the most free blocks (if it has at least a page's
    /// worth) by moving its blocks into the class's other pages. `true` if a page was freed.
    fn compact_one(&self, protect: usize) -> Result<bool> {
        let pool = self.s.pool();
        let best = (0..NCLASSES)
            .filter(|&c| pool.class_free_blocks(c) >= blocks_per_page(c) as u64)
            .max_by_key(|&c| pool.class_free_blocks(c) * u64::from(CLASSES[c]));
        let Some(c) = best else {
            return Ok(false);
        };
        let Some((page, bits)) = pool.sparsest_page(c) else {
            return Ok(false);
        };
        let _ = protect; // moving a block keeps its entry: the protected slot may move too
        self.touch_heap();
        let _ = bits;
        pool.set_draining(c, page, true);
        failpoint!("compact.draining");
        let mut moved_all = true;
        // At most one move per block; the page's bits are read afresh each time (moving a tail
        // frees its old extent, which may sit in this very page).
        for _ in 0..MAX_BLOCKS_PER_PAGE {
            // Out of the partial map, so no allocation lands in the page being emptied (a
            // free puts it back there).
            pool.set_draining(c, page, true);
            let (kind, bits) = pool.page_state(page);
            let bits = bits & block_mask(c);
            if kind != 1 + c as u32 || bits == 0 {
                break;
            }
            if !self.relocate(c, page, bits.trailing_zeros())? {
                moved_all = false;
                break;
            }
        }
        let (kind, _) = pool.page_state(page);
        if kind != crate::heap::pool::desc::FREE {
            pool.set_draining(c, page, false);
        }
        Ok(moved_all && kind == crate::heap::pool::desc::FREE)
    }

    /// Moves block `b` of page `page` (class `c`) to another page of its class and points its
    /// owner at the copy (one slot update through the redo record), then frees it. `false` if
    /// no room for the copy (nothing changed).
    fn relocate(&self, c: usize, page: u32, b: u32) -> Result<bool> {
        let pool = self.s.pool();
        let old_off = pool.block_off(c, page, b);
        let (owner, piece) = pool.read_header(old_off);
        let bad = || Error::corrupted("heap block header names a slot that does not own it");
        let i = owner as usize;
        if i >= self.l().slots_per_shard || !ctrl::is_full(self.s.ctrl_of(i, Relaxed)) {
            return Err(bad());
        }
        let stored = self.stored(i)?.ok_or_else(bad)?;
        let here = Loc::Block { page, block: b };
        let owns = if piece == ROOT_PIECE {
            stored.root == here && stored.shape.root_class() == Some(c)
        } else {
            let k = piece as usize;
            stored.pieces.get(k) == Some(&here) && stored.shape.piece_class(k) == Some(c)
        };
        if !owns {
            return Err(bad());
        }
        let Some(new) = pool.alloc_block(c, false, owner, piece)? else {
            return Ok(false);
        };
        let Loc::Block {
            page: np,
            block: nb,
        } = new
        else {
            return Err(bad());
        };
        let r = self.s.r;
        let words = (CLASSES[c] as usize - BLOCK_HEADER) / 8;
        raw::copy_words(
            r.words(old_off + BLOCK_HEADER, words),
            r.words(pool.block_off(c, np, nb) + BLOCK_HEADER, words),
        );
        // The new root: the copy itself, or (a tail moved) a new extent listing the copy.
        let mut old_extent = None;
        let new_root = if piece == ROOT_PIECE {
            new
        } else {
            let Shape::Extent { extent, .. } = stored.shape else {
                return Err(bad());
            };
            let Some(ext) = pool.alloc_block(extent, true, owner, ROOT_PIECE)? else {
                pool.free_block(c, np, nb)?;
                return Ok(false);
            };
            let (
                Loc::Block {
                    page: ep,
                    block: eb,
                },
                Loc::Block {
                    page: op,
                    block: ob,
                },
            ) = (ext, stored.root)
            else {
                return Err(bad());
            };
            let ext_off = pool.block_off(extent, ep, eb);
            let locs: Vec<u32> = stored
                .pieces
                .iter()
                .enumerate()
                .map(|(k, loc)| if k == piece as usize { new } else { *loc }.encode())
                .collect();
            value::write_pieces(r, ext_off, &locs);
            old_extent = Some((extent, op, ob));
            ext
        };
        failpoint!("compact.copied");
        let sv = self.s.slot(i);
        let klen = sv.key_len().load(Relaxed) as usize;
        if klen > self.l().geo.max_key_len as usize {
            return Err(Error::corrupted("slot key length exceeds max_key_len"));
        }
        let mut key = Vec::with_capacity(klen);
        raw::load_bytes(sv.key_words(klen), klen, &mut key);
        let tag = self.s.ctrl_of(i, Relaxed);
        self.overwrite_val(
            i,
            &key,
            &Val::Heap {
                len: stored.len,
                root: new_root.encode(),
            },
            sv.expires().load(Relaxed),
            tag,
            sv.flags().load(Relaxed),
        );
        failpoint!("compact.moved");
        pool.free_block(c, page, b)?;
        if let Some((ec, ep, eb)) = old_extent {
            failpoint!("compact.block_freed");
            pool.free_block(ec, ep, eb)?;
        }
        Ok(true)
    }

    /// Recomputes the heap's metadata from the slots (repair): every block and page a live slot
    /// references is in use, everything else is free.
    pub(super) fn rebuild_heap(&self) -> Result<()> {
        let pool = self.s.pool();
        pool.set_dirty(true);
        pool.reset();
        failpoint!("heap.rebuild_reset");
        for i in 0..self.l().slots_per_shard {
            if !ctrl::is_full(self.s.ctrl_of(i, Relaxed)) {
                continue;
            }
            if let Some(v) = self.stored(i)? {
                value::mark(&pool, i as u32, &v)?;
                failpoint!("heap.rebuild_marked");
            }
        }
        pool.finish_rebuild();
        failpoint!("repair.heap_rebuilt");
        pool.set_dirty(false);
        Ok(())
    }
}
