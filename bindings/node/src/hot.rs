//! The per-request operations as raw Node-API functions (see [`crate::raw`] for why).
//!
//! [`store_functions`] builds, for one store handle, an object of functions that each carry a
//! clone of the [`Store`] as their data pointer; `index.js` puts them behind the public
//! methods. Arguments are validated here (a wrong type is a `TypeError`, a value out of range
//! a `RangeError`), so the JS wrappers are one line each.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use napi::sys;
use shmstate::{Counter, Gauge, LockGuard, RateLimiter, Store, Ttl};

use crate::error;
use crate::raw::{self, args, bytes_arg, guard, Env, Value, R};

thread_local! {
    /// Scratch buffers for string arguments and copied-out values. A JS thread runs one
    /// callback at a time and no callback here calls back into JS, so each is borrowed once.
    static KEY: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
    static VAL: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
    static EXP: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
    static OUT: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
}

fn core<T>(env: Env, r: shmstate::Result<T>) -> R<T> {
    r.map_err(|e| error::throw(env, &e))
}

/// A result past `Number.MAX_SAFE_INTEGER`.
fn unsafe_integer(env: Env, what: &str, v: i64) -> raw::Thrown {
    raw::throw(
        env,
        raw::Class::RangeError,
        "SHMSTATE_UNSAFE_INTEGER",
        &format!(
            "{what} would be {v}, past Number.MAX_SAFE_INTEGER (2^53 - 1); it was not changed. \
             Use the BigInt variant for the full 64-bit range"
        ),
    )
}

macro_rules! callback {
    ($name:ident, $n:literal, $state:ty, |$env:ident, $argv:ident, $st:ident| $body:expr) => {
        unsafe extern "C" fn $name(env: Env, info: sys::napi_callback_info) -> Value {
            guard(env, || {
                // SAFETY: called by Node with this callback's env and info.
                let ($argv, data) = unsafe { args::<$n>(env, info) };
                // SAFETY: every function with this callback was made by `raw::function` with
                // a `$state`.
                let $st: &$state = unsafe { raw::state(data) };
                let $env = env;
                $body
            })
        }
    };
}

fn with_key<T>(env: Env, v: Value, f: impl FnOnce(&[u8]) -> R<T>) -> R<T> {
    KEY.with_borrow_mut(|kb| {
        let key = bytes_arg(env, v, "key", kb)?;
        f(key)
    })
}

fn with_value<T>(env: Env, v: Value, f: impl FnOnce(&[u8]) -> R<T>) -> R<T> {
    VAL.with_borrow_mut(|vb| {
        let value = bytes_arg(env, v, "value", vb)?;
        f(value)
    })
}

// ---- store ----

/// What the store's functions share: the handle, and the locks this JS thread holds through
/// it, by ticket (a lock is a ticket in JS, so acquiring one creates no native object).
pub(crate) struct StoreState {
    store: Store,
    locks: RefCell<HashMap<u32, LockGuard>>,
    next_ticket: std::cell::Cell<u32>,
}

