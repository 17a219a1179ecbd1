//! Thin helpers over raw Node-API (`napi::sys`) for the hot paths.
//!
//! napi-rs's generated glue costs 70–300 ns per call on this machine (argument validation,
//! class type-tag checks); a store operation costs 30–100 ns. So the per-request operations
//! (`get`, `set`, `incr`, counters, rate-limit checks...) are plain `extern "C"` Node-API
//! callbacks (about 25 ns of call overhead) built by [`function`], each carrying its native
//! state as the callback's `data` pointer. Everything else goes through napi-rs.
//!
//! Every callback runs through [`guard`]: a Rust error becomes a pending JS exception and the
//! callback returns NULL (Node then throws it); a panic becomes an `Error` with code
//! `SHMSTATE_INTERNAL` instead of aborting the process.

use std::ffi::{c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::time::Duration;

use napi::sys;

pub(crate) type Env = sys::napi_env;
pub(crate) type Value = sys::napi_value;

/// A JS exception is pending (it was thrown with one of the `throw_*` functions).
pub(crate) struct Thrown;

pub(crate) type R<T> = Result<T, Thrown>;

/// The class of a thrown error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Error,
    TypeError,
    RangeError,
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

/// Throws `class` with `code` and `msg` (unless an exception is already pending).
pub(crate) fn throw(env: Env, class: Class, code: &str, msg: &str) -> Thrown {
    let (code, msg) = (cstring(code), cstring(msg));
    let mut pending = false;
    // SAFETY: `env` is the environment of the running callback; the strings outlive the calls.
    unsafe {
        sys::napi_is_exception_pending(env, &mut pending);
        if !pending {
            match class {
                Class::Error => sys::napi_throw_error(env, code.as_ptr(), msg.as_ptr()),
                Class::TypeError => sys::napi_throw_type_error(env, code.as_ptr(), msg.as_ptr()),
                Class::RangeError => sys::napi_throw_range_error(env, code.as_ptr(), msg.as_ptr()),
            };
        }
    }
    Thrown
}

/// A `TypeError` with Node's code for a wrong argument type.
pub(crate) fn type_error(env: Env, msg: &str) -> Thrown {
    throw(env, Class::TypeError, "ERR_INVALID_ARG_TYPE", msg)
}

/// A `RangeError` with Node's code for an argument out of range.
pub(crate) fn range_error(env: Env, msg: &str) -> Thrown {
    throw(env, Class::RangeError, "ERR_OUT_OF_RANGE", msg)
}

/// Turns a Node-API status into a JS error (only reached when Node-API itself fails).
fn check(env: Env, status: sys::napi_status, what: &str) -> R<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(throw(
            env,
            Class::Error,
            "SHMSTATE_INTERNAL",
            &format!("Node-API call {what} failed with status {status}"),
        ))
    }
}

/// Runs a callback body: `Ok(v)` returns `v`; `Err(Thrown)` or a panic returns NULL with an
/// exception pending.
pub(crate) fn guard(env: Env, body: impl FnOnce() -> R<Value>) -> Value {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => v,
        Ok(Err(Thrown)) => ptr::null_mut(),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            throw(
                env,
                Class::Error,
                "SHMSTATE_INTERNAL",
                &format!("internal error: {msg}"),
            );
            ptr::null_mut()
        }
    }
}

/// The arguments (missing ones are `undefined`) and the `data` pointer of a callback.
///
/// # Safety
/// `env` and `info` must be those the callback was invoked with.
pub(crate) unsafe fn args<const N: usize>(
    env: Env,
    info: sys::napi_callback_info,
) -> ([Value; N], *mut c_void) {
    let mut argv = [ptr::null_mut(); N];
    let mut argc = N;
    let mut data = ptr::null_mut();
    // SAFETY: the caller passes the callback's own env and info; argv has room for N values.
    unsafe {
        sys::napi_get_cb_info(
            env,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            ptr::null_mut(),
            &mut data,
        )
    };
    // Node-API fills missing arguments with `undefined` itself.
    (argv, data)
}

pub(crate) fn type_of(env: Env, v: Value) -> sys::napi_valuetype {
    let mut t = 0;
    // SAFETY: `v` is a live handle of this callback's scope.
    unsafe { sys::napi_typeof(env, v, &mut t) };
    t
}

