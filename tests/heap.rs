//! The value heap under load, and its space-making rules one by one.
//!
//! * `churn_refuse` / `churn_evict`: the store kept near full for many operations while the mix
//!   of value sizes shifts (small values, then 2-16 KiB, then the issue's mix, then small
//!   again), deleting and refilling. After each phase the store is refilled until writes are
//!   refused (or evict), and then: `verify()` is clean, every value reads back, the heap's value
//!   bytes equal the live values' bytes, and the heap holds at least [`MIN_FILL`] of its bytes
//!   as value bytes. At the end, deleting every key frees the whole heap. Sized for CI in a
//!   debug build (`CHURN_OPS` operations per phase, two policies, a few seconds);
//!   `SHMSTATE_CHURN_SCALE=n` multiplies the operations (and the time limit) by `n`.
//! * The unit checks: a value that cannot fit gets `Error::Full` and nothing is written (a
//!   refused overwrite keeps the old value); expired entries are reclaimed to make room (and
//!   nothing else is removed under `WhenFull::Refuse`); compaction turns the free blocks of
//!   half-empty pages back into whole pages; `largest_value` is honest; eviction stops after
//!   1024 entries per insert.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shmstate::{Clock, Config, Error, ManualClock, Stats, Store, WhenFull};

/// Operations per phase in the CI-sized run (times `SHMSTATE_CHURN_SCALE`).
const CHURN_OPS: u64 = 3_000;
/// The least share of the heap that holds value bytes after a refill, in every phase. The
/// measured figures (README of this test's report) are 0.80-0.94; the losses are the size
/// classes' rounding (up to 1.5x between neighbours, 1.1-1.2x on average), the 8-byte block
/// header, and shards that refuse a value while another still has room.
const MIN_FILL: f64 = 0.75;

