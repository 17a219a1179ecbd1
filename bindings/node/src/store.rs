//! The napi-rs classes for everything that is not per-request: opening regions, whole-store
//! operations, statistics, locks, rate-limiter construction, workers and the cache protocol.
//! `index.js` validates every argument before calling these (napi-rs's own conversion errors
//! would not carry our error codes), and wraps them in the public classes.

use std::time::Duration;

use napi::bindgen_prelude::{BigInt, Buffer, Object, Unknown};
use napi::{Env, JsValue, Result};
use napi_derive::napi;
use shmstate::{Origin, RateLimiter, Store, Workers};

use crate::config::config;
use crate::error::OrThrow;
use crate::hot;
use crate::raw::{self, Thrown};

fn pending(_: Thrown) -> napi::Error {
    napi::Error::new(napi::Status::PendingException, String::new())
}

fn unknown<'e>(env: &'e Env, v: raw::Value) -> Unknown<'e> {
    // SAFETY: `v` is a live handle created in this call's scope.
    unsafe { Unknown::from_raw_unchecked(env.raw(), v) }
}

fn millis(ms: f64) -> Duration {
    Duration::from_millis(ms.ceil() as u64)
}

/// A handle to one mapped region.
#[napi]
pub struct NativeStore {
    store: Store,
}

/// `stats()`; counts are since the region was created, summed over every process.
#[napi(object)]
pub struct StoreStats {
    pub entries: f64,
    pub capacity: f64,
    pub slots: f64,
    pub tombstones: f64,
    pub hits: f64,
    pub misses: f64,
    pub sets: f64,
    pub deletes: f64,
    pub expirations: f64,
    pub evictions: f64,
    pub full_refusals: f64,
    pub lock_recoveries: f64,
    pub lock_contended: f64,
    pub counters: f64,
    pub region_bytes: f64,
    /// Bytes of the values stored in the heap (values longer than 24 bytes; shorter ones
    /// live in their slot).
    pub value_bytes: f64,
    /// Size of the value heap (every shard's pages).
    pub heap_bytes: f64,
    /// Heap bytes free: whole free pages plus free blocks of partly used pages.
    pub heap_free_bytes: f64,
    /// Of `heap_free_bytes`, those in free blocks of partly used pages.
    pub heap_partial_free_bytes: f64,
    /// The largest value a write can store now without evicting (a conservative estimate).
    pub largest_value: f64,
    /// `heap_partial_free_bytes / heap_free_bytes` (0 when nothing is free).
    pub fragmentation: f64,
}

/// `verify()`.
#[napi(object)]
pub struct VerifyResult {
    pub ok: bool,
    pub shards: u32,
    pub entries: f64,
    pub expired: f64,
    pub tombstones: f64,
    pub counters: f64,
    pub problems: Vec<String>,
    pub summary: String,
}

/// One page of `scan`.
#[napi(object)]
pub struct ScanPage {
    pub keys: Vec<Buffer>,
    /// The cursor to continue from, or `null` when the scan is over.
    pub cursor: Option<f64>,
}

#[napi(object)]
pub struct LockHolderInfo {
    pub pid: u32,
    pub fence: BigInt,
    pub lease_left_ms: f64,
    pub holder_dead: bool,
}

#[napi(object)]
pub struct WorkerEntry {
    pub slot: u32,
    pub pid: u32,
    pub label: String,
}

#[napi(object)]
pub struct GaugeEntry {
    pub slot: u32,
    pub pid: u32,
    pub label: String,
    pub value: f64,
}

#[napi]
impl NativeStore {
    /// Opens or creates a region. `how` is one of `anonymous`, `create`, `open`,
    /// `openOrCreate`, `createFile`, `openFile`, `openOrCreateFile`.
    #[napi(factory)]
    pub fn open(env: &Env, how: String, path: String, options: Option<Object>) -> Result<Self> {
        let cfg = config(options)?;
        let store = match how.as_str() {
            "anonymous" => Store::anonymous(&cfg),
            "create" => Store::create(&path, &cfg),
            "open" => Store::open(&path),
            "openOrCreate" => Store::open_or_create(&path, &cfg),
            "createFile" => Store::create_file(&path, &cfg),
            "openFile" => Store::open_file(&path),
            "openOrCreateFile" => Store::open_or_create_file(&path, &cfg),
            _ => return Err(napi::Error::from_reason(format!("unknown open mode {how}"))),
        }
        .or_throw(env)?;
        Ok(NativeStore { store })
    }

    #[napi]
    pub fn unlink(env: &Env, name: String) -> Result<()> {
        Store::unlink(&name).or_throw(env)
    }

