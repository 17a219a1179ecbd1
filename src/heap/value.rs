//! Values stored out of line: writing one into fresh blocks, reading it back (lock-free readers
//! too), freeing it, and naming its pieces for repair and `verify`.

use std::sync::atomic::Ordering::Relaxed;

use super::class::{Loc, Shape, BLOCK_HEADER, ROOT_PIECE};
use super::pool::Pool;
use crate::error::Result;
use crate::region::raw::RawRegion;

/// A decoded out-of-line value: its shape, root block and extent pieces, every locator checked
/// against the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub len: usize,
    pub shape: Shape,
    /// The root block (the value itself, or its extent).
    pub root: Loc,
    /// Extent pieces in order (empty for a direct value).
    pub pieces: Vec<Loc>,
}

impl Stored {
    /// Every block and page of the value with its class (`None`: whole page) and piece index.
    pub(crate) fn parts(&self) -> impl Iterator<Item = (Loc, Option<usize>, u32)> + '_ {
        let root_class = self.shape.root_class();
        std::iter::once((self.root, root_class, ROOT_PIECE)).chain(
            self.pieces
                .iter()
                .enumerate()
                .map(|(i, l)| (*l, self.shape.piece_class(i), i as u32)),
        )
    }
}

/// The locator of piece `i` of the extent block at `extent_off`. Locators are 4 bytes each in
/// piece order, read and written two to a word: the heap's bytes are only ever accessed as
/// whole aligned words (see [`Pool::write_header`]).
#[inline]
pub(crate) fn piece_at(r: &RawRegion, extent_off: usize, i: usize) -> u32 {
    let w = r
        .u64_at(extent_off + BLOCK_HEADER + 8 * (i / 2))
        .load(Relaxed);
    (w >> (32 * (i % 2))) as u32
}

/// Writes the locators of the extent block at `extent_off` (see [`piece_at`]).
pub(crate) fn write_pieces(r: &RawRegion, extent_off: usize, locs: &[u32]) {
    for (k, pair) in locs.chunks(2).enumerate() {
        let w = u64::from(pair[0]) | pair.get(1).map_or(0, |&hi| u64::from(hi) << 32);
        r.u64_at(extent_off + BLOCK_HEADER + 8 * k)
            .store(w, Relaxed);
        failpoint!("value.extent_listing");
    }
}

/// Stores `bytes` (longer than the inline limit, within the heap's maximum) in fresh blocks
/// owned by slot `owner`. Returns the root locator, or `None` (having allocated nothing) when
/// the pool has no room.
pub(crate) fn store(pool: &Pool<'_>, owner: u32, bytes: &[u8]) -> Result<Option<u32>> {
    let shape = Shape::of(bytes.len()).expect("caller checked the length");
    let r = pool.region();
    match shape {
        Shape::Inline => unreachable!("inline values are not stored in the heap"),
        Shape::Direct { class } => {
            let Some(loc) = pool.alloc_block(class, true, owner, ROOT_PIECE)? else {
                return Ok(None);
            };
            let Loc::Block { page, block } = loc else {
                unreachable!()
            };
            r.write_bytes(pool.block_off(class, page, block) + BLOCK_HEADER, bytes);
            failpoint!("value.block_written");
            pool.add_value_bytes(bytes.len() as i64);
            Ok(Some(loc.encode()))
        }
        Shape::Extent { extent, .. } => {
            let n = shape.pieces();
            let mut got: Vec<(Loc, Option<usize>)> = Vec::with_capacity(n + 1);
            let mut at = 0;
            for i in 0..n {
                let len = shape.piece_len(i);
                let class = shape.piece_class(i);
                let loc = match class {
                    None => pool.alloc_large(owner, i as u32)?.map(Loc::Page),
                    Some(c) => pool.alloc_block(c, true, owner, i as u32)?,
                };
                let Some(loc) = loc else {
                    failpoint!("value.undoing");
                    free_parts(pool, &got)?;
                    return Ok(None);
                };
                got.push((loc, class));
                r.write_bytes(data_off(pool, loc, class), &bytes[at..at + len]);
                failpoint!("value.piece_written");
                at += len;
            }
            let Some(root) = pool.alloc_block(extent, true, owner, ROOT_PIECE)? else {
                failpoint!("value.undoing");
                free_parts(pool, &got)?;
                return Ok(None);
            };
            let Loc::Block { page, block } = root else {
                unreachable!()
            };
            let ext = pool.block_off(extent, page, block);
            let locs: Vec<u32> = got.iter().map(|(loc, _)| loc.encode()).collect();
            write_pieces(r, ext, &locs);
            pool.add_value_bytes(bytes.len() as i64);
            Ok(Some(root.encode()))
        }
    }
}

