//! Multi-process tests with real `fork`ed workers (this test has `harness = false`, so the
//! process is single-threaded when it forks). Needs the `failpoints` feature for the tests that
//! kill a worker at a chosen instruction.
//!
//! Every child is waited for under a watchdog: a child that hangs is killed and the test fails.

mod common;

use std::time::{Duration, Instant};

use common::forked::{self, close, kill, pipe, read_byte, spawn, wait, Exit};
use common::{ShmName, TempDir};
use shmstate::failpoint::{self, Action};
use shmstate::{Clock, Config, Error, ManualClock, Store, WhenFull};

type TestFn = fn();

fn main() {
    let tests: &[(&str, TestFn)] = &[
        ("workers_increment_exactly", workers_increment_exactly),
        (
            "values_cross_processes_untorn",
            values_cross_processes_untorn,
        ),
        (
            "open_or_create_race_initializes_once",
            open_or_create_race_initializes_once,
        ),
        (
            "named_and_file_visible_to_other_process",
            named_and_file_visible_to_other_process,
        ),
        ("kill_at_every_write_point", kill_at_every_write_point),
        ("parked_holder_then_sigkill", parked_holder_then_sigkill),
        ("repairer_killed_midway", repairer_killed_midway),
        ("counter_registrant_killed", counter_registrant_killed),
        (
            "file_region_recovered_by_sole_opener",
            file_region_recovered_by_sole_opener,
        ),
        ("crash_in_every_operation", crash_in_every_operation),
        ("crash_at_every_heap_step", crash_at_every_heap_step),
        (
            "woken_waiter_killed_does_not_strand_the_others",
            woken_waiter_killed_does_not_strand_the_others,
        ),
    ];
    forked::run_all("fork", tests);
    if !std::env::args().skip(1).any(|a| !a.starts_with('-')) {
        check_every_point_exercised();
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

fn workers_increment_exactly() {
    const WORKERS: usize = 4;
    const N: i64 = 20_000;
    let store = Store::anonymous(&Config::new().capacity(1000)).unwrap();
    let counter = store.counter("total").unwrap();
    let pids: Vec<_> = (0..WORKERS)
        .map(|w| {
            let store = store.clone();
            let counter = counter.clone();
            spawn(move || {
                for i in 0..N {
                    counter.add(1);
                    if i % 10 == 0 {
                        store.incr(b"incr", 1, None).unwrap();
                    }
                }
                store
                    .set(format!("worker:{w}").as_bytes(), b"done", None)
                    .unwrap();
            })
        })
        .collect();
    for pid in pids {
        assert_eq!(wait(pid, Duration::from_secs(60)), Exit::Code(0));
    }
    assert_eq!(counter.get(), WORKERS as i64 * N);
    assert_eq!(
        store.get(b"incr").unwrap().unwrap(),
        (WORKERS as i64 * N / 10).to_string().as_bytes()
    );
    for w in 0..WORKERS {
        assert_eq!(
            store
                .get(format!("worker:{w}").as_bytes())
                .unwrap()
                .unwrap(),
            b"done"
        );
    }
    let rep = store.verify().unwrap();
    assert!(rep.is_ok(), "{rep}");
    let st = store.stats();
    assert_eq!(st.lock_recoveries, 0);
    println!("  ({} contended lock waits)", st.lock_contended);
}

/// A self-checking value: 8-byte generation, then bytes derived from key and generation.
fn checked_value(key: u8, gen: u64) -> Vec<u8> {
    let len = 8 + (gen as usize * 31 + key as usize) % 200;
    let mut v = gen.to_le_bytes().to_vec();
    v.extend((8..len).map(|i| (i as u8) ^ key ^ (gen as u8)));
    v
}

fn values_cross_processes_untorn() {
    let store = Store::anonymous(&Config::new().capacity(100).max_value_len(256)).unwrap();
    for k in 0..4u8 {
        store.set(&[k], &checked_value(k, 0), None).unwrap();
    }
    let writer = {
        let store = store.clone();
        spawn(move || {
            let until = Instant::now() + Duration::from_millis(1500);
            let mut gen = 1;
            while Instant::now() < until {
                for k in 0..4u8 {
                    store.set(&[k], &checked_value(k, gen), None).unwrap();
                }
                gen += 1;
            }
        })
    };
    let until = Instant::now() + Duration::from_millis(1500);
    let mut buf = Vec::new();
    let mut reads = 0u64;
    let mut gens = std::collections::HashSet::new();
    while Instant::now() < until && reads < 10_000_000 {
        for k in 0..4u8 {
            assert!(store.get_into(&[k], &mut buf).unwrap());
            let gen = u64::from_le_bytes(buf[..8].try_into().unwrap());
            assert_eq!(
                buf,
                checked_value(k, gen),
                "torn value read across processes"
            );
            gens.insert(gen);
            reads += 1;
        }
    }
    assert_eq!(wait(writer, Duration::from_secs(30)), Exit::Code(0));
    assert!(
        gens.len() > 10,
        "reader saw the writer's progress ({} generations)",
        gens.len()
    );
    println!("  ({reads} reads, {} generations seen)", gens.len());
}

fn open_or_create_race_initializes_once() {
    const RACERS: usize = 6;
    let name = ShmName::new("race");
    let cfg = Config::new().capacity(100);
    let (r, w) = pipe();
    let pids: Vec<_> = (0..RACERS)
        .map(|_| {
            let name = name.0.clone();
            let cfg = cfg.clone();
            spawn(move || {
                close(w);
                // Start together: the parent closes the pipe to release everyone.
                let mut b = [0u8; 1];
                // SAFETY: valid buffer; returns 0 at EOF.
                unsafe { libc::read(r, b.as_mut_ptr().cast(), 1) };
                let s = Store::open_or_create(&name, &cfg).unwrap();
                s.incr(b"opened", 1, None).unwrap();
                s.counter("opened").unwrap().add(1);
                std::mem::forget(name);
            })
        })
        .collect();
    close(r);
    std::thread::sleep(Duration::from_millis(50));
    close(w);
    for pid in pids {
        assert_eq!(wait(pid, Duration::from_secs(30)), Exit::Code(0));
    }
    let s = Store::open(&name.0).unwrap();
    // Had any racer initialized a second time, it would have wiped the others' increments.
    assert_eq!(
        s.get(b"opened").unwrap().unwrap(),
        RACERS.to_string().as_bytes()
    );
    assert_eq!(s.counter("opened").unwrap().get(), RACERS as i64);
    assert!(s.verify().unwrap().is_ok());
}

fn named_and_file_visible_to_other_process() {
    let name = ShmName::new("visible");
    let dir = TempDir::new("visible");
    let file = dir.file("store");
    {
        let name = name.0.clone();
        let file = file.clone();
        let pid = spawn(move || {
            let s = Store::create(&name, &Config::new()).unwrap();
            s.set(b"from", b"child shm", None).unwrap();
            let f = Store::create_file(&file, &Config::new()).unwrap();
            f.set(b"from", b"child file", None).unwrap();
            f.counter("c").unwrap().add(41);
            std::mem::forget(name);
        });
        assert_eq!(wait(pid, Duration::from_secs(30)), Exit::Code(0));
    }
    let s = Store::open(&name.0).unwrap();
    assert_eq!(s.get(b"from").unwrap().unwrap(), b"child shm");
    let f = Store::open_file(&file).unwrap();
    assert_eq!(f.get(b"from").unwrap().unwrap(), b"child file");
    assert_eq!(f.counter("c").unwrap().add(1), 42);
    // And the other way round: the child reads what the parent wrote.
    s.set(b"to", b"parent", None).unwrap();
    let name2 = name.0.clone();
    let pid = spawn(move || {
        let s = Store::open(&name2).unwrap();
        assert_eq!(s.get(b"to").unwrap().unwrap(), b"parent");
    });
    assert_eq!(wait(pid, Duration::from_secs(30)), Exit::Code(0));
}

/// Keys written before each crash, with known values. The victim key is `victim`.
fn seed_store(store: &Store) {
    for i in 0..50u32 {
        store
            .set(
                format!("other:{i}").as_bytes(),
                format!("v{i}").as_bytes(),
                None,
            )
            .unwrap();
    }
    store.set(b"victim", b"old", None).unwrap();
}

fn check_others(store: &Store) {
    for i in 0..50u32 {
        assert_eq!(
            store.get(format!("other:{i}").as_bytes()).unwrap().unwrap(),
            format!("v{i}").as_bytes(),
            "another key was affected"
        );
    }
}

fn kill_at_every_write_point() {
    // (failpoint, operation, acceptable victim values afterwards)
    type Op = fn(&Store);
    type Outcomes = &'static [Option<&'static [u8]>];
    let cases: &[(&str, Op, Outcomes)] = &[
        (
            "put.scratch",
            |s| s.set(b"victim", b"new", None).unwrap(),
            &[Some(b"old")],
        ),
        (
            "put.committed",
            |s| s.set(b"victim", b"new", None).unwrap(),
            &[Some(b"new")],
        ),
        (
            "put.applying",
            |s| s.set(b"victim", b"new", None).unwrap(),
            &[Some(b"new")],
        ),
        (
            "put.published",
            |s| s.set(b"victim", b"new", None).unwrap(),
            &[Some(b"new")],
        ),
        (
            "lock.acquired",
            |s| s.set(b"victim", b"new", None).unwrap(),
            &[Some(b"old")],
        ),
        (
            "delete.ctrl",
            |s| {
                s.delete(b"victim").unwrap();
            },
            &[None],
        ),
        (
            "expire.stored",
            |s| {
                s.expire(b"victim", Some(Duration::from_secs(9))).unwrap();
            },
            &[Some(b"old")],
        ),
        (
            "put.applying",
            |s| {
                s.compare_and_swap(b"victim", Some(b"old"), Some(b"cas"), None)
                    .unwrap();
            },
            &[Some(b"cas")],
        ),
        (
            "put.scratch",
            |s| {
                s.compare_and_swap(b"victim", Some(b"old"), Some(b"cas"), None)
                    .unwrap();
            },
            &[Some(b"old")],
        ),
        (
            "insert.written",
            |s| {
                s.delete(b"victim").unwrap();
                s.set(b"victim", b"fresh", None).unwrap();
            },
            &[None],
        ),
        (
            "insert.published",
            |s| {
                s.delete(b"victim").unwrap();
                s.set(b"victim", b"fresh", None).unwrap();
            },
            &[Some(b"fresh")],
        ),
        (
            "clear.half",
            |s| {
                s.clear().unwrap();
            },
            &[None, Some(b"old")],
        ),
    ];
    for (point, op, allowed) in cases {
        let store = Store::anonymous(&Config::new().capacity(200).shards(2)).unwrap();
        seed_store(&store);
        let is_clear = *point == "clear.half";
        let before = store.stats().lock_recoveries;
        let child = {
            let store = store.clone();
            let op = *op;
            let point = *point;
            spawn(move || {
                failpoint::arm(point, Action::Kill, 0);
                op(&store);
                panic!("failpoint {point} was not reached");
            })
        };
        assert_eq!(
            wait(child, Duration::from_secs(30)),
            Exit::Signal(libc::SIGKILL),
            "{point}: child should die at the failpoint"
        );
        exercised(point);
        // A lock-free read before anyone repairs sees the value from before the operation or
        // after it (a dead writer's committed operation takes effect at the repair).
        let before_value: Option<&[u8]> = if point.starts_with("insert.") {
            None
        } else {
            Some(b"old")
        };
        let pre = store.get(b"victim").unwrap();
        assert!(
            pre.as_deref() == before_value || allowed.contains(&pre.as_deref()),
            "{point}: victim before repair = {:?}",
            pre.as_deref().map(String::from_utf8_lossy)
        );
        // verify() locks every shard, which repairs; afterwards the outcome is settled.
        let rep = store.verify().unwrap();
        assert!(rep.is_ok(), "{point}: {rep}");
        let got = store.get(b"victim").unwrap();
        assert!(
            allowed.contains(&got.as_deref()),
            "{point}: victim = {:?}",
            got.as_deref().map(String::from_utf8_lossy)
        );
        store.set(b"victim", b"next", None).unwrap();
        assert_eq!(store.get(b"victim").unwrap().unwrap(), b"next");
        let rep = store.verify().unwrap();
        assert!(rep.is_ok(), "{point}: {rep}");
        if is_clear {
            // The clear finished (repair redid it) on the shard it died in; every key
            // either survived or was cleared, none damaged.
            assert_eq!(store.stats().lock_recoveries, before + 1);
        } else {
            check_others(&store);
            assert_eq!(
                store.stats().lock_recoveries,
                before + 1,
                "{point}: one recovery"
            );
        }
        println!(
            "  {point}: victim {:?}",
            got.as_deref().map(String::from_utf8_lossy)
        );
    }
}

fn parked_holder_then_sigkill() {
    let store = Store::anonymous(
        &Config::new()
            .capacity(200)
            .shards(1)
            .lock_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    seed_store(&store);
    let (r, w) = pipe();
    let child = {
        let store = store.clone();
        spawn(move || {
            failpoint::arm("put.applying", Action::Park { notify_fd: w }, 0);
            store.set(b"victim", b"new", None).unwrap();
        })
    };
    assert!(read_byte(r, Duration::from_secs(10)), "child did not park");
    // While the writer is parked mid-write holding the only shard lock: other keys are still
    // readable without waiting, the parked key's read is bounded by the lock timeout, and a
    // write waits at most the lock timeout too.
    let t = Instant::now();
    check_others(&store);
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "lock-free reads did not wait"
    );
    let t = Instant::now();
    assert!(matches!(
        store.get(b"victim"),
        Err(Error::LockTimeout { .. })
    ));
    assert!(matches!(
        store.set(b"other:1", b"x", None),
        Err(Error::LockTimeout { .. })
    ));
    assert!(t.elapsed() < Duration::from_secs(2));
    kill(child);
    close(r);
    close(w);
    assert_eq!(store.get(b"victim").unwrap().unwrap(), b"new");
    assert!(store.verify().unwrap().is_ok());
    assert_eq!(store.stats().lock_recoveries, 1);
    check_others(&store);
}

fn repairer_killed_midway() {
    for repair_point in ["repair.redone", "repair.recounted"] {
        let store = Store::anonymous(&Config::new().capacity(200).shards(1)).unwrap();
        seed_store(&store);
        // First a writer dies after committing its overwrite...
        let c1 = {
            let store = store.clone();
            spawn(move || {
                failpoint::arm("put.committed", Action::Kill, 0);
                store.set(b"victim", b"new", None).unwrap();
            })
        };
        assert_eq!(
            wait(c1, Duration::from_secs(30)),
            Exit::Signal(libc::SIGKILL)
        );
        // ...then the process that repairs it dies in the middle of the repair...
        let c2 = {
            let store = store.clone();
            spawn(move || {
                failpoint::arm(repair_point, Action::Kill, 0);
                store.set(b"other:3", b"changed", None).unwrap();
            })
        };
        assert_eq!(
            wait(c2, Duration::from_secs(30)),
            Exit::Signal(libc::SIGKILL)
        );
        exercised("put.committed");
        exercised(repair_point);
        // ...and the next holder finishes the repair.
        assert_eq!(store.get(b"victim").unwrap().unwrap(), b"new");
        store.set(b"other:4", b"v4", None).unwrap();
        let rep = store.verify().unwrap();
        assert!(rep.is_ok(), "{repair_point}: {rep}");
        check_others(&store);
        assert_eq!(store.stats().lock_recoveries, 2, "{repair_point}");
    }
}

fn counter_registrant_killed() {
    let store = Store::anonymous(&Config::new()).unwrap();
    store.counter("before").unwrap().add(7);
    let child = {
        let store = store.clone();
        spawn(move || {
            failpoint::arm("counter.named", Action::Kill, 0);
            store.counter("half-registered").unwrap();
        })
    };
    assert_eq!(
        wait(child, Duration::from_secs(30)),
        Exit::Signal(libc::SIGKILL)
    );
    exercised("counter.named");
    let names: Vec<_> = store
        .counters()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["before"], "an unpublished counter is invisible");
    let c = store.counter("half-registered").unwrap();
    assert_eq!(c.add(1), 1);
    assert_eq!(store.counter("before").unwrap().get(), 7);
    assert!(store.verify().unwrap().is_ok());
}

