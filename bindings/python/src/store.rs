//! `shmstate.Store`, `Counter`, `VerifyReport` and the key iterator.
//!
//! Key-value operations take nanoseconds and keep the GIL (releasing and re-taking it would cost
//! more than the operation). Calls that can wait release it: opening a region (which may wait
//! for its creator), `verify`, `clear`, `flush_expired`, `delete_prefix` (a pass over the table),
//! and the primitives' waits (`lock`, `Cache.get_or_compute`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use shmstate::{Origin, Store, Ttl};

use crate::convert::{bytes_arg, config_from, int_arg, secs, ttl_arg};
use crate::errors::OrRaise;
use crate::primitives::{self, LockHolder, PyCache, PyLock, PyNamespace, PyRateLimiter, PyWorkers};

thread_local! {
    /// Reused read buffer: `get` copies the value here (no allocation once grown), then into a
    /// new `bytes`.
    static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
}

/// Reads `key` into the thread's buffer and hands the bytes to `f`; `None` if absent.
#[inline]
fn read_with<R>(store: &Store, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> PyResult<Option<R>> {
    BUF.with_borrow_mut(|buf| {
        let hit = store.get_into(key, buf).or_raise()?;
        let out = hit.then(|| f(buf));
        if buf.capacity() > 1 << 20 {
            *buf = Vec::with_capacity(4096); // do not keep a huge buffer per thread
        }
        Ok(out)
    })
}

/// A shared-memory key-value store. See the package documentation.
#[pyclass(frozen, module = "shmstate", name = "Store")]
pub struct PyStore {
    pub store: Store,
}

impl PyStore {
    fn open_with(
        py: Python<'_>,
        f: impl FnOnce() -> shmstate::Result<Store> + Send,
    ) -> PyResult<Self> {
        let store = py.detach(f).or_raise()?;
        Ok(PyStore { store })
    }
}

fn negate_if(negate: bool, delta: i64) -> PyResult<i64> {
    if negate {
        delta
            .checked_neg()
            .ok_or_else(|| PyValueError::new_err("delta must be greater than -2**63"))
    } else {
        Ok(delta)
    }
}

#[pymethods]
impl PyStore {
    // ---- opening ----

    /// A store in anonymous shared memory, for a process that forks its workers afterwards.
    #[staticmethod]
    #[pyo3(signature = (**options))]
    fn anonymous(py: Python<'_>, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let config = config_from(options)?;
        Self::open_with(py, move || Store::anonymous(&config))
    }

    /// Creates the named store (a POSIX shm object); `AlreadyExists` if the name is taken.
    #[staticmethod]
    #[pyo3(signature = (name, **options))]
    fn create(py: Python<'_>, name: &str, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let config = config_from(options)?;
        Self::open_with(py, move || Store::create(name, &config))
    }

    /// Opens the named store; `NotFound` if it does not exist.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<Self> {
        Self::open_with(py, move || Store::open(name))
    }

    /// Opens the named store, creating it if absent (safe when many processes race).
    #[staticmethod]
    #[pyo3(signature = (name, **options))]
    fn open_or_create(
        py: Python<'_>,
        name: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config = config_from(options)?;
        Self::open_with(py, move || Store::open_or_create(name, &config))
    }

    /// Creates a file-backed store; `AlreadyExists` if the file exists.
    #[staticmethod]
    #[pyo3(signature = (path, **options))]
    fn create_file(
        py: Python<'_>,
        path: PathBuf,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config = config_from(options)?;
        Self::open_with(py, move || Store::create_file(&path, &config))
    }

    /// Opens a file-backed store.
    #[staticmethod]
    fn open_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        Self::open_with(py, move || Store::open_file(&path))
    }

    /// Opens a file-backed store, creating it if absent.
    #[staticmethod]
    #[pyo3(signature = (path, **options))]
    fn open_or_create_file(
        py: Python<'_>,
        path: PathBuf,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config = config_from(options)?;
        Self::open_with(py, move || Store::open_or_create_file(&path, &config))
    }

    /// Removes the named store (processes that have it open keep using it).
    #[staticmethod]
    fn unlink(py: Python<'_>, name: &str) -> PyResult<()> {
        py.detach(|| Store::unlink(name)).or_raise()
    }

    // ---- reads ----

    /// The value of `key` as bytes, or `default` if absent or expired. Takes no lock.
    #[pyo3(signature = (key, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = bytes_arg("key", key)?;
        match read_with(&self.store, &k, |v| PyBytes::new(py, v))? {
            Some(b) => Ok(b.into_any()),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    /// The values of the present keys among `keys`, as a dict keyed by the given key objects.
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for key in keys.try_iter()? {
            let key = key?;
            let k = bytes_arg("key", &key)?;
            if let Some(b) = read_with(&self.store, &k, |v| PyBytes::new(py, v))? {
                out.set_item(&key, b)?;
            }
        }
        Ok(out)
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let k = bytes_arg("key", key)?;
        read_with(&self.store, &k, |v| PyBytes::new(py, v))?
            .ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = bytes_arg("key", key)?;
        // Through the thread's read buffer: `Store::contains` copies the value into a new
        // `Vec`, which costs an allocation the size of the value (up to `max_value_len`).
        Ok(read_with(&self.store, &k, |_| ())?.is_some())
    }

    /// Remaining time to live in seconds: `None` if the key is absent, `math.inf` if it never
    /// expires.
    fn ttl(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        let k = bytes_arg("key", key)?;
        Ok(match self.store.ttl(&k).or_raise()? {
            Ttl::NoKey => None,
            Ttl::NoExpiry => Some(f64::INFINITY),
            Ttl::ExpiresIn(d) => Some(secs(d)),
        })
    }

    // ---- writes ----

    /// Stores `value` under `key` (replacing value and TTL). `ttl`: seconds or a timedelta;
    /// `None` means no expiry.
    #[pyo3(signature = (key, value, ttl=None))]
    fn set(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let k = bytes_arg("key", key)?;
        let v = bytes_arg("value", value)?;
        let ttl = ttl_arg(ttl)?;
        self.store.set(&k, &v, ttl).or_raise()
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let k = bytes_arg("key", key)?;
        let v = bytes_arg("value", value)?;
        self.store.set(&k, &v, None).or_raise()
    }

    /// Stores only if `key` is absent; returns whether it stored.
    #[pyo3(signature = (key, value, ttl=None))]
    fn add(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let k = bytes_arg("key", key)?;
        let v = bytes_arg("value", value)?;
        let ttl = ttl_arg(ttl)?;
        self.store.add(&k, &v, ttl).or_raise()
    }

    /// Stores only if `key` is present; returns whether it stored.
    #[pyo3(signature = (key, value, ttl=None))]
    fn replace(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let k = bytes_arg("key", key)?;
        let v = bytes_arg("value", value)?;
        let ttl = ttl_arg(ttl)?;
        self.store.replace(&k, &v, ttl).or_raise()
    }

    /// Removes `key`; returns whether it was present.
    fn delete(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = bytes_arg("key", key)?;
        self.store.delete(&k).or_raise()
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let k = bytes_arg("key", key)?;
        if self.store.delete(&k).or_raise()? {
            Ok(())
        } else {
            Err(PyKeyError::new_err(key.clone().unbind()))
        }
    }

    /// If the value of `key` equals `expected` (`None`: absent), replaces it with `new`
    /// (`None`: delete) and returns True; else changes nothing and returns False.
    #[pyo3(signature = (key, expected, new, ttl=None))]
    fn compare_and_swap(
        &self,
        key: &Bound<'_, PyAny>,
        expected: Option<&Bound<'_, PyAny>>,
        new: Option<&Bound<'_, PyAny>>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let k = bytes_arg("key", key)?;
        let e = match expected.filter(|o| !o.is_none()) {
            Some(o) => Some(bytes_arg("expected", o)?),
            None => None,
        };
        let n = match new.filter(|o| !o.is_none()) {
            Some(o) => Some(bytes_arg("new", o)?),
            None => None,
        };
        let ttl = ttl_arg(ttl)?;
        self.store
            .compare_and_swap(&k, e.as_deref(), n.as_deref(), ttl)
            .or_raise()
    }

    /// Adds `delta` to the integer under `key` and returns the result; a missing key counts as
    /// 0 and is created with `ttl`, an existing key keeps its TTL.
    #[pyo3(signature = (key, delta=None, ttl=None), text_signature = "($self, key, delta=1, ttl=None)")]
    fn incr(
        &self,
        key: &Bound<'_, PyAny>,
        delta: Option<&Bound<'_, PyAny>>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<i64> {
        self.add_delta(key, delta, ttl, false)
    }

    /// `incr(key, -delta, ttl)`.
    #[pyo3(signature = (key, delta=None, ttl=None), text_signature = "($self, key, delta=1, ttl=None)")]
    fn decr(
        &self,
        key: &Bound<'_, PyAny>,
        delta: Option<&Bound<'_, PyAny>>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<i64> {
        self.add_delta(key, delta, ttl, true)
    }

    /// Sets (`ttl` in seconds or a timedelta) or removes (`None`) the TTL of an existing key;
    /// returns whether the key exists.
    fn expire(&self, key: &Bound<'_, PyAny>, ttl: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let k = bytes_arg("key", key)?;
        let ttl = ttl_arg(ttl)?;
        self.store.expire(&k, ttl).or_raise()
    }

    /// Removes the TTL of `key` (`expire(key, None)`).
    fn persist(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = bytes_arg("key", key)?;
        self.store.expire(&k, None).or_raise()
    }

    // ---- whole store ----

    /// Removes every entry (named counters are kept); returns how many.
    fn clear(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.store.clear()).or_raise()
    }

    /// Removes the expired entries now; returns how many.
    fn flush_expired(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.store.flush_expired()).or_raise()
    }

    /// Deletes every live key starting with `prefix`; returns how many.
    fn delete_prefix(&self, py: Python<'_>, prefix: &Bound<'_, PyAny>) -> PyResult<u64> {
        let p = bytes_arg("prefix", prefix)?.into_owned();
        py.detach(|| self.store.delete_prefix(&p)).or_raise()
    }

    /// One page of a scan, like Redis SCAN: returns `(keys, next_cursor)`; `next_cursor` is
    /// `None` when the scan is over.
    #[pyo3(signature = (cursor=None, prefix=None, limit=None), text_signature = "($self, cursor=0, prefix=None, limit=100)")]
    fn scan<'py>(
        &self,
        py: Python<'py>,
        cursor: Option<&Bound<'py, PyAny>>,
        prefix: Option<&Bound<'py, PyAny>>,
        limit: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let cursor: u64 = match cursor {
            Some(c) => int_arg("cursor", c, "a cursor returned by scan (or 0)")?,
            None => 0,
        };
        let limit: usize = match limit {
            Some(l) => int_arg("limit", l, "between 1 and 2**63-1")?,
            None => 100,
        };
        if limit == 0 {
            return Err(PyValueError::new_err("limit must be at least 1"));
        }
        let p = match prefix {
            Some(p) if !p.is_none() => bytes_arg("prefix", p)?.into_owned(),
            _ => Vec::new(),
        };
        let (keys, next) = self.store.scan(cursor, &p, limit).or_raise()?;
        let list = PyList::new(py, keys.iter().map(|k| PyBytes::new(py, k)))?;
        (list, next).into_pyobject(py)
    }

    /// Iterates over the live keys starting with `prefix` (a scan: keys added or removed
    /// meanwhile may or may not appear).
    #[pyo3(signature = (prefix=None))]
    fn keys(&self, prefix: Option<&Bound<'_, PyAny>>) -> PyResult<KeyIter> {
        let p = match prefix {
            Some(p) if !p.is_none() => bytes_arg("prefix", p)?.into_owned(),
            _ => Vec::new(),
        };
        Ok(KeyIter {
            store: self.store.clone(),
            prefix: p,
            state: Mutex::new((Some(0), VecDeque::new())),
        })
    }

    /// Entries stored, including expired ones not yet reclaimed (like Redis DBSIZE).
    fn __len__(&self) -> usize {
        self.store.len() as usize
    }

    /// The configured capacity in entries.
    #[getter]
    fn capacity(&self) -> u64 {
        self.store.capacity()
    }

    /// Size of the mapped region in bytes.
    #[getter]
    fn region_bytes(&self) -> u64 {
        self.store.region_bytes()
    }

    /// The region's generation, bumped by every `clear()` (for tools that watch a region).
    #[getter]
    fn generation(&self) -> u64 {
        self.store.generation()
    }

    /// What the region is: `("anonymous", None)`, `("shm", name)` or `("file", path)`.
    #[getter]
    fn origin<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        match self.store.origin() {
            Origin::Shm(n) => ("shm", n.as_str()).into_pyobject(py),
            Origin::File(p) => ("file", p.as_os_str()).into_pyobject(py),
            _ => ("anonymous", py.None()).into_pyobject(py),
        }
    }

    /// The named counter (created on first use); each of its operations is one atomic
    /// instruction.
    fn counter(&self, name: &str) -> PyResult<PyCounter> {
        Ok(PyCounter {
            counter: self.store.counter(name).or_raise()?,
        })
    }

    /// Every named counter and its value.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, v) in self.store.counters().or_raise()? {
            d.set_item(name, v)?;
        }
        Ok(d)
    }

    /// Statistics summed over shards and processes, as a dict: counts and bytes as ints,
    /// `fragmentation` as a float from 0 to 1.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.store.stats();
        let d = PyDict::new(py);
        for (k, v) in [
            ("entries", s.entries),
            ("capacity", s.capacity),
            ("slots", s.slots),
            ("tombstones", s.tombstones),
            ("hits", s.hits),
            ("misses", s.misses),
            ("sets", s.sets),
            ("deletes", s.deletes),
            ("expirations", s.expirations),
            ("evictions", s.evictions),
            ("full_refusals", s.full_refusals),
            ("lock_recoveries", s.lock_recoveries),
            ("lock_contended", s.lock_contended),
            ("counters", s.counters),
            ("region_bytes", s.region_bytes),
            ("value_bytes", s.value_bytes),
            ("heap_bytes", s.heap_bytes),
            ("heap_free_bytes", s.heap_free_bytes),
            ("heap_partial_free_bytes", s.heap_partial_free_bytes),
            ("largest_value", s.largest_value),
        ] {
            d.set_item(k, v)?;
        }
        d.set_item("fragmentation", s.fragmentation())?;
        Ok(d)
    }

    /// Checks every invariant of the region (locks each shard in turn).
    fn verify(&self, py: Python<'_>) -> PyResult<VerifyReport> {
        let r = py.detach(|| self.store.verify()).or_raise()?;
        Ok(VerifyReport {
            ok: r.is_ok(),
            shards: r.shards,
            entries: r.totals.entries,
            expired: r.totals.expired,
            tombstones: r.totals.tombstones,
            counters: r.totals.counters,
            problems: r.problems.iter().map(|p| p.to_string()).collect(),
            text: r.to_string(),
        })
    }

    // ---- coordination primitives ----

    /// Tries once to take the leased lock `name` for `lease` seconds; None if a live process
    /// holds it.
    fn try_lock(
        &self,
        py: Python<'_>,
        name: &str,
        lease: &Bound<'_, PyAny>,
    ) -> PyResult<Option<PyLock>> {
        primitives::try_lock(py, &self.store, name, lease)
    }

    /// Takes the leased lock `name`, waiting at most `wait` seconds (the GIL is released
    /// meanwhile); raises LockTimeout if it is still held then. A context manager.
    #[pyo3(signature = (name, lease, wait=None), text_signature = "($self, name, lease, wait=10.0)")]
    fn lock(
        &self,
        py: Python<'_>,
        name: &str,
        lease: &Bound<'_, PyAny>,
        wait: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyLock> {
        let default_wait;
        let wait = match wait {
            Some(w) => w,
            None => {
                default_wait = 10.0f64.into_pyobject(py)?.into_any();
                &default_wait
            }
        };
        primitives::lock(py, &self.store, name, lease, wait)
    }

    /// Who holds the lock `name`, or None.
    fn lock_holder(&self, name: &str) -> PyResult<Option<LockHolder>> {
        primitives::lock_holder(&self.store, name)
    }

    /// A named rate limiter: `limit` requests per `window` seconds per client.
    /// `algorithm`: "fixed_window", "sliding_window" or "gcra" (a token bucket with bursts of
    /// `burst`, default `limit`).
    #[pyo3(signature = (name, limit, window, *, algorithm="fixed_window", burst=None))]
    fn rate_limiter(
        &self,
        name: &str,
        limit: &Bound<'_, PyAny>,
        window: &Bound<'_, PyAny>,
        algorithm: &str,
        burst: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyRateLimiter> {
        primitives::rate_limiter(&self.store, name, limit, window, algorithm, burst)
    }

    /// A named read-through cache with a stampede guard.
    #[pyo3(signature = (name, *, lease=None, wait=None, stale_for=None), text_signature = "($self, name, *, lease=10.0, wait=5.0, stale_for=0.0)")]
    fn cache(
        &self,
        py: Python<'_>,
        name: &str,
        lease: Option<&Bound<'_, PyAny>>,
        wait: Option<&Bound<'_, PyAny>>,
        stale_for: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyCache> {
        let num = |v: f64| v.into_pyobject(py).map(|b| b.into_any());
        let (l, w, s) = (num(10.0)?, num(5.0)?, num(0.0)?);
        primitives::cache(
            &self.store,
            name,
            lease.unwrap_or(&l),
            wait.unwrap_or(&w),
            stale_for.unwrap_or(&s),
        )
    }

    /// A namespace with versioned invalidation.
    fn namespace(&self, name: &str) -> PyResult<PyNamespace> {
        primitives::namespace(&self.store, name)
    }

    /// A registry of live workers with per-worker gauges.
    #[pyo3(signature = (name, max_workers=None), text_signature = "($self, name, max_workers=64)")]
    fn workers(
        &self,
        py: Python<'_>,
        name: &str,
        max_workers: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyWorkers> {
        let d = 64u32.into_pyobject(py)?.into_any();
        primitives::workers(&self.store, name, max_workers.unwrap_or(&d))
    }

    /// The statistics and counters in the Prometheus text format (see PROMETHEUS_CONTENT_TYPE).
    fn prometheus(&self) -> PyResult<String> {
        shmstate::prometheus(&self.store).or_raise()
    }

    /// A named store pickles as "open it by name" (for multiprocessing's spawn); an anonymous
    /// one cannot be pickled: share it by fork.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let cls = py.get_type::<PyStore>();
        match slf.get().store.origin() {
            Origin::Shm(n) => (cls.getattr("open")?, (n.as_str(),)).into_pyobject(py),
            Origin::File(p) => (cls.getattr("open_file")?, (p.as_path(),)).into_pyobject(py),
            _ => Err(PyTypeError::new_err(
                "an anonymous store cannot be pickled: children inherit it by fork; \
                 use a named store (Store.open_or_create) with the spawn start method",
            )),
        }
    }

    fn __repr__(&self) -> String {
        let origin = match self.store.origin() {
            Origin::Shm(n) => format!("shm {n:?}"),
            Origin::File(p) => format!("file {p:?}"),
            _ => "anonymous".to_owned(),
        };
        format!(
            "<shmstate.Store {origin}, {} entries, capacity {}>",
            self.store.len(),
            self.store.capacity()
        )
    }
}

impl PyStore {
    fn add_delta(
        &self,
        key: &Bound<'_, PyAny>,
        delta: Option<&Bound<'_, PyAny>>,
        ttl: Option<&Bound<'_, PyAny>>,
        negate: bool,
    ) -> PyResult<i64> {
        let k = bytes_arg("key", key)?;
        let delta = match delta {
            None => 1,
            Some(d) => int_arg("delta", d, "between -2**63 and 2**63-1")?,
        };
        let delta = negate_if(negate, delta)?;
        let ttl = ttl_arg(ttl)?;
        self.store.incr(&k, delta, ttl).or_raise()
    }
}

/// Iterator returned by `Store.keys()`.
#[pyclass(frozen, module = "shmstate")]
pub struct KeyIter {
    store: Store,
    prefix: Vec<u8>,
    state: Mutex<(Option<u64>, VecDeque<Vec<u8>>)>,
}

#[pymethods]
impl KeyIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(k) = st.1.pop_front() {
                return Ok(Some(PyBytes::new(py, &k)));
            }
            let Some(cursor) = st.0 else {
                return Ok(None);
            };
            let (page, next) = self.store.scan(cursor, &self.prefix, 256).or_raise()?;
            st.0 = next;
            st.1.extend(page);
        }
    }
}

