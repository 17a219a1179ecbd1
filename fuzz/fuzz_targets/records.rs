//! Hostile records of the coordination primitives: a store where a leased lock, three rate
//! limiters, a namespace, a worker registry and a cache have written their records, whose values (and counters)
//! the fuzzer then replaces, patches, truncates or deletes, as a foreign writer of the reserved
//! key space could. Every primitive used afterwards must return `Ok` or an error
//! (`BadRecord` and the like): never a panic or a hang.

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmstate::{Cache, Clock, Config, ManualClock, Namespace, RateLimiter, Store, Workers};

#[derive(Debug, Arbitrary)]
enum Edit {
    Replace {
        key: u8,
        value: Vec<u8>,
    },
    Patch {
        key: u8,
        offset: u16,
        bytes: Vec<u8>,
    },
    Truncate {
        key: u8,
        len: u16,
    },
    Delete {
        key: u8,
    },
    Counter {
        index: u8,
        value: i64,
    },
    /// Sets one aligned 64-bit word of a record (most record fields are u64).
    Word {
        key: u8,
        index: u8,
        value: u64,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    edits: Vec<Edit>,
    steps: Vec<u16>,
}

/// Uses every primitive once; results are ignored.
fn use_primitives(s: &Store, clock: &ManualClock) {
    let c = || Clock::Manual(clock.clone());
    let _ = s.lock_holder("job");
    if let Ok(Some(mut g)) = s.try_lock("other", Duration::from_secs(5)) {
        let _ = g.fence();
        let _ = g.token();
        let _ = g.lease_left();
        let _ = g.is_held();
        let _ = g.extend(Duration::from_secs(6));
        let _ = g.release();
    }
    if let Ok(rl) = RateLimiter::fixed_window(s, "fw", 5, Duration::from_secs(1)) {
        let rl = rl.with_clock(c());
        let _ = rl.check(b"client");
        let _ = rl.check_n(b"client", 2);
    }
    if let Ok(rl) = RateLimiter::sliding_window(s, "sw", 5, Duration::from_secs(1)) {
        let rl = rl.with_clock(c());
        let _ = rl.check(b"client");
        let _ = rl.check_n(b"client", 3);
    }
    if let Ok(rl) = RateLimiter::gcra(s, "gc", 5, Duration::from_secs(1), 3) {
        let rl = rl.with_clock(c());
        let _ = rl.check(b"client");
        let _ = rl.check_n(b"client", 2);
    }
    if let Ok(ns) = Namespace::new(s, "ns") {
        let _ = ns.generation();
        let _ = ns.set(b"a", b"1", None);
        let _ = ns.get(b"a");
        let _ = ns.key(b"b");
        let _ = ns.delete(b"b");
    }
    if let Ok(reg) = Workers::new(s, "wk", 4) {
        let _ = reg.list();
        let _ = reg.gauge_total("g");
        let _ = reg.gauge_by_worker("g");
        let _ = reg.reap();
        if let Ok(w) = reg.register("fuzz") {
            if let Ok(g) = w.gauge("g") {
                let _ = g.add(1);
                let _ = g.get();
            }
            let _ = reg.gauge_total("g");
            let _ = w.deregister();
        }
    }
    if let Ok(cache) = Cache::new(s, "cache") {
        let cache = cache
            .wait(Duration::from_millis(5))
            .lease(Duration::from_secs(1))
            .stale_for(Duration::from_secs(1))
            .with_clock(c());
        let _ = cache.get_or_compute(b"page", Duration::from_secs(2), || {
            Ok::<_, ()>(b"rendered".to_vec())
        });
        let _ = cache.get(b"page");
        let _ = cache.stats();
        let _ = cache.lock_key_for(b"page");
    }
}

fuzz_target!(|input: Input| {
    let cfg = Config::new()
        .capacity(256)
        .shards(2)
        .max_key_len(128)
        .max_value_len(512)
        .max_counters(64)
        .lock_timeout(Duration::from_millis(50));
    let clock = ManualClock::new(1_700_000_000_000);
    let s = Store::anonymous(&cfg)
        .expect("anonymous store")
        .with_clock(Clock::Manual(clock.clone()));
    // A held lock whose record gets edited, released at the end.
    let held = s
        .try_lock("job", Duration::from_secs(10))
        .expect("try_lock");
    // A registered worker whose registry slot and gauge get edited, deregistered at the end.
    let registry = Workers::new(&s, "wk", 4).expect("registry");
    let worker = registry.register("kept").expect("register");
    worker.gauge("g").expect("gauge").add(3).expect("gauge add");
    use_primitives(&s, &clock);
    if let Ok(ns) = Namespace::new(&s, "ns") {
        let _ = ns.invalidate();
        let _ = ns.set(b"c", b"2", None);
    }

    let mut keys = Vec::new();
    let mut cursor = Some(0);
    while let Some(c) = cursor {
        let (page, next) = s.scan(c, b"", 64).expect("scan");
        keys.extend(page);
        cursor = next;
    }
    keys.sort();
    let counters: Vec<String> = s
        .counters()
        .expect("counters")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for e in input.edits.iter().take(32) {
        match e {
            Edit::Counter { index, value } => {
                if let Some(name) = counters.get(usize::from(*index) % counters.len().max(1)) {
                    s.counter(name).expect("counter").set(*value);
                }
            }
            Edit::Replace { key, .. }
            | Edit::Word { key, .. }
            | Edit::Patch { key, .. }
            | Edit::Truncate { key, .. }
            | Edit::Delete { key } => {
                let Some(k) = keys.get(usize::from(*key) % keys.len().max(1)) else {
                    continue;
                };
                let mut v = s.get(k).expect("get").unwrap_or_default();
                match e {
                    Edit::Replace { value, .. } => v = value.clone(),
                    Edit::Patch { offset, bytes, .. } => {
                        let off = usize::from(*offset) % (v.len() + 1);
                        for (i, b) in bytes.iter().enumerate() {
                            match v.get_mut(off + i) {
                                Some(x) => *x = *b,
                                None => v.push(*b),
                            }
                        }
                    }
                    Edit::Truncate { len, .. } => v.truncate(usize::from(*len)),
                    Edit::Word { index, value, .. } => {
                        let words = v.len() / 8;
                        if words == 0 {
                            continue;
                        }
                        let at = usize::from(*index) % words * 8;
                        v[at..at + 8].copy_from_slice(&value.to_le_bytes());
                    }
                    _ => {
                        s.delete(k).expect("delete");
                        continue;
                    }
                }
                v.truncate(512);
                s.set(k, &v, None).expect("set");
            }
        }
    }

    use_primitives(&s, &clock);
    if let Some(g) = &held {
        let _ = g.is_held();
        let _ = g.lease_left();
    }
    for ms in input.steps.iter().take(4) {
        clock.advance(Duration::from_millis(u64::from(*ms) * 10));
        use_primitives(&s, &clock);
    }
    if let Some(g) = held {
        let _ = g.release();
    }
    let _ = worker.deregister();
    if let Ok(ns) = Namespace::new(&s, "ns") {
        let _ = ns.purge_old_generations();
        let _ = ns.delete_prefix(b"");
        let _ = ns.invalidate();
    }
    use_primitives(&s, &clock);
    let rep = s.verify().expect("verify");
    assert!(rep.is_ok(), "{rep}");
});
