//! Model checking of the lock-free protocols with `loom`, which explores every interleaving
//! (and, for relaxed and acquire/release accesses, the values the C++ memory model lets a load
//! return) of a few threads.
//!
//! Run with `cd loom && cargo test --release` (`.ci/run` does).
//!
//! The sequence lock is the crate's own code: `src/sync/seqlock.rs` is compiled against loom's
//! atomics by this crate's lib.rs (the file takes them from `super::atomic`). The protocols around it (publishing a
//! new slot, overwriting through the redo record, repair after a writer died, counter
//! registration) are modelled step by step after `src/table/write.rs`, `src/table/repair.rs`, `src/redo.rs`
//! and `src/counter.rs`, with the
//! same orderings; a change there must be mirrored here. A "dead" writer is a thread that
//! stops after step `k` of its write for every `k`; the repairer runs after it (the robust
//! mutex hands the lock over with a happens-before edge, which `join` provides here) while a
//! lock-free reader runs concurrently with both.

use loom::sync::Arc;
use loom::thread;
use shmstate_loom as seqlock;
use shmstate_loom::atomic::{AtomicU32, AtomicU64, Ordering};

/// Explores every interleaving with at most `PREEMPTIONS` forced context switches per
/// execution (loom's recommended bound: most concurrency bugs need two or three).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(PREEMPTIONS);
    b.check(f);
}

const PREEMPTIONS: usize = 3;

/// A slot: sequence, length, two value words. A value of length `n` is `n` words equal to
/// its generation, so a mix of two writes is detectable.
struct Slot {
    seq: AtomicU32,
    len: AtomicU32,
    w: [AtomicU64; 2],
}

impl Slot {
    fn new(len: u32, g: u64) -> Self {
        Slot {
            seq: AtomicU32::new(0),
            len: AtomicU32::new(len),
            w: [AtomicU64::new(g), AtomicU64::new(g)],
        }
    }

    /// The fields a writer stores inside the odd window, one relaxed store each, with a
    /// possible crash after each store (`budget` counts the stores still allowed).
    fn write_fields(&self, len: u32, g: u64, budget: &mut u32) -> bool {
        if !step(budget) {
            return false;
        }
        self.len.store(len, Ordering::Relaxed);
        for i in 0..len as usize {
            if !step(budget) {
                return false;
            }
            self.w[i].store(g, Ordering::Relaxed);
        }
        true
    }

    /// A lock-free read, as `Table::read_slot` does it: `None` when unstable.
    fn read(&self) -> Option<(u32, [u64; 2])> {
        let s = seqlock::read_begin(&self.seq)?;
        let len = self.len.load(Ordering::Relaxed);
        let mut v = [0; 2];
        for (i, w) in v.iter_mut().enumerate().take((len as usize).min(2)) {
            *w = self.w[i].load(Ordering::Relaxed);
        }
        seqlock::read_validate(&self.seq, s).then_some((len, v))
    }
}

/// Spends one step of a writer's budget: false means the writer dies here.
fn step(budget: &mut u32) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    true
}

/// A consistent value of generation `g` and length `len`.
fn is_value(r: (u32, [u64; 2]), len: u32, g: u64) -> bool {
    r.0 == len && r.1[..len as usize].iter().all(|w| *w == g)
}

/// Two writes in a row against a concurrent reader: every validated read is one whole value.
#[test]
fn seqlock_reader_never_sees_a_torn_value() {
    model(|| {
        let slot = Arc::new(Slot::new(1, 1));
        let reader = {
            let slot = slot.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    if let Some(r) = slot.read() {
                        assert!(
                            is_value(r, 1, 1) || is_value(r, 2, 2) || is_value(r, 1, 3),
                            "torn read {r:?}"
                        );
                    }
                }
            })
        };
        for (len, g) in [(2, 2), (1, 3)] {
            let odd = seqlock::write_begin(&slot.seq);
            assert!(slot.write_fields(len, g, &mut u32::MAX.clone()));
            seqlock::write_end(&slot.seq, odd);
        }
        reader.join().unwrap();
        assert!(is_value(slot.read().unwrap(), 1, 3));
    });
}

/// The shard's repair record.
const IDLE: u32 = 0;
const REDO_PUT: u32 = 1;

/// A shard with one target slot, its scratch slot and the record (`op`, `touch`).
struct Shard {
    slot: Slot,
    scratch: Slot,
    ctrl: AtomicU32,
    op: AtomicU32,
    touch: AtomicU32,
}

const EMPTY: u32 = 0;
const TAG: u32 = 0x80 | 0x2a;

impl Shard {
    fn new(ctrl: u32) -> Self {
        Shard {
            slot: Slot::new(1, 1),
            scratch: Slot::new(0, 0),
            ctrl: AtomicU32::new(ctrl),
            op: AtomicU32::new(IDLE),
            touch: AtomicU32::new(0),
        }
    }

