//! The kill -9 torture soak, shared by `tests/torture.rs` (a CI-length run) and
//! `examples/torture.rs` (long runs from the command line).
//!
//! The promise under test: a worker killed at any instant (`SIGKILL`) loses at most its own
//! in-flight operation; nothing else is lost or corrupted, nobody deadlocks, and the value heap
//! loses no space.
//!
//! # How it works
//!
//! A supervisor (the calling process, which must be single-threaded) creates the store (an
//! anonymous region, or a region file or named shm object that every worker opens itself
//! after `fork`, so openers race with the storm and are killed mid-open too; see [`Backing`])
//! and a separate anonymous `MAP_SHARED` *ledger*, then forks `workers` workers. Each
//! worker loops over a random mix of every operation on a small hot keyset (so shard locks are
//! contended), recording in its ledger slot what it did. The supervisor kills a random worker
//! at random moments, reaps it and forks a replacement into the same slot. With the
//! `failpoints` feature it also arms, in the workers it forks (every one until each point has
//! been reached once, then half of them), a write point with
//! `Action::Park`: the worker stops there *holding its shard lock* and writes a byte to a
//! pipe, and the supervisor kills it after a short random hold (during which the others pile
//! up on that lock). The points are the table's write and repair steps and the value heap's
//! (a value's blocks written but not published, a block copied or re-pointed by compaction, a
//! victim chosen by eviction, an expired entry reclaimed for room, a removed value not yet
//! freed, the heap rebuilt by repair); which point a new worker is armed at favours the points
//! reached least so far, and every point a run arms must be reached (see [`park_points`]).
//!
//! # Values of every size
//!
//! Values are 1 byte to 64 KiB long, so they are stored in every way the heap has: inline in
//! the slot (up to 24 bytes), one block of a size class, whole pages plus tail blocks listed in
//! an extent block, up to sixteen whole pages. The mix of lengths shifts every
//! [`Params::phase`] between mostly small, mostly large and mixed values (plus the lengths at
//! the shape boundaries), so pages emptied by one mix must serve the next (compaction).
//! [`Params::heap`] sizes the heap: with [`Heap::Roomy`] every shard has room for every key at
//! 64 KiB at once, so no write is ever refused; with [`Heap::NearFull`] the heap is a fraction
//! of what the large mix needs, so writes compact, reclaim expired entries and refuse
//! ([`WhenFull::Refuse`]) or evict ([`WhenFull::Evict`]).
//!
//! What is checked, and how:
//!
//! * **Values are self-checking.** Every byte of a value is determined by its key, its
//!   length and its version (writer and sequence number), and the value carries all three
//!   (as far as its length allows; see [`make_value`]). Every read checks the whole value
//!   against the key read. A torn, truncated, extended or misplaced value (another key's, or
//!   pieces of two versions) is a violation.
//! * **Nothing acknowledged is lost, nothing unwritten appears.** Each slot owns a few private
//!   keys that only the worker in that slot writes. Before a write it records the write as
//!   pending in the ledger, after it as acknowledged; every read of a private key must return
//!   exactly the acknowledged state. A replacement worker first locks the key's shard (which
//!   repairs a dead predecessor's half-done write) and then accepts either the acknowledged
//!   or the pending state, which settles its predecessor's one in-flight write. A write refused
//!   with `Full` must leave the old value in place (checked by a read right after). Under
//!   `Evict`, a private key holding heap bytes may have been evicted (counted); one stored
//!   inline never is.
//! * **Counters are conserved.** `incr` keys (never deleted, no TTL) and named counters are
//!   only ever increased. A worker records "about to add d" before each increment and "added
//!   d" (acknowledged total) after it. When a worker is killed, its in-flight amounts become
//!   *uncertain*. At the end each value must lie in `[acknowledged, acknowledged +
//!   uncertain]`, and every value a worker reads or gets back must not be below what it saw
//!   before plus what it added since (increments are never lost, not even transiently).
//! * **Every result is expected.** The table's capacity is ample and the lock timeout (10 s)
//!   far above any legitimate wait, so every operation must return `Ok`, except `Full` for a
//!   value that needs the heap in a near-full `Refuse` run; any other `Err` (`Full` elsewhere,
//!   `LockTimeout`, `Corrupted`, ...) is a violation. Results are checked where they are
//!   determined: a compare-and-swap against a value never stored must fail, `delete` of a
//!   private key returns whether it was there, `ttl` never exceeds the longest TTL ever set,
//!   `scan` returns only keys that exist in the key plan, and a `verify` run by a worker in the
//!   middle of the storm must be clean.
//! * **Nobody waits long, nobody hangs.** Each worker measures every operation and keeps its
//!   maximum in the ledger; the maximum over all operations must stay below `max_wait_bound`.
//!   Workers stamp a heartbeat after every operation; a worker with no heartbeat for
//!   `hang_limit` (other than one parked on purpose) is a violation.
//! * **No space leaks.** At the end `verify()` is clean (it checks that every heap block is
//!   referenced exactly once and that the maps and counts agree); then every key is deleted,
//!   and the heap must be entirely free (`heap_free_bytes == heap_bytes`, no value bytes), and
//!   `verify()` clean again.
//! * **Recovery was exercised.** The store counted lock recoveries (at least one per killed
//!   lock holder), there were kills, and, with failpoints, every point the run arms was
//!   reached by a worker that was then killed there.
//!
//! A worker that sees a violation writes it to its ledger slot and exits with
//! [`VIOLATION_EXIT`]; the supervisor then stops the run and reports it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering::SeqCst};
use std::time::{Duration, Instant};

use shmstate::{Config, Counter, Error, Store, Ttl, WhenFull};

use crate::forked;

/// Exit code of a worker that found a violation (it wrote the message to its ledger slot).
pub const VIOLATION_EXIT: i32 = 86;

/// Most workers a run may have (ledger slots).
pub const MAX_WORKERS: usize = 64;
const INCR_KEYS: usize = 4;
const COUNTERS: usize = 4;
const PRIVATE_KEYS: usize = 4;
const MSG_LEN: usize = 240;
/// A private key's pending state meaning "being deleted".
const PENDING_DELETE: u64 = u64::MAX;
/// Longest TTL any worker sets on a hot key (`ttl` must never report more).
const MAX_HOT_TTL_MS: u64 = 5_000;
/// Longest TTL of the short-lived `t:` keys.
const MAX_SHORT_TTL_MS: u64 = 50;
/// Longest value (the store's `max_value_len`).
pub const MAX_VALUE_LEN: usize = 64 * 1024;
/// Values of at most this many bytes are stored in the slot, not in the heap (the store's
/// documented inline limit): only longer ones can be refused for lack of heap room, or
/// evicted to make some.
pub const INLINE_MAX: usize = 24;
/// Heap pages one value of [`MAX_VALUE_LEN`] can take at worst: 16 whole pages, and its
/// extent block and (no) tail blocks each counted as a page of its own.
pub const PAGES_PER_VALUE: u32 = 19;
/// Pages per shard of a [`Heap::NearFull`] run by default (320 KiB: a fraction of what the
/// large-value mix needs with the default keys, and room for 4 values of 64 KiB, so that
/// eviction can always make room).
pub const NEAR_FULL_PAGES: u32 = 80;

/// Write points a worker may be told to park at (holding its shard lock), with whether a run
/// reaches them often (`false`: a worker is parked at the first hit, not a later one). The
/// `repair.*` points are reached only by a worker repairing after an earlier kill: a repairer
/// killed midway. Which of them a run arms: [`park_points`].
const TABLE_POINTS: &[(&str, bool)] = &[
    ("lock.acquired", true),
    ("insert.written", true),
    ("insert.published", true),
    ("put.scratch", true),
    ("put.committed", true),
    ("put.applying", true),
    ("put.published", true),
    ("delete.ctrl", true),
    ("expire.stored", true),
    ("repair.redone", false),
    ("repair.recounted", false),
];
/// The points where a killed writer leaves a committed overwrite for the next lock holder to
/// redo (so that a repairer can be parked at `repair.redone`).
const REDO_ENABLERS: &[&str] = &["put.committed", "put.applying", "put.published"];
/// Heap points every run reaches: a new value's blocks written, not yet published; a removed
/// value's blocks not yet freed; repair has rebuilt the heap's maps.
const HEAP_POINTS: &[(&str, bool)] = &[
    ("heap.stored", true),
    ("delete.freeing", true),
    ("repair.heap_rebuilt", false),
];
/// Heap points reached only when the heap is full: an expired entry removed to make room; a
/// block copied by compaction (its slot not yet re-pointed); the slot re-pointed (the old block
/// not yet freed).
const FULL_HEAP_POINTS: &[(&str, bool)] = &[
    ("heap.reclaimed", false),
    ("compact.copied", false),
    ("compact.moved", false),
];
/// Reached only under `WhenFull::Evict` with a full heap: CLOCK chose a victim.
const EVICT_POINT: (&str, bool) = ("heap.evicting", false);
/// Reached only in runs that call `clear()`.
const CLEAR_POINT: (&str, bool) = ("clear.half", false);

/// With [`Params::every_point`]: the other points of the write paths a run reaches, each step
/// of the heap's allocator among them.
const MORE_POINTS: &[(&str, bool)] = &[
    ("put.freeing", true),
    ("cas.matched", true),
    ("flush.removed", false),
    ("prefix.removed", false),
    ("value.block_written", true),
    ("value.piece_written", true),
    ("value.extent_listing", true),
    ("value.part_freed", true),
    ("pool.page_taken", true),
    ("pool.class_page", false),
    ("pool.large_taken", true),
    ("pool.block_taken", true),
    ("pool.block_counted", true),
    ("pool.block_freed", true),
    ("pool.page_emptied", false),
    ("pool.large_freed", true),
    ("heap.rebuild_reset", false),
    ("heap.rebuild_marked", false),
];
/// The same, reached only with a full heap: a page taken out of its partial map to be
/// emptied; a moved tail's old block freed, its old extent not yet; a value's pieces undone
/// when the next one found no room.
const MORE_FULL_POINTS: &[(&str, bool)] = &[
    ("compact.draining", false),
    ("compact.block_freed", false),
    ("value.undoing", false),
];

/// The write points a run arms (every one of them must be reached), with whether each is
/// reached often: the table's and the heap's always, compaction and reclaiming expired
/// entries with a near-full heap, eviction under `Evict`, `clear.half` with `clears`; with
/// [`Params::every_point`], every other point such a run reaches too. (Not reachable here, so
/// never armed: `evict.chosen` and `sweep.removed`, which need a full table, and
/// `counter.named`, as the counters exist before any worker starts.)
pub fn park_points(p: &Params) -> Vec<(&'static str, bool)> {
    let mut v: Vec<(&'static str, bool)> = TABLE_POINTS.to_vec();
    v.extend_from_slice(HEAP_POINTS);
    if p.every_point {
        v.extend_from_slice(MORE_POINTS);
        if !p.clears {
            v.push(("incr.computed", true));
        }
    }
    if let Heap::NearFull { policy, .. } = p.heap {
        v.extend_from_slice(FULL_HEAP_POINTS);
        if p.every_point {
            v.extend_from_slice(MORE_FULL_POINTS);
        }
        if policy == WhenFull::Evict {
            v.push(EVICT_POINT);
            if p.every_point {
                v.push(("heap.evicted", false));
            }
        }
    }
    if p.clears {
        v.push(CLEAR_POINT);
        if p.every_point {
            v.push(("clear.heap_reset", false));
        }
    }
    v
}

/// Where the store's region lives, and so how a (re)spawned worker gets its handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Anonymous shared memory: workers inherit the supervisor's mapping across `fork`.
    Anonymous,
    /// A region file (created by the supervisor, removed at the end): every worker opens it
    /// with [`Store::open_file`] and resolves its counters itself, while the others run.
    File(PathBuf),
    /// A named POSIX shm object (created by the supervisor, unlinked at the end): every
    /// worker opens it with [`Store::open`].
    Named(String),
}

