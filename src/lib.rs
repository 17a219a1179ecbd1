//! # shmstate
//!
//! Shared state for the worker processes of one host, at memory speed. Workers map one
//! fixed-layout region (anonymous shared memory created before `fork`, a named POSIX shm object,
//! or a file); a sharded hash table in it is guarded by robust process-shared mutexes, reads
//! take no lock, and named counters are plain atomics. No IPC on any operation.
//!
//! ```
//! use shmstate::{Config, Store};
//! use std::time::Duration;
//!
//! # fn main() -> shmstate::Result<()> {
//! let store = Store::anonymous(&Config::new().capacity(100_000).max_value_len(512))?; // before fork
//! store.set(b"session:42", b"{\"user\":7}", Some(Duration::from_secs(3600)))?;
//! assert_eq!(store.get(b"session:42")?.as_deref(), Some(&b"{\"user\":7}"[..]));
//! let hits = store.counter("http.requests")?; // resolve once
//! hits.add(1);                                 // one atomic instruction, no lock
//! let n = store.incr(b"ratelimit:10.0.0.1", 1, Some(Duration::from_secs(60)))?;
//! assert_eq!(n, 1);
//! # Ok(()) }
//! ```
//!
//! [`StateBackend`] is one interface over the store and (cargo feature `redis`) a Redis
//! server, for when the state must be shared by more than one host.
//!
//! # Guarantees
//!
//! * **A killed worker never blocks or corrupts the others.** Writers hold a robust mutex; when
//!   a holder dies (SIGKILL, OOM) the next locker is told and repairs the shard from a redo
//!   record first. Every write either happened entirely or not at all; only the dead worker's
//!   own in-flight operation is uncertain.
//! * **Reads take no lock and write no shared memory** (seqlock per slot). A reader that keeps
//!   finding a slot mid-write takes the lock instead, so no read waits on a dead writer.
//! * **Every wait is bounded.** Retry loops are counted; a lock held by a *live* process is
//!   waited for at most `Config::lock_timeout` ([`Error::LockTimeout`]).
//! * **The region is untrusted input.** Header fields are validated once at open (magic,
//!   version, layout fingerprint, sizes, config); lengths and indices read later are checked
//!   before use. Corruption gives [`Error::Corrupted`] or a [`VerifyReport`] problem, never an
//!   out-of-bounds access.
//! * **Named objects and files are opened safely**: `O_NOFOLLOW`, regular file, owned by us,
//!   not writable by group or others.
//!
//! # Limits
//!
//! * Slots are fixed-size (`max_key_len + max_value_len + 24` bytes, rounded to 8), so size
//!   `max_value_len` for your values; larger values are refused with [`Error::ValueTooLarge`].
//! * The table does not grow. A shard refuses new keys past 7/8 load or when no slot is free
//!   within 64 probe groups of 8 slots ([`Error::Full`]), unless configured with [`WhenFull::Evict`].
//! * TTLs are wall-clock milliseconds; expiry is lazy (on access, and when an insert needs
//!   room) plus [`Store::flush_expired`].
//! * Linux only (robust futexes, `/dev/shm`). All processes must use builds with the same
//!   layout fingerprint (same format version, libc, architecture).
//! * A process that truncates a file-backed region under others makes their accesses fault
//!   (`SIGBUS`); the size is checked only at open.

// Unsafe is fenced by the compiler (as rustix does): denied here, allowed per file only in
// `region/map.rs` (mmap), `region/raw.rs` (the atomic views) and `sync/mutex.rs` (the pthread
// calls), and on one declaration in `store/admin.rs` and one test-only call in `failpoint.rs`.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

/// Marks a named crash point (see [`failpoint`]); compiles to nothing without the
/// `failpoints` feature.
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoint::hit($name);
    };
}

mod backend;
mod clock;
mod config;
mod counter;
mod error;
#[cfg(feature = "failpoints")]
pub mod failpoint;
mod hash;
mod metrics;
mod primitives;
mod process;
mod redo;
mod region;
mod stats;
mod store;
mod sync;
mod table;

#[cfg(feature = "redis")]
pub use backend::redis::{RedisBackend, RedisOptions};
pub use backend::{LockHandle, StateBackend};
pub use clock::{Clock, ManualClock};
pub use config::{limits, Config, Settings, WhenFull};
pub use counter::Counter;
pub use error::{BackendErrorKind, Error, Incompatibility, Result};
pub use metrics::{prometheus, render_prometheus, PROMETHEUS_CONTENT_TYPE};
pub use primitives::cache::{Cache, CacheError, CacheStats};
pub use primitives::lock::{lock_key, LockGuard, LockHolder};
pub use primitives::namespace::Namespace;
pub use primitives::ratelimit::{Decision, RateLimiter};
pub use primitives::workers::{Gauge, Worker, WorkerInfo, Workers, MAX_LABEL, MAX_WORKERS};
#[doc(hidden)]
pub use region::inspect::{CountField, CounterField, PartKind, RegionPart, RepairField, SlotField};
pub use region::Origin;
pub use stats::Stats;
pub use store::{Store, Ttl};
pub use table::{Problem, ProblemKind, Totals, VerifyReport};

/// The region format version this build reads and writes (regions of another version are
/// refused with [`Incompatibility::Version`]).
pub const FORMAT_VERSION: u32 = region::layout::FORMAT_VERSION;

// Handles are shared between threads and cloned freely.
const _: fn() = || {
    fn assert_shareable<T: Send + Sync + Clone>() {}
    assert_shareable::<Store>();
    assert_shareable::<Counter>();
    #[cfg(feature = "redis")]
    assert_shareable::<RedisBackend>();
};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
