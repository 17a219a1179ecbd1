//! A pre-fork server in miniature: the master creates an anonymous store, forks workers, and
//! every worker serves simulated requests against the shared state (a request counter, sessions
//! with a TTL, per-client rate limits, a compare-and-swap "leader" key). The master then prints
//! what the workers shared.
//!
//! ```text
//! cargo run --release --example demo -- [WORKERS] [REQUESTS_PER_WORKER]
//! ```

use std::time::{Duration, Instant};

use shmstate::{Config, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let workers: usize = match args.next() {
        Some(a) => a.parse()?,
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let requests: u64 = match args.next() {
        Some(a) => a.parse()?,
        None => 200_000,
    };
    if workers == 0 || workers > 256 {
        return Err("WORKERS must be between 1 and 256".into());
    }

    // Created before fork: every worker inherits the same mapping.
    let store = Store::anonymous(
        &Config::new()
            .capacity(50_000)
            .max_key_len(48)
            .max_value_len(128),
    )?;
    let total = store.counter("http.requests")?;
    let limited = store.counter("http.rate_limited")?;
    println!(
        "master {}: {} workers x {requests} requests, region {} KiB",
        std::process::id(),
        workers,
        store.region_bytes() / 1024
    );

    let started = Instant::now();
    let mut pids = Vec::new();
    for w in 0..workers {
        // SAFETY: the example is single-threaded when it forks; the child only runs `worker`
        // and then `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if pid == 0 {
            let code = match worker(w, &store, requests) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("worker {w}: {e}");
                    1
                }
            };
            // SAFETY: ends the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        pids.push(pid);
    }
    let mut failed = 0;
    for pid in pids {
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            failed += 1;
        }
    }
    let elapsed = started.elapsed();

    println!("\nwhat the workers shared:");
    println!("  http.requests counter   {}", total.get());
    println!("  http.rate_limited       {}", limited.get());
    println!("  sessions + limits keys  {}", store.len());
    if let Some(leader) = store.get(b"leader")? {
        println!(
            "  leader (won by CAS)     {}",
            String::from_utf8_lossy(&leader)
        );
    }
    for w in 0..workers {
        let key = format!("worker:{w}:last");
        if let Some(v) = store.get(key.as_bytes())? {
            println!("  {key:<24}{}", String::from_utf8_lossy(&v));
        }
    }
    let ops = total.get() as f64 * 3.0; // each request does three store operations
    println!(
        "  {:.1} M store ops/s across {workers} processes ({elapsed:.2?})",
        ops / elapsed.as_secs_f64() / 1e6
    );
    let st = store.stats();
    println!(
        "  stats: {} hits, {} misses, {} sets, {} contended lock waits, {} recoveries",
        st.hits, st.misses, st.sets, st.lock_contended, st.lock_recoveries
    );
    let report = store.verify()?;
    println!("  verify: {report}");
    let expected = workers as i64 * requests as i64;
    if failed > 0 || total.get() != expected || !report.is_ok() {
        return Err(format!(
            "{failed} workers failed; counter {} (expected {expected})",
            total.get()
        )
        .into());
    }
    Ok(())
}

/// One worker: `requests` simulated HTTP requests.
fn worker(w: usize, store: &Store, requests: u64) -> shmstate::Result<()> {
    let total = store.counter("http.requests")?;
    let limited = store.counter("http.rate_limited")?;
    let mut buf = Vec::with_capacity(128);
    let pid = std::process::id();
    // Everybody tries to become leader; exactly one compare-and-swap succeeds.
    let me = format!("worker {w} (pid {pid})");
    store.compare_and_swap(b"leader", None, Some(me.as_bytes()), None)?;
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (w as u64 + 1);
    for i in 0..requests {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        total.add(1);
        // Per-client fixed-window rate limit: 300 requests per client per minute.
        let client = format!("rl:10.0.{}.{}", (x >> 8) % 4, x % 250);
        if store.incr(client.as_bytes(), 1, Some(Duration::from_secs(60)))? > 300 {
            limited.add(1);
            continue;
        }
        // Sessions: create one every 16 requests, read a random one otherwise.
        let session = format!("session:{}", x % 5000);
        if i % 16 == 0 {
            let v = format!("{{\"user\":{},\"worker\":{w}}}", x % 100_000);
            store.set(
                session.as_bytes(),
                v.as_bytes(),
                Some(Duration::from_secs(1800)),
            )?;
        } else {
            store.get_into(session.as_bytes(), &mut buf)?;
        }
    }
    store.set(
        format!("worker:{w}:last").as_bytes(),
        format!("pid {pid} served {requests}").as_bytes(),
        None,
    )?;
    Ok(())
}
