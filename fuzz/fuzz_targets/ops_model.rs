//! Differential: a fuzzer-chosen sequence of operations on `Store::anonymous` with a manual
//! clock, against a `BTreeMap` model with expiry times. Every result, including every typed
//! error (`KeyTooLong`, `ValueTooLarge`, `InvalidTtl`, `NotAnInteger`, `Overflow`,
//! `InvalidCounterName`, `TooManyCounters`), must be the one the model predicts; `verify()` must
//! be clean at the end.
//!
//! Values are 0 to 9 100 bytes (`max_value_len` 9 000, or 8), drawn biased to the edges of
//! the value heap: the 24/25-byte inline limit, each size class's largest payload and the next
//! byte, one and two tail blocks, page multiples and the bytes around them.
//!
//! Three configurations:
//! * `Roomy`: capacity far above the number of distinct keys, and memory above what every key
//!   the input can create, at 9 000 bytes each, takes in one shard, so `Full` never happens and
//!   the model is exact.
//! * `TinyRefuse`: capacity of a few entries and a heap of a few pages, `WhenFull::Refuse`.
//!   `Full` is accepted for a write that would create a key (the key is not live in the model)
//!   or that stores a value longer than 24 bytes (the heap may be full); the key then keeps its
//!   previous value (or stays absent). Nothing else is ever lost.
//! * `TinyEvict`: as above with `WhenFull::Evict`. After each write (`Full` included), the
//!   store's eviction count says how many other live keys it dropped; exactly that many model
//!   keys must have vanished (and are removed from the model), every other key must be
//!   unchanged.
//!
//! Expired entries stay in the model until deleted, overwritten or flushed; the store reclaims
//! them lazily, so they are never visible in either, and `len()` must lie between the model's
//! live count and its total.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmstate::{Clock, Config, Error, ManualClock, Store, Ttl, WhenFull};

const MAX_COUNTERS: u32 = 3;

#[derive(Debug, Arbitrary)]
enum Mode {
    Roomy,
    TinyRefuse,
    TinyEvict,
}

#[derive(Debug, Arbitrary)]
enum Start {
    Normal(u32),
    /// Close to the end of time: TTLs overflow, the clock stops short of wrapping.
    NearMax(u32),
}

#[derive(Debug, Arbitrary)]
struct Setup {
    mode: Mode,
    shards: u8,
    capacity: u8,
    /// max_key_len 5 instead of 16 (keys of 6..8 bytes fit the slot's rounded room but must
    /// still be refused).
    short_keys: bool,
    /// max_value_len 8 instead of 9 000 (`incr` results can then be too large).
    small_values: bool,
    /// Tiny configurations: the region's memory (none: derived from the capacity, about 5
    /// heap pages; else 256 or 512 KiB).
    tiny_memory: u8,
    start: Start,
}

/// `max_value_len` unless `small_values`.
const MAX_VALUE: usize = 9000;

/// Value lengths at the heap's edges: inline limit, the largest payload of each size class
/// (`src/heap/class.rs`: block size - 8) and one more, one and two tail blocks (2040, 4080),
/// whole pages, a page and a tail or two, the short-page rule (a remainder past 4080 bytes
/// takes a page), and the limit.
const EDGES: [usize; 30] = [
    0, 1, 8, 23, 24, 25, 56, 57, 104, 105, 504, 505, 1016, 1017, 1352, 1353, 2040, 2041, 4080,
    4081, 4095, 4096, 4097, 6136, 8176, 8177, 8192, 8193, 9000, 9001,
];

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Size {
    /// `EDGES[i]`, plus 0..=2.
    Edge(u8, u8),
    /// 0 ..= 9 100.
    Any(u16),
}

impl Size {
    fn len(self) -> usize {
        match self {
            Size::Edge(i, d) => EDGES[usize::from(i) % EDGES.len()] + usize::from(d % 3),
            Size::Any(n) => usize::from(n) % 9101,
        }
    }
}

/// `len` bytes that say which value they are (`seed`) and where each byte is.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ seed)
        .collect()
}

