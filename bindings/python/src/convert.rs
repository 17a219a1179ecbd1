//! Python arguments to Rust values: keys and values, TTLs and durations, integers, and the
//! `**options` of the constructors. Every wrong type is a `TypeError`, every out-of-range value a
//! `ValueError`, with the argument's name in the message.

use std::borrow::Cow;
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDelta, PyDict, PyFloat, PyInt, PyString};
use shmstate::{Config, WhenFull};

/// A key or value: `bytes` and `str` (UTF-8) borrow; `bytearray` is copied.
pub fn bytes_arg<'a>(what: &str, obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Cow::Borrowed(s.to_str()?.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Cow::Owned(b.to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be str or bytes, not {}",
        type_name(obj)
    )))
}

/// A name (lock, counter, cache, ...): `str` only.
pub fn str_arg<'a>(what: &str, obj: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
    match obj.cast::<PyString>() {
        Ok(s) => s.to_str(),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{what} must be str, not {}",
            type_name(obj)
        ))),
    }
}

pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

/// A strict integer: `int` (not `bool`, not `float`), in `T`'s range.
pub fn int_arg<T: TryFrom<i128>>(what: &str, obj: &Bound<'_, PyAny>, range: &str) -> PyResult<T> {
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be int, not {}",
            type_name(obj)
        )));
    }
    let out_of_range = || PyValueError::new_err(format!("{what} must be {range}"));
    let wide: i128 = obj.extract().map_err(|_| out_of_range())?;
    T::try_from(wide).map_err(|_| out_of_range())
}

/// A length of time in seconds: `int`, `float` or `datetime.timedelta`, finite and not negative.
/// Zero is passed on (the core refuses a zero TTL or lease with its own error).
pub fn duration_arg(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<Duration> {
    let bad = || {
        PyValueError::new_err(format!(
            "{what} must be a finite, non-negative number of seconds"
        ))
    };
    if let Ok(f) = obj.cast::<PyFloat>() {
        let secs = f.value();
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
        let secs: i128 = obj.extract().map_err(|_| bad())?;
        let secs = u64::try_from(secs).map_err(|_| bad())?;
        return Ok(Duration::from_secs(secs));
    }
    if obj.is_instance_of::<PyDelta>() {
        return obj.extract::<Duration>().map_err(|_| bad());
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be a number of seconds (int or float) or a datetime.timedelta, not {}",
        type_name(obj)
    )))
}

/// A TTL: `None` (no expiry) or a positive duration.
pub fn ttl_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Duration>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => positive_duration("ttl", o).map(Some),
    }
}

/// A duration that must be more than zero (TTLs, leases, windows).
pub fn positive_duration(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<Duration> {
    let d = duration_arg(what, obj)?;
    if d.is_zero() {
        return Err(PyValueError::new_err(format!(
            "{what} must be more than zero seconds"
        )));
    }
    Ok(d)
}

/// Seconds as a float, for TTLs and leases returned to Python.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

type Setter = fn(Config, &Bound<'_, PyAny>) -> PyResult<Config>;

/// The constructor options, one line each.
const OPTIONS: &[(&str, Setter)] = &[
    ("memory", |c, v| {
        Ok(c.memory(int_arg("memory", v, "between 0 and 2**64-1")?))
    }),
    ("capacity", |c, v| {
        Ok(c.capacity(int_arg("capacity", v, "between 0 and 2**64-1")?))
    }),
    ("shards", |c, v| {
        Ok(c.shards(int_arg("shards", v, "between 0 and 2**32-1")?))
    }),
    ("max_key_len", |c, v| {
        Ok(c.max_key_len(int_arg("max_key_len", v, "between 0 and 2**32-1")?))
    }),
    ("max_value_len", |c, v| {
        Ok(c.max_value_len(int_arg("max_value_len", v, "between 0 and 2**32-1")?))
    }),
    ("max_counters", |c, v| {
        Ok(c.max_counters(int_arg("max_counters", v, "between 0 and 2**32-1")?))
    }),
    ("when_full", |c, v| Ok(c.when_full(when_full_arg(v)?))),
    ("lock_timeout", |c, v| {
        Ok(c.lock_timeout(duration_arg("lock_timeout", v)?))
    }),
    ("line_sized_slots", |c, v| {
        Ok(c.line_sized_slots(bool_arg("line_sized_slots", v)?))
    }),
];

/// The names accepted by `config_from`, for the type stubs and error messages.
pub fn option_names() -> Vec<&'static str> {
    OPTIONS.iter().map(|(n, _)| *n).collect()
}

fn when_full_arg(v: &Bound<'_, PyAny>) -> PyResult<WhenFull> {
    match str_arg("when_full", v)? {
        "refuse" => Ok(WhenFull::Refuse),
        "evict" => Ok(WhenFull::Evict),
        other => Err(PyValueError::new_err(format!(
            "when_full must be \"refuse\" or \"evict\", not {other:?}"
        ))),
    }
}

fn bool_arg(what: &str, v: &Bound<'_, PyAny>) -> PyResult<bool> {
    match v.cast::<PyBool>() {
        Ok(b) => Ok(b.is_true()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{what} must be bool, not {}",
            type_name(v)
        ))),
    }
}

/// Builds a `Config` from keyword options; an unknown option is a `TypeError`, as Python does
/// for an unexpected keyword argument. Range checks beyond the types are the core's
/// (`Config::validate`, raised as `shmstate.InvalidConfig`).
pub fn config_from(options: Option<&Bound<'_, PyDict>>) -> PyResult<Config> {
    let mut config = Config::new();
    let Some(options) = options else {
        return Ok(config);
    };
    for (k, v) in options.iter() {
        let name = k.cast::<PyString>()?.to_str()?.to_owned();
        let Some((_, set)) = OPTIONS.iter().find(|(n, _)| *n == name) else {
            return Err(PyTypeError::new_err(format!(
                "unexpected option {name:?} (known: {})",
                option_names().join(", ")
            )));
        };
        config = set(config, &v)?;
    }
    Ok(config)
}