impl std::ops::Deref for StoreState {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

type Shared = Rc<StoreState>;

impl Drop for StoreState {
    fn drop(&mut self) {
        // Locks are released by `release()` or their lease, never by garbage collection
        // (see `lock_forget`).
        for (_, g) in self.locks.get_mut().drain() {
            std::mem::forget(g);
        }
    }
}

// `getInto(key, slab, pos)`: copies the value into `slab[pos..]` and returns its length if it
// fits, else returns a new Buffer; -1 if absent. `index.js` hands out `slab.subarray()`s, as
// `Buffer.allocUnsafe` does with its pool: creating a Buffer through Node-API costs about
// 400 ns, a view of a pooled slab about 60.
callback!(get_into, 3, Shared, |env, a, s| with_key(env, a[0], |k| {
    OUT.with_borrow_mut(|out| {
        if !core(env, s.get_into(k, out))? {
            return Ok(raw::number(env, -1.0));
        }
        let slab = raw::view_raw(env, a[1]);
        let pos = raw::number_arg(env, a[2], "pos")?;
        if let Some((base, len)) = slab {
            if pos >= 0.0 && (pos as usize).saturating_add(out.len()) <= len {
                // SAFETY: `pos..pos + out.len()` is inside the slab's `len` bytes (checked
                // above), which JS does not touch while this callback runs.
                unsafe {
                    std::ptr::copy_nonoverlapping(out.as_ptr(), base.add(pos as usize), out.len())
                };
                return Ok(raw::number(env, out.len() as f64));
            }
        }
        raw::buffer_copy(env, out)
    })
}));

callback!(get, 1, Shared, |env, a, s| with_key(env, a[0], |k| {
    OUT.with_borrow_mut(|out| {
        if core(env, s.get_into(k, out))? {
            raw::buffer_copy(env, out)
        } else {
            Ok(raw::null(env))
        }
    })
}));

callback!(get_string, 1, Shared, |env, a, s| with_key(
    env,
    a[0],
    |k| {
        OUT.with_borrow_mut(|out| {
            if core(env, s.get_into(k, out))? {
                raw::string(env, out)
            } else {
                Ok(raw::null(env))
            }
        })
    }
));

// `Store::contains` copies the value into a new Vec; the reused scratch buffer avoids the
// allocation.
callback!(has, 1, Shared, |env, a, s| with_key(env, a[0], |k| {
    OUT.with_borrow_mut(|out| Ok(raw::boolean(env, core(env, s.get_into(k, out))?)))
}));

callback!(set, 3, Shared, |env, a, s| with_key(env, a[0], |k| {
    with_value(env, a[1], |v| {
        let ttl = raw::ttl_arg(env, a[2])?;
        core(env, s.set(k, v, ttl))?;
        Ok(raw::undefined(env))
    })
}));

callback!(add, 3, Shared, |env, a, s| with_key(env, a[0], |k| {
    with_value(env, a[1], |v| {
        let ttl = raw::ttl_arg(env, a[2])?;
        Ok(raw::boolean(env, core(env, s.add(k, v, ttl))?))
    })
}));

callback!(replace, 3, Shared, |env, a, s| with_key(env, a[0], |k| {
    with_value(env, a[1], |v| {
        let ttl = raw::ttl_arg(env, a[2])?;
        Ok(raw::boolean(env, core(env, s.replace(k, v, ttl))?))
    })
}));

callback!(delete, 1, Shared, |env, a, s| with_key(env, a[0], |k| {
    Ok(raw::boolean(env, core(env, s.delete(k))?))
}));

/// `expected` / `value` of compare-and-swap: `null` (absent) or bytes.
fn opt_bytes<'a>(env: Env, v: Value, what: &str, scratch: &'a mut Vec<u8>) -> R<Option<&'a [u8]>> {
    if raw::is_nullish(env, v) {
        return Ok(None);
    }
    bytes_arg(env, v, what, scratch).map(Some)
}

callback!(compare_and_swap, 4, Shared, |env, a, s| with_key(
    env,
    a[0],
    |k| {
        EXP.with_borrow_mut(|eb| {
            VAL.with_borrow_mut(|vb| {
                let expected = opt_bytes(env, a[1], "expected", eb)?;
                let value = opt_bytes(env, a[2], "value", vb)?;
                let ttl = raw::ttl_arg(env, a[3])?;
                Ok(raw::boolean(
                    env,
                    core(env, s.compare_and_swap(k, expected, value, ttl))?,
                ))
            })
        })
    }
));

callback!(incr, 3, Shared, |env, a, s| with_key(env, a[0], |k| {
    let delta = raw::safe_int_arg(env, a[1], "delta", Some(1))?;
    let ttl = raw::ttl_arg(env, a[2])?;
    let n = core(env, s.incr(k, delta, ttl))?;
    if !raw::is_safe(n) {
        // Roll back (the key existed: a created key holds `delta`, which is safe). If another
        // process deleted the key in between, this recreates it with `-delta` for 1 ms only.
        let _ = s.incr(k, -delta, Some(Duration::from_millis(1)));
        return Err(unsafe_integer(env, "the value", n));
    }
    Ok(raw::number(env, n as f64))
}));

