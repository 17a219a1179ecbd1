//! The kill -9 torture soak, for long runs: forked workers hammer a small hot keyset with every
//! operation and values of 1 byte to 64 KiB while the master SIGKILLs them at random (and,
//! built with the `failpoints` feature, also kills workers parked at a write point of the
//! table or the value heap while they hold a shard lock), forking a replacement each time. At
//! the end it checks that nothing but the killed workers' in-flight operations was lost or
//! corrupted, that counters are conserved, that `verify()` is clean, that no operation waited
//! long, that every armed failpoint was reached, and that deleting every key leaves the heap
//! entirely free; see `tests/common/torture.rs` for what exactly is checked. Exits 1 on any
//! violation.
//!
//! ```text
//! cargo run --release --features failpoints --example torture -- --seconds 600
//! cargo run --release --features failpoints --example torture -- --heap refuse --seconds 600
//! cargo run --release --features failpoints --example torture -- --heap evict --seconds 600
//! cargo run --release --example torture -- --workers 8 --kill-every-ms 20   # random kills only
//! cargo run --release --features failpoints --example torture -- --region file --seconds 600
//! ```

#[path = "../tests/common/forked.rs"]
#[allow(dead_code)]
mod forked;
#[path = "../tests/common/torture.rs"]
mod torture;

use std::time::Duration;

use shmstate::WhenFull;
use torture::{Backing, Heap, Params, MAX_WORKERS, NEAR_FULL_PAGES, PAGES_PER_VALUE};

