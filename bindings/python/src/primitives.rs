//! The coordination primitives: leased locks, rate limiters, the stampede-guarded cache,
//! namespaces and worker registries. Waits release the GIL.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use shmstate::{Cache, CacheError, Decision, Namespace, RateLimiter, Store, Workers};

use crate::convert::{bytes_arg, duration_arg, int_arg, positive_duration, secs, ttl_arg};
use crate::errors::{raise, to_py, OrRaise};

/// Locks the mutex even if a thread panicked while holding it (the data is a handle, never
/// left half-updated).
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---- leased locks ----

/// An acquired leased lock. Use it as a context manager (released on exit), or call
/// `release()`. Garbage collection of an unreleased lock releases it too.
#[pyclass(frozen, module = "shmstate", name = "Lock")]
pub struct PyLock {
    guard: Mutex<Option<shmstate::LockGuard>>,
    fence: u64,
    token: u64,
    name: String,
}

impl PyLock {
    fn new(g: shmstate::LockGuard, name: &str) -> Self {
        PyLock {
            fence: g.fence(),
            token: g.token(),
            guard: Mutex::new(Some(g)),
            name: name.to_owned(),
        }
    }
}

pub fn try_lock(
    py: Python<'_>,
    store: &Store,
    name: &str,
    lease: &Bound<'_, PyAny>,
) -> PyResult<Option<PyLock>> {
    let lease = positive_duration("lease", lease)?;
    let g = py.detach(|| store.try_lock(name, lease)).or_raise()?;
    Ok(g.map(|g| PyLock::new(g, name)))
}

/// Waits in slices so that Ctrl-C (a pending signal) interrupts a long wait.
const WAIT_SLICE: Duration = Duration::from_millis(100);

pub fn lock(
    py: Python<'_>,
    store: &Store,
    name: &str,
    lease: &Bound<'_, PyAny>,
    wait: &Bound<'_, PyAny>,
) -> PyResult<PyLock> {
    let lease = positive_duration("lease", lease)?;
    let wait = duration_arg("wait", wait)?;
    let start = Instant::now();
    let deadline = start
        .checked_add(wait)
        .ok_or_else(|| PyValueError::new_err("wait is too long"))?;
    loop {
        let slice = deadline
            .saturating_duration_since(Instant::now())
            .min(WAIT_SLICE);
        if let Some(g) = py.detach(|| store.lock(name, lease, slice)).or_raise()? {
            return Ok(PyLock::new(g, name));
        }
        if Instant::now() >= deadline {
            let waited = start.elapsed().as_secs_f64();
            return Err(raise(
                py,
                "LockTimeout",
                format!(
                    "lock {name:?} is still held by a live process after waiting {waited:.3} s"
                ),
                &[("waited", waited.into_pyobject(py)?.into_any().unbind())],
            ));
        }
        py.check_signals()?;
    }
}

#[pymethods]
impl PyLock {
    /// The fencing token: larger than that of every earlier acquisition of this lock.
    #[getter]
    fn fence(&self) -> u64 {
        self.fence
    }

