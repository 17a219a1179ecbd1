//! Size classes, locators and the canonical shape of a value: pure arithmetic, no region access.
//!
//! A value of `len` bytes is stored in exactly one way, computed from `len` alone ([`Shape`]),
//! so a reader, a repairer and `verify` all derive the same pieces (and their size classes) from
//! the slot's length without trusting any allocator metadata:
//!
//! | `len`                         | where the bytes are                                    |
//! |-------------------------------|--------------------------------------------------------|
//! | `0 ..= INLINE_MAX` (24)       | in the slot itself                                     |
//! | `.. = MAX_BLOCK_PAYLOAD`      | one block of the smallest class that holds `len + 8`   |
//! | larger                        | whole pages, then up to two tail blocks, listed in an extent block |
//!
//! Every block starts with an 8-byte header (owner slot, piece index) so the compactor can find
//! who points at a block; the value bytes follow it.

/// Bytes in a heap page.
pub(crate) const PAGE: usize = 4096;
/// Bytes at the start of every block (owner slot `u32`, piece index `u32`).
pub(crate) const BLOCK_HEADER: usize = 8;
/// Values of at most this many bytes are stored in the slot (the slot's 24-byte value field).
pub(crate) const INLINE_MAX: usize = 24;
/// The most blocks a page holds (its block bitmap is one `u64`).
pub(crate) const MAX_BLOCKS_PER_PAGE: usize = 64;

/// Block sizes (header included): for k blocks per page, the largest multiple of 16 that fits
/// k blocks in a page, for k = 64, 48, 42, 36, 32, 28, 24, 21, 18, 16, 14, 12, 10, 9, 8, 7, 6,
/// 5, 4, 3, 2. Neighbours are 1.1x to 1.5x apart.
pub(crate) const CLASSES: [u32; NCLASSES] = [
    64, 80, 96, 112, 128, 144, 160, 192, 224, 256, 288, 336, 400, 448, 512, 576, 672, 816, 1024,
    1360, 2048,
];
/// The class table folded into one word, for the region's layout fingerprint.
pub(crate) const CLASSES_DIGEST: u64 = {
    let mut h = 0u64;
    let mut i = 0;
    while i < NCLASSES {
        h = h.rotate_left(11) ^ CLASSES[i] as u64;
        i += 1;
    }
    h
};
/// Number of size classes.
pub(crate) const NCLASSES: usize = 21;
/// The largest value a single block holds.
pub(crate) const MAX_BLOCK_PAYLOAD: usize = CLASSES[NCLASSES - 1] as usize - BLOCK_HEADER;
/// Piece locators an extent block holds (its payload is `4 x pieces` bytes).
pub(crate) const MAX_PIECES: usize = MAX_BLOCK_PAYLOAD / 4;
/// The largest value the heap can store: 508 whole pages (2 MiB - 16 KiB). Any shorter value
/// needs at most 507 pages and 2 tails, within [`MAX_PIECES`].
pub(crate) const MAX_VALUE: usize = 508 * PAGE;
/// Piece index written in the header of a value's root block (direct value or extent).
pub(crate) const ROOT_PIECE: u32 = u32::MAX;
/// Pages a shard may have: a block locator holds a 25-bit page number.
pub(crate) const MAX_PAGES: u32 = 1 << 25;

const _: () = {
    let mut i = 0;
    while i < NCLASSES {
        let c = CLASSES[i] as usize;
        assert!(c.is_multiple_of(16) && c >= BLOCK_HEADER + 8);
        assert!(blocks_per_page(i) >= 2 && blocks_per_page(i) <= MAX_BLOCKS_PER_PAGE);
        if i > 0 {
            assert!(CLASSES[i - 1] < CLASSES[i]);
        }
        i += 1;
    }
    assert!(MAX_BLOCK_PAYLOAD > INLINE_MAX);
    assert!(MAX_VALUE / PAGE + 2 <= MAX_PIECES + 1);
    assert!(2 * MAX_BLOCK_PAYLOAD < PAGE);
};

/// Blocks in one page of class `c`.
#[inline]
pub(crate) const fn blocks_per_page(c: usize) -> usize {
    let n = PAGE / CLASSES[c] as usize;
    if n > MAX_BLOCKS_PER_PAGE {
        MAX_BLOCKS_PER_PAGE
    } else {
        n
    }
}