impl Backing {
    fn create(&self, cfg: &Config) -> Store {
        match self {
            Backing::Anonymous => Store::anonymous(cfg),
            Backing::File(path) => Store::create_file(path, cfg),
            Backing::Named(name) => Store::create(name, cfg),
        }
        .expect("create the store")
    }

    fn open(&self) -> Option<shmstate::Result<Store>> {
        match self {
            Backing::Anonymous => None,
            Backing::File(path) => Some(Store::open_file(path)),
            Backing::Named(name) => Some(Store::open(name)),
        }
    }
}

/// Removes a file or named region when the run ends (also when it panics).
struct RemoveOnDrop(Backing);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        match &self.0 {
            Backing::Anonymous => {}
            Backing::File(path) => {
                let _ = std::fs::remove_file(path);
            }
            Backing::Named(name) => {
                let _ = Store::unlink(name);
            }
        }
    }
}

/// How big the value heap is (`Config::memory` is set to the index plus this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heap {
    /// Every shard has room for every key of the run at 64 KiB at once (plus one overwrite),
    /// each block counted as a whole page: no write is ever refused, and `Full` is a violation.
    Roomy,
    /// `pages` pages per shard (at least 3 x [`PAGES_PER_VALUE`], so that evicting everything
    /// else always makes room for a 64 KiB value next to the one it replaces): the heap fills
    /// when the mix turns to large values. `policy` says what a write then does; under
    /// `Refuse`, `Full` is accepted for values that need the heap.
    NearFull { policy: WhenFull, pages: u32 },
}

impl Heap {
    /// A near-full heap of [`NEAR_FULL_PAGES`] pages per shard.
    pub fn near_full(policy: WhenFull) -> Heap {
        Heap::NearFull {
            policy,
            pages: NEAR_FULL_PAGES,
        }
    }

    fn policy(self) -> WhenFull {
        match self {
            Heap::Roomy => WhenFull::Refuse,
            Heap::NearFull { policy, .. } => policy,
        }
    }

    fn describe(self) -> String {
        match self {
            Heap::Roomy => "roomy heap".into(),
            Heap::NearFull { policy, pages } => {
                format!("near-full heap ({pages} pages per shard, {policy:?} when full)")
            }
        }
    }
}

/// Parameters of one run.
#[derive(Clone, Debug)]
pub struct Params {
    /// Where the region lives (see [`Backing`]).
    pub backing: Backing,
    /// Concurrent worker processes (at most [`MAX_WORKERS`]).
    pub workers: usize,
    /// How long to run (the run also stops after `max_ops` operations); up to twice as long
    /// while some armed failpoint has not been reached.
    pub duration: Duration,
    /// Operation budget over all workers.
    pub max_ops: u64,
    /// Size of the hot keyset (and of the short-TTL keyset).
    pub keys: usize,
    /// Mean interval between random kills (uniform in `[0, 2 * kill_every]`).
    pub kill_every: Duration,
    /// Seed of every random choice of the supervisor and of the workers.
    pub seed: u64,
    /// Shards of the store (fewer shards: more contention).
    pub shards: u32,
    /// How big the value heap is, and what a write does when it is full.
    pub heap: Heap,
    /// The mix of value lengths moves to the next of small, large and mixed every this often.
    pub phase: Duration,
    /// Arm failpoints so that lock holders get killed (needs the `failpoints` feature).
    pub targeted: bool,
    /// Arm every write point the run can reach, each step of the heap's allocator included,
    /// not only the table's steps and the main heap steps ([`park_points`]).
    pub every_point: bool,
    /// Workers also call `clear()` (and, with `targeted`, are parked and killed half-way
    /// through a shard's clear). A clear wipes the incr and private keys whose persistence the
    /// soak checks, so those operations are left out of such a run; named counters (not in
    /// the table) are still checked for conservation.
    pub clears: bool,
    /// A parked lock holder is killed after a random hold in `[0, max_hold]`.
    pub max_hold: Duration,
    /// Longest acceptable operation latency.
    pub max_wait_bound: Duration,
    /// A worker without a heartbeat for this long is hung.
    pub hang_limit: Duration,
    /// Print a progress line every this often (`None`: quiet).
    pub progress: Option<Duration>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            backing: Backing::Anonymous,
            workers: 4,
            duration: Duration::from_secs(20),
            max_ops: u64::MAX,
            keys: 16,
            kill_every: Duration::from_millis(50),
            seed: 1,
            shards: 4,
            heap: Heap::Roomy,
            phase: Duration::from_millis(700),
            targeted: cfg!(feature = "failpoints"),
            every_point: false,
            clears: false,
            // Long enough that other workers queue on the dead holder's lock, short enough
            // that waits stay far below the bound.
            max_hold: Duration::from_millis(20),
            // A noisy 2-core VM shared with other jobs: a worker preempted while holding a
            // lock stalls the others for a scheduler time slice or a few, plus the hold of a
            // parked holder; observed maxima are tens of milliseconds. 2 s is far above that
            // and far below the 10 s lock timeout that a missed recovery would take.
            max_wait_bound: Duration::from_secs(2),
            hang_limit: Duration::from_secs(5),
            progress: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Operations

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Get,
    GetInto,
    Set,
    Add,
    Replace,
    Delete,
    Cas,
    Incr,
    Expire,
    Ttl,
    CounterAdd,
    ShortTtl,
    Private,
    Scan,
    DeletePrefix,
    FlushExpired,
    Verify,
    Clear,
}

const OPS: usize = 18;
const ALL_OPS: [Op; OPS] = [
    Op::Get,
    Op::GetInto,
    Op::Set,
    Op::Add,
    Op::Replace,
    Op::Delete,
    Op::Cas,
    Op::Incr,
    Op::Expire,
    Op::Ttl,
    Op::CounterAdd,
    Op::ShortTtl,
    Op::Private,
    Op::Scan,
    Op::DeletePrefix,
    Op::FlushExpired,
    Op::Verify,
    Op::Clear,
];

impl Op {
    /// Relative frequency (per 1000); `clears`: a run where workers call `clear()`.
    fn weight(self, clears: bool) -> u64 {
        match self {
            Op::Incr | Op::Private if clears => 0,
            Op::Clear => u64::from(clears),
            Op::Get | Op::GetInto => 170,
            Op::Set => 90,
            Op::Add | Op::Replace | Op::Delete => 40,
            Op::Cas => 80,
            Op::Incr | Op::CounterAdd => 70,
            Op::Expire | Op::Ttl => 30,
            Op::ShortTtl => 50,
            Op::Private => 60,
            Op::Scan => 3,
            Op::DeletePrefix => 1,
            Op::FlushExpired => 2,
            Op::Verify => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::GetInto => "get_into",
            Op::Set => "set",
            Op::Add => "add",
            Op::Replace => "replace",
            Op::Delete => "delete",
            Op::Cas => "compare_and_swap",
            Op::Incr => "incr",
            Op::Expire => "expire",
            Op::Ttl => "ttl",
            Op::CounterAdd => "Counter::add",
            Op::ShortTtl => "set(short ttl)",
            Op::Private => "private",
            Op::Scan => "scan",
            Op::DeletePrefix => "delete_prefix",
            Op::FlushExpired => "flush_expired",
            Op::Verify => "verify",
            Op::Clear => "clear",
        }
    }

    fn pick(r: u64, clears: bool) -> Op {
        let total: u64 = ALL_OPS.iter().map(|o| o.weight(clears)).sum();
        let mut x = r % total;
        for o in ALL_OPS {
            if x < o.weight(clears) {
                return o;
            }
            x -= o.weight(clears);
        }
        unreachable!("weights cover the range")
    }
}

// ---------------------------------------------------------------------------------------------
// Randomness, time

/// splitmix64: small, fast, good enough for choosing operations.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }
    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process of the machine, so a
/// worker's heartbeat can be compared with the supervisor's now.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// ---------------------------------------------------------------------------------------------
// Self-checking values

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Mixes `parts` into a stream seed (different for any change of any part).
fn seed_of(key: &[u8], parts: &[u64]) -> u64 {
    let mut r = Rng::new(fnv1a(key));
    for &p in parts {
        r = Rng::new(r.next() ^ p);
    }
    r.next()
}

/// Word `i` of the byte stream of `seed`: every word depends on the seed and its position (a
/// multiply-xorshift of both).
#[inline]
fn stream_word(seed: u64, i: usize) -> [u8; 8] {
    let mut z = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (z ^ (z >> 29)).to_le_bytes()
}

/// Bytes of the stream pattern: a value's byte at offset `o` comes from pattern byte
/// `o % PATTERN` (so the pattern's period is a heap page, and a value of any length costs one
/// pattern's generation and then `memcpy`/`memcmp` speed, even in a debug build).
const PATTERN: usize = 4096;

/// The first `n` bytes (at most [`PATTERN`]) of `seed`'s pattern.
fn pattern(seed: u64, n: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(n.div_ceil(8) * 8);
    for i in 0..n.div_ceil(8) {
        p.extend_from_slice(&stream_word(seed, i));
    }
    p.truncate(n);
    p
}

/// The 8 bytes that start period `c` of a value (`c >= 1`) are the pattern's first 8 XOR `c`,
/// so that each page-sized piece says where in the value it belongs.
fn marker(pat: &[u8], c: usize) -> [u8; 8] {
    let mut m = [0u8; 8];
    for (i, b) in m.iter_mut().enumerate() {
        *b = pat[i] ^ (c as u64).to_le_bytes()[i];
    }
    m
}

/// Appends value offsets `start..len` of `seed`'s stream to `v` (which holds `start` bytes).
fn fill_stream(seed: u64, v: &mut Vec<u8>, len: usize) {
    let start = v.len();
    if start >= len {
        return;
    }
    let pat = pattern(seed, len.min(PATTERN));
    let mut o = start;
    while o < len {
        let c = o / PATTERN;
        let end = ((c + 1) * PATTERN).min(len);
        v.extend_from_slice(&pat[o - c * PATTERN..end - c * PATTERN]);
        if c >= 1 {
            let m = marker(&pat, c);
            for (i, b) in m.iter().enumerate().take(end - c * PATTERN) {
                v[c * PATTERN + i] = *b;
            }
        }
        o = end;
    }
}

/// Whether value offsets `start..` of `v` are `seed`'s stream; the offset of the first wrong
/// byte if not.
fn check_stream(seed: u64, v: &[u8], start: usize) -> Result<(), usize> {
    let len = v.len();
    if start >= len {
        return Ok(());
    }
    let pat = pattern(seed, len.min(PATTERN));
    let first_wrong = |got: &[u8], want: &[u8], at: usize| {
        at + got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0)
    };
    let mut o = start;
    while o < len {
        let c = o / PATTERN;
        let base = c * PATTERN;
        let end = ((c + 1) * PATTERN).min(len);
        let mut from = o;
        if c >= 1 {
            let m = marker(&pat, c);
            let mend = (base + 8).min(end);
            if v[base..mend] != m[..mend - base] {
                return Err(first_wrong(&v[base..mend], &m, base));
            }
            from = mend;
        }
        if v[from..end] != pat[from - base..end - base] {
            return Err(first_wrong(&v[from..end], &pat[from - base..], from));
        }
        o = end;
    }
    Ok(())
}