    /// The owner token of this acquisition (random, unique per acquisition).
    #[getter]
    fn token(&self) -> u64 {
        self.token
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Seconds left on the lease by this process's clock (0.0 once expired or released).
    #[getter]
    fn lease_left(&self) -> f64 {
        locked(&self.guard)
            .as_ref()
            .map_or(0.0, |g| secs(g.lease_left()))
    }

    /// Whether this acquisition still owns the lock (False after release, or if another
    /// process took it over after the lease expired).
    fn is_held(&self) -> PyResult<bool> {
        match locked(&self.guard).as_ref() {
            Some(g) => g.is_held().or_raise(),
            None => Ok(false),
        }
    }

    /// Sets the lease to end `lease` seconds from now if we still own the lock; returns
    /// whether it did.
    fn extend(&self, lease: &Bound<'_, PyAny>) -> PyResult<bool> {
        let lease = positive_duration("lease", lease)?;
        match locked(&self.guard).as_mut() {
            Some(g) => g.extend(lease).or_raise(),
            None => Ok(false),
        }
    }

    /// Releases the lock; returns whether this acquisition still owned it (False: it was
    /// already released, or the lease expired and another process took it over).
    fn release(&self) -> PyResult<bool> {
        let g = locked(&self.guard).take();
        match g {
            Some(g) => g.release().or_raise(),
            None => Ok(false),
        }
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let held = locked(&self.guard).is_some();
        format!(
            "<shmstate.Lock {:?} fence={}{}>",
            self.name,
            self.fence,
            if held { "" } else { " released" }
        )
    }
}

/// Who holds a lock (`Store.lock_holder`).
#[pyclass(frozen, get_all, module = "shmstate")]
pub struct LockHolder {
    pid: u32,
    fence: u64,
    lease_left: f64,
    holder_dead: bool,
}

#[pymethods]
impl LockHolder {
    fn __repr__(&self) -> String {
        format!(
            "<shmstate.LockHolder pid={} fence={} lease_left={:.3} holder_dead={}>",
            self.pid,
            self.fence,
            self.lease_left,
            if self.holder_dead { "True" } else { "False" }
        )
    }
}

pub fn lock_holder(store: &Store, name: &str) -> PyResult<Option<LockHolder>> {
    Ok(store.lock_holder(name).or_raise()?.map(|h| LockHolder {
        pid: h.pid,
        fence: h.fence,
        lease_left: secs(h.lease_left),
        holder_dead: h.holder_dead,
    }))
}

// ---- rate limits ----

/// A named rate limiter; `check(client, cost=1)` counts a request and returns a `Decision`.
#[pyclass(frozen, module = "shmstate", name = "RateLimiter")]
pub struct PyRateLimiter {
    rl: RateLimiter,
    algorithm: &'static str,
}

pub fn rate_limiter(
    store: &Store,
    name: &str,
    limit: &Bound<'_, PyAny>,
    window: &Bound<'_, PyAny>,
    algorithm: &str,
    burst: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyRateLimiter> {
    let limit: u64 = int_arg("limit", limit, "between 1 and 2**64-1")?;
    let window = positive_duration("window", window)?;
    let burst: Option<u64> = match burst {
        Some(b) if !b.is_none() => Some(int_arg("burst", b, "between 1 and 2**64-1")?),
        _ => None,
    };
    let (rl, algorithm) = match algorithm {
        "fixed_window" | "sliding_window" if burst.is_some() => {
            return Err(PyValueError::new_err(format!(
                "burst applies to algorithm=\"gcra\" only, not {algorithm:?}"
            )))
        }
        "fixed_window" => (
            RateLimiter::fixed_window(store, name, limit, window),
            "fixed_window",
        ),
        "sliding_window" => (
            RateLimiter::sliding_window(store, name, limit, window),
            "sliding_window",
        ),
        "gcra" => (
            RateLimiter::gcra(store, name, limit, window, burst.unwrap_or(limit)),
            "gcra",
        ),
        other => {
            return Err(PyValueError::new_err(format!(
                "algorithm must be \"fixed_window\", \"sliding_window\" or \"gcra\", not {other:?}"
            )))
        }
    };
    Ok(PyRateLimiter {
        rl: rl.or_raise()?,
        algorithm,
    })
}

/// The answer of one rate-limit check. True when allowed. `retry_after` (when denied) and
/// `reset_after` are seconds: round them up for the `Retry-After` and `RateLimit-Reset`
/// headers.
#[pyclass(frozen, get_all, module = "shmstate", name = "Decision")]
pub struct PyDecision {
    allowed: bool,
    limit: u64,
    remaining: u64,
    retry_after: f64,
    reset_after: f64,
}

impl From<Decision> for PyDecision {
    fn from(d: Decision) -> Self {
        PyDecision {
            allowed: d.allowed,
            limit: d.limit,
            remaining: d.remaining,
            retry_after: secs(d.retry_after),
            reset_after: secs(d.reset_after),
        }
    }
}

#[pymethods]
impl PyDecision {
    fn __bool__(&self) -> bool {
        self.allowed
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmstate.Decision allowed={} limit={} remaining={} retry_after={:.3} reset_after={:.3}>",
            if self.allowed { "True" } else { "False" },
            self.limit,
            self.remaining,
            self.retry_after,
            self.reset_after
        )
    }
}

#[pymethods]
impl PyRateLimiter {
    /// Checks and counts a request of weight `cost` for `client` (str or bytes).
    #[pyo3(signature = (client, cost=None), text_signature = "($self, client, cost=1)")]
    fn check(
        &self,
        client: &Bound<'_, PyAny>,
        cost: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyDecision> {
        let c = bytes_arg("client", client)?;
        let cost: u64 = match cost {
            None => 1,
            Some(n) => int_arg("cost", n, "between 1 and 2**64-1")?,
        };
        Ok(self.rl.check_n(&c, cost).or_raise()?.into())
    }

    #[getter]
    fn algorithm(&self) -> &'static str {
        self.algorithm
    }
}

// ---- cache with a stampede guard ----

/// A named read-through cache: `get_or_compute(key, ttl, fn)` runs `fn` in one process
/// while the others wait for its result (or get the stale value).
#[pyclass(frozen, module = "shmstate", name = "Cache")]
pub struct PyCache {
    cache: Cache,
}

pub fn cache(
    store: &Store,
    name: &str,
    lease: &Bound<'_, PyAny>,
    wait: &Bound<'_, PyAny>,
    stale_for: &Bound<'_, PyAny>,
) -> PyResult<PyCache> {
    let lease = positive_duration("lease", lease)?;
    let wait = duration_arg("wait", wait)?;
    let stale_for = duration_arg("stale_for", stale_for)?;
    let cache = Cache::new(store, name)
        .or_raise()?
        .lease(lease)
        .wait(wait)
        .stale_for(stale_for);
    Ok(PyCache { cache })
}

#[pymethods]
impl PyCache {
    /// The cached value of `key` if fresh; else `fn()` (returning bytes or str) computed by
    /// exactly one process and cached for `ttl` seconds. Raises `CacheTimeout` if another
    /// process's computation did not finish within the cache's `wait`; an exception raised by
    /// `fn` propagates (nothing is cached).
    fn get_or_compute<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        ttl: &Bound<'py, PyAny>,
        r#fn: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let k = bytes_arg("key", key)?.into_owned();
        let ttl = positive_duration("ttl", ttl)?;
        if !r#fn.is_callable() {
            return Err(PyTypeError::new_err("fn must be callable"));
        }
        let f = r#fn.clone().unbind();
        let res = py.detach(|| {
            self.cache.get_or_compute(&k, ttl, || {
                Python::attach(|py| -> PyResult<Vec<u8>> {
                    let v = f.call0(py)?;
                    let v = v.bind(py);
                    Ok(bytes_arg("the value returned by fn", v)?.into_owned())
                })
            })
        });
        match res {
            Ok(v) => Ok(PyBytes::new(py, &v)),
            Err(CacheError::Compute(e)) => Err(e),
            Err(CacheError::Store(e)) => Err(to_py(py, e)),
            Err(CacheError::Timeout { waited }) => Err(raise(
                py,
                "CacheTimeout",
                format!(
                    "gave up after {:.3} s waiting for another process to compute the value",
                    waited.as_secs_f64()
                ),
                &[(
                    "waited",
                    secs(waited).into_pyobject(py)?.into_any().unbind(),
                )],
            )),
            Err(e) => Err(raise(py, "Error", e.to_string(), &[])),
        }
    }

    /// The cached value of `key` if present and fresh, else None. Takes no lock.
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let k = bytes_arg("key", key)?;
        Ok(self.cache.get(&k).or_raise()?.map(|v| PyBytes::new(py, &v)))
    }

    /// Removes `key` from the cache; returns whether it was there.
    fn invalidate(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = bytes_arg("key", key)?;
        self.cache.invalidate(&k).or_raise()
    }

    /// Hits, misses, stale values served and timeouts, summed over all processes.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.cache.stats();
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("stale", s.stale)?;
        d.set_item("timeouts", s.timeouts)?;
        Ok(d)
    }
}

