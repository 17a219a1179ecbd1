//! Model checking of the value heap's publish/free protocol with `loom`: a lock-free reader
//! copies a value through a slot's locator while writers re-point the slot at another block,
//! free the old block and reuse it for a different value. The reader must never return a torn
//! value or a foreign one (the bytes of the value that reused the block).
//!
//! The sequence lock is the crate's own (`src/sync/seqlock.rs`, compiled against loom's atomics
//! by this crate's lib.rs). The heap is modelled with plain atomics, step by step after
//! `src/heap/value.rs` (`store` writes a value's bytes into fresh blocks with relaxed stores;
//! `read` copies them with relaxed loads), `src/table/write.rs` (`overwrite`: store the new
//! value, commit the redo record, re-point the slot inside its odd sequence window, then free
//! the old value), `src/table/space.rs` (`relocate`: copy a block, re-point its owner, free the
//! old block; `rebuild_heap`) and `src/table/repair.rs`, with the same orderings. A change there
//! must be mirrored here.
//!
//! A block is two words; value `g` is a block holding `[g, g]`. Slot 1 starts at block 0 with
//! value 1; the writers give it value 2 in block 1 (or move value 1 to block 1), free block 0,
//! and store value 3 for slot 2 in block 0. A validated read of slot 1 must be `[1, 1]` or
//! `[2, 2]`.
//!
//! Handing the shard lock from one holder to the next (or from a dead holder to its repairer)
//! is a happens-before edge; `join` provides it here.
//!
//! **Finding.** A block freed by one lock holder and reused by the next (another process, or
//! the repairer of a dead writer) is safe for lock-free readers only if the next holder issues
//! a release fence before its first write into heap blocks: the `*_without_a_fence_is_caught`
//! models show loom finding a reader that accepts the new owner's bytes otherwise. The core as
//! of this writing (src/table/space.rs, `Locked::touch_heap`) issues no such fence; the
//! `*_after_a_release_fence` models are of the protocol with it, the fix proposed in the
//! heap-crash report (one `fence(Release)` when a holder first touches the heap; free on x86).
//!
//! **Finding.** `clear` empties the control bytes and resets the heap without moving any slot's
//! sequence, so the blocks it frees are reused under readers whose validation cannot notice
//! (`clear_without_moving_sequences_is_caught`; no memory-model subtlety: it happens on x86).
//! `clear_that_moves_each_live_sequence` is the protocol with the fix.

use loom::sync::Arc;
use loom::thread;
use shmstate_loom as seqlock;
use shmstate_loom::atomic::{fence, AtomicU32, AtomicU64, Ordering};

const PREEMPTIONS: usize = 3;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(PREEMPTIONS);
    b.check(f);
}

const BLOCKS: usize = 3;
/// Locator of "no block" (slot 2 before it is written).
const NONE: u32 = u32::MAX;

struct Slot {
    seq: AtomicU32,
    loc: AtomicU32,
}

/// One shard: two slots, three blocks, the pool's free map (written under the lock only) and
/// the redo record (`op`: idle, or "put `new` into slot 1").
struct Heap {
    s1: Slot,
    s2: Slot,
    blocks: [[AtomicU64; 2]; BLOCKS],
    used: AtomicU32,
    op: AtomicU32,
    new: AtomicU32,
}

const IDLE: u32 = 0;
const REDO_PUT: u32 = 1;

impl Heap {
    fn new() -> Self {
        let h = Heap {
            s1: Slot {
                seq: AtomicU32::new(0),
                loc: AtomicU32::new(0),
            },
            s2: Slot {
                seq: AtomicU32::new(0),
                loc: AtomicU32::new(NONE),
            },
            blocks: std::array::from_fn(|_| [AtomicU64::new(0), AtomicU64::new(0)]),
            used: AtomicU32::new(1), // block 0: slot 1's value
            op: AtomicU32::new(IDLE),
            new: AtomicU32::new(NONE),
        };
        for w in &h.blocks[0] {
            w.store(1, Ordering::Relaxed);
        }
        h
    }

