//! `src/sync/seqlock.rs` of shmstate, compiled against loom's atomics so that
//! `tests/protocols.rs` model-checks the crate's own sequence lock.

/// What `seqlock.rs` imports as `super::atomic`.
pub mod atomic {
    pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
}

#[path = "../../src/sync/seqlock.rs"]
mod seqlock;

use atomic::AtomicU32;

/// `seqlock::write_begin`.
pub fn write_begin(seq: &AtomicU32) -> u32 {
    seqlock::write_begin(seq)
}

/// `seqlock::write_end`.
pub fn write_end(seq: &AtomicU32, odd: u32) {
    seqlock::write_end(seq, odd)
}

/// `seqlock::read_begin`.
pub fn read_begin(seq: &AtomicU32) -> Option<u32> {
    seqlock::read_begin(seq)
}

/// `seqlock::read_validate`.
pub fn read_validate(seq: &AtomicU32, s: u32) -> bool {
    seqlock::read_validate(seq, s)
}
