//! A shard's page pool: page descriptors, the used-page map, one partial-page map per size
//! class, and counters. Changed only under the shard lock.
//!
//! None of this is logged. It is a cache of what the shard's slots reference: writers write
//! value bytes only into blocks no slot references yet and free a block only after the slot that
//! referenced it was rewritten, so the slots are always the truth, and a rebuild ([`Pool::reset`], then
//! [`Pool::mark_block`] / [`Pool::mark_large`] for every value, then [`Pool::finish_rebuild`])
//! recomputes every map, descriptor and counter from them. It runs whenever a lock holder died (the robust
//! mutex says so), so a writer killed mid-allocation or mid-free leaks nothing.
//!
//! A zero-filled pool is a valid empty one (every page free), so a new region needs no set-up.
//!
//! Everything read here is untrusted: a page number, class or bitmap that disagrees with what
//! the caller expects gives [`Error::Corrupted`], and every search is bounded by the map size.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use super::class::{block_mask, blocks_per_page, Loc, CLASSES, NCLASSES, PAGE};
use crate::error::{Error, Result};
use crate::region::raw::RawRegion;

/// Pool header fields (offsets from the pool header).
pub(crate) mod hdr {
    /// Pages in use (class pages and whole pages of large values), `u64`.
    pub(crate) const USED_PAGES: usize = 0;
    /// Bytes of the values stored out of line, `u64`.
    pub(crate) const VALUE_BYTES: usize = 8;
    /// The CLOCK hand of space eviction (a slot index), `u64`.
    pub(crate) const CLOCK_HAND: usize = 16;
    /// Where the next free-page search starts (a map word index), `u64`.
    pub(crate) const FREE_CURSOR: usize = 24;
    /// Non-zero while a lock holder is changing the pool (left set by one that panicked, so the
    /// next holder rebuilds), `u64`.
    pub(crate) const DIRTY: usize = 32;
    /// Pages of each class, `u32` x `NCLASSES`.
    pub(crate) const CLASS_PAGES: usize = 64;
    /// Blocks in use in each class, `u32` x `NCLASSES`.
    pub(crate) const CLASS_USED: usize = CLASS_PAGES + 4 * super::NCLASSES + 12;
    /// Lowest partial-map word of each class that may be non-zero, `u32` x `NCLASSES`.
    pub(crate) const CLASS_HINT: usize = CLASS_USED + 4 * super::NCLASSES + 12;
    /// Size of the pool header.
    pub(crate) const SIZE: usize = 512;
    const _: () = assert!(CLASS_HINT + 4 * super::NCLASSES <= SIZE);
    const _: () = assert!(CLASS_PAGES.is_multiple_of(8) && CLASS_USED.is_multiple_of(4));
}

/// Page descriptor fields (offsets within a descriptor).
pub(crate) mod desc {
    /// `FREE`, `LARGE`, or `1 + class`.
    pub(crate) const KIND: usize = 0;
    /// Owner slot of a `LARGE` page.
    pub(crate) const OWNER: usize = 4;
    /// Class page: bitmap of used blocks; `LARGE`: the piece index.
    pub(crate) const BITS: usize = 8;
    pub(crate) const SIZE: usize = 16;
    pub(crate) const FREE: u32 = 0;
    pub(crate) const LARGE: u32 = 0x4c47;
}

/// Where a shard's pool lives (offsets from the start of the shard) and how many pages it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolGeom {
    pub npages: u32,
    /// `u64` words in one page map: `ceil(npages / 64)`.
    pub map_words: usize,
    pub hdr: usize,
    pub used_map: usize,
    pub partial_maps: usize,
    pub descs: usize,
    /// 4096-aligned within the region.
    pub pages: usize,
    /// Bytes from `hdr` to the end of the pages.
    pub size: usize,
}

