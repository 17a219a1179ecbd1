//! Linearizability of the store's operations under concurrency and crashes (`harness = false`:
//! the process is single-threaded when it forks; needs the `failpoints` feature).
//!
//! Each round forks worker processes that run random operations on a few keys of one store and
//! record every operation in a shared log (invoke time, call, result, response time, from one
//! logical clock in the log). Meanwhile the parent SIGKILLs workers at random times and starts
//! new ones (a new process in the history); most workers arm a failpoint so that they die inside
//! a write path, holding the shard lock: the table's steps, and the value heap's (a value's
//! blocks written but not published, a compaction move copied or re-pointed, a removed or
//! replaced value not yet freed, the heap rebuilt by a repairer). A killed worker's last
//! operation is pending: it may or may not have happened. The history is then checked against a
//! sequential model (`common::linearize`), and two altered copies of it (a read of a value never
//! written, a stale read) must be rejected.
//!
//! Values have several sizes: integers and short tokens stored inline in the slot, values of
//! one heap block, and values of whole pages plus tail blocks (up to 12 KiB), so overwrites
//! change a key's shape. The log (and the history) holds a short *name* for each value, from
//! which its bytes follow ([`expand`]); a read's bytes are turned back into the name they
//! expand from, or into a name never written if they are not exactly such a value (torn,
//! truncated, another's). The heap is sized near full (`WhenFull::Refuse`): writes compact and
//! are refused with `Full`, which the model takes as "no effect" (`Ret::Full`). Besides the
//! three contended keys, a dozen cold keys hold values that compaction moves while the hot keys
//! are written. Every failpoint must be died at in the test's rounds together (8 s of rounds,
//! up to 16 s while one has not been).

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::forked::{self, spawn, wait, Exit};
use common::linearize::{self, Bytes, Call, IncrError, Op, Ret, Verdict};
use shmstate::failpoint::{self, Action};
use shmstate::{Config, Error, Store, WhenFull};

type TestFn = fn();

fn main() {
    let tests: &[(&str, TestFn)] = &[
        ("checker_self_test", linearize::self_test),
        ("linearizable_with_kills", linearizable_with_kills),
    ];
    forked::run_all("linearizability", tests);
}

// ---------------------------------------------------------------------------------------------
// Parameters

/// Worker processes alive at once.
const WORKERS: usize = 4;
/// Keys most operations go to (few, so that operations on one key overlap often).
const HOT_KEYS: usize = 3;
/// All keys: the hot ones, then cold ones (one operation in five), whose values fill the heap
/// and get moved by compaction.
const KEYS: usize = 16;
/// Processes per round (workers and their replacements, plus the parent's final reads).
const MAX_PARTS: usize = 512;
/// Operations one process can log.
const PART_OPS: usize = 8192;
/// Per-key search budget of the checker.
const MAX_STEPS: u64 = 2_000_000;
/// Write paths a worker may die in (holding the shard lock), including repair of another's,
/// with whether rounds reach them often (`false`: a worker dies at its first hit).
const FAILPOINTS: &[(&str, bool)] = &[
    ("lock.acquired", true),
    ("insert.written", true),
    ("insert.published", true),
    ("put.scratch", true),
    ("put.committed", true),
    ("put.applying", true),
    ("put.published", true),
    ("delete.ctrl", true),
    ("incr.computed", true),
    ("cas.matched", true),
    ("repair.redone", false),
    ("repair.recounted", false),
    // The value heap: blocks written, not published; an overwrite's or a delete's old blocks
    // not yet freed; a compaction move copied, then re-pointed; the heap rebuilt by repair.
    ("heap.stored", true),
    ("put.freeing", true),
    ("delete.freeing", true),
    ("compact.copied", false),
    ("compact.moved", false),
    ("repair.heap_rebuilt", false),
];
/// Where a worker that dies leaves a committed overwrite for the next lock holder to redo.
const REDO_ENABLERS: &[&str] = &["put.committed", "put.applying", "put.published"];
/// Heap pages per shard: room for two 12 KiB values, far less than every key at its largest,
/// so the heap fills, compacts and refuses.
const PAGES_PER_SHARD: u64 = 8;
/// Longest value (12 KiB: three whole pages).
const MAX_LEN: usize = 12 * 1024;

/// One round's size.
#[derive(Clone, Copy, Debug)]
struct Plan {
    seed: u64,
    ops: u64,
    time: Duration,
    shards: u32,
}

// ---------------------------------------------------------------------------------------------
// A small deterministic random number generator (splitmix64).

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------------------
// The log: an anonymous MAP_SHARED region every process of a round writes its operations to.
//
// Header (clock, operations started, stop flag), then MAX_PARTS parts of PART_OPS entries; each
// process writes only its own part, and the parent reads the parts once every writer is dead.
// An entry is written in this order: the call, then `invoke` (a fresh tick, taken immediately
// before the operation starts), then the result, then `response` (a fresh tick, taken just after
// the operation returned). `invoke == 0`: the entry was never used (the process died before
// starting that operation). `response == 0`: pending (it died during the operation, or after it
// but before recording the response, which the checker allows too: a pending op may or may not
// have happened).