fn file_region_recovered_by_sole_opener() {
    let dir = TempDir::new("recover");
    let path = dir.file("store");
    {
        let s = Store::create_file(&path, &Config::new().capacity(200).shards(1)).unwrap();
        seed_store(&s);
    }
    // A process opens the file, dies holding the shard lock mid-overwrite.
    let p2 = path.clone();
    let child = spawn(move || {
        let s = Store::open_file(&p2).unwrap();
        failpoint::arm("put.applying", Action::Kill, 0);
        s.set(b"victim", b"new", None).unwrap();
    });
    assert_eq!(
        wait(child, Duration::from_secs(30)),
        Exit::Signal(libc::SIGKILL)
    );
    // Nobody has it open now: the next opener is the sole user, re-initializes the locks and
    // repairs (as after a reboot, when no kernel would report the owner dead).
    let s = Store::open_file(&path).unwrap();
    assert_eq!(s.get(b"victim").unwrap().unwrap(), b"new");
    check_others(&s);
    let rep = s.verify().unwrap();
    assert!(rep.is_ok(), "{rep}");
}

// ---------------------------------------------------------------------------------------------
// Crash in every operation: whole-store before/after checks.

/// Failpoints at which a child was seen to die (recorded by the parent).
static EXERCISED: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn exercised(point: &'static str) {
    EXERCISED.lock().unwrap().insert(point);
}