/// Keys from a small set, so that operations collide and prefixes overlap.
const KEYS: [&[u8]; 14] = [
    b"",
    b"a",
    b"ab",
    b"abc",
    b"abcd",
    b"b",
    b"ba",
    b"k:1",
    b"k:2",
    b"k:10",
    b"12345",
    b"123456",
    b"0123456789abcdef",
    b"0123456789abcdefg",
];

#[derive(Debug, Arbitrary)]
enum KeyArg {
    Fixed(u8),
    /// One of 40 short numbered keys: enough to fill the tiny configurations.
    Num(u8),
    /// Longer than any max_key_len used here.
    Long(u8),
    Raw(Vec<u8>),
}

impl KeyArg {
    fn bytes(&self) -> Vec<u8> {
        match self {
            KeyArg::Fixed(i) => KEYS[usize::from(*i) % KEYS.len()].to_vec(),
            KeyArg::Num(i) => format!("n{}", i % 40).into_bytes(),
            KeyArg::Long(n) => vec![b'z'; 17 + usize::from(*n % 40)],
            KeyArg::Raw(v) => v.iter().take(20).copied().collect(),
        }
    }
}

const VALUES: [&[u8]; 14] = [
    b"",
    b"0",
    b"1",
    b"-1",
    b"42",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775808",
    b"007",
    b"-0",
    b"+1",
    b" 1",
    b"x",
    b"hello, world",
];

#[derive(Debug, Arbitrary)]
enum ValArg {
    Fixed(u8),
    Int(i64),
    Raw(Vec<u8>),
    /// A value of a drawn size (mostly heap-sized), its bytes a pattern of `seed`.
    Sized(Size, u8),
}

