//! Process identity in one place: this process's id (cached, refreshed after `fork`), thread
//! ids, whether a pid is alive, random bytes from the OS, and the identity that survives pid
//! reuse (boot id, pid, start time) read from `/proc`.
//!
//! # The cached pid and the fork generation
//!
//! `getpid()` is a system call, and the statistics slots (`stats.rs`) ask "which process am I?"
//! on every operation. So the pid is cached in a static, and a `pthread_atfork` child handler
//! (registered the first time the pid is asked for) refreshes it and bumps a fork generation:
//! per-thread caches keyed by that generation are invalidated in a forked child, which must
//! not keep writing its parent's slots.
//!
//! # Identity that survives pid reuse
//!
//! A pid alone is not an identity: after a process exits, the kernel hands its pid to a new
//! process. The start time of the new process (field 22 of `/proc/<pid>/stat`, in clock ticks
//! since boot) differs, so `(pid, start)` names exactly one process of one boot; the boot id
//! (from `/proc/sys/kernel/random/boot_id`) separates boots for file-backed stores that
//! outlive a reboot. A process is *dead* if it does not exist, if the pid now names a process
//! with another start time, or if it is a zombie (it exited, and only its parent has not
//! collected its status yet).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use crate::error::{Error, Result};

static MY_PID: AtomicU32 = AtomicU32::new(0);
static FORK_GEN: AtomicU64 = AtomicU64::new(1);
static ATFORK: Once = Once::new();

extern "C" fn after_fork_in_child() {
    // Only atomics and an async-signal-safe system call: safe to run in a forked child.
    MY_PID.store(getpid(), Ordering::Relaxed);
    FORK_GEN.fetch_add(1, Ordering::Relaxed);
}

fn getpid() -> u32 {
    rustix::process::getpid().as_raw_pid() as u32
}

/// This process's id, without a system call. Also registers the fork handler.
#[inline]
pub(crate) fn my_pid() -> u32 {
    let p = MY_PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    init_pid()
}

#[cold]
fn init_pid() -> u32 {
    ATFORK.call_once(|| {
        crate::sync::at_fork_in_child(after_fork_in_child);
        MY_PID.store(getpid(), Ordering::Relaxed);
    });
    MY_PID.load(Ordering::Relaxed)
}

/// Bumped in a forked child (see the module docs); compare to invalidate per-process caches.
#[inline]
pub(crate) fn fork_generation() -> u64 {
    FORK_GEN.load(Ordering::Relaxed)
}

/// The calling thread's id.
pub(crate) fn my_tid() -> u32 {
    rustix::thread::gettid().as_raw_pid() as u32
}

/// Under Miri (no `kill`): every owner counts as alive, so no slot is ever reclaimed.
#[cfg(miri)]
pub(crate) fn pid_alive(id: u32) -> bool {
    id != 0
}

/// Whether `id` names a live process or thread (or one we may not signal, which also exists).
#[cfg(not(miri))]
pub(crate) fn pid_alive(id: u32) -> bool {
    let Some(pid) = i32::try_from(id)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // Signal 0: only the existence and permission check.
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// Fills `buf` with random bytes from the OS (`getrandom`, retried when interrupted).
pub(crate) fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Identity of one process of one boot. Encoded in records as 20 bytes (boot, pid, start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcId {
    /// First 64 bits of the boot id.
    pub boot: u64,
    /// Process id (thread-group id).
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start: u64,
}

/// Size of an encoded [`ProcId`].
pub(crate) const PROC_ID_LEN: usize = 20;

impl ProcId {
    pub(crate) fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.boot.to_le_bytes());
        out[8..12].copy_from_slice(&self.pid.to_le_bytes());
        out[12..20].copy_from_slice(&self.start.to_le_bytes());
    }
    /// Decodes the first [`PROC_ID_LEN`] bytes of `b` (the caller checked the length).
    pub(crate) fn decode(b: &[u8]) -> ProcId {
        let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        ProcId {
            boot: word(0),
            pid: u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
            start: word(12),
        }
    }
}

/// What `/proc/<pid>/stat` tells about a pid.
struct Stat {
    state: u8,
    start: u64,
}

/// Parses the state (field 3) and start time (field 22) of a `/proc/<pid>/stat` line. The
/// command name (field 2) is in parentheses and may itself contain spaces and parentheses, so
/// the fields are counted from the *last* `)`.
fn parse_stat(line: &str) -> Option<Stat> {
    let rest = &line[line.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    // Field 3 was `state`; field 22 is 19 fields further.
    let start = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start })
}

fn read_stat(pid: u32) -> std::io::Result<Option<Stat>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(parse_stat(&s))
}