/// After a full run: every failpoint compiled into the crate was reached by a killed child.
fn check_every_point_exercised() {
    let seen = EXERCISED.lock().unwrap();
    let missing: Vec<_> = failpoint::POINTS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !seen.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "failpoints never exercised: {missing:?}"
    );
    println!(
        "all {} failpoints were crashed at by some test",
        failpoint::POINTS.len()
    );
}

type Snapshot = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

/// Every live key and its value (through the public API: scan, then get).
fn snapshot(store: &Store) -> Snapshot {
    let mut out = Snapshot::new();
    let mut cursor = 0;
    loop {
        let (keys, next) = store.scan(cursor, b"", 1000).unwrap();
        for k in keys {
            if let Some(v) = store.get(&k).unwrap() {
                out.insert(k, v);
            }
        }
        match next {
            Some(n) => cursor = n,
            None => return out,
        }
    }
}

fn with(before: &Snapshot, key: &[u8], value: &[u8]) -> Snapshot {
    let mut s = before.clone();
    s.insert(key.to_vec(), value.to_vec());
    s
}

fn without(before: &Snapshot, key: &[u8]) -> Snapshot {
    let mut s = before.clone();
    s.remove(key);
    s
}

/// One crash case: the store is built by `setup` (parent), a child runs `op` and is killed at
/// the `after + 1`-th hit of `point`; afterwards the whole store must satisfy `ok(before,
/// after)`.
struct CrashCase {
    name: &'static str,
    point: &'static str,
    after: u32,
    config: fn() -> Config,
    setup: fn(&Store, &ManualClock),
    op: fn(&Store),
    ok: fn(&Snapshot, &Snapshot) -> bool,
}

fn small() -> Config {
    Config::new().capacity(200).shards(2)
}

/// One shard of 64 entries that evicts when full.
fn evicting() -> Config {
    Config::new()
        .capacity(48)
        .shards(1)
        .when_full(WhenFull::Evict)
}

/// One shard that refuses when full (so an insert into a full shard sweeps expired entries).
fn refusing() -> Config {
    Config::new().capacity(48).shards(1)
}

fn seed_counter(s: &Store, _: &ManualClock) {
    seed_store(s);
    s.set(b"n", b"41", None).unwrap();
}

fn seed_prefixed(s: &Store, _: &ManualClock) {
    seed_store(s);
    for i in 0..10 {
        s.set(format!("p:{i}").as_bytes(), b"pv", None).unwrap();
    }
}

/// Fills the only shard until an insert has to evict (or is refused).
fn fill_shard(s: &Store, clock: &ManualClock, with_ttl: bool) {
    for i in 0..10_000u32 {
        let ttl = (with_ttl && i % 2 == 0).then_some(Duration::from_secs(1));
        match s.set(format!("fill:{i}").as_bytes(), b"f", ttl) {
            Ok(()) if s.stats().evictions == 0 => {}
            Ok(()) => break,
            Err(Error::Full) => break,
            Err(e) => panic!("fill: {e}"),
        }
    }
    if with_ttl {
        // Half the entries are now expired: an insert sweeps them.
        clock.advance(Duration::from_secs(2));
    }
}

/// Exactly one old key evicted, the new one present, nothing else changed.
fn one_evicted_for_newcomer(b: &Snapshot, a: &Snapshot) -> bool {
    a.get(b"newcomer".as_slice()).map(Vec::as_slice) == Some(b"n")
        && a.len() == b.len()
        && b.iter().filter(|(k, v)| a.get(*k) != Some(*v)).count() == 1
}