/// A named 64-bit counter in the region; every operation is one atomic instruction (wrapping
/// on overflow).
#[pyclass(frozen, module = "shmstate", name = "Counter")]
pub struct PyCounter {
    counter: shmstate::Counter,
}

#[pymethods]
impl PyCounter {
    /// Adds `n` (default 1) and returns the new value.
    #[pyo3(signature = (n=None), text_signature = "($self, n=1)")]
    fn add(&self, n: Option<&Bound<'_, PyAny>>) -> PyResult<i64> {
        let n = match n {
            None => 1,
            Some(n) => int_arg("n", n, "between -2**63 and 2**63-1")?,
        };
        Ok(self.counter.add(n))
    }

    /// The current value.
    #[getter]
    fn value(&self) -> i64 {
        self.counter.get()
    }

    /// The current value (same as `.value`).
    fn get(&self) -> i64 {
        self.counter.get()
    }

    /// Sets the value.
    fn set(&self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        self.counter
            .set(int_arg("value", v, "between -2**63 and 2**63-1")?);
        Ok(())
    }

    /// Sets the value and returns the previous one.
    fn swap(&self, v: &Bound<'_, PyAny>) -> PyResult<i64> {
        Ok(self
            .counter
            .swap(int_arg("value", v, "between -2**63 and 2**63-1")?))
    }

    /// Raises the value to at least `v`; returns the previous value.
    fn fetch_max(&self, v: &Bound<'_, PyAny>) -> PyResult<i64> {
        Ok(self
            .counter
            .fetch_max(int_arg("value", v, "between -2**63 and 2**63-1")?))
    }

    #[getter]
    fn name(&self) -> &str {
        self.counter.name()
    }

    fn __int__(&self) -> i64 {
        self.counter.get()
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmstate.Counter {:?} = {}>",
            self.counter.name(),
            self.counter.get()
        )
    }
}

/// The result of `Store.verify()`: true when the region has no problem.
#[pyclass(frozen, get_all, module = "shmstate")]
pub struct VerifyReport {
    ok: bool,
    shards: u32,
    entries: u64,
    expired: u64,
    tombstones: u64,
    counters: u64,
    problems: Vec<String>,
    text: String,
}

#[pymethods]
impl VerifyReport {
    fn __bool__(&self) -> bool {
        self.ok
    }

    fn __str__(&self) -> String {
        self.text.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmstate.VerifyReport ok={} shards={} entries={} problems={}>",
            if self.ok { "True" } else { "False" },
            self.shards,
            self.entries,
            self.problems.len()
        )
    }
}
