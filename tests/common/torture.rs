//! The kill -9 torture soak, shared by `tests/torture.rs` (a CI-length run) and
//! `examples/torture.rs` (long runs from the command line).
//!
//! The promise under test: a worker killed at any instant (`SIGKILL`) loses at most its own
//! in-flight operation; nothing else is lost or corrupted, and nobody deadlocks.
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
//! `failpoints` feature it also arms, in some of the workers it forks, a random write point
//! with `Action::Park`: the worker stops there *holding its shard lock* and writes a byte to a
//! pipe, and the supervisor kills it after a short random hold (during which the others pile
//! up on that lock).
//!
//! What is checked, and how:
//!
//! * **Values are self-checking.** Every value of a table key carries its key, its writer, a
//!   sequence number, a variable-length padding and a checksum over all of it; every read
//!   checks that the value belongs to the key read and that the checksum matches. A torn or
//!   misplaced value is a violation.
//! * **Nothing acknowledged is lost, nothing unwritten appears.** Each slot owns a few private
//!   keys that only the worker in that slot writes. Before a write it records the write as
//!   pending in the ledger, after it as acknowledged; every read of a private key must return
//!   exactly the acknowledged state. A replacement worker first locks the key's shard (which
//!   repairs a dead predecessor's half-done write) and then accepts either the acknowledged
//!   or the pending state, which settles its predecessor's one in-flight write.
//! * **Counters are conserved.** `incr` keys (never deleted, no TTL) and named counters are
//!   only ever increased. A worker records "about to add d" before each increment and "added
//!   d" (acknowledged total) after it. When a worker is killed, its in-flight amounts become
//!   *uncertain*. At the end each value must lie in `[acknowledged, acknowledged +
//!   uncertain]`, and every value a worker reads or gets back must not be below what it saw
//!   before plus what it added since (increments are never lost, not even transiently).
//! * **Every result is expected.** Capacity is ample and the lock timeout (10 s) far above any
//!   legitimate wait, so every operation must return `Ok`; any `Err` (`Full`, `LockTimeout`,
//!   `Corrupted`, ...) is a violation. Results are checked where they are determined: a
//!   compare-and-swap against a value never stored must fail, `delete` of a private key
//!   returns whether it was there, `ttl` never exceeds the longest TTL ever set, `scan`
//!   returns only keys that exist in the key plan, and a `verify` run by a worker in the
//!   middle of the storm must be clean.
//! * **Nobody waits long, nobody hangs.** Each worker measures every operation and keeps its
//!   maximum in the ledger; the maximum over all operations must stay below `max_wait_bound`.
//!   Workers stamp a heartbeat after every operation; a worker with no heartbeat for
//!   `hang_limit` (other than one parked on purpose) is a violation.
//! * **Recovery was exercised.** At the end: `verify()` is clean, the store counted lock
//!   recoveries (at least one per killed lock holder), and there were kills, and kills of
//!   lock holders when failpoints are on.
//!
//! A worker that sees a violation writes it to its ledger slot and exits with
//! [`VIOLATION_EXIT`]; the supervisor then stops the run and reports it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering::SeqCst};
use std::time::{Duration, Instant};

use shmstate::{Config, Counter, Store, Ttl};

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
/// Longest padding in a value (values are then at most 3 + 64 + 16 + 160 + 8 bytes).
const MAX_PAD: usize = 160;
const MAX_VALUE_LEN: u32 = 256;

/// Write points a worker may be told to park at (holding its shard lock). The `repair.*`
/// points are reached only by a worker repairing after an earlier kill: a repairer killed
/// midway.
pub const PARK_POINTS: &[&str] = &[
    "lock.acquired",
    "insert.written",
    "insert.published",
    "put.scratch",
    "put.committed",
    "put.applying",
    "put.published",
    "delete.ctrl",
    "expire.stored",
    "repair.redone",
    "repair.recounted",
    // Last: reached only in runs with `clears` (see `park_points`).
    "clear.half",
];