fn crash_cases() -> Vec<CrashCase> {
    vec![
        CrashCase {
            name: "incr existing, killed after computing",
            point: "incr.computed",
            after: 0,
            config: small,
            setup: seed_counter,
            op: |s| {
                s.incr(b"n", 1, None).unwrap();
            },
            ok: |b, a| a == b,
        },
        CrashCase {
            name: "incr existing, killed after commit",
            point: "put.committed",
            after: 0,
            config: small,
            setup: seed_counter,
            op: |s| {
                s.incr(b"n", 1, None).unwrap();
            },
            ok: |b, a| *a == with(b, b"n", b"42"),
        },
        CrashCase {
            name: "incr existing, killed mid-write",
            point: "put.applying",
            after: 0,
            config: small,
            setup: seed_counter,
            op: |s| {
                s.incr(b"n", 1, None).unwrap();
            },
            ok: |b, a| *a == with(b, b"n", b"42"),
        },
        CrashCase {
            name: "incr creates, killed before publishing",
            point: "insert.written",
            after: 0,
            config: small,
            setup: seed_counter,
            op: |s| {
                s.incr(b"fresh", 5, None).unwrap();
            },
            ok: |b, a| a == b,
        },
        CrashCase {
            name: "incr creates, killed after publishing",
            point: "insert.published",
            after: 0,
            config: small,
            setup: seed_counter,
            op: |s| {
                s.incr(b"fresh", 5, None).unwrap();
            },
            ok: |b, a| *a == with(b, b"fresh", b"5"),
        },
        CrashCase {
            name: "incr creates, killed after computing",
            point: "incr.computed",
            after: 0,
            config: small,
            setup: seed_counter,
            op: |s| {
                s.incr(b"fresh", 5, None).unwrap();
            },
            ok: |b, a| a == b,
        },
        CrashCase {
            name: "compare_and_swap matched, nothing written",
            point: "cas.matched",
            after: 0,
            config: small,
            setup: |s, _| seed_store(s),
            op: |s| {
                s.compare_and_swap(b"victim", Some(b"old"), Some(b"cas"), None)
                    .unwrap();
            },
            ok: |b, a| a == b,
        },
        CrashCase {
            name: "compare_and_swap delete-if-equal",
            point: "delete.ctrl",
            after: 0,
            config: small,
            setup: |s, _| seed_store(s),
            op: |s| {
                s.compare_and_swap(b"victim", Some(b"old"), None, None)
                    .unwrap();
            },
            ok: |b, a| *a == without(b, b"victim"),
        },
        CrashCase {
            name: "compare_and_swap create-if-absent",
            point: "insert.published",
            after: 0,
            config: small,
            setup: |s, _| seed_store(s),
            op: |s| {
                s.compare_and_swap(b"absent", None, Some(b"made"), None)
                    .unwrap();
            },
            ok: |b, a| *a == with(b, b"absent", b"made"),
        },
        CrashCase {
            name: "add, killed before publishing",
            point: "insert.written",
            after: 0,
            config: small,
            setup: |s, _| seed_store(s),
            op: |s| {
                s.add(b"added", b"a", None).unwrap();
            },
            ok: |b, a| a == b,
        },
        CrashCase {
            name: "replace, killed after commit",
            point: "put.committed",
            after: 0,
            config: small,
            setup: |s, _| seed_store(s),
            op: |s| {
                s.replace(b"victim", b"replaced", None).unwrap();
            },
            ok: |b, a| *a == with(b, b"victim", b"replaced"),
        },
        CrashCase {
            name: "evict, killed after choosing the victim",
            point: "evict.chosen",
            after: 0,
            config: evicting,
            setup: |s, c| fill_shard(s, c, false),
            op: |s| s.set(b"newcomer", b"n", None).unwrap(),
            ok: |b, a| a == b,
        },
        CrashCase {
            name: "evict, killed after committing the overwrite",
            point: "put.committed",
            after: 0,
            config: evicting,
            setup: |s, c| fill_shard(s, c, false),
            op: |s| s.set(b"newcomer", b"n", None).unwrap(),
            ok: one_evicted_for_newcomer,
        },
        CrashCase {
            name: "evict, killed mid-overwrite",
            point: "put.applying",
            after: 0,
            config: evicting,
            setup: |s, c| fill_shard(s, c, false),
            op: |s| s.set(b"newcomer", b"n", None).unwrap(),
            ok: one_evicted_for_newcomer,
        },
        CrashCase {
            name: "insert into a full shard, killed after sweeping one expired entry",
            point: "sweep.removed",
            after: 0,
            config: refusing,
            setup: |s, c| fill_shard(s, c, true),
            op: |s| s.set(b"newcomer", b"n", None).unwrap(),
            // Expired entries are invisible either way; the new key was not inserted.
            ok: |b, a| a == b,
        },
        CrashCase {
            name: "flush_expired, killed after the third removal",
            point: "flush.removed",
            after: 2,
            config: refusing,
            setup: |s, c| fill_shard(s, c, true),
            op: |s| {
                s.flush_expired().unwrap();
            },
            ok: |b, a| a == b,
        },
        CrashCase {
            name: "delete_prefix, killed after the third removal",
            point: "prefix.removed",
            after: 2,
            config: small,
            setup: seed_prefixed,
            op: |s| {
                s.delete_prefix(b"p:").unwrap();
            },
            // Per-key atomic, not atomic as a whole: exactly three prefixed keys gone, every
            // other key and value unchanged.
            ok: |b, a| {
                let gone: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).collect();
                gone.len() == 3
                    && gone.iter().all(|k| k.starts_with(b"p:"))
                    && a.iter().all(|(k, v)| b.get(k) == Some(v))
            },
        },
    ]
}

fn crash_in_every_operation() {
    for case in crash_cases() {
        let clock = ManualClock::new(1_000_000);
        let store = Store::anonymous(&(case.config)())
            .unwrap()
            .with_clock(Clock::Manual(clock.clone()));
        (case.setup)(&store, &clock);
        let before = snapshot(&store);
        let len_before = store.len();
        let recoveries = store.stats().lock_recoveries;
        let child = {
            let store = store.clone();
            let (op, point, after) = (case.op, case.point, case.after);
            spawn(move || {
                failpoint::arm(point, Action::Kill, after);
                op(&store);
                panic!("failpoint {point} was not reached");
            })
        };
        assert_eq!(
            wait(child, Duration::from_secs(30)),
            Exit::Signal(libc::SIGKILL),
            "{}: the child should die at {}",
            case.name,
            case.point
        );
        exercised(case.point);
        // verify() locks every shard: the dead holder's shard is repaired.
        let rep = store.verify().unwrap();
        assert!(rep.is_ok(), "{}: {rep}", case.name);
        assert_eq!(
            store.stats().lock_recoveries,
            recoveries + 1,
            "{}: exactly one recovery",
            case.name
        );
        let after = snapshot(&store);
        assert!(
            (case.ok)(&before, &after),
            "{}: state after the crash is neither before nor after the operation\n\
             before: {} keys, after: {} keys, changed: {:?}",
            case.name,
            before.len(),
            after.len(),
            before
                .iter()
                .filter(|(k, v)| after.get(*k) != Some(*v))
                .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                .chain(
                    after
                        .keys()
                        .filter(|k| !before.contains_key(*k))
                        .map(|k| format!("+{}", String::from_utf8_lossy(k)))
                )
                .collect::<Vec<_>>()
        );
        // The counts the repair recomputed agree with the entries (expired ones included).
        assert!(
            store.len() <= len_before + 1,
            "{}: len {} after, {len_before} before",
            case.name,
            store.len()
        );
        // The next operations succeed.
        store.set(b"victim", b"next", None).unwrap();
        assert_eq!(store.get(b"victim").unwrap().unwrap(), b"next");
        assert!(store.delete(b"victim").unwrap());
        let rep = store.verify().unwrap();
        assert!(rep.is_ok(), "{}: {rep}", case.name);
        println!("  {}: ok", case.name);
    }
}

