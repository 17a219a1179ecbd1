//! Helpers for the fork-based tests (`harness = false`: the process is single-threaded when
//! it forks): a runner that prints libtest-style lines, forking, bounded waiting, pipes.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Runs `tests` (filtered by the command line's non-flag arguments), prints one line each and
/// `SUITE: N passed, M failed`, and exits 1 if any failed.
pub fn run_all(suite: &str, tests: &[(&str, fn())]) {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, f) in tests {
        if !filter.is_empty() && !filter.iter().any(|p| name.contains(p.as_str())) {
            continue;
        }
        let t = Instant::now();
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.2?})", t.elapsed());
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    println!("\n{suite}: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Forks; the child runs `f` and exits 0 (101 if it panicked), without running destructors.
pub fn spawn(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the test harness is single-threaded (harness = false), so the child may run
    // arbitrary code; the child never returns from this function.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => 0,
            Err(_) => 101,
        };
        // SAFETY: _exit ends the child immediately, as a forked child should.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// How a child ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// Waits for `pid` at most `limit`; kills it and panics if it takes longer.
pub fn wait(pid: libc::pid_t, limit: Duration) -> Exit {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: valid out-pointer; `pid` is our child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            if libc::WIFEXITED(status) {
                return Exit::Code(libc::WEXITSTATUS(status));
            }
            return Exit::Signal(libc::WTERMSIG(status));
        }
        assert!(r == 0, "waitpid failed");
        if start.elapsed() > limit {
            kill(pid);
            panic!("child {pid} still running after {limit:?} (hang)");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn kill(pid: libc::pid_t) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

pub fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

/// Blocks until one byte arrives on `fd` (or `limit` passes).
pub fn read_byte(fd: i32, limit: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: valid pollfd array of one.
    let n = unsafe { libc::poll(&mut p, 1, limit.as_millis() as i32) };
    if n != 1 {
        return false;
    }
    let mut b = [0u8; 1];
    // SAFETY: valid one-byte buffer.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) == 1 }
}

pub fn close(fd: i32) {
    // SAFETY: closing a descriptor we own.
    unsafe { libc::close(fd) };
}

pub fn write_byte(fd: i32) {
    // SAFETY: valid one-byte buffer.
    assert_eq!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }, 1);
}
