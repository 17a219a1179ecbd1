//! The kill -9 torture soak (see `common/torture.rs`), CI length: workers on a hot keyset with
//! values of 1 byte to 64 KiB, random SIGKILLs, and lock holders parked at the table's and the
//! heap's failpoints and killed. 10 s on an anonymous region with a roomy heap; 5 s each with a
//! near-full heap that refuses, and one that evicts; 5 s each on a region file and a named shm
//! object that every worker opens itself, and 5 s with workers also calling `clear()`. Each is
//! bounded by time and by an operation budget, and goes on up to twice its time while a
//! failpoint it arms has not been reached. `SHMSTATE_TORTURE_SECONDS` overrides the time of
//! each, `SHMSTATE_TORTURE_SEED` the seed.
//! `harness = false`: the process is single-threaded when it forks.

#[path = "common/forked.rs"]
#[allow(dead_code)]
mod forked;
#[path = "common/torture.rs"]
mod torture;

use std::time::{Duration, Instant};

use shmstate::{Config, Store, WhenFull};
use torture::{
    check_conserved, check_value, make_value, pick_len, Backing, Heap, Params, Rng, Shape,
    BOUNDARY_LENS, MAX_VALUE_LEN,
};

type TestFn = fn();

fn main() {
    let tests: &[(&str, TestFn)] = &[
        ("checkers_reject_bad_data", checkers_reject_bad_data),
        ("lengths_cover_every_shape", lengths_cover_every_shape),
        ("clear_never_tears_a_read", clear_never_tears_a_read),
        ("soak", soak),
        ("soak_heap_full_refuse", soak_heap_full_refuse),
        ("soak_heap_full_evict", soak_heap_full_evict),
        ("soak_file_region", soak_file_region),
        ("soak_named_region", soak_named_region),
        ("soak_with_clears", soak_with_clears),
    ];
    forked::run_all("torture", tests);
}

/// The soak's own checks can fail: at every length where the value format or the heap's way
/// of storing it changes, a value of another key, a flipped byte, pieces of two versions, a
/// truncated or extended value are caught; and an out-of-range counter.
fn checkers_reject_bad_data() {
    let key = b"k:01";
    let mut lens: Vec<usize> = BOUNDARY_LENS.to_vec();
    lens.extend([30, 31, 32, 33, 100, 5000, 40_000]);
    for len in lens {
        let v = make_value(key, 7 << 32 | 3, 42, len);
        assert_eq!(v.len(), len);
        let carried = check_value(key, &v).unwrap_or_else(|e| panic!("{len}: {e}"));
        if len >= 16 {
            assert_eq!(
                carried,
                Some((7 << 32 | 3, 42)),
                "{len}: writer and sequence"
            );
        } else {
            assert_eq!(carried, None, "{len}: a tiny value carries no version");
        }
        assert!(
            check_value(b"k:02", &make_value(b"k:02", 7 << 32 | 3, 42, len)).is_ok(),
            "{len}"
        );
        assert!(
            check_value(b"k:02", &v).is_err(),
            "{len}: another key's value"
        );
        for at in [0, len / 2, len - 1] {
            let mut flipped = v.clone();
            flipped[at] ^= 1;
            assert!(
                check_value(key, &flipped).is_err(),
                "{len}: byte {at} flipped"
            );
        }
        if len >= 3 {
            // The same key and length, another version: its second half on this one's first.
            let other = make_value(key, 9 << 32 | 1, 43, len);
            assert_ne!(other, v, "{len}: two versions are equal");
            let mut mixed = v.clone();
            let half = len / 2;
            mixed[half..].copy_from_slice(&other[half..]);
            assert!(
                check_value(key, &mixed).is_err(),
                "{len}: two versions mixed"
            );
            // The tail alone from the other version (a moved or reused last block or page).
            let mut tail = v.clone();
            tail[len - 1] = other[len - 1];
            if tail != v {
                assert!(
                    check_value(key, &tail).is_err(),
                    "{len}: last byte of another"
                );
            }
        }
        if len > 1 {
            assert!(check_value(key, &v[..len - 1]).is_err(), "{len}: truncated");
        }
        if len < MAX_VALUE_LEN {
            let mut longer = v.clone();
            longer.push(0);
            assert!(check_value(key, &longer).is_err(), "{len}: extended");
        }
    }
    assert!(check_value(key, b"").is_err(), "empty");
    assert!(check_conserved("c", 10, 10, 0).is_ok());
    assert!(check_conserved("c", 13, 10, 3).is_ok());
    assert!(check_conserved("c", 9, 10, 3).is_err(), "a lost increment");
    assert!(
        check_conserved("c", 14, 10, 3).is_err(),
        "a phantom increment"
    );
}

/// Every phase of the size mix draws lengths of every shape, within 1 ..= 64 KiB, and the
/// minimum length is respected.
fn lengths_cover_every_shape() {
    let mut rng = Rng::new(1);
    for phase in 0..3 {
        let mut seen = [0u32; 4];
        let (mut lo, mut hi) = (usize::MAX, 0);
        for _ in 0..20_000 {
            let len = pick_len(&mut rng, phase, 1);
            lo = lo.min(len);
            hi = hi.max(len);
            seen[Shape::of(len) as usize] += 1;
            assert!(pick_len(&mut rng, phase, 16) >= 16);
        }
        assert!(lo >= 1 && hi <= MAX_VALUE_LEN, "phase {phase}: {lo}..={hi}");
        assert!(seen.iter().all(|&n| n > 0), "phase {phase}: {seen:?}");
    }
}