/// Lengths below this are *tiny* values (see [`make_value`]).
const COMPACT_MIN: usize = 16;
/// Bytes of a compact value's header.
const COMPACT_HEAD: usize = 16;

/// Length of a full value's header for `key`: `"TV"`, key length, key, writer, sequence,
/// value length (`u32`), header checksum (`u32`).
fn full_head(key: &[u8]) -> usize {
    3 + key.len() + 8 + 8 + 4 + 4
}

/// The 32-bit writer id of a compact value: the writer's slot in the top byte, the low 24
/// bits of its generation below. (A writer id of `u64::MAX`, used for values never stored,
/// maps to `0xffff_ffff`, which no slot below 255 produces.)
fn writer32(writer: u64) -> u32 {
    ((writer >> 32) as u32) << 24 | (writer as u32 & 0x00ff_ffff)
}

/// A self-checking value of `key`, `len` bytes long (1 to [`MAX_VALUE_LEN`]), written by
/// `writer` as its `seq`-th write. Every byte follows from the key, the length and the
/// version, and the value says which version it is as far as its length allows:
///
/// | length                     | bytes                                                   |
/// |----------------------------|---------------------------------------------------------|
/// | 1, 2 (*tiny*)              | a stream seeded by key and length (one value per length) |
/// | 3 ..= 15 (*tiny*)          | 16 bits of the version, then a stream seeded by key, length and those bits |
/// | 16 .. full header (*compact*) | `'c'`, length, 16-bit key hash, 32-bit writer, 32-bit sequence, 32-bit header checksum, then a stream seeded by all of it |
/// | full header .. (*full*)    | `"TV"`, key length, key, writer, sequence, length, header checksum, then a stream seeded by all of it |
///
/// (The full header is 27 bytes plus the key.) Two versions of a key differ in every stream
/// word, with overwhelming probability, so pieces of two versions never pass as one. The
/// stream repeats with the period of a heap page (4 KiB), and each period after the first
/// starts with its index XORed in, so a page of the value in another page's place is caught
/// too.
pub fn make_value(key: &[u8], writer: u64, seq: u64, len: usize) -> Vec<u8> {
    assert!((1..=MAX_VALUE_LEN).contains(&len), "value length {len}");
    assert!(key.len() < 256, "key of {} bytes", key.len());
    let mut v = Vec::with_capacity(len);
    let fh = full_head(key);
    if len >= fh {
        v.extend_from_slice(b"TV");
        v.push(key.len() as u8);
        v.extend_from_slice(key);
        v.extend_from_slice(&writer.to_le_bytes());
        v.extend_from_slice(&seq.to_le_bytes());
        v.extend_from_slice(&(len as u32).to_le_bytes());
        let sum = fnv1a(&v) as u32;
        v.extend_from_slice(&sum.to_le_bytes());
        fill_stream(seed_of(key, &[1, writer, seq, len as u64]), &mut v, len);
    } else if len >= COMPACT_MIN {
        let (w, s) = (writer32(writer), seq as u32);
        v.push(b'c');
        v.push(len as u8);
        v.extend_from_slice(&(fnv1a(key) as u16).to_le_bytes());
        v.extend_from_slice(&w.to_le_bytes());
        v.extend_from_slice(&s.to_le_bytes());
        let mut h = v.clone();
        h.extend_from_slice(key);
        v.extend_from_slice(&(fnv1a(&h) as u32).to_le_bytes());
        let seed = seed_of(key, &[2, u64::from(w), u64::from(s), len as u64]);
        fill_stream(seed, &mut v, len);
    } else if len >= 3 {
        let tag = seed_of(key, &[writer, seq]) as u16;
        v.extend_from_slice(&tag.to_le_bytes());
        fill_stream(seed_of(key, &[3, u64::from(tag), len as u64]), &mut v, len);
    } else {
        fill_stream(seed_of(key, &[4, len as u64]), &mut v, len);
    }
    v
}

/// Checks that `v` is a well-formed value of `key` (see [`make_value`]); returns its writer
/// and sequence number when it carries them (16 bytes and longer; a compact value gives the
/// writer's slot and the low 24 bits of its generation, and 32 bits of the sequence).
pub fn check_value(key: &[u8], v: &[u8]) -> Result<Option<(u64, u64)>, String> {
    let describe = || {
        let head = &v[..v.len().min(48)];
        format!(
            "{} bytes starting {:?}",
            v.len(),
            String::from_utf8_lossy(head)
        )
    };
    let torn = |what: &str, at: usize| {
        Err(format!(
            "{what} wrong from byte {at} (torn or misplaced value): {}",
            describe()
        ))
    };
    let len = v.len();
    if len == 0 {
        return Err("empty value (no value of the run is empty)".into());
    }
    if len > MAX_VALUE_LEN {
        return Err(format!("value longer than any written: {}", describe()));
    }
    let u32_at = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(v[i..i + 8].try_into().expect("8 bytes"));
    let fh = full_head(key);
    if len >= fh {
        let head = 3 + key.len();
        if &v[..2] != b"TV" || v[2] as usize != key.len() || &v[3..head] != key {
            return Err(format!("value does not belong to this key: {}", describe()));
        }
        if fnv1a(&v[..fh - 4]) as u32 != u32_at(fh - 4) {
            return torn("header checksum", 0);
        }
        let (writer, seq) = (u64_at(head), u64_at(head + 8));
        if u32_at(head + 16) as usize != len {
            return Err(format!(
                "value of {len} bytes says it is {} long (truncated or extended): {}",
                u32_at(head + 16),
                describe()
            ));
        }
        let seed = seed_of(key, &[1, writer, seq, len as u64]);
        if let Err(at) = check_stream(seed, v, fh) {
            return torn("body", at);
        }
        Ok(Some((writer, seq)))
    } else if len >= COMPACT_MIN {
        if v[0] != b'c' || u16::from_le_bytes([v[2], v[3]]) != fnv1a(key) as u16 {
            return Err(format!("value does not belong to this key: {}", describe()));
        }
        if v[1] as usize != len {
            return Err(format!(
                "value of {len} bytes says it is {} long (truncated or extended): {}",
                v[1],
                describe()
            ));
        }
        let mut h = v[..12].to_vec();
        h.extend_from_slice(key);
        if fnv1a(&h) as u32 != u32_at(12) {
            return torn("header checksum", 0);
        }
        let (w, s) = (u32_at(4), u32_at(8));
        let seed = seed_of(key, &[2, u64::from(w), u64::from(s), len as u64]);
        if let Err(at) = check_stream(seed, v, COMPACT_HEAD) {
            return torn("body", at);
        }
        Ok(Some((
            u64::from(w >> 24) << 32 | u64::from(w & 0x00ff_ffff),
            u64::from(s),
        )))
    } else if len >= 3 {
        let tag = u16::from_le_bytes([v[0], v[1]]);
        if let Err(at) = check_stream(seed_of(key, &[3, u64::from(tag), len as u64]), v, 2) {
            return torn("tiny value", at);
        }
        Ok(None)
    } else {
        if let Err(at) = check_stream(seed_of(key, &[4, len as u64]), v, 0) {
            return torn("tiny value", at);
        }
        Ok(None)
    }
}

/// `value` within `[acked, acked + uncertain]`?
pub fn check_conserved(what: &str, value: i64, acked: i64, uncertain: i64) -> Result<(), String> {
    if value < acked || value > acked + uncertain {
        return Err(format!(
            "{what}: value {value} outside [{acked}, {}] (acknowledged {acked}, uncertain \
             {uncertain}): {}",
            acked + uncertain,
            if value < acked {
                "acknowledged increments were lost"
            } else {
                "more was added than was ever attempted"
            }
        ));
    }
    Ok(())
}

fn parse_int(v: &[u8]) -> Option<i64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Value lengths

/// How a value is stored, by its length: in the slot, one heap block, an extent of up to 4
/// pages, more pages than that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Inline,
    Block,
    Extent,
    Large,
}

/// The most bytes one heap block holds (the largest size class, 2048 bytes, less its 8-byte
/// header); longer values are whole pages plus tail blocks.
pub const BLOCK_MAX: usize = 2040;
const LARGE_FROM: usize = 4 * 4096 + 1;

impl Shape {
    pub fn of(len: usize) -> Shape {
        if len <= INLINE_MAX {
            Shape::Inline
        } else if len <= BLOCK_MAX {
            Shape::Block
        } else if len < LARGE_FROM {
            Shape::Extent
        } else {
            Shape::Large
        }
    }
    const ALL: [Shape; 4] = [Shape::Inline, Shape::Block, Shape::Extent, Shape::Large];
    fn name(self) -> &'static str {
        match self {
            Shape::Inline => "inline",
            Shape::Block => "one block",
            Shape::Extent => "extent <= 16 KiB",
            Shape::Large => "extent > 16 KiB",
        }
    }
}

/// Lengths where the heap's way of storing a value changes: the inline limit, the largest
/// one-block value, two tail blocks (4080) against a short last page, whole pages and one byte
/// either side, one and two tails after a page, the largest value.
pub const BOUNDARY_LENS: &[usize] = &[
    1, 2, 3, 15, 16, 24, 25, 26, 2040, 2041, 4080, 4081, 4095, 4096, 4097, 6136, 6137, 8176, 8177,
    8192, 12288, 16384, 16385, 61440, 65528, 65535, 65536,
];

/// Weights (per 100) of inline, one-block, small-extent, large-extent and boundary lengths in
/// each phase of the mix: mostly small, mostly large, mixed.
const PHASE_MIX: [[u64; 5]; 3] = [[35, 55, 6, 1, 3], [8, 12, 30, 45, 5], [20, 30, 25, 15, 10]];
const PHASE_NAMES: [&str; 3] = ["small", "large", "mixed"];

/// A random value length for mix `phase` (0 small, 1 large, 2 mixed), at least `min`.
pub fn pick_len(rng: &mut Rng, phase: usize, min: usize) -> usize {
    let w = PHASE_MIX[phase % 3];
    let mut x = rng.below(w.iter().sum());
    let mut kind = 0;
    while x >= w[kind] {
        x -= w[kind];
        kind += 1;
    }
    let len = match kind {
        0 => rng.between(1, INLINE_MAX),
        1 => rng.between(INLINE_MAX + 1, BLOCK_MAX),
        2 => rng.between(BLOCK_MAX + 1, LARGE_FROM - 1),
        3 => rng.between(LARGE_FROM, MAX_VALUE_LEN),
        _ => BOUNDARY_LENS[rng.below(BOUNDARY_LENS.len() as u64) as usize],
    };
    len.max(min)
}

// ---------------------------------------------------------------------------------------------
// Keys

/// Every key of a run.
struct Keys {
    hot: Vec<Vec<u8>>,
    short: Vec<Vec<u8>>,
    incr: Vec<Vec<u8>>,
    /// `private[slot][j]`.
    private: Vec<Vec<Vec<u8>>>,
}

impl Keys {
    fn new(p: &Params) -> Self {
        Keys {
            hot: (0..p.keys)
                .map(|i| format!("k:{i:02}").into_bytes())
                .collect(),
            short: (0..p.keys)
                .map(|i| format!("t:{i:02}").into_bytes())
                .collect(),
            incr: (0..INCR_KEYS)
                .map(|i| format!("n:{i}").into_bytes())
                .collect(),
            private: (0..p.workers)
                .map(|s| {
                    (0..PRIVATE_KEYS)
                        .map(|j| format!("p:{s}:{j}").into_bytes())
                        .collect()
                })
                .collect(),
        }
    }

