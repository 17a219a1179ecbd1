//! Prometheus text exposition of a store's [`Stats`] and named counters.
//!
//! The output follows the [text exposition format, version 0.0.4][fmt]: one `# HELP` and one
//! `# TYPE` line per metric family, every name prefixed `shmstate_`, monotonic counts suffixed
//! `_total`, sizes in bytes, label values escaped (`\\`, `\"`, `\n`). Serve it with the content
//! type [`PROMETHEUS_CONTENT_TYPE`].
//!
//! The statistics are counts since the region was created, summed over all processes, so any
//! one process (or the `shmstate stats --prometheus` command) can export them for all.
//!
//! [fmt]: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format

use std::fmt::Write as _;

use crate::error::Result;
use crate::stats::Stats;
use crate::store::Store;

/// The HTTP `Content-Type` of the text produced by [`prometheus`] and [`render_prometheus`].
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders the store's statistics and every named counter in the Prometheus text format.
///
/// Metric families (all prefixed `shmstate_`; counts since the region was created, summed over
/// all processes):
///
/// | family | type | what |
/// |---|---|---|
/// | `shmstate_entries` | gauge | entries stored, including expired ones not yet reclaimed |
/// | `shmstate_capacity` | gauge | configured capacity (entries) |
/// | `shmstate_fill_ratio` | gauge | `entries / capacity` |
/// | `shmstate_slots` | gauge | slots in the table (capacity plus headroom) |
/// | `shmstate_tombstones` | gauge | deleted slots that still lengthen lookups |
/// | `shmstate_region_bytes` | gauge | size of the mapped region |
/// | `shmstate_value_bytes` | gauge | bytes of the values stored in the heap |
/// | `shmstate_heap_bytes` | gauge | size of the value heap |
/// | `shmstate_heap_free_bytes` | gauge | heap bytes free (free pages and free blocks) |
/// | `shmstate_heap_fragmentation` | gauge | share of the free heap bytes in partly used pages |
/// | `shmstate_largest_value_bytes` | gauge | the largest value a write can store now (estimate) |
/// | `shmstate_lookups_total{result="hit"\|"miss"}` | counter | lock-free lookups |
/// | `shmstate_sets_total` | counter | writes that stored a value |
/// | `shmstate_deletes_total` | counter | entries deleted |
/// | `shmstate_expirations_total` | counter | expired entries reclaimed |
/// | `shmstate_evictions_total` | counter | live entries evicted to make room |
/// | `shmstate_full_refusals_total` | counter | writes refused because the store was full |
/// | `shmstate_lock_recoveries_total` | counter | shard repairs after a lock holder died |
/// | `shmstate_lock_contended_total` | counter | lock acquisitions that found the lock taken |
/// | `shmstate_counters_registered` | gauge | named counters registered |
/// | `shmstate_counter_value{name="…"}` | gauge | value of each named counter |
///
/// Named counters are exported as gauges, not Prometheus counters: [`Counter::set`] and
/// [`Counter::swap`] can lower them and they wrap on overflow.
///
/// [`Counter::set`]: crate::Counter::set
/// [`Counter::swap`]: crate::Counter::swap
///
/// A snapshot: [`Store::stats`] plus [`Store::counters`]. Fails only if the counter area is
/// corrupted ([`Error::Corrupted`](crate::Error::Corrupted)).
///
/// ```
/// # fn main() -> shmstate::Result<()> {
/// let store = shmstate::Store::anonymous(&shmstate::Config::new().capacity(1000))?;
/// store.set(b"k", b"v", None)?;
/// store.get(b"k")?;
/// store.counter("http.requests")?.add(3);
///
/// let text = shmstate::prometheus(&store)?;
/// assert!(text.contains("# TYPE shmstate_entries gauge\nshmstate_entries 1\n"));
/// assert!(text.contains("shmstate_lookups_total{result=\"hit\"} 1\n"));
/// assert!(text.contains("shmstate_counter_value{name=\"http.requests\"} 3\n"));
/// # Ok(()) }
/// ```
pub fn prometheus(store: &Store) -> Result<String> {
    let counters = store.counters()?;
    Ok(render_prometheus(&store.stats(), &counters))
}

