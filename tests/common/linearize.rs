//! A linearizability checker for histories of store operations on single keys.
//!
//! A history is a list of [`Op`]s: which process, which key, the call, its invoke time and (if
//! it returned) its response time and result. An op without a response is *pending*: its
//! process died during it, so it may or may not have taken effect, at any point after its
//! invocation. Times come from one logical clock and must be distinct per op (`invoke <
//! response`); equal times across ops are treated as concurrent.
//!
//! # Algorithm
//!
//! Linearizability is compositional (Herlihy & Wing), and the store's operations each touch one
//! key, so the history is split by key and every key is checked on its own against a sequential
//! model of one key ([`apply`]). Each key is checked with the Wing & Gong search as improved by
//! Lowe (and implemented by porcupine): the call and return events sit in a doubly linked list
//! in time order; the search walks the list from its head, and each call it meets before the
//! first remaining return is a *minimal* op that may be linearized next. Linearizing an op
//! (whose model result must match the recorded one) unlinks its two events and restarts from the
//! head; meeting a return means the op that returns there cannot be linearized yet, so the last
//! choice is undone (a stack of choices, relinked in reverse order). A configuration already
//! explored, (set of linearized ops as a bitset, model state), is never explored again. The key
//! is linearizable once every completed op is linearized.
//!
//! Pending ops have no return event, so they stay candidates from their invocation to the end;
//! their result is not checked. Linearizing one only where it changes the state is complete:
//! a pending op that leaves the state as it was can be moved to the end of the linearization
//! (after everything, as if it never happened), so those choices are skipped, and pending
//! reads are dropped outright.
//!
//! A write refused for lack of room ([`Ret::Full`]) changed nothing in the model, wherever it
//! is linearized, so it constrains nothing and is dropped too. A refusal that did change the
//! key (a partial write, the old value lost) shows in the reads after it, which no
//! linearization then explains.
//!
//! # Bounds
//!
//! Each key's search counts its steps (list positions visited) and gives up after
//! `max_steps`: the verdict is then [`Verdict::Inconclusive`], which is never a pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// Bytes of a key or value.
pub type Bytes = Vec<u8>;

/// An operation as called.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// `get(key) -> Option<value>`
    Get,
    /// `set(key, value, None)`
    Set(Bytes),
    /// `add(key, value, None) -> stored` (only if absent)
    Add(Bytes),
    /// `replace(key, value, None) -> stored` (only if present)
    Replace(Bytes),
    /// `delete(key) -> existed`
    Delete,
    /// `compare_and_swap(key, expected, new, None) -> swapped`: if the value equals `expected`
    /// (`None`: absent), it becomes `new` (`None`: deleted).
    Cas {
        expected: Option<Bytes>,
        new: Option<Bytes>,
    },
    /// `incr(key, delta, None) -> Result<i64>`
    Incr(i64),
}

/// Why an `incr` failed (no other error is part of the model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IncrError {
    NotAnInteger,
    Overflow,
}

/// A result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// Of `Get`.
    Value(Option<Bytes>),
    /// Of `Set`.
    Done,
    /// Of `Add`, `Replace`, `Delete`, `Cas`.
    Flag(bool),
    /// Of `Incr`.
    Int(Result<i64, IncrError>),
    /// Of `Set`, `Add`, `Replace`, `Cas`: refused for lack of room (`Error::Full`), no effect.
    Full,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub process: u32,
    pub key: Bytes,
    pub call: Call,
    pub invoke: u64,
    /// Response time and result; `None`: pending (the process died during the call).
    pub done: Option<(u64, Ret)>,
}

impl Op {
    pub fn is_pending(&self) -> bool {
        self.done.is_none()
    }
}

