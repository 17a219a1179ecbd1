//! Multi-process tests of the coordination primitives with real `fork`ed workers (this test has
//! `harness = false`, so the process is single-threaded when it forks): mutual exclusion and
//! fencing across processes, a SIGKILLed lock holder or cache filler taken over, exact rate
//! limits across processes, and a crashed worker's gauges disappearing.
//!
//! Every child is waited for under a watchdog: a child that hangs is killed and the test fails.

use std::time::{Duration, Instant};

mod common;

use common::forked::{self, close, kill, pipe, read_byte, spawn, wait, write_byte, Exit};
use shmstate::{Cache, CacheError, Config, Error, RateLimiter, Store, Workers};

type TestFn = fn();

fn main() {
    let tests: &[(&str, TestFn)] = &[
        (
            "lock_excludes_across_processes",
            lock_excludes_across_processes,
        ),
        (
            "lock_holder_sigkilled_is_taken_over",
            lock_holder_sigkilled_is_taken_over,
        ),
        (
            "lock_holder_stalled_past_lease",
            lock_holder_stalled_past_lease,
        ),
        (
            "cache_stampede_one_compute_across_processes",
            cache_stampede_one_compute_across_processes,
        ),
        (
            "cache_filler_sigkilled_is_taken_over",
            cache_filler_sigkilled_is_taken_over,
        ),
        (
            "rate_limits_exact_across_processes",
            rate_limits_exact_across_processes,
        ),
        (
            "crashed_worker_gauges_disappear",
            crashed_worker_gauges_disappear,
        ),
        (
            "forked_child_cannot_use_parent_registration",
            forked_child_cannot_use_parent_registration,
        ),
    ];
    forked::run_all("primitives_fork", tests);
}

// ---------------------------------------------------------------------------------------------
// Process helpers

/// SIGKILLs our child but does not reap it: it stays a zombie, which must count as dead.
fn kill_leaving_zombie(pid: libc::pid_t) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("child {pid} did not become a zombie");
}

/// Sleeps (bounded) until killed: a child that must hold something until the parent acts.
fn park() {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("parked child was never killed");
}

fn store() -> Store {
    Store::anonymous(&Config::new().capacity(2_000).max_counters(64)).unwrap()
}

fn read_i64(store: &Store, key: &[u8]) -> i64 {
    store
        .get(key)
        .unwrap()
        .map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap())
}

const LONG: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Scenarios

/// A non-atomic read-modify-write under the lock from four processes loses no update, and each
/// process sees strictly increasing fences.
fn lock_excludes_across_processes() {
    const WORKERS: usize = 4;
    const ROUNDS: i64 = 150;
    let s = store();
    let pids: Vec<_> = (0..WORKERS)
        .map(|_| {
            let s = s.clone();
            spawn(move || {
                let mut last_fence = 0;
                for _ in 0..ROUNDS {
                    let g = s
                        .lock("shared", LONG, Duration::from_secs(20))
                        .unwrap()
                        .expect("lock within 20 s");
                    assert!(g.fence() > last_fence, "fences increase");
                    last_fence = g.fence();
                    let v = read_i64(&s, b"unprotected-counter");
                    std::thread::yield_now(); // widen the race window
                    s.set(b"unprotected-counter", (v + 1).to_string().as_bytes(), None)
                        .unwrap();
                    assert!(g.release().unwrap(), "still ours");
                }
            })
        })
        .collect();
    for pid in pids {
        assert_eq!(wait(pid, Duration::from_secs(60)), Exit::Code(0));
    }
    assert_eq!(
        read_i64(&s, b"unprotected-counter"),
        WORKERS as i64 * ROUNDS
    );
    let g = s.try_lock("shared", LONG).unwrap().unwrap();
    assert!(g.fence() >= (WORKERS as i64 * ROUNDS) as u64);
}

/// A holder with a 60 s lease is SIGKILLed: the lock is taken over at once (no waiting for the
/// lease), with a larger fence, whether the dead holder is still a zombie or already reaped.
fn lock_holder_sigkilled_is_taken_over() {
    for leave_zombie in [true, false] {
        let s = store();
        let (r, w) = pipe();
        let child = {
            let s = s.clone();
            spawn(move || {
                let g = s.try_lock("leader", LONG).unwrap().unwrap();
                s.set(b"child-fence", g.fence().to_string().as_bytes(), None)
                    .unwrap();
                write_byte(w);
                park();
            })
        };
        assert!(read_byte(r, Duration::from_secs(10)), "child did not lock");
        assert!(
            s.try_lock("leader", LONG).unwrap().is_none(),
            "held by a live child"
        );
        let h = s.lock_holder("leader").unwrap().unwrap();
        assert_eq!((h.pid, h.holder_dead), (child as u32, false));
        if leave_zombie {
            kill_leaving_zombie(child);
        } else {
            kill(child);
        }
        assert!(s.lock_holder("leader").unwrap().unwrap().holder_dead);
        let t = Instant::now();
        let g = s
            .lock("leader", LONG, Duration::from_secs(5))
            .unwrap()
            .expect("dead holder taken over");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "did not wait for the 60 s lease"
        );
        assert!(g.fence() as i64 > read_i64(&s, b"child-fence"));
        if leave_zombie {
            assert_eq!(
                wait(child, Duration::from_secs(10)),
                Exit::Signal(libc::SIGKILL)
            );
        }
        close(r);
        close(w);
    }
}