/// Renders a statistics snapshot and a list of `(name, value)` counters in the Prometheus text
/// format (the pure part of [`prometheus`], for callers that already hold a snapshot).
pub fn render_prometheus(stats: &Stats, counters: &[(String, i64)]) -> String {
    let mut out = String::with_capacity(2048 + counters.len() * 64);
    let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
        family(out, name, "gauge", help);
        sample(out, name, None, v);
    };
    gauge(
        &mut out,
        "shmstate_entries",
        "Entries stored, including expired ones not yet reclaimed.",
        stats.entries,
    );
    gauge(
        &mut out,
        "shmstate_capacity",
        "Configured capacity in entries.",
        stats.capacity,
    );
    family(
        &mut out,
        "shmstate_fill_ratio",
        "gauge",
        "Entries divided by capacity.",
    );
    let fill = if stats.capacity == 0 {
        0.0
    } else {
        stats.entries as f64 / stats.capacity as f64
    };
    let _ = writeln!(out, "shmstate_fill_ratio {fill}");
    gauge(
        &mut out,
        "shmstate_slots",
        "Slots in the table (capacity plus headroom).",
        stats.slots,
    );
    gauge(
        &mut out,
        "shmstate_tombstones",
        "Deleted slots that still lengthen lookups.",
        stats.tombstones,
    );
    gauge(
        &mut out,
        "shmstate_region_bytes",
        "Size of the shared-memory region in bytes.",
        stats.region_bytes,
    );
    gauge(
        &mut out,
        "shmstate_value_bytes",
        "Bytes of the values stored in the heap (values over 24 bytes).",
        stats.value_bytes,
    );
    gauge(
        &mut out,
        "shmstate_heap_bytes",
        "Size of the value heap in bytes.",
        stats.heap_bytes,
    );
    gauge(
        &mut out,
        "shmstate_heap_free_bytes",
        "Heap bytes free: in free pages and in free blocks of partly used pages.",
        stats.heap_free_bytes,
    );
    family(
        &mut out,
        "shmstate_heap_fragmentation",
        "gauge",
        "Share of the free heap bytes that sit in partly used pages.",
    );
    let _ = writeln!(out, "shmstate_heap_fragmentation {}", stats.fragmentation());
    gauge(
        &mut out,
        "shmstate_largest_value_bytes",
        "The largest value a write can store now without evicting (an estimate).",
        stats.largest_value,
    );

    family(
        &mut out,
        "shmstate_lookups_total",
        "counter",
        "Lock-free lookups (get, get_into, contains) by result.",
    );
    sample(
        &mut out,
        "shmstate_lookups_total",
        Some(("result", "hit")),
        stats.hits,
    );
    sample(
        &mut out,
        "shmstate_lookups_total",
        Some(("result", "miss")),
        stats.misses,
    );

    let counts: [(&str, &str, u64); 7] = [
        (
            "shmstate_sets_total",
            "Writes that stored a value (set, add, replace, incr, compare_and_swap).",
            stats.sets,
        ),
        (
            "shmstate_deletes_total",
            "Entries removed by delete or compare_and_swap.",
            stats.deletes,
        ),
        (
            "shmstate_expirations_total",
            "Expired entries reclaimed.",
            stats.expirations,
        ),
        (
            "shmstate_evictions_total",
            "Live entries evicted to make room.",
            stats.evictions,
        ),
        (
            "shmstate_full_refusals_total",
            "Writes refused because the store was full.",
            stats.full_refusals,
        ),
        (
            "shmstate_lock_recoveries_total",
            "Shard repairs after a lock holder died.",
            stats.lock_recoveries,
        ),
        (
            "shmstate_lock_contended_total",
            "Lock acquisitions that found the lock taken.",
            stats.lock_contended,
        ),
    ];
    for (name, help, v) in counts {
        family(&mut out, name, "counter", help);
        sample(&mut out, name, None, v);
    }

    gauge(
        &mut out,
        "shmstate_counters_registered",
        "Named counters registered.",
        stats.counters,
    );
    if !counters.is_empty() {
        family(
            &mut out,
            "shmstate_counter_value",
            "gauge",
            "Value of each named counter.",
        );
        for (name, v) in counters {
            let _ = write!(out, "shmstate_counter_value{{name=\"");
            escape_label_value(&mut out, name);
            let _ = writeln!(out, "\"}} {v}");
        }
    }
    out
}

/// `# HELP` and `# TYPE` lines. Help texts are our own constants: no escaping needed, which
/// the debug assertion checks.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    debug_assert!(!help.contains(['\\', '\n']));
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, label: Option<(&str, &str)>, v: u64) {
    match label {
        Some((k, lv)) => {
            let _ = write!(out, "{name}{{{k}=\"");
            escape_label_value(out, lv);
            let _ = writeln!(out, "\"}} {v}");
        }
        None => {
            let _ = writeln!(out, "{name} {v}");
        }
    }
}

/// Label values may hold any UTF-8; backslash, double quote and line feed are escaped.
fn escape_label_value(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        let mut s = String::new();
        escape_label_value(&mut s, "a\\b\"c\nd é");
        assert_eq!(s, "a\\\\b\\\"c\\nd é");
    }

    #[test]
    fn no_counter_family_without_counters() {
        let text = render_prometheus(&Stats::default(), &[]);
        assert!(!text.contains("shmstate_counter_value"));
        assert!(text.contains("shmstate_fill_ratio 0\n"));
    }
}