/// Region offset of the first value byte in a piece.
#[inline]
fn data_off(pool: &Pool<'_>, loc: Loc, class: Option<usize>) -> usize {
    match (loc, class) {
        (Loc::Page(p), _) => pool.page_off(p),
        (Loc::Block { page, block }, Some(c)) => pool.block_off(c, page, block) + BLOCK_HEADER,
        (Loc::Block { .. }, None) => unreachable!("a block locator always has a class"),
    }
}

fn free_parts(pool: &Pool<'_>, parts: &[(Loc, Option<usize>)]) -> Result<()> {
    for &(loc, class) in parts {
        match (loc, class) {
            (Loc::Page(p), _) => pool.free_large(p)?,
            (Loc::Block { page, block }, Some(c)) => pool.free_block(c, page, block)?,
            (Loc::Block { .. }, None) => unreachable!(),
        }
        failpoint!("value.part_freed");
    }
    Ok(())
}

/// Decodes the value of `len` bytes whose root locator is `root`, checking every locator.
/// `None` if one is out of range (a torn read, or corruption). Reads the extent with relaxed
/// loads: under the lock that is exact; without it, validate with the slot's seqlock.
pub(crate) fn decode(pool: &Pool<'_>, root: u32, len: usize) -> Option<Stored> {
    let shape = Shape::of(len)?;
    let root = Loc::decode(root, shape.root_class(), pool.npages())?;
    let mut pieces = Vec::new();
    if let (Shape::Extent { extent, .. }, Loc::Block { page, block }) = (shape, root) {
        let ext = pool.block_off(extent, page, block);
        let n = shape.pieces();
        pieces.reserve(n);
        for i in 0..n {
            let v = piece_at(pool.region(), ext, i);
            pieces.push(Loc::decode(v, shape.piece_class(i), pool.npages())?);
        }
    }
    Some(Stored {
        len,
        shape,
        root,
        pieces,
    })
}

/// Appends the value's bytes to `out` without allocating beyond `out` itself. Returns `false`
/// if a locator was out of range (`out` then holds an unspecified prefix). The bytes may be torn
/// by a concurrent writer: lock-free callers validate with the slot's seqlock afterwards.
#[inline]
pub(crate) fn read(pool: &Pool<'_>, root: u32, len: usize, out: &mut Vec<u8>) -> bool {
    let Some(shape) = Shape::of(len) else {
        return false;
    };
    let Some(rloc) = Loc::decode(root, shape.root_class(), pool.npages()) else {
        return false;
    };
    let r = pool.region();
    match (shape, rloc) {
        (Shape::Direct { class }, Loc::Block { page, block }) => {
            r.read_bytes(pool.block_off(class, page, block) + BLOCK_HEADER, len, out);
            true
        }
        (Shape::Extent { extent, .. }, Loc::Block { page, block }) => {
            let ext = pool.block_off(extent, page, block);
            out.reserve(len);
            for i in 0..shape.pieces() {
                let v = piece_at(r, ext, i);
                let class = shape.piece_class(i);
                let Some(loc) = Loc::decode(v, class, pool.npages()) else {
                    return false;
                };
                r.read_bytes(data_off(pool, loc, class), shape.piece_len(i), out);
            }
            true
        }
        _ => false,
    }
}

/// Frees every block and page of a decoded value.
pub(crate) fn free(pool: &Pool<'_>, v: &Stored) -> Result<()> {
    let parts: Vec<_> = v.parts().map(|(l, c, _)| (l, c)).collect();
    free_parts(pool, &parts)?;
    pool.add_value_bytes(-(v.len as i64));
    Ok(())
}

