//! Store options (already validated by `index.js`, whose `OPTIONS` table is the single place
//! that knows their JS names, types and ranges) to a core [`Config`].
//!
//! Adding an option is one entry in `OPTIONS` and one line in [`config`].

use napi::bindgen_prelude::Object;
use napi::Result;
use shmstate::{Config, WhenFull};

fn num(o: &Object, name: &str) -> Result<Option<f64>> {
    o.get::<f64>(name)
}

/// The configuration described by `options` (absent fields keep the core's defaults).
pub(crate) fn config(o: Option<Object>) -> Result<Config> {
    let mut c = Config::new();
    let Some(o) = o else { return Ok(c) };
    if let Some(v) = num(&o, "capacity")? { c = c.capacity(v as u64) }
    if let Some(v) = num(&o, "shards")? { c = c.shards(v as u32) }
    if let Some(v) = num(&o, "maxKeyLen")? { c = c.max_key_len(v as u32) }
    if let Some(v) = num(&o, "maxValueLen")? { c = c.max_value_len(v as u32) }
    if let Some(v) = num(&o, "maxCounters")? { c = c.max_counters(v as u32) }
    if let Some(v) = num(&o, "lockTimeoutMs")? { c = c.lock_timeout(std::time::Duration::from_millis(v as u64)) }
    if let Some(v) = o.get::<bool>("lineSizedSlots")? { c = c.line_sized_slots(v) }
    if let Some(v) = o.get::<String>("whenFull")? {
        c = c.when_full(if v == "evict" { WhenFull::Evict } else { WhenFull::Refuse })
    }
    Ok(c)
}