/// The write points a run arms: `clear.half` only when workers call `clear`.
fn park_points(clears: bool) -> usize {
    if clears {
        PARK_POINTS.len()
    } else {
        PARK_POINTS.len() - 1
    }
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

/// Parameters of one run.
#[derive(Clone, Debug)]
pub struct Params {
    /// Where the region lives (see [`Backing`]).
    pub backing: Backing,
    /// Concurrent worker processes (at most [`MAX_WORKERS`]).
    pub workers: usize,
    /// How long to run (the run also stops after `max_ops` operations).
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
    /// Arm failpoints so that lock holders get killed (needs the `failpoints` feature).
    pub targeted: bool,
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
            targeted: cfg!(feature = "failpoints"),
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
// Randomness, time, values

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

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A self-checking value: `"TV"`, key length, key, writer, sequence, padding, checksum.
pub fn make_value(key: &[u8], writer: u64, seq: u64, pad: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(3 + key.len() + 16 + pad + 8);
    v.extend_from_slice(b"TV");
    v.push(key.len() as u8);
    v.extend_from_slice(key);
    v.extend_from_slice(&writer.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend((0..pad).map(|i| (i as u8).wrapping_mul(31) ^ (seq as u8) ^ (writer as u8)));
    let sum = fnv1a(&v);
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

/// Checks that `v` is a well-formed value of `key`; returns its writer and sequence number.
pub fn check_value(key: &[u8], v: &[u8]) -> Result<(u64, u64), String> {
    let head = 3 + key.len();
    let describe = || format!("{:?}", String::from_utf8_lossy(v));
    if v.len() < head + 16 + 8 {
        return Err(format!(
            "value of {} bytes is too short: {}",
            v.len(),
            describe()
        ));
    }
    if &v[..2] != b"TV" || v[2] as usize != key.len() || &v[3..head] != key {
        return Err(format!("value does not belong to this key: {}", describe()));
    }
    let (body, sum) = v.split_at(v.len() - 8);
    if fnv1a(body).to_le_bytes() != sum {
        return Err(format!("checksum mismatch (torn value): {}", describe()));
    }
    let writer = u64::from_le_bytes(v[head..head + 8].try_into().expect("8 bytes"));
    let seq = u64::from_le_bytes(v[head + 8..head + 16].try_into().expect("8 bytes"));
    Ok((writer, seq))
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
    max_wait_ns: AtomicU64,
    max_wait_op: AtomicU32,
    incr_acked: [AtomicI64; INCR_KEYS],
    incr_inflight: [AtomicI64; INCR_KEYS],
    ctr_acked: [AtomicI64; COUNTERS],
    ctr_inflight: [AtomicI64; COUNTERS],
    /// Sequence number of each private key's value (0: absent).
    priv_acked: [AtomicU64; PRIVATE_KEYS],
    /// A write in flight: the sequence number being written, [`PENDING_DELETE`], or 0.
    priv_pending: [AtomicU64; PRIVATE_KEYS],
    next_seq: AtomicU64,
    violations: AtomicU32,
    msg: [AtomicU8; MSG_LEN],
}

#[repr(C)]
struct Ledger {
    stop: AtomicU32,
    /// Workers that opened a file or named region themselves (see [`Backing`]).
    opens: AtomicU64,
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

    fn checked(&self, key: &[u8], v: &[u8]) -> (u64, u64) {
        self.slot.reads_checked.fetch_add(1, SeqCst);
        match check_value(key, v) {
            Ok(x) => x,
            Err(e) => self.fail(format!("read of {:?}: {e}", String::from_utf8_lossy(key))),
        }
    }

    fn new_value(&mut self, key: &[u8]) -> Vec<u8> {
        self.seq += 1;
        let pad = self.rng.below(MAX_PAD as u64 + 1) as usize;
        make_value(key, self.id, self.seq, pad)
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
                self.ok("set", self.store.set(&k, &v, ttl));
            }
            Op::Add => {
                let k = self.hot();
                let v = self.new_value(&k);
                let ttl = self.hot_ttl();
                self.ok("add", self.store.add(&k, &v, ttl));
            }
            Op::Replace => {
                let k = self.hot();
                let v = self.new_value(&k);
                let ttl = self.hot_ttl();
                self.ok("replace", self.store.replace(&k, &v, ttl));
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
                self.ok("set(short ttl)", self.store.set(&k, &v, Some(ttl)));
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
            // A value nobody ever stored (writer id u64::MAX) never matches.
            let bogus = make_value(&k, u64::MAX, 0, 0);
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
                self.ok(
                    "compare_and_swap",
                    self.store.compare_and_swap(&k, Some(&cur), to, ttl),
                );
            }
            None => {
                self.ok(
                    "compare_and_swap",
                    self.store.compare_and_swap(&k, None, Some(&new), None),
                );
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
            Some(v) => {
                let (writer, seq) = self.checked(k, &v);
                if writer >> 32 != self.index as u64 {
                    self.fail(format!(
                        "private key {:?} written by writer {writer:#x} of another slot",
                        String::from_utf8_lossy(k)
                    ));
                }
                seq
            }
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
            let acked = self.slot.priv_acked[j].load(SeqCst);
            let pending = self.slot.priv_pending[j].load(SeqCst);
            let seen = self.read_private(j);
            if let Err(e) = settled_state(acked, pending, seen) {
                self.fail(format!("private key {:?}: {e}", String::from_utf8_lossy(k)));
            }
            self.slot.priv_acked[j].store(seen, SeqCst);
            self.slot.priv_pending[j].store(0, SeqCst);
        }
    }

    fn private(&mut self) {
        let j = self.rng.below(PRIVATE_KEYS as u64) as usize;
        let k = self.keys.private[self.index][j].clone();
        let acked = self.slot.priv_acked[j].load(SeqCst);
        match self.rng.below(4) {
            0 | 1 => {
                let seen = self.read_private(j);
                if seen != acked {
                    self.fail(format!(
                        "private key {:?}: read sequence {seen}, acknowledged {acked} (a write \
                         was lost or appeared)",
                        String::from_utf8_lossy(&k)
                    ));
                }
            }
            2 => {
                let seq = self.slot.next_seq.fetch_add(1, SeqCst) + 1;
                let pad = self.rng.below(MAX_PAD as u64 + 1) as usize;
                let v = make_value(&k, self.id, seq, pad);
                self.slot.priv_pending[j].store(seq, SeqCst);
                self.ok("set (private)", self.store.set(&k, &v, None));
                self.slot.priv_acked[j].store(seq, SeqCst);
                self.slot.priv_pending[j].store(0, SeqCst);
            }
            _ => {
                self.slot.priv_pending[j].store(PENDING_DELETE, SeqCst);
                let was = self.ok("delete (private)", self.store.delete(&k));
                self.slot.priv_acked[j].store(0, SeqCst);
                self.slot.priv_pending[j].store(0, SeqCst);
                if was != (acked != 0) {
                    self.fail(format!(
                        "delete of private key {:?} returned {was}, acknowledged sequence {acked}",
                        String::from_utf8_lossy(&k)
                    ));
                }
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

/// A private key's state after its writer died: the acknowledged state, or the pending write.
fn settled_state(acked: u64, pending: u64, seen: u64) -> Result<(), String> {
    let pending_state = match pending {
        0 => None,
        PENDING_DELETE => Some(0),
        s => Some(s),
    };
    if seen == acked || pending_state == Some(seen) {
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
    pub ops: u64,
    pub by_op: Vec<(&'static str, u64)>,
    pub reads_checked: u64,
    /// Every kill (random and targeted).
    pub kills: u64,
    /// Kills of a worker parked at a write point, i.e. holding its shard lock.
    pub holder_kills: u64,
    /// The same, by write point (points never reached are not listed).
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
            "torture: {} workers, {:.1} s, {} region",
            self.workers, secs, self.backing
        );
        println!(
            "  ops          {} ({:.0}/s), reads checked {}",
            self.ops,
            self.ops as f64 / secs.max(1e-9),
            self.reads_checked
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
    armed: Vec<Option<&'static str>>,
    /// When a parked worker is to be killed.
    parked: Vec<Option<Instant>>,
    incr_uncertain: [i64; INCR_KEYS],
    ctr_uncertain: [i64; COUNTERS],
    kills: u64,
    holder_kills: u64,
    /// Holder kills per entry of [`PARK_POINTS`].
    by_point: [u64; PARK_POINTS.len()],
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
    fn spawn(&mut self, s: usize) {
        assert_eq!(self.pids[s], 0, "slot {s} is occupied");
        self.generation[s] += 1;
        self.spawns += 1;
        let armed = (self.p.targeted && self.rng.one_in(2)).then(|| {
            let n = park_points(self.p.clears) as u64;
            let point = PARK_POINTS[self.rng.below(n) as usize];
            // A repair or a clear is rare in one worker's short life: park at the first one.
            let after = if point.starts_with("repair.") || point.starts_with("clear.") {
                0
            } else {
                self.rng.below(32) as u32
            };
            (point, after)
        });
        self.armed[s] = armed.map(|(point, _)| point);
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
            buf: Vec::with_capacity(MAX_VALUE_LEN as usize),
            clears: self.p.clears,
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
            let point = self.armed[s].expect("only armed workers park");
            let i = PARK_POINTS
                .iter()
                .position(|&p| p == point)
                .expect("a park point");
            self.by_point[i] += 1;
        }
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
                    self.armed[s]
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

    fn storm(&mut self, start: Instant) {
        let deadline = start + self.p.duration;
        let mut next_kill = start + self.kill_interval();
        let mut next_progress = self.p.progress.map(|d| start + d);
        while self.problems.is_empty() {
            let now = Instant::now();
            if now >= deadline || self.total_ops() >= self.p.max_ops {
                break;
            }
            let wake = self
                .parked
                .iter()
                .flatten()
                .copied()
                .chain([next_kill, deadline])
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
                println!(
                    "  {:>5.0} s: {} ops, {} kills ({} holders), {} recoveries",
                    start.elapsed().as_secs_f64(),
                    self.total_ops(),
                    self.kills,
                    self.holder_kills,
                    st.lock_recoveries
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
    let keys = Keys::new(p);
    let capacity = (2 * p.keys + INCR_KEYS + p.workers * PRIVATE_KEYS) as u64 * 4 + 1000;
    let store = p.backing.create(
        &Config::new()
            .capacity(capacity)
            .shards(p.shards)
            .max_value_len(MAX_VALUE_LEN),
    );
    let _remove = RemoveOnDrop(p.backing.clone());
    let counters: Vec<Counter> = (0..COUNTERS)
        .map(|i| store.counter(&counter_name(i)).expect("register counter"))
        .collect();
    let ledger_map = LedgerMap::new();
    let ledger = ledger_map.get();
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
        armed: vec![None; p.workers],
        parked: vec![None; p.workers],
        incr_uncertain: [0; INCR_KEYS],
        ctr_uncertain: [0; COUNTERS],
        kills: 0,
        holder_kills: 0,
        by_point: [0; PARK_POINTS.len()],
        spawns: 0,
        problems: Vec::new(),
    };
    let start = Instant::now();
    for s in 0..p.workers {
        sup.spawn(s);
    }
    sup.storm(start);
    sup.stop();
    let elapsed = start.elapsed();

    let mut rep = Report {
        elapsed,
        workers: p.workers,
        kills: sup.kills,
        holder_kills: sup.holder_kills,
        holder_kills_by_point: PARK_POINTS
            .iter()
            .zip(sup.by_point)
            .filter(|(_, n)| *n > 0)
            .map(|(&p, n)| (p, n))
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
    let mut problems = std::mem::take(&mut sup.problems);
    let slots = &ledger.slots[..p.workers];
    rep.ops = slots.iter().map(|s| s.ops.load(SeqCst)).sum();
    rep.reads_checked = slots.iter().map(|s| s.reads_checked.load(SeqCst)).sum();
    rep.by_op = ALL_OPS
        .iter()
        .map(|&o| {
            let n = slots.iter().map(|s| s.by_op[o as usize].load(SeqCst)).sum();
            (o.name(), n)
        })
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
    rep.opens = ledger.opens.load(SeqCst);
    if p.backing != Backing::Anonymous && rep.opens == 0 {
        problems.push("no worker opened the region itself".into());
    }
    if rep.kills == 0 {
        problems.push("no worker was killed".into());
    }
    if p.targeted && rep.holder_kills == 0 {
        problems.push("no lock holder was killed".into());
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
    drop(sup);
    rep.problems = problems;
    rep
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
            Some(Ok((writer, _))) if writer >> 32 != s as u64 => {
                problems.push(format!("private key {name} written by {writer:#x}"));
                continue;
            }
            Some(Ok((_, seq))) => seq,
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
        if let Err(e) = settled_state(acked, pending, seen) {
            problems.push(format!("private key {name} at the end: {e}"));
        }
    }
}
