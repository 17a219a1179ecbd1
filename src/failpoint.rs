//! Named crash points inside the write paths, compiled only with the `failpoints` feature.
//!
//! A test arms one point with an action; when a thread reaches it, the action runs:
//! `Kill` sends `SIGKILL` to the process (a worker dying at exactly that instruction), `Park`
//! writes one byte to a file descriptor (so a supervisor knows it got there) and then sleeps
//! (at most 60 s, then aborts) until someone kills it. `after` skips that many hits first.
//!
//! Points: `lock.acquired`, `insert.written`, `insert.published`, `put.scratch`,
//! `put.committed`, `put.applying`, `put.published`, `delete.ctrl`, `expire.stored`,
//! `clear.half`, `repair.redone`, `repair.recounted`, `counter.named`.

use std::sync::Mutex;

/// What an armed failpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `SIGKILL` ourselves.
    Kill,
    /// Write a byte to `notify_fd` (if non-negative), then sleep until killed.
    Park {
        /// Descriptor to signal arrival on (e.g. a pipe's write end), or -1.
        notify_fd: i32,
    },
}

struct Armed {
    name: String,
    action: Action,
    after: u32,
}

static ARMED: Mutex<Option<Armed>> = Mutex::new(None);
static ANY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Arms `name`: its `after + 1`-th hit runs `action`. Replaces any armed point.
pub fn arm(name: &str, action: Action, after: u32) {
    *ARMED.lock().unwrap_or_else(|p| p.into_inner()) = Some(Armed {
        name: name.to_owned(),
        action,
        after,
    });
    ANY.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Disarms.
pub fn disarm() {
    *ARMED.lock().unwrap_or_else(|p| p.into_inner()) = None;
    ANY.store(false, std::sync::atomic::Ordering::SeqCst);
}

/// Called at each point.
#[doc(hidden)]
pub fn hit(name: &str) {
    if !ANY.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let action = {
        let mut g = ARMED.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_mut() {
            Some(a) if a.name == name => {
                if a.after > 0 {
                    a.after -= 1;
                    return;
                }
                a.action
            }
            _ => return,
        }
    };
    match action {
        Action::Kill => {
            // SAFETY: raising a signal on ourselves has no memory-safety preconditions.
            unsafe { libc::raise(libc::SIGKILL) };
        }
        Action::Park { notify_fd } => {
            if notify_fd >= 0 {
                let b = [1u8];
                // SAFETY: `b` is a valid 1-byte buffer.
                unsafe { libc::write(notify_fd, b.as_ptr().cast(), 1) };
            }
            std::thread::sleep(std::time::Duration::from_secs(60));
            std::process::abort();
        }
    }
}