    /// `value::read` through `Shard::read_slot`: the slot's locator, then the block's words,
    /// validated by the slot's sequence. `None`: unstable (the reader retries or locks).
    fn read(&self, s: &Slot) -> Option<[u64; 2]> {
        let seq = seqlock::read_begin(&s.seq)?;
        let loc = s.loc.load(Ordering::Relaxed) as usize;
        let mut v = [0; 2];
        if loc < BLOCKS {
            for (i, w) in v.iter_mut().enumerate() {
                *w = self.blocks[loc][i].load(Ordering::Relaxed);
            }
        }
        seqlock::read_validate(&s.seq, seq).then_some(v)
    }

    /// `Pool::alloc_block`: the lowest free block (the caller holds the lock).
    fn alloc(&self) -> usize {
        let used = self.used.load(Ordering::Relaxed);
        let b = (!used).trailing_zeros() as usize;
        assert!(b < BLOCKS, "pool exhausted");
        self.used.store(used | 1 << b, Ordering::Relaxed);
        b
    }

    fn free(&self, b: usize) {
        let used = self.used.load(Ordering::Relaxed);
        self.used.store(used & !(1 << b), Ordering::Relaxed);
    }

    /// `value::store`: value `g` into a fresh block, relaxed stores, no slot refers to it yet.
    fn store_value(&self, g: u64) -> usize {
        let b = self.alloc();
        for w in &self.blocks[b] {
            w.store(g, Ordering::Relaxed);
        }
        b
    }

    /// `overwrite_val`: re-points slot `s` at block `b` inside its odd sequence window.
    fn publish(s: &Slot, b: usize) {
        let odd = seqlock::write_begin(&s.seq);
        s.loc.store(b as u32, Ordering::Relaxed);
        seqlock::write_end(&s.seq, odd);
    }

    /// A writer that stores a new value for slot 2 (what the next write of another key does
    /// with a block just freed).
    fn write_slot2(&self, g: u64) {
        let b = self.store_value(g);
        Self::publish(&self.s2, b);
    }

    /// The same, by a lock holder that did not free the block itself (the next holder, or a
    /// repairer); `fenced`: it issues a release fence before its first write into heap blocks.
    fn next_holder_writes_slot2(&self, g: u64, fenced: bool) {
        if fenced {
            fence(Ordering::Release);
        }
        self.write_slot2(g);
    }

    /// `repair` + `rebuild_heap` after a writer died: redo a committed put, then recompute the
    /// free map from the slots.
    fn repair(&self) {
        if self.op.load(Ordering::Acquire) == REDO_PUT {
            let b = self.new.load(Ordering::Relaxed) as usize;
            Self::publish(&self.s1, b);
        } else {
            // An odd sequence without a committed record cannot happen (the commit comes
            // first); close it anyway, as repair does for the touched slot.
            let s = self.s1.seq.load(Ordering::Relaxed);
            if s & 1 == 1 {
                seqlock::write_end(&self.s1.seq, s);
            }
        }
        self.op.store(IDLE, Ordering::Release);
        let mut used = 0;
        for s in [&self.s1, &self.s2] {
            let l = s.loc.load(Ordering::Relaxed);
            if l != NONE {
                used |= 1 << l;
            }
        }
        self.used.store(used, Ordering::Relaxed);
    }
}

/// The reader's verdict on one validated read of slot 1.
fn check(v: Option<[u64; 2]>, allowed: &[u64]) {
    if let Some(v) = v {
        assert!(
            v[0] == v[1] && allowed.contains(&v[0]),
            "torn or foreign value {v:?} (allowed: {allowed:?})"
        );
    }
}

fn reader(h: &Arc<Heap>, allowed: &'static [u64]) -> thread::JoinHandle<()> {
    let h = h.clone();
    thread::spawn(move || check(h.read(&h.s1), allowed))
}

/// One writer: overwrite slot 1 (value 2 in a fresh block), free the old block, and reuse it
/// for slot 2's value 3.
#[test]
fn overwrite_free_and_reuse_by_one_writer() {
    model(|| {
        let h = Arc::new(Heap::new());
        let r = reader(&h, &[1, 2]);
        let b = h.store_value(2);
        Heap::publish(&h.s1, b);
        h.free(0);
        h.write_slot2(3);
        r.join().unwrap();
        assert_eq!(h.read(&h.s1), Some([2, 2]));
        assert_eq!(h.read(&h.s2), Some([3, 3]));
    });
}