    /// The per-request functions (see `hot.rs`).
    #[napi]
    pub fn functions<'e>(&self, env: &'e Env) -> Result<Unknown<'e>> {
        let v = hot::store_functions(env.raw(), &self.store).map_err(pending)?;
        Ok(unknown(env, v))
    }

    #[napi]
    pub fn counter<'e>(&self, env: &'e Env, name: String) -> Result<Unknown<'e>> {
        let c = self.store.counter(&name).or_throw(env)?;
        let v = hot::counter_functions(env.raw(), c).map_err(pending)?;
        Ok(unknown(env, v))
    }

    /// Every counter as `[name, value]`; values past 2^53 come back as bigints.
    #[napi]
    pub fn counters<'e>(&self, env: &'e Env) -> Result<Vec<(String, Unknown<'e>)>> {
        let list = self.store.counters().or_throw(env)?;
        Ok(list
            .into_iter()
            .map(|(n, v)| {
                let jv = if !raw::is_safe(v) {
                    raw::bigint(env.raw(), v)
                } else {
                    raw::number(env.raw(), v as f64)
                };
                (n, unknown(env, jv))
            })
            .collect())
    }

    #[napi]
    pub fn describe(&self) -> String {
        match self.store.origin() {
            Origin::Anonymous => "anonymous".into(),
            Origin::Shm(n) => format!("shm:{n}"),
            Origin::File(p) => format!("file:{}", p.display()),
            #[allow(unreachable_patterns)]
            _ => "unknown".into(),
        }
    }

    #[napi]
    pub fn len(&self) -> f64 {
        self.store.len() as f64
    }

    #[napi]
    pub fn capacity(&self) -> f64 {
        self.store.capacity() as f64
    }

    #[napi]
    pub fn region_bytes(&self) -> f64 {
        self.store.region_bytes() as f64
    }

    #[napi]
    pub fn generation(&self) -> f64 {
        self.store.generation() as f64
    }

    #[napi]
    pub fn clear(&self, env: &Env) -> Result<f64> {
        self.store.clear().or_throw(env).map(|n| n as f64)
    }

    #[napi]
    pub fn flush_expired(&self, env: &Env) -> Result<f64> {
        self.store.flush_expired().or_throw(env).map(|n| n as f64)
    }

    #[napi]
    pub fn delete_prefix(&self, env: &Env, prefix: &[u8]) -> Result<f64> {
        self.store
            .delete_prefix(prefix)
            .or_throw(env)
            .map(|n| n as f64)
    }

    #[napi]
    pub fn scan(&self, env: &Env, cursor: f64, prefix: &[u8], limit: u32) -> Result<ScanPage> {
        let (keys, next) = self
            .store
            .scan(cursor as u64, prefix, limit as usize)
            .or_throw(env)?;
        Ok(ScanPage {
            keys: keys.into_iter().map(Buffer::from).collect(),
            cursor: next.map(|c| c as f64),
        })
    }

    #[napi]
    pub fn stats(&self) -> StoreStats {
        let s = self.store.stats();
        StoreStats {
            entries: s.entries as f64,
            capacity: s.capacity as f64,
            slots: s.slots as f64,
            tombstones: s.tombstones as f64,
            hits: s.hits as f64,
            misses: s.misses as f64,
            sets: s.sets as f64,
            deletes: s.deletes as f64,
            expirations: s.expirations as f64,
            evictions: s.evictions as f64,
            full_refusals: s.full_refusals as f64,
            lock_recoveries: s.lock_recoveries as f64,
            lock_contended: s.lock_contended as f64,
            counters: s.counters as f64,
            region_bytes: s.region_bytes as f64,
            value_bytes: s.value_bytes as f64,
            heap_bytes: s.heap_bytes as f64,
            heap_free_bytes: s.heap_free_bytes as f64,
            heap_partial_free_bytes: s.heap_partial_free_bytes as f64,
            largest_value: s.largest_value as f64,
            fragmentation: s.fragmentation(),
        }
    }

    #[napi]
    pub fn verify(&self, env: &Env) -> Result<VerifyResult> {
        let r = self.store.verify().or_throw(env)?;
        Ok(VerifyResult {
            ok: r.is_ok(),
            shards: r.shards,
            entries: r.totals.entries as f64,
            expired: r.totals.expired as f64,
            tombstones: r.totals.tombstones as f64,
            counters: r.totals.counters as f64,
            problems: r.problems.iter().map(|p| p.to_string()).collect(),
            summary: r.to_string(),
        })
    }

    /// The Prometheus text exposition of the statistics and counters.
    #[napi]
    pub fn metrics(&self, env: &Env) -> Result<String> {
        shmstate::prometheus(&self.store).or_throw(env)
    }

    #[napi]
    pub fn lock_holder(&self, env: &Env, name: String) -> Result<Option<LockHolderInfo>> {
        let h = self.store.lock_holder(&name).or_throw(env)?;
        Ok(h.map(|h| LockHolderInfo {
            pid: h.pid,
            fence: BigInt::from(h.fence),
            lease_left_ms: h.lease_left.as_millis() as f64,
            holder_dead: h.holder_dead,
        }))
    }

    /// The `check` function of a rate limiter; it writes its decision into `out`.
    #[allow(clippy::too_many_arguments)] // the JS call's arguments, validated in index.js
    #[napi]
    pub fn rate_limiter<'e>(
        &self,
        env: &'e Env,
        algorithm: String,
        name: String,
        limit: f64,
        window_ms: f64,
        burst: f64,
        out: Unknown<'e>,
    ) -> Result<Unknown<'e>> {
        let (s, w) = (&self.store, millis(window_ms));
        let rl = match algorithm.as_str() {
            "fixed-window" => RateLimiter::fixed_window(s, &name, limit as u64, w),
            "sliding-window" => RateLimiter::sliding_window(s, &name, limit as u64, w),
            _ => RateLimiter::gcra(s, &name, limit as u64, w, burst as u64),
        }
        .or_throw(env)?;
        let f = hot::limiter_function(env.raw(), rl, out.raw()).map_err(pending)?;
        Ok(unknown(env, f))
    }

    #[napi]
    pub fn workers(&self, env: &Env, name: String, max_workers: u32) -> Result<NativeWorkers> {
        let w = Workers::new(&self.store, &name, max_workers).or_throw(env)?;
        Ok(NativeWorkers { workers: w })
    }

    #[napi]
    pub fn cache(
        &self,
        env: &Env,
        name: String,
        stale_for_ms: f64,
    ) -> Result<crate::cache::NativeCache> {
        crate::cache::NativeCache::new(&self.store, &name, millis(stale_for_ms)).or_throw(env)
    }
}