pub(crate) fn is_nullish(env: Env, v: Value) -> bool {
    matches!(
        type_of(env, v),
        sys::ValueType::napi_undefined | sys::ValueType::napi_null
    )
}

/// The bytes of a Buffer / TypedArray / DataView, or `None` if `v` is not one. The slice
/// borrows JS memory and is valid until the callback returns (no JS runs in between).
pub(crate) fn view_bytes<'a>(env: Env, v: Value) -> Option<&'a [u8]> {
    let mut is_buf = false;
    // SAFETY: `v` is a live handle; `napi_is_buffer` accepts any value.
    unsafe { sys::napi_is_buffer(env, v, &mut is_buf) };
    if !is_buf {
        return None;
    }
    let mut data = ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: `v` is an ArrayBufferView (checked above).
    let st = unsafe { sys::napi_get_buffer_info(env, v, &mut data, &mut len) };
    if st != sys::Status::napi_ok {
        return None;
    }
    Some(if len == 0 || data.is_null() {
        &[]
    } else {
        // SAFETY: Node guarantees `data` points at `len` readable bytes of the view's backing
        // store, which does not move or get freed while this callback runs.
        unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }
    })
}

/// The data pointer and length of a Buffer / TypedArray, for writing into it (`None` if `v` is
/// not one). Valid until the callback returns.
pub(crate) fn view_raw(env: Env, v: Value) -> Option<(*mut u8, usize)> {
    let mut is_buf = false;
    // SAFETY: `v` is a live handle; `napi_is_buffer` accepts any value.
    unsafe { sys::napi_is_buffer(env, v, &mut is_buf) };
    if !is_buf {
        return None;
    }
    let mut data = ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: `v` is an ArrayBufferView (checked above).
    let st = unsafe { sys::napi_get_buffer_info(env, v, &mut data, &mut len) };
    (st == sys::Status::napi_ok && !data.is_null()).then_some((data.cast(), len))
}

/// Copies the UTF-8 encoding of the JS string `v` into `buf` (replacing its contents).
pub(crate) fn utf8_into(env: Env, v: Value, buf: &mut Vec<u8>) -> R<()> {
    buf.clear();
    if buf.capacity() < 256 {
        buf.reserve(256);
    }
    let cap = buf.capacity();
    let mut len = 0usize;
    // SAFETY: `buf` has `cap` writable bytes; Node writes at most cap - 1 bytes plus a NUL.
    let st =
        unsafe { sys::napi_get_value_string_utf8(env, v, buf.as_mut_ptr().cast(), cap, &mut len) };
    check(env, st, "napi_get_value_string_utf8")?;
    // V8 writes whole characters only (at most 4 bytes each), so when at least 4 bytes were
    // left over the string was copied entirely.
    if cap - 1 - len < 4 {
        // SAFETY: a NULL buffer asks only for the length.
        let st = unsafe { sys::napi_get_value_string_utf8(env, v, ptr::null_mut(), 0, &mut len) };
        check(env, st, "napi_get_value_string_utf8")?;
        buf.reserve(len + 1);
        let cap = buf.capacity();
        // SAFETY: as above, with room for the whole string.
        let st = unsafe {
            sys::napi_get_value_string_utf8(env, v, buf.as_mut_ptr().cast(), cap, &mut len)
        };
        check(env, st, "napi_get_value_string_utf8")?;
    }
    // SAFETY: Node initialized the first `len` bytes.
    unsafe { buf.set_len(len) };
    Ok(())
}

/// A key or value argument: a string (its UTF-8 bytes, copied into `scratch`) or a
/// Buffer/TypedArray (its bytes, borrowed). Anything else is a `TypeError`.
pub(crate) fn bytes_arg<'a>(
    env: Env,
    v: Value,
    what: &str,
    scratch: &'a mut Vec<u8>,
) -> R<&'a [u8]> {
    match type_of(env, v) {
        sys::ValueType::napi_string => {
            utf8_into(env, v, scratch)?;
            Ok(&scratch[..])
        }
        sys::ValueType::napi_object => view_bytes(env, v).ok_or_else(|| {
            type_error(
                env,
                &format!("{what} must be a string or a Buffer, got an object"),
            )
        }),
        t => Err(type_error(
            env,
            &format!("{what} must be a string or a Buffer, got {}", type_name(t)),
        )),
    }
}