    /// `Table::overwrite` of the slot with generation 2 (length 2), dying after `budget`
    /// steps. Returns whether the redo record was committed.
    fn overwrite(&self, mut budget: u32) -> bool {
        let b = &mut budget;
        if !self.scratch.write_fields(2, 2, b) || !step(b) {
            return false;
        }
        self.op.store(REDO_PUT, Ordering::Release); // the commit point
        if !step(b) {
            return true;
        }
        self.touch.store(1, Ordering::Release);
        if !step(b) {
            return true;
        }
        let odd = seqlock::write_begin(&self.slot.seq);
        if !self.slot.write_fields(2, 2, b) || !step(b) {
            return true;
        }
        seqlock::write_end(&self.slot.seq, odd);
        if !step(b) {
            return true;
        }
        self.touch.store(0, Ordering::Release);
        if !step(b) {
            return true;
        }
        self.op.store(IDLE, Ordering::Release);
        true
    }

    /// `Table::insert_free` of generation 2 into the (free) slot, dying after `budget` steps.
    /// Returns whether the control byte was published.
    fn insert(&self, mut budget: u32) -> bool {
        let b = &mut budget;
        if !step(b) {
            return false;
        }
        self.touch.store(1, Ordering::Release);
        if !step(b) {
            return false;
        }
        let odd = seqlock::write_begin(&self.slot.seq);
        if !self.slot.write_fields(2, 2, b) || !step(b) {
            return false;
        }
        self.ctrl.store(TAG, Ordering::Release);
        if !step(b) {
            return true;
        }
        seqlock::write_end(&self.slot.seq, odd);
        if !step(b) {
            return true;
        }
        self.touch.store(0, Ordering::Release);
        true
    }

    /// `Table::repair`: redo a committed overwrite from the scratch copy, close the odd window
    /// of the touched slot, go idle. Idempotent.
    fn repair(&self) {
        if self.op.load(Ordering::Acquire) == REDO_PUT {
            self.touch.store(1, Ordering::Release);
            let odd = seqlock::write_begin(&self.slot.seq);
            let len = self.scratch.len.load(Ordering::Relaxed);
            self.slot.len.store(len, Ordering::Relaxed);
            for i in 0..len as usize {
                let w = self.scratch.w[i].load(Ordering::Relaxed);
                self.slot.w[i].store(w, Ordering::Relaxed);
            }
            self.ctrl.store(TAG, Ordering::Release);
            seqlock::write_end(&self.slot.seq, odd);
        }
        if self.touch.load(Ordering::Acquire) != 0 {
            let s = self.slot.seq.load(Ordering::Relaxed);
            if s & 1 == 1 {
                seqlock::write_end(&self.slot.seq, s);
            }
        }
        self.touch.store(0, Ordering::Release);
        self.op.store(IDLE, Ordering::Release);
    }

    /// A lock-free lookup as `Table::read` does it: the control byte (acquire) as a hint, then
    /// the seqlock read, with the control byte re-checked inside the window. `Some(None)` is a
    /// miss, `None` unstable.
    fn lookup(&self) -> Option<Option<(u32, [u64; 2])>> {
        if self.ctrl.load(Ordering::Acquire) != TAG {
            return Some(None);
        }
        let s = seqlock::read_begin(&self.slot.seq)?;
        if self.ctrl.load(Ordering::Relaxed) != TAG {
            return seqlock::read_validate(&self.slot.seq, s).then_some(None);
        }
        let len = self.slot.len.load(Ordering::Relaxed);
        let mut v = [0; 2];
        for (i, w) in v.iter_mut().enumerate().take((len as usize).min(2)) {
            *w = self.slot.w[i].load(Ordering::Relaxed);
        }
        seqlock::read_validate(&self.slot.seq, s).then_some(Some((len, v)))
    }
}

/// Steps in `Shard::overwrite` / `Shard::insert` (scratch len + 2 words, commit, touch, slot
/// len + 2 words, end, untouch, idle): killing after each of 0..=STEPS covers every point.
const STEPS: u32 = 12;

/// A writer dies after each step of an overwrite; the repairer (next lock holder) finishes
/// or discards it while a reader reads without locks. The reader never sees a torn value,
/// and the final value is the new one exactly when the redo record was committed.
#[test]
fn dead_overwriter_is_repaired_under_a_concurrent_reader() {
    for k in 0..=STEPS {
        model(move || {
            let shard = Arc::new(Shard::new(TAG));
            let reader = {
                let shard = shard.clone();
                thread::spawn(move || {
                    for _ in 0..2 {
                        if let Some(Some(r)) = shard.lookup() {
                            assert!(is_value(r, 1, 1) || is_value(r, 2, 2), "k={k}: torn {r:?}");
                        }
                    }
                })
            };
            let committed = shard.overwrite(k);
            shard.repair();
            reader.join().unwrap();
            let end = shard
                .lookup()
                .expect("stable after repair")
                .expect("present");
            let want = if committed { (2, 2) } else { (1, 1) };
            assert!(is_value(end, want.0, want.1), "k={k}: {end:?}");
            assert_eq!(shard.op.load(Ordering::Relaxed), IDLE);
        });
    }
}

