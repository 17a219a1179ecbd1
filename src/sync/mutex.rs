//! Robust, process-shared pthread mutexes living inside the region.
//!
//! A robust mutex tells the next locker when its holder died (`EOWNERDEAD`): the kernel walks a
//! dead thread's robust list and marks the futex. The new holder must repair the protected data
//! and call `pthread_mutex_consistent` before unlocking, or the mutex becomes permanently
//! `ENOTRECOVERABLE`. [`MutexGuard`] makes that explicit: [`RobustMutex::lock`] says whether the
//! owner died, and the guard only marks the mutex consistent when told to.
//!
//! Caveats honoured by the callers (the table and the counter registry): a process never unmaps a region while one
//! of its threads holds one of its locks (guards borrow the mapping), and holds at most one
//! shard lock at a time.
//!
//! One of the few files allowed `unsafe`: the pthread calls (and `pthread_atfork`) live here.
#![allow(unsafe_code)]

use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::region::raw::RawRegion;
use crate::region::SoleUser;

/// How a lock was acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Acquired {
    /// The previous holder died holding the lock: repair, then [`MutexGuard::mark_consistent`].
    pub owner_died: bool,
    /// The first attempt found the lock taken.
    pub contended: bool,
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub(crate) enum LockError {
    /// A live process held it longer than the timeout.
    Timeout(Duration),
    /// A previous holder unlocked after an owner death without marking it consistent (or the
    /// bytes of the mutex were overwritten).
    NotRecoverable,
    /// Any other error code (the mutex bytes are not a valid mutex).
    Os(io::Error),
}

impl LockError {
    /// The store's error for this failure; `not_recoverable` says which lock (it becomes the
    /// [`Error::Corrupted`] message).
    pub(crate) fn into_error(self, not_recoverable: &'static str) -> Error {
        match self {
            LockError::Timeout(d) => Error::LockTimeout {
                waited_ms: d.as_millis() as u64,
            },
            LockError::NotRecoverable => Error::corrupted(not_recoverable),
            LockError::Os(e) => Error::io("pthread_mutex_lock", e),
        }
    }
}

/// A robust process-shared mutex at a fixed offset of a region.
pub(crate) struct RobustMutex<'a> {
    ptr: *mut libc::pthread_mutex_t,
    _region: PhantomData<&'a RawRegion>,
}

/// Holds the lock until dropped.
///
/// Not `Send`, on purpose (lock_api's `GuardNoSend`): a pthread mutex must be unlocked by the
/// thread that locked it, and the kernel's robust list that reports a dead holder is per
/// thread. Not `Sync` either. Both follow from the `PhantomData<*mut ()>` marker below (not
/// only from the raw pointer, which a refactor could replace).
pub(crate) struct MutexGuard<'a> {
    ptr: *mut libc::pthread_mutex_t,
    _region: PhantomData<&'a RawRegion>,
    _not_send: PhantomData<*mut ()>,
}

fn errno(rc: libc::c_int) -> io::Error {
    io::Error::from_raw_os_error(rc)
}

impl<'a> RobustMutex<'a> {
    /// The mutex whose bytes start at `off` (8-aligned, `LINE` bytes reserved by the layout).
    pub(crate) fn at(region: &'a RawRegion, off: usize) -> Self {
        let ptr = region
            .ptr_at(off, std::mem::size_of::<libc::pthread_mutex_t>())
            .cast::<libc::pthread_mutex_t>();
        RobustMutex {
            ptr,
            _region: PhantomData,
        }
    }

    /// Initializes the mutex at `off` of the region `sole` vouches for as process-shared and
    /// robust. (Re-initializing a mutex someone uses is undefined behaviour; [`SoleUser`] is
    /// the proof that no thread of any process does.)
    pub(crate) fn init(sole: &SoleUser<'a>, off: usize) -> io::Result<()> {
        let m = RobustMutex::at(sole.raw(), off);
        // SAFETY: (1) `m.ptr` points to size_of::<pthread_mutex_t>() writable bytes of the
        // mapping (checked in `at`), 8-aligned; (2) no thread of any process uses this mutex:
        // `sole` exists only while this process created the region and has not published it,
        // or holds it with LOCK_EX (see `SoleUser`).
        unsafe { init_with(m.ptr, true) }
    }

    /// Whether the mutex's type word still says "robust, process-shared" (see [`type_word`]).
    /// The libc's lock functions trust that word: garbage there can select the
    /// priority-protect or priority-inheritance code, whose assertions abort the process.
    fn type_is_ours(&self) -> bool {
        let Some((off, want)) = type_word() else {
            return true;
        };
        // SAFETY: `off + 4 <= size_of::<pthread_mutex_t>()` (found inside a template of that
        // size) and 4-aligned, within the bytes checked in `at`; an atomic load tolerates
        // other processes writing the word.
        let w = unsafe { &*self.ptr.cast::<u8>().add(off).cast::<AtomicU32>() };
        w.load(Ordering::Relaxed) == want
    }