impl PoolGeom {
    /// The pool of `npages` pages placed at `start` (shard-relative; the shard itself starts at
    /// a multiple of `PAGE` in the region), or `None` on overflow.
    pub(crate) fn new(start: usize, npages: u32) -> Option<PoolGeom> {
        let map_words = (npages as usize).div_ceil(64);
        let hdr = start;
        let used_map = hdr.checked_add(hdr::SIZE)?;
        let partial_maps = used_map.checked_add(map_words.checked_mul(8)?)?;
        let descs = partial_maps.checked_add(map_words.checked_mul(8 * NCLASSES)?)?;
        let descs_end = descs.checked_add((npages as usize).checked_mul(desc::SIZE)?)?;
        let pages = descs_end.checked_next_multiple_of(PAGE)?;
        let end = pages.checked_add((npages as usize).checked_mul(PAGE)?)?;
        Some(PoolGeom {
            npages,
            map_words,
            hdr,
            used_map,
            partial_maps,
            descs,
            pages,
            size: end - start,
        })
    }
}

/// A shard's pool, viewed through the region.
#[derive(Clone, Copy)]
pub(crate) struct Pool<'a> {
    r: &'a RawRegion,
    g: &'a PoolGeom,
    /// Offset of the shard in the region.
    off: usize,
}

fn corrupted<T>(what: &'static str) -> Result<T> {
    Err(Error::corrupted(what))
}

impl<'a> Pool<'a> {
    pub(crate) fn new(r: &'a RawRegion, g: &'a PoolGeom, shard_off: usize) -> Self {
        Pool {
            r,
            g,
            off: shard_off,
        }
    }