callback!(incr_big, 3, Shared, |env, a, s| with_key(env, a[0], |k| {
    let delta = raw::bigint_arg(env, a[1], "delta")?;
    let ttl = raw::ttl_arg(env, a[2])?;
    Ok(raw::bigint(env, core(env, s.incr(k, delta, ttl))?))
}));

// `ttl(key)`: milliseconds left, `Infinity` if the key never expires, `null` if absent.
callback!(ttl, 1, Shared, |env, a, s| with_key(env, a[0], |k| {
    Ok(match core(env, s.ttl(k))? {
        Ttl::NoKey => raw::null(env),
        Ttl::NoExpiry => raw::number(env, f64::INFINITY),
        Ttl::ExpiresIn(d) => raw::number(env, d.as_millis() as f64),
        #[allow(unreachable_patterns)]
        _ => raw::null(env),
    })
}));

// `expire(key, ttlMs | null)`: `null` removes the TTL.
callback!(expire, 2, Shared, |env, a, s| with_key(env, a[0], |k| {
    let ttl = raw::ttl_arg(env, a[1])?;
    Ok(raw::boolean(env, core(env, s.expire(k, ttl))?))
}));

// ---- locks ----

fn lock_name(env: Env, v: Value, scratch: &mut Vec<u8>) -> R<&str> {
    if raw::type_of(env, v) != sys::ValueType::napi_string {
        return Err(raw::type_error(
            env,
            &format!(
                "lock name must be a string, got {}",
                raw::type_name(raw::type_of(env, v))
            ),
        ));
    }
    raw::utf8_into(env, v, scratch)?;
    // The bytes are the UTF-8 encoding V8 produced.
    std::str::from_utf8(scratch).map_err(|_| raw::type_error(env, "lock name is not valid UTF-8"))
}

// `tryLock(name, leaseMs)`: a ticket (> 0), or 0 if a live process holds the lock.
callback!(try_lock, 2, Shared, |env, a, s| KEY.with_borrow_mut(|kb| {
    let name = lock_name(env, a[0], kb)?;
    let lease = raw::ms_arg(env, a[1], "leaseMs")?;
    match core(env, s.try_lock(name, lease))? {
        None => Ok(raw::number(env, 0.0)),
        Some(g) => {
            let mut t = s.next_ticket.get();
            let mut locks = s.locks.borrow_mut();
            while t == 0 || locks.contains_key(&t) {
                t = t.wrapping_add(1);
            }
            s.next_ticket.set(t.wrapping_add(1));
            locks.insert(t, g);
            Ok(raw::number(env, f64::from(t)))
        }
    }
}));

fn ticket(env: Env, v: Value) -> R<u32> {
    let t = raw::number_arg(env, v, "ticket")?;
    Ok(t as u32)
}

callback!(lock_fence, 1, Shared, |env, a, s| {
    let t = ticket(env, a[0])?;
    let fence = s.locks.borrow().get(&t).map_or(0, |g| g.fence());
    Ok(raw::bigint(env, fence as i64))
});

callback!(lock_release, 1, Shared, |env, a, s| {
    let t = ticket(env, a[0])?;
    let g = s.locks.borrow_mut().remove(&t);
    Ok(raw::boolean(
        env,
        match g {
            Some(g) => core(env, g.release())?,
            None => false,
        },
    ))
});

callback!(lock_extend, 2, Shared, |env, a, s| {
    let t = ticket(env, a[0])?;
    let lease = raw::ms_arg(env, a[1], "leaseMs")?;
    let mut locks = s.locks.borrow_mut();
    Ok(raw::boolean(
        env,
        match locks.get_mut(&t) {
            Some(g) => core(env, g.extend(lease))?,
            None => false,
        },
    ))
});

callback!(lock_held, 1, Shared, |env, a, s| {
    let t = ticket(env, a[0])?;
    let locks = s.locks.borrow();
    Ok(raw::boolean(
        env,
        match locks.get(&t) {
            Some(g) => core(env, g.is_held())?,
            None => false,
        },
    ))
});

