//! The hostile-region test: a forked child scribbles chosen bytes over one kind of part of a
//! live, populated region (header fields, mutexes, counter records, statistics and scratch
//! slots, repair records, counts, control bytes, slot headers, keys and values, the value heap's
//! metadata, its blocks and pages), then calls every operation. Each must return (`Ok` or a typed `Err`): a child that panics, dies by a signal or
//! runs past the watchdog fails the test with the scenario's name. Where the documentation
//! promises more, the child also checks it: keys the bytes did not touch still read their exact
//! values, `verify` reports what it should, and `clear` (or a sole-user reopen, for broken
//! mutexes) brings the region back to verify-clean.
//!
//! `harness = false`: the process is single-threaded when it forks. The byte values come from a
//! seeded generator (`HOSTILE_SEED=<n>` to replay) plus fixed edge values; a scenario that once
//! found a bug keeps its name (see `regression_*`).

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::forked::{self, close, pipe, spawn, wait, Exit};
use common::{ShmName, TempDir};
use shmstate::{
    CountField, CounterField, DescField, PartKind, PoolField, RegionPart, RepairField, SlotField,
    Store, ValuePart, WhenFull,
};

type TestFn = fn();

fn main() {
    let tests: &[(&str, TestFn)] = &[
        ("header", header),
        ("registry_mutex", registry_mutex),
        ("counters", counters),
        ("stat_slots", stat_slots),
        ("scratch_slots", scratch_slots),
        ("shard_mutex", shard_mutex),
        ("repair_record", repair_record),
        ("counts", counts),
        ("control_bytes", control_bytes),
        ("slot_header", slot_header),
        ("key_value_bytes", key_value_bytes),
        ("heap_metadata", heap_metadata),
        ("heap_values", heap_values),
        ("compaction", compaction),
        ("mixed", mixed),
        ("concurrent", concurrent),
    ];
    let t = Instant::now();
    println!("hostile: seed {} (HOSTILE_SEED to replay)", seed());
    forked::run_all("hostile", tests);
    println!("hostile: {:.1?} in all", t.elapsed());
}

// ---------------------------------------------------------------------------------------------
// Configuration and fixture

const LOCK_TIMEOUT: Duration = Duration::from_millis(20);
const WATCHDOG: Duration = Duration::from_secs(10);
const MAX_KEY: usize = 13; // key room 16: lengths 14..=16 fit the room but exceed the limit
const MAX_VAL: usize = 10_000; // the limit; values longer than INLINE live in the heap
const INLINE: usize = 24; // the slot's value field
/// The numbered keys' values are 0..=SMALL bytes: 25..=SMALL in the heap (the smallest class).
const SMALL: usize = 30;
/// Region size: the index (capacity 64, 2 shards) and about 50 heap pages per shard.
const MEMORY: u64 = 512 << 10;
/// Heap values of the fixture besides the numbered keys' small ones: one block (100 bytes), two
/// tail blocks (3 KiB), whole pages and a tail (9 KiB). `HEAP_KEYS` of each, `h<len>:<i>`.
const HEAP_SHAPES: [usize; 3] = [100, 3 * 1024, 9 * 1024];
const HEAP_KEYS: usize = 4;

fn seed() -> u64 {
    std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x005e_ed0f_ba5e)
}

/// xorshift64*: deterministic bytes from a seed.
struct Rng(u64);