pub(crate) fn type_name(t: sys::napi_valuetype) -> &'static str {
    match t {
        sys::ValueType::napi_undefined => "undefined",
        sys::ValueType::napi_null => "null",
        sys::ValueType::napi_boolean => "a boolean",
        sys::ValueType::napi_number => "a number",
        sys::ValueType::napi_string => "a string",
        sys::ValueType::napi_symbol => "a symbol",
        sys::ValueType::napi_object => "an object",
        sys::ValueType::napi_function => "a function",
        sys::ValueType::napi_bigint => "a bigint",
        _ => "an unsupported value",
    }
}

/// A JS number argument (no coercion).
pub(crate) fn number_arg(env: Env, v: Value, what: &str) -> R<f64> {
    let t = type_of(env, v);
    if t != sys::ValueType::napi_number {
        return Err(type_error(
            env,
            &format!("{what} must be a number, got {}", type_name(t)),
        ));
    }
    let mut x = 0f64;
    // SAFETY: `v` is a number (checked above).
    unsafe { sys::napi_get_value_double(env, v, &mut x) };
    Ok(x)
}

/// Largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
pub(crate) const MAX_SAFE: i64 = (1 << 53) - 1;

/// Whether a JS number holds `v` exactly (`Number.isSafeInteger`).
pub(crate) fn is_safe(v: i64) -> bool {
    v.unsigned_abs() <= MAX_SAFE as u64
}

/// A safe-integer number argument (`Number.isSafeInteger`), or `default` if undefined.
pub(crate) fn safe_int_arg(env: Env, v: Value, what: &str, default: Option<i64>) -> R<i64> {
    if let Some(d) = default {
        if type_of(env, v) == sys::ValueType::napi_undefined {
            return Ok(d);
        }
    }
    let x = number_arg(env, v, what)?;
    if !x.is_finite() || x.fract() != 0.0 || x.abs() > MAX_SAFE as f64 {
        return Err(range_error(
            env,
            &format!("{what} must be a safe integer (|n| <= 2^53 - 1), got {x}"),
        ));
    }
    Ok(x as i64)
}

/// A 64-bit integer given as a bigint.
pub(crate) fn bigint_arg(env: Env, v: Value, what: &str) -> R<i64> {
    let t = type_of(env, v);
    if t != sys::ValueType::napi_bigint {
        return Err(type_error(
            env,
            &format!("{what} must be a bigint, got {}", type_name(t)),
        ));
    }
    let (mut x, mut lossless) = (0i64, false);
    // SAFETY: `v` is a bigint (checked above).
    unsafe { sys::napi_get_value_bigint_int64(env, v, &mut x, &mut lossless) };
    if !lossless {
        return Err(range_error(
            env,
            &format!("{what} must fit in a signed 64-bit integer"),
        ));
    }
    Ok(x)
}

/// Largest TTL or lease accepted, in milliseconds (about 285 000 years; the core refuses
/// expiry times past 2^64 ms anyway).
pub(crate) const MAX_MS: f64 = 9.0e15;

/// A duration in milliseconds: a finite number > 0 (fractions round up to whole ms).
pub(crate) fn ms_arg(env: Env, v: Value, what: &str) -> R<Duration> {
    let x = number_arg(env, v, what)?;
    if x.is_nan() || x <= 0.0 || x > MAX_MS {
        return Err(range_error(
            env,
            &format!("{what} must be a number of milliseconds > 0 and <= 9e15, got {x}"),
        ));
    }
    Ok(Duration::from_millis(x.ceil() as u64))
}

/// An optional TTL: `undefined` / `null` mean none.
pub(crate) fn ttl_arg(env: Env, v: Value) -> R<Option<Duration>> {
    if is_nullish(env, v) {
        return Ok(None);
    }
    ms_arg(env, v, "ttlMs").map(Some)
}

// ---- return values ----

pub(crate) fn buffer_copy(env: Env, bytes: &[u8]) -> R<Value> {
    let mut out = ptr::null_mut();
    // SAFETY: `bytes` is readable for its length; Node copies it.
    let st = unsafe {
        sys::napi_create_buffer_copy(
            env,
            bytes.len(),
            bytes.as_ptr().cast(),
            ptr::null_mut(),
            &mut out,
        )
    };
    check(env, st, "napi_create_buffer_copy")?;
    Ok(out)
}

