//! The coordination primitives across forked workers: a master creates the store, forks three
//! workers that register, count their connections, share a rate limit and a cache, and elect
//! one to run a job under a leased lock; one worker crashes (SIGKILL) and its gauge vanishes.
//!
//! ```text
//! cargo run --example primitives
//! ```

use std::time::{Duration, Instant};

use shmstate::{Cache, Config, RateLimiter, Store, Workers};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::anonymous(&Config::new().capacity(10_000))?;
    let workers = Workers::new(&store, "demo", 8)?;
    let limiter = RateLimiter::gcra(&store, "api", 10, Duration::from_secs(1), 10)?;
    let cache = Cache::new(&store, "pages")?;

    let mut pids = Vec::new();
    for w in 0..3 {
        // SAFETY: the master is single-threaded here; the child only runs `worker` and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if pid == 0 {
            let ok = worker(w, &store, &workers, &limiter, &cache).is_ok();
            // SAFETY: a forked child ends with _exit, without running the master's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        pids.push(pid);
    }

    // Let the workers register and serve.
    let t = Instant::now();
    while workers.list()?.len() < 3 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    println!("live workers: {:?}", labels(&workers)?);
    println!("open connections: {}", workers.gauge_total("connections")?);

    // Worker 1 crashes: its connections stop counting as soon as someone notices.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pids[1], libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(50));
    println!("after worker-1 was killed: {:?}", labels(&workers)?);
    println!("open connections: {}", workers.gauge_total("connections")?);
    println!("cache: {:?}", cache.stats());

    for pid in pids {
        // SAFETY: stopping and reaping our own children.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    Ok(())
}

fn labels(workers: &Workers) -> shmstate::Result<Vec<String>> {
    Ok(workers.list()?.into_iter().map(|w| w.label).collect())
}

fn worker(
    w: u32,
    store: &Store,
    workers: &Workers,
    limiter: &RateLimiter,
    cache: &Cache,
) -> Result<(), Box<dyn std::error::Error>> {
    let me = workers.register(&format!("worker-{w}"))?;
    let conns = me.gauge("connections")?;
    conns.add(i64::from(w) + 1)?;
    let mut allowed = 0;
    for _ in 0..10 {
        if limiter.check(b"203.0.113.9")?.allowed {
            allowed += 1;
        }
    }
    let page = cache.get_or_compute(b"/", Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(20)); // "render"
        Ok::<_, std::io::Error>(format!("rendered by worker-{w}").into_bytes())
    })?;
    // Held while this worker lives: exactly one worker runs the job.
    let job = store.try_lock("nightly", Duration::from_secs(30))?;
    if let Some(job) = &job {
        println!("worker-{w}: runs the nightly job (fence {})", job.fence());
    }
    println!(
        "worker-{w}: {allowed}/10 requests allowed, page: {}",
        String::from_utf8_lossy(&page)
    );
    // Serve until the master stops us (bounded).
    std::thread::sleep(Duration::from_secs(10));
    Ok(())
}
