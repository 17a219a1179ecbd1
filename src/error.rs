//! The crate's error type.
//!
//! Every failure is a specific variant: callers can match on what went wrong, and the message
//! says what to do about it. OS errors keep their `io::Error` together with the operation that
//! failed.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `shmstate`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key is longer than the region's `max_key_len`.
    #[error("key is {len} bytes, longer than this store's max_key_len of {max}")]
    KeyTooLong {
        /// Length of the key that was passed.
        len: usize,
        /// The store's limit.
        max: usize,
    },

    /// The value is larger than the region's `max_value_len`.
    #[error("value is {len} bytes, larger than this store's max_value_len of {max}")]
    ValueTooLarge {
        /// Length of the value that was passed.
        len: usize,
        /// The store's limit.
        max: usize,
    },

    /// No room: the key's shard reached its load limit or has no free slot within the probe
    /// window for a new key, or its heap has no room for the value even after expired entries
    /// were reclaimed and the heap compacted. Nothing was written.
    #[error("store is full: no free slot for this key or no heap room for its value (configure a larger capacity or memory, or WhenFull::Evict for cache use)")]
    Full,

    /// `incr` found a value that is not a decimal 64-bit integer.
    #[error("value is not a decimal 64-bit integer")]
    NotAnInteger,

    /// `incr` would overflow a 64-bit signed integer.
    #[error("increment overflows a 64-bit signed integer")]
    Overflow,

    /// A TTL of zero, or one so large that the expiry time does not fit in 64-bit milliseconds.
    #[error("invalid TTL: {reason}")]
    InvalidTtl {
        /// Why the TTL was refused.
        reason: &'static str,
    },

    /// A counter name that is empty, too long, or not valid.
    #[error("invalid counter name: {reason}")]
    InvalidCounterName {
        /// Why the name was refused.
        reason: &'static str,
    },

    /// All counter slots of the region are taken.
    #[error("all {max} counter slots are in use (raise Config::max_counters)")]
    TooManyCounters {
        /// Number of counter slots in the region.
        max: usize,
    },

    /// A `Config` value out of range.
    #[error("invalid configuration: {field} {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A shared-memory object name that POSIX `shm_open` would not accept the way we need it.
    #[error("invalid shm name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The region was made by another program, another format version, or a build whose layout
    /// differs (other libc, other architecture).
    #[error("incompatible region: {reason}")]
    Incompatible {
        /// What did not match.
        reason: Incompatibility,
    },

    /// The region's contents break an invariant (another process scribbled on it, or it was
    /// truncated). The operation was not performed.
    #[error("region corrupted: {what}")]
    Corrupted {
        /// Which invariant was broken.
        what: &'static str,
    },

    /// The object or file exists but is not safe to map: wrong owner, writable by group/others,
    /// not a regular file, or a symbolic link.
    #[error("refusing to open {path:?}: {reason}")]
    Insecure {
        /// The shm name or file path.
        path: PathBuf,
        /// What is insecure about it.
        reason: &'static str,
    },

    /// `create` found an object or file of that name already.
    #[error("{path:?} already exists")]
    AlreadyExists {
        /// The shm object's path or the file.
        path: PathBuf,
    },

    /// `open` found no object or file of that name.
    #[error("{path:?} does not exist")]
    NotFound {
        /// The shm object's path or the file.
        path: PathBuf,
    },

    /// The region's creator did not finish initializing it (it died, or is still running after
    /// the wait bound).
    #[error("region {path:?} is not initialized: {reason}")]
    NotInitialized {
        /// The shm name or file path.
        path: PathBuf,
        /// Why we gave up.
        reason: &'static str,
    },

    /// A shard lock could not be taken within the lock timeout (a live process holds it: a
    /// dead holder is recovered, never waited for).
    #[error("timed out after {waited_ms} ms waiting for a shard lock held by a live process")]
    LockTimeout {
        /// How long we waited.
        waited_ms: u64,
    },

    /// An operating-system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The operation that failed (e.g. `shm_open`, `mmap`).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A key used by a coordination primitive (lock, rate limiter, cache, namespace, worker
    /// registry) holds a value that primitive did not write: another user of the store wrote
    /// to the primitive's reserved key space, or the record is from an incompatible version.
    #[error("key used by a coordination primitive holds a foreign value: {what}")]
    BadRecord {
        /// Which record was malformed.
        what: &'static str,
    },

    /// An argument to a coordination primitive is out of range (zero limit, zero period, a
    /// cost larger than the burst, a name that is empty or contains a reserved character).
    #[error("invalid argument {what}: {reason}")]
    InvalidArgument {
        /// The offending argument.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A compare-and-swap loop lost the race this many times in a row (other processes kept
    /// changing the same record). Nothing was changed; the caller may retry.
    #[error("gave up after {attempts} compare-and-swap attempts lost to concurrent writers")]
    Contended {
        /// How many attempts were made.
        attempts: u32,
    },

    /// Every slot of a worker registry is held by a live worker.
    #[error("all {max} slots of the worker registry are held by live workers")]
    RegistryFull {
        /// The registry's number of slots.
        max: u32,
    },

    /// A handle tied to one process (a worker registration, a gauge) was used from another
    /// process, typically a child forked after it was created. Register in the child instead.
    #[error("handle belongs to process {owner}, not to this process")]
    NotOwner {
        /// The process that created the handle.
        owner: u32,
    },

    /// A networked state backend (the Redis implementation of
    /// [`StateBackend`](crate::StateBackend)) failed: it could not be reached, the connection
    /// broke or timed out, or the server answered with an error. When the connection broke
    /// after a write was sent, whether the write was applied is unknown.
    #[error("state backend: {op} failed ({kind}): {source}")]
    Backend {
        /// What went wrong, for matching (e.g. retry on [`BackendErrorKind::Timeout`]).
        kind: BackendErrorKind,
        /// The backend operation that failed (`get`, `compare_and_swap`, `connect`, ...).
        op: &'static str,
        /// The client library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

/// The kind of an [`Error::Backend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The backend's address or options are not valid (a malformed URL).
    #[error("invalid configuration")]
    Config,
    /// No connection could be made (refused, no such socket, authentication failed).
    #[error("cannot connect")]
    Connect,
    /// The server did not answer within the configured I/O timeout. A write may or may not
    /// have been applied.
    #[error("timed out")]
    Timeout,
    /// The connection broke during the operation. A write may or may not have been applied.
    #[error("connection lost")]
    Disconnected,
    /// The server answered with an error (read-only replica, out of memory, permission
    /// denied, a key of another type, a failing script).
    #[error("server error")]
    Server,
    /// The server's reply was not of the expected shape.
    #[error("unexpected reply")]
    Protocol,
}

/// Why a region was judged incompatible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Incompatibility {
    /// The first bytes are not the shmstate magic number.
    #[error("not a shmstate region (bad magic number)")]
    BadMagic,
    /// Made by another on-disk/in-memory format version.
    #[error("format version {found}, this build reads version {expected}")]
    Version {
        /// Version in the region.
        found: u32,
        /// Version this build understands.
        expected: u32,
    },
    /// Same version, but the layout fingerprint (sizes of mutexes, headers, hash algorithm,
    /// endianness, libc) differs: the region was made by an incompatible build.
    #[error("layout fingerprint {found:#x} differs from this build's {expected:#x}")]
    Fingerprint {
        /// Fingerprint in the region.
        found: u64,
        /// This build's fingerprint.
        expected: u64,
    },
    /// `open_or_create` found an existing region whose configuration differs from the one
    /// requested (capacity, shards, key/value limits, counters or full policy).
    #[error("existing region has a different configuration ({field} differs)")]
    ConfigMismatch {
        /// The first field that differs.
        field: &'static str,
    },
    /// The mapped size is not what the header says, or too small for a header at all.
    #[error("region is {actual} bytes but its header says {expected}")]
    Size {
        /// Size of the object or file.
        actual: u64,
        /// Size the header (or a header at all) requires.
        expected: u64,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> Self {
        Error::Io {
            op,
            source: source.into(),
        }
    }

    pub(crate) fn corrupted(what: &'static str) -> Self {
        Error::Corrupted { what }
    }
}
