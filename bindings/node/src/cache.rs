//! The stampede guard of `cache.getOrCompute`, split into steps so that the computation can
//! be an async JS function and the waiting can happen on timers.
//!
//! The core's [`shmstate::Cache::get_or_compute`] takes a synchronous closure, so it cannot run
//! a JS `async () => value`. This module drives the same protocol with public store
//! operations, over the same records, so a Rust process using `shmstate::Cache` with the same
//! name shares the cache (the cross-language test checks it). The records, as the core
//! documents them (`src/primitives/cache.rs`):
//!
//! * entry: key `0xFF 'C' <name> ':' <key>`, value `fresh_until_ms (u64 LE) ++ payload`, store
//!   TTL `ttl + stale_for`;
//! * per-key lease: the leased lock whose store key is [`Cache::lock_key_for`] (the lock name
//!   is that key without its 2-byte prefix);
//! * counters `cache.<name>.hits|misses|stale|timeouts`.
//!
//! One step ([`NativeCache::step`]) is one pass of the core's loop: read the entry (fresh: a
//! hit); try the lease (won: re-read, then the caller computes and calls `fill`); lost: serve
//! the stale value if there is one, else tell the caller to wait and step again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use napi::bindgen_prelude::Buffer;
use napi::{Env, Result};
use napi_derive::napi;
use shmstate::{Cache, Counter, LockGuard, Store};

use crate::error::OrThrow;

#[napi]
pub struct NativeCache {
    store: Store,
    name: String,
    stale_for: Duration,
    cache: Cache,
    hits: Counter,
    misses: Counter,
    stale: Counter,
    timeouts: Counter,
    /// Leases won by `step` and not yet filled or abandoned, by ticket.
    leases: RefCell<HashMap<u32, LockGuard>>,
    next_ticket: RefCell<u32>,
}

/// What `step` found. `kind`: `hit` (fresh `value`), `stale` (stale `value`, another process
/// is refreshing it), `compute` (this process holds the lease `ticket`: compute, then `fill`
/// or `abandon`), `wait` (another process is computing and there is no stale value).
#[napi(object)]
pub struct CacheStep {
    pub kind: String,
    pub value: Option<Buffer>,
    pub ticket: Option<u32>,
}

#[napi(object)]
pub struct CacheCounts {
    pub hits: f64,
    pub misses: f64,
    pub stale: f64,
    pub timeouts: f64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

enum Entry {
    Missing,
    Fresh(Vec<u8>),
    Stale(Vec<u8>),
}

impl NativeCache {
    pub(crate) fn new(store: &Store, name: &str, stale_for: Duration) -> shmstate::Result<Self> {
        let cache = Cache::new(store, name)?.stale_for(stale_for);
        let c = |what: &str| store.counter(&format!("cache.{name}.{what}"));
        Ok(NativeCache {
            store: store.clone(),
            name: name.to_owned(),
            stale_for,
            cache,
            hits: c("hits")?,
            misses: c("misses")?,
            stale: c("stale")?,
            timeouts: c("timeouts")?,
            leases: RefCell::new(HashMap::new()),
            next_ticket: RefCell::new(1),
        })
    }

    fn entry_key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(3 + self.name.len() + key.len());
        k.extend_from_slice(&[0xFF, b'C']);
        k.extend_from_slice(self.name.as_bytes());
        k.push(b':');
        k.extend_from_slice(key);
        k
    }

    fn lock_name(&self, key: &[u8]) -> String {
        let k = self.cache.lock_key_for(key);
        String::from_utf8_lossy(&k[2..]).into_owned()
    }

    fn read(&self, key: &[u8]) -> shmstate::Result<Entry> {
        let Some(mut v) = self.store.get(&self.entry_key(key))? else {
            return Ok(Entry::Missing);
        };
        if v.len() < 8 {
            return Err(shmstate::Error::BadRecord {
                what: "cache entry",
            });
        }
        let fresh_until = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
        let payload = v.split_off(8);
        Ok(if fresh_until > now_ms() {
            Entry::Fresh(payload)
        } else {
            Entry::Stale(payload)
        })
    }

    fn step_inner(&self, key: &[u8], lease: Duration) -> shmstate::Result<CacheStep> {
        let step = |kind: &str, value: Option<Vec<u8>>, ticket| CacheStep {
            kind: kind.into(),
            value: value.map(Buffer::from),
            ticket,
        };
        let stale = match self.read(key)? {
            Entry::Fresh(v) => {
                self.hits.add(1);
                return Ok(step("hit", Some(v), None));
            }
            Entry::Stale(v) => Some(v),
            Entry::Missing => None,
        };
        if let Some(guard) = self.store.try_lock(&self.lock_name(key), lease)? {
            // Someone may have filled it between our read and our lock.
            if let Entry::Fresh(v) = self.read(key)? {
                drop(guard);
                self.hits.add(1);
                return Ok(step("hit", Some(v), None));
            }
            self.misses.add(1);
            let mut t = self.next_ticket.borrow_mut();
            let ticket = *t;
            *t = t.wrapping_add(1).max(1);
            self.leases.borrow_mut().insert(ticket, guard);
            return Ok(step("compute", None, Some(ticket)));
        }
        Ok(match stale {
            Some(v) => {
                self.stale.add(1);
                step("stale", Some(v), None)
            }
            None => step("wait", None, None),
        })
    }
}

#[napi]
impl NativeCache {
    #[napi]
    pub fn step(&self, env: &Env, key: &[u8], lease_ms: f64) -> Result<CacheStep> {
        self.step_inner(key, Duration::from_millis(lease_ms.ceil() as u64))
            .or_throw(env)
    }

    /// Stores the computed `value` for `ttl_ms` (plus the stale grace) and releases the lease.
    #[napi]
    pub fn fill(
        &self,
        env: &Env,
        ticket: u32,
        key: &[u8],
        ttl_ms: f64,
        value: &[u8],
    ) -> Result<()> {
        let guard = self.leases.borrow_mut().remove(&ticket);
        let ttl_ms = ttl_ms.ceil() as u64;
        let mut entry = Vec::with_capacity(8 + value.len());
        entry.extend_from_slice(&now_ms().saturating_add(ttl_ms).to_le_bytes());
        entry.extend_from_slice(value);
        let store_ttl = Duration::from_millis(ttl_ms).saturating_add(self.stale_for);
        let r = self
            .store
            .set(&self.entry_key(key), &entry, Some(store_ttl));
        drop(guard); // releases the lease whether or not the set worked
        r.or_throw(env)
    }

    /// Releases the lease without storing anything (the computation failed).
    #[napi]
    pub fn abandon(&self, ticket: u32) {
        self.leases.borrow_mut().remove(&ticket);
    }

    #[napi]
    pub fn timed_out(&self) {
        self.timeouts.add(1);
    }

    /// The fresh value of `key`, without computing.
    #[napi]
    pub fn peek(&self, env: &Env, key: &[u8]) -> Result<Option<Buffer>> {
        Ok(self.cache.get(key).or_throw(env)?.map(Buffer::from))
    }

    #[napi]
    pub fn invalidate(&self, env: &Env, key: &[u8]) -> Result<bool> {
        self.cache.invalidate(key).or_throw(env)
    }

    #[napi]
    pub fn counts(&self) -> CacheCounts {
        let s = self.cache.stats();
        CacheCounts {
            hits: s.hits as f64,
            misses: s.misses as f64,
            stale: s.stale as f64,
            timeouts: s.timeouts as f64,
        }
    }
}
