//! Multi-process throughput: a pool of forked worker processes, started together by a flag in
//! shared memory, each doing `iters` operations; criterion reports aggregate operations per
//! second. Compared in the same run with the same workload against Redis (one connection per
//! worker, unix socket) and a master process owning a `HashMap` behind a Unix socket.
//!
//! ```text
//! cargo bench --bench multiproc                      # 1 and 2 worker processes
//! SHMSTATE_BENCH_PROCS=1,2,4 cargo bench --bench multiproc
//! cargo bench --bench multiproc -- --test            # smoke
//! ```
//!
//! Workloads (each worker on its own keys unless the name says "hot"):
//! `read95_uniform` / `read95_zipf` (95% get, 5% set; uniform or Zipf(0.99) key choice),
//! `read100_uniform` (gets only: what the 5% writes cost in scaling),
//! `write50_uniform` (50% get, 50% set), `hot_key_get` (everyone reads one key),
//! `hot_key_incr` (everyone increments one key), `counter_add` (everyone adds to one counter).
//! Worker `w` is pinned to CPU `w % cpus`. `SHMSTATE_BENCH_KEYS` sets the keys per worker
//! (default 10 000, about 3 MB of slots each), `SHMSTATE_BENCH_SHARDS` the shard count (default:
//! the store's own choice for this machine); `SHMSTATE_BENCH_LINE_SIZED=1` turns on
//! `Config::line_sized_slots` (slots of five whole cache lines instead of 296 bytes).

mod support;

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use shmstate::{Config, Store};
use support::{key16, pin, Coordinator, RedisServer, Rng, SharedPage, Zipf};

/// Keys per worker: `SHMSTATE_BENCH_KEYS`, default 10 000.
fn keys_per_worker() -> usize {
    static K: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *K.get_or_init(|| {
        std::env::var("SHMSTATE_BENCH_KEYS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&k| (1..=1_000_000).contains(&k))
            .unwrap_or(10_000)
    })
}
const VALUE_LEN: usize = 256;
const SAMPLES: usize = 1 << 16;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Read95Uniform,
    Read95Zipf,
    Read100Uniform,
    Write50Uniform,
    HotKeyGet,
    HotKeyIncr,
    CounterAdd,
}

const WORKLOADS: [Workload; 7] = [
    Workload::Read95Uniform,
    Workload::Read95Zipf,
    Workload::Read100Uniform,
    Workload::Write50Uniform,
    Workload::HotKeyGet,
    Workload::HotKeyIncr,
    Workload::CounterAdd,
];

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Read95Uniform => "read95_uniform",
            Workload::Read95Zipf => "read95_zipf",
            Workload::Read100Uniform => "read100_uniform",
            Workload::Write50Uniform => "write50_uniform",
            Workload::HotKeyGet => "hot_key_get",
            Workload::HotKeyIncr => "hot_key_incr",
            Workload::CounterAdd => "counter_add",
        }
    }
    /// Percent of operations that write.
    fn write_pct(self) -> u64 {
        match self {
            Workload::Read95Uniform | Workload::Read95Zipf => 5,
            Workload::Write50Uniform => 50,
            Workload::HotKeyGet | Workload::Read100Uniform => 0,
            Workload::HotKeyIncr | Workload::CounterAdd => 100,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Shm,
    Redis,
    Coordinator,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Shm => "shmstate",
            Backend::Redis => "baseline_redis_unix",
            Backend::Coordinator => "baseline_coordinator",
        }
    }
}

/// Control words in shared memory: line 0 = start generation, line 1+w = worker w's ready
/// generation, line 17+w = its done generation.
struct Control(SharedPage);

impl Control {
    fn start(&self) -> &std::sync::atomic::AtomicI64 {
        self.0.word(0)
    }
    fn ready(&self, w: usize) -> &std::sync::atomic::AtomicI64 {
        self.0.word(1 + w)
    }
    fn done(&self, w: usize) -> &std::sync::atomic::AtomicI64 {
        self.0.word(17 + w)
    }
}

/// A command to a worker: workload, backend, operations, generation.
fn encode(w: Workload, b: Backend, ops: u64, gen: i64) -> [u8; 24] {
    let mut m = [0u8; 24];
    m[0] = WORKLOADS.iter().position(|x| *x == w).unwrap() as u8;
    m[1] = b as u8;
    m[8..16].copy_from_slice(&ops.to_le_bytes());
    m[16..24].copy_from_slice(&gen.to_le_bytes());
    m
}

struct Worker {
    pid: libc::pid_t,
    cmd: std::fs::File,
}

/// Each worker writes one byte here when it finishes a run: the parent blocks on the read end
/// instead of polling, so it takes no CPU from the workers while they run.
struct DonePipe {
    read: std::fs::File,
    write: i32,
}

struct Env<'a> {
    store: &'a Store,
    redis: Option<&'a RedisServer>,
    coord: &'a Coordinator,
}

