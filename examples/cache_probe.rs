//! Cache lines a `get` hit misses on a table far larger than the cache: the workload that
//! `scripts/cache_misses.sh` runs under cachegrind (this VM exposes no hardware counters).
//!
//! ```text
//! cargo run --release --example cache_probe -- <shm|hashmap> <entries> <value bytes> <gets>
//! ```
//!
//! Fills a table with `entries` 16-byte keys, then reads `gets` of them in a random order,
//! copying each value out (`get_into` for shmstate; a lookup plus copy in a `HashMap` for the
//! in-process baseline). The script runs it twice, with `gets` = 0 and with `gets` = N, and
//! divides the difference in misses by N, so the fill is not counted.

use std::collections::HashMap;
use std::hint::black_box;
use std::process::ExitCode;

use shmstate::{Config, Store};

fn key(i: u64) -> [u8; 16] {
    let mut k = *b"key:000000000000";
    let mut n = i;
    for b in k[4..].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

/// xorshift64*: a fixed sequence, the same in both runs of the script.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| args.get(i).and_then(|s| s.parse::<u64>().ok());
    let (Some(kind), Some(entries), Some(value_len), Some(gets)) =
        (args.first(), num(1), num(2), num(3))
    else {
        eprintln!("usage: cache_probe <shm|hashmap> <entries> <value bytes> <gets>");
        return ExitCode::from(2);
    };
    if entries == 0 || value_len > 1 << 20 {
        eprintln!("cache_probe: entries must be at least 1, value bytes at most 1 MiB");
        return ExitCode::from(2);
    }
    let value = vec![0xa5u8; value_len as usize];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(value.len());
    match kind.as_str() {
        "shm" => {
            let cfg = Config::new()
                .capacity(entries)
                .max_key_len(16)
                .max_value_len(value_len as u32);
            let store = match Store::anonymous(&cfg) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cache_probe: {e}");
                    return ExitCode::FAILURE;
                }
            };
            for i in 0..entries {
                if let Err(e) = store.set(&key(i), &value, None) {
                    eprintln!("cache_probe: {e}");
                    return ExitCode::FAILURE;
                }
            }
            let mut hits = 0u64;
            for _ in 0..gets {
                let k = key(rng.below(entries));
                hits += u64::from(store.get_into(black_box(&k), &mut out).unwrap_or(false));
            }
            assert_eq!(hits, gets, "every key was inserted");
        }
        "hashmap" => {
            let mut map: HashMap<Vec<u8>, Vec<u8>> = HashMap::with_capacity(entries as usize);
            for i in 0..entries {
                map.insert(key(i).to_vec(), value.clone());
            }
            let map = std::sync::Mutex::new(map);
            let mut hits = 0u64;
            for _ in 0..gets {
                let k = key(rng.below(entries));
                let m = map.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(v) = m.get(black_box(&k[..])) {
                    out.clear();
                    out.extend_from_slice(v);
                    hits += 1;
                }
            }
            assert_eq!(hits, gets, "every key was inserted");
        }
        other => {
            eprintln!("cache_probe: unknown kind {other:?} (shm or hashmap)");
            return ExitCode::from(2);
        }
    }
    black_box(&out);
    ExitCode::SUCCESS
}
