//! Single-process tests of the coordination primitives: leased locks, rate limiters, the cache
//! stampede guard (with threads), namespaces and the worker registry. The multi-process and
//! SIGKILL scenarios are in `tests/primitives_fork.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use shmstate::{
    lock_key, Cache, CacheError, Clock, Config, Error, ManualClock, Namespace, RateLimiter, Store,
    Workers,
};

fn store() -> Store {
    Store::anonymous(&Config::new().capacity(5_000).max_counters(64)).unwrap()
}

const LONG: Duration = Duration::from_secs(60);

// ---- leased locks ----

#[test]
fn lock_is_exclusive_and_fences_increase() {
    let s = store();
    let g = s.try_lock("a", LONG).unwrap().expect("free lock");
    assert!(s.try_lock("a", LONG).unwrap().is_none(), "second acquire");
    assert!(
        s.try_lock("b", LONG).unwrap().is_some(),
        "locks are per name"
    );
    let f1 = g.fence();
    assert!(g.is_held().unwrap());
    assert!(g.release().unwrap(), "we owned it");
    let g2 = s.try_lock("a", LONG).unwrap().unwrap();
    assert_eq!(g2.fence(), f1 + 1);
    let t2 = g2.token();
    drop(g2); // drop releases
    let g3 = s.try_lock("a", LONG).unwrap().unwrap();
    assert_eq!(g3.fence(), f1 + 2);
    assert_ne!(g3.token(), t2, "tokens are unique per acquisition");
    let h = s.lock_holder("a").unwrap().unwrap();
    assert_eq!(
        (h.pid, h.fence, h.holder_dead),
        (std::process::id(), f1 + 2, false)
    );
}

#[test]
fn expired_lease_is_taken_over_and_old_owner_cannot_release_or_extend() {
    let s = store();
    let mut old = s
        .try_lock("job", Duration::from_millis(30))
        .unwrap()
        .unwrap();
    assert!(s.try_lock("job", LONG).unwrap().is_none());
    std::thread::sleep(Duration::from_millis(60));
    let new = s.try_lock("job", LONG).unwrap().expect("lease expired");
    assert!(new.fence() > old.fence());
    assert!(!old.is_held().unwrap());
    assert!(!old.extend(LONG).unwrap(), "extend by a non-owner");
    assert!(!old.release().unwrap(), "release by a non-owner");
    assert!(
        new.is_held().unwrap(),
        "the old owner's release left the new one alone"
    );
    assert!(s.try_lock("job", LONG).unwrap().is_none());
}

#[test]
fn extend_keeps_the_lock() {
    let s = store();
    let mut g = s.try_lock("x", Duration::from_millis(40)).unwrap().unwrap();
    assert!(g.extend(LONG).unwrap());
    assert!(g.lease_left() > Duration::from_secs(50));
    std::thread::sleep(Duration::from_millis(60));
    assert!(s.try_lock("x", LONG).unwrap().is_none(), "extended lease");
    assert!(g.is_held().unwrap());
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) },
        0
    );
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn lock_wait_times_out_and_sleeps_instead_of_spinning() {
    let s = store();
    let _held = s.try_lock("busy", LONG).unwrap().unwrap();
    let (t, cpu) = (Instant::now(), thread_cpu_time());
    let r = s.lock("busy", LONG, Duration::from_millis(200)).unwrap();
    assert!(r.is_none(), "held by a live process with a long lease");
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "waited the bound"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "and not much more");
    // A spinning waiter would burn ~200 ms of CPU; a sleeping one a few ms.
    let burnt = thread_cpu_time() - cpu;
    assert!(burnt < Duration::from_millis(100), "burnt {burnt:?} of CPU");
}

#[test]
fn lock_wait_gets_the_lock_when_released() {
    let s = store();
    let g = s.try_lock("handoff", LONG).unwrap().unwrap();
    let s2 = s.clone();
    let t = std::thread::spawn(move || {
        s2.lock("handoff", LONG, Duration::from_secs(5))
            .unwrap()
            .map(|g| g.fence())
    });
    std::thread::sleep(Duration::from_millis(30));
    let f = g.fence();
    drop(g);
    assert_eq!(t.join().unwrap(), Some(f + 1));
}