/// The bits of a page bitmap that stand for blocks of class `c`.
#[inline]
pub(crate) const fn block_mask(c: usize) -> u64 {
    let n = blocks_per_page(c);
    if n == 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// `CLASS_BY_16[n]`: the smallest class of at least `16 * n` bytes.
const CLASS_BY_16: [u8; 129] = {
    let mut t = [0u8; 129];
    let mut n = 0;
    let mut c = 0;
    while n < 129 {
        while (CLASSES[c] as usize) < 16 * n {
            c += 1;
        }
        t[n] = c as u8;
        n += 1;
    }
    t
};

/// The smallest class whose blocks hold `bytes` (header included), if any.
#[inline]
pub(crate) fn class_for(bytes: usize) -> Option<usize> {
    CLASS_BY_16.get(bytes.div_ceil(16)).map(|&c| c as usize)
}

/// Where one piece of a value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Loc {
    /// Block `block` of page `page` (the page's class comes from the value's shape).
    Block { page: u32, block: u32 },
    /// The whole page `page`.
    Page(u32),
}

const BLOCK_BIT: u32 = 1 << 31;

impl Loc {
    /// The 32-bit form stored in slots and extent blocks.
    #[inline]
    pub(crate) fn encode(self) -> u32 {
        match self {
            Loc::Block { page, block } => BLOCK_BIT | page << 6 | block,
            Loc::Page(p) => p,
        }
    }

    /// Decodes a stored locator, checking it against a shard of `npages` pages. `class`: the
    /// class a block locator must belong to (`None`: it must be a whole page).
    #[inline]
    pub(crate) fn decode(v: u32, class: Option<usize>, npages: u32) -> Option<Loc> {
        match class {
            Some(c) => {
                let page = (v & !BLOCK_BIT) >> 6;
                let block = v & 63;
                (v & BLOCK_BIT != 0 && page < npages && (block as usize) < blocks_per_page(c))
                    .then_some(Loc::Block { page, block })
            }
            None => (v & BLOCK_BIT == 0 && v < npages).then_some(Loc::Page(v)),
        }
    }
}

/// How a value of a given length is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// In the slot.
    Inline,
    /// In one block of class `class`; the slot holds its locator.
    Direct { class: usize },
    /// `pages` whole pages then `tails` tail blocks, listed (in that order) in an extent block
    /// of class `extent`; the slot holds the extent's locator.
    Extent {
        pages: usize,
        /// Bytes held by the last page (`PAGE` unless the value ends less than 16 bytes short
        /// of a page boundary, where a short page beats two tail blocks).
        last_page: usize,
        tails: [Option<Tail>; 2],
        extent: usize,
    },
}

/// A value's tail block: `len` bytes in a block of class `class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tail {
    pub class: usize,
    pub len: usize,
}

impl Shape {
    /// The shape of a `len`-byte value; `None` past [`MAX_VALUE`].
    pub(crate) fn of(len: usize) -> Option<Shape> {
        if len <= INLINE_MAX {
            return Some(Shape::Inline);
        }
        if len <= MAX_BLOCK_PAYLOAD {
            return Some(Shape::Direct {
                class: class_for(len + BLOCK_HEADER)?,
            });
        }
        if len > MAX_VALUE {
            return None;
        }
        let mut pages = len / PAGE;
        let mut last_page = PAGE;
        let rem = len % PAGE;
        let tail = |n: usize| {
            Some(Tail {
                class: class_for(n + BLOCK_HEADER).expect("tail fits a block"),
                len: n,
            })
        };
        let tails = if rem == 0 {
            [None, None]
        } else if rem <= MAX_BLOCK_PAYLOAD {
            [tail(rem), None]
        } else if rem <= 2 * MAX_BLOCK_PAYLOAD {
            [tail(MAX_BLOCK_PAYLOAD), tail(rem - MAX_BLOCK_PAYLOAD)]
        } else {
            pages += 1;
            last_page = rem;
            [None, None]
        };
        let pieces = pages + tails.iter().flatten().count();
        Some(Shape::Extent {
            pages,
            last_page,
            tails,
            extent: class_for(BLOCK_HEADER + 4 * pieces)?,
        })
    }

    /// Pieces listed in the extent (0 unless `Extent`).
    pub(crate) fn pieces(&self) -> usize {
        match self {
            Shape::Extent { pages, tails, .. } => pages + tails.iter().flatten().count(),
            _ => 0,
        }
    }

