//! Single-process cost of the coordination primitives' hot paths, next to their Redis
//! equivalents measured in the same run against a real `redis-server` on a unix socket, pinned
//! to the benchmark's own core (Redis's best placement on this kind of machine):
//! `SET NX PX` + Lua compare-and-delete, `INCR` + `PEXPIRE NX` in one `MULTI`, a Lua GCRA, and
//! `GET` of a cached key.
//!
//! ```text
//! cargo bench --bench primitives                 # full run
//! cargo bench --bench primitives -- --test       # smoke: each benchmark once
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use shmstate::{Cache, Config, RateLimiter, Store, Workers};

mod support;

use support::{pin, RedisServer};

/// Release a lock only if we still own it (the Redis docs' pattern).
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// GCRA in Lua: ARGV = now_ms, emission interval ms, burst tolerance ms. Returns 1 if allowed.
const GCRA: &str = "local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1]) \
local now = tonumber(ARGV[1]) local t = tonumber(ARGV[2]) local tau = tonumber(ARGV[3]) \
if tat < now then tat = now end \
if tat - now > tau then return 0 end \
redis.call('SET', KEYS[1], tat + t, 'PX', tau + t) return 1";

fn redis_equivalents(c: &mut Criterion, server: &RedisServer) {
    pin(server.pid(), 0);
    let mut con = server.connect_unix().expect("redis connection");
    let mut g = c.benchmark_group("primitives_redis");
    let mut token = 0u64;
    g.bench_function("try_lock + release", |b| {
        b.iter(|| {
            token += 1;
            let ok: Option<String> = redis::cmd("SET")
                .arg("lock:bench")
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(30_000)
                .query(&mut con)
                .expect("SET NX");
            let released: i64 = redis::cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg("lock:bench")
                .arg(token)
                .query(&mut con)
                .expect("EVAL");
            black_box((ok, released))
        })
    });
    g.bench_function("rate limit check: fixed window", |b| {
        b.iter(|| {
            let (n, _): (i64, i64) = redis::pipe()
                .atomic()
                .cmd("INCR")
                .arg("rl:10.0.0.1")
                .cmd("PEXPIRE")
                .arg("rl:10.0.0.1")
                .arg(3_600_000)
                .arg("NX")
                .query(&mut con)
                .expect("MULTI");
            black_box(n)
        })
    });
    g.bench_function("rate limit check: gcra", |b| {
        b.iter(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let ok: i64 = redis::cmd("EVAL")
                .arg(GCRA)
                .arg(1)
                .arg("gcra:10.0.0.1")
                .arg(now)
                .arg(0)
                .arg(1_000_000)
                .query(&mut con)
                .expect("EVAL");
            black_box(ok)
        })
    });
    let _: () = redis::cmd("SET")
        .arg("cache:page:1")
        .arg(vec![0xabu8; 200])
        .query(&mut con)
        .expect("SET");
    g.bench_function("get_or_compute hit", |b| {
        b.iter(|| {
            let v: Option<Vec<u8>> = redis::cmd("GET")
                .arg("cache:page:1")
                .query(&mut con)
                .expect("GET");
            black_box(v)
        })
    });
    g.finish();
}

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

fn main() {
    let redis = RedisServer::start(false);
    pin(0, 0);
    let mut c = Criterion::default().configure_from_args();
    primitives(&mut c);
    match &redis {
        Ok(server) => redis_equivalents(&mut c, server),
        Err(why) => println!("skipping the Redis equivalents: {why}"),
    }
    c.final_summary();
}
