//! Human and JSON renderings of a region's description and statistics.

use std::io::{self, Write};

use shmstate::{Config, Origin, Stats, Store};

/// The parts of a region's configuration `info` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_key_len: u64,
    pub max_value_len: u64,
    pub max_counters: u64,
}

/// Reads the key/value/counter limits out of a `Config`.
pub fn limits(cfg: &Config) -> Option<Limits> {
    Some(Limits {
        max_key_len: u64::from(cfg.settings().max_key_len),
        max_value_len: u64::from(cfg.settings().max_value_len),
        max_counters: u64::from(cfg.settings().max_counters),
    })
}

fn round8(n: u64) -> u64 {
    n.div_ceil(8).saturating_mul(8)
}

fn origin_text(o: &Origin) -> String {
    match o {
        Origin::Anonymous => "anonymous shared memory".to_owned(),
        Origin::Shm(name) => format!("shm object /dev/shm/{name}"),
        Origin::File(p) => format!("file {}", p.display()),
    }
}

fn fill_percent(st: &Stats) -> f64 {
    if st.capacity == 0 {
        0.0
    } else {
        st.entries as f64 * 100.0 / st.capacity as f64
    }
}

/// Bytes with a binary unit, e.g. `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn info_text(s: &Store, out: &mut impl Write) -> io::Result<()> {
    let cfg = s.config();
    let st = s.stats();
    writeln!(out, "region:        {}", origin_text(s.origin()))?;
    writeln!(
        out,
        "format:        shmstate version {} (magic, version and layout fingerprint checked)",
        shmstate::FORMAT_VERSION
    )?;
    writeln!(
        out,
        "memory:        {} ({} bytes)",
        human_bytes(st.region_bytes),
        st.region_bytes
    )?;
    writeln!(
        out,
        "fill:          {} / {} entries ({:.1}%), {} tombstones, {} slots",
        st.entries,
        st.capacity,
        fill_percent(&st),
        st.tombstones,
        st.slots
    )?;
    writeln!(out, "shards:        {}", cfg.effective_shards())?;
    if let Some(l) = limits(&cfg) {
        writeln!(out, "max key:       {} bytes", l.max_key_len)?;
        writeln!(out, "max value:     {} bytes", l.max_value_len)?;
        writeln!(
            out,
            "slot size:     {} bytes (values over 24 bytes in the heap)",
            24 + round8(l.max_key_len) + 24
        )?;
        writeln!(out, "counters:      {} / {}", st.counters, l.max_counters)?;
    } else {
        writeln!(out, "counters:      {}", st.counters)?;
    }
    writeln!(
        out,
        "heap:          {} of {} free ({:.1}% of that in partly used pages), {} in values",
        human_bytes(st.heap_free_bytes),
        human_bytes(st.heap_bytes),
        100.0 * st.fragmentation(),
        human_bytes(st.value_bytes)
    )?;
    writeln!(
        out,
        "largest value: {} bytes can be stored now (an estimate)",
        st.largest_value
    )?;
    writeln!(
        out,
        "when full:     {}",
        if s.evicts() { "evict" } else { "refuse" }
    )?;
    writeln!(out, "generation:    {}", s.generation())
}

pub fn info_json(s: &Store, out: &mut impl Write) -> io::Result<()> {
    let cfg = s.config();
    let st = s.stats();
    let mut j = JsonObject::new();
    match s.origin() {
        Origin::Shm(name) => {
            j.str("kind", "shm");
            j.str("name", name);
        }
        Origin::File(p) => {
            j.str("kind", "file");
            j.str("path", &p.to_string_lossy());
        }
        Origin::Anonymous => j.str("kind", "anonymous"),
    }
    j.u64("region_bytes", st.region_bytes);
    j.u64("entries", st.entries);
    j.u64("capacity", st.capacity);
    j.f64("fill_ratio", fill_percent(&st) / 100.0);
    j.u64("tombstones", st.tombstones);
    j.u64("slots", st.slots);
    j.u64("shards", u64::from(cfg.effective_shards()));
    if let Some(l) = limits(&cfg) {
        j.u64("max_key_len", l.max_key_len);
        j.u64("max_value_len", l.max_value_len);
        j.u64("max_counters", l.max_counters);
    }
    j.u64("counters", st.counters);
    j.u64("value_bytes", st.value_bytes);
    j.u64("heap_bytes", st.heap_bytes);
    j.u64("heap_free_bytes", st.heap_free_bytes);
    j.u64("largest_value", st.largest_value);
    j.f64("fragmentation", st.fragmentation());
    j.str("when_full", if s.evicts() { "evict" } else { "refuse" });
    j.u64("generation", s.generation());
    writeln!(out, "{}", j.finish())
}