impl Rng {
    fn new(salt: &str) -> Self {
        let mut h = seed() ^ 0x9e37_79b9_7f4a_7c15;
        for b in salt.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backing {
    Anon,
    File,
    Shm,
}

fn config(policy: WhenFull) -> shmstate::Config {
    shmstate::Config::new()
        .capacity(64)
        .shards(2)
        .max_key_len(MAX_KEY as u32)
        .max_value_len(MAX_VAL as u32)
        .memory(MEMORY)
        .max_counters(8)
        .when_full(policy)
        .lock_timeout(LOCK_TIMEOUT)
}

fn key(i: usize) -> Vec<u8> {
    if i % 5 == 4 {
        format!("long-key:{i:04}").into_bytes() // exactly MAX_KEY bytes
    } else {
        format!("key:{i:03}").into_bytes()
    }
}

fn value(i: usize) -> Vec<u8> {
    if i % 7 == 3 {
        return (i as i64 * 1000 - 3000).to_string().into_bytes(); // incr-able
    }
    (0..i % (SMALL + 1))
        .map(|j| (i * 7 + j * 13) as u8)
        .collect()
}

fn heap_key(len: usize, i: usize) -> Vec<u8> {
    format!("h{len}:{i}").into_bytes()
}

fn heap_value(len: usize, i: usize) -> Vec<u8> {
    (0..len).map(|j| (j * 31 + i * 17 + len) as u8).collect()
}

/// The value the fixture stored under `key` (a numbered key or a heap key).
fn value_of(key: &[u8]) -> Vec<u8> {
    let k = String::from_utf8_lossy(key);
    let (name, i) = k.rsplit_once(':').unwrap();
    let i: usize = i.parse().unwrap();
    match name.strip_prefix('h') {
        Some(len) => heap_value(len.parse().unwrap(), i),
        None => value(i),
    }
}

/// A live entry and where it lives.
#[derive(Clone, Debug)]
struct Live {
    key: Vec<u8>,
    value: Vec<u8>,
    shard: u32,
    slot: u32,
    /// Where its heap bytes are (`Store::value_parts`; empty for an inline value).
    heap: Vec<RegionPart>,
}

impl Live {
    fn is_heap(&self) -> bool {
        self.value.len() > INLINE
    }
    /// Heap parts of this value matching `f`.
    fn heap_parts(&self, f: impl Fn(&ValuePart) -> bool) -> Vec<&RegionPart> {
        self.heap
            .iter()
            .filter(|p| matches!(p.kind, PartKind::Value(v) if f(&v)))
            .collect()
    }
}

struct Fixture {
    backing: Backing,
    /// The handle (anonymous regions only; named and file regions are reopened by the child).
    store: Option<Store>,
    file: Option<PathBuf>,
    shm: Option<ShmName>,
    parts: Vec<RegionPart>,
    live: Vec<Live>,
    expired: Vec<Vec<u8>>,
    deleted: Vec<Vec<u8>>,
    counters: Vec<(String, i64)>,
    /// Bytes of the region right after populating (for "value unchanged" decisions).
    image: Vec<u8>,
}

const COUNTERS: [(&str, i64); 4] = [
    ("http.requests", 5),
    ("errors", -3),
    ("max", i64::MAX),
    ("a-counter-with-a-much-longer-name-for-the-name-area", 77),
];

/// Keys kept, expired and deleted by `populate`.
type Populated = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

fn populate(store: &Store) -> Populated {
    let hour = Some(Duration::from_secs(3600));
    let (mut kept, mut expired, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
    // Heap values first (the table fills up below); one of each shape overwritten (its old
    // blocks freed: partial pages), the last 3 KiB one deleted.
    let mut heap = Vec::new();
    for i in 0..HEAP_KEYS {
        for len in HEAP_SHAPES {
            store
                .set(&heap_key(len, i), &heap_value(len, i), None)
                .unwrap();
            heap.push(heap_key(len, i));
        }
    }
    for len in HEAP_SHAPES {
        store
            .set(&heap_key(len, 0), &heap_value(len, 0), None)
            .unwrap();
    }
    let gone = heap_key(HEAP_SHAPES[1], HEAP_KEYS - 1);
    store.delete(&gone).unwrap();
    heap.retain(|k| *k != gone);
    deleted.push(gone);
    // Near the 7/8 load limit, so that groups fill up and deletes leave tombstones.
    for i in 0..130 {
        let ttl = match i % 6 {
            1 => hour,
            5 => Some(Duration::from_millis(1)),
            _ => None,
        };
        match store.set(&key(i), &value(i), ttl) {
            Ok(()) if ttl == Some(Duration::from_millis(1)) => expired.push(key(i)),
            Ok(()) if i % 4 == 2 => deleted.push(key(i)),
            Ok(()) => kept.push(key(i)),
            Err(shmstate::Error::Full) => {}
            Err(e) => panic!("populate: {e}"),
        }
    }
    for k in &deleted {
        store.delete(k).unwrap(); // false if evicted meanwhile (WhenFull::Evict)
    }
    // Overwrites leave copies in the scratch slots.
    for i in [0usize, 3, 7] {
        store.set(&key(i), &value(i), None).unwrap();
    }
    for (name, v) in COUNTERS {
        store.counter(name).unwrap().set(v);
    }
    kept.extend(heap);
    std::thread::sleep(Duration::from_millis(5)); // the 1 ms TTLs are past
    (kept, expired, deleted)
}

fn snapshot(store: &Store) -> Vec<u8> {
    // SAFETY: the pointer covers `len` mapped bytes while `store` lives; this process is
    // single-threaded and no child runs yet, so nothing writes them while we copy.
    let (base, len) = unsafe { store.raw_region() };
    // SAFETY: as above.
    unsafe { std::slice::from_raw_parts(base, len) }.to_vec()
}

fn u32_at(image: &[u8], r: &std::ops::Range<usize>) -> u32 {
    u32::from_ne_bytes(image[r.start..r.start + 4].try_into().unwrap())
}

fn fixture(backing: Backing, policy: WhenFull, dir: &TempDir) -> Fixture {
    let cfg = config(policy);
    let (store, file, shm) = match backing {
        Backing::Anon => (Store::anonymous(&cfg).unwrap(), None, None),
        Backing::File => {
            let p = dir.file(&common::unique("f"));
            (Store::create_file(&p, &cfg).unwrap(), Some(p), None)
        }
        Backing::Shm => {
            let n = ShmName::new("hostile");
            (Store::create(&n.0, &cfg).unwrap(), None, Some(n))
        }
    };
    let (kept, expired, deleted) = populate(&store);
    assert!(store.stats().tombstones > 0, "fixture has tombstones");
    let parts = store.layout_map();
    let image = snapshot(&store);
    // Where each kept key lives: the FULL slot whose key bytes are the key.
    let mut ctrl = BTreeMap::new();
    for p in &parts {
        if p.kind == PartKind::ControlBytes {
            ctrl.insert(p.shard.unwrap(), p.range.clone());
        }
    }
    let mut slots = BTreeMap::new();
    let mut key_len = BTreeMap::new();
    for p in &parts {
        let at = (p.shard, p.slot);
        match p.kind {
            PartKind::Slot(SlotField::KeyLen) => {
                key_len.insert(at, u32_at(&image, &p.range) as usize);
            }
            PartKind::Slot(SlotField::Key) => {
                let (s, i) = (p.shard.unwrap(), p.slot.unwrap());
                if image[ctrl[&s].start + i as usize] & 0x80 != 0 {
                    let n = key_len[&at];
                    slots.insert(image[p.range.start..p.range.start + n].to_vec(), (s, i));
                }
            }
            _ => {}
        }
    }
    // Under WhenFull::Evict, later inserts may have evicted earlier keys.
    let live = kept
        .into_iter()
        .filter(|k| slots.contains_key(k))
        .map(|k| {
            let (shard, slot) = slots[&k];
            let heap = store.value_parts(&k).unwrap();
            let l = Live {
                value: value_of(&k),
                key: k,
                shard,
                slot,
                heap,
            };
            // value_parts names this slot's blocks, whose bytes are the value.
            assert_eq!(l.heap.is_empty(), !l.is_heap(), "{l:?}");
            let mut bytes = Vec::new();
            for p in &l.heap {
                assert_eq!((p.shard, p.slot), (Some(shard), Some(slot)), "{p:?}");
                if let PartKind::Value(ValuePart::Bytes { .. }) = p.kind {
                    bytes.extend_from_slice(&image[p.range.clone()]);
                }
            }
            assert!(!l.is_heap() || bytes == l.value, "{:?}: heap bytes", l.key);
            l
        })
        .collect::<Vec<_>>();
    assert!(live.len() > 40, "fixture holds {} live keys", live.len());
    assert!(live.iter().any(|l| l.shard == 0) && live.iter().any(|l| l.shard == 1));
    if policy == WhenFull::Refuse {
        let n = live.iter().filter(|l| l.value.len() > SMALL).count();
        assert_eq!(n, HEAP_SHAPES.len() * HEAP_KEYS - 1, "heap keys live");
    }
    let store = match backing {
        Backing::Anon => Some(store),
        _ => {
            drop(store);
            None
        }
    };
    Fixture {
        backing,
        store,
        file,
        shm,
        parts,
        live,
        expired,
        deleted,
        counters: COUNTERS.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        image,
    }
}

impl Fixture {
    fn parts(&self, f: impl Fn(&RegionPart) -> bool) -> Vec<&RegionPart> {
        self.parts.iter().filter(|p| f(p)).collect()
    }
    fn part(&self, kind: PartKind, shard: Option<u32>, slot: Option<u32>) -> &RegionPart {
        self.parts
            .iter()
            .find(|p| p.kind == kind && p.shard == shard && p.slot == slot)
            .unwrap_or_else(|| panic!("no part {kind:?} {shard:?} {slot:?}"))
    }
    fn slot_part(&self, l: &Live, f: SlotField) -> &RegionPart {
        self.part(PartKind::Slot(f), Some(l.shard), Some(l.slot))
    }
    fn shard_part(&self, kind: PartKind, shard: u32) -> &RegionPart {
        self.part(kind, Some(shard), None)
    }
    fn slots_per_shard(&self) -> u32 {
        self.shard_part(PartKind::ControlBytes, 0).range.len() as u32
    }
    /// A live key chosen by `rng`, satisfying `f`.
    fn pick(&self, rng: &mut Rng, f: impl Fn(&Live) -> bool) -> Live {
        let c: Vec<_> = self.live.iter().filter(|l| f(l)).collect();
        assert!(!c.is_empty(), "no live key fits");
        c[rng.below(c.len())].clone()
    }
    fn open(&self) -> shmstate::Result<Store> {
        match self.backing {
            Backing::Anon => Ok(self.store.clone().expect("anonymous handle")),
            Backing::File => Store::open_file(self.file.as_ref().unwrap()),
            Backing::Shm => Store::open(&self.shm.as_ref().unwrap().0),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = std::fs::remove_file(f);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plans: what a scenario writes and what it may then expect

#[derive(Clone, Debug)]
enum Intact {
    /// Every live key reads its exact value.
    All,
    /// Every live key but this one.
    AllBut(Vec<u8>),
    /// Every live key outside this shard.
    OtherShards(u32),
    Nothing,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Fails,
    /// Fails, and one of the problems is of this kind (the name of a `ProblemKind` variant).
    Reports(&'static str),
    Passes,
    Any,
}

#[derive(Clone, Debug)]
enum Target {
    Exact,
    Absent,
    Corrupted,
    Len(usize),
    /// Exactly these bytes (the value's own bytes were scribbled).
    Value(Vec<u8>),
    /// `Corrupted`, or a value of this length (a scribbled locator that happens to be valid).
    CorruptedOrLen(usize),
    /// Absent, or a value (the slot now holds some other key or length).
    NotExact,
    /// Anything but a panic or hang (absent, a value, or an error).
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Recovery {
    None,
    /// `clear()` succeeds and leaves the region verify-clean.
    Clear,
    /// Dropping the handle and reopening as the sole user leaves it verify-clean.
    Reopen,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Reopen {
    No,
    MustFail,
    MustSucceed,
}

#[derive(Clone, Debug)]
struct Plan {
    writes: Vec<(usize, Vec<u8>)>,
    /// Where the child writes its own thread id (as a mutex's lock word).
    own_tid_at: Option<usize>,
    /// Ranges another child keeps overwriting with random bytes while this one operates.
    concurrent: Vec<std::ops::Range<usize>>,
    /// New length of the (file) region's file, set before reopening it.
    resize: Option<u64>,
    intact: Intact,
    target: Option<(Live, Target)>,
    /// Also check that the value `get` returns is accepted as `compare_and_swap`'s `expected`.
    target_cas: bool,
    /// The `expected` value of the check that `compare_and_swap` of a `Corrupted` target says
    /// so (default: the target's own value): one of the length the slot now claims, so that
    /// a length mismatch cannot answer for it.
    corrupted_cas: Option<Vec<u8>>,
    verify: Expect,
    recovery: Recovery,
    reopen: Reopen,
}

impl Plan {
    fn new() -> Self {
        Plan {
            writes: Vec::new(),
            own_tid_at: None,
            concurrent: Vec::new(),
            resize: None,
            intact: Intact::All,
            target: None,
            target_cas: false,
            corrupted_cas: None,
            verify: Expect::Any,
            recovery: Recovery::None,
            reopen: Reopen::No,
        }
    }
    fn write(mut self, off: usize, bytes: impl Into<Vec<u8>>) -> Self {
        self.writes.push((off, bytes.into()));
        self
    }
    fn fill(self, p: &RegionPart, b: u8) -> Self {
        let n = p.range.len();
        self.write(p.range.start, vec![b; n])
    }
    fn random(self, p: &RegionPart, rng: &mut Rng) -> Self {
        let n = p.range.len();
        self.write(p.range.start, rng.bytes(n))
    }
    fn u32(self, p: &RegionPart, v: u32) -> Self {
        self.write(p.range.start, v.to_ne_bytes())
    }
    fn u64(self, p: &RegionPart, v: u64) -> Self {
        self.write(p.range.start, v.to_ne_bytes())
    }
    fn intact(mut self, i: Intact) -> Self {
        self.intact = i;
        self
    }
    fn target(mut self, l: &Live, t: Target) -> Self {
        self.target = Some((l.clone(), t));
        self
    }
    fn cas(mut self) -> Self {
        self.target_cas = true;
        self
    }
    fn verify(mut self, e: Expect) -> Self {
        self.verify = e;
        self
    }
    fn recovery(mut self, r: Recovery) -> Self {
        self.recovery = r;
        self
    }
    fn reopen(mut self, r: Reopen) -> Self {
        self.reopen = r;
        self
    }
}

/// Builds a scenario's plan against its freshly populated region.
type Build = dyn Fn(&Fixture, &mut Rng) -> Plan;

/// One scenario: a name, a region to build, and the plan built against it.
struct Scenario {
    name: String,
    backing: Backing,
    policy: WhenFull,
    build: Box<Build>,
}

fn sc(
    name: impl Into<String>,
    backing: Backing,
    build: impl Fn(&Fixture, &mut Rng) -> Plan + 'static,
) -> Scenario {
    Scenario {
        name: name.into(),
        backing,
        policy: WhenFull::Refuse,
        build: Box::new(build),
    }
}

fn evicting(mut s: Scenario) -> Scenario {
    s.policy = WhenFull::Evict;
    s.name.push_str("/evict");
    s
}

// ---------------------------------------------------------------------------------------------
// Running scenarios

/// Outcomes of one kind's scenarios: (operation, outcome) -> count.
#[derive(Default)]
struct Tally(BTreeMap<(String, String), u64>);

impl Tally {
    fn rec<T>(&mut self, op: &str, r: &shmstate::Result<T>) {
        let outcome = match r {
            Ok(_) => "Ok".to_string(),
            Err(e) => err_kind(e),
        };
        *self.0.entry((op.to_string(), outcome)).or_default() += 1;
    }
    fn ok<T>(&mut self, op: &str, v: T) {
        self.rec(op, &Ok(v));
    }
    fn encode(&self) -> String {
        self.0
            .iter()
            .map(|((op, o), n)| format!("{op}\t{o}\t{n}\n"))
            .collect()
    }
    fn absorb(&mut self, text: &str) {
        for line in text.lines() {
            let mut f = line.split('\t');
            let (op, o, n) = (f.next(), f.next(), f.next());
            let (Some(op), Some(o), Some(n)) = (op, o, n) else {
                panic!("bad tally line {line:?}")
            };
            *self.0.entry((op.into(), o.into())).or_default() += n.parse::<u64>().unwrap();
        }
    }
    fn print(&self, kind: &str, scenarios: usize) {
        let mut by_outcome: BTreeMap<&str, (u64, Vec<&str>)> = BTreeMap::new();
        for ((op, o), n) in &self.0 {
            let e = by_outcome.entry(o).or_default();
            e.0 += n;
            if o != "Ok" && !e.1.contains(&op.as_str()) {
                e.1.push(op);
            }
        }
        let total: u64 = by_outcome.values().map(|e| e.0).sum();
        println!("  {kind}: {scenarios} scenarios, {total} operations returned:");
        for (o, (n, ops)) in by_outcome {
            if ops.is_empty() {
                println!("    {o:<14} {n:>6}");
            } else {
                println!("    {o:<14} {n:>6}  ({})", ops.join(", "));
            }
        }
    }
}

fn err_kind(e: &shmstate::Error) -> String {
    let d = format!("{e:?}");
    d.split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("?")
        .to_string()
}

/// Runs every scenario of one kind; panics (failing the kind) listing the failed scenarios.
fn run_kind(kind: &str, scenarios: Vec<Scenario>) {
    let dir = TempDir::new("hostile");
    let mut tally = Tally::default();
    let mut failed = Vec::new();
    let n = scenarios.len();
    for s in scenarios {
        let fx = fixture(s.backing, s.policy, &dir);
        let mut rng = Rng::new(&s.name);
        let plan = (s.build)(&fx, &mut rng);
        let scribbler = (!plan.concurrent.is_empty()).then(|| {
            let mut rng = Rng::new(&format!("{} scribbler", s.name));
            let store = fx.open().unwrap();
            let ranges = plan.concurrent.clone();
            spawn(move || scribble_forever(&store, &ranges, &mut rng))
        });
        let (r, w) = pipe();
        let name = s.name.clone();
        let pid = spawn(|| {
            close(r);
            let mut t = Tally::default();
            child(&name, &fx, &plan, &mut t);
            let text = t.encode();
            // SAFETY: valid buffer of `text.len()` bytes; `w` is our pipe's write end.
            let n = unsafe { libc::write(w, text.as_ptr().cast(), text.len()) };
            assert_eq!(n, text.len() as isize, "tally written whole");
        });
        close(w);
        let exit = catch_unwind(AssertUnwindSafe(|| wait(pid, WATCHDOG)));
        if let Some(pid) = scribbler {
            forked::kill(pid);
        }
        let text = read_all(r);
        close(r);
        match exit {
            Ok(Exit::Code(0)) => tally.absorb(&text),
            Ok(Exit::Code(101)) => failed.push(format!("{} (panicked)", s.name)),
            Ok(Exit::Code(c)) => failed.push(format!("{} (exit {c})", s.name)),
            Ok(Exit::Signal(sig)) => failed.push(format!("{} (killed by signal {sig})", s.name)),
            Err(_) => failed.push(format!("{} (hang: killed after {WATCHDOG:?})", s.name)),
        }
    }
    tally.print(kind, n);
    assert!(
        failed.is_empty(),
        "{kind}: failed scenarios:\n  {}",
        failed.join("\n  ")
    );
}

fn read_all(fd: i32) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: valid buffer; `fd` is our pipe's read end (the writer has exited).
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    String::from_utf8(out).unwrap()
}

/// Overwrites random bytes of `ranges` until killed.
fn scribble_forever(store: &Store, ranges: &[std::ops::Range<usize>], rng: &mut Rng) {
    // SAFETY: the pointer covers `len` mapped bytes while `store` lives.
    let (base, len) = unsafe { store.raw_region() };
    loop {
        let r = &ranges[rng.below(ranges.len())];
        let at = r.start + rng.below(r.len());
        assert!(at < len);
        // SAFETY: in bounds (checked above); this process does nothing else with the
        // mapping, and the other processes access it only through atomics.
        unsafe { base.add(at).write_volatile(rng.next() as u8) };
        for _ in 0..rng.below(64) {
            std::hint::spin_loop();
        }
    }
}

/// Writes the plan's bytes into the region.
fn scribble(store: &Store, writes: &[(usize, Vec<u8>)]) {
    // SAFETY: the pointer covers `len` mapped bytes while `store` lives.
    let (base, len) = unsafe { store.raw_region() };
    for (off, bytes) in writes {
        assert!(off + bytes.len() <= len, "write out of the region");
        // SAFETY: in bounds (checked above); this process is single-threaded and the parent
        // only waits, so no one accesses these bytes concurrently.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(*off), bytes.len()) };
    }
}

/// The child: scribble, check what the plan promises, call every operation.
fn child(name: &str, fx: &Fixture, plan: &Plan, t: &mut Tally) {
    let fail = |what: String| -> ! { panic!("scenario {name}: {what}") };
    let store = fx
        .open()
        .unwrap_or_else(|e| fail(format!("opening the intact region: {e}")));
    scribble(&store, &plan.writes);
    if !plan.concurrent.is_empty() {
        // Another process is writing the region meanwhile: nothing is promised but returning.
        let until = Instant::now() + Duration::from_millis(400);
        while Instant::now() < until {
            let _ = exercise(&store, fx, plan, t, "");
        }
        return;
    }
    if let Some(off) = plan.own_tid_at {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        scribble(&store, &[(off, tid.to_ne_bytes().to_vec())]);
    }

    // 1. Keys whose bytes were not touched read their exact values (no lock taken).
    for l in &fx.live {
        let keep = match &plan.intact {
            Intact::All => true,
            Intact::AllBut(k) => *k != l.key,
            Intact::OtherShards(s) => l.shard != *s,
            Intact::Nothing => false,
        };
        if keep {
            match store.get(&l.key) {
                Ok(Some(v)) if v == l.value => {}
                other => fail(format!(
                    "untouched key {:?} (shard {} slot {}) read {other:?}, not {:?}",
                    String::from_utf8_lossy(&l.key),
                    l.shard,
                    l.slot,
                    l.value
                )),
            }
        }
    }
    // 2. The key whose slot was hit.
    if let Some((l, want)) = &plan.target {
        let got = store.get(&l.key);
        let ok = match (want, &got) {
            (Target::Exact, Ok(Some(v))) => *v == l.value,
            (Target::Absent, Ok(None)) => true,
            (Target::Corrupted, Err(shmstate::Error::Corrupted { .. })) => true,
            (Target::Len(n), Ok(Some(v))) => v.len() == *n,
            (Target::Value(want), Ok(Some(v))) => v == want,
            (Target::CorruptedOrLen(_), Err(shmstate::Error::Corrupted { .. })) => true,
            (Target::CorruptedOrLen(n), Ok(Some(v))) => v.len() == *n,
            (Target::NotExact, Ok(None)) => true,
            (Target::Any, _) => true,
            (Target::NotExact, Ok(Some(v))) => *v != l.value,
            _ => false,
        };
        if !ok {
            fail(format!(
                "target key {:?}: expected {want:?}, got {got:?}",
                String::from_utf8_lossy(&l.key)
            ));
        }
        if let Target::Corrupted = want {
            // Every reader of the value says so, incr included (not "not an integer").
            let r = store.incr(&l.key, 1, None);
            if !matches!(r, Err(shmstate::Error::Corrupted { .. })) {
                fail(format!("incr of the corrupted value gave {r:?}"));
            }
            // compare_and_swap too (not a mismatch: it cannot tell what the value is).
            let exp = plan.corrupted_cas.as_ref().unwrap_or(&l.value);
            let r = store.compare_and_swap(&l.key, Some(exp), Some(&l.value), None);
            if !matches!(r, Err(shmstate::Error::Corrupted { .. })) {
                fail(format!(
                    "compare_and_swap of the corrupted value gave {r:?}"
                ));
            }
        }
        if plan.target_cas {
            let Ok(Some(v)) = got else { unreachable!() };
            let r = store.compare_and_swap(&l.key, Some(&v), Some(&v), None);
            if !matches!(r, Ok(true)) {
                fail(format!(
                    "compare_and_swap with the value get returned ({v:?}) gave {r:?}"
                ));
            }
        }
    }
    // 3. verify reports the problem (or does not invent one).
    match (plan.verify, store.verify()) {
        (Expect::Fails | Expect::Reports(_), Ok(rep)) if rep.is_ok() => {
            fail("verify found nothing".into())
        }
        (Expect::Reports(kind), Ok(rep))
            if !rep
                .problems
                .iter()
                .any(|p| format!("{:?}", p.kind).starts_with(kind)) =>
        {
            fail(format!("verify did not report {kind}: {rep}"))
        }
        (Expect::Passes, Ok(rep)) if !rep.is_ok() => fail(format!("verify: {rep}")),
        (Expect::Any, _) | (_, Ok(_)) => {}
        (_, Err(e)) => fail(format!("verify failed: {e}")),
    }
    // 4. Every operation returns.
    let cleared = exercise(&store, fx, plan, t, "");
    // 5. The documented recovery.
    if plan.recovery == Recovery::Clear {
        if let Err(e) = cleared {
            fail(format!("clear failed: {e}"));
        }
        let rep = store.verify().unwrap();
        if !rep.is_ok() {
            fail(format!("not clean after clear: {rep}"));
        }
        roundtrip(&store, fx, plan).unwrap_or_else(|e| fail(e));
    }
    drop(store);
    if plan.recovery == Recovery::Reopen {
        let s = fx.open().unwrap_or_else(|e| fail(format!("reopen: {e}")));
        let rep = s.verify().unwrap();
        if !rep.is_ok() {
            fail(format!("not clean after reopening: {rep}"));
        }
        roundtrip(&s, fx, plan).unwrap_or_else(|e| fail(e));
    }
    // 6. Reopening the damaged region (header scenarios).
    if let (Some(len), Some(path)) = (plan.resize, &fx.file) {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(len).unwrap();
    }
    let reopened = match plan.reopen {
        Reopen::No => return,
        _ => fx.open(),
    };
    match (plan.reopen, reopened) {
        (Reopen::MustFail, Ok(_)) => fail("a region with this header was opened".into()),
        (Reopen::MustSucceed, Err(e)) => fail(format!("reopen refused: {e}")),
        (_, Err(e)) => t.rec::<()>("reopen", &Err(e)),
        (_, Ok(s)) => {
            t.ok("reopen", ());
            let _ = exercise(&s, fx, plan, t, "reopened.");
        }
    }
}

/// After recovery: a write and read on the target key's shard (or shard 0) work.
fn roundtrip(store: &Store, fx: &Fixture, plan: &Plan) -> Result<(), String> {
    let k = plan
        .target
        .as_ref()
        .map_or_else(|| fx.live[0].key.clone(), |(l, _)| l.key.clone());
    store
        .set(&k, b"after recovery", None)
        .map_err(|e| format!("set after recovery: {e}"))?;
    match store.get(&k) {
        Ok(Some(v)) if v == b"after recovery" => {}
        other => return Err(format!("get after recovery: {other:?}")),
    }
    // The heap too: a value of whole pages and a tail, then a one-block value over it.
    for len in [HEAP_SHAPES[2], HEAP_SHAPES[0]] {
        let v = heap_value(len, 99);
        store
            .set(&k, &v, None)
            .map_err(|e| format!("set of {len} bytes after recovery: {e}"))?;
        match store.get(&k) {
            Ok(Some(got)) if got == v => {}
            other => {
                return Err(format!(
                    "get of {len} bytes after recovery: {:?}",
                    other.map(|o| o.map(|v| v.len()))
                ))
            }
        }
    }
    Ok(())
}

/// Calls every operation once or more and records what each returned. Returns what `clear`
/// (the last write) returned.
fn exercise(
    store: &Store,
    fx: &Fixture,
    plan: &Plan,
    t: &mut Tally,
    pre: &str,
) -> shmstate::Result<u64> {
    let op = |s: &str| format!("{pre}{s}");
    let mut keys: Vec<Vec<u8>> = fx.live.iter().take(6).map(|l| l.key.clone()).collect();
    if let Some((l, _)) = &plan.target {
        keys.push(l.key.clone());
    }
    keys.extend(fx.expired.iter().take(2).cloned());
    keys.extend(fx.deleted.iter().take(2).cloned());
    let heap: Vec<Vec<u8>> = fx
        .live
        .iter()
        .filter(|l| l.value.len() > SMALL)
        .take(3)
        .map(|l| l.key.clone())
        .collect();
    keys.extend(heap.iter().cloned());
    keys.push(b"missing".to_vec());
    keys.push(Vec::new());
    keys.push(vec![0xff; MAX_KEY]);
    let mut buf = Vec::with_capacity(64);
    for k in &keys {
        t.rec(&op("get"), &store.get(k));
        t.rec(&op("get_into"), &store.get_into(k, &mut buf));
        t.rec(&op("contains"), &store.contains(k));
        t.rec(&op("ttl"), &store.ttl(k));
    }
    let hour = Some(Duration::from_secs(3600));
    let a = &fx.live[1].key;
    let b = &fx.live[2].key;
    let int_key = fx
        .live
        .iter()
        .find(|l| std::str::from_utf8(&l.value).is_ok_and(|s| s.parse::<i64>().is_ok()));
    let target = plan.target.as_ref().map(|(l, _)| l.key.clone());
    t.rec(&op("set"), &store.set(b"new-key", b"new value", hour));
    t.rec(&op("set"), &store.set(a, b"overwritten", None));
    t.rec(
        &op("set"),
        &store.set(&[b'x'; MAX_KEY], &[b'y'; MAX_VAL], None),
    );
    if let Some(k) = &target {
        t.rec(&op("set"), &store.set(k, b"target overwritten", hour));
    }
    // Heap allocations and frees: a new value of each shape, heap values resized.
    for (n, len) in HEAP_SHAPES.into_iter().enumerate() {
        t.rec(
            &op("set"),
            &store.set(
                format!("new-heap:{n}").as_bytes(),
                &heap_value(len, 7),
                None,
            ),
        );
    }
    for (k, len) in heap.iter().zip([5000usize, 60, 2040]) {
        t.rec(&op("set"), &store.set(k, &heap_value(len, 3), None));
    }
    t.rec(&op("add"), &store.add(b"added", b"1", None));
    t.rec(&op("add"), &store.add(b, b"2", None));
    t.rec(&op("replace"), &store.replace(b, b"replaced", None));
    t.rec(&op("replace"), &store.replace(b"never-there", b"x", None));
    t.rec(
        &op("compare_and_swap"),
        &store.compare_and_swap(b, Some(b"replaced"), Some(b"swapped"), None),
    );
    t.rec(
        &op("compare_and_swap"),
        &store.compare_and_swap(b"cas-new", None, Some(b"created"), hour),
    );
    t.rec(
        &op("compare_and_swap"),
        &store.compare_and_swap(b"cas-new", Some(b"created"), None, None),
    );
    t.rec(&op("incr"), &store.incr(b"incr-new", 5, hour));
    if let Some(l) = int_key {
        t.rec(&op("incr"), &store.incr(&l.key, -7, None));
    }
    t.rec(&op("incr"), &store.incr(a, 1, None)); // not an integer
    t.rec(&op("expire"), &store.expire(b, hour));
    t.rec(&op("expire"), &store.expire(b, None));
    if let Some(k) = &target {
        t.rec(&op("expire"), &store.expire(k, hour));
        t.rec(&op("delete"), &store.delete(k));
    }
    t.rec(&op("delete"), &store.delete(&fx.live[3].key));
    t.rec(&op("delete"), &store.delete(b"missing"));
    t.rec(&op("flush_expired"), &store.flush_expired());
    let (mut cursor, mut pages) = (Some(0), 0);
    while let Some(c) = cursor {
        let r = store.scan(c, b"", 7);
        t.rec(&op("scan"), &r);
        match r {
            Ok((keys, next)) => {
                assert!(keys.len() <= 7, "scan page longer than its limit");
                assert!(next.is_none_or(|n| n > c), "scan cursor went back");
                cursor = next;
            }
            Err(_) => break,
        }
        pages += 1;
        assert!(pages < 10_000, "scan does not end");
    }
    t.rec(&op("scan"), &store.scan(u64::MAX, b"key", 1));
    t.rec(&op("delete_prefix"), &store.delete_prefix(b"key:00"));
    let n = store.len();
    t.ok(&op("len"), n);
    t.ok(&op("is_empty"), store.is_empty());
    for (name, _) in &fx.counters {
        let c = store.counter(name);
        if let Ok(c) = &c {
            c.add(1);
            c.get();
        }
        t.rec(&op("counter"), &c);
    }
    t.rec(&op("counter"), &store.counter("brand-new"));
    t.rec(&op("counters"), &store.counters());
    t.ok(&op("stats"), store.stats());
    t.rec(&op("prometheus"), &shmstate::prometheus(store));
    t.rec(&op("verify"), &store.verify());
    let cleared = store.clear();
    t.rec(&op("clear"), &cleared);
    t.rec(&op("verify"), &store.verify());
    t.rec(&op("set"), &store.set(b"after-clear", b"v", None));
    cleared
}

// ---------------------------------------------------------------------------------------------
// Scenario kinds

/// Header fields: (name, width, checked by verify, reopen refused when changed). Every field of
/// the configuration and the seed is covered by `config_check`, so a change to any is refused.
const HEADER: [(&str, usize, bool, bool); 21] = [
    ("magic", 8, true, true),
    ("version", 4, true, true),
    ("init_state", 4, false, true),
    ("fingerprint", 8, true, true),
    ("total_len", 8, true, true),
    ("seed0", 8, true, true),
    ("seed1", 8, true, true),
    ("capacity", 8, true, true),
    ("shards", 4, true, true),
    ("groups_per_shard", 4, true, true),
    ("max_key_len", 4, true, true),
    ("max_value_len", 4, true, true),
    ("max_counters", 4, true, true),
    ("policy", 4, true, true),
    ("stat_slots", 4, true, true),
    ("lock_timeout_ms", 4, true, true),
    ("generation", 8, false, false),
    ("created_ms", 8, false, false),
    ("creator_pid", 4, false, false),
    ("pages_per_shard", 4, true, true),
    ("config_check", 8, true, true),
];

fn header() {
    let mut v = Vec::new();
    for (i, (field, width, checked, refused)) in HEADER.into_iter().enumerate() {
        let max = if width == 4 {
            u64::from(u32::MAX)
        } else {
            u64::MAX
        };
        // Named regions for a few fields (Store::open), files for the rest (Store::open_file).
        let backing = if i % 4 == 0 {
            Backing::Shm
        } else {
            Backing::File
        };
        for (label, val) in [
            ("0", Some(0)),
            ("1", Some(1)),
            ("max", Some(max)),
            ("rand", None),
        ] {
            v.push(sc(format!("{field}={label}"), backing, move |fx, rng| {
                let p = fx.part(PartKind::Header(field), None, None);
                let old = &fx.image[p.range.clone()];
                let bytes = match val {
                    Some(x) => x.to_ne_bytes()[..width].to_vec(),
                    None => rng.bytes(width),
                };
                let changed = bytes != old;
                let num = {
                    let mut b = [0u8; 8];
                    b[..width].copy_from_slice(&bytes);
                    u64::from_ne_bytes(b)
                };
                // Values the header check accepts: only changes to informational fields.
                let _ = num;
                let valid = !refused;
                Plan::new()
                    .write(p.range.start, bytes)
                    .verify(if checked && changed {
                        Expect::Fails
                    } else {
                        Expect::Passes
                    })
                    .reopen(if !changed || valid {
                        Reopen::MustSucceed
                    } else {
                        Reopen::MustFail
                    })
            }));
        }
    }
    for (label, delta) in [
        ("file grown by 8", 8i64),
        ("file cut by 8", -8),
        ("file cut to the header", i64::MIN),
        ("file cut to 100 bytes", i64::MAX),
    ] {
        v.push(sc(label, Backing::File, move |fx, _| {
            let len = fx.image.len() as i64;
            let mut p = Plan::new().verify(Expect::Passes).reopen(Reopen::MustFail);
            p.resize = Some(match delta {
                i64::MIN => 512,
                i64::MAX => 100,
                d => (len + d) as u64,
            });
            p
        }));
    }
    v.push(sc("whole header 0xff", Backing::File, |fx, _| {
        let mut p = Plan::new().verify(Expect::Fails).reopen(Reopen::MustFail);
        for part in fx.parts(|p| matches!(p.kind, PartKind::Header(_))) {
            p = p.fill(part, 0xff);
        }
        p
    }));
    v.push(sc("whole header zero", Backing::Shm, |fx, _| {
        let mut p = Plan::new().verify(Expect::Fails).reopen(Reopen::MustFail);
        for part in fx.parts(|p| matches!(p.kind, PartKind::Header(_))) {
            p = p.fill(part, 0);
        }
        p
    }));
    v.push(sc("header random x3", Backing::File, |fx, rng| {
        let mut p = Plan::new().verify(Expect::Fails).reopen(Reopen::MustFail);
        for part in fx.parts(|p| matches!(p.kind, PartKind::Header(_))) {
            p = p.random(part, rng);
        }
        p
    }));
    run_kind("header", v);
}

/// Byte patterns for a pthread mutex. The glibc x86-64 field offsets (lock word 0, owner 8,
/// kind 16) are used for a few targeted values; on another libc they are just other bytes.
/// A named way to fill a mutex's bytes.
type MutexPattern = (&'static str, fn(&RegionPart, &mut Rng) -> Plan);

fn mutex_patterns() -> Vec<MutexPattern> {
    fn w32(p: &RegionPart, at: usize, v: u32) -> Plan {
        Plan::new().write(p.range.start + at, v.to_ne_bytes())
    }
    vec![
        ("zero", |p, _| Plan::new().fill(p, 0)),
        ("0xff", |p, _| Plan::new().fill(p, 0xff)),
        ("random-a", |p, r| Plan::new().random(p, r)),
        ("random-b", |p, r| Plan::new().random(p, r)),
        ("lock word = live other process", |p, _| {
            w32(p, 0, std::os::unix::process::parent_id())
        }),
        ("lock word = own tid", |p, _| {
            // SAFETY: gettid has no preconditions. (Computed in the parent: the child's tid
            // differs, so this names a live thread of another process.)
            w32(p, 0, unsafe { libc::gettid() } as u32)
        }),
        ("lock word = the locker's own tid", |p, _| {
            let mut plan = Plan::new();
            plan.own_tid_at = Some(p.range.start);
            plan
        }),
        ("lock word = dead owner", |p, _| {
            w32(p, 0, 0x4000_0000 | 0x3fff_fff0)
        }),
        ("lock word = 1 (taken, no owner)", |p, _| w32(p, 0, 1)),
        ("owner = not recoverable", |p, _| w32(p, 8, 0x7fff_fffe)),
        ("kind = garbage", |p, _| w32(p, 16, 0xdead_beef)),
        ("kind = pi|robust", |p, _| w32(p, 16, 0x20 | 0x10 | 0x80)),
        ("kind = pp", |p, _| w32(p, 16, 0x40 | 0x80)),
    ]
}

fn registry_mutex() {
    let v = mutex_patterns()
        .into_iter()
        .map(|(label, f)| {
            sc(label, Backing::Anon, move |fx, rng| {
                f(fx.part(PartKind::RegistryMutex, None, None), rng).verify(Expect::Passes)
            })
        })
        .collect();
    run_kind("registry_mutex", v);
}

fn counters() {
    let mut v = Vec::new();
    let fields = [
        (CounterField::State, vec![0u64, 2, u64::from(u32::MAX)]),
        (
            CounterField::NameLen,
            vec![0, 1, 112, 113, u64::from(u32::MAX)],
        ),
        (CounterField::Hash, vec![0, u64::MAX]),
        (CounterField::Value, vec![0, u64::MAX, 1 << 63]),
    ];
    for (f, vals) in fields {
        for val in vals {
            v.push(sc(
                format!("{f:?}={val:#x}"),
                Backing::Anon,
                move |fx, rng| {
                    let i = rng.below(fx.counters.len()) as u32;
                    // The counter record holding a registered name.
                    let live: Vec<_> = fx
                        .parts(|p| p.kind == PartKind::Counter(CounterField::State))
                        .into_iter()
                        .filter(|p| u32_at(&fx.image, &p.range) == 1)
                        .collect();
                    let rec = live[i as usize % live.len()].slot;
                    let p = fx.part(PartKind::Counter(f), None, rec);
                    let old = {
                        let mut b = [0u8; 8];
                        b[..p.range.len()].copy_from_slice(&fx.image[p.range.clone()]);
                        u64::from_ne_bytes(b)
                    };
                    let plan = if p.range.len() == 4 {
                        Plan::new().u32(p, val as u32)
                    } else {
                        Plan::new().u64(p, val)
                    };
                    let same =
                        (val & if p.range.len() == 4 {
                            0xffff_ffff
                        } else {
                            u64::MAX
                        }) == old;
                    plan.verify(match f {
                        _ if same => Expect::Passes,
                        CounterField::Value => Expect::Passes,
                        CounterField::State if val == 0 => Expect::Passes, // now EMPTY: gone
                        _ => Expect::Fails,
                    })
                },
            ));
        }
    }
    v.push(sc("name bytes random", Backing::Anon, |fx, rng| {
        let rec = fx
            .parts(|p| p.kind == PartKind::Counter(CounterField::State))
            .into_iter()
            .find(|p| u32_at(&fx.image, &p.range) == 1)
            .unwrap()
            .slot;
        let p = fx.part(PartKind::Counter(CounterField::Name), None, rec);
        Plan::new().random(p, rng).verify(Expect::Fails)
    }));
    v.push(sc("empty record made live", Backing::Anon, |fx, rng| {
        let rec = fx
            .parts(|p| p.kind == PartKind::Counter(CounterField::State))
            .into_iter()
            .find(|p| u32_at(&fx.image, &p.range) == 0)
            .unwrap()
            .slot;
        let mut plan = Plan::new().u32(
            fx.part(PartKind::Counter(CounterField::State), None, rec),
            1,
        );
        for f in [
            CounterField::NameLen,
            CounterField::Hash,
            CounterField::Name,
        ] {
            plan = plan.random(fx.part(PartKind::Counter(f), None, rec), rng);
        }
        plan.verify(Expect::Fails)
    }));
    for b in [0u8, 0xff] {
        v.push(sc(
            format!("all records {b:#x}"),
            Backing::Anon,
            move |fx, _| {
                let mut plan = Plan::new().verify(if b == 0 {
                    Expect::Passes
                } else {
                    Expect::Fails
                });
                for p in fx.parts(|p| matches!(p.kind, PartKind::Counter(_))) {
                    plan = plan.fill(p, b);
                }
                plan
            },
        ));
    }
    run_kind("counters", v);
}

fn stat_slots() {
    let mut v = Vec::new();
    for b in [0u8, 0xff] {
        v.push(sc(format!("all {b:#x}"), Backing::Anon, move |fx, _| {
            let mut plan = Plan::new().verify(Expect::Passes);
            for p in fx.parts(|p| p.kind == PartKind::StatSlot) {
                plan = plan.fill(p, b);
            }
            plan
        }));
    }
    v.push(sc("owners = live other process", Backing::Anon, |fx, _| {
        let mut plan = Plan::new().verify(Expect::Passes);
        for p in fx.parts(|p| p.kind == PartKind::StatSlot) {
            plan = plan.u32(p, std::os::unix::process::parent_id());
        }
        plan
    }));
    for k in 0..3 {
        v.push(sc(format!("random-{k}"), Backing::Anon, |fx, rng| {
            let slots = fx.parts(|p| p.kind == PartKind::StatSlot);
            let mut plan = Plan::new().verify(Expect::Passes);
            for _ in 0..8 {
                plan = plan.random(slots[rng.below(slots.len())], rng);
            }
            plan
        }));
    }
    run_kind("stat_slots", v);
}

fn scratch_slots() {
    let mut v = Vec::new();
    for k in 0..3 {
        v.push(sc(
            format!("thread scratch random-{k}"),
            Backing::Anon,
            |fx, rng| {
                let parts = fx.parts(|p| matches!(p.kind, PartKind::ThreadScratch(_)));
                let mut plan = Plan::new().verify(Expect::Passes);
                for _ in 0..32 {
                    plan = plan.random(parts[rng.below(parts.len())], rng);
                }
                plan
            },
        ));
    }
    for b in [0u8, 0xff] {
        v.push(sc(
            format!("all scratch {b:#x}"),
            Backing::Anon,
            move |fx, _| {
                let mut plan = Plan::new().verify(Expect::Passes);
                for p in fx.parts(|p| {
                    matches!(
                        p.kind,
                        PartKind::ThreadScratch(_) | PartKind::ShardScratch(_)
                    )
                }) {
                    plan = plan.fill(p, b);
                }
                plan
            },
        ));
    }
    v.push(sc("shard scratch lengths huge", Backing::Anon, |fx, _| {
        let mut plan = Plan::new().verify(Expect::Passes);
        for s in 0..2 {
            for f in [SlotField::KeyLen, SlotField::ValLen, SlotField::Seq] {
                plan = plan.u32(fx.shard_part(PartKind::ShardScratch(f), s), u32::MAX);
            }
        }
        plan
    }));
    run_kind("scratch_slots", v);
}

fn shard_mutex() {
    let mut v = Vec::new();
    for (k, (label, f)) in mutex_patterns().into_iter().enumerate() {
        let backing = if k % 3 == 0 {
            Backing::File
        } else {
            Backing::Anon
        };
        v.push(sc(label, backing, move |fx, rng| {
            let s = rng.below(2) as u32;
            let t = fx.pick(rng, |l| l.shard == s);
            f(fx.shard_part(PartKind::ShardMutex, s), rng)
                .target(&t, Target::Exact)
                .recovery(if backing == Backing::File {
                    Recovery::Reopen
                } else {
                    Recovery::None
                })
        }));
    }
    v.push(sc("both shard mutexes random", Backing::File, |fx, rng| {
        Plan::new()
            .random(fx.shard_part(PartKind::ShardMutex, 0), rng)
            .random(fx.shard_part(PartKind::ShardMutex, 1), rng)
            .recovery(Recovery::Reopen)
    }));
    run_kind("shard_mutex", v);
}

fn rec(fx: &Fixture, s: u32, f: RepairField) -> RegionPart {
    fx.shard_part(PartKind::Repair(f), s).clone()
}

/// A shard and one of its live keys.
fn busy(fx: &Fixture, rng: &mut Rng) -> (u32, Live) {
    let s = rng.below(2) as u32;
    (s, fx.pick(rng, |l| l.shard == s))
}

fn repair_record() {
    let mut v = Vec::new();
    // Broken records: every lock of the shard fails until `clear` rebuilds it.
    for op in [3u32, 0xff, u32::MAX] {
        v.push(sc(format!("op={op:#x}"), Backing::Anon, move |fx, rng| {
            let (s, _) = busy(fx, rng);
            Plan::new()
                .u32(&rec(fx, s, RepairField::Op), op)
                .verify(Expect::Fails)
                .recovery(Recovery::Clear)
        }));
    }
    let n = 80u32; // slots per shard in this configuration (checked below)
    for target in [n, n + 1, u32::MAX] {
        v.push(sc(
            format!("REDO_PUT target={target:#x}"),
            Backing::Anon,
            move |fx, rng| {
                assert_eq!(fx.slots_per_shard(), n);
                let (s, _) = busy(fx, rng);
                Plan::new()
                    .u32(&rec(fx, s, RepairField::Op), 1)
                    .u32(&rec(fx, s, RepairField::Target), target)
                    .u32(&rec(fx, s, RepairField::Tag), 0x85)
                    .verify(Expect::Fails)
                    .recovery(Recovery::Clear)
            },
        ));
    }
    for tag in [0u32, 1, 0x7f, 0x100, u32::MAX] {
        v.push(sc(
            format!("REDO_PUT tag={tag:#x}"),
            Backing::Anon,
            move |fx, rng| {
                let (s, t) = busy(fx, rng);
                Plan::new()
                    .u32(&rec(fx, s, RepairField::Op), 1)
                    .u32(&rec(fx, s, RepairField::Target), t.slot)
                    .u32(&rec(fx, s, RepairField::Tag), tag)
                    .verify(Expect::Fails)
                    .recovery(Recovery::Clear)
            },
        ));
    }
    for scratch in [256u32, 257, u32::MAX] {
        v.push(sc(
            format!("REDO_PUT scratch={scratch:#x}"),
            Backing::Anon,
            move |fx, rng| {
                let (s, t) = busy(fx, rng);
                Plan::new()
                    .u32(&rec(fx, s, RepairField::Op), 1)
                    .u32(&rec(fx, s, RepairField::Target), t.slot)
                    .u32(&rec(fx, s, RepairField::Tag), 0x80)
                    .u32(&rec(fx, s, RepairField::Scratch), scratch)
                    .verify(Expect::Fails)
                    .recovery(Recovery::Clear)
            },
        ));
    }
    for (f, len) in [
        (SlotField::KeyLen, MAX_KEY as u32 + 1),
        (SlotField::KeyLen, 16),
        (SlotField::KeyLen, u32::MAX),
        (SlotField::ValLen, MAX_VAL as u32 + 1),
        (SlotField::ValLen, 1 << 20),
        (SlotField::ValLen, u32::MAX),
    ] {
        for thread in [false, true] {
            let name = format!(
                "REDO_PUT {} scratch {f:?}={len:#x}",
                if thread { "thread" } else { "shard" }
            );
            v.push(sc(name, Backing::Anon, move |fx, rng| {
                let (s, t) = busy(fx, rng);
                let (idx, sp) = if thread {
                    let i = 1 + rng.below(255) as u32;
                    (
                        i,
                        fx.part(PartKind::ThreadScratch(f), None, Some(i)).clone(),
                    )
                } else {
                    (0, fx.shard_part(PartKind::ShardScratch(f), s).clone())
                };
                Plan::new()
                    .u32(&sp, len)
                    .u32(&rec(fx, s, RepairField::Op), 1)
                    .u32(&rec(fx, s, RepairField::Target), t.slot)
                    .u32(&rec(fx, s, RepairField::Tag), 0x80)
                    .u32(&rec(fx, s, RepairField::Scratch), idx)
                    .verify(Expect::Fails)
                    .recovery(Recovery::Clear)
            }));
        }
    }
    // A well-formed redo of garbage: repair copies it (the record is the writer's word), and
    // whatever lands in the slot is reported, never read out of bounds.
    v.push(sc(
        "REDO_PUT of a random scratch slot",
        Backing::Anon,
        |fx, rng| {
            let (s, t) = busy(fx, rng);
            let mut plan = Plan::new();
            for f in [
                SlotField::Key,
                SlotField::Value,
                SlotField::Expires,
                SlotField::Seq,
            ] {
                plan = plan.random(fx.shard_part(PartKind::ShardScratch(f), s), rng);
            }
            plan.u32(
                &fx.shard_part(PartKind::ShardScratch(SlotField::KeyLen), s)
                    .clone(),
                5,
            )
            .u32(
                &fx.shard_part(PartKind::ShardScratch(SlotField::ValLen), s)
                    .clone(),
                9,
            )
            .u32(&rec(fx, s, RepairField::Op), 1)
            .u32(&rec(fx, s, RepairField::Target), t.slot)
            .u32(&rec(fx, s, RepairField::Tag), 0x80 | rng.below(128) as u32)
            .u32(&rec(fx, s, RepairField::Scratch), 0)
            .recovery(Recovery::Clear)
        },
    ));
    v.push(sc("REDO_CLEAR", Backing::Anon, |fx, rng| {
        let (s, _) = busy(fx, rng);
        // The lock-free reads before any lock see the entries; the first locker clears.
        Plan::new()
            .u32(&rec(fx, s, RepairField::Op), 2)
            .verify(Expect::Passes)
            .recovery(Recovery::Clear)
    }));
    for touch in [n + 1, n + 2, u32::MAX] {
        v.push(sc(
            format!("touch={touch:#x}"),
            Backing::Anon,
            move |fx, rng| {
                let (s, _) = busy(fx, rng);
                Plan::new()
                    .u32(&rec(fx, s, RepairField::Touch), touch)
                    .verify(Expect::Fails)
                    .recovery(Recovery::Clear)
            },
        ));
    }
    for touch in [1u32, n] {
        v.push(sc(
            format!("touch={touch} (in range)"),
            Backing::Anon,
            move |fx, rng| {
                let (s, _) = busy(fx, rng);
                Plan::new()
                    .u32(&rec(fx, s, RepairField::Touch), touch)
                    .verify(Expect::Passes)
                    .recovery(Recovery::Clear)
            },
        ));
    }
    for k in 0..4 {
        v.push(sc(
            format!("random record-{k}"),
            Backing::Anon,
            |fx, rng| {
                let (s, _) = busy(fx, rng);
                let mut plan = Plan::new().recovery(Recovery::Clear);
                for f in [
                    RepairField::Op,
                    RepairField::Target,
                    RepairField::Tag,
                    RepairField::Touch,
                    RepairField::Scratch,
                ] {
                    // Small values are the interesting ones: valid ops, in-range slots.
                    let x = match rng.below(3) {
                        0 => rng.below(4) as u32,
                        1 => rng.below(300) as u32,
                        _ => rng.next() as u32,
                    };
                    plan = plan.u32(&rec(fx, s, f), x);
                }
                plan
            },
        ));
    }
    run_kind("repair_record", v);
}

fn counts() {
    let mut v = Vec::new();
    for f in [
        CountField::Len,
        CountField::Tombstones,
        CountField::SweepCursor,
    ] {
        for (label, val) in [
            ("0", Some(0u64)),
            ("1", Some(1)),
            ("max", Some(u64::MAX)),
            ("rand", None),
        ] {
            v.push(sc(
                format!("{f:?}={label}"),
                Backing::Anon,
                move |fx, rng| {
                    let s = rng.below(2) as u32;
                    let p = fx.shard_part(PartKind::Count(f), s);
                    let val = val.unwrap_or_else(|| rng.next());
                    let old = u64::from_ne_bytes(fx.image[p.range.clone()].try_into().unwrap());
                    Plan::new()
                        .u64(p, val)
                        .verify(if f == CountField::SweepCursor || val == old {
                            Expect::Passes
                        } else {
                            Expect::Fails
                        })
                        .recovery(Recovery::Clear)
                },
            ));
        }
    }
    v.push(sc(
        "regression: len = u64::MAX in every shard",
        Backing::Anon,
        |fx, _| {
            let mut plan = Plan::new().verify(Expect::Fails).recovery(Recovery::Clear);
            for p in fx.parts(|p| matches!(p.kind, PartKind::Count(_))) {
                plan = plan.u64(p, u64::MAX);
            }
            plan
        },
    ));
    run_kind("counts", v);
}

fn control_bytes() {
    let mut v = Vec::new();
    // A whole shard's control bytes.
    for (label, b) in [
        ("all FULL, one tag (probes never find EMPTY)", Some(0x80u8)),
        ("all 0xff", Some(0xff)),
        ("all DELETED", Some(0x01)),
        ("all EMPTY", Some(0x00)),
        ("all invalid 0x7f", Some(0x7f)),
        ("random", None),
    ] {
        for evict in [false, true] {
            let s = sc(label, Backing::Anon, move |fx, rng| {
                let s = rng.below(2) as u32;
                let p = fx.shard_part(PartKind::ControlBytes, s);
                match b {
                    Some(b) => Plan::new().fill(p, b),
                    None => Plan::new().random(p, rng),
                }
                .intact(Intact::OtherShards(s))
                .verify(Expect::Fails)
                .recovery(Recovery::Clear)
            });
            v.push(if evict { evicting(s) } else { s });
        }
    }
    // One key's control byte.
    for (label, b) in [
        ("EMPTY", 0x00u8),
        ("DELETED", 0x01),
        ("invalid 0x02", 0x02),
        ("invalid 0x7f", 0x7f),
        ("other FULL tag", 0),
    ] {
        v.push(sc(
            format!("target {label}"),
            Backing::Anon,
            move |fx, rng| {
                let t = fx.pick(rng, |_| true);
                let p = fx.shard_part(PartKind::ControlBytes, t.shard);
                let at = p.range.start + t.slot as usize;
                let b = if b == 0 && label != "EMPTY" {
                    0x80 | (fx.image[at].wrapping_add(1) & 0x7f) // another tag
                } else {
                    b
                };
                Plan::new()
                    .write(at, [b])
                    .intact(if b == 0 {
                        Intact::OtherShards(t.shard) // an EMPTY byte ends other keys' probes
                    } else {
                        Intact::AllBut(t.key.clone())
                    })
                    .target(&t, Target::Absent)
                    .verify(Expect::Fails)
                    .recovery(Recovery::Clear)
            },
        ));
    }
    run_kind("control_bytes", v);
}

fn slot_header() {
    let mut v = Vec::new();
    // A scenario on a live entry chosen by `pick` (e.g. inline or heap values only).
    let one_of = |name: String,
                  pick: fn(&Live) -> bool,
                  f: SlotField,
                  val: u64,
                  target: Target,
                  verify: Expect| {
        sc(name, Backing::Anon, move |fx, rng| {
            let t = fx.pick(rng, pick);
            let p = fx.slot_part(&t, f);
            let plan = if p.range.len() == 4 {
                Plan::new().u32(p, val as u32)
            } else {
                Plan::new().u64(p, val)
            };
            plan.intact(Intact::AllBut(t.key.clone()))
                .target(&t, target.clone())
                .verify(verify)
                .recovery(Recovery::Clear)
        })
    };
    let one = |name: String, f: SlotField, val: u64, target: Target, verify: Expect| {
        one_of(name, |l| !l.value.is_empty(), f, val, target, verify)
    };
    for (label, seq) in [
        ("1", 1u64),
        ("u32::MAX", u64::from(u32::MAX)),
        ("odd", 12345),
    ] {
        v.push(one(
            format!("seq={label} (odd: mid-write)"),
            SlotField::Seq,
            seq,
            Target::Exact,
            Expect::Fails,
        ));
    }
    for seq in [0u64, 2, 0xffff_fffe] {
        v.push(one(
            format!("seq={seq:#x} (even)"),
            SlotField::Seq,
            seq,
            Target::Exact,
            Expect::Passes,
        ));
    }
    for len in [MAX_KEY as u64 + 1, 16, 17, u64::from(u32::MAX)] {
        v.push(one(
            format!("key_len={len:#x} (over max)"),
            SlotField::KeyLen,
            len,
            Target::Absent,
            Expect::Fails,
        ));
    }
    for len in [0u64, 1] {
        v.push(one(
            format!("key_len={len}"),
            SlotField::KeyLen,
            len,
            Target::Absent,
            Expect::Any,
        ));
    }
    for len in [
        MAX_VAL as u64 + 1,
        MAX_VAL as u64 + 8,
        1 << 22, // past the heap's largest value too
        1 << 31,
        u64::from(u32::MAX),
    ] {
        v.push(one(
            format!("val_len={len:#x} (over max)"),
            SlotField::ValLen,
            len,
            Target::Corrupted,
            Expect::Fails,
        ));
    }
    // An inline value (at most 24 bytes) read at another inline length: the slot's bytes.
    for len in [0u64, 1, INLINE as u64] {
        v.push(one_of(
            format!("val_len={len} (inline value)"),
            |l| !l.value.is_empty() && l.value.len() <= INLINE,
            SlotField::ValLen,
            len,
            Target::Len(len as usize),
            Expect::Passes,
        ));
    }
    // A heap value at another length of the same size class: read at that length, but the
    // heap's byte count disagrees (verify fails); at an inline length, its block leaks.
    for len in [SMALL as u64, 1] {
        v.push(one_of(
            format!("val_len={len} (small heap value)"),
            |l| l.value.len() > INLINE && l.value.len() < SMALL,
            SlotField::ValLen,
            len,
            Target::Len(len as usize),
            Expect::Fails,
        ));
    }
    v.push(one_of(
        "val_len=101 (100-byte value: same block)".into(),
        |l| l.value.len() == HEAP_SHAPES[0],
        SlotField::ValLen,
        101,
        Target::Len(101),
        Expect::Fails,
    ));
    // A value of another shape whose root block has the same class (an extent of 2 or 3
    // pieces): its piece locators are of the wrong kind, so the value does not decode.
    for (from, to) in [
        (HEAP_SHAPES[2], HEAP_SHAPES[1]),
        (HEAP_SHAPES[1], HEAP_SHAPES[2]),
    ] {
        v.push(sc(
            format!("val_len={to} ({from}-byte value: other shape)"),
            Backing::Anon,
            move |fx, rng| {
                let t = fx.pick(rng, |l| l.value.len() == from);
                let mut plan = Plan::new()
                    .u32(fx.slot_part(&t, SlotField::ValLen), to as u32)
                    .intact(Intact::AllBut(t.key.clone()))
                    .target(&t, Target::Corrupted)
                    .verify(Expect::Reports("ValueLocator"))
                    .recovery(Recovery::Clear);
                plan.corrupted_cas = Some(vec![b'?'; to]);
                plan
            },
        ));
    }
    // An inline value read as a heap value: its bytes are no valid locator, or name a block
    // that is not its own.
    for len in [SMALL as u64, MAX_VAL as u64] {
        v.push(one_of(
            format!("val_len={len} (inline value)"),
            |l| !l.value.is_empty() && l.value.len() <= INLINE,
            SlotField::ValLen,
            len,
            Target::Any,
            Expect::Any,
        ));
    }
    v.push(one(
        "flags=max".into(),
        SlotField::Flags,
        u64::MAX,
        Target::Exact,
        Expect::Passes,
    ));
    v.push(one(
        "expires=1 (expired)".into(),
        SlotField::Expires,
        1,
        Target::Absent,
        Expect::Passes,
    ));
    v.push(one(
        "expires=max".into(),
        SlotField::Expires,
        u64::MAX,
        Target::Exact,
        Expect::Passes,
    ));
    v.push(sc("expires=0 then ttl", Backing::Anon, |fx, rng| {
        let t = fx.pick(rng, |_| true);
        Plan::new()
            .u64(fx.slot_part(&t, SlotField::Expires), 0)
            .target(&t, Target::Exact)
            .intact(Intact::AllBut(t.key.clone()))
            .verify(Expect::Passes)
            .recovery(Recovery::Clear)
    }));
    for k in 0..4 {
        v.push(sc(
            format!("random header-{k}"),
            Backing::Anon,
            |fx, rng| {
                let t = fx.pick(rng, |_| true);
                let mut plan = Plan::new();
                for f in [
                    SlotField::Seq,
                    SlotField::KeyLen,
                    SlotField::ValLen,
                    SlotField::Flags,
                    SlotField::Expires,
                ] {
                    plan = plan.random(fx.slot_part(&t, f), rng);
                }
                plan.intact(Intact::AllBut(t.key.clone()))
                    .recovery(Recovery::Clear)
            },
        ));
    }
    for b in [0u8, 0xff] {
        v.push(sc(
            format!("every slot header of a shard {b:#x}"),
            Backing::Anon,
            move |fx, rng| {
                let s = rng.below(2) as u32;
                let mut plan = Plan::new()
                    .intact(Intact::OtherShards(s))
                    .verify(Expect::Fails)
                    .recovery(Recovery::Clear);
                for p in fx.parts(|p| {
                    p.shard == Some(s)
                        && matches!(
                            p.kind,
                            PartKind::Slot(
                                SlotField::Seq
                                    | SlotField::KeyLen
                                    | SlotField::ValLen
                                    | SlotField::Expires
                            )
                        )
                }) {
                    plan = plan.fill(p, b);
                }
                plan
            },
        ));
    }
    run_kind("slot_header", v);
}

fn key_value_bytes() {
    let mut v = Vec::new();
    for k in 0..3 {
        v.push(sc(
            format!("value bytes random-{k}"),
            Backing::Anon,
            |fx, rng| {
                let t = fx.pick(rng, |l| l.value.len() >= 4 && l.value.len() <= INLINE);
                let p = fx.slot_part(&t, SlotField::Value);
                // Inside an inline value: same length, other bytes.
                let n = t.value.len();
                Plan::new()
                    .write(p.range.start, rng.bytes(n))
                    .intact(Intact::AllBut(t.key.clone()))
                    .target(&t, Target::Len(n))
                    .cas()
                    .verify(Expect::Passes)
                    .recovery(Recovery::Clear)
            },
        ));
    }
    v.push(sc(
        "regression: value padding bytes",
        Backing::Anon,
        |fx, rng| {
            let t = fx.pick(rng, |l| l.value.len() % 8 != 0 && l.value.len() <= INLINE);
            let p = fx.slot_part(&t, SlotField::Value);
            let n = t.value.len();
            let pad = n.next_multiple_of(8);
            // Bytes after the value, inside its last word: not part of the value.
            Plan::new()
                .write(p.range.start + n, vec![0xa5; pad - n])
                .intact(Intact::AllBut(t.key.clone()))
                .target(&t, Target::Exact)
                .cas()
                .verify(Expect::Passes)
                .recovery(Recovery::Clear)
        },
    ));
    v.push(sc(
        "regression: key padding bytes",
        Backing::Anon,
        |fx, rng| {
            let t = fx.pick(rng, |l| l.key.len() % 8 != 0);
            let p = fx.slot_part(&t, SlotField::Key);
            let n = t.key.len();
            Plan::new()
                .write(p.range.start + n, vec![0x5a; n.next_multiple_of(8) - n])
                .intact(Intact::AllBut(t.key.clone()))
                .target(&t, Target::Exact)
                .cas()
                .verify(Expect::Passes)
                .recovery(Recovery::Clear)
        },
    ));
    v.push(sc("value room all 0xff", Backing::Anon, |fx, rng| {
        let t = fx.pick(rng, |l| !l.value.is_empty() && l.value.len() <= INLINE);
        Plan::new()
            .fill(fx.slot_part(&t, SlotField::Value), 0xff)
            .intact(Intact::AllBut(t.key.clone()))
            .target(&t, Target::Len(t.value.len()))
            .cas()
            .verify(Expect::Passes)
            .recovery(Recovery::Clear)
    }));
    // A heap value's locator scribbled: refused as corrupted, never read out of bounds.
    for fill in [0xffu8, 0x00] {
        v.push(sc(
            format!("heap locator all {fill:#04x}"),
            Backing::Anon,
            move |fx, rng| {
                let t = fx.pick(rng, |l| l.value.len() > INLINE);
                Plan::new()
                    .fill(fx.slot_part(&t, SlotField::Value), fill)
                    .intact(Intact::AllBut(t.key.clone()))
                    .target(&t, Target::Corrupted)
                    .verify(Expect::Fails)
                    .recovery(Recovery::Clear)
            },
        ));
    }
    for k in 0..3 {
        v.push(sc(
            format!("key bytes random-{k}"),
            Backing::Anon,
            |fx, rng| {
                let t = fx.pick(rng, |_| true);
                let p = fx.slot_part(&t, SlotField::Key);
                Plan::new()
                    .write(p.range.start, rng.bytes(t.key.len()))
                    .intact(Intact::AllBut(t.key.clone()))
                    .target(&t, Target::NotExact)
                    .recovery(Recovery::Clear)
            },
        ));
    }
    v.push(sc(
        "every key and value of a shard random",
        Backing::Anon,
        |fx, rng| {
            let s = rng.below(2) as u32;
            let mut plan = Plan::new()
                .intact(Intact::OtherShards(s))
                .recovery(Recovery::Clear);
            for p in fx.parts(|p| {
                p.shard == Some(s)
                    && matches!(p.kind, PartKind::Slot(SlotField::Key | SlotField::Value))
            }) {
                plan = plan.random(p, rng);
            }
            plan
        },
    ));
    run_kind("key_value_bytes", v);
}

// ---------------------------------------------------------------------------------------------
// The value heap

/// Heap metadata: pool header fields, used and partial-page maps, page descriptors.
fn is_heap_meta(k: &PartKind) -> bool {
    matches!(
        k,
        PartKind::Pool(_) | PartKind::UsedMap | PartKind::PartialMap { .. } | PartKind::PageDesc(_)
    )
}

impl Fixture {
    /// Heap pages per shard.
    fn npages(&self) -> u32 {
        self.parts(|p| p.kind == PartKind::Page && p.shard == Some(0))
            .len() as u32
    }
    /// Size classes (one partial-page map each).
    fn nclasses(&self) -> u8 {
        self.parts(|p| matches!(p.kind, PartKind::PartialMap { .. }) && p.shard == Some(0))
            .len() as u8
    }
    /// The `u32` / `u64` stored in a part of the populated image.
    fn image_u32(&self, p: &RegionPart) -> u32 {
        u32_at(&self.image, &p.range)
    }
    /// Page `p`'s descriptor kind in the populated image: 0 free, `1 + class`, else a large
    /// value's page.
    fn page_kind(&self, s: u32, p: u32) -> u32 {
        self.image_u32(self.part(PartKind::PageDesc(DescField::Kind), Some(s), Some(p)))
    }
    /// A page of shard `s` whose kind satisfies `f`.
    fn page_where(&self, s: u32, rng: &mut Rng, f: impl Fn(u32) -> bool) -> Option<u32> {
        let pages: Vec<u32> = (0..self.npages())
            .filter(|&p| f(self.page_kind(s, p)))
            .collect();
        (!pages.is_empty()).then(|| pages[rng.below(pages.len())])
    }
    /// Classes with pages in shard `s` (in the image).
    fn used_classes(&self, s: u32) -> Vec<u8> {
        (0..self.nclasses())
            .filter(|&c| {
                let p = self.part(
                    PartKind::Pool(PoolField::ClassPages { class: c }),
                    Some(s),
                    None,
                );
                self.image_u32(p) != 0
            })
            .collect()
    }
}

/// Bit `i` of a little-endian bitmap.
fn bit(bytes: &[u8], i: usize) -> bool {
    bytes[i / 8] >> (i % 8) & 1 == 1
}

/// What `verify` must say after `new` replaces the bytes of heap metadata part `p`: which
/// bytes verify checks against the values the slots reference.
fn meta_expect(fx: &Fixture, p: &RegionPart, new: &[u8]) -> Expect {
    let old = &fx.image[p.range.clone()];
    if old == new {
        return Expect::Passes;
    }
    let s = p.shard.unwrap();
    let npages = fx.npages() as usize;
    let changed = |i: usize| bit(old, i) != bit(new, i);
    match p.kind {
        PartKind::Pool(
            PoolField::UsedPages
            | PoolField::ValueBytes
            | PoolField::ClassPages { .. }
            | PoolField::ClassUsed { .. },
        ) => Expect::Reports("HeapCount"),
        // Hints (taken modulo their range), and the dirty flag: non-zero, the next lock holder
        // rebuilds the pool from the slots.
        PartKind::Pool(
            PoolField::ClockHand
            | PoolField::FreeCursor
            | PoolField::ClassHint { .. }
            | PoolField::Dirty,
        ) => Expect::Passes,
        // Bits past the last page are not pages.
        PartKind::UsedMap if (0..npages).any(changed) => Expect::Reports("HeapMap"),
        PartKind::UsedMap => Expect::Passes,
        // Every page's bit in every class's map is checked (set exactly for the class's own
        // pages with a free block); bits past the last page are not pages.
        PartKind::PartialMap { .. } => {
            let _ = s;
            if (0..npages).any(changed) {
                Expect::Reports("HeapMap")
            } else {
                Expect::Passes
            }
        }
        PartKind::PageDesc(DescField::Kind) => Expect::Fails,
        // Only a class page's bits are a block map; a large value's owner and piece index
        // are informational, and a free page's fields are rewritten when it is taken.
        PartKind::PageDesc(DescField::Owner) => Expect::Passes,
        PartKind::PageDesc(DescField::Bits) => {
            let kind = fx.page_kind(s, p.slot.unwrap());
            if (1..=u32::from(fx.nclasses())).contains(&kind) {
                Expect::Fails
            } else {
                Expect::Passes
            }
        }
        _ => unreachable!("{p:?} is no heap metadata"),
    }
}

fn fill_bytes(p: &RegionPart, fill: Option<u8>, rng: &mut Rng) -> Vec<u8> {
    match fill {
        Some(b) => vec![b; p.range.len()],
        None => rng.bytes(p.range.len()),
    }
}

const FILLS: [(&str, Option<u8>); 3] = [("zero", Some(0)), ("0xff", Some(0xff)), ("random", None)];

/// A shard holding heap values, and one of them.
fn heap_target(fx: &Fixture, rng: &mut Rng) -> (u32, Live) {
    let t = fx.pick(rng, |l| l.value.len() > SMALL);
    (t.shard, t)
}

/// Allocator metadata scribbled: reads never look at it (every key reads its value); writes
/// return `Ok` or an error (`Corrupted` where an allocation or free finds the maps disagree);
/// `verify` fails exactly when it changed a byte verify checks; `clear` recovers.
fn heap_metadata() {
    let mut v = Vec::new();
    // Which part of shard `s`, chosen against the fixture (None: the fixture has none).
    type Select = Box<dyn Fn(&Fixture, u32, &mut Rng) -> Option<RegionPart>>;
    fn pool(f: PoolField) -> impl Fn(&Fixture, u32) -> RegionPart {
        move |fx, s| fx.shard_part(PartKind::Pool(f), s).clone()
    }
    let mut selects: Vec<(String, Select)> = Vec::new();
    for f in [
        PoolField::UsedPages,
        PoolField::ValueBytes,
        PoolField::ClockHand,
        PoolField::FreeCursor,
        PoolField::Dirty,
    ] {
        let g = pool(f);
        selects.push((format!("{f:?}"), Box::new(move |fx, s, _| Some(g(fx, s)))));
    }
    type ClassField = fn(u8) -> PartKind;
    let class_kinds: [(&str, ClassField); 4] = [
        ("ClassPages", |class| {
            PartKind::Pool(PoolField::ClassPages { class })
        }),
        ("ClassUsed", |class| {
            PartKind::Pool(PoolField::ClassUsed { class })
        }),
        ("ClassHint", |class| {
            PartKind::Pool(PoolField::ClassHint { class })
        }),
        ("PartialMap", |class| PartKind::PartialMap { class }),
    ];
    for (name, k) in class_kinds {
        for used in [true, false] {
            let label = format!(
                "{name} of a class {}",
                if used { "in use" } else { "not in use" }
            );
            selects.push((
                label,
                Box::new(move |fx, s, rng| {
                    let used_classes = fx.used_classes(s);
                    let c: Vec<u8> = (0..fx.nclasses())
                        .filter(|c| used_classes.contains(c) == used)
                        .collect();
                    let c = c[rng.below(c.len())];
                    Some(fx.shard_part(k(c), s).clone())
                }),
            ));
        }
    }
    selects.push((
        "UsedMap".into(),
        Box::new(|fx, s, _| Some(fx.shard_part(PartKind::UsedMap, s).clone())),
    ));
    for f in [DescField::Kind, DescField::Owner, DescField::Bits] {
        for (what, which) in [
            ("a class page", 1u8),
            ("a large value's page", 2),
            ("a free page", 0),
        ] {
            selects.push((
                format!("{f:?} of {what}"),
                Box::new(move |fx, s, rng| {
                    let n = u32::from(fx.nclasses());
                    let page = fx.page_where(s, rng, |k| match which {
                        0 => k == 0,
                        1 => (1..=n).contains(&k),
                        _ => k > n,
                    })?;
                    Some(fx.part(PartKind::PageDesc(f), Some(s), Some(page)).clone())
                }),
            ));
        }
    }
    for (label, select) in selects {
        let select = std::rc::Rc::new(select);
        for (fill_name, fill) in FILLS {
            let select = std::rc::Rc::clone(&select);
            v.push(sc(
                format!("{label} {fill_name}"),
                Backing::Anon,
                move |fx, rng| {
                    // A shard with heap values, or the other if it has no such part.
                    let (s0, _) = heap_target(fx, rng);
                    let Some((s, p)) = [s0, 1 - s0]
                        .into_iter()
                        .find_map(|s| select(fx, s, rng).map(|p| (s, p)))
                    else {
                        panic!("the fixture has no such part")
                    };
                    let t = fx.pick(rng, |l| l.shard == s);
                    let bytes = fill_bytes(&p, fill, rng);
                    let expect = meta_expect(fx, &p, &bytes);
                    Plan::new()
                        .write(p.range.start, bytes)
                        .target(&t, Target::Exact)
                        .verify(expect)
                        .recovery(Recovery::Clear)
                },
            ));
        }
    }
    // Everything at once (but the dirty flag): verify fails; every key still reads.
    for (fill_name, fill) in FILLS {
        v.push(sc(
            format!("all heap metadata of a shard {fill_name}"),
            Backing::Anon,
            move |fx, rng| {
                let (s, t) = heap_target(fx, rng);
                let mut plan = Plan::new()
                    .target(&t, Target::Exact)
                    .verify(Expect::Fails)
                    .recovery(Recovery::Clear);
                for p in fx.parts(|p| {
                    p.shard == Some(s)
                        && is_heap_meta(&p.kind)
                        && p.kind != PartKind::Pool(PoolField::Dirty)
                }) {
                    let b = fill_bytes(p, fill, rng);
                    plan = plan.write(p.range.start, b);
                }
                plan
            },
        ));
    }
    // ... and with the dirty flag set: the next lock holder rebuilds it all from the slots,
    // so verify passes and every operation works (no `Corrupted`).
    v.push(sc(
        "all heap metadata random, dirty set",
        Backing::Anon,
        |fx, rng| {
            let (s, t) = heap_target(fx, rng);
            let mut plan = Plan::new()
                .target(&t, Target::Exact)
                .verify(Expect::Passes)
                .recovery(Recovery::Clear);
            for p in fx.parts(|p| p.shard == Some(s) && is_heap_meta(&p.kind)) {
                let b = rng.bytes(p.range.len());
                plan = plan.write(p.range.start, b);
            }
            plan.u64(fx.shard_part(PartKind::Pool(PoolField::Dirty), s), 1)
        },
    ));
    run_kind("heap_metadata", v);
}

/// A heap value's own bytes, block headers and extent locators scribbled.
fn heap_values() {
    let mut v = Vec::new();
    let shapes = |len: usize| move |l: &Live| l.value.len() == len;
    // Value bytes (same length, other bytes): read back as written, and verify passes (the
    // heap cannot tell); compare_and_swap accepts them.
    for len in HEAP_SHAPES {
        for all in [false, true] {
            v.push(sc(
                format!(
                    "{len}-byte value: {} bytes random",
                    if all { "all its" } else { "one piece's" }
                ),
                Backing::Anon,
                move |fx, rng| {
                    let t = fx.pick(rng, shapes(len));
                    let parts = t.heap_parts(|v| matches!(v, ValuePart::Bytes { .. }));
                    let hit = rng.below(parts.len());
                    let mut plan = Plan::new();
                    let mut want = Vec::new();
                    for (k, p) in parts.iter().enumerate() {
                        let bytes = if all || k == hit {
                            rng.bytes(p.range.len())
                        } else {
                            fx.image[p.range.clone()].to_vec()
                        };
                        want.extend_from_slice(&bytes);
                        plan = plan.write(p.range.start, bytes);
                    }
                    assert_eq!(want.len(), len);
                    plan.intact(Intact::AllBut(t.key.clone()))
                        .target(&t, Target::Value(want))
                        .cas()
                        .verify(Expect::Passes)
                        .recovery(Recovery::Clear)
                },
            ));
        }
    }
    // A block header (owner slot, piece index): reads do not use it, verify reports it.
    for len in HEAP_SHAPES {
        for (label, how) in [
            ("zero", 0u8),
            ("0xff", 1),
            ("random", 2),
            ("owner = another live slot", 3),
            ("piece = another piece", 4),
        ] {
            v.push(sc(
                format!("{len}-byte value: a block header {label}"),
                Backing::Anon,
                move |fx, rng| {
                    let t = fx.pick(rng, shapes(len));
                    let hs = t.heap_parts(|v| matches!(v, ValuePart::BlockHeader { .. }));
                    let h = hs[rng.below(hs.len())];
                    let old = &fx.image[h.range.clone()];
                    let bytes = match how {
                        0 => vec![0; 8],
                        1 => vec![0xff; 8],
                        2 => rng.bytes(8),
                        3 => {
                            let o = fx.pick(rng, |l| l.shard == t.shard && l.slot != t.slot);
                            [&o.slot.to_ne_bytes()[..], &old[4..]].concat()
                        }
                        _ => {
                            let piece = u32::from_ne_bytes(old[4..].try_into().unwrap());
                            [&old[..4], &piece.wrapping_add(1).to_ne_bytes()[..]].concat()
                        }
                    };
                    let verify = if bytes == old {
                        Expect::Passes
                    } else {
                        Expect::Reports("BlockOwner")
                    };
                    Plan::new()
                        .write(h.range.start, bytes)
                        .target(&t, Target::Exact)
                        .verify(verify)
                        .recovery(Recovery::Clear)
                },
            ));
        }
    }
    // An extent's piece locator: out of range -> Corrupted; another valid locator -> the
    // bytes it names, at the value's length, and verify reports the sharing.
    for len in [HEAP_SHAPES[1], HEAP_SHAPES[2]] {
        for (label, val) in [
            ("all ones", Some(u32::MAX)),
            ("0x7fffffff", Some(0x7fff_ffff)),
            ("0xbfffffc0", Some(0xbfff_ffc0)),
            ("random", None),
        ] {
            v.push(sc(
                format!("{len}-byte value: a locator {label}"),
                Backing::Anon,
                move |fx, rng| {
                    let t = fx.pick(rng, shapes(len));
                    let ls = t.heap_parts(|v| matches!(v, ValuePart::Locator { .. }));
                    let p = ls[rng.below(ls.len())];
                    let (bytes, target, verify) = match val {
                        Some(x) => (
                            x.to_ne_bytes().to_vec(),
                            Target::Corrupted,
                            Expect::Reports("ValueLocator"),
                        ),
                        None => (rng.bytes(4), Target::CorruptedOrLen(len), Expect::Fails),
                    };
                    Plan::new()
                        .write(p.range.start, bytes)
                        .intact(Intact::AllBut(t.key.clone()))
                        .target(&t, target)
                        .verify(verify)
                        .recovery(Recovery::Clear)
                },
            ));
        }
        // Zero: a tail block's locator must name a block (Corrupted); a whole page's is page 0,
        // which exists (read at the right length; verify reports the page shared or mislabeled).
        // A copy of another piece's locator names a block or page of this value twice.
        for (label, copy) in [("zero", false), ("a copy of another piece's", true)] {
            v.push(sc(
                format!("{len}-byte value: every locator {label}"),
                Backing::Anon,
                move |fx, rng| {
                    let t = fx.pick(rng, shapes(len));
                    let ls = t.heap_parts(|v| matches!(v, ValuePart::Locator { .. }));
                    let mut plan = Plan::new();
                    let first = fx.image[ls[0].range.clone()].to_vec();
                    for p in &ls {
                        let b = if copy { first.clone() } else { vec![0; 4] };
                        plan = plan.write(p.range.start, b);
                    }
                    // A tail's locator must name a block: zero does not, nor does a copy of a
                    // page's (9 KiB: two pages then a tail). 3 KiB: two tails of different
                    // classes; the first tail's block, read as a block of the second's class,
                    // may be in range: then the value reads at its length, and verify reports
                    // the page claimed by two classes.
                    let (target, verify) = if copy && len == HEAP_SHAPES[1] {
                        (Target::CorruptedOrLen(len), Expect::Fails)
                    } else {
                        (Target::Corrupted, Expect::Reports("ValueLocator"))
                    };
                    plan.intact(Intact::AllBut(t.key.clone()))
                        .target(&t, target)
                        .verify(verify)
                        .recovery(Recovery::Clear)
                },
            ));
        }
        // Only the whole pages' locators (9 KiB): page 0, or each the other's.
        if len == HEAP_SHAPES[2] {
            for (label, swap) in [("zero", false), ("swapped", true)] {
                v.push(sc(
                    format!("{len}-byte value: page locators {label}"),
                    Backing::Anon,
                    move |fx, rng| {
                        let t = fx.pick(rng, shapes(len));
                        // The pieces with no block header are whole pages.
                        let pages: Vec<u32> = (0..3u32)
                            .filter(|&i| {
                                t.heap_parts(|v| *v == ValuePart::BlockHeader { piece: Some(i) })
                                    .is_empty()
                            })
                            .collect();
                        assert_eq!(pages.len(), 2, "{t:?}");
                        let loc = |i: u32| {
                            t.heap_parts(|v| *v == ValuePart::Locator { piece: i })[0].clone()
                        };
                        let (a, b) = (loc(pages[0]), loc(pages[1]));
                        let (ab, bb) = if swap {
                            (
                                fx.image[b.range.clone()].to_vec(),
                                fx.image[a.range.clone()].to_vec(),
                            )
                        } else {
                            (vec![0; 4], vec![0; 4])
                        };
                        let target = if swap {
                            // The same bytes, the pages in the other order.
                            let bytes = t.heap_parts(|v| matches!(v, ValuePart::Bytes { .. }));
                            let mut want = Vec::new();
                            for i in [1usize, 0, 2] {
                                want.extend_from_slice(&fx.image[bytes[i].range.clone()]);
                            }
                            Target::Value(want)
                        } else {
                            Target::Len(len)
                        };
                        let unchanged = !swap
                            && ab == fx.image[a.range.clone()]
                            && bb == fx.image[b.range.clone()];
                        Plan::new()
                            .write(a.range.start, ab)
                            .write(b.range.start, bb)
                            // Page 0 is read, never written.
                            .intact(Intact::AllBut(t.key.clone()))
                            .target(&t, target)
                            // Swapped: each page is still this value's, once; the descriptors'
                            // piece index is informational (not checked).
                            .verify(if swap || unchanged {
                                Expect::Passes
                            } else {
                                Expect::Fails
                            })
                            .recovery(Recovery::Clear)
                    },
                ));
            }
        }
    }
    run_kind("heap_values", v);
}

/// Compaction meets a scribbled block header. One shard; 72 values of 100 bytes fill two pages
/// of their class; all but one value of one page (T) and a few of the other are deleted, so the
/// class has a page's worth of free blocks and T's page is the sparsest. T's block header is
/// scribbled, then values of 9 KiB are stored until one does not fit: compaction picks T's page,
/// finds that the header does not name T, and refuses with `Corrupted` (moving nothing: every
/// value still reads, and the slot the header names keeps its block). The unscribbled control
/// compacts (T moves) and ends `Full`. `verify` reports `BlockOwner`; `clear` recovers.
fn compaction() {
    let cases: [(&str, u8); 6] = [
        ("control: no scribble", 0),
        ("owner = another live value's slot", 1),
        ("owner = an empty slot", 2),
        ("owner out of range", 3),
        ("piece index changed", 4),
        ("header 0xff", 5),
    ];
    let mut tally = Tally::default();
    let mut failed = Vec::new();
    for (label, how) in cases {
        let (r, w) = pipe();
        let pid = spawn(|| {
            close(r);
            let mut t = Tally::default();
            compaction_child(label, how, &mut t);
            let text = t.encode();
            // SAFETY: valid buffer of `text.len()` bytes; `w` is our pipe's write end.
            let n = unsafe { libc::write(w, text.as_ptr().cast(), text.len()) };
            assert_eq!(n, text.len() as isize, "tally written whole");
        });
        close(w);
        let exit = catch_unwind(AssertUnwindSafe(|| wait(pid, WATCHDOG)));
        let text = read_all(r);
        close(r);
        match exit {
            Ok(Exit::Code(0)) => tally.absorb(&text),
            Ok(e) => failed.push(format!("{label} ({e:?})")),
            Err(_) => failed.push(format!("{label} (hang: killed after {WATCHDOG:?})")),
        }
    }
    tally.print("compaction", cases.len());
    assert!(
        failed.is_empty(),
        "compaction: failed scenarios:\n  {}",
        failed.join("\n  ")
    );
}

fn compaction_child(name: &str, how: u8, t: &mut Tally) {
    let fail = |what: String| -> ! { panic!("scenario {name}: {what}") };
    let cfg = shmstate::Config::new()
        .capacity(200)
        .shards(1)
        .max_key_len(MAX_KEY as u32)
        .max_value_len(MAX_VAL as u32)
        .memory(224 << 10)
        .lock_timeout(LOCK_TIMEOUT);
    let store = Store::anonymous(&cfg).unwrap();
    let parts = store.layout_map();
    let npages = parts.iter().filter(|p| p.kind == PartKind::Page).count();
    assert!((12..=40).contains(&npages), "{npages} heap pages");
    let page_of = |off: usize| {
        parts
            .iter()
            .find(|p| p.kind == PartKind::Page && p.range.contains(&off))
            .and_then(|p| p.slot)
            .expect("a block header in a page")
    };
    let header = |k: &[u8]| -> RegionPart {
        let vp = store.value_parts(k).unwrap();
        vp.into_iter()
            .find(|p| p.kind == PartKind::Value(ValuePart::BlockHeader { piece: None }))
            .expect("a root block")
    };
    let small = |i: usize| heap_value(HEAP_SHAPES[0], i);
    let key = |i: usize| format!("c:{i:02}").into_bytes();
    let mut pages: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for i in 0..72 {
        store.set(&key(i), &small(i), None).unwrap();
    }
    for i in 0..72 {
        pages
            .entry(page_of(header(&key(i)).range.start))
            .or_default()
            .push(i);
    }
    assert_eq!(
        pages.len(),
        2,
        "72 blocks of 112 bytes fill two pages: {pages:?}"
    );
    let (a, b) = (pages[&page_of(header(&key(0)).range.start)].clone(), {
        let mut it = pages.values().filter(|v| !v.contains(&0));
        it.next().unwrap().clone()
    });
    let target = a[0];
    let mut kept: Vec<usize> = vec![target];
    for &i in &a[1..] {
        store.delete(&key(i)).unwrap();
    }
    for (n, &i) in b.iter().enumerate() {
        if n < 6 {
            store.delete(&key(i)).unwrap();
        } else {
            kept.push(i);
        }
    }
    let other = *kept.last().unwrap(); // a live value on the other page
    let th = header(&key(target));
    let oh = header(&key(other));
    let old = snapshot(&store)[th.range.clone()].to_vec();
    let tslot = th.slot.unwrap();
    let empty_slot = {
        let ctrl = parts
            .iter()
            .find(|p| p.kind == PartKind::ControlBytes)
            .unwrap();
        let img = snapshot(&store);
        (0..ctrl.range.len())
            .find(|&i| img[ctrl.range.start + i] == 0)
            .expect("an empty slot") as u32
    };
    let with_owner = |o: u32| [&o.to_ne_bytes()[..], &old[4..]].concat();
    let bytes = match how {
        0 => None,
        1 => Some(with_owner(oh.slot.unwrap())),
        2 => Some(with_owner(empty_slot)),
        3 => Some(with_owner(u32::MAX - 1)),
        4 => Some([&old[..4], &0u32.to_ne_bytes()[..]].concat()),
        _ => Some(vec![0xff; 8]),
    };
    assert!(bytes
        .as_ref()
        .is_none_or(|b| *b != old && tslot != u32::MAX));
    if let Some(b) = &bytes {
        scribble(&store, &[(th.range.start, b.clone())]);
    }
    // Fill the heap with 9 KiB values until one does not fit.
    let big = |i: usize| heap_value(HEAP_SHAPES[2], 100 + i);
    let mut stored = Vec::new();
    let mut end = None;
    for i in 0..64 {
        let r = store.set(format!("big:{i}").as_bytes(), &big(i), None);
        t.rec("set", &r);
        match r {
            Ok(()) => stored.push(i),
            Err(e) => {
                end = Some(e);
                break;
            }
        }
    }
    match (&bytes, end) {
        (None, Some(shmstate::Error::Full)) => {}
        (Some(_), Some(shmstate::Error::Corrupted { .. })) => {}
        (_, other) => fail(format!("the fill ended with {other:?}")),
    }
    // Nothing moved to the wrong slot: every value reads; the other value keeps its block.
    for &i in &kept {
        match store.get(&key(i)) {
            Ok(Some(v)) if v == small(i) => {}
            other => fail(format!("c:{i:02} read {other:?}")),
        }
    }
    for &i in &stored {
        match store.get(format!("big:{i}").as_bytes()) {
            Ok(Some(v)) if v == big(i) => {}
            other => fail(format!(
                "big:{i} read {:?}",
                other.map(|o| o.map(|v| v.len()))
            )),
        }
    }
    if header(&key(other)).range != oh.range && bytes.is_some() {
        fail("the other value's block moved".into());
    }
    // The control compacted T's page: T moved.
    let moved = header(&key(target)).range != th.range;
    if moved != bytes.is_none() {
        fail(format!("T moved: {moved}"));
    }
    let rep = store.verify().unwrap();
    match &bytes {
        None if !rep.is_ok() => fail(format!("verify: {rep}")),
        Some(_)
            if !rep
                .problems
                .iter()
                .any(|p| p.kind == shmstate::ProblemKind::BlockOwner && p.slot == Some(tslot)) =>
        {
            fail(format!("verify did not report T's block owner: {rep}"))
        }
        _ => {}
    }
    let cleared = store.clear();
    t.rec("clear", &cleared);
    let rep = store.verify().unwrap();
    if !rep.is_ok() {
        fail(format!("not clean after clear: {rep}"));
    }
    for i in 0..4 {
        store
            .set(format!("big:{i}").as_bytes(), &big(i), None)
            .unwrap();
    }
}

/// Another process keeps writing random bytes over one kind of part while a child operates.
/// (Mutex bytes are left out: the libc reads and writes a held mutex's own fields, e.g. its
/// robust-list links, and trusts them; no check before the call can close that window.)
fn concurrent() {
    let mut v = Vec::new();
    type Select = fn(&PartKind) -> bool;
    let kinds: [(&str, Select); 7] = [
        ("control bytes", |k| *k == PartKind::ControlBytes),
        ("slot headers", |k| {
            matches!(
                k,
                PartKind::Slot(
                    SlotField::Seq | SlotField::KeyLen | SlotField::ValLen | SlotField::Expires
                )
            )
        }),
        ("keys and values", |k| {
            matches!(k, PartKind::Slot(SlotField::Key | SlotField::Value))
        }),
        ("repair records and counts", |k| {
            matches!(k, PartKind::Repair(_) | PartKind::Count(_))
        }),
        ("scratch slots", |k| {
            matches!(k, PartKind::ShardScratch(_) | PartKind::ThreadScratch(_))
        }),
        ("counters and statistics", |k| {
            matches!(k, PartKind::Counter(_) | PartKind::StatSlot)
        }),
        ("heap metadata", is_heap_meta),
    ];
    for (label, f) in kinds {
        v.push(sc(label, Backing::Anon, move |fx, _| {
            let mut plan = Plan::new().intact(Intact::Nothing);
            plan.concurrent = fx
                .parts(|p| f(&p.kind))
                .into_iter()
                .map(|p| p.range.clone())
                .collect();
            plan
        }));
    }
    // The live values' heap blocks: headers, extent locators, value bytes.
    v.push(sc("heap blocks of the values", Backing::Anon, |fx, _| {
        let mut plan = Plan::new().intact(Intact::Nothing);
        plan.concurrent = fx
            .live
            .iter()
            .flat_map(|l| l.heap.iter().map(|p| p.range.clone()))
            .collect();
        plan
    }));
    // Metadata and blocks together, mostly the small ones (a page's bytes are one range).
    v.push(sc(
        "heap metadata and block headers",
        Backing::Anon,
        |fx, _| {
            let mut plan = Plan::new().intact(Intact::Nothing);
            plan.concurrent = fx
                .parts(|p| is_heap_meta(&p.kind))
                .into_iter()
                .map(|p| p.range.clone())
                .chain(fx.live.iter().flat_map(|l| {
                    l.heap_parts(|v| !matches!(v, ValuePart::Bytes { .. }))
                        .into_iter()
                        .map(|p| p.range.clone())
                }))
                .collect();
            plan
        },
    ));
    run_kind("concurrent", v);
}

/// Random bytes over random parts of every kind (what a fuzzer does, with a fixed seed).
fn mixed() {
    let mut v = Vec::new();
    for k in 0..12 {
        let s = sc(format!("mixed-{k}"), Backing::Anon, |fx, rng| {
            let mut plan = Plan::new().intact(Intact::Nothing);
            for _ in 0..1 + rng.below(6) {
                let p = &fx.parts[rng.below(fx.parts.len())];
                // Leave the header alone (its own kind): here the table is the target.
                if matches!(p.kind, PartKind::Header(_)) {
                    continue;
                }
                plan = if rng.below(4) == 0 {
                    plan.fill(p, [0u8, 0xff, 0x80, 0x01][rng.below(4)])
                } else {
                    plan.random(p, rng)
                };
            }
            plan
        });
        v.push(if k % 3 == 0 { evicting(s) } else { s });
    }
    run_kind("mixed", v);
}
