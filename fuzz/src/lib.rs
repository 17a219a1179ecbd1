//! Helpers shared by the fuzz targets: a deterministic region image, temporary region files,
//! and `exercise`, which calls every operation of a store whose region may be hostile.
//!
//! Under hostile input every operation must return `Ok` or `Err`: a panic, an abort, a hang
//! (libFuzzer `-timeout`) or an out-of-bounds access is the bug.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use shmstate::{Clock, Config, ManualClock, PartKind, RegionPart, Store};

/// Wall-clock reading of the manual clocks the targets use (any fixed value would do).
pub const T0_MS: u64 = 1_700_000_000_000;

/// The hash seed of the base image.
const FIXED_SEED: (u64, u64) = (0x5a5a_5a5a_5a5a_5a5a, 0x5a5a_5a5a_5a5a_5a5a);

/// Header fields that differ between otherwise identical regions (the random hash seed, the
/// creation time, the creator's pid), as the store's own layout map names them. `image`
/// overwrites them so that the base image, and so every crash input, is the same in every run
/// (and `config_check`, the hash of the seed and the configuration, to match).
const FIXED_HEADER_FIELDS: [(&str, u64); 4] = [
    ("seed0", FIXED_SEED.0),
    ("seed1", FIXED_SEED.1),
    ("created_ms", T0_MS),
    ("creator_pid", 1),
];

/// The configuration of the base image: small, so a region is about 200 KiB (of which 24 heap
/// pages per shard), values up to 10 000 bytes (longer than 24 bytes: in the heap), with a 2 ms
/// lock timeout so that a scribbled mutex word (a lock that looks held) costs each operation on
/// its shard 2 ms, not 10 s.
pub fn image_config() -> Config {
    Config::new()
        .capacity(48)
        .shards(2)
        .max_key_len(12)
        .max_value_len(MAX_VALUE as u32)
        .memory(224 << 10)
        .max_counters(4)
        .lock_timeout(Duration::from_millis(2))
}

/// `max_value_len` of the base image.
pub const MAX_VALUE: usize = 10_000;

/// Heap values of the base image: one block, two tail blocks, whole pages and a tail.
pub const IMAGE_HEAP: [(&[u8], usize); 3] =
    [(b"h:block", 100), (b"h:tails", 3072), (b"h:pages", 9000)];

/// `len` bytes that say which value they are (`seed`) and where each byte is.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ seed)
        .collect()
}

/// Keys of the base image (and of `exercise`): present, expiring, deleted, numeric.
pub const IMAGE_KEYS: [&[u8]; 12] = [
    b"k0",
    b"k1",
    b"k2",
    b"k3",
    b"k4",
    b"k5",
    b"ttl:a",
    b"ttl:b",
    b"n",
    b"",
    b"twelve-bytes",
    b"gone",
];

/// Counter names of the base image.
pub const IMAGE_COUNTERS: [&str; 2] = ["hits", "errors"];

/// Which part of a region a patch or scribble lands in, as the store's own map of the base
/// image names it (`Store::layout_map`, and `Store::value_parts` of its heap values): the
/// targets know no offset. A kind picks one of its parts (`offset` modulo their number), and a
/// byte in it (the rest of `offset`).
#[derive(Debug, Clone, Copy, arbitrary::Arbitrary)]
pub enum Where {
    /// Header fields and the counter registry's mutex.
    Header,
    /// Counter records, per-thread statistics and scratch slots.
    Counters,
    /// The shards' tables: mutexes, repair records, counts, control bytes, scratch and slots.
    Table,
    /// The heap's metadata: pool header fields, used and partial-page maps, page descriptors.
    HeapMeta,
    /// The base image's heap values: block headers, extent locators, value bytes.
    HeapValue,
    /// Anywhere.
    Anywhere,
}

impl Where {
    fn selects(self, k: &PartKind) -> bool {
        match self {
            Where::Header => matches!(k, PartKind::Header(_) | PartKind::RegistryMutex),
            Where::Counters => matches!(
                k,
                PartKind::Counter(_) | PartKind::StatSlot | PartKind::ThreadScratch(_)
            ),
            Where::Table => matches!(
                k,
                PartKind::ShardMutex
                    | PartKind::Repair(_)
                    | PartKind::Count(_)
                    | PartKind::ControlBytes
                    | PartKind::ShardScratch(_)
                    | PartKind::Slot(_)
            ),
            Where::HeapMeta => matches!(
                k,
                PartKind::Pool(_)
                    | PartKind::UsedMap
                    | PartKind::PartialMap { .. }
                    | PartKind::PageDesc(_)
            ),
            Where::HeapValue => matches!(k, PartKind::Value(_)),
            Where::Anywhere => false,
        }
    }

    /// The offset `offset` designates in a region of `len` (> 0) bytes laid out as the base
    /// image is.
    pub fn offset(self, offset: u32, len: usize) -> usize {
        let offset = offset as usize;
        let parts = &base().parts_by_kind[self as usize];
        if parts.is_empty() {
            return offset % len;
        }
        let p = &parts[offset % parts.len()];
        (p.range.start + offset / parts.len() % p.range.len()) % len
    }
}