pub(crate) fn string(env: Env, bytes: &[u8]) -> R<Value> {
    let mut out = ptr::null_mut();
    // SAFETY: `bytes` is readable for its length; invalid UTF-8 becomes U+FFFD.
    let st = unsafe {
        sys::napi_create_string_utf8(env, bytes.as_ptr().cast(), bytes.len() as isize, &mut out)
    };
    check(env, st, "napi_create_string_utf8")?;
    Ok(out)
}

pub(crate) fn number(env: Env, x: f64) -> Value {
    let mut out = ptr::null_mut();
    // SAFETY: creating a number cannot fail on a live env.
    unsafe { sys::napi_create_double(env, x, &mut out) };
    out
}

pub(crate) fn bigint(env: Env, x: i64) -> Value {
    let mut out = ptr::null_mut();
    // SAFETY: as above.
    unsafe { sys::napi_create_bigint_int64(env, x, &mut out) };
    out
}

pub(crate) fn boolean(env: Env, b: bool) -> Value {
    let mut out = ptr::null_mut();
    // SAFETY: as above.
    unsafe { sys::napi_get_boolean(env, b, &mut out) };
    out
}

pub(crate) fn null(env: Env) -> Value {
    let mut out = ptr::null_mut();
    // SAFETY: as above.
    unsafe { sys::napi_get_null(env, &mut out) };
    out
}

pub(crate) fn undefined(env: Env) -> Value {
    let mut out = ptr::null_mut();
    // SAFETY: as above.
    unsafe { sys::napi_get_undefined(env, &mut out) };
    out
}

// ---- functions carrying native state ----

unsafe extern "C" fn drop_box<T>(_env: Env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the `Box<T>` leaked by `function`, finalized exactly once.
    drop(unsafe { Box::from_raw(data.cast::<T>()) });
}

/// Creates a JS function named `name` calling `cb` with `state` as its data pointer; the
/// state is dropped when the function is garbage-collected.
pub(crate) fn function<T: 'static>(
    env: Env,
    name: &str,
    cb: unsafe extern "C" fn(Env, sys::napi_callback_info) -> Value,
    state: T,
) -> R<Value> {
    let data = Box::into_raw(Box::new(state)).cast::<c_void>();
    let mut f = ptr::null_mut();
    // SAFETY: `name` is valid UTF-8 of the given length; `data` stays valid until the
    // finalizer registered below runs.
    let st = unsafe {
        sys::napi_create_function(
            env,
            name.as_ptr().cast(),
            name.len() as isize,
            Some(cb),
            data,
            &mut f,
        )
    };
    if st != sys::Status::napi_ok {
        // SAFETY: the function was not created, so nobody else owns `data`.
        drop(unsafe { Box::from_raw(data.cast::<T>()) });
        return Err(check(env, st, "napi_create_function").unwrap_err());
    }
    // SAFETY: ties `data` to the function object's lifetime.
    let st = unsafe {
        sys::napi_add_finalizer(
            env,
            f,
            data,
            Some(drop_box::<T>),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    check(env, st, "napi_add_finalizer")?;
    Ok(f)
}

/// The state a callback made by [`function`] carries.
///
/// # Safety
/// `data` must be the data pointer of a function made by `function::<T>`.
pub(crate) unsafe fn state<'a, T>(data: *mut c_void) -> &'a T {
    // SAFETY: the function object (and so its state) is alive while it is being called.
    unsafe { &*data.cast::<T>() }
}

/// Sets `obj[name] = value`.
pub(crate) fn set_property(env: Env, obj: Value, name: &str, value: Value) -> R<()> {
    let name = cstring(name);
    // SAFETY: live handles, NUL-terminated name.
    let st = unsafe { sys::napi_set_named_property(env, obj, name.as_ptr(), value) };
    check(env, st, "napi_set_named_property")
}

pub(crate) fn object(env: Env) -> R<Value> {
    let mut out = ptr::null_mut();
    // SAFETY: live env.
    let st = unsafe { sys::napi_create_object(env, &mut out) };
    check(env, st, "napi_create_object")?;
    Ok(out)
}