callback!(lock_lease_left, 1, Shared, |env, a, s| {
    let t = ticket(env, a[0])?;
    let left = s
        .locks
        .borrow()
        .get(&t)
        .map_or(0.0, |g| g.lease_left().as_millis() as f64);
    Ok(raw::number(env, left))
});

// Called when a JS lock object is garbage-collected: drops the ticket without releasing.
callback!(lock_forget, 1, Shared, |env, a, s| {
    let t = ticket(env, a[0])?;
    if let Some(g) = s.locks.borrow_mut().remove(&t) {
        std::mem::forget(g);
    }
    Ok(raw::undefined(env))
});

/// The object of per-request functions of `store`.
pub(crate) fn store_functions(env: Env, store: &Store) -> R<Value> {
    type Cb = unsafe extern "C" fn(Env, sys::napi_callback_info) -> Value;
    let table: [(&str, Cb); 20] = [
        ("getInto", get_into),
        ("tryLock", try_lock),
        ("lockFence", lock_fence),
        ("lockRelease", lock_release),
        ("lockExtend", lock_extend),
        ("lockHeld", lock_held),
        ("lockLeaseLeft", lock_lease_left),
        ("lockForget", lock_forget),
        ("get", get),
        ("getString", get_string),
        ("has", has),
        ("set", set),
        ("add", add),
        ("replace", replace),
        ("delete", delete),
        ("compareAndSwap", compare_and_swap),
        ("incr", incr),
        ("incrBig", incr_big),
        ("ttl", ttl),
        ("expire", expire),
    ];
    let shared: Shared = Rc::new(StoreState {
        store: store.clone(),
        locks: RefCell::new(HashMap::new()),
        next_ticket: std::cell::Cell::new(1),
    });
    let obj = raw::object(env)?;
    for (name, cb) in table {
        let f = raw::function(env, name, cb, shared.clone())?;
        raw::set_property(env, obj, name, f)?;
    }
    Ok(obj)
}

// ---- counters and gauges ----

fn checked(env: Env, what: &str, v: i64) -> R<Value> {
    if !raw::is_safe(v) {
        return Err(raw::throw(
            env,
            raw::Class::RangeError,
            "SHMSTATE_UNSAFE_INTEGER",
            &format!(
                "{what} is {v}, past Number.MAX_SAFE_INTEGER (2^53 - 1); use the BigInt variant"
            ),
        ));
    }
    Ok(raw::number(env, v as f64))
}

callback!(counter_add, 1, Counter, |env, a, c| {
    let delta = raw::safe_int_arg(env, a[0], "delta", Some(1))?;
    let n = c.add(delta);
    if !raw::is_safe(n) {
        // Counters are never deleted, so adding the opposite restores the exact value.
        c.add(delta.wrapping_neg());
        return Err(unsafe_integer(env, "the counter", n));
    }
    Ok(raw::number(env, n as f64))
});

callback!(counter_get, 0, Counter, |env, _a, c| checked(
    env,
    "the counter",
    c.get()
));

callback!(counter_add_big, 1, Counter, |env, a, c| {
    let delta = raw::bigint_arg(env, a[0], "delta")?;
    Ok(raw::bigint(env, c.add(delta)))
});

callback!(counter_get_big, 0, Counter, |env, _a, c| Ok(raw::bigint(
    env,
    c.get()
)));

callback!(counter_set, 1, Counter, |env, a, c| {
    let v = if raw::type_of(env, a[0]) == sys::ValueType::napi_bigint {
        raw::bigint_arg(env, a[0], "value")?
    } else {
        raw::safe_int_arg(env, a[0], "value", None)?
    };
    c.set(v);
    Ok(raw::undefined(env))
});

/// `{ add, get, addBigInt, getBigInt, set }` over one counter.
pub(crate) fn counter_functions(env: Env, counter: Counter) -> R<Value> {
    let obj = raw::object(env)?;
    type Cb = unsafe extern "C" fn(Env, sys::napi_callback_info) -> Value;
    let table: [(&str, Cb); 5] = [
        ("add", counter_add),
        ("get", counter_get),
        ("addBigInt", counter_add_big),
        ("getBigInt", counter_get_big),
        ("set", counter_set),
    ];
    for (name, cb) in table {
        let f = raw::function(env, name, cb, counter.clone())?;
        raw::set_property(env, obj, name, f)?;
    }
    Ok(obj)
}