/// The repairer itself dies after each step of its own repair of a committed overwrite; the
/// next holder repairs again (repair is idempotent).
#[test]
fn repair_is_idempotent_when_the_repairer_dies() {
    model(|| {
        let shard = Arc::new(Shard::new(TAG));
        // Writer died right after the commit point.
        assert!(shard.overwrite(4));
        let reader = {
            let shard = shard.clone();
            thread::spawn(move || {
                if let Some(Some(r)) = shard.lookup() {
                    assert!(is_value(r, 1, 1) || is_value(r, 2, 2), "torn {r:?}");
                }
            })
        };
        // A first repairer dies midway: it had reopened the window and copied one word.
        shard.touch.store(1, Ordering::Release);
        let _ = seqlock::write_begin(&shard.slot.seq);
        shard.slot.len.store(2, Ordering::Relaxed);
        shard.slot.w[0].store(2, Ordering::Relaxed);
        // The next holder repairs again.
        shard.repair();
        reader.join().unwrap();
        let end = shard.lookup().unwrap().unwrap();
        assert!(is_value(end, 2, 2), "{end:?}");
    });
}

/// A writer dies after each step of publishing a new entry into a free slot; a reader sees
/// a miss or the whole new value, and after repair the entry exists exactly when its
/// control byte was published.
#[test]
fn dead_inserter_is_repaired_under_a_concurrent_reader() {
    for k in 0..=8 {
        model(move || {
            let shard = Arc::new(Shard::new(EMPTY));
            let reader = {
                let shard = shard.clone();
                thread::spawn(move || {
                    for _ in 0..2 {
                        if let Some(Some(r)) = shard.lookup() {
                            assert!(is_value(r, 2, 2), "k={k}: saw {r:?}");
                        }
                    }
                })
            };
            let published = shard.insert(k);
            shard.repair();
            reader.join().unwrap();
            let end = shard.lookup().expect("stable after repair");
            if published {
                assert!(is_value(end.expect("present"), 2, 2), "k={k}");
            } else {
                assert!(end.is_none(), "k={k}: {end:?}");
            }
        });
    }
}

/// Counter registration (`counter::register`): the name is written, then the entry is made
/// LIVE with a release store; a reader that sees LIVE (acquire) sees the whole name.
#[test]
fn counter_registration_publishes_the_whole_name() {
    const LIVE: u32 = 1;
    model(|| {
        let state = Arc::new(AtomicU32::new(0));
        let name = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let name_len = Arc::new(AtomicU32::new(0));
        let reader = {
            let (state, name, name_len) = (state.clone(), name.clone(), name_len.clone());
            thread::spawn(move || {
                if state.load(Ordering::Acquire) == LIVE {
                    assert_eq!(name_len.load(Ordering::Relaxed), 16);
                    assert_eq!(name[0].load(Ordering::Relaxed), 0x1111);
                    assert_eq!(name[1].load(Ordering::Relaxed), 0x2222);
                }
            })
        };
        name_len.store(16, Ordering::Relaxed);
        name[0].store(0x1111, Ordering::Relaxed);
        name[1].store(0x2222, Ordering::Relaxed);
        state.store(LIVE, Ordering::Release);
        reader.join().unwrap();
    });
}

/// The models can fail: a seqlock whose reader skips the acquire fence (validates with a
/// plain relaxed re-read) is caught reading a torn value.
#[test]
#[should_panic(expected = "torn")]
fn broken_seqlock_is_caught() {
    model(|| {
        let slot = Arc::new(Slot::new(2, 1));
        let reader = {
            let slot = slot.clone();
            thread::spawn(move || {
                let s = slot.seq.load(Ordering::Relaxed);
                if s & 1 == 0 {
                    let a = slot.w[0].load(Ordering::Relaxed);
                    let b = slot.w[1].load(Ordering::Relaxed);
                    if slot.seq.load(Ordering::Relaxed) == s {
                        assert_eq!(a, b, "torn");
                    }
                }
            })
        };
        let odd = seqlock::write_begin(&slot.seq);
        slot.w[0].store(2, Ordering::Relaxed);
        slot.w[1].store(2, Ordering::Relaxed);
        seqlock::write_end(&slot.seq, odd);
        reader.join().unwrap();
    });
}
