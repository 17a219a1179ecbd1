//! Two threads on one `Store::anonymous`, each running a fuzzer-chosen sequence of operations on
//! a tiny shared key set, started together behind a barrier. Key spaces are split so that every
//! outcome is checkable:
//!
//! * shared keys `s0..s3`: set/add/replace/compare-and-swap/delete/get by both threads, with
//!   self-describing values (`t<thread>:<op index>|`, padded to a fuzzer-chosen length of up to
//!   9 000 bytes, so values move between the slot and the heap's blocks and pages). Every value
//!   a get returns, and every final value, must be one a thread stored (a write that returned
//!   success).
//! * incr keys `c0`, `c1`: only `incr` by both threads; the final value must be the sum of the
//!   deltas of both threads, and each thread's results must be consistent with its own deltas.
//! * private keys `p<thread>:0..3`: only their thread touches them, so a sequential model is
//!   exact, even while the other thread hammers the same shards.
//! * counters `ca`, `cb`: `add` by both threads (and concurrent first registration); final
//!   values are the wrapping sums, and each name is registered once.
//!
//! After the join, `verify()` must be clean and `len()` must match the keys present.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Barrier;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmstate::{Clock, Config, ManualClock, Store, Ttl};

const SHARED: [&[u8]; 4] = [b"s0", b"s1", b"s2", b"s3"];
const INCR: [&[u8]; 2] = [b"c0", b"c1"];
const COUNTERS: [&str; 2] = ["ca", "cb"];
const PRIVATE: usize = 4;

/// Value lengths (a value is at least its `t<thread>:<op index>|` prefix): inline, the 24/25
/// boundary, one block, the largest block and the next byte, two tails, page edges, 9 000.
const SIZES: [usize; 12] = [
    0, 24, 25, 100, 2040, 2041, 3000, 4095, 4096, 4097, 8192, 9000,
];

