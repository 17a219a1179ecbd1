//! Store options (already validated by `index.js`, whose `OPTIONS` table is the single place
//! that knows their JS names, types and ranges) to a core [`Config`].
//!
//! Adding an option is one entry in `OPTIONS` and one `set(...)` statement in [`config`].
//! Numbers arrive as JS numbers (`memory` as a bigint is turned into a number by `index.js`;
//! every range is below 2^53, so the conversions here are exact).

use std::time::Duration;

use napi::bindgen_prelude::Object;
use napi::Result;
use shmstate::{Config, WhenFull};

/// Applies `f` to `c` when the option is present.
fn set<T>(c: &mut Config, v: Option<T>, f: impl FnOnce(Config, T) -> Config) {
    if let Some(v) = v {
        *c = f(std::mem::take(c), v);
    }
}

/// The configuration described by `options` (absent fields keep the core's defaults).
pub(crate) fn config(o: Option<Object>) -> Result<Config> {
    let mut c = Config::new();
    let Some(o) = o else { return Ok(c) };
    let num = |name: &str| o.get::<f64>(name);
    set(&mut c, num("memory")?, |c, v| c.memory(v as u64));
    set(&mut c, num("capacity")?, |c, v| c.capacity(v as u64));
    set(&mut c, num("shards")?, |c, v| c.shards(v as u32));
    set(&mut c, num("maxKeyLen")?, |c, v| c.max_key_len(v as u32));
    set(&mut c, num("maxValueLen")?, |c, v| {
        c.max_value_len(v as u32)
    });
    set(&mut c, num("maxCounters")?, |c, v| c.max_counters(v as u32));
    set(&mut c, num("lockTimeoutMs")?, |c, v| {
        c.lock_timeout(Duration::from_millis(v as u64))
    });
    set(&mut c, o.get::<bool>("lineSizedSlots")?, |c, v| {
        c.line_sized_slots(v)
    });
    set(&mut c, o.get::<String>("whenFull")?, |c, v| {
        c.when_full(when_full(&v))
    });
    Ok(c)
}

fn when_full(v: &str) -> WhenFull {
    if v == "evict" {
        WhenFull::Evict
    } else {
        WhenFull::Refuse
    }
}