callback!(gauge_add, 1, Gauge, |env, a, g| {
    let delta = raw::safe_int_arg(env, a[0], "delta", Some(1))?;
    let n = core(env, g.add(delta))?;
    if !raw::is_safe(n) {
        let _ = g.add(delta.wrapping_neg());
        return Err(unsafe_integer(env, "the gauge", n));
    }
    Ok(raw::number(env, n as f64))
});

callback!(gauge_set, 1, Gauge, |env, a, g| {
    let v = raw::safe_int_arg(env, a[0], "value", None)?;
    core(env, g.set(v))?;
    Ok(raw::undefined(env))
});

callback!(gauge_get, 0, Gauge, |env, _a, g| checked(
    env,
    "the gauge",
    g.get()
));

/// `{ add, set, get }` over one worker gauge.
pub(crate) fn gauge_functions(env: Env, gauge: Gauge) -> R<Value> {
    let obj = raw::object(env)?;
    type Cb = unsafe extern "C" fn(Env, sys::napi_callback_info) -> Value;
    let table: [(&str, Cb); 3] = [("add", gauge_add), ("set", gauge_set), ("get", gauge_get)];
    for (name, cb) in table {
        let f = raw::function(env, name, cb, gauge.clone())?;
        raw::set_property(env, obj, name, f)?;
    }
    Ok(obj)
}

// ---- rate limiter ----

/// A limiter and the five-number output array its JS wrapper reads (`out` is a property of
/// the function object, so the array lives as long as the function that writes into it).
pub(crate) struct Limiter {
    pub(crate) limiter: RateLimiter,
    pub(crate) out: *mut f64,
}

fn ms(d: Duration) -> f64 {
    // Whole milliseconds, rounded up (what Retry-After / RateLimit-Reset want).
    d.as_nanos().div_ceil(1_000_000) as f64
}

callback!(limiter_check, 2, Limiter, |env, a, l| with_key(
    env,
    a[0],
    |client| {
        let cost = raw::safe_int_arg(env, a[1], "cost", Some(1))?;
        if cost < 1 {
            return Err(raw::range_error(
                env,
                &format!("cost must be >= 1, got {cost}"),
            ));
        }
        let d = core(env, l.limiter.check_n(client, cost as u64))?;
        let vals = [
            if d.allowed { 1.0 } else { 0.0 },
            d.limit as f64,
            d.remaining as f64,
            ms(d.retry_after),
            ms(d.reset_after),
        ];
        // SAFETY: `out` points at the 5 doubles of the Float64Array kept alive by this function
        // object (see `limiter_function`); a JS thread runs one callback at a time.
        unsafe { std::ptr::copy_nonoverlapping(vals.as_ptr(), l.out, 5) };
        Ok(raw::undefined(env))
    }
));

/// The `check(client, cost)` function of a limiter, writing into `out` (a Float64Array of
/// length 5 made by the caller).
pub(crate) fn limiter_function(env: Env, limiter: RateLimiter, out: Value) -> R<Value> {
    let mut t = 0;
    let mut len = 0usize;
    let mut data = std::ptr::null_mut();
    let mut ab = std::ptr::null_mut();
    let mut off = 0usize;
    // SAFETY: `out` is a live handle; the call fails (and we refuse) if it is not a typed array.
    let st = unsafe {
        sys::napi_get_typedarray_info(env, out, &mut t, &mut len, &mut data, &mut ab, &mut off)
    };
    if st != sys::Status::napi_ok
        || t != sys::TypedarrayType::float64_array
        || len < 5
        || data.is_null()
    {
        return Err(raw::type_error(
            env,
            "internal: expected a Float64Array of length 5",
        ));
    }
    let f = raw::function(
        env,
        "check",
        limiter_check,
        Limiter {
            limiter,
            out: data.cast(),
        },
    )?;
    raw::set_property(env, f, "out", out)?;
    Ok(f)
}