    fn all(&self) -> HashSet<Vec<u8>> {
        let mut s: HashSet<Vec<u8>> = HashSet::new();
        s.extend(self.hot.iter().cloned());
        s.extend(self.short.iter().cloned());
        s.extend(self.incr.iter().cloned());
        s.extend(self.private.iter().flatten().cloned());
        s
    }
}

fn counter_name(i: usize) -> String {
    format!("torture.c{i}")
}

// ---------------------------------------------------------------------------------------------
// The ledger: bookkeeping shared between the supervisor and the workers, outside the store

/// One worker slot. Survives its workers: a replacement continues the totals.
#[repr(C)]
struct Slot {
    heartbeat_ns: AtomicU64,
    /// The operation in progress, plus one (0: none).
    op: AtomicU32,
    ops: AtomicU64,
    by_op: [AtomicU64; OPS],
    reads_checked: AtomicU64,
    /// Bytes of the values read and checked.
    bytes_checked: AtomicU64,
    /// Acknowledged writes by [`Shape`] of the value written.
    writes_by_shape: [AtomicU64; 4],
    /// Writes refused with `Full` (accepted: a value needing the heap, near-full `Refuse` run).
    full_refusals: AtomicU64,
    /// Private keys found evicted (near-full `Evict` run).
    private_evicted: AtomicU64,
    max_wait_ns: AtomicU64,
    max_wait_op: AtomicU32,
    incr_acked: [AtomicI64; INCR_KEYS],
    incr_inflight: [AtomicI64; INCR_KEYS],
    ctr_acked: [AtomicI64; COUNTERS],
    ctr_inflight: [AtomicI64; COUNTERS],
    /// Sequence number of each private key's value (0: absent).
    priv_acked: [AtomicU64; PRIVATE_KEYS],
    /// Length of each private key's acknowledged value.
    priv_acked_len: [AtomicU64; PRIVATE_KEYS],
    /// A write in flight: the sequence number being written, [`PENDING_DELETE`], or 0.
    priv_pending: [AtomicU64; PRIVATE_KEYS],
    /// Length of the value being written.
    priv_pending_len: [AtomicU64; PRIVATE_KEYS],
    next_seq: AtomicU64,
    violations: AtomicU32,
    msg: [AtomicU8; MSG_LEN],
}

#[repr(C)]
struct Ledger {
    stop: AtomicU32,
    /// Workers that opened a file or named region themselves (see [`Backing`]).
    opens: AtomicU64,
    /// When the run started ([`mono_ns`]): the phase of the size mix counts from it.
    start_ns: AtomicU64,
    slots: [Slot; MAX_WORKERS],
}

/// The ledger's anonymous `MAP_SHARED` mapping (inherited by every forked worker).
struct LedgerMap {
    ptr: *mut Ledger,
}

impl LedgerMap {
    fn new() -> Self {
        // SAFETY: a fresh anonymous shared mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<Ledger>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap of the ledger failed");
        LedgerMap { ptr: p.cast() }
    }

    fn get(&self) -> &Ledger {
        // SAFETY: (1) the mapping is page-aligned, large enough and lives as long as `self`;
        // (2) it is zero-filled, and every field of `Ledger` is an atomic integer, for which
        // all-zero bytes are a valid value; (3) other processes access it only through the same
        // atomics.
        unsafe { &*self.ptr }
    }
}

impl Drop for LedgerMap {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no reference from `get` outlives `self`.
        unsafe { libc::munmap(self.ptr.cast(), std::mem::size_of::<Ledger>()) };
    }
}

impl Slot {
    fn message(&self) -> String {
        let b: Vec<u8> = self
            .msg
            .iter()
            .map(|c| c.load(SeqCst))
            .take_while(|&c| c != 0)
            .collect();
        String::from_utf8_lossy(&b).into_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Worker

struct Worker<'a> {
    store: &'a Store,
    counters: &'a [Counter],
    ledger: &'a Ledger,
    slot: &'a Slot,
    index: usize,
    /// Writer id carried by every value: slot in the high half, generation in the low.
    id: u64,
    keys: &'a Keys,
    known: HashSet<Vec<u8>>,
    rng: Rng,
    incr_seen: [i64; INCR_KEYS],
    ctr_seen: [i64; COUNTERS],
    seq: u64,
    buf: Vec<u8>,
    /// Whether this run calls `clear()` (see [`Params::clears`]).
    clears: bool,
    heap: Heap,
    phase_ns: u64,
}

impl Worker<'_> {
    /// Records the violation in the ledger and exits with [`VIOLATION_EXIT`].
    fn fail(&self, msg: String) -> ! {
        let msg = format!("worker {} (id {:#x}): {msg}", self.index, self.id);
        eprintln!("VIOLATION {msg}");
        if self.slot.violations.fetch_add(1, SeqCst) == 0 {
            for (c, b) in self.slot.msg.iter().zip(msg.bytes().take(MSG_LEN - 1)) {
                c.store(b, SeqCst);
            }
        }
        // SAFETY: ends this forked child at once, as a forked child should.
        unsafe { libc::_exit(VIOLATION_EXIT) }
    }

