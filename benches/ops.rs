//! Single-process cost of each operation, with the alternatives measured in the same run:
//! in-process lower bounds (`AtomicI64::fetch_add`, `Mutex<HashMap>`, `DashMap`), a master
//! process owning a `HashMap` behind a Unix socket, and a real Redis over a unix socket and TCP
//! loopback, each with the server on the same core as the client and on the other core.
//!
//! ```text
//! cargo bench --bench ops                      # full run (about 6 minutes)
//! cargo bench --bench ops -- --test            # smoke: each benchmark once
//! python3 scripts/bench_table.py               # the markdown table of the last run
//! ```
//!
//! The benchmark process pins itself to CPU 0. Keys are 16 bytes.

mod support;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use criterion::{BenchmarkId, Criterion, Throughput};
use dashmap::DashMap;
use shmstate::{Config, Store};
use support::{key16, pin, Coordinator, RedisServer, SharedPage};

/// Keys in the small table (fits in L2 for 16 and 256-byte values).
const SMALL: usize = 1_000;
/// Keys in the large table.
const LARGE: usize = 1_000_000;
/// Step between consecutive keys: touches a different key (and cache line) every time.
const STEP: usize = 7919;

struct Tables {
    keys: Vec<[u8; 16]>,
    missing: Vec<[u8; 16]>,
    value: Vec<u8>,
    store: Store,
    mutex: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    dash: DashMap<Vec<u8>, Vec<u8>>,
}

fn tables(n: usize, value_len: usize, with_baselines: bool) -> Tables {
    let value = vec![0xabu8; value_len];
    // Room for the keys (and the inserts of set_insert_delete) with their values in the heap.
    let per_entry = value_len as u64 + 256;
    let store = Store::anonymous(
        &Config::new()
            .capacity(n as u64 * 2)
            .memory((n as u64 * 2 * per_entry).max(64 << 20))
            .max_key_len(16)
            .max_value_len(value_len as u32),
    )
    .expect("store");
    let keys: Vec<_> = (0..n).map(key16).collect();
    let missing: Vec<_> = (n..2 * n).map(key16).collect();
    let mutex = Mutex::new(HashMap::new());
    let dash = DashMap::new();
    for k in &keys {
        store.set(k, &value, None).expect("fill");
        if with_baselines {
            mutex.lock().unwrap().insert(k.to_vec(), value.clone());
            dash.insert(k.to_vec(), value.clone());
        }
    }
    Tables {
        keys,
        missing,
        value,
        store,
        mutex,
        dash,
    }
}

fn table_group(c: &mut Criterion, name: &str, t: &Tables, writes: bool, baselines: bool) {
    let n = t.keys.len();
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    let mut next = move || {
        i = (i + STEP) % n;
        i
    };
    let mut buf = Vec::with_capacity(t.value.len());
    g.bench_function("get_hit", |b| {
        b.iter(|| black_box(t.store.get_into(&t.keys[next()], &mut buf).unwrap()))
    });
    g.bench_function("get_miss", |b| {
        b.iter(|| black_box(t.store.get_into(&t.missing[next()], &mut buf).unwrap()))
    });
    g.bench_function("set_update", |b| {
        b.iter(|| t.store.set(&t.keys[next()], &t.value, None).unwrap())
    });
    if writes {
        g.bench_function("set_insert_delete", |b| {
            b.iter(|| {
                let k = &t.missing[next()];
                t.store.set(k, &t.value, None).unwrap();
                t.store.delete(k).unwrap()
            })
        });
        g.bench_function("compare_and_swap", |b| {
            b.iter(|| {
                black_box(
                    t.store
                        .compare_and_swap(&t.keys[next()], Some(&t.value), Some(&t.value), None)
                        .unwrap(),
                )
            })
        });
    }
    if baselines {
        g.bench_function("baseline_mutex_hashmap_get_ref", |b| {
            b.iter(|| {
                black_box(
                    t.mutex
                        .lock()
                        .unwrap()
                        .get(&t.keys[next()][..])
                        .map(Vec::len),
                )
            })
        });
        g.bench_function("baseline_mutex_hashmap_get_copy", |b| {
            b.iter(|| {
                let m = t.mutex.lock().unwrap();
                buf.clear();
                if let Some(v) = m.get(&t.keys[next()][..]) {
                    buf.extend_from_slice(v);
                }
                black_box(buf.len())
            })
        });
        g.bench_function("baseline_mutex_hashmap_insert", |b| {
            b.iter(|| {
                black_box(
                    t.mutex
                        .lock()
                        .unwrap()
                        .insert(t.keys[next()].to_vec(), t.value.clone()),
                )
            })
        });
        g.bench_function("baseline_dashmap_get_copy", |b| {
            b.iter(|| {
                buf.clear();
                if let Some(v) = t.dash.get(&t.keys[next()][..]) {
                    buf.extend_from_slice(&v);
                }
                black_box(buf.len())
            })
        });
        g.bench_function("baseline_dashmap_insert", |b| {
            b.iter(|| black_box(t.dash.insert(t.keys[next()].to_vec(), t.value.clone())))
        });
    }
    g.finish();
}