    /// The region the pool lives in.
    #[inline]
    pub(crate) fn region(&self) -> &'a RawRegion {
        self.r
    }

    #[inline]
    pub(crate) fn npages(&self) -> u32 {
        self.g.npages
    }

    // ---- raw fields ----

    #[inline]
    fn h64(&self, f: usize) -> &'a AtomicU64 {
        self.r.u64_at(self.off + self.g.hdr + f)
    }
    #[inline]
    fn class_u32(&self, base: usize, c: usize) -> &'a AtomicU32 {
        self.r.u32_at(self.off + self.g.hdr + base + 4 * c)
    }
    #[inline]
    fn used_word(&self, w: usize) -> &'a AtomicU64 {
        self.r.u64_at(self.off + self.g.used_map + 8 * w)
    }
    #[inline]
    fn partial_word(&self, c: usize, w: usize) -> &'a AtomicU64 {
        self.r
            .u64_at(self.off + self.g.partial_maps + 8 * (c * self.g.map_words + w))
    }
    #[inline]
    fn desc_u32(&self, p: u32, f: usize) -> &'a AtomicU32 {
        self.r
            .u32_at(self.off + self.g.descs + p as usize * desc::SIZE + f)
    }
    #[inline]
    fn desc_bits(&self, p: u32) -> &'a AtomicU64 {
        self.r
            .u64_at(self.off + self.g.descs + p as usize * desc::SIZE + desc::BITS)
    }

    /// Region offset of page `p` (`p < npages`).
    #[inline]
    pub(crate) fn page_off(&self, p: u32) -> usize {
        self.off + self.g.pages + p as usize * PAGE
    }

    /// Region offset of block `b` of page `p` in class `c` (a decoded, checked locator).
    #[inline]
    pub(crate) fn block_off(&self, c: usize, p: u32, b: u32) -> usize {
        self.page_off(p) + b as usize * CLASSES[c] as usize
    }

    fn set_bit(word: &AtomicU64, bit: u32, on: bool) {
        let v = word.load(Relaxed);
        let nv = if on { v | 1 << bit } else { v & !(1 << bit) };
        if nv != v {
            word.store(nv, Relaxed);
        }
    }

    fn add_u32(w: &AtomicU32, delta: i32) {
        w.store(w.load(Relaxed).wrapping_add_signed(delta), Relaxed);
    }

    fn set_partial(&self, c: usize, p: u32, on: bool) {
        let w = p as usize / 64;
        Self::set_bit(self.partial_word(c, w), p % 64, on);
        if on {
            let hint = self.class_u32(hdr::CLASS_HINT, c);
            if (w as u32) < hint.load(Relaxed) {
                hint.store(w as u32, Relaxed);
            }
        }
    }

    fn set_used(&self, p: u32, on: bool) {
        Self::set_bit(self.used_word(p as usize / 64), p % 64, on);
        if !on {
            // The next search starts at the lowest freed page: pages already touched are
            // reused before fresh ones (no page fault, and the pool's resident set stays
            // as small as its contents).
            let cursor = self.h64(hdr::FREE_CURSOR);
            let w = (p / 64) as u64;
            if w < cursor.load(Relaxed) {
                cursor.store(w, Relaxed);
            }
        }
        let u = self.h64(hdr::USED_PAGES);
        let v = u.load(Relaxed);
        u.store(
            if on {
                v.wrapping_add(1)
            } else {
                v.wrapping_sub(1)
            },
            Relaxed,
        );
    }

    // ---- counters ----

    /// Pages in use, as counted (bounded by the page count).
    pub(crate) fn used_pages(&self) -> u64 {
        self.h64(hdr::USED_PAGES)
            .load(Relaxed)
            .min(u64::from(self.g.npages))
    }
    /// Pages free.
    pub(crate) fn free_pages(&self) -> u64 {
        u64::from(self.g.npages) - self.used_pages()
    }
    /// Bytes of values stored out of line.
    pub(crate) fn value_bytes(&self) -> u64 {
        self.h64(hdr::VALUE_BYTES).load(Relaxed)
    }
    pub(crate) fn add_value_bytes(&self, delta: i64) {
        let w = self.h64(hdr::VALUE_BYTES);
        w.store(w.load(Relaxed).wrapping_add_signed(delta), Relaxed);
    }
    /// Pages of class `c`.
    pub(crate) fn class_pages(&self, c: usize) -> u64 {
        u64::from(self.class_u32(hdr::CLASS_PAGES, c).load(Relaxed))
    }
    /// Free blocks in the pages of class `c` (as counted; never more than the pages hold).
    pub(crate) fn class_free_blocks(&self, c: usize) -> u64 {
        let cap = self.class_pages(c) * blocks_per_page(c) as u64;
        cap.saturating_sub(u64::from(self.class_u32(hdr::CLASS_USED, c).load(Relaxed)))
    }
    /// Free space, read without the lock (a snapshot that may be slightly stale): bytes in free
    /// pages, bytes in free blocks of partially used pages, and a conservative estimate of the
    /// largest value that fits now (without evicting; compaction included).
    pub(crate) fn space(&self) -> (u64, u64, u64) {
        let free_pages = self.free_pages();
        let mut partial_free = 0u64;
        let mut compactable = 0u64;
        let mut largest_block = 0u64;
        for (c, &size) in CLASSES.iter().enumerate() {
            let free = self.class_free_blocks(c);
            partial_free += free * u64::from(size);
            compactable += free / blocks_per_page(c) as u64;
            if free > 0 {
                largest_block = (size as usize - super::class::BLOCK_HEADER) as u64;
            }
        }
        let pages = free_pages + compactable;
        // An extent block and two tails may each need a page of their own class.
        let largest = match pages {
            0 => largest_block,
            1..=3 => super::class::MAX_BLOCK_PAYLOAD as u64,
            n => (n - 3) * PAGE as u64 + 2 * super::class::MAX_BLOCK_PAYLOAD as u64,
        };
        (free_pages * PAGE as u64, partial_free, largest)
    }

    /// Whether a lock holder left the pool mid-change (see [`hdr::DIRTY`]).
    pub(crate) fn is_dirty(&self) -> bool {
        self.h64(hdr::DIRTY).load(Relaxed) != 0
    }
    pub(crate) fn set_dirty(&self, dirty: bool) {
        self.h64(hdr::DIRTY).store(u64::from(dirty), Relaxed);
    }

    /// Raw counters as stored: (used pages, pages per class, used blocks per class).
    pub(crate) fn raw_counts(&self) -> (u64, [u32; NCLASSES], [u32; NCLASSES]) {
        let mut pages = [0; NCLASSES];
        let mut used = [0; NCLASSES];
        for c in 0..NCLASSES {
            pages[c] = self.class_u32(hdr::CLASS_PAGES, c).load(Relaxed);
            used[c] = self.class_u32(hdr::CLASS_USED, c).load(Relaxed);
        }
        (self.h64(hdr::USED_PAGES).load(Relaxed), pages, used)
    }

    /// Whether page `p` is marked used, and (for class `c`) whether it is in the partial map.
    pub(crate) fn map_bits(&self, p: u32, c: Option<usize>) -> (bool, bool) {
        let w = p as usize / 64;
        let used = self.used_word(w).load(Relaxed) & 1 << (p % 64) != 0;
        let partial = c.is_some_and(|c| self.partial_word(c, w).load(Relaxed) & 1 << (p % 64) != 0);
        (used, partial)
    }

    /// The CLOCK hand word (space eviction).
    pub(crate) fn clock_hand(&self) -> &'a AtomicU64 {
        self.h64(hdr::CLOCK_HAND)
    }

    // ---- allocation ----

    /// Takes a free page, or `None` if there is none.
    pub(crate) fn alloc_page(&self) -> Result<Option<u32>> {
        let words = self.g.map_words;
        if words == 0 {
            return Ok(None);
        }
        let cursor = self.h64(hdr::FREE_CURSOR);
        let start = (cursor.load(Relaxed) % words as u64) as usize;
        for k in 0..words {
            let w = (start + k) % words;
            let mut v = self.used_word(w).load(Relaxed);
            if w == words - 1 && !self.g.npages.is_multiple_of(64) {
                v |= u64::MAX << (self.g.npages % 64); // pages past the end count as used
            }
            if v != u64::MAX {
                let p = (w * 64) as u32 + (!v).trailing_zeros();
                if self.desc_u32(p, desc::KIND).load(Relaxed) != desc::FREE {
                    return corrupted("page pool: a page marked free is in use");
                }
                self.set_used(p, true);
                failpoint!("pool.page_taken");
                cursor.store(w as u64, Relaxed);
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// Takes a whole page for piece `piece` of the value owned by `owner`.
    pub(crate) fn alloc_large(&self, owner: u32, piece: u32) -> Result<Option<u32>> {
        let Some(p) = self.alloc_page()? else {
            return Ok(None);
        };
        self.desc_u32(p, desc::KIND).store(desc::LARGE, Relaxed);
        failpoint!("pool.large_taken");
        self.desc_u32(p, desc::OWNER).store(owner, Relaxed);
        self.desc_bits(p).store(u64::from(piece), Relaxed);
        Ok(Some(p))
    }

    /// A page of class `c` with a free block (lowest first), if any.
    fn partial_page(&self, c: usize) -> Option<u32> {
        let words = self.g.map_words;
        let hint = self.class_u32(hdr::CLASS_HINT, c);
        let start = (hint.load(Relaxed) as usize).min(words);
        for w in start..words {
            let v = self.partial_word(c, w).load(Relaxed);
            if v != 0 {
                if w != start {
                    hint.store(w as u32, Relaxed);
                }
                let p = (w * 64) as u32 + v.trailing_zeros();
                return (p < self.g.npages).then_some(p);
            }
        }
        hint.store(words as u32, Relaxed);
        None
    }

    /// Takes a block of class `c`: from a partially used page, else (if `fresh`) from a new
    /// page. Writes the block header (`owner`, `piece`).
    pub(crate) fn alloc_block(
        &self,
        c: usize,
        fresh: bool,
        owner: u32,
        piece: u32,
    ) -> Result<Option<Loc>> {
        let (p, bits) = match self.partial_page(c) {
            Some(p) => {
                if self.desc_u32(p, desc::KIND).load(Relaxed) != 1 + c as u32 {
                    return corrupted("page pool: partial map names a page of another class");
                }
                (p, self.desc_bits(p).load(Relaxed))
            }
            None if fresh => {
                let Some(p) = self.alloc_page()? else {
                    return Ok(None);
                };
                self.desc_u32(p, desc::KIND).store(1 + c as u32, Relaxed);
                failpoint!("pool.class_page");
                self.desc_u32(p, desc::OWNER).store(0, Relaxed);
                self.desc_bits(p).store(0, Relaxed);
                Self::add_u32(self.class_u32(hdr::CLASS_PAGES, c), 1);
                (p, 0)
            }
            None => return Ok(None),
        };
        let free = !bits & block_mask(c);
        if free == 0 {
            return corrupted("page pool: partial page has no free block");
        }
        let b = free.trailing_zeros();
        let nbits = bits | 1 << b;
        self.desc_bits(p).store(nbits, Relaxed);
        failpoint!("pool.block_taken");
        Self::add_u32(self.class_u32(hdr::CLASS_USED, c), 1);
        self.set_partial(c, p, nbits != block_mask(c));
        failpoint!("pool.block_counted");
        self.write_header(self.block_off(c, p, b), owner, piece);
        Ok(Some(Loc::Block { page: p, block: b }))
    }

    /// Frees a block of class `c` (a checked locator); an emptied page becomes free.
    pub(crate) fn free_block(&self, c: usize, p: u32, b: u32) -> Result<()> {
        if self.desc_u32(p, desc::KIND).load(Relaxed) != 1 + c as u32 {
            return corrupted("page pool: freeing a block of a page of another class");
        }
        let bits = self.desc_bits(p).load(Relaxed);
        if bits & 1 << b == 0 {
            return corrupted("page pool: freeing a free block");
        }
        let nbits = bits & !(1 << b);
        self.desc_bits(p).store(nbits, Relaxed);
        failpoint!("pool.block_freed");
        Self::add_u32(self.class_u32(hdr::CLASS_USED, c), -1);
        if nbits & block_mask(c) == 0 {
            self.set_partial(c, p, false);
            Self::add_u32(self.class_u32(hdr::CLASS_PAGES, c), -1);
            failpoint!("pool.page_emptied");
            self.desc_u32(p, desc::KIND).store(desc::FREE, Relaxed);
            self.set_used(p, false);
        } else {
            self.set_partial(c, p, true);
        }
        Ok(())
    }

    /// Frees a whole page of a large value.
    pub(crate) fn free_large(&self, p: u32) -> Result<()> {
        if self.desc_u32(p, desc::KIND).load(Relaxed) != desc::LARGE {
            return corrupted("page pool: freeing a page that is not a large value's");
        }
        self.desc_u32(p, desc::KIND).store(desc::FREE, Relaxed);
        failpoint!("pool.large_freed");
        self.desc_u32(p, desc::OWNER).store(0, Relaxed);
        self.desc_bits(p).store(0, Relaxed);
        self.set_used(p, false);
        Ok(())
    }

    /// Writes a block header.
    pub(crate) fn write_header(&self, block_off: usize, owner: u32, piece: u32) {
        // One word (owner in the low half): the heap's bytes are only ever accessed as whole
        // aligned words, whatever a page held before (mixed-size atomic accesses to one
        // location are outside the memory model, and Miri refuses them).
        self.r
            .u64_at(block_off)
            .store(u64::from(owner) | u64::from(piece) << 32, Relaxed);
    }

    /// Reads a block header: (owner slot, piece index).
    pub(crate) fn read_header(&self, block_off: usize) -> (u32, u32) {
        let w = self.r.u64_at(block_off).load(Relaxed);
        (w as u32, (w >> 32) as u32)
    }

    /// Kind word and bits of page `p` (for the compactor and `verify`).
    pub(crate) fn page_state(&self, p: u32) -> (u32, u64) {
        (
            self.desc_u32(p, desc::KIND).load(Relaxed),
            self.desc_bits(p).load(Relaxed),
        )
    }

    /// The page of class `c` with the fewest used blocks (at least one), scanning every
    /// descriptor once.
    pub(crate) fn sparsest_page(&self, c: usize) -> Option<(u32, u64)> {
        let mut best: Option<(u32, u64)> = None;
        for p in 0..self.g.npages {
            let (kind, bits) = self.page_state(p);
            let bits = bits & block_mask(c);
            if kind == 1 + c as u32
                && bits != 0
                && best.is_none_or(|(_, b)| bits.count_ones() < b.count_ones())
            {
                best = Some((p, bits));
            }
        }
        best
    }

    /// Takes page `p` out of its class's partial map (so allocations skip it while it is being
    /// emptied) or puts it back.
    pub(crate) fn set_draining(&self, c: usize, p: u32, draining: bool) {
        let (_, bits) = self.page_state(p);
        self.set_partial(c, p, !draining && bits & block_mask(c) != block_mask(c));
    }

    // ---- rebuild (repair) and reset (clear) ----

    /// Forgets every allocation: all pages free. (Leaves the dirty flag as it is.)
    pub(crate) fn reset(&self) {
        for w in 0..self.g.map_words {
            self.used_word(w).store(0, Relaxed);
            for c in 0..NCLASSES {
                self.partial_word(c, w).store(0, Relaxed);
            }
        }
        for p in 0..self.g.npages {
            self.desc_u32(p, desc::KIND).store(desc::FREE, Relaxed);
            self.desc_u32(p, desc::OWNER).store(0, Relaxed);
            self.desc_bits(p).store(0, Relaxed);
        }
        for f in [hdr::USED_PAGES, hdr::VALUE_BYTES, hdr::FREE_CURSOR] {
            self.h64(f).store(0, Relaxed);
        }
        for c in 0..NCLASSES {
            self.class_u32(hdr::CLASS_PAGES, c).store(0, Relaxed);
            self.class_u32(hdr::CLASS_USED, c).store(0, Relaxed);
            self.class_u32(hdr::CLASS_HINT, c).store(0, Relaxed);
        }
    }

    /// Rebuild: records that block `b` of page `p` (class `c`) is piece `piece` of `owner`'s
    /// value. Two values claiming one block, or a page claimed by two classes, is corruption.
    pub(crate) fn mark_block(
        &self,
        c: usize,
        p: u32,
        b: u32,
        owner: u32,
        piece: u32,
    ) -> Result<()> {
        let kind = self.desc_u32(p, desc::KIND).load(Relaxed);
        let bits = if kind == desc::FREE {
            self.desc_u32(p, desc::KIND).store(1 + c as u32, Relaxed);
            self.set_used(p, true);
            Self::add_u32(self.class_u32(hdr::CLASS_PAGES, c), 1);
            0
        } else if kind == 1 + c as u32 {
            self.desc_bits(p).load(Relaxed)
        } else {
            return corrupted("rebuild: a page holds blocks of two classes");
        };
        if bits & 1 << b != 0 {
            return corrupted("rebuild: two values share a block");
        }
        self.desc_bits(p).store(bits | 1 << b, Relaxed);
        Self::add_u32(self.class_u32(hdr::CLASS_USED, c), 1);
        let off = self.block_off(c, p, b);
        if self.read_header(off) != (owner, piece) {
            self.write_header(off, owner, piece);
        }
        Ok(())
    }

    /// Rebuild: records that page `p` is piece `piece` of `owner`'s value.
    pub(crate) fn mark_large(&self, p: u32, owner: u32, piece: u32) -> Result<()> {
        if self.desc_u32(p, desc::KIND).load(Relaxed) != desc::FREE {
            return corrupted("rebuild: a whole page is claimed twice");
        }
        self.desc_u32(p, desc::KIND).store(desc::LARGE, Relaxed);
        self.desc_u32(p, desc::OWNER).store(owner, Relaxed);
        self.desc_bits(p).store(u64::from(piece), Relaxed);
        self.set_used(p, true);
        Ok(())
    }

    /// Rebuild: sets the partial maps from the descriptors once every block is marked.
    pub(crate) fn finish_rebuild(&self) {
        for p in 0..self.g.npages {
            let (kind, bits) = self.page_state(p);
            if (1..=NCLASSES as u32).contains(&kind) {
                let c = (kind - 1) as usize;
                self.set_partial(c, p, bits & block_mask(c) != block_mask(c));
            }
        }
    }
}