    fn ok<T>(&self, what: &str, r: shmstate::Result<T>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => self.fail(format!("{what}: unexpected error: {e}")),
        }
    }

    /// Under `Evict` with a near-full heap, entries holding heap bytes may be evicted.
    fn evicts(&self) -> bool {
        self.heap.policy() == WhenFull::Evict && self.heap != Heap::Roomy
    }

    /// The result of a write of a `len`-byte value: `None` if it was refused with `Full`, which
    /// is accepted only in a near-full `Refuse` run for a value that needs the heap.
    fn write<T>(&self, what: &str, len: usize, r: shmstate::Result<T>) -> Option<T> {
        match r {
            Err(Error::Full)
                if len > INLINE_MAX
                    && matches!(
                        self.heap,
                        Heap::NearFull {
                            policy: WhenFull::Refuse,
                            ..
                        }
                    ) =>
            {
                self.slot.full_refusals.fetch_add(1, SeqCst);
                None
            }
            r => Some(self.ok(what, r)),
        }
    }

    /// Counts an acknowledged write of a `len`-byte value.
    fn wrote(&self, len: usize) {
        let i = Shape::ALL
            .iter()
            .position(|&s| s == Shape::of(len))
            .expect("a shape");
        self.slot.writes_by_shape[i].fetch_add(1, SeqCst);
    }

    fn checked(&self, key: &[u8], v: &[u8]) -> Option<(u64, u64)> {
        self.slot.reads_checked.fetch_add(1, SeqCst);
        self.slot.bytes_checked.fetch_add(v.len() as u64, SeqCst);
        match check_value(key, v) {
            Ok(x) => x,
            Err(e) => self.fail(format!("read of {:?}: {e}", String::from_utf8_lossy(key))),
        }
    }

    /// The mix of value lengths now (0 small, 1 large, 2 mixed).
    fn phase(&self) -> usize {
        let since = mono_ns().saturating_sub(self.ledger.start_ns.load(SeqCst));
        ((since / self.phase_ns.max(1)) % 3) as usize
    }

    fn new_value(&mut self, key: &[u8]) -> Vec<u8> {
        self.seq += 1;
        let phase = self.phase();
        let len = pick_len(&mut self.rng, phase, 1);
        make_value(key, self.id, self.seq, len)
    }

    fn hot(&mut self) -> Vec<u8> {
        let i = self.rng.below(self.keys.hot.len() as u64) as usize;
        self.keys.hot[i].clone()
    }

    fn hot_ttl(&mut self) -> Option<Duration> {
        self.rng
            .one_in(8)
            .then(|| Duration::from_millis(1 + self.rng.below(MAX_HOT_TTL_MS)))
    }

    fn run(mut self) {
        self.settle_private();
        while self.ledger.stop.load(SeqCst) == 0 {
            let op = Op::pick(self.rng.next(), self.clears);
            self.slot.op.store(op as u32 + 1, SeqCst);
            let t = Instant::now();
            self.step(op);
            let waited = t.elapsed().as_nanos() as u64;
            if self.slot.max_wait_ns.fetch_max(waited, SeqCst) < waited {
                self.slot.max_wait_op.store(op as u32, SeqCst);
            }
            self.slot.ops.fetch_add(1, SeqCst);
            self.slot.by_op[op as usize].fetch_add(1, SeqCst);
            self.slot.op.store(0, SeqCst);
            self.slot.heartbeat_ns.store(mono_ns(), SeqCst);
        }
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Get => {
                let k = self.hot();
                if self.rng.one_in(4) {
                    self.ok("contains", self.store.contains(&k));
                } else if let Some(v) = self.ok("get", self.store.get(&k)) {
                    self.checked(&k, &v);
                }
            }
            Op::GetInto => {
                let k = self.hot();
                let mut buf = std::mem::take(&mut self.buf);
                if self.ok("get_into", self.store.get_into(&k, &mut buf)) {
                    self.checked(&k, &buf);
                } else if !buf.is_empty() {
                    self.fail("get_into missed but left bytes in the buffer".into());
                }
                self.buf = buf;
            }
            Op::Set => {
                let k = self.hot();
                let v = self.new_value(&k);
                let ttl = self.hot_ttl();
                if self
                    .write("set", v.len(), self.store.set(&k, &v, ttl))
                    .is_some()
                {
                    self.wrote(v.len());
                }
            }
            Op::Add => {
                let k = self.hot();
                let v = self.new_value(&k);
                let ttl = self.hot_ttl();
                if self.write("add", v.len(), self.store.add(&k, &v, ttl)) == Some(true) {
                    self.wrote(v.len());
                }
            }
            Op::Replace => {
                let k = self.hot();
                let v = self.new_value(&k);
                let ttl = self.hot_ttl();
                if self.write("replace", v.len(), self.store.replace(&k, &v, ttl)) == Some(true) {
                    self.wrote(v.len());
                }
            }
            Op::Delete => {
                let k = self.hot();
                self.ok("delete", self.store.delete(&k));
            }
            Op::Cas => self.cas(),
            Op::Incr => self.incr(),
            Op::Expire => {
                let k = self.hot();
                let ttl = if self.rng.one_in(3) {
                    None
                } else {
                    Some(Duration::from_millis(1 + self.rng.below(MAX_HOT_TTL_MS)))
                };
                self.ok("expire", self.store.expire(&k, ttl));
            }
            Op::Ttl => {
                let k = self.hot();
                match self.ok("ttl", self.store.ttl(&k)) {
                    Ttl::NoKey | Ttl::NoExpiry => {}
                    Ttl::ExpiresIn(d) if d <= Duration::from_millis(MAX_HOT_TTL_MS) => {}
                    Ttl::ExpiresIn(d) => self.fail(format!(
                        "ttl of {:?} is {d:?}, more than any TTL ever set",
                        String::from_utf8_lossy(&k)
                    )),
                }
            }
            Op::CounterAdd => self.counter_add(),
            Op::ShortTtl => {
                let i = self.rng.below(self.keys.short.len() as u64) as usize;
                let k = self.keys.short[i].clone();
                let v = self.new_value(&k);
                let ttl = Duration::from_millis(1 + self.rng.below(MAX_SHORT_TTL_MS));
                if self
                    .write("set(short ttl)", v.len(), self.store.set(&k, &v, Some(ttl)))
                    .is_some()
                {
                    self.wrote(v.len());
                }
                let j = self.rng.below(self.keys.short.len() as u64) as usize;
                let k = self.keys.short[j].clone();
                if let Some(v) = self.ok("get(short ttl)", self.store.get(&k)) {
                    self.checked(&k, &v);
                }
            }
            Op::Private => self.private(),
            Op::Scan => self.scan(),
            Op::DeletePrefix => {
                let prefix: &[u8] = if self.rng.one_in(2) { b"k:1" } else { b"t:" };
                self.ok("delete_prefix", self.store.delete_prefix(prefix));
            }
            Op::FlushExpired => {
                self.ok("flush_expired", self.store.flush_expired());
            }
            Op::Clear => {
                self.ok("clear", self.store.clear());
            }
            Op::Verify => {
                let rep = self.ok("verify", self.store.verify());
                if !rep.is_ok() {
                    self.fail(format!("verify during the run: {rep}"));
                }
            }
        }
    }

    fn cas(&mut self) {
        let k = self.hot();
        let new = self.new_value(&k);
        if self.rng.one_in(8) {
            // A value nobody ever stored (writer id u64::MAX; at least 16 bytes, so it carries
            // its writer) never matches.
            let phase = self.phase();
            let len = pick_len(&mut self.rng, phase, COMPACT_MIN);
            let bogus = make_value(&k, u64::MAX, 0, len);
            if self.ok(
                "compare_and_swap",
                self.store
                    .compare_and_swap(&k, Some(&bogus), Some(&new), None),
            ) {
                self.fail("compare_and_swap matched a value that was never stored".into());
            }
            return;
        }
        match self.ok("get (for cas)", self.store.get(&k)) {
            Some(cur) => {
                self.checked(&k, &cur);
                let to = if self.rng.one_in(3) {
                    None
                } else {
                    Some(&new[..])
                };
                let ttl = self.hot_ttl();
                let len = to.map_or(0, <[u8]>::len);
                if self.write(
                    "compare_and_swap",
                    len,
                    self.store.compare_and_swap(&k, Some(&cur), to, ttl),
                ) == Some(true)
                    && to.is_some()
                {
                    self.wrote(len);
                }
            }
            None => {
                if self.write(
                    "compare_and_swap",
                    new.len(),
                    self.store.compare_and_swap(&k, None, Some(&new), None),
                ) == Some(true)
                {
                    self.wrote(new.len());
                }
            }
        }
    }

    fn incr(&mut self) {
        let i = self.rng.below(INCR_KEYS as u64) as usize;
        let k = &self.keys.incr[i];
        if self.rng.one_in(4) {
            let Some(v) = self.ok("get (incr key)", self.store.get(k)) else {
                if self.incr_seen[i] > 0 {
                    self.fail(format!(
                        "incr key {i} vanished after reaching {}",
                        self.incr_seen[i]
                    ));
                }
                return;
            };
            let Some(n) = parse_int(&v) else {
                self.fail(format!(
                    "incr key {i} holds {:?}",
                    String::from_utf8_lossy(&v)
                ));
            };
            if n < self.incr_seen[i] {
                self.fail(format!(
                    "incr key {i} went back from {} to {n}",
                    self.incr_seen[i]
                ));
            }
            self.incr_seen[i] = n;
            self.slot.reads_checked.fetch_add(1, SeqCst);
            return;
        }
        let d = 1 + self.rng.below(5) as i64;
        self.slot.incr_inflight[i].store(d, SeqCst);
        let n = self.ok("incr", self.store.incr(k, d, None));
        self.slot.incr_acked[i].fetch_add(d, SeqCst);
        self.slot.incr_inflight[i].store(0, SeqCst);
        if n < self.incr_seen[i] + d {
            self.fail(format!(
                "incr key {i} by {d} returned {n}, but it was {} before",
                self.incr_seen[i]
            ));
        }
        self.incr_seen[i] = n;
    }

    fn counter_add(&mut self) {
        let i = self.rng.below(COUNTERS as u64) as usize;
        let c = &self.counters[i];
        if self.rng.one_in(4) {
            let n = c.get();
            if n < self.ctr_seen[i] {
                self.fail(format!(
                    "counter {i} went back from {} to {n}",
                    self.ctr_seen[i]
                ));
            }
            self.ctr_seen[i] = n;
            return;
        }
        let d = 1 + self.rng.below(5) as i64;
        self.slot.ctr_inflight[i].store(d, SeqCst);
        let n = c.add(d);
        self.slot.ctr_acked[i].fetch_add(d, SeqCst);
        self.slot.ctr_inflight[i].store(0, SeqCst);
        if n < self.ctr_seen[i] + d {
            self.fail(format!(
                "counter {i} by {d} returned {n}, but it was {} before",
                self.ctr_seen[i]
            ));
        }
        self.ctr_seen[i] = n;
    }

    /// The sequence number of private key `j`'s value (0: absent).
    fn read_private(&self, j: usize) -> u64 {
        let k = &self.keys.private[self.index][j];
        match self.ok("get (private)", self.store.get(k)) {
            None => 0,
            Some(v) => match self.checked(k, &v) {
                None => self.fail(format!(
                    "private key {:?} holds a {}-byte value (private values are at least \
                     {COMPACT_MIN})",
                    String::from_utf8_lossy(k),
                    v.len()
                )),
                Some((writer, _)) if writer >> 32 != self.index as u64 => self.fail(format!(
                    "private key {:?} written by writer {writer:#x} of another slot",
                    String::from_utf8_lossy(k)
                )),
                Some((_, seq)) => seq,
            },
        }
    }

    /// Settles the one write a killed predecessor in this slot may have had in flight on each
    /// private key.
    fn settle_private(&self) {
        for j in 0..PRIVATE_KEYS {
            let k = &self.keys.private[self.index][j];
            // Lock the key's shard first: that repairs a dead writer's committed overwrite,
            // which a lock-free read would not yet see.
            self.ok("ttl (private)", self.store.ttl(k));
            let s = self.slot;
            let acked = s.priv_acked[j].load(SeqCst);
            let pending = s.priv_pending[j].load(SeqCst);
            let evictable = self.evicts()
                && (s.priv_acked_len[j].load(SeqCst) as usize > INLINE_MAX
                    || (pending != PENDING_DELETE
                        && s.priv_pending_len[j].load(SeqCst) as usize > INLINE_MAX));
            let seen = self.read_private(j);
            if let Err(e) = settled_state(acked, pending, seen, evictable) {
                self.fail(format!("private key {:?}: {e}", String::from_utf8_lossy(k)));
            }
            if seen == 0 && acked != 0 && pending == 0 {
                s.private_evicted.fetch_add(1, SeqCst);
            }
            let len = if seen == 0 {
                0
            } else if seen == acked {
                s.priv_acked_len[j].load(SeqCst)
            } else {
                s.priv_pending_len[j].load(SeqCst)
            };
            s.priv_acked[j].store(seen, SeqCst);
            s.priv_acked_len[j].store(len, SeqCst);
            s.priv_pending[j].store(0, SeqCst);
        }
    }

    /// A private key that held `acked` (a value of `acked_len` bytes) reads as absent: allowed
    /// only if it was evicted (near-full `Evict` run, a value in the heap).
    fn private_vanished(&self, j: usize, acked: u64, what: &str) {
        let s = self.slot;
        if self.evicts() && s.priv_acked_len[j].load(SeqCst) as usize > INLINE_MAX {
            s.private_evicted.fetch_add(1, SeqCst);
            s.priv_acked[j].store(0, SeqCst);
            s.priv_acked_len[j].store(0, SeqCst);
        } else {
            self.fail(format!(
                "private key {:?}: {what}, but it holds sequence {acked} ({} bytes{}): an \
                 acknowledged write was lost",
                String::from_utf8_lossy(&self.keys.private[self.index][j]),
                s.priv_acked_len[j].load(SeqCst),
                if self.evicts() {
                    ", inline: never evicted"
                } else {
                    ""
                }
            ));
        }
    }

    fn private(&mut self) {
        let j = self.rng.below(PRIVATE_KEYS as u64) as usize;
        let k = self.keys.private[self.index][j].clone();
        let s = self.slot;
        let acked = s.priv_acked[j].load(SeqCst);
        match self.rng.below(4) {
            0 | 1 => {
                let seen = self.read_private(j);
                if seen == 0 && acked != 0 {
                    self.private_vanished(j, acked, "read as absent");
                } else if seen != acked {
                    self.fail(format!(
                        "private key {:?}: read sequence {seen}, acknowledged {acked} (a write \
                         was lost or appeared)",
                        String::from_utf8_lossy(&k)
                    ));
                }
            }
            2 => {
                let seq = s.next_seq.fetch_add(1, SeqCst) + 1;
                let phase = self.phase();
                let len = pick_len(&mut self.rng, phase, COMPACT_MIN);
                let v = make_value(&k, self.id, seq, len);
                s.priv_pending_len[j].store(len as u64, SeqCst);
                s.priv_pending[j].store(seq, SeqCst);
                if self
                    .write("set (private)", len, self.store.set(&k, &v, None))
                    .is_some()
                {
                    s.priv_acked_len[j].store(len as u64, SeqCst);
                    s.priv_acked[j].store(seq, SeqCst);
                    s.priv_pending[j].store(0, SeqCst);
                    self.wrote(len);
                } else {
                    // Refused: nothing changed, not even transiently.
                    s.priv_pending[j].store(0, SeqCst);
                    let seen = self.read_private(j);
                    if seen != acked {
                        self.fail(format!(
                            "private key {:?}: a set refused with Full left sequence {seen}, \
                             but it held {acked}",
                            String::from_utf8_lossy(&k)
                        ));
                    }
                }
            }
            _ => {
                s.priv_pending[j].store(PENDING_DELETE, SeqCst);
                let was = self.ok("delete (private)", self.store.delete(&k));
                s.priv_pending[j].store(0, SeqCst);
                if was != (acked != 0) {
                    if !was {
                        self.private_vanished(j, acked, "delete found nothing");
                    } else {
                        self.fail(format!(
                            "delete of private key {:?} found a value, acknowledged none",
                            String::from_utf8_lossy(&k)
                        ));
                    }
                }
                s.priv_acked[j].store(0, SeqCst);
                s.priv_acked_len[j].store(0, SeqCst);
            }
        }
    }

    fn scan(&mut self) {
        const PREFIXES: [&[u8]; 5] = [b"", b"k:", b"t:", b"p:", b"n:"];
        let prefix = PREFIXES[self.rng.below(PREFIXES.len() as u64) as usize];
        let limit = 1 + self.rng.below(64) as usize;
        let mut cursor = Some(0);
        let mut pages = 0;
        while let Some(c) = cursor {
            let (keys, next) = self.ok("scan", self.store.scan(c, prefix, limit));
            if keys.len() > limit {
                self.fail(format!("scan returned {} keys, limit {limit}", keys.len()));
            }
            for k in &keys {
                if !k.starts_with(prefix) || !self.known.contains(k) {
                    self.fail(format!(
                        "scan for {:?} returned unknown key {:?}",
                        String::from_utf8_lossy(prefix),
                        String::from_utf8_lossy(k)
                    ));
                }
            }
            if next.is_some_and(|n| n <= c) {
                self.fail(format!("scan cursor went from {c} to {next:?}"));
            }
            cursor = next;
            pages += 1;
            if pages > 1_000_000 {
                self.fail("scan did not end".into());
            }
        }
    }
}