/// Waiters that are stopped (SIGSTOP, e.g. by a debugger) while asleep on a lock, then killed,
/// do not strand the other waiters: when the holder dies, the live waiter gets the lock
/// promptly, not after its whole lock timeout. (The narrower race this guards against, a
/// waiter killed after the kernel woke it but before it took the lock, cannot be timed from a
/// test; `RobustMutex::lock` bounds it by sleeping in 20 ms slices.)
fn woken_waiter_killed_does_not_strand_the_others() {
    let store = Store::anonymous(
        &Config::new()
            .capacity(200)
            .shards(1)
            .lock_timeout(Duration::from_secs(5)),
    )
    .unwrap();
    seed_store(&store);
    let (r, w) = pipe();
    let holder = {
        let store = store.clone();
        spawn(move || {
            failpoint::arm("put.applying", Action::Park { notify_fd: w }, 0);
            store.set(b"victim", b"new", None).unwrap();
        })
    };
    assert!(read_byte(r, Duration::from_secs(10)), "holder did not park");
    let waiter = |key: &'static [u8]| {
        let store = store.clone();
        spawn(move || {
            let t = Instant::now();
            let res = store.set(key, b"w", None);
            // Exit 0: got the lock within a second of the holder's death (the parent kills
            // the holder ~300 ms after this waiter starts). Exit 3: waited too long.
            let ok = res.is_ok() && t.elapsed() < Duration::from_millis(1300);
            // SAFETY: ending the forked child.
            unsafe { libc::_exit(if ok { 0 } else { 3 }) };
        })
    };
    let first = waiter(b"other:1");
    std::thread::sleep(Duration::from_millis(100)); // asleep in the kernel by now
                                                    // SAFETY: signalling our own child.
    unsafe { libc::kill(first, libc::SIGSTOP) };
    let second = waiter(b"other:2");
    std::thread::sleep(Duration::from_millis(200));
    kill(holder); // the kernel hands its wake-up to the first (stopped) waiter...
    std::thread::sleep(Duration::from_millis(50));
    kill(first); // ...which dies without ever taking the lock.
    assert_eq!(
        wait(second, Duration::from_secs(10)),
        Exit::Code(0),
        "the second waiter was stranded by the lost wake-up"
    );
    close(r);
    close(w);
    assert_eq!(store.get(b"other:2").unwrap().unwrap(), b"w");
    assert_eq!(store.get(b"victim").unwrap().unwrap(), b"new");
    assert!(store.verify().unwrap().is_ok());
}

// ---------------------------------------------------------------------------------------------
// Crash at every step of the value heap: whole-store before/after checks and exact space
// accounting.
//
// Each case builds a file-backed store, copies the file to get an identical twin, runs the
// operation to completion on the twin (the "after" state), then forks a child that runs the
// same operation on the original and parks at the case's failpoint. While it is parked (holding
// the shard lock, the heap half-changed) the parent reads every key without the lock; then it
// SIGKILLs the child, lets verify() repair, and checks the whole store: every key holds its
// value from before or from after (the whole store is one of the two for single-key
// operations), verify() is clean, the heap's value bytes match the live values, and the heap's
// free bytes are exactly the heap size minus what the live values take. The value sizes used
// here all fall in size classes whose blocks tile a page exactly (powers of two), so that last
// figure does not depend on where values were placed: any leaked or doubly used block shows.

/// The heap's size classes (src/heap/class.rs), copied as the oracle of the space check.
const CLASSES: [usize; 21] = [
    64, 80, 96, 112, 128, 144, 160, 192, 224, 256, 288, 336, 400, 448, 512, 576, 672, 816, 1024,
    1360, 2048,
];
const PAGE: usize = 4096;
const INLINE_MAX: usize = 24;
const MAX_BLOCK_PAYLOAD: usize = 2040;

/// Bytes of a block of the smallest class that holds `bytes`; the test's sizes must use
/// classes that waste nothing per page.
fn block_for(bytes: usize) -> usize {
    let c = *CLASSES.iter().find(|&&c| c >= bytes).expect("fits a block");
    assert!(
        c.is_power_of_two(),
        "test value sizes must use zero-waste classes ({bytes} -> {c})"
    );
    c
}

/// Heap bytes a value of `len` bytes takes (its blocks at their class size, its whole pages).
fn footprint(len: usize) -> usize {
    if len <= INLINE_MAX {
        return 0;
    }
    if len <= MAX_BLOCK_PAYLOAD {
        return block_for(len + 8);
    }
    let (mut pages, rem) = (len / PAGE, len % PAGE);
    let tails: Vec<usize> = match rem {
        0 => vec![],
        r if r <= MAX_BLOCK_PAYLOAD => vec![r],
        r if r <= 2 * MAX_BLOCK_PAYLOAD => vec![MAX_BLOCK_PAYLOAD, r - MAX_BLOCK_PAYLOAD],
        _ => {
            pages += 1;
            vec![]
        }
    };
    pages * PAGE
        + tails.iter().map(|t| block_for(t + 8)).sum::<usize>()
        + block_for(8 + 4 * (pages + tails.len()))
}

// Value sizes: inline, one block of each zero-waste class, and large values of every shape.
const INL: usize = 8;
const S64: usize = 40; // also 25 (the shortest heap value)
const S128: usize = 120;
const S256: usize = 240;
const S512: usize = 500;
const S1K: usize = 1000;
const S2K: usize = 2040;
const P2: usize = 2 * PAGE; // two whole pages
const P1T: usize = PAGE + 1000; // a page and a tail
const P1TT: usize = PAGE + 3040; // a page and two tails
const P3S: usize = 3 * PAGE + 4090; // four pages, the last one short

/// A value whose bytes depend on its key, generation and length.
fn val(key: &str, gen: u32, len: usize) -> Vec<u8> {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ u64::from(gen) << 32 ^ len as u64;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    (0..len)
        .map(|i| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            (h >> (i % 8)) as u8
        })
        .collect()
}

fn set_v(
    s: &Store,
    key: &str,
    gen: u32,
    len: usize,
    ttl: Option<Duration>,
) -> shmstate::Result<()> {
    s.set(key.as_bytes(), &val(key, gen, len), ttl)
}

/// 200 entries, one shard, 50 heap pages (200 KiB).
fn heap_roomy() -> Config {
    Config::new()
        .capacity(200)
        .shards(1)
        .max_value_len(16384)
        .lock_timeout(Duration::from_millis(100))
}

/// Two shards of 25 heap pages each.
fn heap_two_shards() -> Config {
    heap_roomy().shards(2)
}

