//! Synchronization inside the region: the robust process-shared mutex (all the unsafe for
//! locking) and the per-slot sequence lock used by lock-free readers.

pub(crate) mod mutex;
pub(crate) mod seqlock;

pub(crate) use mutex::{LockError, MutexGuard, RobustMutex};