/// A worker registry.
#[napi]
pub struct NativeWorkers {
    workers: Workers,
}

#[napi]
impl NativeWorkers {
    #[napi]
    pub fn register(&self, env: &Env, label: String) -> Result<NativeWorker> {
        let w = self.workers.register(&label).or_throw(env)?;
        Ok(NativeWorker { worker: Some(w) })
    }

    #[napi]
    pub fn list(&self, env: &Env) -> Result<Vec<WorkerEntry>> {
        let l = self.workers.list().or_throw(env)?;
        Ok(l.into_iter()
            .map(|w| WorkerEntry {
                slot: w.slot,
                pid: w.pid,
                label: w.label,
            })
            .collect())
    }

    #[napi]
    pub fn gauge_total(&self, env: &Env, gauge: String) -> Result<f64> {
        self.workers
            .gauge_total(&gauge)
            .or_throw(env)
            .map(|v| v as f64)
    }

    #[napi]
    pub fn gauge_by_worker(&self, env: &Env, gauge: String) -> Result<Vec<GaugeEntry>> {
        let l = self.workers.gauge_by_worker(&gauge).or_throw(env)?;
        Ok(l.into_iter()
            .map(|(w, v)| GaugeEntry {
                slot: w.slot,
                pid: w.pid,
                label: w.label,
                value: v as f64,
            })
            .collect())
    }

    #[napi]
    pub fn reap(&self, env: &Env) -> Result<u32> {
        self.workers.reap().or_throw(env).map(|n| n as u32)
    }
}

/// This process's registration. Like a lock, it is not undone by garbage collection: only by
/// `deregister()`, or by the process's death (the others then reap it).
#[napi]
pub struct NativeWorker {
    worker: Option<shmstate::Worker>,
}

impl Drop for NativeWorker {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            std::mem::forget(w);
        }
    }
}

#[napi]
impl NativeWorker {
    #[napi(getter)]
    pub fn slot(&self) -> u32 {
        self.worker.as_ref().map_or(u32::MAX, |w| w.slot())
    }

    #[napi]
    pub fn gauge<'e>(&self, env: &'e Env, name: String) -> Result<Unknown<'e>> {
        let Some(w) = &self.worker else {
            return Err(napi::Error::from_reason("the worker was deregistered"));
        };
        let g = w.gauge(&name).or_throw(env)?;
        let v = hot::gauge_functions(env.raw(), g).map_err(pending)?;
        Ok(unknown(env, v))
    }

    #[napi]
    pub fn deregister(&mut self, env: &Env) -> Result<bool> {
        match self.worker.take() {
            Some(w) => w.deregister().or_throw(env),
            None => Ok(false),
        }
    }
}