/// 64 entries, one shard, 16 heap pages (64 KiB): small enough to fill in a few writes.
fn heap_tight() -> Config {
    Config::new()
        .capacity(64)
        .shards(1)
        .max_value_len(16384)
        .lock_timeout(Duration::from_millis(100))
}

fn heap_tight_evict() -> Config {
    heap_tight().when_full(WhenFull::Evict)
}

/// Keys of every shape (the 256-byte class is left out so that writing one takes a fresh
/// page; the 512-byte value is alone in its page).
fn seed_mixed(s: &Store, _: &ManualClock) {
    let sizes = [
        ("m:i8", INL),
        ("m:i24", INLINE_MAX),
        ("m:s25", 25),
        ("m:s64", S64),
        ("m:s64b", S64),
        ("m:s128", S128),
        ("m:s512", S512),
        ("m:s1k", S1K),
        ("m:s1kb", S1K),
        ("m:s2k", S2K),
        ("m:p2", P2),
        ("m:p1t", P1T),
        ("m:p1tt", P1TT),
        ("m:p3s", P3S),
    ];
    for (k, len) in sizes {
        set_v(s, k, 0, len, None).unwrap();
    }
}

/// `seed_mixed` plus a large value that has expired.
fn seed_expired_large(s: &Store, c: &ManualClock) {
    seed_mixed(s, c);
    set_v(s, "ttl:p2", 0, P2, Some(Duration::from_secs(1))).unwrap();
    c.advance(Duration::from_secs(2));
}

/// `seed_mixed` plus six large values that have expired.
fn seed_many_expired(s: &Store, c: &ManualClock) {
    seed_mixed(s, c);
    for i in 0..6 {
        set_v(s, &format!("ttl:{i}"), 0, P1T, Some(Duration::from_secs(1))).unwrap();
    }
    c.advance(Duration::from_secs(2));
}

/// Two-page values until the heap is full (Refuse: the next is refused; Evict: one was
/// evicted). Every other one expires after a second when `with_ttl`.
fn fill_pages(s: &Store, with_ttl: bool) {
    for i in 0..64u32 {
        let ttl = (with_ttl && i % 2 == 0).then_some(Duration::from_secs(1));
        match set_v(s, &format!("f:{i}"), 0, P2, ttl) {
            Ok(()) if s.stats().evictions == 0 => {}
            Ok(()) | Err(Error::Full) => return,
            Err(e) => panic!("fill: {e}"),
        }
    }
    panic!("the heap never filled");
}

/// A full heap whose 1 KiB-class pages are half empty and hold only the tails of large values,
/// and no free page: a new large value needs compaction, which moves tails (each move writes a
/// new extent).
fn seed_sparse_tails(s: &Store, _: &ManualClock) {
    let mut pairs = 0;
    for i in 0..64 {
        if set_v(s, &format!("a:{i}"), 0, P1T, None).is_err() {
            break;
        }
        if set_v(s, &format!("d:{i}"), 0, S1K, None).is_err() {
            break;
        }
        pairs += 1;
    }
    assert!(pairs >= 4, "fill: {pairs}");
    for i in 0..=pairs {
        s.delete(format!("d:{i}").as_bytes()).unwrap();
    }
    let st = s.stats();
    assert_eq!(
        st.heap_free_bytes, st.heap_partial_free_bytes,
        "no free page left"
    );
}

/// A full heap of 1 KiB values, half of them deleted so that every page is half empty.
fn seed_sparse_blocks(s: &Store, _: &ManualClock) {
    let mut n = 0;
    while n < 200 && set_v(s, &format!("b:{n}"), 0, S1K, None).is_ok() {
        n += 1;
    }
    for i in (0..n).step_by(2) {
        s.delete(format!("b:{i}").as_bytes()).unwrap();
    }
    let st = s.stats();
    assert_eq!(
        st.heap_free_bytes, st.heap_partial_free_bytes,
        "no free page left"
    );
}

type HeapOp = fn(&Store);