#[test]
fn lock_refuses_bad_input() {
    let s = store();
    assert!(matches!(
        s.try_lock("a", Duration::ZERO),
        Err(Error::InvalidArgument { what: "lease", .. })
    ));
    assert!(matches!(
        s.try_lock("", LONG),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        s.try_lock(&"n".repeat(100), LONG),
        Err(Error::KeyTooLong { .. })
    ));
    s.set(&lock_key("foreign"), b"not a lock", None).unwrap();
    assert!(matches!(
        s.try_lock("foreign", LONG),
        Err(Error::BadRecord { .. })
    ));
    assert!(matches!(
        s.lock_holder("foreign"),
        Err(Error::BadRecord { .. })
    ));
}

#[test]
fn fence_stays_monotonic_when_the_record_is_lost() {
    let s = store();
    let f1 = {
        let g = s.try_lock("lost", LONG).unwrap().unwrap();
        g.fence()
    };
    for _ in 0..5 {
        drop(s.try_lock("lost", LONG).unwrap().unwrap());
    }
    assert!(s.delete(&lock_key("lost")).unwrap());
    std::thread::sleep(Duration::from_millis(2));
    let g = s.try_lock("lost", LONG).unwrap().unwrap();
    assert!(g.fence() > f1 + 5, "{} vs {}", g.fence(), f1 + 5);
}

// ---- rate limiting ----

fn manual() -> (Store, ManualClock) {
    let clock = ManualClock::new(1_000_000_000); // aligned to every window used below
    let s = store().with_clock(Clock::Manual(clock.clone()));
    (s, clock)
}

#[test]
fn fixed_window_counts_resets_and_reclaims_idle_clients() {
    let (s, clock) = manual();
    let rl = RateLimiter::fixed_window(&s, "api", 3, Duration::from_secs(1))
        .unwrap()
        .with_clock(Clock::Manual(clock.clone()));
    for left in [2, 1, 0] {
        let d = rl.check(b"ip1").unwrap();
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining), (3, left));
        assert_eq!(d.retry_after, Duration::ZERO);
    }
    clock.advance(Duration::from_millis(250));
    let d = rl.check(b"ip1").unwrap();
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert_eq!(d.retry_after, Duration::from_millis(750));
    assert_eq!(d.reset_after, Duration::from_millis(750));
    // Thousands of clients, each with its own window.
    for i in 0..2_000u32 {
        assert!(rl.check(&i.to_le_bytes()).unwrap().allowed);
    }
    assert!(s.len() >= 2_001);
    clock.advance(Duration::from_millis(750));
    assert!(rl.check(b"ip1").unwrap().allowed, "new window");
    // Idle clients' entries expire with their window.
    clock.advance(Duration::from_secs(1));
    assert!(s.flush_expired().unwrap() >= 2_001);
    assert_eq!(s.len(), 0);
}

#[test]
fn sliding_window_weights_the_previous_window() {
    let (s, clock) = manual();
    let rl = RateLimiter::sliding_window(&s, "login", 10, Duration::from_secs(1))
        .unwrap()
        .with_clock(Clock::Manual(clock.clone()));
    for i in 0..10 {
        assert_eq!(rl.check(b"u").unwrap().remaining, 9 - i);
    }
    assert!(!rl.check(b"u").unwrap().allowed);
    // Start of the next window: the previous one still weighs fully.
    clock.advance(Duration::from_secs(1));
    let d = rl.check(b"u").unwrap();
    assert!(!d.allowed);
    // Half-way: the previous window weighs 5, so 5 more pass.
    assert_eq!(d.retry_after, Duration::from_millis(100));
    clock.advance(Duration::from_millis(500));
    for _ in 0..5 {
        assert!(rl.check(b"u").unwrap().allowed);
    }
    let d = rl.check(b"u").unwrap();
    assert!(!d.allowed);
    // Retry-After is exact: 1 ms early is still denied, on time passes.
    clock.advance(d.retry_after - Duration::from_millis(1));
    assert!(!rl.check(b"u").unwrap().allowed);
    clock.advance(Duration::from_millis(1));
    assert!(rl.check(b"u").unwrap().allowed);
    // Denied requests are not counted; idle clients expire.
    clock.advance(Duration::from_secs(3));
    assert_eq!(s.flush_expired().unwrap(), 1);
}