/// `cfg` with the least `memory` that gives its shards `pages` heap pages in all.
fn with_heap_pages(cfg: Config, pages: u64) -> Config {
    let heap_pages = |m: u64| {
        Store::anonymous(&cfg.clone().memory(m)).map_or(0, |s| s.stats().heap_bytes / 4096)
    };
    let (mut lo, mut hi) = (0u64, 64u64 << 20);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if heap_pages(mid) >= pages {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    assert_eq!(heap_pages(lo), pages, "no memory size gives {pages} pages");
    cfg.memory(lo)
}

fn scale() -> u64 {
    std::env::var("SHMSTATE_CHURN_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }
}

/// A value that names its key, generation and length: any mix-up shows.
fn value(id: u64, gen: u32, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let seed = (id as u32).wrapping_mul(0x9e37_79b9) ^ gen.wrapping_mul(0x85eb_ca6b);
    let head = (id << 20 ^ u64::from(gen)).to_le_bytes();
    v.extend_from_slice(&head[..len.min(8)]);
    v.extend((v.len()..len).map(|i| (seed.wrapping_add(i as u32 * 31) >> 3) as u8));
    v
}

fn key(id: u64) -> [u8; 8] {
    id.to_le_bytes()
}

/// The keys a store should hold, with (generation, length) each.
#[derive(Default)]
struct Model {
    live: HashMap<u64, (u32, usize, usize)>, // id -> (gen, len, index in `ids`)
    ids: Vec<u64>,
}

impl Model {
    fn put(&mut self, id: u64, gen: u32, len: usize) {
        match self.live.get_mut(&id) {
            Some(e) => {
                e.0 = gen;
                e.1 = len;
            }
            None => {
                self.live.insert(id, (gen, len, self.ids.len()));
                self.ids.push(id);
            }
        }
    }
    fn remove(&mut self, id: u64) {
        if let Some((_, _, i)) = self.live.remove(&id) {
            self.ids.swap_remove(i);
            if let Some(&moved) = self.ids.get(i) {
                self.live.get_mut(&moved).unwrap().2 = i;
            }
        }
    }
    fn pick(&self, rng: &mut Rng) -> Option<u64> {
        (!self.ids.is_empty()).then(|| self.ids[rng.below(self.ids.len() as u64) as usize])
    }
    /// Bytes of the values stored in the heap (longer than the 24-byte inline limit).
    fn heap_payload(&self) -> u64 {
        self.live
            .values()
            .filter(|e| e.1 > 24)
            .map(|e| e.1 as u64)
            .sum()
    }
    fn inline_payload(&self) -> u64 {
        self.live
            .values()
            .filter(|e| e.1 <= 24)
            .map(|e| e.1 as u64)
            .sum()
    }
}

#[derive(Clone, Copy)]
enum Mix {
    /// 1-300 bytes (about a twelfth inline).
    Small,
    /// 2-16 KiB.
    Large,
    /// The issue's mix: 8 B 40%, 200 B 40%, 2 KiB 15%, 16 KiB 5%.
    Issue,
}

impl Mix {
    fn len(self, rng: &mut Rng) -> usize {
        match self {
            Mix::Small => rng.range(1, 300),
            Mix::Large => rng.range(2048, 16384),
            Mix::Issue => match rng.below(100) {
                0..=39 => 8,
                40..=79 => 200,
                80..=94 => 2048,
                _ => 16384,
            },
        }
    }
}

struct Churn {
    store: Store,
    model: Model,
    rng: Rng,
    next_id: u64,
    gen: u32,
    policy: WhenFull,
    deadline: Instant,
}

impl Churn {
    fn new(policy: WhenFull, scale: u64) -> Self {
        // 1 MiB of heap in 4 shards (64 pages each), and slots for more small values than it
        // holds (a refused insert scans its shard's slots for expired entries: few slots per
        // shard keep the debug build fast).
        let cfg = Config::new()
            .capacity(8_000)
            .shards(4)
            .max_key_len(8)
            .max_value_len(16384)
            .when_full(policy);
        Churn {
            store: Store::anonymous(&with_heap_pages(cfg, 256)).unwrap(),
            model: Model::default(),
            rng: Rng(0x2545_f491_4f6c_dd1d),
            next_id: 0,
            gen: 0,
            policy,
            deadline: Instant::now() + Duration::from_secs(120 * scale),
        }
    }

    /// Writes a new or existing key; on `Full` (Refuse) the model keeps the old state and the
    /// store must too (checked at the end of the phase).
    fn set(&mut self, id: u64, len: usize) -> bool {
        self.gen += 1;
        let gen = self.gen;
        match self.store.set(&key(id), &value(id, gen, len), None) {
            Ok(()) => {
                self.model.put(id, gen, len);
                true
            }
            Err(Error::Full) => false,
            Err(e) => panic!("set: {e}"),
        }
    }

    fn delete(&mut self, id: u64) {
        let was = self.store.delete(&key(id)).unwrap();
        // Under Evict the key may have been evicted already.
        assert!(
            was || self.policy == WhenFull::Evict,
            "a live key was missing"
        );
        self.model.remove(id);
    }

    /// One operation of the churn: mostly new keys (a refused one makes room by deleting a
    /// random key), some overwrites with a new size, some deletes.
    fn step(&mut self, mix: Mix) {
        let len = mix.len(&mut self.rng);
        match self.rng.below(100) {
            0..=54 => {
                let id = self.next_id;
                self.next_id += 1;
                if !self.set(id, len) {
                    if let Some(victim) = self.model.pick(&mut self.rng) {
                        self.delete(victim);
                    }
                }
            }
            55..=79 => {
                if let Some(id) = self.model.pick(&mut self.rng) {
                    self.set(id, len);
                }
            }
            _ => {
                if let Some(id) = self.model.pick(&mut self.rng) {
                    self.delete(id);
                }
            }
        }
    }

    /// New keys until the store is full. Refuse: 64 heap values in a row refused. Evict: 256
    /// inserts that evicted, ending with one that did (the store then stays full, at whatever
    /// share of the heap eviction keeps filled).
    fn refill(&mut self, mix: Mix) {
        let mut evictions = self.store.stats().evictions;
        let (mut in_a_row, mut evicting) = (0, 0);
        for _ in 0..1_000_000 {
            let len = mix.len(&mut self.rng);
            let id = self.next_id;
            self.next_id += 1;
            let stored = self.set(id, len);
            let done = match self.policy {
                WhenFull::Refuse => {
                    // Inline values need no heap: they neither prove nor disprove it is full.
                    if len > 24 {
                        in_a_row = if stored { 0 } else { in_a_row + 1 };
                    }
                    in_a_row >= 64
                }
                _ => {
                    let e = self.store.stats().evictions;
                    let evicted = std::mem::replace(&mut evictions, e) < e;
                    evicting += u32::from(evicted);
                    evicted && evicting >= 256
                }
            };
            if done {
                return;
            }
            assert!(Instant::now() < self.deadline, "refill ran out of time");
        }
        panic!("refill never filled the store");
    }

    /// Every key reads back as the model says (evicted keys leave the model); the heap's value
    /// bytes are the model's; verify() is clean.
    fn check(&mut self, phase: &str) -> Stats {
        let rep = self.store.verify().unwrap();
        assert!(rep.is_ok(), "{phase}: {rep}");
        let mut buf = Vec::new();
        let mut evicted = Vec::new();
        for (&id, &(gen, len, _)) in &self.model.live {
            if self.store.get_into(&key(id), &mut buf).unwrap() {
                assert!(
                    buf == value(id, gen, len),
                    "{phase}: key {id} holds a wrong value"
                );
            } else {
                assert_eq!(self.policy, WhenFull::Evict, "{phase}: key {id} lost");
                evicted.push(id);
            }
        }
        for id in evicted {
            self.model.remove(id);
        }
        let st = self.store.stats();
        assert_eq!(st.entries, self.model.live.len() as u64, "{phase}: entries");
        assert_eq!(
            st.value_bytes,
            self.model.heap_payload(),
            "{phase}: value bytes"
        );
        st
    }

    fn run(&mut self, ops: u64) {
        let phases = [
            ("small", Mix::Small),
            ("2-16 KiB", Mix::Large),
            ("issue mix", Mix::Issue),
            ("small again", Mix::Small),
        ];
        let t = Instant::now();
        let mut total = 0;
        for (name, mix) in phases {
            let (sets0, ev0) = (self.store.stats().sets, self.store.stats().evictions);
            for _ in 0..ops {
                self.step(mix);
                total += 1;
                assert!(Instant::now() < self.deadline, "churn ran out of time");
            }
            self.refill(mix);
            let st = self.check(name);
            let fill = st.value_bytes as f64 / st.heap_bytes as f64;
            let per_set = (st.evictions - ev0) as f64 / (st.sets - sets0) as f64;
            println!(
                "{:?} {name:>12}: {} entries, heap {} KiB, value bytes {:.1}% of it \
                 (+ {} KiB inline in slots), free {:.1}% ({:.0}% of that in partial pages), \
                 largest value now {} B, evictions {} ({per_set:.2} per write), refusals {}",
                self.policy,
                st.entries,
                st.heap_bytes >> 10,
                100.0 * fill,
                self.model.inline_payload() >> 10,
                100.0 * st.heap_free_bytes as f64 / st.heap_bytes as f64,
                100.0 * st.fragmentation(),
                st.largest_value,
                st.evictions,
                st.full_refusals,
            );
            assert!(
                fill >= MIN_FILL,
                "{:?} {name}: the heap holds only {:.1}% value bytes after a refill",
                self.policy,
                100.0 * fill
            );
        }
        // Nothing leaked: with every key deleted, the whole heap is free.
        let ids = self.model.ids.clone();
        for id in ids {
            self.delete(id);
        }
        let st = self.store.stats();
        assert_eq!(st.entries, 0);
        assert_eq!(
            st.value_bytes, 0,
            "value bytes left after deleting everything"
        );
        assert_eq!(
            st.heap_free_bytes, st.heap_bytes,
            "heap bytes still in use after deleting everything"
        );
        let rep = self.store.verify().unwrap();
        assert!(rep.is_ok(), "emptied: {rep}");
        println!(
            "{:?}: {total} operations (+ refills) in {:.2?}",
            self.policy,
            t.elapsed()
        );
    }
}

#[test]
fn churn_refuse() {
    let s = scale();
    Churn::new(WhenFull::Refuse, s).run(CHURN_OPS * s);
}

#[test]
fn churn_evict() {
    let s = scale();
    Churn::new(WhenFull::Evict, s).run(CHURN_OPS * s);
}

// ---------------------------------------------------------------------------------------------
// Unit checks, on one shard so that the figures are the shard's.

/// One shard, 16 pages of heap (64 KiB), room for about 100 entries.
fn one_shard(policy: WhenFull) -> Config {
    Config::new()
        .capacity(64)
        .shards(1)
        .max_key_len(8)
        .max_value_len(16384)
        .when_full(policy)
}

/// Every key and value, via scan + get.
fn contents(s: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let (keys, next) = s.scan(cursor, b"", 1000).unwrap();
        for k in keys {
            if let Some(v) = s.get(&k).unwrap() {
                out.push((k, v));
            }
        }
        match next {
            Some(n) => cursor = n,
            None => break,
        }
    }
    out.sort();
    out
}

fn heap_figures(s: &Store) -> (u64, u64, u64) {
    let st = s.stats();
    (
        st.value_bytes,
        st.heap_free_bytes,
        st.heap_partial_free_bytes,
    )
}

/// Fills with `len`-byte values until refused; returns how many were stored.
fn fill(s: &Store, first: u64, len: usize) -> u64 {
    let mut n = 0;
    while n < 100_000 {
        match s.set(&key(first + n), &value(first + n, 0, len), None) {
            Ok(()) => n += 1,
            Err(Error::Full) => return n,
            Err(e) => panic!("fill: {e}"),
        }
    }
    panic!("never full");
}

#[test]
fn a_value_that_cannot_fit_is_refused_whole() {
    let s = Store::anonymous(&one_shard(WhenFull::Refuse)).unwrap();
    let n = fill(&s, 0, 3000); // a page and a tail each
    assert!(n >= 10, "{n}");
    let before = contents(&s);
    let figures = heap_figures(&s);
    // New keys of each shape: refused, nothing written, no space taken.
    for len in [16384usize, 8192, 4097] {
        assert!(
            matches!(s.set(b"new", &value(9, 1, len), None), Err(Error::Full)),
            "{len}"
        );
        assert!(matches!(
            s.add(b"new", &value(9, 1, len), None),
            Err(Error::Full)
        ));
        assert!(matches!(
            s.compare_and_swap(b"new", None, Some(&value(9, 1, len)), None),
            Err(Error::Full)
        ));
        assert_eq!(s.get(b"new").unwrap(), None);
        assert_eq!(heap_figures(&s), figures, "{len}: the heap changed");
    }
    // A refused overwrite keeps the old value, whatever the way in.
    let k = key(3);
    let old = value(3, 0, 3000);
    let big = value(3, 1, 16384);
    assert!(matches!(s.set(&k, &big, None), Err(Error::Full)));
    assert!(matches!(s.replace(&k, &big, None), Err(Error::Full)));
    assert!(matches!(
        s.compare_and_swap(&k, Some(&old), Some(&big), None),
        Err(Error::Full)
    ));
    assert_eq!(s.get(&k).unwrap().as_deref(), Some(&old[..]));
    assert_eq!(contents(&s), before, "a refused write changed the store");
    assert_eq!(heap_figures(&s), figures);
    // Values that still fit are taken: inline always, and small blocks in the space left.
    s.set(b"inline", b"small enough", None).unwrap();
    let rep = s.verify().unwrap();
    assert!(rep.is_ok(), "{rep}");
    assert!(s.stats().full_refusals >= 12);
}

#[test]
fn expired_entries_are_reclaimed_for_space_and_nothing_else() {
    let clock = ManualClock::new(1_000_000);
    let s = Store::anonymous(&one_shard(WhenFull::Refuse))
        .unwrap()
        .with_clock(Clock::Manual(clock.clone()));
    // Alternate: a value with a TTL, one without, until full.
    let mut n = 0u64;
    loop {
        let ttl = n.is_multiple_of(2).then_some(Duration::from_secs(1));
        match s.set(&key(n), &value(n, 0, 5000), ttl) {
            Ok(()) => n += 1,
            Err(Error::Full) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(n >= 6, "{n}");
    clock.advance(Duration::from_secs(2));
    let live = contents(&s);
    assert_eq!(live.len() as u64, n / 2);
    let expired = n.div_ceil(2);
    // A value that needs the expired entries' room: they are all removed, and only they.
    let exp_before = s.stats().expirations;
    s.set(b"new", &value(99, 0, 8192), None).unwrap();
    assert_eq!(s.stats().expirations - exp_before, expired);
    let mut want = live.clone();
    want.push((b"new".to_vec(), value(99, 0, 8192)));
    want.sort();
    assert_eq!(contents(&s), want, "a live entry was removed to make room");
    // Refuse never goes further: filling up again, the refused writes remove no live entry.
    let refusals = s.stats().full_refusals;
    let more = fill(&s, 1000, 5000);
    assert_eq!(s.stats().full_refusals, refusals + 1);
    let now = contents(&s);
    assert_eq!(now.len(), want.len() + more as usize);
    for kv in &want {
        assert!(
            now.contains(kv),
            "a live entry was removed by a refused write"
        );
    }
    let rep = s.verify().unwrap();
    assert!(rep.is_ok(), "{rep}");
}

#[test]
fn compaction_turns_half_empty_pages_into_room() {
    // The heap full of 1 KiB values (four to a page), every other one deleted: half the heap is
    // free, but only in half-empty pages, and not one page is free.
    let s = Store::anonymous(&one_shard(WhenFull::Refuse)).unwrap();
    let n = fill(&s, 0, 1000);
    for i in (0..n).step_by(2) {
        assert!(s.delete(&key(i)).unwrap());
    }
    let st = s.stats();
    assert_eq!(
        st.heap_free_bytes, st.heap_partial_free_bytes,
        "no whole page free"
    );
    assert!(st.heap_free_bytes >= st.heap_bytes * 2 / 5);
    let before = contents(&s);
    // Large values take that room: compaction moves the blocks together.
    let m = fill(&s, 1_000_000, 4096 + 2040);
    let st = s.stats();
    let free = st.heap_free_bytes as f64 / st.heap_bytes as f64;
    println!(
        "after compaction: {m} values of 6 KiB stored, {:.1}% of the heap free",
        100.0 * free
    );
    // What is left: less than one value of 6 KiB (two pages) plus a page per class in use.
    assert!(
        st.heap_free_bytes <= (3 * 4096) as u64,
        "{} bytes stranded",
        st.heap_free_bytes
    );
    // The moved values are intact.
    let after = contents(&s);
    for kv in &before {
        assert!(after.contains(kv), "a moved value changed");
    }
    assert_eq!(s.stats().evictions, 0);
    let rep = s.verify().unwrap();
    assert!(rep.is_ok(), "{rep}");
}

#[test]
fn largest_value_is_a_value_that_fits() {
    // In several states of one shard, a value of `largest_value` bytes is stored (refuse mode:
    // nothing is evicted to make it fit).
    let s = Store::anonymous(&one_shard(WhenFull::Refuse)).unwrap();
    let mut rng = Rng(7);
    let mut id = 0u64;
    let mut checked = 0;
    for round in 0..40 {
        // Some churn of mixed sizes.
        for _ in 0..30 {
            let len = Mix::Issue.len(&mut rng).min(8000);
            let _ = s.set(&key(id % 40), &value(id, round, len), None);
            id += 1;
        }
        let largest = s.stats().largest_value as usize;
        if largest <= 24 {
            continue;
        }
        let figures = heap_figures(&s);
        s.set(b"largest", &value(7, 7, largest), None)
            .unwrap_or_else(|e| panic!("round {round}: {largest} bytes: {e}"));
        assert!(s.delete(b"largest").unwrap());
        // Storing and deleting it may have compacted, but frees what it took.
        assert_eq!(heap_figures(&s).0, figures.0);
        checked += 1;
    }
    assert!(checked >= 20, "{checked}");
    let rep = s.verify().unwrap();
    assert!(rep.is_ok(), "{rep}");
}

/// Sets 40-byte values (one 64-byte block each) under new keys until one evicts.
fn fill_until_evicting(s: &Store, next: &mut u64) {
    let ev = s.stats().evictions;
    while s.stats().evictions == ev {
        s.set(&key(*next), &value(*next, 0, 40), None).unwrap();
        *next += 1;
        assert!(*next < 100_000);
    }
}

#[test]
fn eviction_stops_after_1024_entries_per_insert() {
    // About 40 heap pages full of 64-byte blocks (64 values of 40 bytes a page). A value of 12
    // pages is stored after evicting some 800 entries (compaction gathers the freed blocks into
    // pages); one of 30 pages would need about 2000 evictions and is refused after 1024.
    let cfg = Config::new()
        .capacity(3000)
        .shards(1)
        .max_key_len(8)
        .max_value_len(30 * 4096)
        .when_full(WhenFull::Evict);
    let s = Store::anonymous(&with_heap_pages(cfg, 40)).unwrap();
    let pages = s.stats().heap_bytes / 4096;
    let mut next = 0;
    fill_until_evicting(&s, &mut next);
    let ev = s.stats().evictions;
    let big = value(2, 2, 12 * 4096);
    s.set(b"big", &big, None).unwrap();
    let used = s.stats().evictions - ev;
    println!("a 48 KiB value evicted {used} entries of 40 bytes ({pages} pages of heap)");
    assert!((12 * 64..=1024).contains(&used), "{used}");
    assert_eq!(s.get(b"big").unwrap().as_deref(), Some(&big[..]));
    // Full again, then a value too big for 1024 evictions.
    assert!(s.delete(b"big").unwrap());
    fill_until_evicting(&s, &mut next);
    let st = s.stats();
    assert!(
        st.heap_free_bytes < 2 * 4096,
        "not full: {}",
        st.heap_free_bytes
    );
    assert!(matches!(
        s.set(b"huge", &value(1, 1, 30 * 4096 - 100), None),
        Err(Error::Full)
    ));
    let after = s.stats();
    assert_eq!(
        after.evictions - st.evictions,
        shmstate::limits::MAX_EVICTIONS_PER_INSERT as u64,
        "evictions for one refused insert"
    );
    assert_eq!(
        after.entries,
        st.entries - shmstate::limits::MAX_EVICTIONS_PER_INSERT as u64
    );
    assert_eq!(s.get(b"huge").unwrap(), None);
    let rep = s.verify().unwrap();
    assert!(rep.is_ok(), "{rep}");
}
