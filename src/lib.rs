//! # shmstate
//!
//! Shared state for the worker processes of one host, at memory speed. Workers map one
//! fixed-layout region (anonymous shared memory created before `fork`, a named POSIX shm object,
//! or a file); a sharded hash table in it is guarded by robust process-shared mutexes, values
//! of any size up to 2 MiB live in a crash-safe heap at about the memory they take, reads take
//! no lock, and named counters are plain atomics. No IPC on any operation.
//!
//! ```
//! use shmstate::{Config, Store};
//! use std::time::Duration;
//!
//! # fn main() -> shmstate::Result<()> {
//! let store = Store::anonymous(&Config::new().memory(64 << 20))?; // before fork: one budget
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
//! # How does it work?
//!
//! **The region.** One mapping holds everything, at offsets computed once from the
//! configuration (the byte picture is in `region/layout.rs`, the only module that knows
//! offsets):
//!
//! ```text
//! | header (magic, version, fingerprint, sizes, seed, config) | counter registry mutex |
//! | counters: one AtomicI64 per 128-byte line, then its name                            |
//! | per-thread statistics slots | per-thread scratch slots (redo copies)                |
//! | shard 0: mutex + redo record | counts | control bytes | scratch slot | slots ...     |
//! |          heap: pool header | used-page map | partial-page maps | page descriptors   |
//! |                4 KiB pages ...                                                      |
//! | shard 1 ...                                                                         |
//! ```
//!
//! Every process maps the same bytes. Nothing in the region is a pointer; every length and
//! index read from it is checked before use, and all access goes through atomic views
//! (`region/raw.rs`), never through references into shared bytes.
//!
//! **The read path** (`table/read.rs`). A key's hash picks its shard, its home group of eight
//! slots and a 7-bit tag. A reader loads the group's eight control bytes as one word, matches
//! the tag in all eight at once, and for each match copies the slot under the slot's sequence
//! lock: read the sequence number, copy key and value with relaxed atomic loads, re-read the
//! sequence; a change means retry. A value of up to 24 bytes is in the slot; a longer one is
//! copied from the heap blocks the slot's locator names (checked against the heap's bounds
//! first), inside the same seqlock window. It takes no lock and writes nothing shared. A slot that
//! stays mid-write (its writer may be dead) makes the reader take the lock instead, after a
//! bounded number of retries.
//!
//! **The write path** (`table/lock.rs`, `table/write.rs`). A writer takes its shard's robust
//! process-shared mutex. An insert into a free slot writes the slot, then publishes it with
//! one store of its control byte. Anything that changes a live slot first writes the new
//! entry into a scratch slot, commits by storing the shard's redo record (`redo.rs`), then
//! copies it into place and idles the record. Keys never move, so readers never miss one.
//!
//! **The value heap** (`heap/`, `table/space.rs`). Each shard has a pool of 4 KiB pages: a
//! page holds blocks of one of 21 size classes (64 to 2048 bytes) or is a whole page of a large
//! value (whole pages plus up to two tail blocks, listed in an extent block). A writer puts a
//! new value into blocks no slot references, publishes the slot as above, and only then frees
//! the old value's blocks: a block never changes while a slot points to it, and a reader that
//! copied from a block freed and reused meanwhile fails its sequence check. When there is no
//! room, the writer removes expired entries, compacts (empties the sparsest page of a size
//! class into its other pages, one redo-logged slot update per moved block), then, under
//! [`WhenFull::Evict`], evicts CLOCK-style (at most 1024 entries per insert).
//!
//! **The repair path** (`table/repair.rs`). When a writer dies holding the lock, the kernel
//! marks the mutex and the next locker is told (`EOWNERDEAD`). Before the lock is handed to
//! the operation, the new holder redoes whatever the record says was committed, makes the
//! touched slot's sequence even, recounts the shard, rebuilds the heap's maps and counters from
//! the slots (they are never logged: the slots are the truth, so a writer killed
//! mid-allocation leaks nothing), idles the record, and only then marks the mutex consistent.
//! Each step is idempotent, so a repairer that dies is repaired in turn.
//!
//! **Counters** (`counter.rs`) are one `AtomicI64` each, found once by name and then updated
//! with one atomic instruction.
//!
//! **Modules**, data flowing one way (`store -> table -> region/sync -> raw`, no cycles):
//!
//! | module | job |
//! |---|---|
//! | `region/` | the mapping and the `flock` protocol (`map.rs`, `open.rs`), the byte layout (`layout.rs`), the header read and written side by side (`header.rs`), atomic views (`raw.rs`), a named map of the bytes (`inspect.rs`) |
//! | `sync/` | the robust process-shared mutex (`mutex.rs`), the seqlock (`seqlock.rs`) |
//! | `redo.rs` | the per-shard redo record: the crash protocol of multi-word writes |
//! | `stats.rs` | per-thread statistics slots (and the scratch slot each names), [`Stats`] |
//! | `process.rs` | pid, thread id, liveness, fork handling, identity that survives pid reuse |
//! | `hash.rs` | the keyed hash |
//! | `heap/` | the value heap: size classes and value shapes (`class.rs`), a shard's pages (`pool.rs`), storing and reading a value (`value.rs`) |
//! | `table/` | control bytes, probing, lock-free read, locking + repair, writes, making room in the heap (`space.rs`), verification |
//! | `counter.rs` | named counters, over the region |
//! | `store/` | the public [`Store`]: opening, key-value operations, admin |
//! | `primitives/` | locks, rate limits, stampede guard, namespaces, worker gauges |
//! | `backend/` | [`StateBackend`]: the store and Redis behind one trait |
//! | `config.rs`, `error.rs`, `clock.rs`, `metrics.rs` | configuration, errors, time, Prometheus |
//!
//! # Guarantees
//!
//! Each guarantee names the tests that prove it (in `tests/`, run by `cargo test --all-features`).
//!
//! * **A killed worker never blocks or corrupts the others.** Writers hold a robust mutex; when
//!   a holder dies (SIGKILL, OOM) the next locker is told and repairs the shard from a redo
//!   record first. Every write either happened entirely or not at all; only the dead worker's
//!   own in-flight operation is uncertain, and no heap space is leaked. *Tests:* `fork.rs`
//!   (`crash_in_every_operation`, `kill_at_every_write_point`: a worker killed at each
//!   failpoint; `crash_at_every_heap_step`: at each allocator step, the whole store and the
//!   heap's byte counts checked after; `repairer_killed_midway`), `torture.rs` (kill -9 soak
//!   with values from 1 byte to 64 KiB), `linearizability.rs` (histories with killed workers
//!   checked against a sequential model), loom's `protocols.rs`.
//! * **Reads take no lock and write no shared memory** (seqlock per slot). A reader that keeps
//!   finding a slot mid-write takes the lock instead, so no read waits on a dead writer.
//!   *Tests:* `fork.rs` (`values_cross_processes_untorn`, `parked_holder_then_sigkill`), loom
//!   (the seqlock, publishing, overwrite with a concurrent reader), Miri over the table paths.
//! * **Every wait is bounded.** Retry loops are counted; a lock held by a *live* process is
//!   waited for at most `Config::lock_timeout` ([`Error::LockTimeout`]). *Tests:*
//!   `fork.rs` (`woken_waiter_killed_does_not_strand_the_others`), `torture.rs` (max wait),
//!   `sync::mutex` unit tests (timeout).
//! * **The region is untrusted input.** Header fields are validated once at open (magic,
//!   version, layout fingerprint, sizes, config); lengths and indices read later are checked
//!   before use; heap locators are checked against the pool's bounds and the size class the
//!   value's length implies. Corruption gives [`Error::Corrupted`] or a [`VerifyReport`]
//!   problem, never an out-of-bounds access or an endless loop. *Tests:* `hostile.rs` (every
//!   part of a live region scribbled, the heap's metadata and blocks included, every operation
//!   called), the `image`, `scribble` and `records` fuzz targets, `region::header` unit tests
//!   (each field checked), `heap::value` unit tests (scribbled locators).
//! * **No space is lost.** [`Store::verify`] checks that every heap block is referenced exactly
//!   once, by the slot its header names, and that the maps and counters agree; compaction
//!   turns free blocks back into free pages when the mix of sizes changes. *Tests:* `heap.rs`
//!   (churn with a shifting size mix), the `heap::value` model test, `benches/memory.rs`.
//! * **Named objects and files are opened safely**: `O_NOFOLLOW`, regular file, owned by us,
//!   not writable by group or others. *Tests:* `api.rs` (`bad_files_are_specific_errors`).
//!
//! # Limits
//!
//! * The region does not grow: [`Config::memory`] is its size, index and values together.
//!   The index has `capacity` slots of `24 + round8(max_key_len) + 24` bytes (at 7/8 maximum
//!   load); the rest is the heap, split equally between the shards, so one shard can fill up
//!   while others have room (with many values of a similar size the difference is a few
//!   percent). A value goes to one shard (by its key's hash) and must fit there.
//! * Values are at most `max_value_len` bytes (default 1 MiB, at most 2 MiB - 16 KiB), a limit,
//!   not a reservation ([`Error::ValueTooLarge`]). A heap value costs its size rounded up to its
//!   size class (64 to 2048 bytes, 1.1x to 1.5x apart) plus an 8-byte block header; a large one
//!   whole pages plus up to two tail blocks and a small extent block. An overwrite needs room
//!   for the new value while the old one still exists.
//! * A shard refuses new keys past 7/8 load or when no slot is free within 64 probe groups of
//!   8 slots, or a value when its heap has no room after expired entries are reclaimed and the
//!   heap compacted ([`Error::Full`]), unless configured with [`WhenFull::Evict`] (which evicts
//!   at most 1024 entries for one insert before giving up with `Full`).
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
mod heap;
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
pub use region::inspect::{
    CountField, CounterField, DescField, PartKind, PoolField, RegionPart, RepairField, SlotField,
    ValuePart,
};
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
