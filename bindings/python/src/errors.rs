//! The core's `Error` as Python exceptions: one class per variant, all subclasses of
//! `shmstate.Error` (defined in `shmstate/_errors.py`, so they pickle and document like any
//! Python class), most also of the matching built-in (`ValueError`, `TimeoutError`, ...).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;
use pyo3::IntoPyObjectExt;
use shmstate::{Error, Incompatibility};

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let module = ERRORS.get_or_try_init(py, || py.import("shmstate._errors").map(Bound::unbind))?;
    module.bind(py).getattr(name)
}

/// Raises the exception class `name` with `message` and the given attributes.
pub fn raise(py: Python<'_>, name: &str, message: String, attrs: &[(&str, Py<PyAny>)]) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let cls = class(py, name)?;
        let exc = cls.call1((message.clone(),))?;
        for (k, v) in attrs {
            exc.setattr(*k, v)?;
        }
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|e| e)
}

fn obj<'py, T: IntoPyObject<'py>>(py: Python<'py>, v: T) -> Py<PyAny> {
    v.into_py_any(py).unwrap_or_else(|_| py.None())
}

/// The exception for a core error.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let msg = e.to_string();
    let (name, attrs): (&str, Vec<(&str, Py<PyAny>)>) = match &e {
        Error::KeyTooLong { len, max } => (
            "KeyTooLong",
            vec![("len", obj(py, *len)), ("max", obj(py, *max))],
        ),
        Error::ValueTooLarge { len, max } => (
            "ValueTooLarge",
            vec![("len", obj(py, *len)), ("max", obj(py, *max))],
        ),
        Error::Full => ("Full", vec![]),
        Error::NotAnInteger => ("NotAnInteger", vec![]),
        Error::Overflow => ("Overflow", vec![]),
        Error::InvalidTtl { .. } => ("InvalidTtl", vec![]),
        Error::InvalidCounterName { .. } => ("InvalidCounterName", vec![]),
        Error::TooManyCounters { max } => ("TooManyCounters", vec![("max", obj(py, *max))]),
        Error::InvalidConfig { field, .. } => ("InvalidConfig", vec![("field", obj(py, *field))]),
        Error::InvalidName { name, .. } => ("InvalidName", vec![("name", obj(py, name))]),
        Error::Incompatible { reason } => {
            let field = match reason {
                Incompatibility::ConfigMismatch { field } => obj(py, *field),
                _ => py.None(),
            };
            ("Incompatible", vec![("field", field)])
        }
        Error::Corrupted { what } => ("Corrupted", vec![("what", obj(py, *what))]),
        Error::Insecure { path, .. } => ("Insecure", vec![("path", obj(py, path))]),
        Error::AlreadyExists { path } => ("AlreadyExists", vec![("path", obj(py, path))]),
        Error::NotFound { path } => ("NotFound", vec![("path", obj(py, path))]),
        Error::NotInitialized { path, .. } => ("NotInitialized", vec![("path", obj(py, path))]),
        Error::LockTimeout { waited_ms } => (
            "LockTimeout",
            vec![("waited", obj(py, *waited_ms as f64 / 1000.0))],
        ),
        Error::Io { op, source } => {
            // errno and strerror as on any OSError.
            let errno = source.raw_os_error();
            let cls = class(py, "IoError");
            let exc = cls.and_then(|c| match errno {
                Some(n) => c.call1((n, msg.clone())),
                None => c.call1((msg.clone(),)),
            });
            return match exc.and_then(|x| x.setattr("op", *op).map(|_| x)) {
                Ok(x) => PyErr::from_value(x),
                Err(e) => e,
            };
        }
        Error::BadRecord { what } => ("BadRecord", vec![("what", obj(py, *what))]),
        Error::InvalidArgument { what, .. } => {
            ("InvalidArgument", vec![("argument", obj(py, *what))])
        }
        Error::Contended { attempts } => ("Contended", vec![("attempts", obj(py, *attempts))]),
        Error::RegistryFull { max } => ("RegistryFull", vec![("max", obj(py, *max))]),
        Error::NotOwner { owner } => ("NotOwner", vec![("owner", obj(py, *owner))]),
        // `Error` is non-exhaustive (and `Backend` is the Redis backend's, not built here).
        _ => ("Error", vec![]),
    };
    raise(py, name, msg, &attrs)
}

/// `result.or_raise()?` converts a core error to its Python exception.
pub trait OrRaise<T> {
    fn or_raise(self) -> PyResult<T>;
}

impl<T> OrRaise<T> for Result<T, Error> {
    #[inline]
    fn or_raise(self) -> PyResult<T> {
        self.map_err(|e| Python::attach(|py| to_py(py, e)))
    }
}

/// Checks at import that every class this module raises exists in `shmstate._errors`, so a
/// missing one fails loudly at import, not at the first error.
pub fn check_classes(py: Python<'_>) -> PyResult<()> {
    let names = [
        "Error",
        "KeyTooLong",
        "ValueTooLarge",
        "Full",
        "NotAnInteger",
        "Overflow",
        "InvalidTtl",
        "InvalidCounterName",
        "TooManyCounters",
        "InvalidConfig",
        "InvalidName",
        "Incompatible",
        "Corrupted",
        "Insecure",
        "AlreadyExists",
        "NotFound",
        "NotInitialized",
        "LockTimeout",
        "IoError",
        "BadRecord",
        "InvalidArgument",
        "Contended",
        "RegistryFull",
        "NotOwner",
        "CacheTimeout",
    ];
    for n in names {
        class(py, n)?;
    }
    Ok(())
}