const USAGE: &str = "\
usage: torture [--workers N] [--seconds S] [--max-ops N] [--keys K] [--kill-every-ms MS]
               [--seed N] [--shards N] [--max-hold-ms MS] [--max-wait-ms MS] [--no-targeted]
               [--region anonymous|file|named] [--clears] [--heap roomy|refuse|evict]
               [--heap-pages N] [--phase-ms MS] [--every-point]

  --workers N         worker processes (default 4, at most 64)
  --seconds S         how long to run (default 20)
  --max-ops N         stop after this many operations over all workers (default: no limit)
  --keys K            hot keys; few keys mean contended locks (default 16, at most 99)
  --kill-every-ms MS  mean interval between random SIGKILLs (default 50)
  --seed N            seed of every random choice (default: the process id)
  --shards N          shards of the store (default 4)
  --max-hold-ms MS    a worker parked at a failpoint holds its lock up to this long (default 20)
  --max-wait-ms MS    longest acceptable operation (default 2000)
  --no-targeted       random kills only, even when built with the failpoints feature
  --clears            workers also call clear() (incr and private keys, which a clear wipes,
                      are then left out)
  --heap H            roomy (default: every shard has room for every key at 64 KiB), refuse or
                      evict (a near-full heap: writes compact, reclaim expired entries, and are
                      refused with Full or evict, as WhenFull::Refuse / Evict)
  --heap-pages N      heap pages per shard of a near-full heap (default NEAR_FULL, at least MIN_PAGES)
  --every-point       park lock holders at every write point the run reaches (each step of the
                      heap's allocator too), not only the table's and the main heap steps
  --phase-ms MS       the mix of value lengths shifts (small, large, mixed) this often
                      (default 700)
  --region R          anonymous (default; workers inherit the mapping), file (a region file in
                      the temp directory) or named (a POSIX shm object): with file and named,
                      every worker opens the region itself after fork; removed at the end";

fn parse_args() -> Result<Params, String> {
    let mut heap: Option<WhenFull> = None;
    let mut heap_pages: Option<u32> = None;
    let mut p = Params {
        seed: std::process::id().into(),
        progress: Some(Duration::from_secs(10)),
        ..Params::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{}", usage());
            std::process::exit(0);
        }
        if flag == "--no-targeted" {
            p.targeted = false;
            continue;
        }
        if flag == "--clears" {
            p.clears = true;
            continue;
        }
        if flag == "--every-point" {
            p.every_point = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |what: &str| -> Result<u64, String> {
            value
                .parse::<u64>()
                .map_err(|_| format!("{what}: not a whole number: {value:?}"))
        };
        match flag.as_str() {
            "--workers" => p.workers = num("--workers")? as usize,
            "--seconds" => p.duration = Duration::from_secs(num("--seconds")?),
            "--max-ops" => p.max_ops = num("--max-ops")?,
            "--keys" => p.keys = num("--keys")? as usize,
            "--kill-every-ms" => p.kill_every = Duration::from_millis(num("--kill-every-ms")?),
            "--seed" => p.seed = num("--seed")?,
            "--shards" => {
                p.shards = u32::try_from(num("--shards")?).map_err(|_| "--shards: too large")?
            }
            "--max-hold-ms" => p.max_hold = Duration::from_millis(num("--max-hold-ms")?),
            "--max-wait-ms" => p.max_wait_bound = Duration::from_millis(num("--max-wait-ms")?),
            "--phase-ms" => p.phase = Duration::from_millis(num("--phase-ms")?),
            "--heap-pages" => {
                heap_pages = Some(
                    u32::try_from(num("--heap-pages")?).map_err(|_| "--heap-pages: too large")?,
                )
            }
            "--heap" => {
                heap = match value.as_str() {
                    "roomy" => None,
                    "refuse" => Some(WhenFull::Refuse),
                    "evict" => Some(WhenFull::Evict),
                    _ => return Err(format!("--heap: roomy, refuse or evict, not {value:?}")),
                }
            }
            "--region" => {
                let unique = format!("shmstate-torture-{}", std::process::id());
                p.backing = match value.as_str() {
                    "anonymous" => Backing::Anonymous,
                    "file" => Backing::File(std::env::temp_dir().join(unique + ".region")),
                    "named" => Backing::Named(format!("/{unique}")),
                    _ => return Err(format!("--region: anonymous, file or named, not {value:?}")),
                }
            }
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    if !(1..=MAX_WORKERS).contains(&p.workers) {
        return Err(format!("--workers must be between 1 and {MAX_WORKERS}"));
    }
    if !(1..=99).contains(&p.keys) {
        return Err("--keys must be between 1 and 99".into());
    }
    if p.kill_every.is_zero() {
        return Err("--kill-every-ms must be at least 1".into());
    }
    if p.shards == 0 {
        return Err("--shards must be at least 1".into());
    }
    if p.phase.is_zero() {
        return Err("--phase-ms must be at least 1".into());
    }
    if heap_pages.is_some_and(|n| n < 3 * PAGES_PER_VALUE) {
        return Err(format!(
            "--heap-pages must be at least {} (room for three 64 KiB values)",
            3 * PAGES_PER_VALUE
        ));
    }
    if let Some(policy) = heap {
        p.heap = match heap_pages {
            None => Heap::near_full(policy),
            Some(pages) => Heap::NearFull { policy, pages },
        };
    }
    Ok(p)
}

fn usage() -> String {
    USAGE
        .replace("NEAR_FULL", &NEAR_FULL_PAGES.to_string())
        .replace("MIN_PAGES", &(3 * PAGES_PER_VALUE).to_string())
}

fn main() {
    let p = match parse_args() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("torture: {e}\n{}", usage());
            std::process::exit(2);
        }
    };
    println!(
        "torture: {} workers, {} hot keys, {} shards, {:?} region, {:?}, size mix shifting every \
         {:?}{}, a random kill every ~{:?}, {}, seed {}",
        p.workers,
        p.keys,
        p.shards,
        p.backing,
        p.heap,
        p.phase,
        if p.clears { ", with clear()" } else { "" },
        p.kill_every,
        if p.targeted && p.every_point {
            "and lock holders parked at every failpoint and killed"
        } else if p.targeted {
            "and lock holders parked at failpoints and killed"
        } else if cfg!(feature = "failpoints") {
            "random kills only (--no-targeted)"
        } else {
            "random kills only (built without the failpoints feature)"
        },
        p.seed
    );
    let rep = torture::run(&p);
    rep.print();
    if !rep.ok() {
        std::process::exit(1);
    }
}