fn counters(c: &mut Criterion) {
    let store = Store::anonymous(&Config::new()).expect("store");
    let counter = store.counter("bench").expect("counter");
    let page = SharedPage::new();
    let mut g = c.benchmark_group("counter");
    g.bench_function("counter_add", |b| b.iter(|| black_box(counter.add(1))));
    g.bench_function("baseline_atomic_fetch_add_shared", |b| {
        b.iter(|| black_box(page.word(0).fetch_add(1, Ordering::Relaxed)))
    });
    let keys: Vec<_> = (0..SMALL).map(key16).collect();
    let mut i = 0;
    g.bench_function("incr", |b| {
        b.iter(|| {
            i = (i + STEP) % SMALL;
            black_box(store.incr(&keys[i], 1, None).unwrap())
        })
    });
    g.finish();
}

/// Redis and the coordinator process, with the server on the client's core (0) and on the
/// other one (1). Waking a process on the other core costs tens of microseconds on this kind
/// of VM, so the placement changes the answer more than the transport does.
fn remote(c: &mut Criterion, coord: &Coordinator, redis: Result<&RedisServer, &str>) {
    let value = vec![0xabu8; 256];
    let keys: Vec<_> = (0..SMALL).map(key16).collect();
    let mut g = c.benchmark_group("remote_v256");
    let placements: &[(&str, usize)] = if support::cpus() > 1 {
        &[("same_core", 0), ("other_core", 1)]
    } else {
        &[("same_core", 0)]
    };
    let mut cc = coord.connect();
    for k in &keys {
        cc.set(k, &value);
    }
    for &(place, cpu) in placements {
        pin(coord.pid(), cpu);
        let mut i = 0;
        g.bench_function(BenchmarkId::new("baseline_coordinator_get", place), |b| {
            b.iter(|| {
                i = (i + STEP) % SMALL;
                black_box(cc.get(&keys[i]))
            })
        });
        g.bench_function(BenchmarkId::new("baseline_coordinator_set", place), |b| {
            b.iter(|| {
                i = (i + STEP) % SMALL;
                cc.set(&keys[i], &value)
            })
        });
    }
    match redis {
        Err(why) => println!("skipping the Redis baselines: {why}"),
        Ok(server) => {
            let mut unix = server.connect_unix().expect("redis unix connection");
            let mut tcp = server.connect_tcp().expect("redis tcp connection");
            for k in &keys {
                let _: () = redis::cmd("SET")
                    .arg(&k[..])
                    .arg(&value[..])
                    .query(&mut unix)
                    .expect("SET");
            }
            for &(place, cpu) in placements {
                pin(server.pid(), cpu);
                let mut i = 0;
                for (transport, con) in [("unix", &mut unix), ("tcp", &mut tcp)] {
                    g.bench_function(
                        BenchmarkId::new(format!("baseline_redis_{transport}_get"), place),
                        |b| {
                            b.iter(|| {
                                i = (i + STEP) % SMALL;
                                let v: Option<Vec<u8>> =
                                    redis::cmd("GET").arg(&keys[i][..]).query(con).expect("GET");
                                black_box(v)
                            })
                        },
                    );
                }
                g.bench_function(BenchmarkId::new("baseline_redis_unix_set", place), |b| {
                    b.iter(|| {
                        i = (i + STEP) % SMALL;
                        let _: () = redis::cmd("SET")
                            .arg(&keys[i][..])
                            .arg(&value[..])
                            .query(&mut unix)
                            .expect("SET");
                    })
                });
                g.bench_function(BenchmarkId::new("baseline_redis_unix_incr", place), |b| {
                    b.iter(|| {
                        i = (i + STEP) % SMALL;
                        let n: i64 = redis::cmd("INCR")
                            .arg(&b"counter"[..])
                            .query(&mut unix)
                            .expect("INCR");
                        black_box(n)
                    })
                });
            }
        }
    }
    g.finish();
}

fn main() {
    // Fork the coordinator while the process is still single-threaded.
    let coord = Coordinator::spawn();
    let redis = RedisServer::start(true);
    pin(0, 0);
    let mut c = Criterion::default().configure_from_args();

    counters(&mut c);
    for value_len in [16usize, 256, 4096, 65536] {
        let t = tables(SMALL, value_len, true);
        table_group(&mut c, &format!("small_v{value_len}"), &t, true, true);
    }
    {
        let t = tables(LARGE, 256, true);
        table_group(&mut c, "large_v256", &t, false, true);
    }
    remote(&mut c, &coord, redis.as_ref().map_err(String::as_str));

    c.final_summary();
}