/// Runs in the forked worker: waits for commands on `cmd`, runs them, reports through `ctl`.
fn worker_main(w: usize, mut cmd: std::fs::File, done_fd: i32, ctl: &Control, env: &Env<'_>) {
    pin(0, w % support::cpus());
    let own: Vec<[u8; 16]> = (w * keys_per_worker()..(w + 1) * keys_per_worker())
        .map(key16)
        .collect();
    let mut rng = Rng::new(w as u64 + 1);
    let uniform: Vec<u32> = (0..SAMPLES)
        .map(|_| rng.below(keys_per_worker()) as u32)
        .collect();
    let zipf_dist = Zipf::new(keys_per_worker(), 0.99);
    let zipf: Vec<u32> = (0..SAMPLES)
        .map(|_| zipf_dist.sample(&mut rng) as u32)
        .collect();
    let dice: Vec<u8> = (0..SAMPLES).map(|_| (rng.next_u64() % 100) as u8).collect();
    let value = vec![0x5au8; VALUE_LEN];
    let hot = key16(999_999_999_999);
    let counter = env.store.counter("bench.hot").expect("counter");
    let mut redis = env
        .redis
        .map(|r| r.connect_unix().expect("redis connection"));
    let mut coord = env.coord.connect();
    let mut buf = Vec::with_capacity(VALUE_LEN);
    let mut msg = [0u8; 24];
    loop {
        if cmd.read_exact(&mut msg).is_err() {
            return; // the parent is gone
        }
        let workload = WORKLOADS[msg[0] as usize];
        let backend = match msg[1] {
            0 => Backend::Shm,
            1 => Backend::Redis,
            _ => Backend::Coordinator,
        };
        let ops = u64::from_le_bytes(msg[8..16].try_into().unwrap());
        let gen = i64::from_le_bytes(msg[16..24].try_into().unwrap());
        ctl.ready(w).store(gen, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(30);
        while ctl.start().load(Ordering::Acquire) < gen {
            std::hint::spin_loop();
            if Instant::now() > deadline {
                return;
            }
        }
        let write_pct = workload.write_pct();
        for n in 0..ops as usize {
            let s = n & (SAMPLES - 1);
            let key: &[u8] = match workload {
                Workload::Read95Uniform | Workload::Read100Uniform | Workload::Write50Uniform => {
                    &own[uniform[s] as usize]
                }
                Workload::Read95Zipf => &own[zipf[s] as usize],
                _ => &hot,
            };
            let write = u64::from(dice[s]) < write_pct;
            match (backend, workload) {
                (Backend::Shm, Workload::CounterAdd) => {
                    black_box(counter.add(1));
                }
                (Backend::Shm, Workload::HotKeyIncr) => {
                    black_box(env.store.incr(key, 1, None).unwrap());
                }
                (Backend::Shm, _) if write => env.store.set(key, &value, None).unwrap(),
                (Backend::Shm, _) => {
                    black_box(env.store.get_into(key, &mut buf).unwrap());
                }
                (Backend::Redis, Workload::HotKeyIncr | Workload::CounterAdd) => {
                    let c = redis.as_mut().unwrap();
                    let v: i64 = redis::cmd("INCR").arg(key).query(c).unwrap();
                    black_box(v);
                }
                (Backend::Redis, _) if write => {
                    let c = redis.as_mut().unwrap();
                    let _: () = redis::cmd("SET").arg(key).arg(&value[..]).query(c).unwrap();
                }
                (Backend::Redis, _) => {
                    let c = redis.as_mut().unwrap();
                    let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query(c).unwrap();
                    black_box(v);
                }
                (Backend::Coordinator, Workload::HotKeyIncr | Workload::CounterAdd) => {
                    coord.incr(key)
                }
                (Backend::Coordinator, _) if write => coord.set(key, &value),
                (Backend::Coordinator, _) => {
                    black_box(coord.get(key));
                }
            }
        }
        ctl.done(w).store(gen, Ordering::Release);
        // SAFETY: writing one byte from a valid buffer to the done pipe we inherited.
        unsafe { libc::write(done_fd, [1u8].as_ptr().cast(), 1) };
    }
}

struct Pool {
    workers: Vec<Worker>,
    done: DonePipe,
    ctl: Control,
    gen: i64,
}

impl Pool {
    /// Forks `n` workers. Call while the process is single-threaded.
    fn spawn(n: usize, env: &Env<'_>) -> Pool {
        assert!(n <= 16);
        let ctl = Control(SharedPage::new());
        let mut dfd = [0; 2];
        // SAFETY: valid out-array.
        assert_eq!(unsafe { libc::pipe(dfd.as_mut_ptr()) }, 0);
        let mut workers = Vec::new();
        for w in 0..n {
            let mut fds = [0; 2];
            // SAFETY: valid out-array.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: single-threaded at this point; the child runs `worker_main` and `_exit`s.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                // SAFETY: closing our copy of the write end; the read end becomes a File we own.
                unsafe { libc::close(fds[1]) };
                let cmd = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
                worker_main(w, cmd, dfd[1], &ctl, env);
                // SAFETY: ends the worker without running the parent's destructors.
                unsafe { libc::_exit(0) };
            }
            // SAFETY: closing the parent's copy of the read end; the write end becomes a File.
            unsafe { libc::close(fds[0]) };
            let cmd = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
            workers.push(Worker { pid, cmd });
        }
        Pool {
            workers,
            done: DonePipe {
                // SAFETY: the read end is ours alone in the parent.
                read: unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(dfd[0]) },
                write: dfd[1],
            },
            ctl,
            gen: 0,
        }
    }

    /// Runs `ops` operations on each of the first `procs` workers at once; returns the time
    /// from the start flag until the last one finished.
    fn run(&mut self, procs: usize, w: Workload, b: Backend, ops: u64) -> Duration {
        self.gen += 1;
        let gen = self.gen;
        for wk in &mut self.workers[..procs] {
            wk.cmd
                .write_all(&encode(w, b, ops, gen))
                .expect("worker command");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..procs {
            while self.ctl.ready(i).load(Ordering::Acquire) < gen {
                std::thread::sleep(Duration::from_micros(20));
                assert!(Instant::now() < deadline, "worker {i} never got ready");
            }
        }
        let t0 = Instant::now();
        self.ctl.start().store(gen, Ordering::Release);
        // Block (no polling) until every worker has written its byte.
        let mut got = 0;
        let mut buf = [0u8; 16];
        while got < procs {
            let mut p = libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&self.done.read),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; bounded wait so a dead worker cannot hang the bench.
            let ready = unsafe { libc::poll(&mut p, 1, 60_000) };
            assert!(ready == 1, "a worker did not finish within 60 s");
            let n = self
                .done
                .read
                .read(&mut buf[..procs - got])
                .expect("done pipe");
            assert!(n > 0, "workers exited");
            got += n;
        }
        let elapsed = t0.elapsed();
        for i in 0..procs {
            assert_eq!(
                self.ctl.done(i).load(Ordering::Acquire),
                gen,
                "worker {i} out of step"
            );
        }
        let _ = self.done.write;
        elapsed
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for w in &self.workers {
            // SAFETY: signalling and reaping our own children.
            unsafe {
                libc::kill(w.pid, libc::SIGKILL);
                libc::waitpid(w.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

fn procs_list() -> Vec<usize> {
    std::env::var("SHMSTATE_BENCH_PROCS")
        .ok()
        .map(|s| s.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty() && v.iter().all(|&p| (1..=16).contains(&p)))
        .unwrap_or_else(|| vec![1, 2])
}

fn main() {
    let procs = procs_list();
    let max = *procs.iter().max().unwrap();
    let mut config = Config::new()
        .capacity((max * keys_per_worker() + 16) as u64 * 2)
        .max_key_len(16)
        .max_value_len(VALUE_LEN as u32)
        .line_sized_slots(std::env::var("SHMSTATE_BENCH_LINE_SIZED").is_ok_and(|v| v == "1"));
    if let Some(s) = std::env::var("SHMSTATE_BENCH_SHARDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        config = config.shards(s);
    }
    println!("multiproc: {} shards", config.effective_shards());
    let store = Store::anonymous(&config).expect("store");
    let value = vec![0x5au8; VALUE_LEN];
    for i in 0..max * keys_per_worker() {
        store.set(&key16(i), &value, None).expect("fill");
    }
    store
        .set(&key16(999_999_999_999), b"0", None)
        .expect("hot key");
    let redis = RedisServer::start(false);
    let coord = Coordinator::spawn();
    {
        let mut c = coord.connect();
        for i in 0..max * keys_per_worker() {
            c.set(&key16(i), &value);
        }
        c.set(&key16(999_999_999_999), b"0");
    }
    if let Ok(r) = &redis {
        let mut c = r.connect_unix().expect("redis");
        for i in 0..max * keys_per_worker() {
            let _: () = redis::cmd("SET")
                .arg(&key16(i)[..])
                .arg(&value[..])
                .query(&mut c)
                .expect("SET");
        }
        let _: () = redis::cmd("SET")
            .arg(&key16(999_999_999_999)[..])
            .arg("0")
            .query(&mut c)
            .expect("SET");
    }
    if let Err(why) = &redis {
        println!("skipping the Redis baseline: {why}");
    }
    let env = Env {
        store: &store,
        redis: redis.as_ref().ok(),
        coord: &coord,
    };
    let mut pool = Pool::spawn(max, &env);

    let mut c = Criterion::default().configure_from_args();
    for workload in WORKLOADS {
        let mut g = c.benchmark_group(format!("multiproc_{}", workload.name()));
        // Few long samples: every sample pays a start skew (waking the workers' vCPUs), which
        // short samples turn into a visible error.
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(6));
        for &p in &procs {
            g.throughput(Throughput::Elements(p as u64));
            for backend in [Backend::Shm, Backend::Redis, Backend::Coordinator] {
                if backend == Backend::Redis && redis.is_err() {
                    continue;
                }
                g.bench_function(BenchmarkId::new(backend.name(), format!("{p}proc")), |b| {
                    b.iter_custom(|iters| pool.run(p, workload, backend, iters))
                });
            }
        }
        g.finish();
    }
    c.final_summary();
    drop(pool);
}
