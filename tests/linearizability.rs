//! Linearizability of the store's operations under concurrency and crashes (`harness = false`:
//! the process is single-threaded when it forks; needs the `failpoints` feature).
//!
//! Each round forks worker processes that run random operations on a few keys of one store and
//! record every operation in a shared log (invoke time, call, result, response time, from one
//! logical clock in the log). Meanwhile the parent SIGKILLs workers at random times and starts
//! new ones (a new process in the history); some workers arm a failpoint so that they die inside
//! a write path, holding the shard lock. A killed worker's last operation is pending: it may or
//! may not have happened. The history is then checked against a sequential model
//! (`common::linearize`), and two altered copies of it (a read of a value never written, a
//! stale read) must be rejected.

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::forked::{self, spawn, wait, Exit};
use common::linearize::{self, Bytes, Call, IncrError, Op, Ret, Verdict};
use shmstate::failpoint::{self, Action};
use shmstate::{Config, Error, Store};

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
/// Keys the workers share (few, so that operations on one key overlap often).
const KEYS: usize = 3;
/// Processes per round (workers and their replacements, plus the parent's final reads).
const MAX_PARTS: usize = 512;
/// Operations one process can log.
const PART_OPS: usize = 8192;
/// Per-key search budget of the checker.
const MAX_STEPS: u64 = 2_000_000;
/// Write paths a worker may die in (holding the shard lock), including repair of another's.
const FAILPOINTS: &[&str] = &[
    "lock.acquired",
    "insert.written",
    "insert.published",
    "put.scratch",
    "put.committed",
    "put.applying",
    "put.published",
    "delete.ctrl",
    "incr.computed",
    "cas.matched",
    "repair.redone",
    "repair.recounted",
];

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

/// A value of at most 32 bytes, or none (`len == NONE`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Val {
    len: u8,
    bytes: [u8; 32],
}

const NONE: u8 = u8::MAX;
const MAX_VALUE: usize = 32;