    fn guard(&self) -> MutexGuard<'a> {
        MutexGuard {
            ptr: self.ptr,
            _region: PhantomData,
            _not_send: PhantomData,
        }
    }

    fn interpret(
        &self,
        rc: libc::c_int,
        contended: bool,
    ) -> Option<Result<(MutexGuard<'a>, Acquired), LockError>> {
        match rc {
            0 => Some(Ok((
                self.guard(),
                Acquired {
                    owner_died: false,
                    contended,
                },
            ))),
            libc::EOWNERDEAD => Some(Ok((
                self.guard(),
                Acquired {
                    owner_died: true,
                    contended,
                },
            ))),
            libc::ENOTRECOVERABLE => Some(Err(LockError::NotRecoverable)),
            libc::EBUSY | libc::ETIMEDOUT => None,
            other => Some(Err(LockError::Os(errno(other)))),
        }
    }

    fn try_once(&self) -> libc::c_int {
        // SAFETY: `self.ptr` points into the live mapping (borrowed for 'a); a mutex whose bytes
        // were overwritten makes glibc return an error code, which we report.
        unsafe { libc::pthread_mutex_trylock(self.ptr) }
    }

    /// Takes the lock, waiting at most `timeout` for a live holder. Spins briefly (bounded)
    /// before sleeping, because waking a sleeper on the other core costs tens of microseconds.
    pub(crate) fn lock(&self, timeout: Duration) -> Result<(MutexGuard<'a>, Acquired), LockError> {
        if !self.type_is_ours() {
            return Err(LockError::NotRecoverable);
        }
        if let Some(r) = self.interpret(self.try_once(), false) {
            return r;
        }
        // Bounded spin: 1 + 2 + ... + 128 pause instructions between attempts.
        for step in 0..8 {
            for _ in 0..(1u32 << step) {
                std::hint::spin_loop();
            }
            if let Some(r) = self.interpret(self.try_once(), true) {
                return r;
            }
        }
        // Sleep in slices, not one call of `timeout`: the kernel wakes one waiter when the
        // holder unlocks or dies, and if that waiter is itself killed after waking but before
        // it takes the lock, the wake-up is lost and everyone else would sleep for the whole
        // timeout (a window of a few instructions, but a soak with thousands of kills may hit
        // it). Each slice ends with a fresh attempt, which takes a free (or dead owner's) lock.
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(LockError::Timeout(start.elapsed()));
            }
            let deadline = realtime_after(left.min(WAIT_SLICE));
            // SAFETY: as in `try_once`; `deadline` is a valid timespec.
            let rc = unsafe { libc::pthread_mutex_timedlock(self.ptr, &deadline) };
            if let Some(r) = self.interpret(rc, true) {
                return r;
            }
        }
    }
}

/// Longest single sleep while waiting for a lock (see [`RobustMutex::lock`]).
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// `CLOCK_REALTIME` now + `d`, as `pthread_mutex_timedlock` wants its deadline.
fn realtime_after(d: Duration) -> libc::timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let total_ns = now.tv_nsec as i128 + d.as_nanos() as i128;
    libc::timespec {
        tv_sec: now
            .tv_sec
            .saturating_add((total_ns / 1_000_000_000) as libc::time_t),
        tv_nsec: (total_ns % 1_000_000_000) as libc::c_long,
    }
}

/// Initializes `m` as a process-shared mutex, robust or not.
///
/// # Safety
/// `m` must be valid for writes and not in use.
unsafe fn init_with(m: *mut libc::pthread_mutex_t, robust: bool) -> io::Result<()> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: (1) `attr` is a valid out-pointer, initialized by pthread_mutexattr_init before
    // any other use and destroyed at the end; (2) `m` is valid and unused (the caller's
    // contract).
    unsafe {
        let rc = libc::pthread_mutexattr_init(attr.as_mut_ptr());
        if rc != 0 {
            return Err(errno(rc));
        }
        let a = attr.as_mut_ptr();
        #[cfg(not(miri))]
        let mut rc = libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED);
        #[cfg(not(miri))]
        if rc == 0 && robust {
            rc = libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST);
        }
        // Miri runs one process and implements neither attribute: a plain mutex there (the
        // robust hand-over is exercised by the fork tests and modelled in loom/).
        #[cfg(miri)]
        let mut rc = {
            let _ = robust;
            0
        };
        if rc == 0 {
            rc = libc::pthread_mutex_init(m, a);
        }
        libc::pthread_mutexattr_destroy(a);
        if rc != 0 {
            return Err(errno(rc));
        }
    }
    Ok(())
}

