//! Named crash points inside the write paths, compiled only with the `failpoints` feature.
//!
//! A test arms one point with an action; when a thread reaches it, the action runs:
//! `Kill` sends `SIGKILL` to the process (a worker dying at exactly that instruction), `Park`
//! writes one byte to a file descriptor (so a supervisor knows it got there) and then sleeps
//! (at most 60 s, then aborts) until someone kills it. `after` skips that many hits first.
//!
//! Every point is listed in [`POINTS`] (the crash tests check that each one is exercised).

use std::sync::Mutex;

/// Every failpoint compiled into the crate, with the write path it sits in.
pub const POINTS: &[(&str, &str)] = &[
    (
        "lock.acquired",
        "any write: shard lock taken, nothing written yet",
    ),
    (
        "insert.written",
        "insert: free slot written, control byte not yet published",
    ),
    (
        "insert.published",
        "insert: control byte published, counts not yet updated",
    ),
    (
        "put.scratch",
        "overwrite: redo copy written to scratch, not committed",
    ),
    (
        "put.committed",
        "overwrite: redo record committed, slot not yet changed",
    ),
    (
        "put.applying",
        "overwrite: slot half-rewritten (odd sequence)",
    ),
    (
        "put.published",
        "overwrite: slot published, record not yet idle",
    ),
    (
        "delete.ctrl",
        "delete: control byte changed, sequence still odd",
    ),
    (
        "expire.stored",
        "expire: new expiry stored, sequence still odd",
    ),
    (
        "evict.chosen",
        "evict: victim chosen (CLOCK bits cleared), not yet overwritten",
    ),
    (
        "incr.computed",
        "incr: new value parsed and computed, not yet written",
    ),
    (
        "cas.matched",
        "compare_and_swap: expected value matched, nothing written",
    ),
    (
        "sweep.removed",
        "insert: one expired entry swept to make room",
    ),
    ("flush.removed", "flush_expired: one expired entry removed"),
    (
        "prefix.removed",
        "delete_prefix: one matching entry removed",
    ),
    ("clear.half", "clear: half the control groups zeroed"),
    (
        "repair.redone",
        "repair: dead writer's redo re-applied, record still busy",
    ),
    (
        "repair.recounted",
        "repair: counts recomputed, record still busy",
    ),
    (
        "counter.named",
        "counter registration: name written, entry not yet live",
    ),
    (
        "put.freeing",
        "overwrite: new value published, the old value's heap blocks not yet freed",
    ),
    (
        "delete.freeing",
        "delete: slot removed, its heap blocks not yet freed",
    ),
    (
        "clear.heap_reset",
        "clear: control groups zeroed and the heap reset, record still busy",
    ),
    (
        "heap.stored",
        "heap: a new value's blocks written, not yet published",
    ),
    (
        "heap.reclaimed",
        "heap: an expired entry removed to make room",
    ),
    (
        "heap.evicting",
        "heap: CLOCK chose a victim to make room, not yet removed",
    ),
    (
        "heap.evicted",
        "heap: a victim evicted to make room, the new value not yet stored",
    ),
    (
        "heap.rebuild_reset",
        "repair: heap metadata reset, no value marked yet",
    ),
    (
        "heap.rebuild_marked",
        "repair: one more value's blocks marked in the rebuilt heap",
    ),
    (
        "repair.heap_rebuilt",
        "repair: heap metadata rebuilt, dirty flag still set",
    ),
    (
        "compact.draining",
        "compaction: a page taken out of its partial map, no block moved yet",
    ),
    (
        "compact.copied",
        "compaction: a block copied, its slot not yet re-pointed",
    ),
    (
        "compact.moved",
        "compaction: slot re-pointed, the old block not yet freed",
    ),
    (
        "compact.block_freed",
        "compaction: a moved tail's old block freed, its old extent not yet",
    ),
    (
        "value.block_written",
        "heap value: a direct value's block written, value bytes not counted",
    ),
    (
        "value.piece_written",
        "heap value: one more piece of a large value written",
    ),
    (
        "value.extent_listing",
        "heap value: one more piece locator written into the extent",
    ),
    (
        "value.undoing",
        "heap value: no room for the next piece, the pieces taken not yet freed",
    ),
    (
        "value.part_freed",
        "heap value: one more block or page of a value freed",
    ),
    (
        "pool.page_taken",
        "page pool: a page marked used, its descriptor not yet written",
    ),
    (
        "pool.class_page",
        "page pool: a fresh page given a class, its counters not yet updated",
    ),
    (
        "pool.large_taken",
        "page pool: a whole page marked large, owner and piece not yet written",
    ),
    (
        "pool.block_taken",
        "page pool: a block's bit set, counters and maps not yet updated",
    ),
    (
        "pool.block_counted",
        "page pool: a block counted, its header not yet written",
    ),
    (
        "pool.block_freed",
        "page pool: a block's bit cleared, counters and maps not yet updated",
    ),
    (
        "pool.page_emptied",
        "page pool: an emptied page uncounted, not yet marked free",
    ),
    (
        "pool.large_freed",
        "page pool: a whole page marked free, its used bit still set",
    ),
];

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
///
/// # Panics
/// If `name` is not one of [`POINTS`] (a typo would otherwise make a crash test vacuous).
pub fn arm(name: &str, action: Action, after: u32) {
    assert!(
        POINTS.iter().any(|(n, _)| *n == name),
        "unknown failpoint {name:?}"
    );
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
            let me = rustix::process::getpid();
            let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
        }
        Action::Park { notify_fd } => {
            if notify_fd >= 0 {
                notify(notify_fd);
            }
            std::thread::sleep(std::time::Duration::from_secs(60));
            std::process::abort();
        }
    }
}

/// Writes one byte to the caller's descriptor `fd` (a failed write only delays the supervisor,
/// which then times out).
#[allow(unsafe_code)]
fn notify(fd: i32) {
    // SAFETY: `fd` is the descriptor the test passed to `arm` and keeps open (the pipe to its
    // supervisor); it is borrowed only for this one write.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let _ = rustix::io::write(fd, &[1u8]);
}