impl ValArg {
    fn bytes(&self) -> Vec<u8> {
        match self {
            ValArg::Fixed(i) => VALUES[usize::from(*i) % VALUES.len()].to_vec(),
            ValArg::Int(n) => n.to_string().into_bytes(),
            ValArg::Raw(v) => v.iter().take(40).copied().collect(),
            ValArg::Sized(n, seed) => pattern(n.len(), *seed),
        }
    }
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum TtlArg {
    None,
    Ms(u16),
    Nanos(u32),
    Secs(u64),
}

impl TtlArg {
    fn duration(self) -> Option<Duration> {
        match self {
            TtlArg::None => None,
            TtlArg::Ms(ms) => Some(Duration::from_millis(u64::from(ms))),
            TtlArg::Nanos(n) => Some(Duration::from_nanos(u64::from(n))),
            TtlArg::Secs(s) => Some(Duration::from_secs(s)),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Delta {
    Small(i8),
    Any(i64),
    Max,
    Min,
}

impl Delta {
    fn get(&self) -> i64 {
        match self {
            Delta::Small(d) => i64::from(*d),
            Delta::Any(d) => *d,
            Delta::Max => i64::MAX,
            Delta::Min => i64::MIN,
        }
    }
}

const COUNTER_NAMES: [&str; 5] = ["hits", "misses", "bytes", "errors", "x"];

#[derive(Debug, Arbitrary)]
enum NameArg {
    Fixed(u8),
    /// Possibly empty, with NUL, or longer than 112 bytes.
    Raw(String),
    Long(u8),
}

impl NameArg {
    fn name(&self) -> String {
        match self {
            NameArg::Fixed(i) => COUNTER_NAMES[usize::from(*i) % COUNTER_NAMES.len()].to_owned(),
            NameArg::Raw(s) => s.clone(),
            NameArg::Long(n) => "c".repeat(110 + usize::from(*n % 8)),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum CounterOp {
    Add(i64),
    Get,
    Set(i64),
    FetchMax(i64),
    Swap(i64),
}

#[derive(Debug, Arbitrary)]
enum Op {
    Get(KeyArg),
    GetInto(KeyArg),
    Contains(KeyArg),
    Ttl(KeyArg),
    Set(KeyArg, ValArg, TtlArg),
    Add(KeyArg, ValArg, TtlArg),
    Replace(KeyArg, ValArg, TtlArg),
    Delete(KeyArg),
    Cas(KeyArg, Option<ValArg>, Option<ValArg>, TtlArg),
    Incr(KeyArg, Delta, TtlArg),
    Expire(KeyArg, TtlArg),
    /// `Set` of numbered keys `first..first + count`, value `x` (fills the tiny stores fast).
    Fill {
        first: u8,
        count: u8,
        ttl: TtlArg,
    },
    /// `Set` of numbered keys `first..first + count` to values of a drawn size (fills the
    /// heap).
    FillHeap {
        first: u8,
        count: u8,
        size: Size,
    },
    Advance(u16),
    AdvanceFar(u32),
    Clear,
    FlushExpired,
    Scan {
        prefix: KeyArg,
        limit: u8,
    },
    ScanFrom {
        cursor: u64,
        prefix: KeyArg,
        limit: u8,
    },
    DeletePrefix(KeyArg),
    Counter(NameArg, CounterOp),
    Counters,
    Stats,
}

#[derive(Debug, Arbitrary)]
struct Input {
    setup: Setup,
    ops: Vec<Op>,
}

/// The errors the model predicts (`Error` itself is not `PartialEq`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum E {
    KeyTooLong {
        len: usize,
        max: usize,
    },
    ValueTooLarge {
        len: usize,
        max: usize,
    },
    InvalidTtl(&'static str),
    NotAnInteger,
    Overflow,
    Full,
    InvalidCounterName(&'static str),
    TooManyCounters(usize),
    /// Anything else: never predicted, so always a mismatch.
    Other(String),
}

fn classify(e: Error) -> E {
    match e {
        Error::KeyTooLong { len, max } => E::KeyTooLong { len, max },
        Error::ValueTooLarge { len, max } => E::ValueTooLarge { len, max },
        Error::InvalidTtl { reason } => E::InvalidTtl(reason),
        Error::NotAnInteger => E::NotAnInteger,
        Error::Overflow => E::Overflow,
        Error::Full => E::Full,
        Error::InvalidCounterName { reason } => E::InvalidCounterName(reason),
        Error::TooManyCounters { max } => E::TooManyCounters(max),
        other => E::Other(other.to_string()),
    }
}

fn got<T>(r: shmstate::Result<T>) -> Result<T, E> {
    r.map_err(classify)
}

/// A canonical decimal i64, as `incr` accepts it (no sign but `-`, no leading zero, no `-0`):
/// exactly the strings `i64::to_string` produces.
fn canonical_int(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let n: i64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

struct Model {
    now: u64,
    max_key: usize,
    max_value: usize,
    /// key -> (value, expires_ms; 0 = never). Expired entries stay until removed.
    map: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
    counters: BTreeMap<String, i64>,
}

impl Model {
    fn is_live(&self, e: u64) -> bool {
        e == 0 || self.now < e
    }
    fn live(&self, k: &[u8]) -> Option<(Vec<u8>, u64)> {
        match self.map.get(k) {
            Some((v, e)) if self.is_live(*e) => Some((v.clone(), *e)),
            _ => None,
        }
    }
    fn live_keys(&self) -> impl Iterator<Item = &Vec<u8>> + '_ {
        self.map
            .iter()
            .filter(|(_, (_, e))| self.is_live(*e))
            .map(|(k, _)| k)
    }
    fn check_key(&self, k: &[u8]) -> Result<(), E> {
        if k.len() > self.max_key {
            return Err(E::KeyTooLong {
                len: k.len(),
                max: self.max_key,
            });
        }
        Ok(())
    }
    fn check_value(&self, v: &[u8]) -> Result<(), E> {
        if v.len() > self.max_value {
            return Err(E::ValueTooLarge {
                len: v.len(),
                max: self.max_value,
            });
        }
        Ok(())
    }
    fn expiry(&self, t: TtlArg) -> Result<u64, E> {
        let Some(d) = t.duration() else { return Ok(0) };
        let ms = d.as_nanos().div_ceil(1_000_000);
        if ms == 0 {
            return Err(E::InvalidTtl("zero"));
        }
        u64::try_from(ms)
            .ok()
            .and_then(|ms| ms.checked_add(self.now))
            .ok_or(E::InvalidTtl("too large"))
    }
    fn check_counter_name(&self, name: &str) -> Result<(), E> {
        if name.is_empty() {
            Err(E::InvalidCounterName("empty"))
        } else if name.len() > 112 {
            Err(E::InvalidCounterName("longer than 112 bytes"))
        } else if name.contains('\0') {
            Err(E::InvalidCounterName("contains a NUL byte"))
        } else if !self.counters.contains_key(name) && self.counters.len() == MAX_COUNTERS as usize
        {
            Err(E::TooManyCounters(MAX_COUNTERS as usize))
        } else {
            Ok(())
        }
    }
}

struct Run {
    s: Store,
    clock: ManualClock,
    m: Model,
    tiny: bool,
    evicts: bool,
}

impl Run {
    fn evictions(&self) -> u64 {
        self.s.stats().evictions
    }

    /// Compares the outcome of a write of `k` (`stored`: the length of the value it stores, if
    /// it stores one). `Full` is accepted in the tiny configurations for a write that would
    /// create the key or that stores a heap value (nothing changes then; returns false). In the
    /// evicting configuration, the keys the store evicted are found and dropped from the model.
    fn write_outcome(
        &mut self,
        k: &[u8],
        evictions_before: u64,
        want: &Result<bool, E>,
        have: &Result<bool, E>,
        stored: Option<usize>,
    ) -> bool {
        let writes = stored.is_some() && want == &Ok(true);
        let creates = writes && self.m.live(k).is_none();
        let heap = writes && stored > Some(24);
        let refused = self.tiny && (creates || heap) && have == &Err(E::Full);
        if !refused {
            assert_eq!(have, want, "key {k:?}");
        }
        self.evicted(k, evictions_before);
        !refused
    }

    /// Finds the keys (other than `k`) the store evicted since its eviction count was
    /// `evictions_before`, and drops them from the model.
    fn evicted(&mut self, k: &[u8], evictions_before: u64) {
        let evicted = self.evictions() - evictions_before;
        if evicted > 0 {
            assert!(self.evicts, "{evicted} evictions under WhenFull::Refuse");
            let live: Vec<Vec<u8>> = self
                .m
                .live_keys()
                .filter(|x| x.as_slice() != k)
                .cloned()
                .collect();
            let mut gone = 0;
            for x in live {
                match self.s.get(&x) {
                    Ok(None) => {
                        self.m.map.remove(&x);
                        gone += 1;
                    }
                    Ok(Some(v)) => {
                        assert_eq!(Some(v), self.m.live(&x).map(|(v, _)| v), "key {x:?}")
                    }
                    Err(e) => panic!("get {x:?} after an eviction: {e}"),
                }
            }
            assert_eq!(gone, evicted, "evicted keys");
        }
    }

    fn scan_all(&self, prefix: &[u8], limit: u8) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut cursor = 0;
        loop {
            let (page, next) = self
                .s
                .scan(cursor, prefix, usize::from(limit))
                .expect("scan");
            assert!(
                page.len() <= usize::from(limit).max(1),
                "page of {}",
                page.len()
            );
            out.extend(page);
            match next {
                None => break,
                Some(n) => {
                    assert!(n > cursor, "scan cursor {cursor} -> {n}");
                    cursor = n;
                }
            }
        }
        out
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Get(k) => {
                let k = k.bytes();
                let want = self
                    .m
                    .check_key(&k)
                    .map(|()| self.m.live(&k).map(|(v, _)| v));
                assert_eq!(got(self.s.get(&k)), want, "get {k:?}");
            }
            Op::GetInto(k) => {
                let k = k.bytes();
                let want = self
                    .m
                    .check_key(&k)
                    .map(|()| self.m.live(&k).map(|(v, _)| v));
                let mut buf = b"stale contents".to_vec();
                let have = got(self.s.get_into(&k, &mut buf));
                match want {
                    Ok(Some(v)) => {
                        assert_eq!(have, Ok(true), "get_into {k:?}");
                        assert_eq!(buf, v, "get_into {k:?}");
                    }
                    Ok(None) => {
                        assert_eq!(have, Ok(false), "get_into {k:?}");
                        assert!(buf.is_empty(), "get_into {k:?} left {buf:?}");
                    }
                    Err(e) => assert_eq!(have, Err(e), "get_into {k:?}"),
                }
            }
            Op::Contains(k) => {
                let k = k.bytes();
                let want = self.m.check_key(&k).map(|()| self.m.live(&k).is_some());
                assert_eq!(got(self.s.contains(&k)), want, "contains {k:?}");
            }
            Op::Ttl(k) => {
                let k = k.bytes();
                let want = self.m.check_key(&k).map(|()| match self.m.live(&k) {
                    None => Ttl::NoKey,
                    Some((_, 0)) => Ttl::NoExpiry,
                    Some((_, e)) => Ttl::ExpiresIn(Duration::from_millis(e - self.m.now)),
                });
                assert_eq!(got(self.s.ttl(&k)), want, "ttl {k:?}");
            }
            Op::Set(k, v, t) | Op::Add(k, v, t) | Op::Replace(k, v, t) => {
                let (k, v) = (k.bytes(), v.bytes());
                let before = self.evictions();
                let want = self
                    .m
                    .check_key(&k)
                    .and_then(|()| self.m.check_value(&v))
                    .and_then(|()| self.m.expiry(*t))
                    .map(|e| {
                        let live = self.m.live(&k).is_some();
                        let store = match op {
                            Op::Add(..) => !live,
                            Op::Replace(..) => live,
                            _ => true,
                        };
                        (store, e)
                    });
                let have = got(match op {
                    Op::Add(..) => self.s.add(&k, &v, t.duration()),
                    Op::Replace(..) => self.s.replace(&k, &v, t.duration()),
                    _ => self.s.set(&k, &v, t.duration()).map(|()| true),
                });
                let want_flag = want.clone().map(|(b, _)| b);
                if self.write_outcome(&k, before, &want_flag, &have, Some(v.len())) {
                    if let Ok((true, e)) = want {
                        self.m.map.insert(k, (v, e));
                    }
                }
            }
            Op::Delete(k) => {
                let k = k.bytes();
                let want = self.m.check_key(&k).map(|()| self.m.live(&k).is_some());
                assert_eq!(got(self.s.delete(&k)), want, "delete {k:?}");
                if want.is_ok() {
                    self.m.map.remove(&k);
                }
            }
            Op::Cas(k, exp, new, t) => {
                let k = k.bytes();
                let exp = exp.as_ref().map(ValArg::bytes);
                let new = new.as_ref().map(ValArg::bytes);
                let before = self.evictions();
                let cur = self.m.live(&k).map(|(v, _)| v);
                let want = self
                    .m
                    .check_key(&k)
                    .and_then(|()| new.as_ref().map_or(Ok(()), |v| self.m.check_value(v)))
                    .and_then(|()| self.m.expiry(*t))
                    .map(|e| (cur == exp, e));
                let have =
                    got(self
                        .s
                        .compare_and_swap(&k, exp.as_deref(), new.as_deref(), t.duration()));
                let want_flag = want.clone().map(|(b, _)| b);
                let stored = new.as_ref().map(Vec::len);
                if self.write_outcome(&k, before, &want_flag, &have, stored) {
                    if let Ok((true, e)) = want {
                        match new {
                            Some(v) => {
                                self.m.map.insert(k, (v, e));
                            }
                            // Deleting a live key removes it; "absent stays absent" leaves an
                            // expired entry to lazy reclamation, as the store does.
                            None if cur.is_some() => {
                                self.m.map.remove(&k);
                            }
                            None => {}
                        }
                    }
                }
            }
            Op::Incr(k, d, t) => {
                let k = k.bytes();
                let d = d.get();
                let before = self.evictions();
                let want: Result<(i64, u64), E> =
                    self.m.check_key(&k).and_then(|()| match self.m.live(&k) {
                        Some((v, e)) => {
                            let old = canonical_int(&v).ok_or(E::NotAnInteger)?;
                            let new = old.checked_add(d).ok_or(E::Overflow)?;
                            self.m.check_value(new.to_string().as_bytes())?;
                            Ok((new, e))
                        }
                        None => {
                            self.m.check_value(d.to_string().as_bytes())?;
                            Ok((d, self.m.expiry(*t)?))
                        }
                    });
                let have = got(self.s.incr(&k, d, t.duration()));
                let creates = want.is_ok() && self.m.live(&k).is_none();
                if !(self.tiny && creates && have == Err(E::Full)) {
                    let want_n = want.clone().map(|(n, _)| n);
                    assert_eq!(have, want_n, "incr {k:?} by {d}");
                    if let Ok((n, e)) = want {
                        self.m
                            .map
                            .insert(k.clone(), (n.to_string().into_bytes(), e));
                    }
                }
                self.evicted(&k, before);
            }
            Op::Expire(k, t) => {
                let k = k.bytes();
                let want = self
                    .m
                    .check_key(&k)
                    .and_then(|()| self.m.expiry(*t))
                    .map(|e| (self.m.live(&k).is_some(), e));
                let have = got(self.s.expire(&k, t.duration()));
                assert_eq!(have, want.clone().map(|(b, _)| b), "expire {k:?}");
                if let Ok((true, e)) = want {
                    if let Some(entry) = self.m.map.get_mut(&k) {
                        entry.1 = e;
                    }
                }
            }
            Op::Fill { first, count, ttl } => {
                for i in 0..count % 40 {
                    let set = Op::Set(KeyArg::Num(first.wrapping_add(i)), ValArg::Fixed(12), *ttl);
                    self.step(&set);
                }
            }
            Op::FillHeap { first, count, size } => {
                for i in 0..count % 40 {
                    let v = ValArg::Sized(*size, first.wrapping_add(i));
                    let set = Op::Set(KeyArg::Num(first.wrapping_add(i)), v, TtlArg::None);
                    self.step(&set);
                }
            }
            Op::Advance(ms) => self.advance(u64::from(*ms)),
            Op::AdvanceFar(ms) => self.advance(u64::from(*ms) * 1000),
            Op::Clear => {
                let len = self.s.len();
                assert_eq!(got(self.s.clear()), Ok(len), "clear");
                self.m.map.clear();
            }
            Op::FlushExpired => {
                let now = self.m.now;
                let before = self.m.map.len();
                self.m.map.retain(|_, (_, e)| *e == 0 || now < *e);
                let expired = (before - self.m.map.len()) as u64;
                // The store may have reclaimed some expired entries lazily already.
                let n = self.s.flush_expired().expect("flush_expired");
                assert!(n <= expired, "flushed {n} of {expired} expired");
                assert_eq!(self.s.len(), self.m.map.len() as u64, "len after flush");
            }
            Op::Scan { prefix, limit } => {
                let p = prefix.bytes();
                let mut keys = self.scan_all(&p, *limit);
                let n = keys.len();
                keys.sort();
                keys.dedup();
                assert_eq!(keys.len(), n, "scan returned a key twice");
                let want: Vec<Vec<u8>> = self
                    .m
                    .live_keys()
                    .filter(|k| k.starts_with(&p))
                    .cloned()
                    .collect();
                assert_eq!(keys, want, "scan {p:?}");
            }
            Op::ScanFrom {
                cursor,
                prefix,
                limit,
            } => {
                let p = prefix.bytes();
                let (page, next) = self.s.scan(*cursor, &p, usize::from(*limit)).expect("scan");
                assert!(page.len() <= usize::from(*limit).max(1));
                if let Some(n) = next {
                    assert!(n > *cursor, "scan cursor {cursor} -> {n}");
                }
                let set: BTreeSet<&Vec<u8>> = page.iter().collect();
                assert_eq!(set.len(), page.len(), "scan page repeats a key");
                for k in &page {
                    assert!(
                        k.starts_with(&p) && self.m.live(k).is_some(),
                        "scan {p:?} returned {k:?}"
                    );
                }
            }
            Op::DeletePrefix(prefix) => {
                let p = prefix.bytes();
                let live = self.m.live_keys().filter(|k| k.starts_with(&p)).count() as u64;
                assert_eq!(
                    got(self.s.delete_prefix(&p)),
                    Ok(live),
                    "delete_prefix {p:?}"
                );
                // Expired entries with the prefix go too (uncounted).
                self.m.map.retain(|k, _| !k.starts_with(&p));
            }
            Op::Counter(name, cop) => {
                let name = name.name();
                let want = self.m.check_counter_name(&name);
                match (got(self.s.counter(&name)), want) {
                    (Ok(c), Ok(())) => {
                        assert_eq!(c.name(), name);
                        let v = self.m.counters.entry(name).or_insert(0);
                        assert_eq!(c.get(), *v);
                        match cop {
                            CounterOp::Add(d) => {
                                *v = v.wrapping_add(*d);
                                assert_eq!(c.add(*d), *v);
                            }
                            CounterOp::Get => {}
                            CounterOp::Set(x) => {
                                c.set(*x);
                                *v = *x;
                            }
                            CounterOp::FetchMax(x) => {
                                assert_eq!(c.fetch_max(*x), *v);
                                *v = (*v).max(*x);
                            }
                            CounterOp::Swap(x) => {
                                assert_eq!(c.swap(*x), *v);
                                *v = *x;
                            }
                        }
                        assert_eq!(c.get(), *v);
                    }
                    (have, want) => {
                        assert_eq!(have.map(|c| c.name().to_owned()), want.map(|()| name))
                    }
                }
            }
            Op::Counters => {
                let mut have = self.s.counters().expect("counters");
                have.sort();
                let want: Vec<(String, i64)> = self
                    .m
                    .counters
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                assert_eq!(have, want, "counters");
            }
            Op::Stats => {
                let st = self.s.stats();
                assert_eq!(st.entries, self.s.len());
                assert_eq!(st.counters, self.m.counters.len() as u64);
                if !self.evicts {
                    assert_eq!(st.evictions, 0);
                }
                if !self.tiny {
                    assert_eq!(st.full_refusals, 0);
                }
            }
        }
        let len = self.s.len();
        let live = self.m.live_keys().count() as u64;
        assert!(
            len >= live && len <= self.m.map.len() as u64,
            "len {len}, model: {live} live of {}",
            self.m.map.len()
        );
    }

    fn advance(&mut self, ms: u64) {
        // The manual clock wraps on overflow; time must not go backwards here.
        if let Some(t) = self.m.now.checked_add(ms) {
            self.clock.advance(Duration::from_millis(ms));
            self.m.now = t;
        }
    }
}

fuzz_target!(|input: Input| {
    let st = &input.setup;
    let (tiny, evicts) = match st.mode {
        Mode::Roomy => (false, false),
        Mode::TinyRefuse => (true, false),
        Mode::TinyEvict => (true, true),
    };
    let max_key = if st.short_keys { 5 } else { 16 };
    let max_value = if st.small_values { 8 } else { MAX_VALUE as u32 };
    let memory = match (tiny, st.tiny_memory % 3) {
        // At most ~300 live values (40 numbered and 14 fixed keys, and a raw key per op) of at
        // most 2 whole pages, a 816-byte tail and an extent block each, plus a partial page
        // per class: about 700 pages, under 3 MiB, in any one of up to 4 shards.
        (false, _) => Some(16 << 20),
        (true, 0) => None,
        (true, 1) => Some(256 << 10),
        (true, _) => Some(512 << 10),
    };
    let mut cfg = Config::new()
        .capacity(if tiny {
            1 + u64::from(st.capacity % 8)
        } else {
            1024
        })
        .shards(if tiny {
            1
        } else {
            1 + u32::from(st.shards % 4)
        })
        .max_key_len(max_key)
        .max_value_len(max_value)
        .max_counters(MAX_COUNTERS)
        .when_full(if evicts {
            WhenFull::Evict
        } else {
            WhenFull::Refuse
        });
    if let Some(m) = memory {
        cfg = cfg.memory(m);
    }
    let now = match st.start {
        Start::Normal(t) => 1_700_000_000_000 + u64::from(t),
        Start::NearMax(t) => u64::MAX - u64::from(t),
    };
    let clock = ManualClock::new(now);
    let s = Store::anonymous(&cfg)
        .expect("anonymous store")
        .with_clock(Clock::Manual(clock.clone()));
    let mut run = Run {
        s,
        clock,
        m: Model {
            now,
            max_key: max_key as usize,
            max_value: max_value as usize,
            map: BTreeMap::new(),
            counters: BTreeMap::new(),
        },
        tiny,
        evicts,
    };
    for op in input.ops.iter().take(256) {
        run.step(op);
    }
    for (k, _) in run.m.map.clone() {
        assert_eq!(
            run.s.get(&k).expect("final get"),
            run.m.live(&k).map(|(v, _)| v),
            "final {k:?}"
        );
    }
    let rep = run.s.verify().expect("verify");
    assert!(rep.is_ok(), "{rep}");
});