impl Val {
    fn new(v: Option<&[u8]>) -> Val {
        let mut out = Val {
            len: NONE,
            bytes: [0; 32],
        };
        if let Some(v) = v {
            assert!(v.len() <= MAX_VALUE, "value of {} bytes", v.len());
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
    /// For `Ret::Int`: 0 ok, 1 not an integer, 2 overflow. For `Ret::Flag`: 0 or 1.
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

/// Runs `call` on the store and returns its result; any error other than incr's is a bug.
fn perform(store: &Store, key: &[u8], call: &Call) -> Ret {
    let flag = |r: shmstate::Result<bool>| Ret::Flag(r.expect("store operation"));
    match call {
        Call::Get => Ret::Value(store.get(key).expect("get")),
        Call::Set(v) => {
            store.set(key, v, None).expect("set");
            Ret::Done
        }
        Call::Add(v) => flag(store.add(key, v, None)),
        Call::Replace(v) => flag(store.replace(key, v, None)),
        Call::Delete => flag(store.delete(key)),
        Call::Cas { expected, new } => {
            flag(store.compare_and_swap(key, expected.as_deref(), new.as_deref(), None))
        }
        Call::Incr(d) => Ret::Int(match store.incr(key, *d, None) {
            Ok(n) => Ok(n),
            Err(Error::NotAnInteger) => Err(IncrError::NotAnInteger),
            Err(Error::Overflow) => Err(IncrError::Overflow),
            Err(e) => panic!("incr: {e}"),
        }),
    }
}

/// A random call on a key; written values are unique (process and sequence number), half of
/// them integers (so `incr` applies), half not.
fn random_call(rng: &mut Rng, part: usize, n: &mut u64, last: &Option<Bytes>) -> Call {
    let mut fresh = |rng: &mut Rng| {
        *n += 1;
        if rng.below(2) == 0 {
            format!("p{part}.{n}").into_bytes()
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
        let k = rng.below(KEYS as u64) as usize;
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
    pub ops: usize,
    pub pending: usize,
    /// Ops invoked before some earlier-invoked op on the same key had returned.
    pub overlapping: usize,
    pub steps: u64,
    pub run: Duration,
    pub check: Duration,
}

/// Worker processes alive; any left when this is dropped (a failed assertion) are killed.
struct Live(Vec<(libc::pid_t, usize)>);

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

/// Runs the workers of one round (killing and replacing some) and returns the history.
fn run_round(plan: Plan, fig: &mut Round) -> Vec<Op> {
    let store = Store::anonymous(
        &Config::new()
            .capacity(64)
            .shards(plan.shards)
            .max_key_len(8)
            .max_value_len(MAX_VALUE as u32),
    )
    .unwrap();
    let log = Log::new();
    let h = log.header();
    h.target.store(plan.ops, Ordering::SeqCst);
    let mut rng = Rng(plan.seed);
    let mut parts = 0;
    let mut live = Live(Vec::new());
    let start = Instant::now();
    let start_worker = |rng: &mut Rng, live: &mut Live, parts: &mut usize| {
        let part = *parts;
        *parts += 1;
        let fail = (rng.below(4) != 0).then(|| {
            (
                FAILPOINTS[rng.below(FAILPOINTS.len() as u64) as usize],
                rng.below(100) as u32,
            )
        });
        let seed = rng.next();
        let store = store.clone();
        let pid = spawn(move || worker(&store, log, part, seed, fail));
        live.0.push((pid, part));
    };
    for _ in 0..WORKERS {
        start_worker(&mut rng, &mut live, &mut parts);
    }
    loop {
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
        let mut ended = Vec::new();
        live.0.retain(|&(pid, _)| match try_wait(pid) {
            None => true,
            Some(exit) => {
                ended.push(exit);
                false
            }
        });
        for exit in ended {
            match exit {
                Exit::Code(0) => {}
                Exit::Signal(libc::SIGKILL) => fig.failpoint_deaths += 1,
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
        if !live.0.is_empty() && rng.below(2) == 0 {
            let (pid, _) = live.0.swap_remove(rng.below(live.0.len() as u64) as usize);
            forked::kill(pid);
            fig.killed += 1;
        }
        while live.0.len() < WORKERS && parts + 1 < MAX_PARTS {
            start_worker(&mut rng, &mut live, &mut parts);
        }
    }
    h.stop.store(1, Ordering::SeqCst);
    for (pid, _) in std::mem::take(&mut live.0) {
        match wait(pid, Duration::from_secs(30)) {
            Exit::Code(0) => {}
            Exit::Signal(libc::SIGKILL) => fig.failpoint_deaths += 1,
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
}

/// How much to check.
pub struct Soak {
    /// Round `i` uses seed `seed + i`.
    pub seed: u64,
    /// At least this many histories are checked...
    pub min_rounds: u64,
    /// ...and rounds go on until this much time has passed.
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
    for p in FAILPOINTS {
        assert!(
            failpoint::POINTS.iter().any(|(name, _)| name == p),
            "no failpoint {p}"
        );
    }
    let start = Instant::now();
    let mut ops = s.ops;
    let mut total = Round::default();
    let mut attempt = 0;
    while total.rounds < s.min_rounds || start.elapsed() < s.min_time {
        let seed = s.seed.wrapping_add(attempt);
        attempt += 1;
        let plan = Plan {
            seed,
            ops,
            time: s.round_time,
            shards: 1 + (seed % 2) as u32,
        };
        let mut fig = Round::default();
        let history = run_round(plan, &mut fig);
        let t = Instant::now();
        let verdict = linearize::check(&history, MAX_STEPS);
        fig.check = t.elapsed();
        match &verdict {
            Verdict::Linearizable(c) => {
                fig.ops = c.ops;
                fig.pending = c.pending;
                fig.steps = c.steps;
                fig.overlapping = overlapping(&history);
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
                 {} ops ({} pending, {} overlapping), {} search steps; run {:.2?}, check {:.2?}",
                plan.shards,
                fig.processes,
                fig.killed,
                fig.failpoint_deaths,
                fig.ops,
                fig.pending,
                fig.overlapping,
                fig.steps,
                fig.run,
                fig.check
            );
        }
        total.rounds += 1;
        total.processes += fig.processes;
        total.killed += fig.killed;
        total.failpoint_deaths += fig.failpoint_deaths;
        total.ops += fig.ops;
        total.pending += fig.pending;
        total.overlapping += fig.overlapping;
        total.steps += fig.steps;
        total.run += fig.run;
        total.check += fig.check;
    }
    println!(
        "  total: {} histories checked, {} ops ({} pending, {} overlapping), {} processes \
         ({} killed, {} died at a failpoint), {} search steps; run {:.2?}, check {:.2?}, \
         wall {:.2?}",
        total.rounds,
        total.ops,
        total.pending,
        total.overlapping,
        total.processes,
        total.killed,
        total.failpoint_deaths,
        total.steps,
        total.run,
        total.check,
        start.elapsed()
    );
    total
}