/// What `soak_with_clears` found, on its own: a lock-free `get` that read a key's slot before
/// a `clear()` must not return bytes that an insert of another key wrote after it into the
/// heap blocks the clear freed. A child writes `a` (60 000 bytes of `A`), clears, writes `b`
/// (of `B`, into the pages `a` had), clears, and so on, pausing 200 µs after each write; the
/// parent reads `a` meanwhile, and every value it gets must be all `A`. (About 2 s.)
fn clear_never_tears_a_read() {
    const LEN: usize = 60_000;
    let store = Store::anonymous(&Config::new().capacity(64).shards(1)).expect("store");
    let a = vec![b'A'; LEN];
    let b = vec![b'B'; LEN];
    store.set(b"a", &a, None).expect("set a");
    let run = Duration::from_secs(2);
    let writer = forked::spawn(|| {
        let end = Instant::now() + run;
        while Instant::now() < end {
            store.set(b"a", &a, None).expect("set a");
            spin(Duration::from_micros(200));
            store.clear().expect("clear");
            store.set(b"b", &b, None).expect("set b");
            spin(Duration::from_micros(200));
            store.clear().expect("clear");
        }
    });
    let (mut reads, mut torn, mut first) = (0u64, 0u64, None);
    let mut buf = Vec::with_capacity(LEN);
    let end = Instant::now() + run;
    while Instant::now() < end {
        if store.get_into(b"a", &mut buf).expect("get a") {
            reads += 1;
            if buf != a {
                torn += 1;
                first.get_or_insert_with(|| {
                    let bs = buf.iter().filter(|&&c| c == b'B').count();
                    format!("{} bytes, {bs} of them key b's", buf.len())
                });
            }
        }
    }
    assert_eq!(
        forked::wait(writer, Duration::from_secs(30)),
        forked::Exit::Code(0)
    );
    println!("  {reads} reads of a, {torn} torn");
    assert_eq!(
        torn,
        0,
        "{torn} of {reads} reads of a returned another key's bytes (first: {})",
        first.unwrap_or_default()
    );
}

fn spin(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

fn soak() {
    run_soak(Backing::Anonymous, 10, Heap::Roomy, false);
}

/// A heap a fraction of what the large mix needs: writes compact, reclaim expired entries
/// and are refused (`Full` only for values that need the heap, leaving the old value).
fn soak_heap_full_refuse() {
    run_soak(
        Backing::Anonymous,
        5,
        Heap::near_full(WhenFull::Refuse),
        false,
    );
}

/// The same heap under `WhenFull::Evict`: entries holding heap bytes are evicted (CLOCK);
/// no write is refused, and inline entries are never evicted.
fn soak_heap_full_evict() {
    run_soak(
        Backing::Anonymous,
        5,
        Heap::near_full(WhenFull::Evict),
        false,
    );
}

/// The same storm on a region file that every (re)spawned worker opens itself: opening and
/// resolving counters race with the others' writes and with kills.
fn soak_file_region() {
    let path = std::env::temp_dir().join(format!("shmstate-torture-{}.region", std::process::id()));
    run_soak(Backing::File(path), 5, Heap::Roomy, false);
}

/// The same on a named POSIX shm object.
fn soak_named_region() {
    run_soak(
        Backing::Named(format!("/shmstate-torture-{}", std::process::id())),
        5,
        Heap::Roomy,
        false,
    );
}

/// Workers also call `clear()` and are killed half-way through clearing a shard; the incr and
/// private keys are left out (a clear wipes them), everything else is checked as usual.
fn soak_with_clears() {
    run_soak(Backing::Anonymous, 5, Heap::Roomy, true);
}

/// Runs the soak for `default_seconds` (or `SHMSTATE_TORTURE_SECONDS`) and fails on any problem.
fn run_soak(backing: Backing, default_seconds: u64, heap: Heap, clears: bool) {
    let seconds: u64 = match std::env::var("SHMSTATE_TORTURE_SECONDS") {
        Ok(s) => s.parse().expect("SHMSTATE_TORTURE_SECONDS: whole seconds"),
        Err(_) => default_seconds,
    };
    let seed = std::env::var("SHMSTATE_TORTURE_SEED").ok().map_or_else(
        || std::process::id().into(),
        |s| s.parse().expect("SHMSTATE_TORTURE_SEED"),
    );
    let p = Params {
        duration: Duration::from_secs(seconds),
        // The time bound is the one that normally ends the run; this bounds it on a fast
        // machine.
        max_ops: 20_000_000 * seconds.max(1),
        seed,
        backing,
        heap,
        clears,
        ..Params::default()
    };
    println!("  seed {seed} (SHMSTATE_TORTURE_SEED to repeat the choices)");
    let rep = torture::run(&p);
    rep.print();
    assert!(rep.ok(), "{} problems", rep.problems.len());
}
