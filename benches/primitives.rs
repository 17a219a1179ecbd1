//! Single-process cost of the coordination primitives' hot paths. The Redis equivalents
//! (`SET NX PX` + Lua release, `INCR` + `EXPIRE`, `CL.THROTTLE`, `GET` on a cached key) are
//! measured by the Redis-baseline harness, next to these names.
//!
//! ```text
//! cargo bench --bench primitives                 # full run
//! cargo bench --bench primitives -- --test       # smoke: each benchmark once
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use shmstate::{Cache, Config, RateLimiter, Store, Workers};

fn primitives(c: &mut Criterion) {
    let store = Store::anonymous(&Config::new().capacity(10_000).max_counters(64)).unwrap();
    let lease = Duration::from_secs(30);
    let mut g = c.benchmark_group("primitives");

    g.bench_function("try_lock + release", |b| {
        b.iter(|| {
            let guard = store.try_lock("bench", lease).unwrap().unwrap();
            black_box(guard.fence());
            guard.release().unwrap()
        })
    });

    let window = Duration::from_secs(3600);
    let huge = u64::MAX / 4;
    let fixed = RateLimiter::fixed_window(&store, "fixed", huge, window).unwrap();
    let sliding = RateLimiter::sliding_window(&store, "sliding", huge, window).unwrap();
    let gcra =
        RateLimiter::gcra(&store, "gcra", 1_000_000, Duration::from_secs(1), 1_000_000).unwrap();
    g.bench_function("rate limit check: fixed window", |b| {
        b.iter(|| black_box(fixed.check(b"10.0.0.1").unwrap()))
    });
    g.bench_function("rate limit check: sliding window", |b| {
        b.iter(|| black_box(sliding.check(b"10.0.0.1").unwrap()))
    });
    g.bench_function("rate limit check: gcra", |b| {
        b.iter(|| black_box(gcra.check(b"10.0.0.1").unwrap()))
    });

    let cache = Cache::new(&store, "bench").unwrap();
    let value = vec![0xabu8; 200];
    cache
        .get_or_compute(b"page:1", window, || Ok::<_, std::io::Error>(value.clone()))
        .unwrap();
    g.bench_function("get_or_compute hit", |b| {
        b.iter(|| {
            black_box(
                cache
                    .get_or_compute(b"page:1", window, || -> Result<Vec<u8>, std::io::Error> {
                        unreachable!("hit")
                    })
                    .unwrap(),
            )
        })
    });

    let workers = Workers::new(&store, "bench", 8).unwrap();
    let me = workers.register("bench").unwrap();
    let conns = me.gauge("conns").unwrap();
    g.bench_function("gauge add", |b| b.iter(|| conns.add(black_box(1)).unwrap()));
    g.bench_function("gauge total (1 worker)", |b| {
        b.iter(|| black_box(workers.gauge_total("conns").unwrap()))
    });
    g.finish();
}

criterion_group!(benches, primitives);
criterion_main!(benches);