/// Where the libc keeps a mutex's type (kind) and the value a robust process-shared mutex has
/// there: the one 4-byte word in which freshly initialized robust and non-robust mutexes
/// differ (glibc's `__kind`, musl's `_m_type`). Locking and unlocking never change it. `None`
/// if the two templates do not differ in exactly one word (an unknown libc: no check).
fn type_word() -> Option<(usize, u32)> {
    static WORD: OnceLock<Option<(usize, u32)>> = OnceLock::new();
    *WORD.get_or_init(|| {
        let template = |robust| {
            // Zeroed, then initialized: every byte is defined when read below.
            let mut m = std::mem::MaybeUninit::<libc::pthread_mutex_t>::zeroed();
            // SAFETY: a local mutex no one else knows.
            unsafe { init_with(m.as_mut_ptr(), robust) }.ok()?;
            // SAFETY: the bytes were zeroed, then written by pthread_mutex_init: all
            // initialized; a byte array has no alignment requirement.
            let bytes = unsafe {
                m.as_ptr()
                    .cast::<[u8; std::mem::size_of::<libc::pthread_mutex_t>()]>()
                    .read()
            };
            Some(bytes)
        };
        let (robust, plain) = (template(true)?, template(false)?);
        let word = |b: &[u8], i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().expect("4"));
        let mut differ = (0..robust.len() / 4)
            .map(|i| i * 4)
            .filter(|&i| word(&robust, i) != word(&plain, i));
        let off = differ.next()?;
        differ.next().is_none().then(|| (off, word(&robust, off)))
    })
}

/// Registers `handler` to run in the child after every `fork` of this process (the cached pid
/// of `process.rs`). The handler must only do what is allowed after `fork` in a multithreaded
/// program (atomics, async-signal-safe calls).
pub(crate) fn at_fork_in_child(handler: extern "C" fn()) {
    // SAFETY: registering a handler has no memory-safety preconditions; what the handler does
    // after `fork` is the caller's contract above.
    unsafe { libc::pthread_atfork(None, None, Some(handler)) };
}

impl MutexGuard<'_> {
    /// After repairing what a dead holder left, marks the mutex usable again.
    pub(crate) fn mark_consistent(&mut self) -> io::Result<()> {
        // SAFETY: we hold the lock (acquired with EOWNERDEAD); the pointer is live for the guard's
        // lifetime.
        let rc = unsafe { libc::pthread_mutex_consistent(self.ptr) };
        if rc == 0 {
            Ok(())
        } else {
            Err(errno(rc))
        }
    }
}

impl Drop for MutexGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard exists only while we hold the lock; the mapping outlives it.
        unsafe { libc::pthread_mutex_unlock(self.ptr) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::Mapping;

    #[test]
    fn lock_unlock_and_timeout() {
        let map = Mapping::anonymous(4096).unwrap();
        RobustMutex::init(&map.sole_user().unwrap(), 0).unwrap();
        let r = map.raw();
        let m = RobustMutex::at(r, 0);
        let (g, a) = m.lock(Duration::from_millis(10)).unwrap();
        assert!(!a.owner_died && !a.contended);
        // Same mutex from another thread: must time out while held.
        let r2 = r;
        std::thread::scope(|s| {
            s.spawn(move || {
                let m2 = RobustMutex::at(r2, 0);
                let e = m2.lock(Duration::from_millis(20));
                assert!(matches!(e, Err(LockError::Timeout(_))));
            });
        });
        drop(g);
        let (_g, a) = m.lock(Duration::from_millis(10)).unwrap();
        assert!(!a.owner_died);
    }

    /// Garbage in the type word (here: priority-protect, whose glibc code asserts and aborts)
    /// is refused before the libc sees it.
    #[test]
    fn foreign_type_word_is_refused() {
        let (off, want) = type_word().expect("a known libc");
        let map = Mapping::anonymous(4096).unwrap();
        RobustMutex::init(&map.sole_user().unwrap(), 0).unwrap();
        let r = map.raw();
        let m = RobustMutex::at(r, 0);
        assert_eq!(r.u32_at(off).load(Ordering::Relaxed), want);
        drop(m.lock(Duration::from_millis(10)).unwrap());
        for bad in [0x40 | 0x80, 0x20 | 0x10 | 0x80, u32::MAX, 0] {
            r.u32_at(off).store(bad, Ordering::Relaxed);
            assert!(matches!(
                m.lock(Duration::from_millis(10)),
                Err(LockError::NotRecoverable)
            ));
        }
    }
}