/// A value's name (at most 32 bytes, see [`expand`]), or none (`len == NONE`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Val {
    len: u8,
    bytes: [u8; 32],
}

const NONE: u8 = u8::MAX;
/// Longest name.
const MAX_NAME: usize = 32;

impl Val {
    fn new(v: Option<&[u8]>) -> Val {
        let mut out = Val {
            len: NONE,
            bytes: [0; 32],
        };
        if let Some(v) = v {
            assert!(v.len() <= MAX_NAME, "name of {} bytes", v.len());
            out.len = v.len() as u8;
            out.bytes[..v.len()].copy_from_slice(v);
        }
        out
    }
    fn get(&self) -> Option<Bytes> {
        (self.len != NONE).then(|| self.bytes[..usize::from(self.len)].to_vec())
    }
}

#[repr(C)]
struct Entry {
    invoke: AtomicU64,
    response: AtomicU64,
    /// `K_*` below.
    kind: u8,
    key: u8,
    /// For `Ret::Int`: 0 ok, 1 not an integer, 2 overflow. For `Ret::Flag`: 0 or 1. For the
    /// writes: [`RET_FULL`] if refused.
    ret_code: u8,
    delta: i64,
    a: Val,
    b: Val,
    ret_val: Val,
    ret_int: i64,
}

const K_GET: u8 = 1;
const K_SET: u8 = 2;
const K_ADD: u8 = 3;
const K_REPLACE: u8 = 4;
const K_DELETE: u8 = 5;
const K_CAS: u8 = 6;
const K_INCR: u8 = 7;
/// `ret_code` of a write refused with `Full`.
const RET_FULL: u8 = 3;

#[repr(C)]
struct Header {
    clock: AtomicU64,
    started: AtomicU64,
    /// Operations the workers of this round may start in all.
    target: AtomicU64,
    stop: AtomicU32,
}

/// The mapping (inherited by the forked workers).
#[derive(Clone, Copy)]
struct Log {
    base: *mut u8,
    len: usize,
}

const ENTRIES_OFF: usize = 64;