/// A live holder that stalls (SIGSTOP) past its lease loses the lock to a waiter; when it
/// resumes, its release reports that it no longer owned the lock, and it cannot extend.
fn lock_holder_stalled_past_lease() {
    let s = store();
    let (r, w) = pipe();
    let (r2, w2) = pipe();
    let child = {
        let s = s.clone();
        spawn(move || {
            let mut g = s
                .try_lock("job", Duration::from_millis(100))
                .unwrap()
                .unwrap();
            write_byte(w);
            // The parent stops us here, past the lease, and continues us after taking over.
            assert!(read_byte(r2, Duration::from_secs(20)));
            assert!(!g.extend(LONG).unwrap(), "extend after losing the lock");
            assert!(!g.release().unwrap(), "release after losing the lock");
        })
    };
    assert!(read_byte(r, Duration::from_secs(10)));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child, libc::SIGSTOP) };
    let g = s
        .lock("job", LONG, Duration::from_secs(5))
        .unwrap()
        .expect("lease expired");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child, libc::SIGCONT) };
    write_byte(w2);
    assert_eq!(wait(child, Duration::from_secs(20)), Exit::Code(0));
    assert!(
        g.is_held().unwrap(),
        "the stalled process's release left us the lock"
    );
    for fd in [r, w, r2, w2] {
        close(fd);
    }
}

/// Four processes miss the same key at the same moment: `compute` runs once in all of them.
fn cache_stampede_one_compute_across_processes() {
    const WORKERS: usize = 4;
    let s = store();
    let (r, w) = pipe();
    let pids: Vec<_> = (0..WORKERS)
        .map(|_| {
            let s = s.clone();
            spawn(move || {
                let c = Cache::new(&s, "hot").unwrap();
                assert!(read_byte(r, Duration::from_secs(10)), "start signal");
                let v = c.get_or_compute(b"page", LONG, || {
                    s.incr(b"computes", 1, None).unwrap();
                    std::thread::sleep(Duration::from_millis(150));
                    Ok::<_, std::io::Error>(b"rendered".to_vec())
                });
                assert_eq!(v.unwrap(), b"rendered");
            })
        })
        .collect();
    for _ in 0..WORKERS {
        write_byte(w);
    }
    for pid in pids {
        assert_eq!(wait(pid, Duration::from_secs(30)), Exit::Code(0));
    }
    assert_eq!(read_i64(&s, b"computes"), 1);
    let st = Cache::new(&s, "hot").unwrap().stats();
    assert_eq!((st.misses, st.hits), (1, WORKERS as u64 - 1));
    close(r);
    close(w);
}

/// The process computing a value is SIGKILLed mid-compute: a waiter takes over at once and
/// computes it. With a stalled (stopped) filler, the waiter takes over after the lease.
fn cache_filler_sigkilled_is_taken_over() {
    for stall in [false, true] {
        let s = store();
        let (r, w) = pipe();
        let child = {
            let s = s.clone();
            spawn(move || {
                let c = Cache::new(&s, "k")
                    .unwrap()
                    .lease(Duration::from_millis(200));
                let _ = c.get_or_compute(b"key", LONG, || {
                    write_byte(w);
                    park();
                    Ok::<_, std::io::Error>(b"never".to_vec())
                });
            })
        };
        assert!(
            read_byte(r, Duration::from_secs(10)),
            "child did not start computing"
        );
        if stall {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child, libc::SIGSTOP) };
        } else {
            kill(child);
        }
        let c = Cache::new(&s, "k").unwrap().wait(Duration::from_secs(5));
        let t = Instant::now();
        let v = c.get_or_compute(b"key", LONG, || Ok::<_, std::io::Error>(b"mine".to_vec()));
        assert_eq!(v.unwrap(), b"mine");
        if stall {
            assert!(
                t.elapsed() >= Duration::from_millis(100),
                "waited for the lease"
            );
            kill(child);
        } else {
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "dead filler taken over at once"
            );
        }
        let st = c.stats();
        // Both processes ran `compute` (the counters are shared): the killed one and us.
        assert_eq!((st.misses, st.timeouts), (2, 0));
        close(r);
        close(w);
    }
}

