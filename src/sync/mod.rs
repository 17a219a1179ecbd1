//! Synchronization inside the region: the robust process-shared mutex (`mutex.rs`, where the
//! pthread calls are) and the per-slot sequence lock used by lock-free readers (`seqlock.rs`).

pub(crate) mod mutex;
pub(crate) mod seqlock;

pub(crate) use mutex::{at_fork_in_child, MutexGuard, RobustMutex};

/// The atomics the protocols use (a seam for the model checks in loom/, which compile
/// `seqlock.rs` against loom's).
pub(crate) mod atomic {
    pub(crate) use std::sync::atomic::{fence, AtomicU32, Ordering};
}