impl Log {
    fn new() -> Log {
        let len = ENTRIES_OFF + MAX_PARTS * PART_OPS * std::mem::size_of::<Entry>();
        // SAFETY: a fresh anonymous shared mapping; no address hint, no file.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap of the log failed");
        Log {
            base: p.cast(),
            len,
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is zero-filled, page-aligned and larger than the header, whose
        // fields are atomics (valid when zero) shared by every process.
        unsafe { &*self.base.cast::<Header>() }
    }

    /// A fresh time from the logical clock (never 0).
    fn tick(&self) -> u64 {
        self.header().clock.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn entry(&self, part: usize, i: usize) -> *mut Entry {
        assert!(part < MAX_PARTS && i < PART_OPS);
        let off = ENTRIES_OFF + (part * PART_OPS + i) * std::mem::size_of::<Entry>();
        // SAFETY: in bounds by the assertion and the mapping's length; Entry's alignment (8)
        // divides ENTRIES_OFF and its size.
        unsafe { self.base.add(off).cast() }
    }

    /// Records one operation of process `part` as its `i`-th entry, running it in between.
    fn record(&self, part: usize, i: usize, key: usize, call: &Call, run: impl FnOnce() -> Ret) {
        let e = self.entry(part, i);
        // SAFETY: only this process writes this part, and the parent reads it only after this
        // process is dead and reaped; the atomics order the plain fields before them.
        let e = unsafe { &mut *e };
        e.key = key as u8;
        let (kind, a, b, delta) = match call {
            Call::Get => (K_GET, None, None, 0),
            Call::Set(v) => (K_SET, Some(v), None, 0),
            Call::Add(v) => (K_ADD, Some(v), None, 0),
            Call::Replace(v) => (K_REPLACE, Some(v), None, 0),
            Call::Delete => (K_DELETE, None, None, 0),
            Call::Cas { expected, new } => (K_CAS, expected.as_ref(), new.as_ref(), 0),
            Call::Incr(d) => (K_INCR, None, None, *d),
        };
        e.kind = kind;
        e.a = Val::new(a.map(|v| &v[..]));
        e.b = Val::new(b.map(|v| &v[..]));
        e.delta = delta;
        e.invoke.store(self.tick(), Ordering::SeqCst);
        let ret = run();
        match ret {
            Ret::Value(v) => e.ret_val = Val::new(v.as_deref()),
            Ret::Done => {}
            Ret::Flag(f) => e.ret_code = u8::from(f),
            Ret::Int(Ok(n)) => {
                e.ret_code = 0;
                e.ret_int = n;
            }
            Ret::Int(Err(IncrError::NotAnInteger)) => e.ret_code = 1,
            Ret::Int(Err(IncrError::Overflow)) => e.ret_code = 2,
            Ret::Full => e.ret_code = RET_FULL,
        }
        e.response.store(self.tick(), Ordering::SeqCst);
    }

    /// The operations of process `part` (call only once every writer is dead).
    fn read_part(&self, part: usize, out: &mut Vec<Op>) {
        for i in 0..PART_OPS {
            // SAFETY: no process writes the log any more.
            let e = unsafe { &*self.entry(part, i) };
            let invoke = e.invoke.load(Ordering::SeqCst);
            if invoke == 0 {
                return;
            }
            let call = match e.kind {
                K_GET => Call::Get,
                K_SET => Call::Set(e.a.get().expect("set value")),
                K_ADD => Call::Add(e.a.get().expect("add value")),
                K_REPLACE => Call::Replace(e.a.get().expect("replace value")),
                K_DELETE => Call::Delete,
                K_CAS => Call::Cas {
                    expected: e.a.get(),
                    new: e.b.get(),
                },
                K_INCR => Call::Incr(e.delta),
                k => panic!("log entry of unknown kind {k}"),
            };
            let response = e.response.load(Ordering::SeqCst);
            let done = (response != 0).then(|| {
                let ret = match call {
                    Call::Get => Ret::Value(e.ret_val.get()),
                    _ if e.kind != K_INCR && e.kind != K_DELETE && e.ret_code == RET_FULL => {
                        Ret::Full
                    }
                    Call::Set(_) => Ret::Done,
                    Call::Incr(_) => Ret::Int(match e.ret_code {
                        0 => Ok(e.ret_int),
                        1 => Err(IncrError::NotAnInteger),
                        _ => Err(IncrError::Overflow),
                    }),
                    _ => Ret::Flag(e.ret_code == 1),
                };
                (response, ret)
            });
            out.push(Op {
                process: part as u32,
                key: key_name(usize::from(e.key)),
                call,
                invoke,
                done,
            });
        }
    }
}

fn unmap(log: Log) {
    // SAFETY: the mapping was made by Log::new with this length; no reference into it lives.
    unsafe { libc::munmap(log.base.cast(), log.len) };
}

fn key_name(k: usize) -> Bytes {
    format!("k{k}").into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Workers

// ---------------------------------------------------------------------------------------------
// Values and their names

/// The bytes a value's name stands for. An integer or a short token (`p<process>.<n>`, no `#`)
/// is its own value, stored inline; `<token>#<len>` is `len` bytes: the token, `#`, then
/// bytes that follow from the token and the length (a stream of 64-bit words, each mixing the
/// seed and its position), stored in one heap block or in pages and tail blocks.
fn expand(name: &[u8]) -> Vec<u8> {
    let Some(p) = name.iter().position(|&b| b == b'#') else {
        return name.to_vec();
    };
    let len: usize = std::str::from_utf8(&name[p + 1..])
        .ok()
        .and_then(|l| l.parse().ok())
        .expect("a name's length");
    assert!(len > p + 1 && len <= MAX_LEN, "length {len} of {name:?}");
    let seed = name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut v = Vec::with_capacity(len + 8);
    v.extend_from_slice(&name[..=p]);
    let mut i = 0u64;
    while v.len() < len {
        let mut z = seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        v.extend_from_slice(&(z ^ (z >> 29)).to_le_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

/// The name a stored value was expanded from; `?torn` (never written) if the bytes are no
/// value's (torn, truncated, extended, misplaced).
fn compress(v: &[u8]) -> Vec<u8> {
    let torn = b"?torn".to_vec();
    match v.iter().take(MAX_NAME).position(|&b| b == b'#') {
        None if v.len() <= MAX_NAME => v.to_vec(),
        None => torn,
        Some(p) => {
            let mut name = v[..=p].to_vec();
            name.extend_from_slice(v.len().to_string().as_bytes());
            if name.len() <= MAX_NAME && v.len() > p + 1 && v.len() <= MAX_LEN && expand(&name) == v
            {
                name
            } else {
                torn
            }
        }
    }
}

/// Runs `call` (whose values are names) on the store and returns its result (values as names);
/// any error other than incr's, and `Full` for a write, is a bug.
fn perform(store: &Store, key: &[u8], call: &Call) -> Ret {
    let flag = |r: shmstate::Result<bool>| match r {
        Err(Error::Full) => Ret::Full,
        r => Ret::Flag(r.expect("store operation")),
    };
    let bytes = |v: &Option<Bytes>| v.as_deref().map(expand);
    match call {
        Call::Get => Ret::Value(store.get(key).expect("get").map(|v| compress(&v))),
        Call::Set(v) => match store.set(key, &expand(v), None) {
            Err(Error::Full) => Ret::Full,
            r => {
                r.expect("set");
                Ret::Done
            }
        },
        Call::Add(v) => flag(store.add(key, &expand(v), None)),
        Call::Replace(v) => flag(store.replace(key, &expand(v), None)),
        Call::Delete => flag(store.delete(key)),
        Call::Cas { expected, new } => flag(store.compare_and_swap(
            key,
            bytes(expected).as_deref(),
            bytes(new).as_deref(),
            None,
        )),
        Call::Incr(d) => Ret::Int(match store.incr(key, *d, None) {
            Ok(n) => Ok(n),
            Err(Error::NotAnInteger) => Err(IncrError::NotAnInteger),
            Err(Error::Overflow) => Err(IncrError::Overflow),
            Err(e) => panic!("incr: {e}"),
        }),
    }
}

/// A random call on a key; written values are unique (process and sequence number), half of
/// them integers (so `incr` applies), half not; of those, some stored inline, some in one
/// heap block, some in pages and tail blocks (names: see [`expand`]).
fn random_call(rng: &mut Rng, part: usize, n: &mut u64, last: &Option<Bytes>) -> Call {
    let mut fresh = |rng: &mut Rng| {
        *n += 1;
        if rng.below(2) == 0 {
            let token = format!("p{part}.{n}");
            let len = match rng.below(20) {
                0..=6 => return token.into_bytes(),
                7..=13 => 25 + rng.below(2040 - 24) as usize,
                14..=17 => 2041 + rng.below((MAX_LEN - 2040) as u64) as usize,
                _ => [25, 2040, 2041, 4080, 4081, 4096, 4097, 6137, 8192, MAX_LEN]
                    [rng.below(10) as usize],
            };
            format!("{token}#{len}").into_bytes()
        } else {
            (part as u64 * 1_000_000_000 + *n * 1000)
                .to_string()
                .into_bytes()
        }
    };
    match rng.below(100) {
        0..=29 => Call::Get,
        30..=44 => Call::Set(fresh(rng)),
        45..=52 => Call::Add(fresh(rng)),
        53..=60 => Call::Replace(fresh(rng)),
        61..=68 => Call::Delete,
        69..=86 => Call::Cas {
            expected: match rng.below(4) {
                0 => None,
                1 => Some(fresh(rng)),
                _ => last.clone(),
            },
            new: if rng.below(4) == 0 {
                None
            } else {
                Some(fresh(rng))
            },
        },
        _ => Call::Incr(rng.below(9) as i64 - 3),
    }
}

/// A worker: random operations until the round's budget is used or the parent says stop.
fn worker(store: &Store, log: Log, part: usize, seed: u64, fail: Option<(&str, u32)>) {
    if let Some((point, after)) = fail {
        failpoint::arm(point, Action::Kill, after);
    }
    let mut rng = Rng(seed);
    let mut n = 0;
    let mut last: Vec<Option<Bytes>> = vec![None; KEYS];
    let h = log.header();
    for i in 0..PART_OPS {
        if h.stop.load(Ordering::SeqCst) != 0
            || h.started.fetch_add(1, Ordering::SeqCst) >= h.target.load(Ordering::SeqCst)
        {
            break;
        }
        let k = if rng.below(5) == 0 {
            HOT_KEYS + rng.below((KEYS - HOT_KEYS) as u64) as usize
        } else {
            rng.below(HOT_KEYS as u64) as usize
        };
        let call = random_call(&mut rng, part, &mut n, &last[k]);
        let key = key_name(k);
        let mut result = None;
        log.record(part, i, k, &call, || {
            let r = perform(store, &key, &call);
            result = Some(r.clone());
            r
        });
        // What this worker believes the value is (for likely-successful compare-and-swaps).
        last[k] = match (&call, result.expect("recorded")) {
            (_, Ret::Value(v)) => v,
            (_, Ret::Full) => last[k].take(),
            (Call::Set(v), _) => Some(v.clone()),
            (Call::Add(v) | Call::Replace(v), Ret::Flag(true)) => Some(v.clone()),
            (Call::Cas { new, .. }, Ret::Flag(true)) => new.clone(),
            (Call::Delete, _) => None,
            (_, Ret::Int(Ok(v))) => Some(v.to_string().into_bytes()),
            _ => last[k].take(),
        };
        pace(&mut rng);
    }
}

/// Spreads a worker's operations over time (so kills land all along) while keeping bursts of
/// back-to-back operations (so operations overlap).
fn pace(rng: &mut Rng) {
    match rng.below(64) {
        0 => std::thread::sleep(Duration::from_micros(rng.below(500))),
        1..=31 => {
            let until = Instant::now() + Duration::from_nanos(rng.below(20_000));
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// The parent

/// Figures of one round.
#[derive(Default, Debug, Clone, Copy)]
pub struct Round {
    /// Histories checked (in totals).
    pub rounds: u64,
    pub processes: usize,
    pub killed: usize,
    pub failpoint_deaths: usize,
    /// Deaths at each of [`FAILPOINTS`].
    pub deaths_by_point: [usize; FAILPOINTS.len()],
    pub ops: usize,
    /// Writes refused with `Full`.
    pub refused: usize,
    pub pending: usize,
    /// Ops invoked before some earlier-invoked op on the same key had returned.
    pub overlapping: usize,
    pub steps: u64,
    pub run: Duration,
    pub check: Duration,
}

/// Worker processes alive, with the index in [`FAILPOINTS`] each is armed at; any left when
/// this is dropped (a failed assertion) are killed.
struct Live(Vec<(libc::pid_t, Option<usize>)>);

impl Drop for Live {
    fn drop(&mut self) {
        for (pid, _) in self.0.drain(..) {
            forked::kill(pid);
        }
    }
}

/// `waitpid(WNOHANG)`: how `pid` ended, or `None` if it still runs.
fn try_wait(pid: libc::pid_t) -> Option<Exit> {
    let mut status = 0;
    // SAFETY: valid out-pointer; `pid` is our child.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    assert!(r >= 0, "waitpid failed");
    (r == pid).then(|| {
        if libc::WIFEXITED(status) {
            Exit::Code(libc::WEXITSTATUS(status))
        } else {
            Exit::Signal(libc::WTERMSIG(status))
        }
    })
}

/// The store of a round: `shards` shards of [`PAGES_PER_SHARD`] heap pages each (`memory` =
/// the index plus that), refusing when full.
fn round_store(shards: u32) -> Store {
    let base = Config::new()
        .capacity(64)
        .shards(shards)
        .max_key_len(8)
        .max_value_len(MAX_LEN as u32)
        .when_full(WhenFull::Refuse);
    let want = PAGES_PER_SHARD * 4096 * u64::from(shards);
    let st = Store::anonymous(&base).unwrap().stats();
    let mut memory = st.region_bytes - st.heap_bytes + want;
    for _ in 0..16 {
        let store = Store::anonymous(&base.clone().memory(memory)).unwrap();
        let heap = store.stats().heap_bytes;
        if heap >= want {
            return store;
        }
        memory += (want - heap).max(4096);
    }
    panic!("no memory size gives {want} heap bytes");
}

/// The failpoint (index in [`FAILPOINTS`]) to arm a new worker at: mostly one that no worker
/// has died at yet in the test (`reached`, with this round's `fig`) nor is armed at (`live`),
/// while there are such; else any. `repair.redone` needs a worker to die with its overwrite
/// committed first ([`REDO_ENABLERS`]): until it is reached, a worker is armed at one of those
/// whenever none is.
fn choose_point(rng: &mut Rng, reached: &[usize], fig: &Round, live: &Live) -> usize {
    let n = FAILPOINTS.len();
    let armed = |i: usize| live.0.iter().filter(|(_, a)| *a == Some(i)).count();
    let done = |i: usize| reached[i] + fig.deaths_by_point[i] > 0;
    let redone = FAILPOINTS
        .iter()
        .position(|(p, _)| *p == "repair.redone")
        .expect("repair.redone is listed");
    let enablers: Vec<usize> = (0..n)
        .filter(|&i| REDO_ENABLERS.contains(&FAILPOINTS[i].0))
        .collect();
    if !done(redone) && enablers.iter().all(|&e| armed(e) == 0) {
        return enablers[rng.below(enablers.len() as u64) as usize];
    }
    let fresh: Vec<usize> = (0..n).filter(|&i| !done(i) && armed(i) == 0).collect();
    if !fresh.is_empty() && rng.below(4) != 0 {
        fresh[rng.below(fresh.len() as u64) as usize]
    } else {
        rng.below(n as u64) as usize
    }
}

/// Runs the workers of one round (killing and replacing some) and returns the history.
/// `reached`: deaths at each failpoint in the earlier rounds.
fn run_round(plan: Plan, fig: &mut Round, reached: &[usize]) -> Vec<Op> {
    let store = round_store(plan.shards);
    let log = Log::new();
    let h = log.header();
    h.target.store(plan.ops, Ordering::SeqCst);
    let mut rng = Rng(plan.seed);
    let mut parts = 0;
    let mut live = Live(Vec::new());
    let start = Instant::now();
    let start_worker = |rng: &mut Rng, live: &mut Live, parts: &mut usize, fig: &Round| {
        let part = *parts;
        *parts += 1;
        let fail = (rng.below(4) != 0).then(|| {
            let i = choose_point(rng, reached, fig, live);
            let (name, often) = FAILPOINTS[i];
            (i, name, if often { rng.below(30) as u32 } else { 0 })
        });
        let seed = rng.next();
        let store = store.clone();
        let pid = spawn(move || worker(&store, log, part, seed, fail.map(|(_, n, a)| (n, a))));
        live.0.push((pid, fail.map(|(i, _, _)| i)));
    };
    for _ in 0..WORKERS {
        start_worker(&mut rng, &mut live, &mut parts, fig);
    }
    loop {
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
        let mut ended = Vec::new();
        live.0.retain(|&(pid, point)| match try_wait(pid) {
            None => true,
            Some(exit) => {
                ended.push((exit, point));
                false
            }
        });
        for (exit, point) in ended {
            match exit {
                Exit::Code(0) => {}
                Exit::Signal(libc::SIGKILL) => {
                    fig.failpoint_deaths += 1;
                    if let Some(i) = point {
                        fig.deaths_by_point[i] += 1;
                    }
                }
                other => panic!("a worker ended with {other:?} (a failed store operation?)"),
            }
        }
        if start.elapsed() > plan.time {
            h.stop.store(1, Ordering::SeqCst);
        }
        let more = h.stop.load(Ordering::SeqCst) == 0
            && h.started.load(Ordering::SeqCst) < plan.ops
            && parts + 1 < MAX_PARTS;
        if !more {
            break;
        }
        if !live.0.is_empty() && rng.below(4) == 0 {
            let (pid, _) = live.0.swap_remove(rng.below(live.0.len() as u64) as usize);
            forked::kill(pid);
            fig.killed += 1;
        }
        while live.0.len() < WORKERS && parts + 1 < MAX_PARTS {
            start_worker(&mut rng, &mut live, &mut parts, fig);
        }
    }
    h.stop.store(1, Ordering::SeqCst);
    for (pid, point) in std::mem::take(&mut live.0) {
        match wait(pid, Duration::from_secs(30)) {
            Exit::Code(0) => {}
            Exit::Signal(libc::SIGKILL) => {
                fig.failpoint_deaths += 1;
                if let Some(i) = point {
                    fig.deaths_by_point[i] += 1;
                }
            }
            other => panic!("a worker ended with {other:?} (a failed store operation?)"),
        }
    }
    fig.run += start.elapsed();
    // Every worker is dead: the parent reads each key once more (repairing what the last dead
    // writer left), as one more process of the history.
    let me = parts;
    for k in 0..KEYS {
        let key = key_name(k);
        log.record(me, k, k, &Call::Get, || perform(&store, &key, &Call::Get));
    }
    let rep = store.verify().unwrap();
    assert!(rep.is_ok(), "verify after the round: {rep}");
    let mut history = Vec::new();
    for part in 0..=me {
        log.read_part(part, &mut history);
    }
    unmap(log);
    fig.processes += parts;
    history
}

/// Ops invoked while an earlier-invoked op on the same key had not returned.
fn overlapping(history: &[Op]) -> usize {
    let mut ops: Vec<&Op> = history.iter().collect();
    ops.sort_by(|a, b| (&a.key, a.invoke).cmp(&(&b.key, b.invoke)));
    let mut n = 0;
    let mut open_until = (Vec::new(), 0);
    for o in ops {
        if o.key != open_until.0 {
            open_until = (o.key.clone(), 0);
        } else if o.invoke < open_until.1 {
            n += 1;
        }
        let end = o.done.as_ref().map_or(u64::MAX, |d| d.0);
        open_until.1 = open_until.1.max(end);
    }
    n
}

/// Whether `call` with result `ret` certainly left the key with a value other than `v`.
fn overwrites(call: &Call, ret: &Ret, v: &[u8]) -> bool {
    match (call, ret) {
        (Call::Set(w), _) => w != v,
        (Call::Delete, Ret::Flag(true)) => true,
        _ => false,
    }
}

/// The history of `key` as it stood at time `t`: the ops invoked by then, those that had not
/// returned by then made pending. A prefix of a linearizable history is linearizable, so the
/// checker must accept it; the negative controls alter one read in such a prefix, which keeps
/// the search that has to prove the violation small.
fn prefix_at(history: &[Op], key: &[u8], t: u64) -> Vec<Op> {
    history
        .iter()
        .filter(|o| o.key == key && o.invoke <= t)
        .map(|o| {
            let mut o = o.clone();
            if o.done.as_ref().is_some_and(|d| d.0 > t) {
                o.done = None;
            }
            o
        })
        .collect()
}

/// Positions in a list of `n` to try in order: the middle, then ever earlier ones (smaller
/// prefixes), ending with the first.
fn halving(n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut m = n;
    while m > 0 {
        out.push(m / 2);
        m /= 2;
    }
    out.dedup();
    out
}

/// Alters read `r` of `history` to return `value` and checks the history's prefix up to that
/// read's response: `Some(true)` rejected, `Some(false)` accepted (a checker bug), `None`
/// inconclusive. The unaltered prefix must be accepted.
fn altered_read(history: &[Op], r: usize, value: Vec<u8>) -> Option<bool> {
    let (t, _) = history[r].done.as_ref().expect("a completed read");
    let key = &history[r].key;
    let mut prefix = prefix_at(history, key, *t);
    let ok = linearize::check(&prefix, MAX_STEPS);
    assert!(!ok.is_violation(), "a prefix of an accepted history: {ok}");
    let i = prefix
        .iter()
        .position(|o| o.process == history[r].process && o.invoke == history[r].invoke)
        .expect("the read is in its own prefix");
    prefix[i].done.as_mut().unwrap().1 = Ret::Value(Some(value));
    let v = linearize::check(&prefix, MAX_STEPS);
    match v {
        Verdict::Violation { .. } => Some(true),
        Verdict::Inconclusive { .. } => None,
        _ => Some(false),
    }
}

/// Tries `candidates` in order until one check is conclusive; it must be a rejection.
/// Inconclusive on every candidate fails (an inconclusive control proves nothing).
fn must_reject(what: &str, history: &[Op], candidates: &[(usize, Vec<u8>)]) {
    for (r, value) in candidates {
        match altered_read(history, *r, value.clone()) {
            Some(true) => return,
            Some(false) => panic!("{what}: the checker accepted an altered history (read {r})"),
            None => println!("  {what}: read {r} inconclusive, trying an earlier one"),
        }
    }
    panic!(
        "{what}: inconclusive on all {} candidates",
        candidates.len()
    );
}

/// The checker must reject the real history with one read altered (a value never written; a
/// value overwritten before the read began).
fn negative_controls(history: &[Op]) {
    let reads: Vec<usize> = (0..history.len())
        .filter(|&i| history[i].call == Call::Get && history[i].done.is_some())
        .collect();
    assert!(!reads.is_empty(), "no completed reads");
    let mut by_time = reads;
    by_time.sort_by_key(|&i| history[i].invoke);
    let never: Vec<(usize, Vec<u8>)> = halving(by_time.len())
        .into_iter()
        .map(|i| (by_time[i], b"never-written".to_vec()))
        .collect();
    must_reject("a read of a value never written", history, &never);

    // A stale read: read R of key k, after a completed Set of a unique (non-integer, so no
    // incr makes it either) value `old` (W1) that was followed by a completed overwrite (W2)
    // before R began.
    let done = |o: &Op| o.done.as_ref().map(|d| d.0);
    let stale_value = |r: usize| {
        let rd = &history[r];
        history
            .iter()
            .filter(|o| o.key == rd.key)
            .filter_map(|w2| {
                let (t2, ret2) = w2.done.as_ref()?;
                if *t2 >= rd.invoke {
                    return None;
                }
                history.iter().filter(|o| o.key == rd.key).find_map(|w1| {
                    let Call::Set(old) = &w1.call else {
                        return None;
                    };
                    (old.first() == Some(&b'p')
                        && done(w1).is_some_and(|t1| t1 < w2.invoke)
                        && overwrites(&w2.call, ret2, old))
                    .then(|| old.clone())
                })
            })
            .next()
    };
    // From each halving position, the first read at or after it that has such a value.
    let mut stale: Vec<(usize, Vec<u8>)> = Vec::new();
    for p in halving(by_time.len()) {
        if let Some(c) = by_time[p..]
            .iter()
            .find_map(|&r| stale_value(r).map(|old| (r, old)))
        {
            if !stale.iter().any(|(r, _)| *r == c.0) {
                stale.push(c);
            }
        }
    }
    assert!(
        !stale.is_empty(),
        "no read after two sequential writes to its key"
    );
    must_reject("a stale read", history, &stale);
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

fn linearizable_with_kills() {
    let seed = env_u64("LINZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let total = soak(&Soak {
        seed,
        min_rounds: 6,
        min_time: Duration::from_secs(env_u64("LINZ_SECONDS").unwrap_or(8)),
        ops: env_u64("LINZ_OPS").unwrap_or(5000),
        round_time: Duration::from_secs(2),
        print_every: 1,
    });
    assert!(total.ops > 0 && total.pending > 0 && total.killed + total.failpoint_deaths > 0);
    assert!(
        total.refused > 0,
        "no write was refused: the heap never filled"
    );
    let never: Vec<&str> = FAILPOINTS
        .iter()
        .zip(total.deaths_by_point)
        .filter(|(_, n)| *n == 0)
        .map(|((p, _), _)| *p)
        .collect();
    assert!(never.is_empty(), "no worker died at {never:?}");
}

/// How much to check.
pub struct Soak {
    /// Round `i` uses seed `seed + i`.
    pub seed: u64,
    /// At least this many histories are checked...
    pub min_rounds: u64,
    /// ...and rounds go on until this much time has passed, and up to twice as long while a
    /// failpoint has not been died at.
    pub min_time: Duration,
    /// Operations per round (halved after an inconclusive check).
    pub ops: u64,
    /// A round's workers are stopped after this long.
    pub round_time: Duration,
    /// Print every this many rounds' figures.
    pub print_every: u64,
}

/// Runs rounds as `s` says; panics on a violation, or if histories stay inconclusive even
/// when small. Returns the totals (`Round::processes` etc. summed, plus `rounds`).
pub fn soak(s: &Soak) -> Round {
    println!(
        "  seed {} (LINZ_SEED to repeat), rounds of up to {} ops for at least {:?} and {} rounds",
        s.seed, s.ops, s.min_time, s.min_rounds
    );
    for (p, _) in FAILPOINTS {
        assert!(
            failpoint::POINTS.iter().any(|(name, _)| name == p),
            "no failpoint {p}"
        );
    }
    let start = Instant::now();
    let mut ops = s.ops;
    let mut total = Round::default();
    let mut attempt = 0;
    let unreached = |t: &Round| t.deaths_by_point.contains(&0);
    while total.rounds < s.min_rounds
        || start.elapsed() < s.min_time
        || (unreached(&total) && start.elapsed() < 2 * s.min_time)
    {
        let seed = s.seed.wrapping_add(attempt);
        attempt += 1;
        let plan = Plan {
            seed,
            ops,
            time: s.round_time,
            shards: 1 + (seed % 2) as u32,
        };
        let mut fig = Round::default();
        let history = run_round(plan, &mut fig, &total.deaths_by_point);
        let t = Instant::now();
        let verdict = linearize::check(&history, MAX_STEPS);
        fig.check = t.elapsed();
        match &verdict {
            Verdict::Linearizable(c) => {
                fig.ops = c.ops;
                fig.pending = c.pending;
                fig.steps = c.steps;
                fig.overlapping = overlapping(&history);
                fig.refused = history
                    .iter()
                    .filter(|o| matches!(o.done, Some((_, Ret::Full))))
                    .count();
            }
            Verdict::Inconclusive { .. } => {
                println!("  seed {seed}: {verdict}; retrying smaller");
                ops /= 2;
                assert!(ops >= 500, "inconclusive even at {} ops", ops * 2);
                continue;
            }
            Verdict::Violation { key, .. } => {
                let w = linearize::witness(&history, key, MAX_STEPS);
                panic!(
                    "seed {seed} (LINZ_SEED={seed} LINZ_OPS={ops}): {verdict}; a failing prefix \
                     without unneeded reads has {} ops, the last {} of them:\n{}",
                    w.len(),
                    w.len().min(40),
                    linearize::describe_last(&w, 40)
                )
            }
            Verdict::Malformed(_) => panic!("seed {seed}: {verdict}"),
        }
        negative_controls(&history);
        if (total.rounds + 1) % s.print_every.max(1) == 0 {
            println!(
                "  seed {seed}: {} shard(s), {} processes ({} killed, {} died at a failpoint), \
                 {} ops ({} pending, {} overlapping, {} refused: Full), {} search steps; run \
                 {:.2?}, check {:.2?}",
                plan.shards,
                fig.processes,
                fig.killed,
                fig.failpoint_deaths,
                fig.ops,
                fig.pending,
                fig.overlapping,
                fig.refused,
                fig.steps,
                fig.run,
                fig.check
            );
        }
        total.rounds += 1;
        total.processes += fig.processes;
        total.killed += fig.killed;
        total.failpoint_deaths += fig.failpoint_deaths;
        for (t, f) in total.deaths_by_point.iter_mut().zip(fig.deaths_by_point) {
            *t += f;
        }
        total.refused += fig.refused;
        total.ops += fig.ops;
        total.pending += fig.pending;
        total.overlapping += fig.overlapping;
        total.steps += fig.steps;
        total.run += fig.run;
        total.check += fig.check;
    }
    println!(
        "  total: {} histories checked, {} ops ({} pending, {} overlapping, {} refused: Full), \
         {} processes ({} killed, {} died at a failpoint), {} search steps; run {:.2?}, check \
         {:.2?}, wall {:.2?}",
        total.rounds,
        total.ops,
        total.pending,
        total.overlapping,
        total.refused,
        total.processes,
        total.killed,
        total.failpoint_deaths,
        total.steps,
        total.run,
        total.check,
        start.elapsed()
    );
    let by_point: Vec<String> = FAILPOINTS
        .iter()
        .zip(total.deaths_by_point)
        .map(|((p, _), n)| format!("{p} {n}"))
        .collect();
    println!("  died at: {}", by_point.join(", "));
    total
}
