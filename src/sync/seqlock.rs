//! Per-slot sequence lock.
//!
//! | `seq`  | meaning                                                           |
//! |--------|-------------------------------------------------------------------|
//! | even   | stable: the slot's bytes and its control byte are a consistent snapshot |
//! | odd    | a writer (holding the shard lock) is changing the slot, or died doing so |
//!
//! Writers hold the shard mutex, so there is never more than one. Readers take no lock and
//! write nothing: they read `seq`, copy, and re-read `seq`; any change means retry. A writer
//! that dies leaves `seq` odd; the next lock holder (who gets `EOWNERDEAD`) repairs the slot and
//! makes `seq` even again, and readers that keep seeing an odd `seq` fall back to taking the lock
//! themselves, so no reader waits on a dead writer.
//!
//! Orderings follow Boehm, "Can seqlocks get along with programming language memory models?"
//! (2012): the writer's odd store is followed by a release fence, data stores are relaxed
//! atomics, and the even store is a release; the reader's first load is an acquire, data loads
//! are relaxed atomics, then an acquire fence before the re-read.

// `super::atomic` is std's; loom/ compiles this file against loom's instead.
use super::atomic::{fence, AtomicU32, Ordering};

/// Marks the slot as being written and returns the odd value stored. Keeps an odd value odd (a
/// repairer re-running a dead writer's write).
#[inline]
pub(crate) fn write_begin(seq: &AtomicU32) -> u32 {
    let s = seq.load(Ordering::Relaxed);
    let odd = if s & 1 == 1 { s } else { s.wrapping_add(1) };
    seq.store(odd, Ordering::Relaxed);
    fence(Ordering::Release);
    odd
}

/// Publishes the write begun with [`write_begin`].
#[inline]
pub(crate) fn write_end(seq: &AtomicU32, odd: u32) {
    seq.store(odd.wrapping_add(1), Ordering::Release);
}

/// Starts a read: `None` while a write is in progress.
#[inline]
pub(crate) fn read_begin(seq: &AtomicU32) -> Option<u32> {
    let s = seq.load(Ordering::Acquire);
    (s & 1 == 0).then_some(s)
}

/// Whether everything read since [`read_begin`] returned `s` is a consistent snapshot.
#[inline]
pub(crate) fn read_validate(seq: &AtomicU32, s: u32) -> bool {
    fence(Ordering::Acquire);
    seq.load(Ordering::Relaxed) == s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_states() {
        let seq = AtomicU32::new(4);
        let s = read_begin(&seq).unwrap();
        let odd = write_begin(&seq);
        assert_eq!(odd, 5);
        assert!(read_begin(&seq).is_none());
        assert!(!read_validate(&seq, s));
        // A repairer re-running the write keeps it odd.
        assert_eq!(write_begin(&seq), 5);
        write_end(&seq, odd);
        let s2 = read_begin(&seq).unwrap();
        assert_eq!(s2, 6);
        assert!(read_validate(&seq, s2));
    }
}
