//! Lock-free named counters.
//!
//! Each counter is an `AtomicI64` alone on its own 128-byte line, followed by its name. A
//! counter is found by probing from `hash(name)` over the counter table; entries are never
//! removed, so a probe may stop at the first EMPTY entry. Registration takes the header's
//! registry mutex, writes the name while the entry is still EMPTY (invisible), and publishes it
//! by storing `LIVE` (one release store): a registrant killed midway leaves an EMPTY entry that
//! the next registrant overwrites, so registration needs no repair. After that, every counter
//! operation is one atomic instruction on the value word.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::hash::{hash, HashKey};
use crate::region::layout::{counter as c, header, Layout};
use crate::region::raw::RawRegion;
use crate::region::Region;
use crate::sync::RobustMutex;
use crate::table::{Problem, ProblemKind};

/// A named 64-bit counter in the region. Cheap to clone; every method is one atomic operation.
/// Arithmetic wraps on overflow (it is a single `lock xadd`).
///
/// ```
/// # fn main() -> shmstate::Result<()> {
/// let store = shmstate::Store::anonymous(&shmstate::Config::new())?;
/// let hits = store.counter("http.requests")?;
/// hits.add(1);
/// assert_eq!(hits.get(), 1);
/// assert_eq!(store.counter("http.requests")?.get(), 1); // same counter
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Counter {
    /// Keeps the mapping alive for as long as the counter is.
    region: Arc<Region>,
    value_off: usize,
    name: Arc<str>,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter")
            .field("name", &self.name)
            .field("value", &self.get())
            .finish()
    }
}

impl Counter {
    #[inline]
    fn cell(&self) -> &AtomicI64 {
        self.region.raw().i64_at(self.value_off)
    }
    /// Adds `delta` (wrapping) and returns the new value.
    #[inline]
    pub fn add(&self, delta: i64) -> i64 {
        self.cell()
            .fetch_add(delta, Ordering::Relaxed)
            .wrapping_add(delta)
    }
    /// Current value.
    #[inline]
    pub fn get(&self) -> i64 {
        self.cell().load(Ordering::Relaxed)
    }
    /// Sets the value.
    #[inline]
    pub fn set(&self, v: i64) {
        self.cell().store(v, Ordering::Relaxed)
    }
    /// Sets the value to `max(current, v)` and returns the previous value.
    #[inline]
    pub fn fetch_max(&self, v: i64) -> i64 {
        self.cell().fetch_max(v, Ordering::Relaxed)
    }
    /// Replaces the value, returning the previous one (e.g. to read-and-reset a rate).
    #[inline]
    pub fn swap(&self, v: i64) -> i64 {
        self.cell().swap(v, Ordering::Relaxed)
    }
    /// The counter's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidCounterName { reason: "empty" });
    }
    if name.len() > c::NAME_CAP {
        return Err(Error::InvalidCounterName {
            reason: "longer than 112 bytes",
        });
    }
    if name.contains('\0') {
        return Err(Error::InvalidCounterName {
            reason: "contains a NUL byte",
        });
    }
    Ok(())
}

/// Reads entry `i`: `Ok(false)` if EMPTY, else `Ok(true)` with its name bytes (length
/// validated) in `buf`.
fn entry_name(r: &RawRegion, l: &Layout, i: usize, buf: &mut Vec<u8>) -> Result<bool> {
    let off = l.counter_off(i);
    match r.u32_at(off + c::STATE).load(Ordering::Acquire) {
        c::EMPTY => Ok(false),
        c::LIVE => {
            let len = r.u32_at(off + c::NAME_LEN).load(Ordering::Relaxed) as usize;
            if len == 0 || len > c::NAME_CAP {
                return Err(Error::corrupted("counter name length out of range"));
            }
            buf.clear();
            r.read_bytes(off + c::NAME, len, buf);
            Ok(true)
        }
        _ => Err(Error::corrupted("counter entry state")),
    }
}

