//! The native module `shmstate._shmstate`: the shmstate core (shared-memory key-value store,
//! counters and coordination primitives) for Python. The pure-Python package `shmstate`
//! re-exports it, defines the exceptions (`shmstate/_errors.py`) and the Django backend.

use pyo3::prelude::*;

mod convert;
mod errors;
mod primitives;
mod store;

#[pymodule]
fn _shmstate(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::check_classes(m.py())?;
    m.add_class::<store::PyStore>()?;
    m.add_class::<store::PyCounter>()?;
    m.add_class::<store::VerifyReport>()?;
    m.add_class::<store::KeyIter>()?;
    m.add_class::<primitives::PyLock>()?;
    m.add_class::<primitives::LockHolder>()?;
    m.add_class::<primitives::PyRateLimiter>()?;
    m.add_class::<primitives::PyDecision>()?;
    m.add_class::<primitives::PyCache>()?;
    m.add_class::<primitives::PyNamespace>()?;
    m.add_class::<primitives::PyWorkers>()?;
    m.add_class::<primitives::PyWorker>()?;
    m.add_class::<primitives::PyGauge>()?;
    m.add("FORMAT_VERSION", shmstate::FORMAT_VERSION)?;
    m.add("PROMETHEUS_CONTENT_TYPE", shmstate::PROMETHEUS_CONTENT_TYPE)?;
    m.add("OPTIONS", convert::option_names())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