/// A private key's state after its writer died: the acknowledged state, or the pending write;
/// or absent if `evictable` (a near-full `Evict` run where the acknowledged or the pending
/// value needed the heap).
fn settled_state(acked: u64, pending: u64, seen: u64, evictable: bool) -> Result<(), String> {
    let pending_state = match pending {
        0 => None,
        PENDING_DELETE => Some(0),
        s => Some(s),
    };
    if seen == acked || pending_state == Some(seen) || (seen == 0 && evictable) {
        Ok(())
    } else {
        Err(format!(
            "holds sequence {seen} (0: absent), but acknowledged {acked} and pending {pending:#x}"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Supervisor

/// What a run did and found.
#[derive(Debug, Default)]
pub struct Report {
    pub elapsed: Duration,
    pub workers: usize,
    /// The region: "anonymous", "file" or "named shm".
    pub backing: &'static str,
    /// The heap's size and policy ([`Heap::describe`]).
    pub heap: String,
    pub heap_bytes: u64,
    pub ops: u64,
    pub by_op: Vec<(&'static str, u64)>,
    pub reads_checked: u64,
    pub bytes_checked: u64,
    /// Acknowledged writes by [`Shape`].
    pub writes_by_shape: Vec<(&'static str, u64)>,
    /// Writes refused with `Full` (accepted ones: values needing the heap, near-full `Refuse`).
    pub full_refusals: u64,
    /// Entries evicted for room (the store's count).
    pub evictions: u64,
    /// Expired entries reclaimed (the store's count).
    pub expirations: u64,
    /// Private keys found evicted.
    pub private_evicted: u64,
    /// Every kill (random and targeted).
    pub kills: u64,
    /// Kills of a worker parked at a write point, i.e. holding its shard lock.
    pub holder_kills: u64,
    /// The same, by write point: every point the run armed, reached or not.
    pub holder_kills_by_point: Vec<(&'static str, u64)>,
    pub spawns: u64,
    /// Workers that opened the region themselves (file and named regions).
    pub opens: u64,
    pub lock_recoveries: u64,
    pub lock_contended: u64,
    pub max_wait: Duration,
    pub max_wait_op: &'static str,
    /// Increments whose outcome a kill left uncertain (sum of the amounts).
    pub uncertain: i64,
    pub counters: Vec<String>,
    /// Keys deleted at the end to check that the heap is then entirely free.
    pub emptied: u64,
    pub targeted: bool,
    /// Everything that went wrong; empty on success.
    pub problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn print(&self) {
        let secs = self.elapsed.as_secs_f64();
        println!(
            "torture: {} workers, {:.1} s, {} region, {} of {} KiB",
            self.workers,
            secs,
            self.backing,
            self.heap,
            self.heap_bytes / 1024
        );
        println!(
            "  ops          {} ({:.0}/s), reads checked {} ({:.1} MiB)",
            self.ops,
            self.ops as f64 / secs.max(1e-9),
            self.reads_checked,
            self.bytes_checked as f64 / (1 << 20) as f64
        );
        let shapes: Vec<String> = self
            .writes_by_shape
            .iter()
            .map(|(n, c)| format!("{n} {c}"))
            .collect();
        println!("  writes       {}", shapes.join(", "));
        println!(
            "  heap full    {} writes refused, {} evictions ({} of private keys), {} expired \
             entries reclaimed",
            self.full_refusals, self.evictions, self.private_evicted, self.expirations
        );
        println!(
            "  kills        {} ({} of lock holders{}), workers forked {}",
            self.kills,
            self.holder_kills,
            if self.targeted {
                ""
            } else {
                "; no failpoints, holders only by chance"
            },
            self.spawns
        );
        if self.backing != "anonymous" {
            println!(
                "  opens        {} (workers that opened the region)",
                self.opens
            );
        }
        if !self.holder_kills_by_point.is_empty() {
            let pts: Vec<String> = self
                .holder_kills_by_point
                .iter()
                .map(|(p, n)| format!("{p} {n}"))
                .collect();
            println!("  holders at   {}", pts.join(", "));
        }
        println!(
            "  recoveries   {} (lock waits contended: {})",
            self.lock_recoveries, self.lock_contended
        );
        println!(
            "  max wait     {:.2?} (in {})",
            self.max_wait, self.max_wait_op
        );
        println!(
            "  uncertain    {} (in-flight increments of killed workers)",
            self.uncertain
        );
        for c in &self.counters {
            println!("  {c}");
        }
        println!(
            "  at the end   {} keys deleted, then the heap was checked entirely free",
            self.emptied
        );
        let ops: Vec<String> = self.by_op.iter().map(|(n, c)| format!("{n} {c}")).collect();
        println!("  by op        {}", ops.join(", "));
        if self.problems.is_empty() {
            println!("  result       OK");
        } else {
            println!("  result       {} PROBLEMS", self.problems.len());
            for p in &self.problems {
                println!("    - {p}");
            }
        }
    }
}

/// The live workers; kills and reaps every one when dropped (also on a panic).
struct Supervisor<'a> {
    p: &'a Params,
    store: &'a Store,
    counters: &'a [Counter],
    ledger: &'a Ledger,
    keys: &'a Keys,
    rng: Rng,
    pids: Vec<libc::pid_t>,
    generation: Vec<u64>,
    /// Read and write ends of each slot's park pipe.
    pipes: Vec<(i32, i32)>,
    /// The points this run arms ([`park_points`]), with whether each is reached often.
    points: Vec<(&'static str, bool)>,
    /// The index in `points` each slot's worker is armed at.
    armed: Vec<Option<usize>>,
    /// When a parked worker is to be killed.
    parked: Vec<Option<Instant>>,
    incr_uncertain: [i64; INCR_KEYS],
    ctr_uncertain: [i64; COUNTERS],
    kills: u64,
    holder_kills: u64,
    /// Holder kills per entry of `points`.
    by_point: Vec<u64>,
    spawns: u64,
    problems: Vec<String>,
}

impl Drop for Supervisor<'_> {
    fn drop(&mut self) {
        for pid in &mut self.pids {
            if *pid > 0 {
                forked::kill(*pid);
                *pid = 0;
            }
        }
        for &(r, w) in &self.pipes {
            forked::close(r);
            forked::close(w);
        }
    }
}

fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Reads whatever is in the (non-blocking) pipe; returns how many bytes.
fn drain(fd: i32) -> usize {
    let mut n = 0;
    let mut b = [0u8; 64];
    loop {
        // SAFETY: valid buffer of 64 bytes.
        let r = unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) };
        if r <= 0 {
            return n;
        }
        n += r as usize;
    }
}

fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status:#x}")
    }
}

impl<'a> Supervisor<'a> {
    /// The point to arm a new worker at. While some points have not been reached, mostly one
    /// of those (one that no live worker is armed at, if any), so that every point is reached
    /// early in a run; `repair.redone` is reached only by repairing after a writer died with
    /// its overwrite committed, so until then a worker is armed at such a point
    /// ([`REDO_ENABLERS`]) whenever none is. Otherwise, half the time one of the points with
    /// the fewest holders killed there so far (counting the live workers armed there), else
    /// any.
    fn choose_point(&mut self) -> usize {
        let n = self.points.len();
        let armed_at =
            |sup: &Self, i: usize| sup.armed.iter().filter(|&&a| a == Some(i)).count() as u64;
        let unreached: Vec<usize> = (0..n).filter(|&i| self.by_point[i] == 0).collect();
        if !unreached.is_empty() && !self.rng.one_in(4) {
            let least = unreached
                .iter()
                .map(|&i| armed_at(self, i))
                .min()
                .expect("non-empty");
            let pick: Vec<usize> = unreached
                .iter()
                .copied()
                .filter(|&i| armed_at(self, i) == least)
                .collect();
            let i = pick[self.rng.below(pick.len() as u64) as usize];
            if self.points[i].0 == "repair.redone" {
                let enablers: Vec<usize> = (0..n)
                    .filter(|&e| REDO_ENABLERS.contains(&self.points[e].0))
                    .collect();
                if !enablers.is_empty() && enablers.iter().all(|&e| armed_at(self, e) == 0) {
                    return enablers[self.rng.below(enablers.len() as u64) as usize];
                }
            }
            return i;
        }
        if self.rng.one_in(2) {
            let load = |i: usize| self.by_point[i] + armed_at(self, i);
            let least = (0..n).map(load).min().expect("at least one point");
            let pick: Vec<usize> = (0..n).filter(|&i| load(i) == least).collect();
            pick[self.rng.below(pick.len() as u64) as usize]
        } else {
            self.rng.below(n as u64) as usize
        }
    }

    fn spawn(&mut self, s: usize) {
        assert_eq!(self.pids[s], 0, "slot {s} is occupied");
        self.generation[s] += 1;
        self.spawns += 1;
        self.armed[s] = None;
        // Every new worker is armed while some point has not been reached, half of them
        // after that (parked holders stall their shard: enough of them, not too many).
        let all_reached = self.by_point.iter().all(|&n| n > 0);
        let arm_it = self.p.targeted && !self.points.is_empty();
        let armed = (arm_it && !(all_reached && self.rng.one_in(2))).then(|| {
            let i = self.choose_point();
            // A point a run reaches rarely: park at its first hit.
            let after = if self.points[i].1 {
                self.rng.below(32) as u32
            } else {
                0
            };
            (i, after)
        });
        self.armed[s] = armed.map(|(i, _)| i);
        let armed = armed.map(|(i, after)| (self.points[i].0, after));
        self.parked[s] = None;
        let slot = &self.ledger.slots[s];
        slot.heartbeat_ns.store(mono_ns(), SeqCst);
        slot.op.store(0, SeqCst);
        let worker = Worker {
            store: self.store,
            counters: self.counters,
            ledger: self.ledger,
            slot,
            index: s,
            id: (s as u64) << 32 | self.generation[s],
            keys: self.keys,
            known: HashSet::new(),
            rng: Rng::new(self.p.seed ^ self.rng.next()),
            incr_seen: [0; INCR_KEYS],
            ctr_seen: [0; COUNTERS],
            seq: 0,
            buf: Vec::with_capacity(MAX_VALUE_LEN),
            clears: self.p.clears,
            heap: self.p.heap,
            phase_ns: self.p.phase.as_nanos() as u64,
        };
        let notify_fd = self.pipes[s].1;
        let backing = &self.p.backing;
        // SAFETY: getpid has no preconditions.
        let supervisor = unsafe { libc::getpid() };
        self.pids[s] = forked::spawn(move || {
            // Die with the supervisor, even if it is SIGKILLed (e.g. by a CI timeout) and
            // cannot reap us: no worker outlives the run.
            // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of the calling thread.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            // SAFETY: getppid has no preconditions.
            if unsafe { libc::getppid() } != supervisor {
                return; // the supervisor died before the prctl
            }
            // A worker of a file or named region opens it itself (and may be killed while
            // opening or resolving its counters).
            let reopened;
            let own_counters: Vec<Counter>;
            let mut worker: Worker<'_> = worker;
            if let Some(opened) = backing.open() {
                reopened = match opened {
                    Ok(s) => s,
                    Err(e) => worker.fail(format!("open the region: {e}")),
                };
                own_counters = match (0..COUNTERS)
                    .map(|i| reopened.counter(&counter_name(i)))
                    .collect()
                {
                    Ok(c) => c,
                    Err(e) => worker.fail(format!("resolve the counters: {e}")),
                };
                worker.store = &reopened;
                worker.counters = &own_counters;
                worker.ledger.opens.fetch_add(1, SeqCst);
            }
            worker.known = worker.keys.all();
            if let Some((point, after)) = armed {
                arm(point, notify_fd, after);
            }
            worker.run();
        });
    }

    /// SIGKILLs the worker in slot `s` and reaps it; its in-flight increments become
    /// uncertain. Returns whether it was parked at a write point (holding a lock).
    fn kill(&mut self, s: usize) -> bool {
        let pid = self.pids[s];
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: reaping our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid, "waitpid of worker {s}");
        self.pids[s] = 0;
        if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL {
            self.kills += 1;
        } else {
            // It ended on its own just before our signal.
            self.ended(s, status);
        }
        let slot = &self.ledger.slots[s];
        for i in 0..INCR_KEYS {
            self.incr_uncertain[i] += slot.incr_inflight[i].swap(0, SeqCst);
        }
        for i in 0..COUNTERS {
            self.ctr_uncertain[i] += slot.ctr_inflight[i].swap(0, SeqCst);
        }
        let parked = self.parked[s].take().is_some() | (drain(self.pipes[s].0) > 0);
        if parked {
            self.holder_kills += 1;
            let i = self.armed[s].expect("only armed workers park");
            self.by_point[i] += 1;
        }
        self.armed[s] = None;
        parked
    }

    /// A worker ended by itself with `status`; before the stop flag, that is always wrong.
    fn ended(&mut self, s: usize, status: i32) {
        let slot = &self.ledger.slots[s];
        let stopping = self.ledger.stop.load(SeqCst) != 0;
        if slot.violations.load(SeqCst) > 0 {
            self.problems.push(slot.message());
        } else if !(stopping && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            self.problems.push(format!(
                "worker {s} ended with {} (stop flag {})",
                describe_status(status),
                if stopping { "set" } else { "not set" }
            ));
        } else {
            let inflight: i64 = slot
                .incr_inflight
                .iter()
                .map(|a| a.load(SeqCst))
                .sum::<i64>()
                + slot
                    .ctr_inflight
                    .iter()
                    .map(|a| a.load(SeqCst))
                    .sum::<i64>();
            if inflight != 0 {
                self.problems.push(format!(
                    "worker {s} exited cleanly with increments in flight"
                ));
            }
        }
    }

    /// Reaps workers that ended by themselves.
    fn reap(&mut self) {
        for s in 0..self.p.workers {
            let pid = self.pids[s];
            if pid == 0 {
                continue;
            }
            let mut status = 0;
            // SAFETY: polling our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                self.pids[s] = 0;
                self.armed[s] = None;
                self.ended(s, status);
            }
        }
    }

    /// Notes workers that parked at their failpoint; they are killed after a random hold.
    fn watch_parks(&mut self, timeout: Duration) {
        let mut fds: Vec<libc::pollfd> = (0..self.p.workers)
            .filter(|&s| self.pids[s] > 0 && self.armed[s].is_some() && self.parked[s].is_none())
            .map(|s| libc::pollfd {
                fd: self.pipes[s].0,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = timeout.as_millis().min(1000) as i32;
        if fds.is_empty() {
            std::thread::sleep(timeout.min(Duration::from_secs(1)));
            return;
        }
        // SAFETY: valid array of `fds.len()` pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            return;
        }
        for f in fds.iter().filter(|f| f.revents & libc::POLLIN != 0) {
            let s = (0..self.p.workers)
                .find(|&s| self.pipes[s].0 == f.fd)
                .expect("a slot's pipe");
            drain(f.fd);
            let hold = self.rng.below(self.p.max_hold.as_micros() as u64 + 1);
            self.parked[s] = Some(Instant::now() + Duration::from_micros(hold));
        }
    }

    fn check_hangs(&mut self) {
        let now = mono_ns();
        for s in 0..self.p.workers {
            if self.pids[s] == 0 || self.parked[s].is_some() {
                continue;
            }
            let slot = &self.ledger.slots[s];
            let quiet = Duration::from_nanos(now.saturating_sub(slot.heartbeat_ns.load(SeqCst)));
            if quiet > self.p.hang_limit {
                let op = match slot.op.load(SeqCst) {
                    0 => "between operations",
                    n => ALL_OPS[n as usize - 1].name(),
                };
                self.problems.push(format!(
                    "worker {s} made no progress for {quiet:.1?} (in {op}; armed at {:?}): hang",
                    self.armed[s].map(|i| self.points[i].0)
                ));
                self.kill(s);
            }
        }
    }

    fn total_ops(&self) -> u64 {
        self.ledger.slots[..self.p.workers]
            .iter()
            .map(|s| s.ops.load(SeqCst))
            .sum()
    }

    /// Runs until `duration` has passed (or the operation budget is used), and on, up to
    /// twice `duration`, while some armed point has not been reached yet.
    fn storm(&mut self, start: Instant) {
        let deadline = start + self.p.duration;
        let overtime = start + 2 * self.p.duration;
        let mut next_kill = start + self.kill_interval();
        let mut next_progress = self.p.progress.map(|d| start + d);
        while self.problems.is_empty() {
            let now = Instant::now();
            let all_reached = self.by_point.iter().all(|&n| n > 0);
            if (now >= deadline && (all_reached || now >= overtime))
                || self.total_ops() >= self.p.max_ops
            {
                break;
            }
            let wake = self
                .parked
                .iter()
                .flatten()
                .copied()
                .chain([next_kill, if now < deadline { deadline } else { overtime }])
                .min()
                .expect("non-empty");
            self.watch_parks(
                wake.saturating_duration_since(now)
                    .min(Duration::from_millis(2)),
            );
            let now = Instant::now();
            for s in 0..self.p.workers {
                if self.parked[s].is_some_and(|t| t <= now) {
                    self.kill(s);
                    self.spawn(s);
                }
            }
            if now >= next_kill {
                let s = self.rng.below(self.p.workers as u64) as usize;
                if self.pids[s] > 0 {
                    self.kill(s);
                    self.spawn(s);
                }
                next_kill = now + self.kill_interval();
            }
            self.reap();
            self.check_hangs();
            if next_progress.is_some_and(|t| now >= t) {
                let st = self.store.stats();
                let phase = (start.elapsed().as_nanos() / self.p.phase.as_nanos().max(1)) % 3;
                println!(
                    "  {:>5.0} s: {} ops, {} kills ({} holders), {} recoveries, {} values, heap \
                     {:.0}% used, {} refused, {} evicted",
                    start.elapsed().as_secs_f64(),
                    self.total_ops(),
                    self.kills,
                    self.holder_kills,
                    st.lock_recoveries,
                    PHASE_NAMES[phase as usize],
                    100.0 * (1.0 - st.heap_free_bytes as f64 / st.heap_bytes.max(1) as f64),
                    st.full_refusals,
                    st.evictions
                );
                next_progress = self.p.progress.map(|d| now + d);
            }
        }
    }

    fn kill_interval(&mut self) -> Duration {
        let mean = self.p.kill_every.as_micros() as u64;
        Duration::from_micros(self.rng.below(2 * mean + 1))
    }

    /// Raises the stop flag and waits (bounded) for every worker to exit; kills a worker that
    /// parks meanwhile, and every worker left at the limit.
    fn stop(&mut self) {
        self.ledger.stop.store(1, SeqCst);
        let limit = Instant::now() + Duration::from_secs(10).max(self.p.hang_limit);
        while self.pids.iter().any(|&p| p > 0) {
            self.reap();
            self.watch_parks(Duration::from_millis(1));
            for s in 0..self.p.workers {
                if self.pids[s] > 0 && self.parked[s].is_some() {
                    self.kill(s);
                }
            }
            if Instant::now() > limit {
                for s in 0..self.p.workers {
                    if self.pids[s] > 0 {
                        self.problems
                            .push(format!("worker {s} did not stop in time"));
                        self.kill(s);
                    }
                }
            }
        }
    }
}

#[cfg(feature = "failpoints")]
fn arm(point: &str, notify_fd: i32, after: u32) {
    shmstate::failpoint::arm(
        point,
        shmstate::failpoint::Action::Park { notify_fd },
        after,
    );
}

#[cfg(not(feature = "failpoints"))]
fn arm(_point: &str, _notify_fd: i32, _after: u32) {
    unreachable!("targeted kills need the failpoints feature");
}

/// Whether the crate knows failpoint `name` (arming an unknown one panics).
#[cfg(feature = "failpoints")]
fn point_exists(name: &str) -> bool {
    shmstate::failpoint::POINTS.iter().any(|(n, _)| *n == name)
}

#[cfg(not(feature = "failpoints"))]
fn point_exists(_name: &str) -> bool {
    false
}

/// The store's configuration: ample capacity, 64 KiB values, and `memory` = the index plus
/// the heap [`Params::heap`] asks for. Returns it with the heap pages per shard.
fn store_config(p: &Params) -> (Config, u32) {
    let heap_keys = 2 * p.keys + p.workers * PRIVATE_KEYS;
    let capacity = (heap_keys + INCR_KEYS) as u64 * 4 + 1000;
    let base = Config::new()
        .capacity(capacity)
        .shards(p.shards)
        .max_value_len(MAX_VALUE_LEN as u32)
        .when_full(p.heap.policy());
    let pages = match p.heap {
        // Every key at the largest size in one shard, plus the value an overwrite places
        // before it frees the old one.
        Heap::Roomy => (heap_keys as u32 + 1) * PAGES_PER_VALUE,
        Heap::NearFull { pages, .. } => pages,
    };
    // The index's size: a region of the same shape with the default heap, less that heap;
    // then more memory until the heap has the pages (its maps grow with it).
    let want = u64::from(pages) * 4096 * u64::from(p.shards);
    let probe = Store::anonymous(&base).expect("create a probe store");
    let st = probe.stats();
    drop(probe);
    let mut memory = st.region_bytes - st.heap_bytes + want;
    for _ in 0..16 {
        let cfg = base.clone().memory(memory);
        let st = Store::anonymous(&cfg)
            .expect("create a probe store")
            .stats();
        if st.heap_bytes >= want {
            break;
        }
        memory += (want - st.heap_bytes).max(4096);
    }
    (base.memory(memory), pages)
}

/// Runs the soak. Call from a single-threaded process (it forks).
pub fn run(p: &Params) -> Report {
    assert!(
        (1..=MAX_WORKERS).contains(&p.workers),
        "workers must be 1..={MAX_WORKERS}"
    );
    assert!((1..=99).contains(&p.keys), "keys must be 1..=99");
    assert!(
        !p.targeted || cfg!(feature = "failpoints"),
        "targeted kills need the failpoints feature"
    );
    if let Heap::NearFull { pages, .. } = p.heap {
        assert!(
            pages >= 3 * PAGES_PER_VALUE,
            "a near-full heap needs at least {} pages per shard",
            3 * PAGES_PER_VALUE
        );
    }
    let keys = Keys::new(p);
    let (cfg, pages) = store_config(p);
    let store = p.backing.create(&cfg);
    let _remove = RemoveOnDrop(p.backing.clone());
    let mut problems = Vec::new();
    let heap_bytes = store.stats().heap_bytes;
    if heap_bytes < u64::from(pages) * 4096 * u64::from(p.shards) {
        problems.push(format!(
            "the heap has {heap_bytes} bytes, less than the {pages} pages per shard asked for"
        ));
    }
    let counters: Vec<Counter> = (0..COUNTERS)
        .map(|i| store.counter(&counter_name(i)).expect("register counter"))
        .collect();
    let ledger_map = LedgerMap::new();
    let ledger = ledger_map.get();
    let mut points = if p.targeted {
        park_points(p)
    } else {
        Vec::new()
    };
    points.retain(|(name, _)| {
        let known = point_exists(name);
        if !known {
            problems.push(format!(
                "failpoint {name} is not in shmstate::failpoint::POINTS, so it cannot be armed"
            ));
        }
        known
    });
    let mut sup = Supervisor {
        p,
        store: &store,
        counters: &counters,
        ledger,
        keys: &keys,
        rng: Rng::new(p.seed),
        pids: vec![0; p.workers],
        generation: vec![0; p.workers],
        pipes: (0..p.workers)
            .map(|_| {
                let (r, w) = forked::pipe();
                set_nonblocking(r);
                (r, w)
            })
            .collect(),
        by_point: vec![0; points.len()],
        points,
        armed: vec![None; p.workers],
        parked: vec![None; p.workers],
        incr_uncertain: [0; INCR_KEYS],
        ctr_uncertain: [0; COUNTERS],
        kills: 0,
        holder_kills: 0,
        spawns: 0,
        problems: Vec::new(),
    };
    let start = Instant::now();
    ledger.start_ns.store(mono_ns(), SeqCst);
    for s in 0..p.workers {
        sup.spawn(s);
    }
    sup.storm(start);
    sup.stop();
    let elapsed = start.elapsed();

    let mut rep = Report {
        elapsed,
        workers: p.workers,
        heap: p.heap.describe(),
        heap_bytes,
        kills: sup.kills,
        holder_kills: sup.holder_kills,
        holder_kills_by_point: sup
            .points
            .iter()
            .zip(&sup.by_point)
            .map(|(&(p, _), &n)| (p, n))
            .collect(),
        spawns: sup.spawns,
        backing: match p.backing {
            Backing::Anonymous => "anonymous",
            Backing::File(_) => "file",
            Backing::Named(_) => "named shm",
        },
        targeted: p.targeted,
        uncertain: sup.incr_uncertain.iter().sum::<i64>() + sup.ctr_uncertain.iter().sum::<i64>(),
        ..Report::default()
    };
    problems.append(&mut sup.problems);
    let slots = &ledger.slots[..p.workers];
    let sum = |f: &dyn Fn(&Slot) -> u64| slots.iter().map(f).sum::<u64>();
    rep.ops = sum(&|s| s.ops.load(SeqCst));
    rep.reads_checked = sum(&|s| s.reads_checked.load(SeqCst));
    rep.bytes_checked = sum(&|s| s.bytes_checked.load(SeqCst));
    rep.full_refusals = sum(&|s| s.full_refusals.load(SeqCst));
    rep.private_evicted = sum(&|s| s.private_evicted.load(SeqCst));
    rep.writes_by_shape = Shape::ALL
        .iter()
        .enumerate()
        .map(|(i, sh)| (sh.name(), sum(&|s| s.writes_by_shape[i].load(SeqCst))))
        .collect();
    rep.by_op = ALL_OPS
        .iter()
        .map(|&o| (o.name(), sum(&|s| s.by_op[o as usize].load(SeqCst))))
        .collect();
    let worst = slots
        .iter()
        .max_by_key(|s| s.max_wait_ns.load(SeqCst))
        .expect("at least one slot");
    rep.max_wait = Duration::from_nanos(worst.max_wait_ns.load(SeqCst));
    rep.max_wait_op = ALL_OPS[worst.max_wait_op.load(SeqCst) as usize].name();

    // Every shard locked once: settles what the last killed writers left.
    match store.verify() {
        Ok(v) if v.is_ok() => {}
        Ok(v) => problems.push(format!("verify at the end: {v}")),
        Err(e) => problems.push(format!("verify at the end: {e}")),
    }
    final_checks(&store, &counters, &keys, &sup, &mut rep, &mut problems);

    let st = store.stats();
    rep.lock_recoveries = st.lock_recoveries;
    rep.lock_contended = st.lock_contended;
    rep.evictions = st.evictions;
    rep.expirations = st.expirations;
    rep.opens = ledger.opens.load(SeqCst);
    rep.emptied = empty_and_check_space(&store, &mut problems);
    if p.backing != Backing::Anonymous && rep.opens == 0 {
        problems.push("no worker opened the region itself".into());
    }
    if rep.kills == 0 {
        problems.push("no worker was killed".into());
    }
    if p.targeted && rep.holder_kills == 0 {
        problems.push("no lock holder was killed".into());
    }
    for (point, n) in &rep.holder_kills_by_point {
        if *n == 0 {
            problems.push(format!(
                "failpoint {point} was never reached (no worker parked and was killed there)"
            ));
        }
    }
    if rep.lock_recoveries == 0 {
        problems.push("no lock recovery happened (no kill hit a lock holder)".into());
    }
    if rep.lock_recoveries < rep.holder_kills {
        problems.push(format!(
            "{} lock holders killed but only {} recoveries",
            rep.holder_kills, rep.lock_recoveries
        ));
    }
    if rep.max_wait > p.max_wait_bound {
        problems.push(format!(
            "an operation ({}) took {:.2?}, over the bound of {:?}",
            rep.max_wait_op, rep.max_wait, p.max_wait_bound
        ));
    }
    for (op, (name, n)) in ALL_OPS.iter().zip(&rep.by_op) {
        if *n == 0 && op.weight(p.clears) > 0 {
            problems.push(format!("operation {name} never ran"));
        }
    }
    for (name, n) in &rep.writes_by_shape {
        if *n == 0 {
            problems.push(format!("no value was written {name}"));
        }
    }
    if matches!(p.heap, Heap::NearFull { .. }) {
        let made_room = match p.heap.policy() {
            WhenFull::Evict => rep.evictions,
            _ => rep.full_refusals,
        };
        if made_room == 0 {
            problems.push(format!(
                "the near-full heap never filled up ({:?}: no write {})",
                p.heap.policy(),
                if p.heap.policy() == WhenFull::Evict {
                    "evicted anything"
                } else {
                    "was refused"
                }
            ));
        }
    }
    drop(sup);
    rep.problems = problems;
    rep
}

/// Deletes every key (expired ones by `flush_expired`, the rest found by `scan`; again, a few
/// times at most, if some expired between the two and so was neither), then checks that the
/// heap is entirely free and `verify` clean: no space leaked. Returns how many keys it deleted.
fn empty_and_check_space(store: &Store, problems: &mut Vec<String>) -> u64 {
    let mut deleted = 0;
    let mut run = || -> shmstate::Result<()> {
        for _ in 0..5 {
            delete_all(store, &mut deleted, problems)?;
            if store.is_empty() {
                break;
            }
        }
        Ok(())
    };
    if let Err(e) = run() {
        problems.push(format!("deleting every key at the end: {e}"));
        return deleted;
    }
    let st = store.stats();
    if st.entries != 0 {
        problems.push(format!(
            "after deleting every key, {} entries remain",
            st.entries
        ));
    }
    if st.value_bytes != 0 || st.heap_free_bytes != st.heap_bytes {
        problems.push(format!(
            "space leaked: after deleting every key, {} of {} heap bytes are free and {} value \
             bytes are counted",
            st.heap_free_bytes, st.heap_bytes, st.value_bytes
        ));
    }
    match store.verify() {
        Ok(v) if v.is_ok() => {}
        Ok(v) => problems.push(format!("verify after deleting every key: {v}")),
        Err(e) => problems.push(format!("verify after deleting every key: {e}")),
    }
    deleted
}

/// One pass of [`empty_and_check_space`]: removes the expired entries, then deletes every key
/// `scan` finds.
fn delete_all(
    store: &Store,
    deleted: &mut u64,
    problems: &mut Vec<String>,
) -> shmstate::Result<()> {
    store.flush_expired()?;
    let mut keys = Vec::new();
    let mut cursor = Some(0);
    let mut pages = 0;
    while let Some(c) = cursor {
        let (page, next) = store.scan(c, b"", 256)?;
        keys.extend(page);
        cursor = next;
        pages += 1;
        if pages > 1_000_000 {
            problems.push("scan at the end did not end".into());
            return Ok(());
        }
    }
    for k in keys {
        if store.delete(&k)? {
            *deleted += 1;
        }
    }
    Ok(())
}

fn final_checks(
    store: &Store,
    counters: &[Counter],
    keys: &Keys,
    sup: &Supervisor<'_>,
    rep: &mut Report,
    problems: &mut Vec<String>,
) {
    let slots = &sup.ledger.slots[..sup.p.workers];
    let evicts = sup.p.heap.policy() == WhenFull::Evict && sup.p.heap != Heap::Roomy;
    let mut get = |k: &[u8]| match store.get(k) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!(
                "get {:?} at the end: {e}",
                String::from_utf8_lossy(k)
            ));
            None
        }
    };
    let mut found = Vec::new();
    for k in keys.hot.iter().chain(&keys.short) {
        if let Some(v) = get(k) {
            found.push(check_value(k, &v).map(drop));
        }
    }
    let mut incr_values = Vec::new();
    for k in &keys.incr {
        incr_values.push(get(k));
    }
    let mut private = Vec::new();
    for (s, ks) in keys.private.iter().enumerate() {
        for (j, k) in ks.iter().enumerate() {
            private.push((s, j, k, get(k)));
        }
    }
    problems.extend(found.into_iter().filter_map(Result::err));

    for (i, v) in incr_values.into_iter().enumerate() {
        let acked: i64 = slots.iter().map(|s| s.incr_acked[i].load(SeqCst)).sum();
        let value = match v.as_deref().map(parse_int) {
            None => 0,
            Some(Some(n)) => n,
            Some(None) => {
                problems.push(format!("incr key {i} holds a non-integer"));
                continue;
            }
        };
        let unc = sup.incr_uncertain[i];
        rep.counters.push(format!(
            "incr n:{i}      {value} (acknowledged {acked}, uncertain {unc})"
        ));
        if let Err(e) = check_conserved(&format!("incr key n:{i}"), value, acked, unc) {
            problems.push(e);
        }
    }
    for (i, c) in counters.iter().enumerate() {
        let acked: i64 = slots.iter().map(|s| s.ctr_acked[i].load(SeqCst)).sum();
        let unc = sup.ctr_uncertain[i];
        let value = c.get();
        rep.counters.push(format!(
            "counter {} {value} (acknowledged {acked}, uncertain {unc})",
            counter_name(i)
        ));
        if let Err(e) = check_conserved(&counter_name(i), value, acked, unc) {
            problems.push(e);
        }
    }
    for (s, j, k, v) in private {
        let name = String::from_utf8_lossy(k);
        let seen = match v.map(|v| check_value(k, &v)) {
            None => 0,
            Some(Ok(None)) => {
                problems.push(format!("private key {name} holds a tiny value"));
                continue;
            }
            Some(Ok(Some((writer, _)))) if writer >> 32 != s as u64 => {
                problems.push(format!("private key {name} written by {writer:#x}"));
                continue;
            }
            Some(Ok(Some((_, seq)))) => seq,
            Some(Err(e)) => {
                problems.push(format!("private key {name}: {e}"));
                continue;
            }
        };
        let slot = &slots[s];
        let (acked, pending) = (
            slot.priv_acked[j].load(SeqCst),
            slot.priv_pending[j].load(SeqCst),
        );
        let evictable = evicts
            && (slot.priv_acked_len[j].load(SeqCst) as usize > INLINE_MAX
                || (pending != PENDING_DELETE
                    && slot.priv_pending_len[j].load(SeqCst) as usize > INLINE_MAX));
        if let Err(e) = settled_state(acked, pending, seen, evictable) {
            problems.push(format!("private key {name} at the end: {e}"));
        }
    }
}