#[test]
fn gcra_bursts_then_paces_and_retry_after_is_exact() {
    let (s, clock) = manual();
    let rl = RateLimiter::gcra(&s, "search", 10, Duration::from_secs(1), 5)
        .unwrap()
        .with_clock(Clock::Manual(clock.clone()));
    for i in 0..5 {
        let d = rl.check(b"k").unwrap();
        assert!(d.allowed, "burst request {i}");
        assert_eq!(d.remaining, 4 - i);
    }
    let d = rl.check(b"k").unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Duration::from_millis(100));
    assert_eq!(d.reset_after, Duration::from_millis(500));
    clock.advance(Duration::from_millis(99));
    assert!(!rl.check(b"k").unwrap().allowed);
    clock.advance(Duration::from_millis(1));
    assert!(rl.check(b"k").unwrap().allowed);
    assert!(
        !rl.check(b"k").unwrap().allowed,
        "one emission interval only"
    );
    // Weighted requests.
    clock.advance(Duration::from_secs(1));
    assert!(rl.check_n(b"k", 5).unwrap().allowed);
    assert!(!rl.check_n(b"k", 1).unwrap().allowed);
    // The entry expires once the bucket is full again.
    clock.advance(Duration::from_millis(501));
    assert_eq!(s.flush_expired().unwrap(), 1);
}

/// The keys of every entry in the store.
fn all_keys(s: &Store) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let mut cursor = Some(0);
    while let Some(c) = cursor {
        let (page, next) = s.scan(c, b"", 64).unwrap();
        keys.extend(page);
        cursor = next;
    }
    keys
}

/// A rate limiter's record is in the shared region, where another (buggy or older) process
/// may have written any counts. Extreme counts must give a decision or `BadRecord`, never an
/// arithmetic overflow (a panic in debug builds; found by the `records` fuzz target).
#[test]
fn rate_limiters_survive_extreme_foreign_records() {
    let (s, clock) = manual();
    let w = Duration::from_secs(1);
    let c = || Clock::Manual(clock.clone());
    let limiters = [
        RateLimiter::fixed_window(&s, "fw", 5, w)
            .unwrap()
            .with_clock(c()),
        RateLimiter::sliding_window(&s, "sw", 5, w)
            .unwrap()
            .with_clock(c()),
        RateLimiter::gcra(&s, "gc", 5, w, 3)
            .unwrap()
            .with_clock(c()),
    ];
    let big = [0, 1, 5, 6, i64::MAX as u64, u64::MAX - 1, u64::MAX];
    clock.advance(Duration::from_millis(400)); // mid-window
    let idx = clock.now_ms() / 1000;
    let mut records: Vec<Vec<u8>> = Vec::new();
    for &a in &big {
        records.push(a.to_le_bytes().to_vec()); // a GCRA time
        records.push(a.to_string().into_bytes()); // a fixed-window count
        records.push(format!("-{a}").into_bytes());
        for &b in &big {
            for i in [idx, idx - 1, idx + 1, 0, u64::MAX] {
                records.push([i, a, b].iter().flat_map(|x| x.to_le_bytes()).collect());
            }
        }
    }
    let mut checked = 0;
    for rl in &limiters {
        assert!(rl.check(b"client").unwrap().allowed);
        let keys = all_keys(&s);
        for rec in &records {
            for k in &keys {
                s.set(k, rec, None).unwrap();
            }
            for cost in [1, 2, 3] {
                match rl.check_n(b"client", cost) {
                    Ok(d) => assert!(d.remaining <= d.limit, "{d:?}"),
                    Err(Error::BadRecord { .. } | Error::Overflow | Error::NotAnInteger) => {}
                    Err(e) => panic!("record {rec:?}, cost {cost}: {e}"),
                }
                checked += 1;
            }
        }
        s.clear().unwrap();
    }
    assert_eq!(checked, 3 * 3 * records.len());
}

#[test]
fn rate_limiters_refuse_bad_arguments() {
    let s = store();
    let w = Duration::from_secs(1);
    assert!(matches!(
        RateLimiter::fixed_window(&s, "a", 0, w),
        Err(Error::InvalidArgument { what: "limit", .. })
    ));
    assert!(matches!(
        RateLimiter::sliding_window(&s, "a", 1, Duration::ZERO),
        Err(Error::InvalidArgument { what: "window", .. })
    ));
    assert!(matches!(
        RateLimiter::gcra(&s, "a", 10_000_000_000, w, 1),
        Err(Error::InvalidArgument { what: "rate", .. })
    ));
    assert!(matches!(
        RateLimiter::gcra(&s, "a", 1, w, u64::MAX),
        Err(Error::InvalidArgument { what: "burst", .. })
    ));
    assert!(matches!(
        RateLimiter::fixed_window(&s, "a:b", 1, w),
        Err(Error::InvalidArgument { .. })
    ));
    let rl = RateLimiter::gcra(&s, "a", 1, w, 3).unwrap();
    assert!(matches!(
        rl.check_n(b"c", 4),
        Err(Error::InvalidArgument { what: "cost", .. })
    ));
    assert!(matches!(
        rl.check_n(b"c", 0),
        Err(Error::InvalidArgument { what: "cost", .. })
    ));
}