/// Parses an integer as the store's `incr` does (Redis rules: decimal i64 with no `+`, no
/// leading zeros, no `-0`), by requiring the canonical spelling.
fn parse_int(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let n: i64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

/// The sequential specification of one key: the state after `call` in `state`, and its result.
pub fn apply(state: &Option<Bytes>, call: &Call) -> (Option<Bytes>, Ret) {
    let keep = || state.clone();
    match call {
        Call::Get => (keep(), Ret::Value(state.clone())),
        Call::Set(v) => (Some(v.clone()), Ret::Done),
        Call::Add(v) if state.is_none() => (Some(v.clone()), Ret::Flag(true)),
        Call::Add(_) => (keep(), Ret::Flag(false)),
        Call::Replace(v) if state.is_some() => (Some(v.clone()), Ret::Flag(true)),
        Call::Replace(_) => (keep(), Ret::Flag(false)),
        Call::Delete => (None, Ret::Flag(state.is_some())),
        Call::Cas { expected, new } if expected == state => (new.clone(), Ret::Flag(true)),
        Call::Cas { .. } => (keep(), Ret::Flag(false)),
        Call::Incr(d) => match state {
            None => (Some(d.to_string().into_bytes()), Ret::Int(Ok(*d))),
            Some(v) => match parse_int(v) {
                None => (keep(), Ret::Int(Err(IncrError::NotAnInteger))),
                Some(n) => match n.checked_add(*d) {
                    None => (keep(), Ret::Int(Err(IncrError::Overflow))),
                    Some(m) => (Some(m.to_string().into_bytes()), Ret::Int(Ok(m))),
                },
            },
        },
    }
}

/// What [`check`] found.
#[derive(Debug)]
pub enum Verdict {
    /// Every key's history is linearizable.
    Linearizable(Checked),
    /// A key's history is not (see [`witness`] for a smaller failing history of that key).
    Violation {
        key: Bytes,
        ops: usize,
        deepest: usize,
    },
    /// A key's search exceeded its step budget: neither a pass nor a violation.
    Inconclusive { key: Bytes, ops: usize, steps: u64 },
    /// The history itself is ill-formed (a process with overlapping ops, a response before its
    /// invocation, a result of the wrong kind).
    Malformed(String),
}

/// Figures of a successful check.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub keys: usize,
    pub ops: usize,
    pub pending: usize,
    pub steps: u64,
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable(_))
    }
    pub fn is_violation(&self) -> bool {
        matches!(self, Verdict::Violation { .. })
    }
}

/// Formats the last `n` ops of a history (in invoke order), one per line.
pub fn describe_last(ops: &[Op], n: usize) -> String {
    let mut ops: Vec<&Op> = ops.iter().collect();
    ops.sort_by_key(|o| o.invoke);
    let ops = &ops[ops.len().saturating_sub(n)..];
    let show = |b: &[u8]| format!("{:?}", String::from_utf8_lossy(b));
    let opt = |b: &Option<Bytes>| b.as_deref().map_or("None".to_owned(), show);
    let mut s = String::new();
    for &o in ops {
        let call = match &o.call {
            Call::Get => "get".to_owned(),
            Call::Set(v) => format!("set {}", show(v)),
            Call::Add(v) => format!("add {}", show(v)),
            Call::Replace(v) => format!("replace {}", show(v)),
            Call::Delete => "delete".to_owned(),
            Call::Cas { expected, new } => format!("cas {} -> {}", opt(expected), opt(new)),
            Call::Incr(d) => format!("incr {d}"),
        };
        let (resp, ret) = match &o.done {
            None => ("pending".to_owned(), String::new()),
            Some((t, r)) => (
                t.to_string(),
                match r {
                    Ret::Value(v) => opt(v),
                    Ret::Done => "ok".to_owned(),
                    Ret::Flag(b) => b.to_string(),
                    Ret::Int(r) => format!("{r:?}"),
                    Ret::Full => "FULL (refused)".to_owned(),
                },
            ),
        };
        s += &format!(
            "  p{:<3} key {} [{:>7}, {:>7}] {call} => {ret}\n",
            o.process,
            show(&o.key),
            o.invoke,
            resp
        );
    }
    s
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable(c) => write!(
                f,
                "linearizable: {} keys, {} ops ({} pending), {} search steps",
                c.keys, c.ops, c.pending, c.steps
            ),
            Verdict::Violation { key, ops, deepest } => write!(
                f,
                "NOT linearizable: key {:?} ({ops} ops; at most {deepest} linearized at once)",
                String::from_utf8_lossy(key)
            ),
            Verdict::Inconclusive { key, ops, steps } => write!(
                f,
                "INCONCLUSIVE: key {:?} ({ops} ops) exceeded the budget of {steps} search steps",
                String::from_utf8_lossy(key)
            ),
            Verdict::Malformed(why) => write!(f, "malformed history: {why}"),
        }
    }
}