/// Rebuild: marks every block and page of a decoded value as owned by `owner`.
pub(crate) fn mark(pool: &Pool<'_>, owner: u32, v: &Stored) -> Result<()> {
    for (loc, class, piece) in v.parts() {
        match (loc, class) {
            (Loc::Page(p), _) => pool.mark_large(p, owner, piece)?,
            (Loc::Block { page, block }, Some(c)) => {
                pool.mark_block(c, page, block, owner, piece)?
            }
            (Loc::Block { .. }, None) => unreachable!(),
        }
    }
    pool.add_value_bytes(v.len as i64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::class::{INLINE_MAX, MAX_VALUE, PAGE};
    use crate::heap::pool::PoolGeom;
    use crate::region::map::Mapping;
    use std::collections::HashMap;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn bytes_for(owner: u32, len: usize, gen: u64) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u64 ^ (u64::from(owner) * 31) ^ (gen * 7)) as u8)
            .collect()
    }

    fn region(npages: u32) -> (Mapping, PoolGeom) {
        let g = PoolGeom::new(0, npages).unwrap();
        (Mapping::anonymous(g.size).unwrap(), g)
    }

    fn random_len(rng: &mut Rng) -> usize {
        match rng.below(10) {
            0..=3 => INLINE_MAX + 1 + rng.below(200) as usize,
            4..=6 => rng.below(2100) as usize + INLINE_MAX + 1,
            7..=8 => rng.below(3 * PAGE as u64) as usize + 2041,
            _ => rng.below(20 * PAGE as u64) as usize + 2041,
        }
    }

    /// Random stores and frees against a model; after each step every value reads back, and a
    /// rebuild from the model gives the same counters.
    #[test]
    fn store_read_free_rebuild_against_a_model() {
        let (m, g) = region(300);
        let pool = Pool::new(m.raw(), &g, 0);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut live: HashMap<u32, (u32, usize, u64)> = HashMap::new();
        let mut out = Vec::new();
        let steps = if cfg!(miri) { 50 } else { 20_000u64 };
        for step in 0..steps {
            let owner = rng.below(400) as u32;
            if let Some((root, len, gen)) = live.remove(&owner) {
                let v = decode(&pool, root, len).expect("valid");
                out.clear();
                assert!(read(&pool, root, len, &mut out));
                assert_eq!(out, bytes_for(owner, len, gen));
                free(&pool, &v).unwrap();
            } else {
                let len = random_len(&mut rng);
                // Under Miri every byte is interpreted: values of at most two pages.
                let len = if cfg!(miri) {
                    len.min(2 * PAGE + 100)
                } else {
                    len
                };
                let data = bytes_for(owner, len, step);
                if let Some(root) = store(&pool, owner, &data).unwrap() {
                    live.insert(owner, (root, len, step));
                }
            }
            if step % (steps / 10) == 0 {
                let before = (
                    pool.used_pages(),
                    pool.value_bytes(),
                    (0..21)
                        .map(|c| (pool.class_pages(c), pool.class_free_blocks(c)))
                        .collect::<Vec<_>>(),
                );
                pool.reset();
                for (&o, &(root, len, _)) in &live {
                    mark(&pool, o, &decode(&pool, root, len).unwrap()).unwrap();
                }
                pool.finish_rebuild();
                let after = (
                    pool.used_pages(),
                    pool.value_bytes(),
                    (0..21)
                        .map(|c| (pool.class_pages(c), pool.class_free_blocks(c)))
                        .collect::<Vec<_>>(),
                );
                assert_eq!(before, after, "step {step}");
            }
        }
        for (o, (root, len, _)) in live.drain() {
            let _ = o;
            free(&pool, &decode(&pool, root, len).unwrap()).unwrap();
        }
        assert_eq!(pool.used_pages(), 0, "space leaked");
        assert_eq!(pool.value_bytes(), 0);
    }

    #[test]
    fn a_full_pool_refuses_without_allocating() {
        let (m, g) = region(8);
        let pool = Pool::new(m.raw(), &g, 0);
        let big = vec![7u8; 6 * PAGE];
        let root = store(&pool, 1, &big).unwrap().unwrap();
        assert_eq!(pool.used_pages(), 6 + 1); // 6 pages + an extent page
        let used = pool.used_pages();
        assert_eq!(store(&pool, 2, &big).unwrap(), None);
        assert_eq!(pool.used_pages(), used);
        free(&pool, &decode(&pool, root, big.len()).unwrap()).unwrap();
        assert_eq!(pool.used_pages(), 0);
        // The largest value fits a pool big enough for it (2 MiB: too slow under Miri).
        if cfg!(miri) {
            return;
        }
        let (m, g) = region(600);
        let pool = Pool::new(m.raw(), &g, 0);
        let max = vec![1u8; MAX_VALUE];
        let root = store(&pool, 3, &max).unwrap().unwrap();
        let mut out = Vec::new();
        assert!(read(&pool, root, MAX_VALUE, &mut out));
        assert_eq!(out, max);
    }

    #[test]
    fn scribbled_locators_are_refused() {
        let (m, g) = region(16);
        let pool = Pool::new(m.raw(), &g, 0);
        let mut out = Vec::new();
        for root in [0u32, u32::MAX, 1 << 31 | 16 << 6, 5] {
            for len in [100usize, 5000, MAX_VALUE, MAX_VALUE + 1] {
                assert!(!read(&pool, root, len, &mut out) || decode(&pool, root, len).is_some());
                assert!(out.len() <= MAX_VALUE);
                out.clear();
            }
        }
        // A rebuild that finds two values claiming one block reports it.
        let root = store(&pool, 1, &[1u8; 100]).unwrap().unwrap();
        pool.reset();
        let v = decode(&pool, root, 100).unwrap();
        mark(&pool, 1, &v).unwrap();
        assert!(mark(&pool, 2, &v).is_err());
    }
}