// ---- namespaces ----

/// Versioned invalidation: keys of the current generation; `invalidate()` drops them all at
/// once (one increment).
#[pyclass(frozen, module = "shmstate", name = "Namespace")]
pub struct PyNamespace {
    ns: Namespace,
}

pub fn namespace(store: &Store, name: &str) -> PyResult<PyNamespace> {
    Ok(PyNamespace {
        ns: Namespace::new(store, name).or_raise()?,
    })
}

#[pymethods]
impl PyNamespace {
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let k = bytes_arg("key", key)?;
        Ok(self.ns.get(&k).or_raise()?.map(|v| PyBytes::new(py, &v)))
    }

    #[pyo3(signature = (key, value, ttl=None))]
    fn set(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let k = bytes_arg("key", key)?;
        let v = bytes_arg("value", value)?;
        self.ns.set(&k, &v, ttl_arg(ttl)?).or_raise()
    }

    fn delete(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = bytes_arg("key", key)?;
        self.ns.delete(&k).or_raise()
    }

    /// The store key of `key` in the current generation, for any other Store operation.
    fn key<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let k = bytes_arg("key", key)?;
        Ok(PyBytes::new(py, &self.ns.key(&k).or_raise()?))
    }

    /// The current generation.
    fn generation(&self) -> PyResult<u64> {
        self.ns.generation().or_raise()
    }

    /// Invalidates every key of the namespace; returns the new generation.
    fn invalidate(&self) -> PyResult<u64> {
        self.ns.invalidate().or_raise()
    }

    /// Deletes the current generation's keys starting with `prefix`; returns how many.
    fn delete_prefix(&self, py: Python<'_>, prefix: &Bound<'_, PyAny>) -> PyResult<u64> {
        let p = bytes_arg("prefix", prefix)?.into_owned();
        py.detach(|| self.ns.delete_prefix(&p)).or_raise()
    }

    /// Deletes the leftover keys of earlier generations; returns how many.
    fn purge_old_generations(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.ns.purge_old_generations()).or_raise()
    }
}

