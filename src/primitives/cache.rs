//! A read-through cache with a stampede guard.
//!
//! A value is stored as `fresh_until_ms (8 bytes LE) ++ payload` under `0xFF 'C' name ':' key`
//! with a store TTL of `ttl + stale_for`: fresh until `fresh_until`, then servable as *stale*
//! for `stale_for` while one process refreshes it.
//!
//! On a miss (or a stale hit), [`Cache::get_or_compute`] tries the per-key leased lock
//! `cache:<name>:<key>` (see [`Store::try_lock`]). The winner computes and stores the value;
//! the others are served the stale value if there is one, else they wait (sleeping with
//! backoff, at most [`Cache::wait`]) for the value to appear. If the computing process dies,
//! its lock is taken over at once (dead owner) or after the lease (stalled owner) by the next
//! waiter, which then computes.

use std::fmt;
use std::time::Duration;

use super::lock::lock_key;
use super::u64_at;
use super::{check_name, key, ms_ceil, tag, Backoff};
use crate::clock::Clock;
use crate::counter::Counter;
use crate::error::{Error, Result};
use crate::store::Store;

/// Why [`Cache::get_or_compute`] returned no value.
#[derive(Debug)]
#[non_exhaustive]
pub enum CacheError<E> {
    /// A store operation failed (key too long, value too large, store full, ...).
    Store(Error),
    /// `compute` failed; its error is passed through and nothing was cached.
    Compute(E),
    /// Another process is computing the value, there is no stale value to serve, and it did
    /// not finish within the cache's wait bound.
    Timeout {
        /// How long we waited.
        waited: Duration,
    },
}

impl<E: fmt::Display> fmt::Display for CacheError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Store(e) => write!(f, "cache store operation failed: {e}"),
            CacheError::Compute(e) => write!(f, "computing the cached value failed: {e}"),
            CacheError::Timeout { waited } => write!(
                f,
                "gave up after {waited:?} waiting for another process to compute the value"
            ),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CacheError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CacheError::Store(e) => Some(e),
            CacheError::Compute(e) => Some(e),
            CacheError::Timeout { .. } => None,
        }
    }
}

impl<E> From<Error> for CacheError<E> {
    fn from(e: Error) -> Self {
        CacheError::Store(e)
    }
}

/// Hit, miss and stale counts of one cache name, summed over every process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Fresh values served (including values another process computed while we waited).
    pub hits: u64,
    /// Misses that ran `compute` in this process.
    pub misses: u64,
    /// Stale values served while another process refreshed them.
    pub stale: u64,
    /// Waits that gave up ([`CacheError::Timeout`]).
    pub timeouts: u64,
}

/// A named read-through cache over a [`Store`] with a stampede guard. Cheap to clone.
///
/// Replaces the Redis idiom `GET k`; on a miss `SET lock:k <token> NX PX <lease>`, compute,
/// `SET k v EX ttl`, release the lock with a Lua script; losers poll `GET k` in a sleep loop.
///
/// ```
/// # fn main() -> shmstate::Result<()> {
/// use shmstate::{Cache, Config, Store};
/// use std::time::Duration;
/// let store = Store::anonymous(&Config::new())?;
/// let cache = Cache::new(&store, "users")?.stale_for(Duration::from_secs(30));
/// let ttl = Duration::from_secs(60);
/// let v = cache.get_or_compute(b"user:7", ttl, || Ok::<_, std::io::Error>(b"Ada".to_vec()));
/// assert_eq!(v.unwrap(), b"Ada");
/// // A hit does not run `compute`:
/// let v = cache.get_or_compute(b"user:7", ttl, || -> Result<Vec<u8>, std::io::Error> {
///     unreachable!()
/// });
/// assert_eq!(v.unwrap(), b"Ada");
/// let st = cache.stats();
/// assert_eq!((st.hits, st.misses), (1, 1));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Cache {
    store: Store,
    name: String,
    lease: Duration,
    wait: Duration,
    stale_for: Duration,
    clock: Clock,
    hits: Counter,
    misses: Counter,
    stale: Counter,
    timeouts: Counter,
}

impl Cache {
    /// A cache named `name` (at most 32 bytes, no `:`). Registers four named counters
    /// (`cache.<name>.hits`, `.misses`, `.stale`, `.timeouts`), so the store needs
    /// `max_counters` room for them. Defaults: lease 10 s, wait 5 s, no stale serving.
    pub fn new(store: &Store, name: &str) -> Result<Self> {
        check_name("cache name", name, 32, b":")?;
        let c = |what: &str| store.counter(&format!("cache.{name}.{what}"));
        Ok(Cache {
            store: store.clone(),
            name: name.to_owned(),
            lease: Duration::from_secs(10),
            wait: Duration::from_secs(5),
            stale_for: Duration::ZERO,
            clock: Clock::System,
            hits: c("hits")?,
            misses: c("misses")?,
            stale: c("stale")?,
            timeouts: c("timeouts")?,
        })
    }

    /// How long the computing process holds the per-key lease: if it stalls longer, another
    /// process takes over. (A *dead* computing process is taken over at once.)
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a process without a stale value waits for another's computation.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// How long after its TTL a value may still be served while one process refreshes it.
    pub fn stale_for(mut self, grace: Duration) -> Self {
        self.stale_for = grace;
        self
    }

    /// This cache with another time source for freshness (tests). Store TTLs keep the
    /// store handle's clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The hit/miss/stale/timeout counts, summed over all processes using this cache name.
    pub fn stats(&self) -> CacheStats {
        let g = |c: &Counter| c.get().max(0) as u64;
        CacheStats {
            hits: g(&self.hits),
            misses: g(&self.misses),
            stale: g(&self.stale),
            timeouts: g(&self.timeouts),
        }
    }

