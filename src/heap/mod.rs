//! The value heap: where values longer than a slot's 24-byte value field live, at about the
//! memory they really take.
//!
//! | file        | job                                                                     |
//! |-------------|-------------------------------------------------------------------------|
//! | `class.rs`  | size classes, locators, the one way a value of a given length is stored |
//! | `pool.rs`   | a shard's pages: descriptors, used/partial maps, counters, rebuild      |
//! | `value.rs`  | storing, reading (lock-free too), freeing and decoding one value        |
//!
//! # Design
//!
//! Each shard owns a pool of 4 KiB pages after its slots. A page is free, holds blocks of one
//! size class (21 classes from 64 to 2048 bytes, at most 64 blocks per page so a page's block
//! bitmap is one `u64`), or is one whole page of a large value. A value of up to 24 bytes stays
//! in its slot (a counter-sized hit costs what it did before the heap); up to 2040 bytes it is one
//! block; larger, it is whole pages plus up to two tail blocks, listed in an extent block. The
//! shape of a value follows from its length alone ([`class::Shape`]), so the slot stores only
//! the root block's 32-bit locator.
//!
//! # Why this is crash-safe and lock-free for readers
//!
//! * A writer writes value bytes only into blocks that no slot references, then publishes the
//!   slot through the table's usual protocol (a new slot, or the redo record for an overwrite);
//!   it frees the old blocks only after that. So *a block is never modified while a slot points
//!   to it*, and every free or reuse happens after the owning slot's sequence number moved: a
//!   lock-free reader that copied from a block that was freed and reused meanwhile fails its
//!   seqlock validation and retries.
//! * The pool's metadata is never logged: it is a cache of what the slots reference, and the
//!   lock holder that finds a dead predecessor (or a busy redo record) rebuilds it from the slots
//!   (the table's repair). A writer killed mid-allocation, mid-free
//!   or mid-compaction therefore leaks nothing.
//! * Everything read from the region is checked before use: a locator's page and block against
//!   the pool's size and the class its value's length implies; a scribbled map or descriptor
//!   gives [`Error::Corrupted`](crate::Error::Corrupted) or a `verify` problem, and every search
//!   is bounded by the size of a map.
//!
//! # Reclaiming space
//!
//! Freed blocks return to their page; an emptied page returns to the pool and can serve any
//! class or a large value. When an allocation finds no room, the table compacts: it moves the
//! blocks of the sparsest page of a class with at least a page's worth of free blocks into that
//! class's other pages (each move one redo-logged slot update), which frees the page. So free
//! bytes do not stay stranded in half-empty pages of one size after the mix of sizes changes.

pub(crate) mod class;
pub(crate) mod pool;
pub(crate) mod value;

pub(crate) use class::{Shape, BLOCK_HEADER, INLINE_MAX, PAGE};
pub(crate) use pool::{Pool, PoolGeom};