/// Checks `history` (all keys), with at most `max_steps` search steps per key.
pub fn check(history: &[Op], max_steps: u64) -> Verdict {
    if let Err(why) = well_formed(history) {
        return Verdict::Malformed(why);
    }
    let mut by_key: BTreeMap<&[u8], Vec<Op>> = BTreeMap::new();
    for o in history {
        by_key.entry(&o.key).or_default().push(o.clone());
    }
    let mut c = Checked {
        keys: by_key.len(),
        ops: history.len(),
        pending: history.iter().filter(|o| o.is_pending()).count(),
        steps: 0,
    };
    for (key, ops) in by_key {
        let r = search(&ops, max_steps);
        c.steps += r.steps;
        match r.outcome {
            Outcome::Linearizable => {}
            Outcome::Inconclusive => {
                return Verdict::Inconclusive {
                    key: key.to_vec(),
                    ops: ops.len(),
                    steps: r.steps,
                }
            }
            Outcome::NotLinearizable => {
                return Verdict::Violation {
                    key: key.to_vec(),
                    ops: ops.len(),
                    deepest: r.deepest,
                }
            }
        }
    }
    Verdict::Linearizable(c)
}

/// Each op returns after it is invoked with a result of its call's kind; each process runs one
/// op at a time (only its last op may be pending).
fn well_formed(history: &[Op]) -> Result<(), String> {
    let mut by_proc: HashMap<u32, Vec<&Op>> = HashMap::new();
    for o in history {
        if let Some((t, r)) = &o.done {
            if *t <= o.invoke {
                return Err(format!(
                    "p{}: response {t} not after invoke {}",
                    o.process, o.invoke
                ));
            }
            let kind_ok = matches!(
                (&o.call, r),
                (Call::Get, Ret::Value(_))
                    | (Call::Set(_), Ret::Done)
                    | (
                        Call::Add(_) | Call::Replace(_) | Call::Delete | Call::Cas { .. },
                        Ret::Flag(_)
                    )
                    | (Call::Incr(_), Ret::Int(_))
                    | (
                        Call::Set(_) | Call::Add(_) | Call::Replace(_) | Call::Cas { .. },
                        Ret::Full
                    )
            );
            if !kind_ok {
                return Err(format!("p{}: {:?} returned {r:?}", o.process, o.call));
            }
        }
        by_proc.entry(o.process).or_default().push(o);
    }
    for (p, mut ops) in by_proc {
        ops.sort_by_key(|o| o.invoke);
        for w in ops.windows(2) {
            match &w[0].done {
                Some((t, _)) if *t < w[1].invoke => {}
                _ => {
                    return Err(format!(
                        "p{p}: op invoked at {} overlaps the one invoked at {}",
                        w[1].invoke, w[0].invoke
                    ))
                }
            }
        }
    }
    Ok(())
}

/// A smaller failing history of `key` (for a [`Verdict::Violation`] on it): the shortest
/// failing prefix, without the reads and no-op writes not needed for the failure. Its search
/// effort is bounded, so it may be less than minimal.
pub fn witness(history: &[Op], key: &[u8], max_steps: u64) -> Vec<Op> {
    let ops: Vec<Op> = history.iter().filter(|o| o.key == key).cloned().collect();
    assert!(
        search(&ops, max_steps).outcome == Outcome::NotLinearizable,
        "witness of a key whose history does not fail"
    );
    minimize(ops, max_steps)
}

/// The history up to time `t`: ops invoked later are dropped, ops returning later are pending.
/// A prefix of a linearizable history is linearizable, so a failing prefix is a witness.
fn prefix(ops: &[Op], t: u64) -> Vec<Op> {
    ops.iter()
        .filter(|o| o.invoke <= t)
        .map(|o| Op {
            done: o.done.clone().filter(|(r, _)| *r <= t),
            ..o.clone()
        })
        .collect()
}

/// Whether an op can only constrain, never explain, others: it changes no state in any
/// linearization (a read, or a conditional write that reported doing nothing). Removing such an
/// op only removes constraints, so a history still failing without it fails for real; removing
/// a write could make a read of its value fail artificially.
fn observer(o: &Op) -> bool {
    matches!(
        (&o.call, &o.done),
        (Call::Get, _)
            | (_, Some((_, Ret::Flag(false) | Ret::Full)))
            | (Call::Incr(_), Some((_, Ret::Int(Err(_)))))
    )
}

