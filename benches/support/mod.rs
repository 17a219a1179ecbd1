//! Shared pieces of the benchmarks: keys and values, a Zipf sampler, a shared page for the
//! atomic baseline, CPU pinning, a real `redis-server` (the tests' launcher,
//! `tests/redis_server`), and a "master process" coordinator that owns a `HashMap` and answers
//! over a Unix socket (the pattern pre-fork servers use today).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;

/// A 16-byte key.
pub fn key16(i: usize) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(format!("key:{i:012}").as_bytes());
    k
}

/// xorshift64*: a tiny deterministic generator for key choice.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// Zipf(s) over `0..n` by inverse CDF (precomputed; a sample is a binary search).
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for i in 1..=n {
            total += 1.0 / (i as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// One page of `MAP_SHARED` anonymous memory (inherited across fork).
pub struct SharedPage(*mut libc::c_void);

// SAFETY: the page is only accessed through atomics.
unsafe impl Send for SharedPage {}
// SAFETY: as above.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    pub fn new() -> Self {
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
        SharedPage(p)
    }
    /// The `i`-th 128-byte line's first word.
    pub fn word(&self, i: usize) -> &AtomicI64 {
        assert!(i < 32);
        // SAFETY: in the page, 128-aligned; accessed only atomically; mapped until drop.
        unsafe { &*(self.0.cast::<u8>().add(i * 128) as *const AtomicI64) }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: unmapping our own page; no reference outlives `self`.
        unsafe { libc::munmap(self.0, 4096) };
    }
}

/// Pins process `pid` (0 = the caller) to `cpu`.
pub fn pin(pid: libc::pid_t, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Lets process `pid` (0 = the caller) run on every CPU again.
pub fn unpin(pid: libc::pid_t) {
    let n = cpus();
    // SAFETY: as in `pin`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..n {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// CPUs online (not the caller's affinity mask, which `pin` narrows).
pub fn cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

fn temp_dir(prefix: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "shmstate-bench-{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[path = "../../tests/redis_server/mod.rs"]
mod redis_server;
pub use redis_server::RedisServer;

/// Requests of the coordinator protocol: `op u8, key_len u16, val_len u32, key, value`;
/// replies: `found u8, val_len u32, value`.
pub const OP_GET: u8 = 1;
pub const OP_SET: u8 = 2;
pub const OP_INCR: u8 = 3;

/// A forked "master" process that owns a `HashMap` and serves requests over a Unix socket, one
/// thread per client connection (the pattern of a Node cluster master or a gunicorn arbiter
/// holding shared state). Killed and cleaned up on drop.
pub struct Coordinator {
    pid: libc::pid_t,
    dir: PathBuf,
    pub path: PathBuf,
}

impl Coordinator {
    /// Forks the coordinator. Call only while the process is single-threaded.
    pub fn spawn() -> Self {
        let dir = temp_dir("coord");
        let path = dir.join("coord.sock");
        let listener = UnixListener::bind(&path).expect("bind coordinator socket");
        // SAFETY: the benchmark process is single-threaded when it forks; the child only runs
        // `serve` and exits with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            serve(listener);
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        drop(listener);
        Coordinator { pid, dir, path }
    }

    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    pub fn connect(&self) -> CoordClient {
        CoordClient {
            s: UnixStream::connect(&self.path).expect("connect coordinator"),
            buf: Vec::with_capacity(8192),
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve(listener: UnixListener) {
    let map = std::sync::Arc::new(std::sync::Mutex::new(HashMap::<Vec<u8>, Vec<u8>>::new()));
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { return };
        let map = map.clone();
        std::thread::spawn(move || {
            let mut hdr = [0u8; 7];
            let mut key = Vec::new();
            let mut val = Vec::new();
            let mut out = Vec::new();
            while s.read_exact(&mut hdr).is_ok() {
                let klen = u16::from_le_bytes([hdr[1], hdr[2]]) as usize;
                let vlen = u32::from_le_bytes([hdr[3], hdr[4], hdr[5], hdr[6]]) as usize;
                key.resize(klen, 0);
                val.resize(vlen, 0);
                if s.read_exact(&mut key).is_err() || s.read_exact(&mut val).is_err() {
                    return;
                }
                out.clear();
                let mut m = map.lock().unwrap();
                match hdr[0] {
                    OP_GET => match m.get(&key) {
                        Some(v) => {
                            out.push(1);
                            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                            out.extend_from_slice(v);
                        }
                        None => out.extend_from_slice(&[0, 0, 0, 0, 0]),
                    },
                    OP_SET => {
                        m.insert(key.clone(), val.clone());
                        out.extend_from_slice(&[1, 0, 0, 0, 0]);
                    }
                    _ => {
                        let e = m.entry(key.clone()).or_insert_with(|| b"0".to_vec());
                        let n: i64 = std::str::from_utf8(e)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0)
                            + 1;
                        *e = n.to_string().into_bytes();
                        out.push(1);
                        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
                        out.extend_from_slice(e);
                    }
                }
                drop(m);
                if s.write_all(&out).is_err() {
                    return;
                }
            }
        });
    }
}

/// A client connection to the coordinator.
pub struct CoordClient {
    s: UnixStream,
    buf: Vec<u8>,
}

impl CoordClient {
    fn call(&mut self, op: u8, key: &[u8], val: &[u8]) -> Option<&[u8]> {
        self.buf.clear();
        self.buf.push(op);
        self.buf
            .extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.buf
            .extend_from_slice(&(val.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(val);
        self.s.write_all(&self.buf).expect("coordinator write");
        let mut hdr = [0u8; 5];
        self.s.read_exact(&mut hdr).expect("coordinator read");
        let n = u32::from_le_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
        self.buf.resize(n, 0);
        self.s.read_exact(&mut self.buf).expect("coordinator read");
        (hdr[0] == 1).then_some(&self.buf[..])
    }
    pub fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.call(OP_GET, key, &[]).map(<[u8]>::to_vec)
    }
    pub fn set(&mut self, key: &[u8], val: &[u8]) {
        self.call(OP_SET, key, val);
    }
    pub fn incr(&mut self, key: &[u8]) {
        self.call(OP_INCR, key, &[]);
    }
}