/// Four processes hammer one client: exactly `limit` requests are allowed in total, for each
/// algorithm (the windows and the emission interval are far longer than the test).
fn rate_limits_exact_across_processes() {
    const WORKERS: usize = 4;
    const LIMIT: u64 = 50;
    let s = store();
    let hour = Duration::from_secs(3600);
    let limiters = [
        RateLimiter::fixed_window(&s, "fixed", LIMIT, hour).unwrap(),
        RateLimiter::sliding_window(&s, "sliding", LIMIT, hour).unwrap(),
        RateLimiter::gcra(&s, "gcra", 1, hour, LIMIT).unwrap(),
    ];
    for (i, rl) in limiters.iter().enumerate() {
        let key = format!("allowed-{i}");
        let pids: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (s, rl, key) = (s.clone(), rl.clone(), key.clone());
                spawn(move || {
                    for _ in 0..40 {
                        let d = rl.check(b"10.0.0.1").unwrap();
                        if d.allowed {
                            s.incr(key.as_bytes(), 1, None).unwrap();
                        } else {
                            assert_eq!(d.remaining, 0);
                            assert!(d.retry_after > Duration::ZERO);
                        }
                    }
                })
            })
            .collect();
        for pid in pids {
            assert_eq!(wait(pid, Duration::from_secs(30)), Exit::Code(0));
        }
        assert_eq!(read_i64(&s, key.as_bytes()), LIMIT as i64, "limiter {i}");
    }
}

/// Three workers register and raise a gauge; one is SIGKILLed: the next reader reaps it, its
/// contribution disappears, it leaves the list, and its slot is reused from zero.
fn crashed_worker_gauges_disappear() {
    let s = store();
    let reg = Workers::new(&s, "http", 8).unwrap();
    let (r, w) = pipe();
    let pids: Vec<_> = (0..3)
        .map(|i| {
            let reg = reg.clone();
            spawn(move || {
                let me = reg.register(&format!("worker-{i}")).unwrap();
                me.gauge("conns").unwrap().add(5 + i).unwrap();
                write_byte(w);
                park();
            })
        })
        .collect();
    for _ in 0..3 {
        assert!(
            read_byte(r, Duration::from_secs(10)),
            "worker did not register"
        );
    }
    assert_eq!(reg.gauge_total("conns").unwrap(), 5 + 6 + 7);
    assert_eq!(reg.list().unwrap().len(), 3);
    let victim = pids[1];
    kill_leaving_zombie(victim); // exited but not yet reaped by its parent: dead all the same
    assert_eq!(
        reg.gauge_total("conns").unwrap(),
        5 + 7,
        "reaped by the reader"
    );
    let live: Vec<u32> = reg.list().unwrap().iter().map(|w| w.pid).collect();
    assert!(!live.contains(&(victim as u32)));
    assert_eq!(live.len(), 2);
    assert_eq!(
        wait(victim, Duration::from_secs(10)),
        Exit::Signal(libc::SIGKILL)
    );
    // The freed slot is reused, from zero.
    let me = reg.register("parent").unwrap();
    assert_eq!(me.gauge("conns").unwrap().get(), 0);
    for pid in [pids[0], pids[2]] {
        kill(pid);
    }
    assert_eq!(reg.reap().unwrap(), 2, "explicit reap of the other two");
    assert_eq!(reg.gauge_total("conns").unwrap(), 0);
    assert_eq!(reg.list().unwrap().len(), 1);
    close(r);
    close(w);
}

/// A child forked after its parent registered cannot update the parent's gauges, and dropping
/// the inherited registration does not deregister the parent.
fn forked_child_cannot_use_parent_registration() {
    let s = store();
    let reg = Workers::new(&s, "pre", 4).unwrap();
    let me = reg.register("parent").unwrap();
    let gauge = me.gauge("g").unwrap();
    gauge.add(1).unwrap();
    let lock = s.try_lock("parent-lock", LONG).unwrap().unwrap();
    // Captured by reference: the parent keeps its own registration and guard.
    let (mut me, mut lock) = (Some(me), Some(lock));
    let child = spawn(|| {
        assert!(matches!(gauge.add(1), Err(Error::NotOwner { .. })));
        drop(me.take()); // must not deregister the parent
        drop(lock.take()); // must not release the parent's lock
        let c = Cache::new(&s, "x").unwrap();
        let v: Result<Vec<u8>, CacheError<std::io::Error>> =
            c.get_or_compute(b"k", LONG, || Ok(b"v".to_vec()));
        assert_eq!(v.unwrap(), b"v");
    });
    assert_eq!(wait(child, Duration::from_secs(10)), Exit::Code(0));
    assert_eq!(reg.gauge_total("g").unwrap(), 1);
    assert_eq!(reg.list().unwrap().len(), 1);
    assert!(
        s.lock_holder("parent-lock").unwrap().is_some(),
        "the child's drop left the parent's lock held"
    );
    assert!(lock.take().unwrap().release().unwrap());
    assert!(me.take().unwrap().deregister().unwrap());
}
