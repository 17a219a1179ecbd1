//! The region: getting a mapping (anonymous, named shm, file) and the flock protocol, the byte
//! layout, the header, and the bounds-checked atomic views everything above works through.
//!
//! | file         | job                                                                       |
//! |--------------|---------------------------------------------------------------------------|
//! | `map.rs`     | the owned `MAP_SHARED` mapping; [`SoleUser`], proof no one else uses it   |
//! | `open.rs`    | opening and creating named objects and files safely; the flock protocol   |
//! | `layout.rs`  | THE ONLY place that knows byte offsets (a byte picture, checked sizes)    |
//! | `header.rs`  | the header, read (validated) and written side by side                     |
//! | `raw.rs`     | bounds-checked atomic views; no references into shared bytes              |
//! | `inspect.rs` | a named map of a region's bytes, for corruption tests and fuzzers         |
//!
//! [`Region`] is the handle the layers above share: a mapping whose header has been validated.

pub(crate) mod header;
pub(crate) mod inspect;
pub(crate) mod layout;
pub(crate) mod map;
pub(crate) mod open;
pub(crate) mod raw;

pub use map::Origin;
pub(crate) use map::{Mapping, SoleUser};

use header::Header;
use layout::Layout;
use raw::RawRegion;

/// A mapped region whose header has been read and validated: what a store and its counters
/// share (through an `Arc`), unmapped when the last of them is dropped.
#[derive(Debug)]
pub(crate) struct Region {
    map: Mapping,
    header: Header,
}

impl Region {
    /// Wraps a mapping and its validated header.
    pub(crate) fn new(map: Mapping, header: Header) -> Self {
        Region { map, header }
    }

    /// The region's bytes.
    #[inline]
    pub(crate) fn raw(&self) -> &RawRegion {
        self.map.raw()
    }

    /// Sizes and offsets.
    #[inline]
    pub(crate) fn layout(&self) -> &Layout {
        &self.header.layout
    }

    /// The hash seed read at open.
    #[inline]
    pub(crate) fn seed(&self) -> (u64, u64) {
        self.header.seed
    }

    /// What the region was made from.
    pub(crate) fn origin(&self) -> &Origin {
        &self.map.origin
    }

    /// [`SoleUser`] while no other thread of any process can use the region's locks.
    pub(crate) fn sole_user(&self) -> Option<SoleUser<'_>> {
        self.map.sole_user()
    }

    /// Lets other processes in (see [`Mapping::downgrade`]).
    pub(crate) fn downgrade(&mut self) -> crate::error::Result<()> {
        self.map.downgrade()
    }
}