    fn entry_key(&self, k: &[u8]) -> Vec<u8> {
        key(tag::CACHE, &[self.name.as_bytes(), b":", k])
    }

    fn lock_name(&self, k: &[u8]) -> String {
        // A fixed-length name, whatever the key's length: FNV-1a of the key. Two keys whose
        // hashes collide merely share one lease (their fills are serialized), which is safe.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in k {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("cache:{}:{h:016x}", self.name)
    }

    /// Reads the entry into `buf`; `Some(fresh)` if present.
    fn read(&self, ek: &[u8], buf: &mut Vec<u8>) -> Result<Option<bool>> {
        if !self.store.get_into(ek, buf)? {
            return Ok(None);
        }
        if buf.len() < 8 {
            return Err(Error::BadRecord {
                what: "cache entry",
            });
        }
        Ok(Some(u64_at(buf, 0) > self.clock.now_ms()))
    }

    /// The cached value of `key`, if present and fresh. Takes no lock.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        Ok(match self.read(&self.entry_key(key), &mut buf)? {
            Some(true) => Some(buf.split_off(8)),
            _ => None,
        })
    }

    /// Removes `key` from the cache; returns whether it was there.
    pub fn invalidate(&self, key: &[u8]) -> Result<bool> {
        self.store.delete(&self.entry_key(key))
    }

    /// The value of `key`: from the cache if fresh, else computed by exactly one process
    /// (holding a per-key lease) and cached for `ttl`, while the others are served the stale
    /// value (within [`stale_for`](Cache::stale_for)) or wait for the result (at most
    /// [`wait`](Cache::wait)). The stored entry needs `8 + value.len() <= max_value_len` and
    /// `3 + name.len() + key.len() <= max_key_len` (the store's default is 64).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmstate::{Cache, CacheError, Config, Store};
    /// use std::time::Duration;
    /// let store = Store::anonymous(&Config::new())?;
    /// let cache = Cache::new(&store, "pages")?
    ///     .lease(Duration::from_secs(5))       // a stalled renderer is replaced after 5 s
    ///     .wait(Duration::from_secs(2))        // others wait at most 2 s for its result
    ///     .stale_for(Duration::from_secs(30)); // or get the old page for 30 s after expiry
    /// let page = cache.get_or_compute(b"/home", Duration::from_secs(60), || {
    ///     Ok::<_, std::fmt::Error>(b"<html>...</html>".to_vec()) // render: runs once
    /// });
    /// match page {
    ///     Ok(html) => assert!(html.starts_with(b"<html>")),
    ///     Err(CacheError::Timeout { .. }) => { /* 503 */ }
    ///     Err(e) => return Err(e.into()), // a store or render error
    /// }
    /// assert_eq!(cache.get(b"/home")?.as_deref(), Some(&b"<html>...</html>"[..]));
    /// assert!(cache.invalidate(b"/home")?);
    /// # Ok(()) }
    /// ```
    pub fn get_or_compute<E, F>(
        &self,
        key: &[u8],
        ttl: Duration,
        compute: F,
    ) -> Result<Vec<u8>, CacheError<E>>
    where
        F: FnOnce() -> Result<Vec<u8>, E>,
    {
        let ttl_ms = ms_ceil("ttl", ttl)?;
        let ek = self.entry_key(key);
        let mut buf = Vec::new();
        // Fast path: a fresh hit is one lock-free read.
        let found = self.read(&ek, &mut buf)?;
        if found == Some(true) {
            self.hits.add(1);
            return Ok(buf.split_off(8));
        }
        let lock_name = self.lock_name(key);
        let mut have_stale = found == Some(false);
        let mut backoff = Backoff::new(self.wait);
        let mut compute = Some(compute);
        loop {
            if let Some(guard) = self.store.try_lock(&lock_name, self.lease)? {
                // Someone may have filled it between our read and our lock.
                if self.read(&ek, &mut buf)? == Some(true) {
                    drop(guard);
                    self.hits.add(1);
                    return Ok(buf.split_off(8));
                }
                self.misses.add(1);
                let Some(f) = compute.take() else {
                    // Unreachable: we return right after computing.
                    return Err(CacheError::Store(Error::corrupted("compute ran twice")));
                };
                let value = f().map_err(CacheError::Compute)?;
                let fresh_until = self.clock.now_ms().saturating_add(ttl_ms);
                let mut entry = Vec::with_capacity(8 + value.len());
                entry.extend_from_slice(&fresh_until.to_le_bytes());
                entry.extend_from_slice(&value);
                let store_ttl = Duration::from_millis(ttl_ms).saturating_add(self.stale_for);
                self.store.set(&ek, &entry, Some(store_ttl))?;
                drop(guard);
                return Ok(value);
            }
            // Another process is computing.
            if have_stale {
                self.stale.add(1);
                return Ok(buf.split_off(8));
            }
            if !backoff.sleep(Duration::from_millis(32)) {
                self.timeouts.add(1);
                return Err(CacheError::Timeout { waited: self.wait });
            }
            match self.read(&ek, &mut buf)? {
                Some(true) => {
                    self.hits.add(1);
                    return Ok(buf.split_off(8));
                }
                Some(false) => have_stale = true,
                None => {}
            }
        }
    }

    /// The store key of the per-key lock `get_or_compute` takes for `key` (for tools).
    pub fn lock_key_for(&self, key: &[u8]) -> Vec<u8> {
        lock_key(&self.lock_name(key))
    }
}