/// One heap crash case. The child runs `op` and parks at the `after + 1`-th hit of `point`.
/// With `first`, a first child runs `op` and is killed at that point, then a second child
/// runs `op2` (whose lock repairs the first's shard) and parks at `point`: a repairer killed
/// mid-repair.
struct HeapCase {
    name: &'static str,
    point: &'static str,
    after: u32,
    config: fn() -> Config,
    setup: fn(&Store, &ManualClock),
    op: HeapOp,
    /// Whether the operation touches one key only: then the whole store must be either the
    /// state before or after it.
    atomic: bool,
    first: Option<(&'static str, u32)>,
    op2: HeapOp,
}

impl HeapCase {
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &'static str,
        point: &'static str,
        after: u32,
        config: fn() -> Config,
        setup: fn(&Store, &ManualClock),
        op: HeapOp,
    ) -> Self {
        HeapCase {
            name,
            point,
            after,
            config,
            setup,
            op,
            atomic: true,
            first: None,
            op2: |_| {},
        }
    }
    fn per_key(mut self) -> Self {
        self.atomic = false;
        self
    }
    fn repaired_by(mut self, first: (&'static str, u32), op2: HeapOp) -> Self {
        self.first = Some(first);
        self.op2 = op2;
        self
    }
}

fn set_new_direct(s: &Store) {
    set_v(s, "new", 1, S256, None).unwrap();
}
fn set_new_large(s: &Store) {
    set_v(s, "new", 1, P1TT, None).unwrap();
}
fn overwrite_large_with_direct(s: &Store) {
    set_v(s, "m:p2", 1, S1K, None).unwrap();
}
fn delete_large(s: &Store) {
    assert!(s.delete(b"m:p3s").unwrap());
}
fn delete_lonely_block(s: &Store) {
    assert!(s.delete(b"m:s512").unwrap());
}
fn cas_large_to_large(s: &Store) {
    let old = val("m:p1t", 0, P1T);
    assert!(s
        .compare_and_swap(b"m:p1t", Some(&old), Some(&val("m:p1t", 1, P2)), None)
        .unwrap());
}
fn cas_delete_large(s: &Store) {
    let old = val("m:p1tt", 0, P1TT);
    assert!(s
        .compare_and_swap(b"m:p1tt", Some(&old), None, None)
        .unwrap());
}
fn incr_over_expired_large(s: &Store) {
    assert_eq!(s.incr(b"ttl:p2", 5, None).unwrap(), 5);
}
fn overwrite_inline_with_large(s: &Store) {
    set_v(s, "m:i8", 1, P3S, None).unwrap();
}
fn set_big_needing_room(s: &Store) {
    set_v(s, "big", 1, P2, None).unwrap();
}
fn set_big_evicting(s: &Store) {
    set_v(s, "big", 1, P3S, None).unwrap();
}
fn overwrite_refused(s: &Store) {
    assert!(matches!(set_v(s, "f:0", 1, P3S, None), Err(Error::Full)));
}
fn flush(s: &Store) {
    assert_eq!(s.flush_expired().unwrap(), 6);
}
fn clear_all(s: &Store) {
    s.clear().unwrap();
}
fn small_write(s: &Store) {
    s.set(b"m:i8", b"x", None).unwrap();
}
fn delete_prefix_m(s: &Store) {
    assert_eq!(s.delete_prefix(b"m:s").unwrap(), 8);
}

#[rustfmt::skip] // a table: one case per line
fn heap_cases() -> Vec<HeapCase> {
    use HeapCase as C;
    let roomy = heap_roomy as fn() -> Config;
    let tight = heap_tight as fn() -> Config;
    let mixed = seed_mixed as fn(&Store, &ManualClock);
    vec![
        // A new direct value in a class that has no page yet.
        C::new("new direct value: page taken", "pool.page_taken", 0, roomy, mixed, set_new_direct),
        C::new("new direct value: page classed", "pool.class_page", 0, roomy, mixed, set_new_direct),
        C::new("new direct value: block bit set", "pool.block_taken", 0, roomy, mixed, set_new_direct),
        C::new("new direct value: block counted", "pool.block_counted", 0, roomy, mixed, set_new_direct),
        C::new("new direct value: bytes written", "value.block_written", 0, roomy, mixed, set_new_direct),
        C::new("new direct value: stored, unpublished", "heap.stored", 0, roomy, mixed, set_new_direct),
        C::new("new direct value: published", "insert.published", 0, roomy, mixed, set_new_direct),
        // A new large value: a whole page, two tails, an extent.
        C::new("new large value: page marked large", "pool.large_taken", 0, roomy, mixed, set_new_large),
        C::new("new large value: first piece written", "value.piece_written", 0, roomy, mixed, set_new_large),
        C::new("new large value: last piece written", "value.piece_written", 2, roomy, mixed, set_new_large),
        C::new("new large value: extent half listed", "value.extent_listing", 0, roomy, mixed, set_new_large),
        C::new("new large value: stored, unpublished", "heap.stored", 0, roomy, mixed, set_new_large),
        C::new("inline value overwritten by a large one", "value.extent_listing", 1, roomy, mixed, overwrite_inline_with_large),
        C::new("inline value overwritten by a large one: committed", "put.committed", 0, roomy, mixed, overwrite_inline_with_large),
        // Overwrites and deletes free the old value.
        C::new("large overwritten by direct: old not freed", "put.freeing", 0, roomy, mixed, overwrite_large_with_direct),
        C::new("large overwritten by direct: extent freed", "value.part_freed", 0, roomy, mixed, overwrite_large_with_direct),
        C::new("large overwritten by direct: page half freed", "pool.large_freed", 0, roomy, mixed, overwrite_large_with_direct),
        C::new("delete large: slot removed, blocks not freed", "delete.freeing", 0, roomy, mixed, delete_large),
        C::new("delete large: extent block half freed", "pool.block_freed", 0, roomy, mixed, delete_large),
        C::new("delete large: second page half freed", "pool.large_freed", 1, roomy, mixed, delete_large),
        C::new("delete large: three parts freed", "value.part_freed", 2, roomy, mixed, delete_large),
        C::new("delete a page's only block: page half freed", "pool.page_emptied", 0, roomy, mixed, delete_lonely_block),
        C::new("compare_and_swap large to large: stored", "heap.stored", 0, roomy, mixed, cas_large_to_large),
        C::new("compare_and_swap large to large: old not freed", "put.freeing", 0, roomy, mixed, cas_large_to_large),
        C::new("compare_and_swap delete large: part freed", "value.part_freed", 1, roomy, mixed, cas_delete_large),
        C::new("incr over an expired large value: old not freed", "put.freeing", 0, roomy, seed_expired_large, incr_over_expired_large),
        C::new("incr over an expired large value: page half freed", "pool.large_freed", 1, roomy, seed_expired_large, incr_over_expired_large),
        C::new("flush_expired of large values: mid-free", "value.part_freed", 4, roomy, seed_many_expired, flush),
        C::new("flush_expired of large values: one removed", "delete.freeing", 2, roomy, seed_many_expired, flush).per_key(),
        C::new("delete_prefix over every shape", "delete.freeing", 3, roomy, mixed, delete_prefix_m).per_key(),
        // Making room: expired entries, compaction, eviction, refusal.
        C::new("reclaim expired for space: first removed", "heap.reclaimed", 0, tight, |s, c| {
            fill_pages(s, true);
            c.advance(Duration::from_secs(2));
        }, set_big_needing_room),
        C::new("reclaim expired for space: second removed", "heap.reclaimed", 1, tight, |s, c| {
            fill_pages(s, true);
            c.advance(Duration::from_secs(2));
        }, set_big_needing_room),
        C::new("compaction of tails: page draining", "compact.draining", 0, tight, seed_sparse_tails, set_big_needing_room),
        C::new("compaction of tails: first copy", "compact.copied", 0, tight, seed_sparse_tails, set_big_needing_room),
        C::new("compaction of tails: first move published", "compact.moved", 0, tight, seed_sparse_tails, set_big_needing_room),
        C::new("compaction of tails: old tail freed, old extent not", "compact.block_freed", 0, tight, seed_sparse_tails, set_big_needing_room),
        C::new("compaction of tails: third copy", "compact.copied", 2, tight, seed_sparse_tails, set_big_needing_room),
        C::new("compaction of tails: new value undone once", "value.undoing", 1, tight, seed_sparse_tails, set_big_needing_room),
        C::new("compaction of tails: stored after compaction", "heap.stored", 0, tight, seed_sparse_tails, set_big_needing_room),
        C::new("compaction of blocks: first move published", "compact.moved", 0, tight, seed_sparse_blocks, set_big_needing_room),
        C::new("compaction of blocks: fifth copy", "compact.copied", 4, tight, seed_sparse_blocks, set_big_needing_room),
        C::new("compaction of blocks: emptied page half freed", "pool.page_emptied", 0, tight, seed_sparse_blocks, set_big_needing_room),
        C::new("evict for space: victim chosen", "heap.evicting", 0, heap_tight_evict, |s, _| fill_pages(s, false), set_big_evicting).per_key(),
        C::new("evict for space: first victim removed", "heap.evicted", 0, heap_tight_evict, |s, _| fill_pages(s, false), set_big_evicting).per_key(),
        C::new("evict for space: second victim chosen", "heap.evicting", 1, heap_tight_evict, |s, _| fill_pages(s, false), set_big_evicting).per_key(),
        C::new("evict for space: victim's blocks not freed", "delete.freeing", 0, heap_tight_evict, |s, _| fill_pages(s, false), set_big_evicting).per_key(),
        C::new("refused overwrite: pieces being undone", "value.undoing", 0, tight, |s, _| fill_pages(s, false), overwrite_refused),
        C::new("refused overwrite: a taken page half freed", "pool.large_freed", 0, tight, |s, _| fill_pages(s, false), overwrite_refused),
        // Clear resets the heap with the table.
        C::new("clear: heap reset", "clear.heap_reset", 0, heap_two_shards, mixed, clear_all).per_key(),
        // A repairer killed while rebuilding the heap after a writer died mid-allocation.
        C::new("repairer killed: heap reset", "heap.rebuild_reset", 0, roomy, mixed, set_new_large)
            .repaired_by(("value.piece_written", 1), small_write),
        C::new("repairer killed: values half marked", "heap.rebuild_marked", 5, roomy, mixed, set_new_large)
            .repaired_by(("pool.large_taken", 0), small_write),
        C::new("repairer killed: heap rebuilt, not clean", "repair.heap_rebuilt", 0, roomy, mixed, overwrite_large_with_direct)
            .repaired_by(("put.freeing", 0), small_write),
        C::new("repairer killed mid-rebuild after a dead compaction", "heap.rebuild_marked", 3, tight, seed_sparse_tails, set_big_needing_room)
            .repaired_by(("compact.moved", 1), small_write),
    ]
}

/// Sum of the heap bytes of the values in `s`.
fn heap_payload(s: &Snapshot) -> u64 {
    s.values()
        .filter(|v| v.len() > INLINE_MAX)
        .map(|v| v.len() as u64)
        .sum()
}

fn heap_footprint(s: &Snapshot) -> u64 {
    s.values().map(|v| footprint(v.len()) as u64).sum()
}

/// The heap accounting of a quiescent store with no expired entries left: value bytes are the
/// live values' bytes, free bytes the heap minus their footprint.
fn assert_heap_exact(store: &Snapshot, st: &shmstate::Stats, what: &str) {
    assert_eq!(st.value_bytes, heap_payload(store), "{what}: value bytes");
    assert_eq!(
        st.heap_free_bytes,
        st.heap_bytes - heap_footprint(store),
        "{what}: free heap bytes (heap {}, live values take {})",
        st.heap_bytes,
        heap_footprint(store)
    );
}

fn crash_at_every_heap_step() {
    let cases = heap_cases();
    for case in &cases {
        run_heap_case(case);
    }
    println!("  ({} heap crash cases)", cases.len());
}

fn run_heap_case(case: &HeapCase) {
    let name = case.name;
    let dir = TempDir::new("heapcrash");
    let path = dir.file("store");
    let t0 = 1_000_000;
    let clock = ManualClock::new(t0);
    let store = Store::create_file(&path, &(case.config)())
        .unwrap()
        .with_clock(Clock::Manual(clock.clone()));
    (case.setup)(&store, &clock);
    let rep = store.verify().unwrap();
    assert!(rep.is_ok(), "{name}: setup: {rep}");
    let before = snapshot(&store);
    let before_stats = store.stats();
    let expired_bytes = before_stats.value_bytes - heap_payload(&before);

    // The twin: the same bytes, the operation run to completion.
    let twin_path = dir.file("twin");
    std::fs::copy(&path, &twin_path).unwrap();
    let after = {
        let twin = Store::open_file(&twin_path)
            .unwrap()
            .with_clock(Clock::Manual(ManualClock::new(clock.now_ms())));
        (case.op)(&twin);
        let rep = twin.verify().unwrap();
        assert!(rep.is_ok(), "{name}: twin: {rep}");
        let after = snapshot(&twin);
        twin.flush_expired().unwrap();
        assert_heap_exact(&after, &twin.stats(), &format!("{name}: twin"));
        after
    };
    let recoveries = store.stats().lock_recoveries;

    // The crash.
    let mut expected_recoveries = 1;
    if let Some((first, first_after)) = case.first {
        let child = {
            let store = store.clone();
            let op = case.op;
            spawn(move || {
                failpoint::arm(first, Action::Kill, first_after);
                op(&store);
                panic!("failpoint {first} was not reached");
            })
        };
        assert_eq!(
            wait(child, Duration::from_secs(30)),
            Exit::Signal(libc::SIGKILL),
            "{name}: the first child should die at {first}"
        );
        exercised(first);
        expected_recoveries = 2;
    }
    let (r, w) = pipe();
    let child = {
        let store = store.clone();
        let op = if case.first.is_some() {
            case.op2
        } else {
            case.op
        };
        let (point, after) = (case.point, case.after);
        spawn(move || {
            close(r);
            failpoint::arm(point, Action::Park { notify_fd: w }, after);
            op(&store);
            panic!("failpoint {point} was not reached");
        })
    };
    close(w);
    if !read_byte(r, Duration::from_secs(20)) {
        let how = wait(child, Duration::from_secs(5));
        panic!(
            "{name}: the child did not park at {} (hit {}): {how:?}",
            case.point,
            case.after + 1
        );
    }
    close(r);
    exercised(case.point);

    // Parked with the heap half-changed: lock-free reads see each key's old or new value (a
    // key whose slot the dead writer left mid-write may need the lock: a timeout).
    let mut timeouts = 0;
    for k in before.keys().chain(after.keys()) {
        match store.get(k) {
            Ok(v) => assert!(
                v.as_ref() == before.get(k) || v.as_ref() == after.get(k),
                "{name}: lock-free read of {} during the crash is neither old nor new",
                String::from_utf8_lossy(k)
            ),
            Err(Error::LockTimeout { .. }) => {
                assert_ne!(before.get(k), after.get(k), "{name}: untouched key locked");
                timeouts += 1;
            }
            Err(e) => panic!("{name}: read during the crash: {e}"),
        }
    }
    assert!(timeouts <= 2, "{name}: {timeouts} reads timed out");
    kill(child);

    // Recovery: verify() locks (and so repairs) every shard.
    let rep = store.verify().unwrap();
    assert!(rep.is_ok(), "{name}: after the crash: {rep}");
    assert_eq!(
        store.stats().lock_recoveries,
        recoveries + expected_recoveries,
        "{name}: recoveries"
    );
    let got = snapshot(&store);
    let keys: std::collections::BTreeSet<&Vec<u8>> = before
        .keys()
        .chain(after.keys())
        .chain(got.keys())
        .collect();
    for k in keys {
        assert!(
            got.get(k) == before.get(k) || got.get(k) == after.get(k),
            "{name}: key {} is neither its old nor its new value",
            String::from_utf8_lossy(k)
        );
    }
    if case.atomic {
        assert!(
            got == before || got == after,
            "{name}: a one-key operation left the store neither before nor after it"
        );
    }
    // Value bytes: the live values' bytes, plus those of expired entries not reclaimed yet.
    let st = store.stats();
    let live = heap_payload(&got);
    assert!(
        st.value_bytes >= live && st.value_bytes <= live + expired_bytes,
        "{name}: value bytes {} for {live} live (+ up to {expired_bytes} expired)",
        st.value_bytes
    );
    store.flush_expired().unwrap();
    assert_heap_exact(&got, &store.stats(), name);

    // Deleting everything frees the whole heap; then the store takes a value of every shape.
    for k in got.keys() {
        assert!(store.delete(k).unwrap());
    }
    let st = store.stats();
    assert_heap_exact(&Snapshot::new(), &st, &format!("{name}: emptied"));
    assert_eq!(st.heap_free_bytes, st.heap_bytes, "{name}: emptied heap");
    assert_eq!(store.len(), 0);
    for (i, len) in [INL, S64, S1K, P1T, P3S].into_iter().enumerate() {
        set_v(&store, &format!("next:{i}"), 2, len, None).unwrap();
    }
    assert_heap_exact(
        &snapshot(&store),
        &store.stats(),
        &format!("{name}: next writes"),
    );
    let rep = store.verify().unwrap();
    assert!(rep.is_ok(), "{name}: next writes: {rep}");
    println!(
        "  {name}: {} ({} keys changed)",
        if got == after && got != before {
            "after"
        } else if got == before {
            "before"
        } else {
            "partial"
        },
        before
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(*v))
            .count()
            + got.keys().filter(|k| !before.contains_key(*k)).count()
    );
}