/// The base image and its map.
struct Base {
    bytes: Vec<u8>,
    /// For each `Where` (by discriminant), the parts it selects.
    parts_by_kind: Vec<Vec<RegionPart>>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(build_base_image)
}

/// Where region files go: `$SHMSTATE_FUZZ_TMPDIR`, else the system temporary directory.
pub fn tmp_dir() -> PathBuf {
    std::env::var_os("SHMSTATE_FUZZ_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// A region file path unique to this process and call; removed when dropped.
pub struct TempRegion {
    path: PathBuf,
}

impl TempRegion {
    /// A fresh path (the file is not created).
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = tmp_dir().join(format!("shmstate-fuzz-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_file(&path);
        TempRegion { path }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` as a new file with mode 0600 (what `open_file` accepts).
    pub fn write(&self, bytes: &[u8]) {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", self.path.display()));
        f.write_all(bytes)
            .unwrap_or_else(|e| panic!("writing {}: {e}", self.path.display()));
    }
}

impl Drop for TempRegion {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The bytes of a valid, populated region file, the same in every run and process: entries
/// (plain, overwritten, numeric, with TTLs, one deleted; heap values of three shapes, one
/// overwritten), counters, statistics.
pub fn base_image() -> &'static [u8] {
    &base().bytes
}

fn build_base_image() -> Base {
    let tmp = TempRegion::new("base");
    // 1. An empty region; fix the per-region random fields while no key is placed yet.
    let s = Store::create_file(tmp.path(), &image_config()).expect("create base image");
    let parts = s.layout_map();
    let check = s.config_check_with_seed(FIXED_SEED);
    drop(s);
    let mut bytes = fs::read(tmp.path()).expect("read base image");
    for (name, value) in FIXED_HEADER_FIELDS
        .into_iter()
        .chain([("config_check", check)])
    {
        let r = parts
            .iter()
            .find(|p| p.kind == PartKind::Header(name))
            .unwrap_or_else(|| panic!("no header field {name} in the layout map"))
            .range
            .clone();
        let le = value.to_le_bytes();
        bytes[r.clone()].copy_from_slice(&le[..r.len()]);
    }
    fs::remove_file(tmp.path()).expect("remove base image");
    tmp.write(&bytes);
    // 2. Populate through the fixed seed.
    let clock = ManualClock::new(T0_MS);
    let s = Store::open_file(tmp.path())
        .expect("reopen base image")
        .with_clock(Clock::Manual(clock.clone()));
    let secs = |n| Some(Duration::from_secs(n));
    for (i, k) in IMAGE_KEYS.iter().enumerate() {
        s.set(k, format!("value-{i}").as_bytes(), None)
            .expect("populate");
    }
    s.set(b"k1", b"overwritten-once", None).expect("populate");
    s.set(b"k1", b"overwritten-twice", secs(3600))
        .expect("populate");
    s.set(b"ttl:a", b"expires-soon", Some(Duration::from_millis(500)))
        .expect("populate");
    s.set(b"ttl:b", b"expires-later", secs(60))
        .expect("populate");
    s.set(b"n", b"40", None).expect("populate");
    s.incr(b"n", 2, None).expect("populate");
    s.delete(b"gone").expect("populate");
    assert!(s
        .compare_and_swap(b"k2", Some(b"value-2"), Some(b"cas"), None)
        .expect("populate"));
    for (i, name) in IMAGE_COUNTERS.iter().enumerate() {
        s.counter(name).expect("populate").add(7 * (i as i64 + 1));
    }
    s.get(b"k0").expect("populate");
    s.get(b"absent").expect("populate");
    for (i, (k, len)) in IMAGE_HEAP.iter().enumerate() {
        s.set(k, &pattern(*len, i as u8), None).expect("populate");
    }
    // Overwritten: its old blocks freed (partial pages).
    s.set(IMAGE_HEAP[1].0, &pattern(IMAGE_HEAP[1].1, 9), None)
        .expect("populate");
    let rep = s.verify().expect("verify base image");
    assert!(rep.is_ok(), "base image: {rep}");
    let mut parts = s.layout_map();
    for (k, _) in IMAGE_HEAP {
        let v = s.value_parts(k).expect("value parts");
        assert!(!v.is_empty(), "{k:?} is in the heap");
        parts.extend(v);
    }
    let kinds = [
        Where::Header,
        Where::Counters,
        Where::Table,
        Where::HeapMeta,
        Where::HeapValue,
        Where::Anywhere,
    ];
    let parts_by_kind = kinds
        .iter()
        .enumerate()
        .map(|(i, w)| {
            assert_eq!(*w as usize, i);
            parts
                .iter()
                .filter(|p| w.selects(&p.kind))
                .cloned()
                .collect()
        })
        .collect();
    drop(s);
    Base {
        bytes: fs::read(tmp.path()).expect("read base image"),
        parts_by_kind,
    }
}

/// Runs every `Store` operation, and the full scan, on a store whose region may be damaged,
/// with keys and values derived from `data`. Results are ignored: only `Ok` or `Err` may come
/// back. Panics only when the store breaks a promise that holds for any region (a scan that
/// makes no progress).
pub fn exercise(s: &Store, clock: &ManualClock, data: &[u8]) {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let extra_key: Vec<u8> = data.iter().take(16).copied().collect();
    let val = format!("fz{}", byte(0)).into_bytes();
    let mut keys: Vec<&[u8]> = IMAGE_KEYS.to_vec();
    keys.extend(IMAGE_HEAP.iter().map(|(k, _)| *k));
    keys.push(&extra_key);
    keys.push(b"absent");
    let ttl = Some(Duration::from_millis(250));
    let mut buf = Vec::new();

    for k in &keys {
        let _ = s.get(k);
        let _ = s.get_into(k, &mut buf);
        let _ = s.contains(k);
        let _ = s.ttl(k);
    }
    let _ = s.counters();
    let _ = s.stats();
    let _ = shmstate::prometheus(s);
    if let Ok(rep) = s.verify() {
        let _ = rep.to_string();
    }
    let _ = s.len();
    let _ = s.is_empty();
    let _ = s.capacity();
    let _ = s.region_bytes();
    let _ = s.config();
    let _ = s.generation();
    let _ = s.evicts();
    let _ = format!("{s:?}");
    scan_all(s, b"");
    scan_all(s, b"k");
    let _ = s.scan(u64::from(byte(1)) * 7, b"t", 3);
    let _ = s.scan(u64::MAX, b"", 1);

    for (i, k) in keys.iter().enumerate() {
        match (i + usize::from(byte(2))) % 9 {
            0 => drop(s.set(k, &val, None)),
            1 => drop(s.add(k, &val, ttl)),
            2 => drop(s.replace(k, b"replaced", None)),
            3 => drop(s.incr(k, i64::from(byte(3)) - 100, ttl)),
            4 => drop(s.compare_and_swap(k, Some(b"value-4"), Some(&val), None)),
            5 => drop(s.compare_and_swap(k, None, Some(&val), ttl)),
            6 => drop(s.expire(k, ttl)),
            7 => drop(s.delete(k)),
            _ => drop(s.compare_and_swap(k, Some(b"cas"), None, None)),
        }
    }
    let _ = s.incr(b"n", i64::MAX, None);
    let _ = s.incr(b"n", 1, None);
    let _ = s.set(&extra_key, &extra_key, None);
    // Heap allocations and frees: values of every shape, sizes from `data`, heap values
    // resized, replaced by small ones, deleted.
    let size = |i: usize| {
        let b = usize::from(byte(5 + i));
        [0, 25, 100, 2040, 2041, 4096, 4097, 8192, 9000, MAX_VALUE][b % 10] + b / 10 % 3
    };
    for (i, (k, _)) in IMAGE_HEAP.iter().enumerate() {
        let _ = s.set(k, &pattern(size(i), i as u8), None);
        let _ = s.get(k);
    }
    for i in 0..3 {
        let k = format!("h:new{i}");
        let _ = s.set(k.as_bytes(), &pattern(size(3 + i), 7), ttl);
    }
    let _ = s.set(IMAGE_HEAP[0].0, b"small now", None);
    let _ = s.delete(IMAGE_HEAP[2].0);
    for name in IMAGE_COUNTERS
        .iter()
        .chain(&["new-counter", "another", "third"])
    {
        if let Ok(c) = s.counter(name) {
            c.add(1);
            c.fetch_max(i64::from(byte(4)));
            c.swap(c.get());
            c.set(3);
            let _ = c.name();
        }
    }
    let _ = s.counters();
    clock.advance(Duration::from_secs(1));
    let _ = s.flush_expired();
    let _ = s.delete_prefix(b"k");
    scan_all(s, b"");
    if let Ok(rep) = s.verify() {
        let _ = rep.to_string();
    }
    let _ = s.clear();
    for k in &keys {
        let _ = s.set(k, &val, None);
        let _ = s.get(k);
    }
    let _ = s.set(IMAGE_HEAP[2].0, &pattern(IMAGE_HEAP[2].1, 1), None);
    let _ = s.stats();
    if let Ok(rep) = s.verify() {
        let _ = rep.to_string();
    }
}

/// A full scan for `prefix`, which must end: every call moves the cursor forward.
pub fn scan_all(s: &Store, prefix: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        match s.scan(cursor, prefix, 4) {
            Ok((page, next)) => {
                keys.extend(page);
                match next {
                    None => return Some(keys),
                    Some(n) => {
                        assert!(n > cursor, "scan cursor went from {cursor} to {n}");
                        cursor = n;
                    }
                }
            }
            Err(_) => return None,
        }
    }
}
