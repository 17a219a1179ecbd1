//! Single-process cost of each operation, next to in-process baselines measured in the same run.
//!
//! ```text
//! cargo bench --bench ops                 # full run
//! cargo bench --bench ops -- --test       # smoke: each benchmark once
//! ```
//!
//! Keys are 16 bytes, values 256 bytes, the table holds 1 000 keys (fits in L2).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use criterion::{criterion_group, criterion_main, Criterion};
use shmstate::{Config, Store};

const KEYS: usize = 1_000;

fn key(i: usize) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(format!("key:{i:012}").as_bytes());
    k
}

/// An `AtomicI64` in a `MAP_SHARED` anonymous page: the hardware floor for `Counter::add`.
struct SharedAtomic(*mut libc::c_void);

impl SharedAtomic {
    fn new() -> Self {
        // SAFETY: a fresh anonymous shared mapping of one page.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        SharedAtomic(p)
    }
    fn get(&self) -> &AtomicI64 {
        // SAFETY: page-aligned, mapped until drop, accessed only atomically.
        unsafe { &*(self.0 as *const AtomicI64) }
    }
}

impl Drop for SharedAtomic {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no reference outlives self.
        unsafe { libc::munmap(self.0, 4096) };
    }
}

fn ops(c: &mut Criterion) {
    let value = vec![0xabu8; 256];
    let store = Store::anonymous(
        &Config::new()
            .capacity(KEYS as u64 * 2)
            .max_key_len(16)
            .max_value_len(256),
    )
    .unwrap();
    let keys: Vec<[u8; 16]> = (0..KEYS).map(key).collect();
    for k in &keys {
        store.set(k, &value, None).unwrap();
    }
    let mut baseline: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for k in &keys {
        baseline.insert(k.to_vec(), value.clone());
    }
    let baseline = Mutex::new(baseline);

    let mut g = c.benchmark_group("single_process");

    let counter = store.counter("bench").unwrap();
    g.bench_function("counter_add", |b| b.iter(|| black_box(counter.add(1))));
    let shared = SharedAtomic::new();
    g.bench_function("baseline_atomic_fetch_add_shared", |b| {
        b.iter(|| black_box(shared.get().fetch_add(1, Ordering::Relaxed)))
    });

    let mut i = 0usize;
    let mut buf = Vec::with_capacity(256);
    g.bench_function("get_into_hit_16B_256B", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(store.get_into(&keys[i], &mut buf).unwrap())
        })
    });
    g.bench_function("get_hit_alloc_16B_256B", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(store.get(&keys[i]).unwrap())
        })
    });
    g.bench_function("baseline_mutex_hashmap_get_clone", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(baseline.lock().unwrap().get(&keys[i][..]).cloned())
        })
    });
    let missing: Vec<[u8; 16]> = (KEYS..2 * KEYS).map(key).collect();
    g.bench_function("get_miss", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(store.get_into(&missing[i], &mut buf).unwrap())
        })
    });
    g.bench_function("set_update_256B", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            store.set(&keys[i], &value, None).unwrap()
        })
    });
    g.bench_function("baseline_mutex_hashmap_insert", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(
                baseline
                    .lock()
                    .unwrap()
                    .insert(keys[i].to_vec(), value.clone()),
            )
        })
    });
    g.bench_function("set_insert_then_delete_256B", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            store.set(&missing[i], &value, None).unwrap();
            store.delete(&missing[i]).unwrap()
        })
    });
    let incr_keys: Vec<[u8; 16]> = (0..KEYS).map(|i| key(3 * KEYS + i)).collect();
    g.bench_function("incr", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(store.incr(&incr_keys[i], 1, None).unwrap())
        })
    });
    g.bench_function("compare_and_swap_256B", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(
                store
                    .compare_and_swap(&keys[i], Some(&value), Some(&value), None)
                    .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, ops);
criterion_main!(benches);