/// Probes for `name`; `Ok(Ok(i))` found at `i`, `Ok(Err(Some(e)))` absent with first EMPTY `e`.
fn find(r: &RawRegion, l: &Layout, h: u64, name: &[u8]) -> Result<Result<usize, Option<usize>>> {
    let n = l.geo.max_counters as usize;
    if n == 0 {
        return Ok(Err(None));
    }
    let start = (h % n as u64) as usize;
    let mut buf = Vec::with_capacity(c::NAME_CAP);
    for k in 0..n {
        let i = (start + k) % n;
        if !entry_name(r, l, i, &mut buf)? {
            return Ok(Err(Some(i)));
        }
        if buf == name {
            return Ok(Ok(i));
        }
    }
    Ok(Err(None))
}

/// Finds or registers the counter `name` in `region` (whose hash secrets are `key`).
pub(crate) fn resolve(
    region: &Arc<Region>,
    key: &HashKey,
    name: &str,
    timeout: Duration,
) -> Result<Counter> {
    validate_name(name)?;
    let r = region.raw();
    let l = region.layout();
    let h = hash(key, name.as_bytes());
    let make = |i: usize| Counter {
        region: Arc::clone(region),
        value_off: l.counter_off(i) + c::VALUE,
        name: Arc::from(name),
    };
    if let Ok(i) = find(r, l, h, name.as_bytes())? {
        return Ok(make(i));
    }
    let m = RobustMutex::at(r, header::REGISTRY_MUTEX);
    let (mut guard, acq) = m
        .lock(timeout)
        .map_err(|e| e.into_error("counter registry lock is not recoverable"))?;
    if acq.owner_died {
        // Nothing to repair: an unpublished entry is still EMPTY.
        guard
            .mark_consistent()
            .map_err(|e| Error::io("pthread_mutex_consistent", e))?;
    }
    match find(r, l, h, name.as_bytes())? {
        Ok(i) => Ok(make(i)),
        Err(None) => Err(Error::TooManyCounters {
            max: l.geo.max_counters as usize,
        }),
        Err(Some(i)) => {
            let off = l.counter_off(i);
            r.i64_at(off + c::VALUE).store(0, Ordering::Relaxed);
            r.u32_at(off + c::NAME_LEN)
                .store(name.len() as u32, Ordering::Relaxed);
            r.u64_at(off + c::HASH).store(h, Ordering::Relaxed);
            r.write_bytes(off + c::NAME, name.as_bytes());
            failpoint!("counter.named");
            r.u32_at(off + c::STATE).store(c::LIVE, Ordering::Release);
            drop(guard);
            Ok(make(i))
        }
    }
}

/// Every registered counter with its value, in table order.
pub(crate) fn list(r: &RawRegion, l: &Layout) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for i in 0..l.geo.max_counters as usize {
        if entry_name(r, l, i, &mut buf)? {
            let v = r
                .i64_at(l.counter_off(i) + c::VALUE)
                .load(Ordering::Relaxed);
            out.push((String::from_utf8_lossy(&buf).into_owned(), v));
        }
    }
    Ok(out)
}

/// Checks the counter table.
pub(crate) fn verify(r: &RawRegion, l: &Layout, key: &HashKey, problems: &mut Vec<Problem>) -> u64 {
    use ProblemKind as K;
    let mut seen = std::collections::HashSet::new();
    let mut buf = Vec::new();
    let mut live = 0;
    for i in 0..l.geo.max_counters as usize {
        let mut push = |kind| {
            problems.push(Problem {
                shard: u32::MAX,
                slot: Some(i as u32),
                kind,
            })
        };
        match entry_name(r, l, i, &mut buf) {
            Ok(false) => {}
            Ok(true) => {
                live += 1;
                let h = hash(key, &buf);
                if r.u64_at(l.counter_off(i) + c::HASH).load(Ordering::Relaxed) != h {
                    push(K::BadCounter("stored hash does not match name"));
                }
                if !seen.insert(buf.clone()) {
                    push(K::DuplicateCounter);
                }
            }
            Err(Error::Corrupted { what }) => push(K::BadCounter(what)),
            Err(_) => push(K::BadCounter("unreadable")),
        }
    }
    live
}