// ---- worker registries and gauges ----

/// A registry of live workers with per-worker gauges; a crashed worker's gauges stop
/// counting when it is reaped.
#[pyclass(frozen, module = "shmstate", name = "Workers")]
pub struct PyWorkers {
    workers: Workers,
}

pub fn workers(store: &Store, name: &str, max_workers: &Bound<'_, PyAny>) -> PyResult<PyWorkers> {
    let max: u32 = int_arg("max_workers", max_workers, "between 1 and 4096")?;
    Ok(PyWorkers {
        workers: Workers::new(store, name, max).or_raise()?,
    })
}

fn worker_info<'py>(py: Python<'py>, w: &shmstate::WorkerInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("slot", w.slot)?;
    d.set_item("pid", w.pid)?;
    d.set_item("start_time", w.start_time)?;
    d.set_item("label", &w.label)?;
    Ok(d)
}

#[pymethods]
impl PyWorkers {
    /// Registers this process under `label`; register in each worker after fork.
    #[pyo3(signature = (label=""))]
    fn register(&self, label: &str) -> PyResult<PyWorker> {
        let w = self.workers.register(label).or_raise()?;
        Ok(PyWorker {
            slot: w.slot(),
            worker: Mutex::new(Some(w)),
        })
    }

    /// The live workers (dicts with slot, pid, start_time, label); dead ones are reaped.
    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let ws = self.workers.list().or_raise()?;
        let items = ws
            .iter()
            .map(|w| worker_info(py, w))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// Reaps every dead worker now; returns how many slots were freed.
    fn reap(&self) -> PyResult<usize> {
        self.workers.reap().or_raise()
    }

    /// The sum of gauge `name` over the live workers.
    fn gauge_total(&self, name: &str) -> PyResult<i64> {
        self.workers.gauge_total(name).or_raise()
    }

    /// Gauge `name` of each live worker: a list of (worker dict, value).
    fn gauge_by_worker<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyList>> {
        let rows = self.workers.gauge_by_worker(name).or_raise()?;
        let items = rows
            .iter()
            .map(|(w, v)| (worker_info(py, w)?, *v).into_pyobject(py))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
}

/// This process's registration; `deregister()` (or garbage collection) frees the slot.
#[pyclass(frozen, module = "shmstate", name = "Worker")]
pub struct PyWorker {
    slot: u32,
    worker: Mutex<Option<shmstate::Worker>>,
}

#[pymethods]
impl PyWorker {
    #[getter]
    fn slot(&self) -> u32 {
        self.slot
    }

    /// This worker's gauge `name`.
    fn gauge(&self, name: &str) -> PyResult<PyGauge> {
        match locked(&self.worker).as_ref() {
            Some(w) => Ok(PyGauge {
                gauge: w.gauge(name).or_raise()?,
            }),
            None => Err(PyValueError::new_err("this worker was deregistered")),
        }
    }

    /// Deregisters now (zeroes the gauges, frees the slot); returns whether the slot was
    /// still ours.
    fn deregister(&self) -> PyResult<bool> {
        let w = locked(&self.worker).take();
        match w {
            Some(w) => w.deregister().or_raise(),
            None => Ok(false),
        }
    }
}

/// One worker's contribution to a gauge; usable only in the process that registered.
#[pyclass(frozen, module = "shmstate", name = "Gauge")]
pub struct PyGauge {
    gauge: shmstate::Gauge,
}

#[pymethods]
impl PyGauge {
    /// Adds `delta` (default 1; negative to decrease); returns this worker's new value.
    #[pyo3(signature = (delta=None), text_signature = "($self, delta=1)")]
    fn add(&self, delta: Option<&Bound<'_, PyAny>>) -> PyResult<i64> {
        let d = match delta {
            None => 1,
            Some(d) => int_arg("delta", d, "between -2**63 and 2**63-1")?,
        };
        self.gauge.add(d).or_raise()
    }

    fn set(&self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        self.gauge
            .set(int_arg("value", v, "between -2**63 and 2**63-1")?)
            .or_raise()
    }

    #[getter]
    fn value(&self) -> i64 {
        self.gauge.get()
    }
}