/// A smaller witness of a violation: the shortest failing prefix (binary search on the cut
/// time), then greedily without chunks of observers (halves, quarters, ... single ops) while
/// it still fails (an inconclusive search keeps the chunk).
fn minimize(ops: Vec<Op>, max_steps: u64) -> Vec<Op> {
    // All the searches together get at most 20 times one check's budget.
    let spent = std::cell::Cell::new(0u64);
    let fails = |h: &[Op]| {
        if spent.get() > 20 * max_steps {
            return false;
        }
        let r = search(h, max_steps);
        spent.set(spent.get() + r.steps);
        r.outcome == Outcome::NotLinearizable
    };
    let mut times: Vec<u64> = ops
        .iter()
        .flat_map(|o| std::iter::once(o.invoke).chain(o.done.as_ref().map(|d| d.0)))
        .collect();
    times.sort_unstable();
    times.dedup();
    // The last time fails (it is the whole history); find the first that does.
    let (mut lo, mut hi) = (0, times.len() - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails(&prefix(&ops, times[mid])) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let mut ops = prefix(&ops, times[hi]);
    let mut chunk = ops.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        while i < ops.len() {
            let end = (i + chunk).min(ops.len());
            if ops[i..end].iter().all(observer) {
                let mut rest = ops.clone();
                rest.drain(i..end);
                if fails(&rest) {
                    ops = rest;
                    continue;
                }
            }
            i += chunk;
        }
        if chunk == 1 {
            return ops;
        }
        chunk = chunk.div_ceil(2);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Linearizable,
    NotLinearizable,
    Inconclusive,
}

struct Search {
    outcome: Outcome,
    steps: u64,
    /// The most ops linearized at once.
    deepest: usize,
}

/// Values of one key as small integers: 0 is "absent", `i` is `vals[i - 1]`.
#[derive(Default)]
struct Interner {
    ids: HashMap<Bytes, u32>,
    vals: Vec<Bytes>,
}

impl Interner {
    fn id(&mut self, v: &[u8]) -> u32 {
        if let Some(&i) = self.ids.get(v) {
            return i;
        }
        self.vals.push(v.to_vec());
        let i = self.vals.len() as u32;
        self.ids.insert(v.to_vec(), i);
        i
    }
    fn opt(&mut self, v: &Option<Bytes>) -> u32 {
        v.as_deref().map_or(0, |v| self.id(v))
    }
    fn get(&self, s: u32) -> Option<Bytes> {
        (s != 0).then(|| self.vals[s as usize - 1].clone())
    }
}

/// An op with its values interned.
#[derive(Clone, Copy)]
enum ICall {
    Get,
    Set(u32),
    Add(u32),
    Replace(u32),
    Delete,
    Cas(u32, u32),
    Incr(i64),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum IRet {
    Value(u32),
    Done,
    Flag(bool),
    Int(Result<i64, IncrError>),
}

struct IOp {
    call: ICall,
    /// `None`: pending.
    ret: Option<IRet>,
}

/// The model over interned states (as [`apply`]).
fn step(vals: &mut Interner, s: u32, call: ICall) -> (u32, IRet) {
    match call {
        ICall::Get => (s, IRet::Value(s)),
        ICall::Set(v) => (v, IRet::Done),
        ICall::Add(v) => {
            if s == 0 {
                (v, IRet::Flag(true))
            } else {
                (s, IRet::Flag(false))
            }
        }
        ICall::Replace(v) => {
            if s != 0 {
                (v, IRet::Flag(true))
            } else {
                (s, IRet::Flag(false))
            }
        }
        ICall::Delete => (0, IRet::Flag(s != 0)),
        ICall::Cas(exp, new) => {
            if s == exp {
                (new, IRet::Flag(true))
            } else {
                (s, IRet::Flag(false))
            }
        }
        ICall::Incr(d) => {
            let state = vals.get(s);
            let (next, ret) = apply(&state, &Call::Incr(d));
            let Ret::Int(r) = ret else {
                unreachable!("incr returns an integer result")
            };
            (vals.opt(&next), IRet::Int(r))
        }
    }
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// The Wing & Gong / Lowe search over the ops of one key.
fn search(ops: &[Op], max_steps: u64) -> Search {
    let mut vals = Interner::default();
    // Pending reads and refused writes change nothing and return nothing checked: drop them.
    let ops: Vec<&Op> = ops
        .iter()
        .filter(|o| !(o.is_pending() && o.call == Call::Get))
        .filter(|o| !matches!(o.done, Some((_, Ret::Full))))
        .collect();
    let iops: Vec<IOp> = ops
        .iter()
        .map(|o| IOp {
            call: match &o.call {
                Call::Get => ICall::Get,
                Call::Set(v) => ICall::Set(vals.id(v)),
                Call::Add(v) => ICall::Add(vals.id(v)),
                Call::Replace(v) => ICall::Replace(vals.id(v)),
                Call::Delete => ICall::Delete,
                Call::Cas { expected, new } => ICall::Cas(vals.opt(expected), vals.opt(new)),
                Call::Incr(d) => ICall::Incr(*d),
            },
            ret: o.done.as_ref().map(|(_, r)| match r {
                Ret::Value(v) => IRet::Value(vals.opt(v)),
                Ret::Done => IRet::Done,
                Ret::Flag(b) => IRet::Flag(*b),
                Ret::Int(r) => IRet::Int(*r),
                Ret::Full => unreachable!("refused writes were dropped"),
            }),
        })
        .collect();

    // Events in time order (calls before returns at equal times: the permissive choice);
    // list node `n + 1` is event `n`, node 0 the head.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, o) in ops.iter().enumerate() {
        events.push((o.invoke, false, i));
        if let Some((t, _)) = o.done {
            events.push((t, true, i));
        }
    }
    events.sort_unstable();
    let n = events.len() + 1;
    let mut next: Vec<usize> = (1..=n).map(|i| if i == n { NIL } else { i }).collect();
    let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
    let mut call_node = vec![0; ops.len()];
    let mut ret_node = vec![NIL; ops.len()];
    for (e, &(_, is_ret, i)) in events.iter().enumerate() {
        if is_ret {
            ret_node[i] = e + 1;
        } else {
            call_node[i] = e + 1;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        next[prev[x]] = next[x];
        if next[x] != NIL {
            prev[next[x]] = prev[x];
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        next[prev[x]] = x;
        if next[x] != NIL {
            prev[next[x]] = x;
        }
    };

    let mut remaining = iops.iter().filter(|o| o.ret.is_some()).count();
    let mut bits = vec![0u64; ops.len().div_ceil(64)];
    let mut seen: HashSet<(Box<[u64]>, u32)> = HashSet::new();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut state = 0u32;
    let mut steps = 0u64;
    let mut deepest = 0;
    let mut cur = next[HEAD];
    let done = |outcome, steps, deepest| Search {
        outcome,
        steps,
        deepest,
    };
    if remaining == 0 {
        return done(Outcome::Linearizable, 0, 0);
    }
    loop {
        steps += 1;
        if steps > max_steps {
            return done(Outcome::Inconclusive, steps - 1, deepest);
        }
        // `cur == NIL` cannot happen while a completed op remains (its return event lies
        // ahead); treated as a return for safety.
        let ev = (cur != NIL).then(|| events[cur - 1]);
        match ev {
            Some((_, false, i)) => {
                let (s2, r) = step(&mut vals, state, iops[i].call);
                let ok = match iops[i].ret {
                    Some(want) => want == r,
                    None => s2 != state,
                };
                if ok {
                    bits[i / 64] |= 1 << (i % 64);
                    if seen.insert((bits.clone().into_boxed_slice(), s2)) {
                        stack.push((i, state));
                        state = s2;
                        unlink(&mut next, &mut prev, call_node[i]);
                        if ret_node[i] != NIL {
                            unlink(&mut next, &mut prev, ret_node[i]);
                            remaining -= 1;
                            if remaining == 0 {
                                return done(Outcome::Linearizable, steps, stack.len());
                            }
                        }
                        deepest = deepest.max(stack.len());
                        cur = next[HEAD];
                        continue;
                    }
                    bits[i / 64] &= !(1 << (i % 64));
                }
                cur = next[cur];
            }
            _ => {
                let Some((i, s)) = stack.pop() else {
                    return done(Outcome::NotLinearizable, steps, deepest);
                };
                if ret_node[i] != NIL {
                    relink(&mut next, &mut prev, ret_node[i]);
                    remaining += 1;
                }
                relink(&mut next, &mut prev, call_node[i]);
                bits[i / 64] &= !(1 << (i % 64));
                state = s;
                cur = next[call_node[i]];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The checker's own tests: histories that are and are not linearizable. Run by
// tests/linearizability.rs (`harness = false`).

/// A completed op.
pub fn op(process: u32, key: &str, call: Call, invoke: u64, response: u64, ret: Ret) -> Op {
    Op {
        process,
        key: key.as_bytes().to_vec(),
        call,
        invoke,
        done: Some((response, ret)),
    }
}

/// A pending op.
pub fn pending(process: u32, key: &str, call: Call, invoke: u64) -> Op {
    Op {
        process,
        key: key.as_bytes().to_vec(),
        call,
        invoke,
        done: None,
    }
}

fn b(s: &str) -> Bytes {
    s.as_bytes().to_vec()
}

fn val(s: &str) -> Ret {
    Ret::Value(Some(b(s)))
}

/// Hand-written histories: (name, history, linearizable?).
pub fn self_test_cases() -> Vec<(&'static str, Vec<Op>, bool)> {
    use Call::*;
    let none = Ret::Value(None);
    let t = Ret::Flag(true);
    let f = Ret::Flag(false);
    vec![
        ("empty", vec![], true),
        (
            "sequential set get delete get",
            vec![
                op(1, "k", Set(b("a")), 1, 2, Ret::Done),
                op(1, "k", Get, 3, 4, val("a")),
                op(2, "k", Delete, 5, 6, t.clone()),
                op(2, "k", Get, 7, 8, none.clone()),
            ],
            true,
        ),
        (
            "overlapping reads see old and new (new first, the old one invoked earlier)",
            vec![
                op(1, "k", Set(b("a")), 1, 2, Ret::Done),
                op(1, "k", Set(b("b")), 3, 10, Ret::Done),
                op(2, "k", Get, 4, 6, val("b")),
                op(3, "k", Get, 5, 9, val("b")),
                op(4, "k", Get, 7, 8, val("b")),
                op(5, "k", Get, 3, 11, val("a")),
            ],
            true,
        ),
        (
            "concurrent adds: one wins, both orders of overlap",
            vec![
                op(1, "k", Add(b("x")), 1, 5, f.clone()),
                op(2, "k", Add(b("y")), 2, 4, t.clone()),
                op(3, "k", Get, 3, 6, val("y")),
            ],
            true,
        ),
        (
            "concurrent incrs, read in between",
            vec![
                op(1, "k", Incr(1), 1, 4, Ret::Int(Ok(2))),
                op(2, "k", Incr(1), 2, 3, Ret::Int(Ok(1))),
                op(3, "k", Get, 5, 6, val("2")),
                op(3, "k", Incr(5), 7, 8, Ret::Int(Ok(7))),
                op(3, "k", Incr(1), 9, 10, Ret::Int(Ok(8))),
            ],
            true,
        ),
        (
            "incr on a non-integer fails, cas swaps and deletes",
            vec![
                op(1, "k", Set(b("v1")), 1, 2, Ret::Done),
                op(
                    1,
                    "k",
                    Incr(1),
                    3,
                    4,
                    Ret::Int(Err(IncrError::NotAnInteger)),
                ),
                op(
                    2,
                    "k",
                    Cas {
                        expected: Some(b("v1")),
                        new: Some(b("9223372036854775807")),
                    },
                    5,
                    6,
                    t.clone(),
                ),
                op(2, "k", Incr(1), 7, 8, Ret::Int(Err(IncrError::Overflow))),
                op(
                    2,
                    "k",
                    Cas {
                        expected: Some(b("v1")),
                        new: None,
                    },
                    9,
                    10,
                    f.clone(),
                ),
                op(
                    1,
                    "k",
                    Cas {
                        expected: Some(b("9223372036854775807")),
                        new: None,
                    },
                    11,
                    12,
                    t.clone(),
                ),
                op(
                    1,
                    "k",
                    Cas {
                        expected: None,
                        new: None,
                    },
                    13,
                    14,
                    t.clone(),
                ),
                op(2, "k", Replace(b("r")), 15, 16, f.clone()),
                op(2, "k", Get, 17, 18, none.clone()),
            ],
            true,
        ),
        (
            "pending set that took effect (seen later)",
            vec![
                op(1, "k", Set(b("a")), 1, 2, Ret::Done),
                pending(2, "k", Set(b("b")), 3),
                op(3, "k", Get, 4, 5, val("a")),
                op(3, "k", Get, 6, 7, val("b")),
                op(3, "k", Get, 8, 9, val("b")),
            ],
            true,
        ),
        (
            "pending set that never took effect",
            vec![
                op(1, "k", Set(b("a")), 1, 2, Ret::Done),
                pending(2, "k", Set(b("b")), 3),
                op(3, "k", Get, 4, 5, val("a")),
                op(3, "k", Get, 60, 70, val("a")),
            ],
            true,
        ),
        (
            "pending incr took effect once, seen by the next incr",
            vec![
                pending(1, "k", Incr(10), 1),
                op(2, "k", Incr(1), 2, 3, Ret::Int(Ok(11))),
                pending(3, "k", Delete, 4),
                pending(4, "k", Get, 5),
                op(5, "k", Get, 6, 7, val("11")),
            ],
            true,
        ),
        (
            "a refused write changes nothing",
            vec![
                op(1, "k", Set(b("a")), 1, 2, Ret::Done),
                op(2, "k", Set(b("big")), 3, 6, Ret::Full),
                op(3, "k", Get, 4, 5, val("a")),
                op(3, "k", Replace(b("big2")), 7, 8, Ret::Full),
                op(1, "k", Get, 9, 10, val("a")),
            ],
            true,
        ),
        (
            "separate keys are independent",
            vec![
                op(1, "a", Set(b("1")), 1, 4, Ret::Done),
                op(2, "b", Set(b("2")), 2, 3, Ret::Done),
                op(1, "b", Get, 5, 6, val("2")),
                op(2, "a", Get, 5, 6, val("1")),
            ],
            true,
        ),
        (
            "stale read after a completed write",
            vec![
                op(1, "k", Set(b("a")), 1, 2, Ret::Done),
                op(1, "k", Set(b("b")), 3, 4, Ret::Done),
                op(2, "k", Get, 5, 6, val("a")),
            ],
            false,
        ),
        (
            "two successful adds on one key",
            vec![
                op(1, "k", Add(b("x")), 1, 3, t.clone()),
                op(2, "k", Add(b("y")), 2, 4, t.clone()),
            ],
            false,
        ),
        (
            "lost incr",
            vec![
                op(1, "k", Incr(1), 1, 3, Ret::Int(Ok(1))),
                op(2, "k", Incr(1), 2, 4, Ret::Int(Ok(1))),
            ],
            false,
        ),
        (
            "lost incr seen by a later read",
            vec![
                op(1, "k", Incr(1), 1, 2, Ret::Int(Ok(1))),
                op(2, "k", Incr(1), 3, 4, Ret::Int(Ok(2))),
                op(3, "k", Get, 5, 6, val("1")),
            ],
            false,
        ),
        (
            "read of a value never written",
            vec![
                op(1, "k", Set(b("a")), 1, 4, Ret::Done),
                op(2, "k", Get, 2, 3, val("z")),
            ],
            false,
        ),
        (
            "a pending op's effect seen before its invocation",
            vec![
                op(1, "k", Set(b("a")), 1, 2, Ret::Done),
                op(2, "k", Get, 3, 4, val("b")),
                pending(3, "k", Set(b("b")), 5),
            ],
            false,
        ),
        (
            "read of a deleted key's old value",
            vec![
                op(1, "k", Set(b("a")), 1, 2, Ret::Done),
                op(2, "k", Delete, 3, 5, t.clone()),
                op(3, "k", Get, 4, 6, val("a")),
                op(3, "k", Get, 7, 8, val("a")),
            ],
            false,
        ),
        (
            "value reappears after a newer one was read (non-monotonic reads)",
            vec![
                op(1, "k", Set(b("a")), 1, 2, Ret::Done),
                op(1, "k", Set(b("b")), 3, 10, Ret::Done),
                op(2, "k", Get, 4, 5, val("b")),
                op(3, "k", Get, 6, 7, val("a")),
            ],
            false,
        ),
        (
            "cas succeeded against a value no longer there",
            vec![
                op(1, "k", Set(b("a")), 1, 2, Ret::Done),
                op(1, "k", Set(b("b")), 3, 4, Ret::Done),
                op(
                    2,
                    "k",
                    Cas {
                        expected: Some(b("a")),
                        new: Some(b("c")),
                    },
                    5,
                    6,
                    t,
                ),
            ],
            false,
        ),
        (
            "pending write may not explain two different values at once",
            vec![
                pending(1, "k", Set(b("a")), 1),
                pending(2, "k", Set(b("b")), 2),
                op(3, "k", Get, 3, 4, val("a")),
                op(3, "k", Get, 5, 6, val("b")),
                op(4, "k", Get, 7, 8, val("a")),
            ],
            false,
        ),
        (
            "a refused write's value seen",
            vec![
                op(1, "k", Set(b("a")), 1, 2, Ret::Done),
                op(2, "k", Set(b("big")), 3, 4, Ret::Full),
                op(3, "k", Get, 5, 6, val("big")),
            ],
            false,
        ),
        (
            "a refused overwrite lost the old value",
            vec![
                op(1, "k", Set(b("a")), 1, 2, Ret::Done),
                op(
                    2,
                    "k",
                    Cas {
                        expected: Some(b("a")),
                        new: Some(b("big")),
                    },
                    3,
                    4,
                    Ret::Full,
                ),
                op(3, "k", Get, 5, 6, Ret::Value(None)),
            ],
            false,
        ),
        (
            "read of the absent key after a completed set",
            vec![
                op(1, "k", Set(b("a")), 1, 2, Ret::Done),
                op(2, "k", Get, 3, 4, none),
            ],
            false,
        ),
    ]
}

/// Runs the hand-written cases; panics on any wrong verdict. Also checks that an ill-formed
/// history is refused and that the step budget yields `Inconclusive`, never a pass.
pub fn self_test() {
    use Call::*;
    for (name, h, expect) in self_test_cases() {
        let v = check(&h, 100_000);
        if expect {
            assert!(
                v.is_linearizable(),
                "{name}: expected linearizable, got {v}"
            );
        } else {
            assert!(v.is_violation(), "{name}: expected a violation, got {v}");
            if let Verdict::Violation { key, .. } = &v {
                let minimal = witness(&h, key, 100_000);
                assert!(minimal.len() <= h.len());
                assert_eq!(
                    search(&minimal, 100_000).outcome,
                    Outcome::NotLinearizable,
                    "{name}: the minimized history must still fail"
                );
            }
        }
    }
    // The model itself on the integer rules.
    for (v, r) in [
        ("41", Ret::Int(Ok(42))),
        ("-1", Ret::Int(Ok(0))),
        ("01", Ret::Int(Err(IncrError::NotAnInteger))),
        ("+1", Ret::Int(Err(IncrError::NotAnInteger))),
        ("-0", Ret::Int(Err(IncrError::NotAnInteger))),
        ("", Ret::Int(Err(IncrError::NotAnInteger))),
        ("9223372036854775807", Ret::Int(Err(IncrError::Overflow))),
    ] {
        assert_eq!(apply(&Some(b(v)), &Call::Incr(1)).1, r, "incr of {v:?}");
    }
    let overlap = vec![
        op(1, "k", Set(b("a")), 1, 5, Ret::Done),
        op(1, "k", Get, 3, 6, val("a")),
    ];
    assert!(matches!(check(&overlap, 1000), Verdict::Malformed(_)));
    let wrong_kind = vec![op(1, "k", Get, 1, 2, Ret::Flag(true))];
    assert!(matches!(check(&wrong_kind, 1000), Verdict::Malformed(_)));
    let full_read = vec![op(1, "k", Get, 1, 2, Ret::Full)];
    assert!(matches!(check(&full_read, 1000), Verdict::Malformed(_)));
    // Twelve concurrent sets, then reads of the first one's value: linearizable, but only
    // after a search; with a tiny budget the verdict is inconclusive, not a pass.
    let mut wide = Vec::new();
    for p in 0..12u64 {
        let set = Set(b(&format!("v{p}")));
        wide.push(op(p as u32, "k", set, 1 + p, 100 + p, Ret::Done));
        wide.push(op(p as u32, "k", Get, 200 + 2 * p, 201 + 2 * p, val("v0")));
    }
    let v = check(&wide, 1_000_000);
    assert!(v.is_linearizable(), "wide: {v}");
    let v = check(&wide, 5);
    assert!(
        matches!(v, Verdict::Inconclusive { .. }),
        "tiny budget: {v}"
    );
}