    /// Class of the root block (`None` when inline).
    pub(crate) fn root_class(&self) -> Option<usize> {
        match *self {
            Shape::Inline => None,
            Shape::Direct { class } => Some(class),
            Shape::Extent { extent, .. } => Some(extent),
        }
    }

    /// Class of extent piece `i` (`None`: a whole page).
    pub(crate) fn piece_class(&self, i: usize) -> Option<usize> {
        match self {
            Shape::Extent { pages, tails, .. } if i >= *pages => tails[i - pages].map(|t| t.class),
            _ => None,
        }
    }

    /// Bytes of the value held by extent piece `i`.
    pub(crate) fn piece_len(&self, i: usize) -> usize {
        match self {
            Shape::Extent { pages, tails, .. } if i >= *pages => {
                tails[i - pages].map_or(0, |t| t.len)
            }
            Shape::Extent {
                pages, last_page, ..
            } if i + 1 == *pages => *last_page,
            _ => PAGE,
        }
    }

    /// Heap bytes the value takes (blocks at their class size, whole pages).
    #[cfg(test)]
    pub(crate) fn footprint(&self) -> usize {
        match *self {
            Shape::Inline => 0,
            Shape::Direct { class } => CLASSES[class] as usize,
            Shape::Extent {
                pages,
                tails,
                extent,
                ..
            } => {
                pages * PAGE
                    + tails
                        .iter()
                        .flatten()
                        .map(|t| CLASSES[t.class] as usize)
                        .sum::<usize>()
                    + CLASSES[extent] as usize
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cover_every_length_and_add_up() {
        let mut len = 0;
        while len <= MAX_VALUE {
            let s = Shape::of(len).unwrap();
            match s {
                Shape::Inline => assert!(len <= INLINE_MAX),
                Shape::Direct { class } => {
                    assert!(CLASSES[class] as usize >= len + BLOCK_HEADER);
                    assert!(class == 0 || CLASSES[class - 1] as usize - BLOCK_HEADER < len);
                }
                Shape::Extent { .. } => {
                    let total: usize = (0..s.pieces()).map(|i| s.piece_len(i)).sum();
                    assert_eq!(total, len, "len {len}");
                    assert!(s.pieces() <= MAX_PIECES);
                    for i in 0..s.pieces() {
                        if let Some(c) = s.piece_class(i) {
                            assert!(s.piece_len(i) + BLOCK_HEADER <= CLASSES[c] as usize);
                        }
                    }
                    assert!(s.footprint() >= len);
                }
            }
            len += match (cfg!(miri), len < 20_000) {
                (false, true) => 1,
                (false, false) => 997,
                (true, _) => 4099,
            };
        }
        assert_eq!(Shape::of(MAX_VALUE + 1), None);
    }

    #[test]
    fn class_table_agrees_with_a_search() {
        for n in 0..=3000 {
            assert_eq!(
                class_for(n),
                CLASSES.iter().position(|&c| c as usize >= n),
                "{n}"
            );
        }
    }

    #[test]
    fn locators_round_trip_and_are_checked() {
        let n = 1000;
        for (c, page, block) in [(0usize, 0u32, 0u32), (0, 999, 63), (20, 5, 1)] {
            let l = Loc::Block { page, block };
            assert_eq!(Loc::decode(l.encode(), Some(c), n), Some(l));
        }
        assert_eq!(
            Loc::decode(Loc::Page(999).encode(), None, n),
            Some(Loc::Page(999))
        );
        assert_eq!(Loc::decode(Loc::Page(1000).encode(), None, n), None);
        // Class 20 has 2 blocks per page.
        assert_eq!(
            Loc::decode(Loc::Block { page: 1, block: 2 }.encode(), Some(20), n),
            None
        );
        // Wrong kind.
        assert_eq!(Loc::decode(Loc::Page(1).encode(), Some(0), n), None);
        assert_eq!(
            Loc::decode(Loc::Block { page: 1, block: 0 }.encode(), None, n),
            None
        );
        assert_eq!(Loc::decode(0, Some(0), n), None);
    }

    #[test]
    fn footprint_on_the_issue_mix_is_close_to_the_payload() {
        // 8 B inline; 200 B, 2 KiB and 16 KiB out of line.
        for (len, max_ratio) in [(200usize, 1.2), (2048, 1.07), (16384, 1.01), (5000, 1.05)] {
            let f = Shape::of(len).unwrap().footprint() as f64;
            assert!(f / len as f64 <= max_ratio, "{len}: {f}");
        }
    }
}