/// The statistics as `(name, value)` pairs, in display order.
fn stat_fields(st: &Stats) -> [(&'static str, u64); 20] {
    [
        ("entries", st.entries),
        ("capacity", st.capacity),
        ("slots", st.slots),
        ("tombstones", st.tombstones),
        ("hits", st.hits),
        ("misses", st.misses),
        ("sets", st.sets),
        ("deletes", st.deletes),
        ("expirations", st.expirations),
        ("evictions", st.evictions),
        ("full_refusals", st.full_refusals),
        ("lock_recoveries", st.lock_recoveries),
        ("lock_contended", st.lock_contended),
        ("counters", st.counters),
        ("region_bytes", st.region_bytes),
        ("value_bytes", st.value_bytes),
        ("heap_bytes", st.heap_bytes),
        ("heap_free_bytes", st.heap_free_bytes),
        ("heap_partial_free_bytes", st.heap_partial_free_bytes),
        ("largest_value", st.largest_value),
    ]
}

pub fn stats_text(st: &Stats, out: &mut impl Write) -> io::Result<()> {
    for (k, v) in stat_fields(st) {
        writeln!(out, "{k:<16} {v}")?;
    }
    let lookups = st.hits.saturating_add(st.misses);
    if lookups > 0 {
        writeln!(
            out,
            "{:<16} {:.1}%",
            "hit_rate",
            st.hits as f64 * 100.0 / lookups as f64
        )?;
    }
    writeln!(out, "{:<16} {:.1}%", "fill", fill_percent(st))
}

pub fn stats_json(st: &Stats, out: &mut impl Write) -> io::Result<()> {
    let mut j = JsonObject::new();
    for (k, v) in stat_fields(st) {
        j.u64(k, v);
    }
    writeln!(out, "{}", j.finish())
}

pub fn counters_json(list: &[(String, i64)], out: &mut impl Write) -> io::Result<()> {
    let mut j = JsonObject::new();
    for (k, v) in list {
        j.i64(k, *v);
    }
    writeln!(out, "{}", j.finish())
}

/// A counter name safe to print on a terminal (control characters escaped).
pub fn printable(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).collect()
}

/// A key as one line of text: printable ASCII as is, everything else (and `\`) as `\xNN`.
pub fn escape_key(k: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(k.len());
    for &b in k {
        if b.is_ascii_graphic() && b != b'\\' || b == b' ' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
    }
    out
}

/// A flat JSON object writer (the only JSON this tool prints).
struct JsonObject {
    buf: String,
}

impl JsonObject {
    fn new() -> Self {
        JsonObject {
            buf: String::from("{"),
        }
    }

    fn key(&mut self, k: &str) {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        push_json_str(&mut self.buf, k);
        self.buf.push(':');
    }

    fn u64(&mut self, k: &str, v: u64) {
        self.key(k);
        self.buf.push_str(&v.to_string());
    }

    fn i64(&mut self, k: &str, v: i64) {
        self.key(k);
        self.buf.push_str(&v.to_string());
    }

    fn f64(&mut self, k: &str, v: f64) {
        self.key(k);
        if v.is_finite() {
            self.buf.push_str(&v.to_string());
        } else {
            self.buf.push_str("null");
        }
    }

    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        push_json_str(&mut self.buf, v);
    }

    fn finish(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

fn push_json_str(buf: &mut String, s: &str) {
    buf.push('"');
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            c if (c as u32) < 0x20 => buf.push_str(&format!("\\u{:04x}", c as u32)),
            c => buf.push(c),
        }
    }
    buf.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_back() {
        let cfg = Config::new()
            .max_key_len(48)
            .max_value_len(1000)
            .max_counters(77);
        assert_eq!(
            limits(&cfg),
            Some(Limits {
                max_key_len: 48,
                max_value_len: 1000,
                max_counters: 77
            })
        );
    }

    #[test]
    fn json_escaping() {
        let mut j = JsonObject::new();
        j.str("a\"b", "x\\y\n\u{1}");
        j.i64("n", -3);
        assert_eq!(j.finish(), r#"{"a\"b":"x\\y\n\u0001","n":-3}"#);
    }

    #[test]
    fn key_escaping() {
        assert_eq!(escape_key(b"user:1 x"), b"user:1 x");
        assert_eq!(escape_key(b"a\\b\n\xff"), b"a\\x5cb\\x0a\\xff");
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