/// A value: `prefix`, padded to `SIZES[size]` bytes with bytes that depend on the prefix.
fn value(prefix: &[u8], size: u8) -> Vec<u8> {
    let len = SIZES[usize::from(size) % SIZES.len()].max(prefix.len());
    let seed = prefix.iter().fold(0u8, |h, b| h.wrapping_mul(31) ^ b);
    let mut v = prefix.to_vec();
    v.extend((prefix.len()..len).map(|i| (i as u8).wrapping_mul(7) ^ seed));
    v
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Op {
    /// Key, value size.
    Set(u8, u8),
    Add(u8, u8),
    Replace(u8, u8),
    /// Expected value: the last value this thread saw under the key (or absent).
    Cas(u8, bool, u8),
    Delete(u8),
    Get(u8),
    Incr(u8, i16),
    PrivSet(u8, u8, bool, u8),
    PrivDelete(u8),
    PrivGet(u8),
    PrivIncr(u8, i8),
    PrivTtl(u8),
    Counter(u8, i16),
    Scan(u8),
    DeletePrefix,
    FlushExpired,
    Yield,
}

#[derive(Debug, Arbitrary)]
struct Input {
    shards: u8,
    a: Vec<Op>,
    b: Vec<Op>,
}

/// What one thread did, for the checks after the join.
#[derive(Default)]
struct Log {
    /// Values this thread stored successfully, per shared key.
    stored: BTreeMap<usize, BTreeSet<Vec<u8>>>,
    /// Values this thread read, per shared key.
    seen: BTreeMap<usize, Vec<Vec<u8>>>,
    /// Sum of successful incr deltas per incr key.
    incr: [i64; 2],
    /// Sum of counter deltas per counter.
    counters: [i64; 2],
    /// Final state of this thread's private keys: (value, has ttl).
    private: BTreeMap<Vec<u8>, (Vec<u8>, bool)>,
}

fn private_key(t: usize, i: u8) -> Vec<u8> {
    format!("p{t}:{}", usize::from(i) % PRIVATE).into_bytes()
}

fn canonical_int(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let n: i64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

fn run_thread(s: &Store, t: usize, ops: &[Op], start: &Barrier) -> Log {
    let mut log = Log::default();
    let mut last: [Option<Vec<u8>>; 4] = Default::default();
    let long_ttl = Some(Duration::from_secs(3600));
    start.wait();
    for (n, op) in ops.iter().take(200).enumerate() {
        let prefix = format!("t{t}:{n}|").into_bytes();
        match *op {
            Op::Set(k, z) | Op::Add(k, z) | Op::Replace(k, z) => {
                let i = usize::from(k) % SHARED.len();
                let val = value(&prefix, z);
                let ok = match op {
                    Op::Set(..) => s.set(SHARED[i], &val, None).map(|()| true),
                    Op::Add(..) => s.add(SHARED[i], &val, None),
                    _ => s.replace(SHARED[i], &val, long_ttl),
                }
                .expect("write of a shared key");
                if ok {
                    log.stored.entry(i).or_default().insert(val);
                }
            }
            Op::Cas(k, with_last, z) => {
                let i = usize::from(k) % SHARED.len();
                let val = value(&prefix, z);
                let exp = if with_last { last[i].clone() } else { None };
                let ok = s
                    .compare_and_swap(SHARED[i], exp.as_deref(), Some(&val), None)
                    .expect("compare_and_swap");
                if ok {
                    log.stored.entry(i).or_default().insert(val.clone());
                    last[i] = Some(val);
                }
            }
            Op::Delete(k) => {
                let i = usize::from(k) % SHARED.len();
                s.delete(SHARED[i]).expect("delete");
            }
            Op::Get(k) => {
                let i = usize::from(k) % SHARED.len();
                let v = s.get(SHARED[i]).expect("get");
                if let Some(v) = &v {
                    log.seen.entry(i).or_default().push(v.clone());
                }
                last[i] = v;
            }
            Op::Incr(k, d) => {
                let i = usize::from(k) % INCR.len();
                s.incr(INCR[i], i64::from(d), None).expect("incr");
                log.incr[i] += i64::from(d);
            }
            Op::PrivSet(k, v, ttl, z) => {
                let key = private_key(t, k);
                let v = if v % 3 == 0 {
                    u32::from(v).to_string().into_bytes()
                } else {
                    value(&prefix, z)
                };
                s.set(&key, &v, if ttl { long_ttl } else { None })
                    .expect("private set");
                log.private.insert(key, (v, ttl));
            }
            Op::PrivDelete(k) => {
                let key = private_key(t, k);
                let want = log.private.remove(&key).is_some();
                assert_eq!(s.delete(&key).expect("private delete"), want, "{key:?}");
            }
            Op::PrivGet(k) => {
                let key = private_key(t, k);
                let want = log.private.get(&key).map(|(v, _)| v.clone());
                assert_eq!(s.get(&key).expect("private get"), want, "{key:?}");
            }
            Op::PrivIncr(k, d) => {
                let key = private_key(t, k);
                let d = i64::from(d);
                let r = s.incr(&key, d, None);
                match log.private.get_mut(&key) {
                    None => {
                        assert_eq!(r.expect("private incr"), d);
                        log.private.insert(key, (d.to_string().into_bytes(), false));
                    }
                    Some((v, _)) => match canonical_int(v) {
                        Some(old) => {
                            assert_eq!(r.expect("private incr"), old + d);
                            *v = (old + d).to_string().into_bytes();
                        }
                        None => assert!(
                            matches!(r, Err(shmstate::Error::NotAnInteger)),
                            "incr of {v:?}: {r:?}"
                        ),
                    },
                }
            }
            Op::PrivTtl(k) => {
                let key = private_key(t, k);
                let have = s.ttl(&key).expect("private ttl");
                match log.private.get(&key) {
                    None => assert_eq!(have, Ttl::NoKey),
                    Some((_, false)) => assert_eq!(have, Ttl::NoExpiry),
                    // The clock does not move: exactly the TTL that was set.
                    Some((_, true)) => assert_eq!(have, Ttl::ExpiresIn(Duration::from_secs(3600))),
                }
            }
            Op::Counter(c, d) => {
                let i = usize::from(c) % COUNTERS.len();
                s.counter(COUNTERS[i]).expect("counter").add(i64::from(d));
                log.counters[i] += i64::from(d);
            }
            Op::Scan(limit) => {
                // Keys that exist for the whole scan must come back exactly once: this thread's
                // private keys, and incr keys seen before it (they are never deleted).
                let mut must: Vec<Vec<u8>> = log.private.keys().cloned().collect();
                for k in INCR {
                    if s.contains(k).expect("contains") {
                        must.push(k.to_vec());
                    }
                }
                let mut keys = Vec::new();
                let mut cursor = 0;
                loop {
                    let (page, next) = s.scan(cursor, b"", usize::from(limit)).expect("scan");
                    keys.extend(page);
                    match next {
                        None => break,
                        Some(n) => {
                            assert!(n > cursor, "scan cursor {cursor} -> {n}");
                            cursor = n;
                        }
                    }
                }
                // A key deleted and re-added by the other thread during the scan may land in a
                // slot the cursor has not passed yet and come back twice (as with Redis SCAN);
                // a key present for the whole scan comes back exactly once.
                for k in &must {
                    let n = keys.iter().filter(|x| *x == k).count();
                    assert_eq!(n, 1, "scan returned {k:?} {n} times: {keys:?}");
                }
                for k in &keys {
                    let ok = SHARED.contains(&k.as_slice())
                        || INCR.contains(&k.as_slice())
                        || (k.first() == Some(&b'p') && k.len() == 4);
                    assert!(ok, "scan returned unknown key {k:?}");
                }
            }
            Op::DeletePrefix => {
                let n = s.delete_prefix(b"s").expect("delete_prefix");
                assert!(n <= SHARED.len() as u64);
            }
            Op::FlushExpired => {
                // The clock does not move, so nothing ever expires.
                assert_eq!(s.flush_expired().expect("flush_expired"), 0);
            }
            Op::Yield => std::thread::yield_now(),
        }
    }
    log
}

fuzz_target!(|input: Input| {
    // 12 keys of at most 9 000 bytes (about 2.2 pages each) and a partial page per class: under
    // 60 pages in any one shard, far below the 2 MiB's (so a write is never `Full`).
    let cfg = Config::new()
        .capacity(256)
        .shards(1 + u32::from(input.shards % 4))
        .max_key_len(16)
        .max_value_len(9000)
        .memory(2 << 20)
        .max_counters(4);
    let clock = ManualClock::new(1_700_000_000_000);
    let s = Store::anonymous(&cfg)
        .expect("anonymous store")
        .with_clock(Clock::Manual(clock));
    let start = Barrier::new(2);
    let (la, lb) = std::thread::scope(|sc| {
        let a = sc.spawn(|| run_thread(&s, 0, &input.a, &start));
        let b = sc.spawn(|| run_thread(&s, 1, &input.b, &start));
        // A panic in a thread is the finding: re-raise it in the fuzzed thread.
        let la = a.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        let lb = b.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (la, lb)
    });
    let logs = [&la, &lb];

    // Shared keys: every value read or left behind was stored by some thread.
    let mut present = 0u64;
    for (i, k) in SHARED.iter().enumerate() {
        let stored: BTreeSet<&Vec<u8>> = logs
            .iter()
            .flat_map(|l| l.stored.get(&i).into_iter().flatten())
            .collect();
        for l in logs {
            for v in l.seen.get(&i).into_iter().flatten() {
                assert!(
                    stored.contains(v),
                    "{k:?}: read {v:?}, which no write stored"
                );
            }
        }
        if let Some(v) = s.get(k).expect("final get") {
            assert!(
                stored.contains(&v),
                "{k:?}: final {v:?}, which no write stored"
            );
            present += 1;
        }
    }
    // Incr keys: the deltas of both threads, none lost.
    for (i, k) in INCR.iter().enumerate() {
        let want = la.incr[i] + lb.incr[i];
        match s.get(k).expect("final get") {
            Some(v) => {
                assert_eq!(canonical_int(&v), Some(want), "{k:?}");
                present += 1;
            }
            // Every incr succeeds and creates the key: absent means never incremented.
            None => assert_eq!(want, 0, "{k:?} missing"),
        }
    }
    // Private keys: exactly each thread's model.
    for (t, l) in logs.iter().enumerate() {
        for i in 0..PRIVATE as u8 {
            let key = private_key(t, i);
            let want = l.private.get(&key).map(|(v, _)| v.clone());
            present += u64::from(want.is_some());
            assert_eq!(s.get(&key).expect("final get"), want, "{key:?}");
        }
    }
    // Counters: wrapping sums, each name registered once.
    let listed = s.counters().expect("counters");
    for (i, name) in COUNTERS.iter().enumerate() {
        let sum = la.counters[i].wrapping_add(lb.counters[i]);
        let entries: Vec<i64> = listed
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .collect();
        match entries.as_slice() {
            [] => assert_eq!(sum, 0, "counter {name} missing"),
            [v] => assert_eq!(*v, sum, "counter {name}"),
            more => panic!("counter {name} registered {} times", more.len()),
        }
    }
    assert_eq!(s.len(), present, "len");
    let rep = s.verify().expect("verify");
    assert!(rep.is_ok(), "{rep}");
});