fn read_boot_id() -> u64 {
    // 36 characters: 8-4-4-4-12 hex digits. The first 16 digits are random enough to tell
    // boots apart; a missing file (unusual containers) gives 0, i.e. "same boot" for everyone.
    let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") else {
        return 0;
    };
    let hex: String = s.chars().filter(char::is_ascii_hexdigit).take(16).collect();
    u64::from_str_radix(&hex, 16).unwrap_or(0)
}

static BOOT: AtomicU64 = AtomicU64::new(u64::MAX);
/// `(pid, start)` of this process, cached; recomputed when the pid changes (after `fork`).
static ME: Mutex<Option<(u32, u64)>> = Mutex::new(None);

fn boot_id() -> u64 {
    let b = BOOT.load(Ordering::Relaxed);
    if b != u64::MAX {
        return b;
    }
    let b = read_boot_id();
    BOOT.store(b, Ordering::Relaxed);
    b
}

/// This process's identity. One `/proc/self/stat` read per process (and per fork), then cached.
pub(crate) fn current() -> Result<ProcId> {
    let pid = my_pid();
    let mut me = ME.lock().unwrap_or_else(|p| p.into_inner());
    let start = match *me {
        Some((p, start)) if p == pid => start,
        _ => {
            let st = read_stat(pid)
                .map_err(|e| Error::io("read /proc/<pid>/stat", e))?
                .ok_or_else(|| {
                    Error::io(
                        "parse /proc/<pid>/stat",
                        std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected format"),
                    )
                })?;
            *me = Some((pid, st.start));
            st.start
        }
    };
    Ok(ProcId {
        boot: boot_id(),
        pid,
        start,
    })
}

/// Whether the process named by `id` has exited (robust to pid reuse: a pid now used by a
/// process with another start time is dead; so is a zombie). When `/proc` cannot tell (hidden
/// by `hidepid`, unreadable), the process is assumed alive if the pid exists, so the caller
/// falls back on its lease.
pub(crate) fn is_dead(id: &ProcId) -> bool {
    if id.boot != boot_id() {
        return true; // from another boot of the machine (a file-backed store)
    }
    if id.pid == 0 || id.pid > i32::MAX as u32 {
        return true;
    }
    match read_stat(id.pid) {
        Ok(Some(st)) => st.start != id.start || st.state == b'Z' || st.state == b'X',
        Ok(None) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Gone from /proc; double-check with kill(0) in case /proc hides it.
            !pid_alive(id.pid)
        }
        Err(_) => false,
    }
}

/// A 64-bit value unique per call across processes with overwhelming probability: a random
/// per-process seed (re-drawn after `fork`, so parent and child never share a sequence) run
/// through a bijective mixer with a per-process sequence number.
pub(crate) fn unique_token() -> u64 {
    static STATE: Mutex<(u32, u64, u64)> = Mutex::new((0, 0, 0));
    let pid = my_pid();
    let mut st = STATE.lock().unwrap_or_else(|p| p.into_inner());
    if st.0 != pid {
        let mut seed = [0u8; 8];
        let drawn = fill_random(&mut seed).is_ok();
        let mut s = u64::from_le_bytes(seed);
        if !drawn {
            // No getrandom (very old kernel): pid, time and an address still differ per
            // process; the records also carry the owner's (pid, start), compared as well.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            s ^= t ^ (u64::from(pid) << 32) ^ (&raw const st as u64);
        }
        *st = (pid, s, 0);
    }
    st.2 = st.2.wrapping_add(1);
    splitmix(st.1.wrapping_add(st.2))
}

/// A bijective 64-bit mixer (splitmix64's finalizer).
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_hostile_comm() {
        let line = "123 (a) b (c) R) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21";
        let st = parse_stat(line).unwrap();
        assert_eq!(st.state, b'S');
        assert_eq!(st.start, 987654);
        assert!(parse_stat("123 (x) S 1 2").is_none());
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn me_is_alive_and_impostors_are_dead() {
        let me = current().unwrap();
        assert!(!is_dead(&me));
        assert!(is_dead(&ProcId {
            start: me.start + 1,
            ..me
        }));
        assert!(is_dead(&ProcId {
            boot: me.boot ^ 1,
            ..me
        }));
        assert!(is_dead(&ProcId { pid: 0, ..me }));
        let mut b = [0u8; PROC_ID_LEN];
        me.encode(&mut b);
        assert_eq!(ProcId::decode(&b), me);
    }

    #[test]
    fn pids_and_liveness() {
        let pid = my_pid();
        assert_eq!(pid, std::process::id());
        assert!(pid_alive(pid));
        assert!(pid_alive(my_tid()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
        assert!(!pid_alive(0x7fff_fff0), "no such process");
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        fill_random(&mut a).unwrap();
        fill_random(&mut b).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn tokens_differ() {
        let a: std::collections::HashSet<u64> = (0..1000).map(|_| unique_token()).collect();
        assert_eq!(a.len(), 1000);
    }
}