/// The block freed by one lock holder is reused by the next (another process): the reader that
/// started before the overwrite must still not accept the new owner's bytes.
fn block_freed_by_one_holder_and_reused_by_the_next(fenced: bool) {
    model(move || {
        let h = Arc::new(Heap::new());
        let r = reader(&h, &[1, 2]);
        let w1 = {
            let h = h.clone();
            thread::spawn(move || {
                let b = h.store_value(2);
                Heap::publish(&h.s1, b);
                h.free(0);
            })
        };
        w1.join().unwrap(); // unlock -> lock
        h.next_holder_writes_slot2(3, fenced);
        r.join().unwrap();
    });
}

/// With a release fence in the next holder before it writes into heap blocks, the reader's
/// validation catches every reuse: the new owner's stores come after the fence, everything the
/// previous holder did (the re-pointing sequence bump included) happens before it, so a reader
/// that copies those bytes and then fences sees the bump.
#[test]
fn reuse_by_the_next_holder_after_a_release_fence() {
    block_freed_by_one_holder_and_reused_by_the_next(true);
}

/// Without that fence the C++ memory model (which loom explores) lets the reader see the new
/// owner's bytes and still an unchanged sequence: the next holder's relaxed stores are ordered
/// after the previous holder's sequence bump only for threads that synchronize with the next
/// holder, and the reader does not. (x86 stores and loads are ordered anyway; the language
/// model, compiler and weaker processors promise nothing.)
#[test]
#[should_panic(expected = "foreign")]
fn reuse_by_the_next_holder_without_a_fence_is_caught() {
    block_freed_by_one_holder_and_reused_by_the_next(false);
}

/// Compaction (`relocate`): value 1 is copied to a fresh block, slot 1 re-pointed, the old
/// block freed and reused. The reader sees value 1 throughout.
#[test]
fn compaction_move_then_reuse() {
    model(|| {
        let h = Arc::new(Heap::new());
        let r = reader(&h, &[1]);
        let b = h.alloc();
        for i in 0..2 {
            let w = h.blocks[0][i].load(Ordering::Relaxed);
            h.blocks[b][i].store(w, Ordering::Relaxed);
        }
        Heap::publish(&h.s1, b);
        h.free(0);
        h.write_slot2(3);
        r.join().unwrap();
        assert_eq!(h.read(&h.s1), Some([1, 1]));
    });
}

/// A writer killed after each step of an overwrite; the next lock holder repairs (redoes a
/// committed put, rebuilds the free map from the slots) and reuses a free block for slot 2,
/// all while a reader copies slot 1.
fn dead_overwriter_then_repair_and_reuse(fenced: bool) {
    const STEPS: u32 = 6;
    for k in 0..=STEPS {
        model(move || {
            let h = Arc::new(Heap::new());
            let r = reader(&h, &[1, 2]);
            let w = {
                let h = h.clone();
                thread::spawn(move || {
                    let mut budget = k;
                    let mut step = || {
                        let go = budget > 0;
                        budget = budget.saturating_sub(1);
                        go
                    };
                    if !step() {
                        return;
                    }
                    let b = h.store_value(2);
                    if !step() {
                        return;
                    }
                    h.new.store(b as u32, Ordering::Relaxed);
                    h.op.store(REDO_PUT, Ordering::Release); // commit
                    if !step() {
                        return;
                    }
                    let odd = seqlock::write_begin(&h.s1.seq);
                    if !step() {
                        return;
                    }
                    h.s1.loc.store(b as u32, Ordering::Relaxed);
                    if !step() {
                        return;
                    }
                    seqlock::write_end(&h.s1.seq, odd);
                    h.op.store(IDLE, Ordering::Release);
                    if !step() {
                        return;
                    }
                    h.free(0);
                })
            };
            w.join().unwrap(); // died holding the lock: the next holder repairs
            h.repair();
            h.next_holder_writes_slot2(3, fenced);
            r.join().unwrap();
            let v = h.read(&h.s1).expect("stable after repair");
            assert!(v == [1, 1] || v == [2, 2], "{v:?}");
            assert_eq!(h.read(&h.s2), Some([3, 3]));
        });
    }
}