// ---- cache stampede guard ----

type R = Result<Vec<u8>, CacheError<std::io::Error>>;

#[test]
fn cache_hits_misses_and_compute_errors() {
    let s = store();
    let c = Cache::new(&s, "c").unwrap();
    let r: R = c.get_or_compute(b"k", LONG, || Err(std::io::Error::other("db down")));
    assert!(matches!(r, Err(CacheError::Compute(_))));
    assert_eq!(c.get(b"k").unwrap(), None, "errors are not cached");
    let r: R = c.get_or_compute(b"k", LONG, || Ok(b"v".to_vec()));
    assert_eq!(r.unwrap(), b"v");
    let r: R = c.get_or_compute(b"k", LONG, || panic!("must not compute on a hit"));
    assert_eq!(r.unwrap(), b"v");
    let st = c.stats();
    assert_eq!((st.hits, st.misses, st.stale, st.timeouts), (1, 2, 0, 0));
    assert!(c.invalidate(b"k").unwrap());
    let r: R = c.get_or_compute(b"k", LONG, || Ok(b"w".to_vec()));
    assert_eq!(r.unwrap(), b"w");
    let big = vec![0u8; 1 << 20]; // with its 8-byte record header, past the default 1 MiB
    let r: R = c.get_or_compute(b"big", LONG, || Ok(big.clone()));
    assert!(matches!(
        r,
        Err(CacheError::Store(Error::ValueTooLarge { .. }))
    ));
}

#[test]
fn cache_stampede_runs_compute_once() {
    let s = store();
    let c = Cache::new(&s, "stampede").unwrap();
    let computes = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(6));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (c, computes, barrier) = (c.clone(), computes.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let r: R = c.get_or_compute(b"hot", LONG, || {
                    computes.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                    Ok(b"expensive".to_vec())
                });
                r.unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), b"expensive");
    }
    assert_eq!(computes.load(Ordering::SeqCst), 1);
    let st = c.stats();
    assert_eq!((st.misses, st.hits), (1, 5));
}

#[test]
fn cache_serves_stale_while_one_refreshes_and_bounds_the_wait() {
    let s = store();
    let clock = ManualClock::new(1_000_000_000);
    let c = Cache::new(&s, "stale")
        .unwrap()
        .stale_for(LONG)
        .wait(Duration::from_millis(50))
        .with_clock(Clock::Manual(clock.clone()));
    let r: R = c.get_or_compute(b"k", Duration::from_secs(1), || Ok(b"old".to_vec()));
    assert_eq!(r.unwrap(), b"old");
    clock.advance(Duration::from_secs(2)); // now stale
    let started = Arc::new(Barrier::new(2));
    let refresher = {
        let (c, started) = (c.clone(), started.clone());
        std::thread::spawn(move || {
            let r: R = c.get_or_compute(b"k", Duration::from_secs(1), || {
                started.wait();
                std::thread::sleep(Duration::from_millis(150));
                Ok(b"new".to_vec())
            });
            r.unwrap()
        })
    };
    started.wait();
    let r: R = c.get_or_compute(b"k", Duration::from_secs(1), || panic!("second compute"));
    assert_eq!(r.unwrap(), b"old", "stale value while another refreshes");
    // No stale value for another key whose computation is in progress: bounded wait.
    let started2 = Arc::new(Barrier::new(2));
    let slow = {
        let (c, started2) = (c.clone(), started2.clone());
        std::thread::spawn(move || {
            let r: R = c.get_or_compute(b"cold", LONG, || {
                started2.wait();
                std::thread::sleep(Duration::from_millis(200));
                Ok(b"x".to_vec())
            });
            r.unwrap()
        })
    };
    started2.wait();
    let r: R = c.get_or_compute(b"cold", LONG, || panic!("second compute"));
    assert!(matches!(r, Err(CacheError::Timeout { .. })));
    assert_eq!(refresher.join().unwrap(), b"new");
    assert_eq!(slow.join().unwrap(), b"x");
    assert_eq!(c.get(b"k").unwrap().as_deref(), Some(&b"new"[..]));
    let st = c.stats();
    assert_eq!((st.stale, st.timeouts), (1, 1));
}

