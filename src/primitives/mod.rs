//! Coordination primitives built on the public [`Store`](crate::Store) operations: leased locks,
//! rate limiters, a cache stampede guard, versioned namespaces, and a worker registry with
//! per-worker gauges.
//!
//! Every primitive keeps its state in ordinary store entries (or named counters) whose keys
//! start with the byte `0xFF` followed by a one-letter tag, so they never collide with UTF-8
//! application keys. Every state change is one [`Store::compare_and_swap`](crate::Store::compare_and_swap),
//! [`Store::incr`](crate::Store::incr) or counter operation, so a process killed at any point
//! leaves either the old or the new record, never a half-written one; records name their owner
//! by process identity that is robust to pid reuse (pid plus start time plus boot id), so a dead
//! owner is recognised and its state taken over.
//!
//! Waiting (for a lock, for another process's cache fill) sleeps with exponential backoff and
//! is always bounded by the caller's deadline; no loop spins a core and none is unbounded.

pub(crate) mod cache;
pub(crate) mod lock;
pub(crate) mod namespace;
pub(crate) mod ratelimit;
pub(crate) mod workers;

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Tags of the reserved key space: key = `[0xFF, tag] ++ parts`.
pub(crate) mod tag {
    pub const LOCK: u8 = b'L';
    pub const RATE: u8 = b'R';
    pub const CACHE: u8 = b'C';
    pub const NAMESPACE_GEN: u8 = b'G';
    pub const NAMESPACE: u8 = b'N';
    pub const WORKER: u8 = b'W';
}

/// Builds a reserved key.
pub(crate) fn key(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 2 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.push(0xFF);
    k.push(tag);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// Validates a primitive's name: non-empty, at most `max` bytes, none of the `reserved` bytes.
pub(crate) fn check_name(
    what: &'static str,
    name: &str,
    max: usize,
    reserved: &[u8],
) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument {
            what,
            reason: "empty",
        });
    }
    if name.len() > max {
        return Err(Error::InvalidArgument {
            what,
            reason: "too long",
        });
    }
    if name.bytes().any(|b| b == 0 || reserved.contains(&b)) {
        return Err(Error::InvalidArgument {
            what,
            reason: "contains a reserved character",
        });
    }
    Ok(())
}

/// Milliseconds in `d`, rounded up, refusing zero and overflow.
pub(crate) fn ms_ceil(what: &'static str, d: Duration) -> Result<u64> {
    let ms = d.as_nanos().div_ceil(1_000_000);
    if ms == 0 {
        return Err(Error::InvalidArgument {
            what,
            reason: "zero",
        });
    }
    // Leave room for adding wall-clock milliseconds (about 2^41 today).
    u64::try_from(ms)
        .ok()
        .filter(|&ms| ms < 1 << 60)
        .ok_or(Error::InvalidArgument {
            what,
            reason: "too large",
        })
}

/// Sleeping backoff for bounded waits: 1 ms doubling to 32 ms, never past the deadline.
pub(crate) struct Backoff {
    deadline: Instant,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(wait: Duration) -> Self {
        Backoff {
            deadline: Instant::now()
                .checked_add(wait)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365)),
            next: Duration::from_millis(1),
        }
    }

    /// Sleeps for the next step (at most `cap`); returns `false`, without sleeping, once the
    /// deadline has passed.
    pub(crate) fn sleep(&mut self, cap: Duration) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        let step = self
            .next
            .min(cap.max(Duration::from_millis(1)))
            .min(self.deadline - now);
        std::thread::sleep(step);
        self.next = (self.next * 2).min(Duration::from_millis(32));
        true
    }
}

/// Little-endian u64 at `off` of a record known to be long enough.
pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Little-endian u32 at `off` of a record known to be long enough.
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