#[test]
fn dead_overwriter_repaired_then_reuse_after_a_release_fence() {
    dead_overwriter_then_repair_and_reuse(true);
}

/// The repairer is a next holder too: without the fence, a block the dead writer's value no
/// longer needs is reused under a reader that accepts it.
#[test]
#[should_panic(expected = "foreign")]
fn dead_overwriter_repaired_then_reuse_without_a_fence_is_caught() {
    dead_overwriter_then_repair_and_reuse(false);
}

/// `clear` (src/table/write.rs `redo_clear`): the slots' control bytes are zeroed and the heap
/// reset, then a write of another key takes block 0 again. The reader of slot 1 checks its
/// control byte, copies under the slot's sequence, validates. `bump`: clear moves the sequence
/// of each live slot (odd before its control byte changes, even after).
fn clear_then_reuse(bump: bool) {
    model(move || {
        let h = Arc::new(Heap::new());
        let ctrl = Arc::new(AtomicU32::new(FULL));
        let r = {
            let (h, ctrl) = (h.clone(), ctrl.clone());
            thread::spawn(move || {
                if ctrl.load(Ordering::Acquire) != FULL {
                    return; // a miss
                }
                let Some(s) = seqlock::read_begin(&h.s1.seq) else {
                    return;
                };
                if ctrl.load(Ordering::Relaxed) != FULL {
                    return;
                }
                let loc = h.s1.loc.load(Ordering::Relaxed) as usize;
                let v = [
                    h.blocks[loc][0].load(Ordering::Relaxed),
                    h.blocks[loc][1].load(Ordering::Relaxed),
                ];
                check(seqlock::read_validate(&h.s1.seq, s).then_some(v), &[1]);
            })
        };
        let odd = bump.then(|| seqlock::write_begin(&h.s1.seq));
        ctrl.store(EMPTY, Ordering::Release);
        if let Some(odd) = odd {
            seqlock::write_end(&h.s1.seq, odd);
        }
        h.used.store(0, Ordering::Relaxed); // pool reset
        h.write_slot2(3);
        r.join().unwrap();
    });
}

const FULL: u32 = 0x80;
const EMPTY: u32 = 0;

/// Clear as built frees every block without moving any slot's sequence: a reader that was
/// copying a value when the shard was cleared accepts the bytes of the value that reused the
/// block (the torture suite's `clear_never_tears_a_read` sees it in real processes).
#[test]
#[should_panic(expected = "foreign")]
fn clear_without_moving_sequences_is_caught() {
    clear_then_reuse(false);
}

/// A clear that moves each live slot's sequence around its control byte change is safe.
#[test]
fn clear_that_moves_each_live_sequence() {
    clear_then_reuse(true);
}

/// The models can fail: freeing and reusing the old block before the slot's sequence moves
/// (free before re-point) is caught returning the foreign value.
#[test]
#[should_panic(expected = "foreign")]
fn broken_free_before_republish_is_caught() {
    model(|| {
        let h = Arc::new(Heap::new());
        let r = reader(&h, &[1, 2]);
        let b = h.store_value(2);
        h.free(0);
        h.write_slot2(3); // block 0 reused while slot 1 still points at it
        Heap::publish(&h.s1, b);
        r.join().unwrap();
    });
}

/// And a move that frees the old block first (the compactor's order reversed) is caught too.
#[test]
#[should_panic(expected = "foreign")]
fn broken_move_that_frees_first_is_caught() {
    model(|| {
        let h = Arc::new(Heap::new());
        let r = reader(&h, &[1]);
        let b = h.alloc();
        for i in 0..2 {
            let w = h.blocks[0][i].load(Ordering::Relaxed);
            h.blocks[b][i].store(w, Ordering::Relaxed);
        }
        h.free(0);
        h.write_slot2(3);
        Heap::publish(&h.s1, b);
        r.join().unwrap();
    });
}