// ---- namespaces ----

#[test]
fn namespace_invalidation_drops_every_key_and_only_its_own() {
    let s = store();
    let users = Namespace::new(&s, "users").unwrap();
    let posts = Namespace::new(&s, "posts").unwrap();
    for i in 0..50u32 {
        users.set(&i.to_le_bytes(), b"u", None).unwrap();
        posts.set(&i.to_le_bytes(), b"p", None).unwrap();
    }
    let g0 = users.generation().unwrap();
    assert_eq!(users.invalidate().unwrap(), g0 + 1);
    for i in 0..50u32 {
        assert_eq!(users.get(&i.to_le_bytes()).unwrap(), None);
        assert_eq!(posts.get(&i.to_le_bytes()).unwrap().unwrap(), b"p");
    }
    users.set(b"a", b"new", None).unwrap();
    assert_eq!(users.get(b"a").unwrap().unwrap(), b"new");
    assert!(users.delete(b"a").unwrap());
    assert!(s.incr(&users.key(b"n").unwrap(), 2, None).unwrap() == 2);
    // Delete-by-prefix within the current generation only.
    for k in [&b"s:1"[..], b"s:2", b"t:1"] {
        users.set(k, b"x", None).unwrap();
        posts.set(k, b"x", None).unwrap();
    }
    assert_eq!(users.delete_prefix(b"s:").unwrap(), 2);
    assert_eq!(users.get(b"s:1").unwrap(), None);
    assert!(users.get(b"t:1").unwrap().is_some());
    assert!(
        posts.get(b"s:1").unwrap().is_some(),
        "other namespace untouched"
    );
    // The 50 keys of the invalidated generation are still in the store until purged.
    assert_eq!(users.purge_old_generations().unwrap(), 50);
    assert_eq!(users.purge_old_generations().unwrap(), 0);
    assert!(
        users.get(b"t:1").unwrap().is_some(),
        "current generation kept"
    );
    assert_eq!(posts.get(&7u32.to_le_bytes()).unwrap().unwrap(), b"p");
    assert!(matches!(
        Namespace::new(&s, "a:b"),
        Err(Error::InvalidArgument { .. })
    ));
}

// ---- workers and gauges (single process; deaths are in primitives_fork.rs) ----

#[test]
fn worker_registry_gauges_and_deregistration() {
    let s = store();
    let reg = Workers::new(&s, "web", 2).unwrap();
    let w1 = reg.register("one").unwrap();
    let w2 = reg.register("two").unwrap();
    assert!(matches!(
        reg.register("three"),
        Err(Error::RegistryFull { max: 2 })
    ));
    let (g1, g2) = (w1.gauge("conns").unwrap(), w2.gauge("conns").unwrap());
    g1.add(3).unwrap();
    g2.add(4).unwrap();
    g2.add(-1).unwrap();
    w1.gauge("other").unwrap().set(100).unwrap();
    assert_eq!(reg.gauge_total("conns").unwrap(), 6);
    assert_eq!(reg.gauge_total("other").unwrap(), 100);
    assert_eq!(reg.gauge_total("never-used").unwrap(), 0);
    let list = reg.list().unwrap();
    let labels: Vec<_> = list.iter().map(|w| w.label.as_str()).collect();
    assert_eq!(labels, ["one", "two"]);
    assert!(list.iter().all(|w| w.pid == std::process::id()));
    assert_eq!(reg.reap().unwrap(), 0, "nobody is dead");
    assert!(w1.deregister().unwrap());
    assert_eq!(reg.gauge_total("conns").unwrap(), 3);
    assert_eq!(reg.gauge_total("other").unwrap(), 0);
    // The freed slot starts from zero for its next worker.
    let w3 = reg.register("three").unwrap();
    assert_eq!(w3.slot(), 0);
    assert_eq!(w3.gauge("conns").unwrap().get(), 0);
    assert!(matches!(
        reg.register(&"x".repeat(65)),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Workers::new(&s, "a.b", 2),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Workers::new(&s, "a", 0),
        Err(Error::InvalidArgument { .. })
    ));
}
