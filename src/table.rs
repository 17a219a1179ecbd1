//! The sharded hash table: probing, lock-free reads, locked writes, expiry, eviction, repair
//! and verification. Works on a [`RawRegion`] through the offsets of [`Layout`].
//!
//! # Table design
//!
//! Each shard is an open-addressing table of `groups x 8` fixed-size slots with one control
//! byte per slot (hashbrown's scheme, with our own byte values so a zero-filled region is an
//! empty table):
//!
//! | control byte  | meaning                                                   |
//! |---------------|-----------------------------------------------------------|
//! | `0x00`        | EMPTY: never used since the group last had room; lookups stop at a group containing one |
//! | `0x01`        | DELETED: a tombstone; lookups continue past it            |
//! | `0x80 \| h7`  | FULL, with 7 bits of the key's hash                       |
//! | `0x02..=0x7F` | invalid (corruption; reported by `verify`)                |
//!
//! A key's probe sequence visits groups `home, home+1, home+3, home+6, ...` (triangular
//! numbers, modulo the group count), at most [`MAX_PROBE_GROUPS`]. A lookup stops at the first
//! group that contains an EMPTY byte. A delete may write EMPTY only when its group already has
//! an EMPTY byte (then no lookup ever continued past this group, so none is cut short);
//! otherwise it writes DELETED. Keys never move, which is what lets readers probe without a lock.
//! Bounded probing means a key that finds no slot within the bound is refused (`Full`) or
//! evicts, never causes a longer scan; a shard also refuses past 7/8 load.
//!
//! # Writes and crash consistency
//!
//! Writers hold the shard's robust mutex. Every write is one of:
//! * **insert into a free slot**: write the slot (seqlock odd), then publish the control byte
//!   with one store. Before the store nothing is visible; after it the entry is complete.
//! * **overwrite a FULL slot** (update, incr, CAS, reuse of an expired slot, eviction): write the
//!   new entry into a scratch slot (the writing thread's own, or the shard's), then commit by
//!   storing `REDO_PUT` (with target, tag and which scratch slot) in the repair record, then copy into the target, then clear the record. A crash before
//!   the commit leaves the old entry; after it, repair redoes the copy from scratch.
//! * **delete / change expiry**: one store to the control byte (or the expiry word) inside the
//!   slot's odd window.
//! * **clear**: commit `REDO_CLEAR`, then empty every control group.
//!
//! The record's `touch` word names the slot whose sequence number may be odd. Repair (run by the
//! next holder after `EOWNERDEAD`, or whenever a holder finds the record not idle) redoes a
//! committed put or clear, makes `touch`'s sequence even, recounts the shard, then idles the
//! record; every step is idempotent, so a repairer that dies is simply repaired after.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::LazyNow;
use crate::config::WhenFull;
use crate::error::{Error, Result};
use crate::layout::{
    rec, shard, slot, stat_slot, Layout, GROUP_WIDTH, MAX_PROBE_GROUPS, STAT_SLOTS,
};
use crate::raw::{self, RawRegion, SlotView};
use crate::stats::ThreadSlot;
use crate::sync::seqlock;
use crate::sync::{MutexGuard, RobustMutex};

/// Where a hash sends a key: which shard, which home group, and the 7-bit tag kept in the
/// control byte. The three use different bits so that keys sharing a group rarely share a tag.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    pub shard: usize,
    pub home: usize,
    pub tag: u8,
}

/// `(x * n) >> 32`: maps the 32-bit `x` to `0..n` without a division (Lemire's fastrange).
#[inline]
pub(crate) fn fastrange(x: u32, n: u32) -> u32 {
    ((u64::from(x) * u64::from(n)) >> 32) as u32
}

#[inline]
pub(crate) fn place(h: u64, shards: u32, groups: u32) -> Placement {
    Placement {
        shard: fastrange(h as u32, shards) as usize,
        home: fastrange((h >> 32) as u32, groups) as usize,
        tag: ctrl::full(h),
    }
}

/// Control-byte values and SWAR matching over one 8-byte group.
pub(crate) mod ctrl {
    pub const EMPTY: u8 = 0x00;
    pub const DELETED: u8 = 0x01;
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

    /// The FULL control byte for hash `h`.
    #[inline]
    pub fn full(h: u64) -> u8 {
        0x80 | (h as u8 & 0x7f)
    }
    #[inline]
    pub fn is_full(b: u8) -> bool {
        b & 0x80 != 0
    }
    #[inline]
    pub fn is_valid(b: u8) -> bool {
        b == EMPTY || b == DELETED || is_full(b)
    }
    /// 0x80 in each byte of `x` that is zero, exactly (no false positives).
    #[inline]
    fn zero_bytes(x: u64) -> u64 {
        !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
    }
    /// Bytes equal to `b`.
    #[inline]
    pub fn match_byte(group: u64, b: u8) -> u64 {
        zero_bytes(group ^ (LO * u64::from(b)))
    }
    #[inline]
    pub fn match_empty(group: u64) -> u64 {
        zero_bytes(group)
    }
    /// EMPTY or DELETED (top bit clear, and valid).
    #[inline]
    pub fn match_free(group: u64) -> u64 {
        zero_bytes(group) | match_byte(group, DELETED)
    }
    #[inline]
    pub fn match_full(group: u64) -> u64 {
        group & HI
    }
    /// Index (0..8) of the lowest matched byte.
    #[inline]
    pub fn lowest(mask: u64) -> usize {
        (mask.trailing_zeros() / 8) as usize
    }
    #[inline]
    pub fn byte(group: u64, i: usize) -> u8 {
        (group >> (8 * i)) as u8
    }
}

/// Triangular probe sequence over `n` groups, at most `MAX_PROBE_GROUPS` long.
#[derive(Clone)]
pub(crate) struct Probe {
    pos: usize,
    stride: usize,
    n: usize,
    left: u32,
}

impl Probe {
    #[inline]
    pub(crate) fn new(home: usize, n: usize) -> Self {
        Probe {
            pos: home,
            stride: 0,
            n,
            left: MAX_PROBE_GROUPS,
        }
    }
}

impl Iterator for Probe {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let g = self.pos;
        self.stride += 1;
        self.pos += self.stride;
        while self.pos >= self.n {
            self.pos -= self.n;
        }
        Some(g)
    }
}

/// What a lock-free read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Live entry; the value was copied out. `expires_ms` is 0 for no expiry.
    Hit {
        expires_ms: u64,
    },
    Miss,
    /// A slot kept changing (or stayed mid-write): take the lock.
    Contended,
}

enum SlotRead {
    Match { expires_ms: u64 },
    Other,
    Unstable,
}

/// How many times a lock-free read retries before taking the shard lock.
const READ_RETRIES: u32 = 16;
/// Slots examined per refused insert by the amortized expiry sweep.
const SWEEP_BUDGET: usize = 128;

/// Writer statistics, counted in the writing thread's own statistics slot.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stat {
    Sets = stat_slot::SETS as isize,
    Deletes = stat_slot::DELETES as isize,
    Expirations = stat_slot::EXPIRATIONS as isize,
    Evictions = stat_slot::EVICTIONS as isize,
    Full = stat_slot::FULL as isize,
    Recoveries = stat_slot::RECOVERIES as isize,
    Contended = stat_slot::CONTENDED as isize,
}

/// One shard of a region.
#[derive(Clone, Copy)]
pub(crate) struct Shard<'a> {
    r: &'a RawRegion,
    l: &'a Layout,
    off: usize,
    pub(crate) index: usize,
}

impl<'a> Shard<'a> {
    pub(crate) fn new(r: &'a RawRegion, l: &'a Layout, index: usize) -> Self {
        Shard {
            r,
            l,
            off: l.shard_off(index),
            index,
        }
    }

    #[inline]
    fn groups(&self) -> usize {
        self.l.geo.groups_per_shard as usize
    }
    #[inline]
    fn group(&self, g: usize) -> &'a AtomicU64 {
        self.r.u64_at(self.l.group_off(self.off, g))
    }
    /// Slot `i` (checked in bounds once).
    #[inline]
    fn slot(&self, i: usize) -> SlotView<'a> {
        self.r
            .slot(self.l.slot_off(self.off, i), self.l.key_cap, self.l.val_cap)
    }
    /// The shard's scratch slot.
    #[inline]
    fn scratch(&self) -> SlotView<'a> {
        self.r
            .slot(self.l.scratch_off(self.off), self.l.key_cap, self.l.val_cap)
    }
    /// Thread scratch slot `i` (1 ≤ i < STAT_SLOTS).
    #[inline]
    fn thread_scratch(&self, i: usize) -> SlotView<'a> {
        self.r.slot(
            self.l.thread_scratch_slot_off(i),
            self.l.key_cap,
            self.l.val_cap,
        )
    }
    #[inline]
    fn hdr_u32(&self, field: usize) -> &'a AtomicU32 {
        self.r.u32_at(self.off + field)
    }
    #[inline]
    fn hdr_u64(&self, field: usize) -> &'a AtomicU64 {
        self.r.u64_at(self.off + field)
    }
    #[inline]
    fn ctrl_of(&self, i: usize, order: Ordering) -> u8 {
        ctrl::byte(self.group(i / GROUP_WIDTH).load(order), i % GROUP_WIDTH)
    }

    pub(crate) fn len(&self) -> u64 {
        self.hdr_u64(shard::LEN).load(Ordering::Relaxed)
    }
    pub(crate) fn tombstones(&self) -> u64 {
        self.hdr_u64(shard::TOMBSTONES).load(Ordering::Relaxed)
    }

    /// Lock-free lookup: copies the value into `out` on a hit. Writes nothing shared, except
    /// setting a CLOCK reference bit (only when not already set) under `WhenFull::Evict`.
    #[inline]
    pub(crate) fn read(
        &self,
        key: &[u8],
        p: Placement,
        now: &dyn Fn() -> u64,
        out: &mut Vec<u8>,
    ) -> Result<Read> {
        'retry: for _ in 0..READ_RETRIES {
            for g in Probe::new(p.home, self.groups()) {
                let grp = self.group(g).load(Ordering::Acquire);
                let mut m = ctrl::match_byte(grp, p.tag);
                while m != 0 {
                    let i = g * GROUP_WIDTH + ctrl::lowest(m);
                    m &= m - 1;
                    match self.read_slot(i, key, p.tag, out)? {
                        SlotRead::Match { expires_ms } => {
                            if expires_ms != 0 && now() >= expires_ms {
                                return Ok(Read::Miss);
                            }
                            if self.l.geo.policy == WhenFull::Evict {
                                let flags = self.slot(i).flags();
                                if flags.load(Ordering::Relaxed) & slot::FLAG_REFERENCED == 0 {
                                    flags.fetch_or(slot::FLAG_REFERENCED, Ordering::Relaxed);
                                }
                            }
                            return Ok(Read::Hit { expires_ms });
                        }
                        SlotRead::Other => {}
                        SlotRead::Unstable => {
                            std::hint::spin_loop();
                            continue 'retry;
                        }
                    }
                }
                if ctrl::match_empty(grp) != 0 {
                    return Ok(Read::Miss);
                }
            }
            return Ok(Read::Miss);
        }
        Ok(Read::Contended)
    }

    /// Seqlock read of slot `i`: is it `key` (with control byte `tag`), and if so its value.
    #[inline]
    fn read_slot(&self, i: usize, key: &[u8], tag: u8, out: &mut Vec<u8>) -> Result<SlotRead> {
        let sv = self.slot(i);
        let seq = sv.seq();
        let Some(s1) = seqlock::read_begin(seq) else {
            return Ok(SlotRead::Unstable);
        };
        let unstable_or = |r: SlotRead| {
            if seqlock::read_validate(seq, s1) {
                r
            } else {
                SlotRead::Unstable
            }
        };
        // `key.len()` was checked against max_key_len by the caller, so it fits the key room.
        if self.ctrl_of(i, Ordering::Relaxed) != tag
            || sv.key_len().load(Ordering::Relaxed) as usize != key.len()
            || !raw::words_eq(sv.key_words(key.len()), key)
        {
            return Ok(unstable_or(SlotRead::Other));
        }
        let expires_ms = sv.expires().load(Ordering::Relaxed);
        let vlen = sv.val_len().load(Ordering::Relaxed) as usize;
        if vlen > self.l.geo.max_value_len as usize {
            return match unstable_or(SlotRead::Other) {
                SlotRead::Unstable => Ok(SlotRead::Unstable),
                _ => Err(Error::corrupted("slot value length exceeds max_value_len")),
            };
        }
        out.clear();
        raw::load_bytes(sv.value_words(vlen), vlen, out);
        Ok(unstable_or(SlotRead::Match { expires_ms }))
    }

    /// Takes the shard lock, repairing first if the previous holder died (or left the repair
    /// record busy). With `force`, a failed repair does not fail the lock (used by `clear`,
    /// which rewrites the whole shard). `ts` is the calling thread's statistics slot: writer
    /// statistics go there, and its scratch slot holds this thread's redo copies.
    pub(crate) fn lock(
        &self,
        timeout: Duration,
        force: bool,
        ts: ThreadSlot,
    ) -> Result<Locked<'a>> {
        let m = RobustMutex::at(self.r, self.off + shard::MUTEX);
        let (mut guard, acq) = m
            .lock(timeout)
            .map_err(|e| e.into_error("shard lock is not recoverable"))?;
        let locked = Locked {
            s: *self,
            ts,
            _guard: None,
        };
        if acq.contended {
            locked.bump(Stat::Contended);
        }
        let busy = self.hdr_u32(shard::REC_OP).load(Ordering::Acquire) != rec::IDLE
            || self.hdr_u32(shard::REC_TOUCH).load(Ordering::Acquire) != rec::NO_SLOT;
        let mut repaired = Ok(());
        if acq.owner_died || busy {
            // Counted before repairing, so a repairer that dies is counted too.
            locked.bump(Stat::Recoveries);
            repaired = locked.repair();
        }
        if acq.owner_died {
            guard
                .mark_consistent()
                .map_err(|e| Error::io("pthread_mutex_consistent", e))?;
        }
        failpoint!("lock.acquired");
        if !force {
            repaired?;
        }
        Ok(Locked {
            s: *self,
            ts,
            _guard: Some(guard),
        })
    }
}

/// A shard whose lock we hold.
pub(crate) struct Locked<'a> {
    s: Shard<'a>,
    ts: ThreadSlot,
    _guard: Option<MutexGuard<'a>>,
}

/// Result of a locked lookup.
#[derive(Debug, Default)]
pub(crate) struct Lookup {
    /// Slot holding the key (live or expired).
    pub slot: Option<usize>,
    /// Its expiry (0 = none).
    pub expires_ms: u64,
    /// First free (EMPTY/DELETED) slot on the probe path.
    pub free: Option<usize>,
    /// Groups visited (the window a new entry may be placed in).
    pub visited: usize,
}

impl Lookup {
    pub(crate) fn live(&self, now: &LazyNow<'_>) -> Option<usize> {
        self.slot
            .filter(|_| self.expires_ms == 0 || now.get() < self.expires_ms)
    }
}

/// An entry to write.
pub(crate) struct Entry<'e> {
    pub key: &'e [u8],
    pub value: &'e [u8],
    pub expires_ms: u64,
    pub tag: u8,
}

impl<'a> Locked<'a> {
    fn l(&self) -> &'a Layout {
        self.s.l
    }

    pub(crate) fn bump(&self, s: Stat) {
        self.ts.bump(self.s.r, s as usize);
    }
    fn add_len(&self, field: usize, delta: i64) {
        let w = self.s.hdr_u64(field);
        w.store(
            w.load(Ordering::Relaxed).saturating_add_signed(delta),
            Ordering::Relaxed,
        );
    }

    /// Stores control byte `b` for slot `i` (we are the only writer of control groups).
    fn set_ctrl(&self, i: usize, b: u8) {
        let g = self.s.group(i / GROUP_WIDTH);
        let sh = 8 * (i % GROUP_WIDTH);
        let w = g.load(Ordering::Relaxed);
        g.store(
            (w & !(0xffu64 << sh)) | (u64::from(b) << sh),
            Ordering::Release,
        );
    }

    fn set_touch(&self, i: Option<usize>) {
        let v = i.map_or(rec::NO_SLOT, |i| i as u32 + 1);
        self.s.hdr_u32(shard::REC_TOUCH).store(v, Ordering::Release);
    }

    /// Finds `key`, and the first free slot on its path.
    pub(crate) fn lookup(&self, key: &[u8], p: Placement) -> Lookup {
        let mut lk = Lookup::default();
        for g in Probe::new(p.home, self.s.groups()) {
            lk.visited += 1;
            let grp = self.s.group(g).load(Ordering::Relaxed);
            let mut m = ctrl::match_byte(grp, p.tag);
            while m != 0 {
                let i = g * GROUP_WIDTH + ctrl::lowest(m);
                m &= m - 1;
                let sv = self.s.slot(i);
                if sv.key_len().load(Ordering::Relaxed) as usize == key.len()
                    && raw::words_eq(sv.key_words(key.len()), key)
                {
                    lk.slot = Some(i);
                    lk.expires_ms = sv.expires().load(Ordering::Relaxed);
                    return lk;
                }
            }
            if lk.free.is_none() {
                let f = ctrl::match_free(grp);
                if f != 0 {
                    lk.free = Some(g * GROUP_WIDTH + ctrl::lowest(f));
                }
            }
            if ctrl::match_empty(grp) != 0 {
                break;
            }
        }
        lk
    }

    /// Copies slot `i`'s value into `out` (no concurrent writer: we hold the lock).
    pub(crate) fn read_value(&self, i: usize, out: &mut Vec<u8>) -> Result<()> {
        let sv = self.s.slot(i);
        let vlen = sv.val_len().load(Ordering::Relaxed) as usize;
        if vlen > self.l().geo.max_value_len as usize {
            return Err(Error::corrupted("slot value length exceeds max_value_len"));
        }
        out.clear();
        raw::load_bytes(sv.value_words(vlen), vlen, out);
        Ok(())
    }

    /// Length of slot `i`'s value, as stored (callers bound it before reading).
    pub(crate) fn value_len(&self, i: usize) -> usize {
        self.s.slot(i).val_len().load(Ordering::Relaxed) as usize
    }

    /// Reads the first `dst.len()` bytes of slot `i`'s value (at most `max_value_len`).
    pub(crate) fn read_small(&self, i: usize, dst: &mut [u8]) {
        let sv = self.s.slot(i);
        let n = dst.len().min(sv.val_cap());
        raw::load_into(sv.value_words(n), &mut dst[..n]);
    }

    /// Whether slot `i`'s value equals `v`; `Corrupted` if its stored length is past the limit.
    pub(crate) fn value_eq(&self, i: usize, v: &[u8]) -> Result<bool> {
        let sv = self.s.slot(i);
        let vlen = sv.val_len().load(Ordering::Relaxed) as usize;
        if vlen > self.l().geo.max_value_len as usize {
            return Err(Error::corrupted("slot value length exceeds max_value_len"));
        }
        Ok(vlen == v.len() && raw::words_eq(sv.value_words(vlen), v))
    }

    /// Writes every field of `e` into `sv` (lengths were checked against the limits by the
    /// caller, so they fit the slot's room).
    fn write_fields(sv: SlotView<'_>, e: &Entry<'_>) {
        sv.key_len().store(e.key.len() as u32, Ordering::Relaxed);
        sv.val_len().store(e.value.len() as u32, Ordering::Relaxed);
        sv.flags().store(0, Ordering::Relaxed);
        sv.expires().store(e.expires_ms, Ordering::Relaxed);
        raw::store_bytes(sv.key_words(e.key.len()), e.key);
        raw::store_bytes(sv.value_words(e.value.len()), e.value);
    }

    /// Puts `e` into free slot `i` and publishes it.
    fn insert_free(&self, i: usize, e: &Entry<'_>) {
        // `lookup` found slot `i` free under this lock; no assertion on it: another process
        // scribbling on the region could have changed the byte since, and shared bytes never
        // make us panic.
        let was = self.s.ctrl_of(i, Ordering::Relaxed);
        self.set_touch(Some(i));
        let sv = self.s.slot(i);
        let odd = seqlock::write_begin(sv.seq());
        Self::write_fields(sv, e);
        failpoint!("insert.written");
        self.set_ctrl(i, e.tag);
        failpoint!("insert.published");
        seqlock::write_end(sv.seq(), odd);
        self.set_touch(None);
        self.add_len(shard::LEN, 1);
        if was == ctrl::DELETED {
            self.add_len(shard::TOMBSTONES, -1);
        }
    }

    /// Replaces FULL slot `i` with `e`, through the scratch slot and the repair record.
    pub(crate) fn overwrite(&self, i: usize, e: &Entry<'_>) {
        let rs = self.s.hdr_u32(shard::REC_OP);
        // The redo copy goes to this thread's own scratch slot when it has one (its cache
        // lines then never move between cores), else to the shard's.
        let scratch = self.ts.scratch();
        let sc = match scratch {
            0 => self.s.scratch(),
            i => self.s.thread_scratch(i as usize),
        };
        Self::write_fields(sc, e);
        failpoint!("put.scratch");
        self.s
            .hdr_u32(shard::REC_SCRATCH)
            .store(scratch, Ordering::Relaxed);
        self.s
            .hdr_u32(shard::REC_TARGET)
            .store(i as u32, Ordering::Relaxed);
        self.s
            .hdr_u32(shard::REC_TAG)
            .store(u32::from(e.tag), Ordering::Relaxed);
        rs.store(rec::REDO_PUT, Ordering::Release); // the commit point
        failpoint!("put.committed");
        self.set_touch(Some(i));
        let sv = self.s.slot(i);
        let odd = seqlock::write_begin(sv.seq());
        Self::write_fields(sv, e);
        failpoint!("put.applying");
        // An update of the same key leaves the control byte as it is: storing it anyway would
        // invalidate the line in every reader's cache (64 slots share it).
        if self.s.ctrl_of(i, Ordering::Relaxed) != e.tag {
            self.set_ctrl(i, e.tag);
        }
        seqlock::write_end(sv.seq(), odd);
        failpoint!("put.published");
        self.set_touch(None);
        rs.store(rec::IDLE, Ordering::Release);
    }

    /// Removes the entry in slot `i`.
    pub(crate) fn remove(&self, i: usize) {
        let g = self.s.group(i / GROUP_WIDTH).load(Ordering::Relaxed);
        // EMPTY only if the group already stops lookups (has another EMPTY byte).
        let b = if ctrl::match_empty(g) != 0 {
            ctrl::EMPTY
        } else {
            ctrl::DELETED
        };
        self.set_touch(Some(i));
        let seq = self.s.slot(i).seq();
        let odd = seqlock::write_begin(seq);
        self.set_ctrl(i, b);
        failpoint!("delete.ctrl");
        seqlock::write_end(seq, odd);
        self.set_touch(None);
        self.add_len(shard::LEN, -1);
        if b == ctrl::DELETED {
            self.add_len(shard::TOMBSTONES, 1);
        }
    }

    /// Changes slot `i`'s expiry.
    pub(crate) fn set_expiry(&self, i: usize, expires_ms: u64) {
        self.set_touch(Some(i));
        let sv = self.s.slot(i);
        let seq = sv.seq();
        let odd = seqlock::write_begin(seq);
        sv.expires().store(expires_ms, Ordering::Relaxed);
        failpoint!("expire.stored");
        seqlock::write_end(seq, odd);
        self.set_touch(None);
    }

    fn slot_expired(&self, i: usize, now: &LazyNow<'_>) -> bool {
        let e = self.s.slot(i).expires().load(Ordering::Relaxed);
        e != 0 && now.get() >= e
    }

    /// Groups of the probe window `visited` groups long.
    fn window(&self, home: usize, visited: usize) -> impl Iterator<Item = usize> {
        Probe::new(home, self.s.groups()).take(visited.max(1))
    }

    /// Places a key that is absent (or only present expired, in `lk.slot`): reuses its expired
    /// slot, else a free slot if the shard is under its load limit, else an expired entry in the
    /// window, else evicts or refuses.
    pub(crate) fn insert_new(
        &self,
        lk: &Lookup,
        e: &Entry<'_>,
        p: Placement,
        now: &LazyNow<'_>,
    ) -> Result<()> {
        if let Some(i) = lk.slot {
            self.bump(Stat::Expirations);
            self.overwrite(i, e);
            self.bump(Stat::Sets);
            return Ok(());
        }
        let max = self.l().max_entries_per_shard;
        if self.s.len() >= max {
            self.sweep_expired(now, SWEEP_BUDGET);
        }
        if self.s.len() < max {
            if let Some(f) = lk.free {
                self.insert_free(f, e);
                self.bump(Stat::Sets);
                return Ok(());
            }
        }
        // No free slot we may use: an expired entry in the window, then eviction.
        let mut first_full = None;
        let mut unreferenced = None;
        for g in self.window(p.home, lk.visited) {
            let grp = self.s.group(g).load(Ordering::Relaxed);
            let mut m = ctrl::match_full(grp);
            while m != 0 {
                let i = g * GROUP_WIDTH + ctrl::lowest(m);
                m &= m - 1;
                if self.slot_expired(i, now) {
                    self.bump(Stat::Expirations);
                    self.overwrite(i, e);
                    self.bump(Stat::Sets);
                    return Ok(());
                }
                first_full.get_or_insert(i);
                if unreferenced.is_none() {
                    let flags = self.s.slot(i).flags();
                    let f = flags.load(Ordering::Relaxed);
                    if f & slot::FLAG_REFERENCED == 0 {
                        unreferenced = Some(i);
                    } else if self.l().geo.policy == WhenFull::Evict {
                        // CLOCK: a second chance, consumed.
                        flags.store(f & !slot::FLAG_REFERENCED, Ordering::Relaxed);
                    }
                }
            }
        }
        match (self.l().geo.policy, unreferenced.or(first_full)) {
            (WhenFull::Evict, Some(victim)) => {
                failpoint!("evict.chosen");
                self.bump(Stat::Evictions);
                self.overwrite(victim, e);
                self.bump(Stat::Sets);
                Ok(())
            }
            _ => {
                self.bump(Stat::Full);
                Err(Error::Full)
            }
        }
    }

    /// Deletes up to `budget` slots' worth of expired entries, continuing where the last sweep
    /// of this shard stopped. Returns how many were removed.
    pub(crate) fn sweep_expired(&self, now: &LazyNow<'_>, budget: usize) -> usize {
        let n = self.l().slots_per_shard;
        let cursor = self.s.hdr_u64(shard::SWEEP_CURSOR);
        let mut i = (cursor.load(Ordering::Relaxed) % n as u64) as usize;
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            if ctrl::is_full(self.s.ctrl_of(i, Ordering::Relaxed)) && self.slot_expired(i, now) {
                self.remove(i);
                failpoint!("sweep.removed");
                self.bump(Stat::Expirations);
                removed += 1;
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
        cursor.store(i as u64, Ordering::Relaxed);
        removed
    }

    /// Appends to `out` the live keys starting with `prefix` in slots `from..`, stopping after
    /// `limit` keys or `max_visit` slots. Returns the next slot to visit (`slots_per_shard` when
    /// the shard is done).
    pub(crate) fn scan_keys(
        &self,
        from: usize,
        prefix: &[u8],
        limit: usize,
        max_visit: usize,
        now: &LazyNow<'_>,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<usize> {
        let n = self.l().slots_per_shard;
        let mut i = from;
        let mut found = 0;
        while i < n && found < limit && i - from < max_visit {
            if ctrl::is_full(self.s.ctrl_of(i, Ordering::Relaxed)) && !self.slot_expired(i, now) {
                let sv = self.s.slot(i);
                let klen = sv.key_len().load(Ordering::Relaxed) as usize;
                if klen > self.l().geo.max_key_len as usize {
                    return Err(Error::corrupted("slot key length exceeds max_key_len"));
                }
                if klen >= prefix.len() {
                    let mut key = Vec::with_capacity(klen);
                    raw::load_bytes(sv.key_words(klen), klen, &mut key);
                    if key.starts_with(prefix) {
                        out.push(key);
                        found += 1;
                    }
                }
            }
            i += 1;
        }
        Ok(i)
    }

    /// Removes every live key starting with `prefix`; returns how many.
    pub(crate) fn delete_prefix(&self, prefix: &[u8], now: &LazyNow<'_>) -> Result<u64> {
        let mut removed = 0;
        let mut key = Vec::new();
        for i in 0..self.l().slots_per_shard {
            if !ctrl::is_full(self.s.ctrl_of(i, Ordering::Relaxed)) {
                continue;
            }
            let sv = self.s.slot(i);
            let klen = sv.key_len().load(Ordering::Relaxed) as usize;
            if klen > self.l().geo.max_key_len as usize {
                return Err(Error::corrupted("slot key length exceeds max_key_len"));
            }
            if klen < prefix.len() {
                continue;
            }
            key.clear();
            raw::load_bytes(sv.key_words(prefix.len()), prefix.len(), &mut key);
            if key == prefix {
                let expired = self.slot_expired(i, now);
                self.remove(i);
                failpoint!("prefix.removed");
                if expired {
                    self.bump(Stat::Expirations);
                } else {
                    self.bump(Stat::Deletes);
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Removes every expired entry of the shard.
    pub(crate) fn flush_expired(&self, now: &LazyNow<'_>) -> usize {
        let mut removed = 0;
        for i in 0..self.l().slots_per_shard {
            if ctrl::is_full(self.s.ctrl_of(i, Ordering::Relaxed)) && self.slot_expired(i, now) {
                self.remove(i);
                failpoint!("flush.removed");
                self.bump(Stat::Expirations);
                removed += 1;
            }
        }
        removed
    }

    /// Empties the shard (atomically: a crash midway is finished by repair). Returns how many
    /// entries it held, counted from the control bytes (the stored count may be garbage).
    pub(crate) fn clear(&self) -> u64 {
        let (before, _) = self.count_ctrl();
        let rs = self.s.hdr_u32(shard::REC_OP);
        rs.store(rec::REDO_CLEAR, Ordering::Release);
        self.redo_clear();
        rs.store(rec::IDLE, Ordering::Release);
        before
    }

    fn redo_clear(&self) {
        let groups = self.s.groups();
        for g in 0..groups {
            self.s.group(g).store(0, Ordering::Release);
            if g == groups / 2 {
                failpoint!("clear.half");
            }
        }
        self.s.hdr_u64(shard::LEN).store(0, Ordering::Relaxed);
        self.s
            .hdr_u64(shard::TOMBSTONES)
            .store(0, Ordering::Relaxed);
        self.set_touch(None);
    }

    /// Brings the shard back to a consistent state after a writer died (see the module docs).
    /// Idempotent; validates every value it reads from the record and the scratch slot.
    pub(crate) fn repair(&self) -> Result<()> {
        let n = self.l().slots_per_shard;
        let op = self.s.hdr_u32(shard::REC_OP).load(Ordering::Acquire);
        match op {
            rec::IDLE => {}
            rec::REDO_PUT => {
                let target = self.s.hdr_u32(shard::REC_TARGET).load(Ordering::Relaxed) as usize;
                let tag = self.s.hdr_u32(shard::REC_TAG).load(Ordering::Relaxed);
                if target >= n {
                    return Err(Error::corrupted("repair record: target slot out of range"));
                }
                let tag = u8::try_from(tag)
                    .ok()
                    .filter(|t| ctrl::is_full(*t))
                    .ok_or(Error::corrupted("repair record: invalid tag"))?;
                let sc = match self.s.hdr_u32(shard::REC_SCRATCH).load(Ordering::Relaxed) {
                    0 => self.s.scratch(),
                    i if i < STAT_SLOTS => self.s.thread_scratch(i as usize),
                    _ => {
                        return Err(Error::corrupted(
                            "repair record: scratch index out of range",
                        ))
                    }
                };
                let klen = sc.key_len().load(Ordering::Relaxed) as usize;
                let vlen = sc.val_len().load(Ordering::Relaxed) as usize;
                if klen > self.l().geo.max_key_len as usize
                    || vlen > self.l().geo.max_value_len as usize
                {
                    return Err(Error::corrupted(
                        "repair record: scratch lengths out of range",
                    ));
                }
                self.set_touch(Some(target));
                let dst = self.s.slot(target);
                let seq = dst.seq();
                let odd = seqlock::write_begin(seq);
                // Header fields after `seq`, then key and value (lengths validated above).
                dst.key_len().store(klen as u32, Ordering::Relaxed);
                dst.val_len().store(vlen as u32, Ordering::Relaxed);
                dst.flags().store(0, Ordering::Relaxed);
                dst.expires()
                    .store(sc.expires().load(Ordering::Relaxed), Ordering::Relaxed);
                raw::copy_words(sc.key_words(klen), dst.key_words(klen));
                raw::copy_words(sc.value_words(vlen), dst.value_words(vlen));
                failpoint!("repair.redone");
                self.set_ctrl(target, tag);
                seqlock::write_end(seq, odd);
            }
            rec::REDO_CLEAR => self.redo_clear(),
            _ => return Err(Error::corrupted("repair record: unknown operation")),
        }
        let touch = self.s.hdr_u32(shard::REC_TOUCH).load(Ordering::Acquire);
        if touch != rec::NO_SLOT {
            let i = (touch - 1) as usize;
            if i >= n {
                return Err(Error::corrupted("repair record: touched slot out of range"));
            }
            let seq = self.s.slot(i).seq();
            let s = seq.load(Ordering::Relaxed);
            if s & 1 == 1 {
                seqlock::write_end(seq, s);
            }
        }
        let (full, deleted) = self.count_ctrl();
        self.s.hdr_u64(shard::LEN).store(full, Ordering::Relaxed);
        self.s
            .hdr_u64(shard::TOMBSTONES)
            .store(deleted, Ordering::Relaxed);
        failpoint!("repair.recounted");
        self.set_touch(None);
        self.s
            .hdr_u32(shard::REC_OP)
            .store(rec::IDLE, Ordering::Release);
        Ok(())
    }

    /// (FULL, DELETED) control bytes in the shard.
    fn count_ctrl(&self) -> (u64, u64) {
        let (mut full, mut deleted) = (0u64, 0u64);
        for g in 0..self.s.groups() {
            let grp = self.s.group(g).load(Ordering::Relaxed);
            full += u64::from(ctrl::match_full(grp).count_ones());
            deleted += u64::from(ctrl::match_byte(grp, ctrl::DELETED).count_ones());
        }
        (full, deleted)
    }

    /// Checks every invariant of the shard; appends what is wrong to `problems`.
    pub(crate) fn verify(
        &self,
        hash_key: &crate::hash::HashKey,
        now: &LazyNow<'_>,
        problems: &mut Vec<crate::verify::Problem>,
        totals: &mut crate::verify::Totals,
    ) {
        use crate::verify::{Problem, ProblemKind as K};
        let shard_no = self.s.index as u32;
        let mut push = |slot: Option<usize>, kind| {
            problems.push(Problem {
                shard: shard_no,
                slot: slot.map(|s| s as u32),
                kind,
            })
        };
        let op = self.s.hdr_u32(shard::REC_OP).load(Ordering::Relaxed);
        let touch = self.s.hdr_u32(shard::REC_TOUCH).load(Ordering::Relaxed);
        if op != rec::IDLE || touch != rec::NO_SLOT {
            push(None, K::RecordBusy { op, touch });
        }
        let mut key = Vec::new();
        let (mut full, mut deleted) = (0u64, 0u64);
        for i in 0..self.l().slots_per_shard {
            let b = self.s.ctrl_of(i, Ordering::Relaxed);
            if !ctrl::is_valid(b) {
                push(Some(i), K::InvalidControlByte(b));
                continue;
            }
            if b == ctrl::DELETED {
                deleted += 1;
            }
            if !ctrl::is_full(b) {
                continue;
            }
            full += 1;
            let sv = self.s.slot(i);
            if sv.seq().load(Ordering::Relaxed) & 1 == 1 {
                push(Some(i), K::SlotMidWrite);
            }
            let klen = sv.key_len().load(Ordering::Relaxed) as usize;
            let vlen = sv.val_len().load(Ordering::Relaxed) as usize;
            if klen > self.l().geo.max_key_len as usize {
                push(Some(i), K::KeyTooLong(klen as u64));
                continue;
            }
            if vlen > self.l().geo.max_value_len as usize {
                push(Some(i), K::ValueTooLong(vlen as u64));
            }
            key.clear();
            raw::load_bytes(sv.key_words(klen), klen, &mut key);
            let h = crate::hash::hash(hash_key, &key);
            let p = place(h, self.l().geo.shards, self.l().geo.groups_per_shard);
            if p.shard != self.s.index {
                push(Some(i), K::WrongShard);
                continue;
            }
            if p.tag != b {
                push(Some(i), K::WrongTag);
                continue;
            }
            match self.lookup(&key, p).slot {
                Some(j) if j == i => {}
                Some(_) => push(Some(i), K::DuplicateKey),
                None => push(Some(i), K::Unreachable),
            }
            if self.slot_expired(i, now) {
                totals.expired += 1;
            }
        }
        let len = self.s.len();
        if len != full {
            push(
                None,
                K::LenMismatch {
                    stored: len,
                    counted: full,
                },
            );
        }
        let t = self.s.tombstones();
        if t != deleted {
            push(
                None,
                K::TombstonesMismatch {
                    stored: t,
                    counted: deleted,
                },
            );
        }
        totals.entries += full;
        totals.tombstones += deleted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swar_matching_is_exact() {
        let bytes = [0x00u8, 0x01, 0x85, 0xff, 0x00, 0x85, 0x7f, 0x80];
        let g = u64::from_le_bytes(bytes);
        let idx = |mut m: u64| {
            let mut v = vec![];
            while m != 0 {
                v.push(ctrl::lowest(m));
                m &= m - 1;
            }
            v
        };
        assert_eq!(idx(ctrl::match_empty(g)), vec![0, 4]);
        assert_eq!(idx(ctrl::match_byte(g, 0x85)), vec![2, 5]);
        assert_eq!(idx(ctrl::match_free(g)), vec![0, 1, 4]);
        assert_eq!(idx(ctrl::match_full(g)), vec![2, 3, 5, 7]);
        // Every byte value against every position (no false positives, none missed).
        for v in 0..=255u8 {
            for pos in 0..8 {
                let mut b = [0x42u8; 8];
                b[pos] = v;
                let g = u64::from_le_bytes(b);
                let m = ctrl::match_byte(g, v);
                if v == 0x42 {
                    assert_eq!(m.count_ones(), 8);
                } else {
                    assert_eq!(idx(m), vec![pos]);
                }
            }
        }
    }

    #[test]
    fn spreads_sequential_keys() {
        let k = crate::hash::HashKey::new(crate::hash::random_seed().unwrap());
        let (shards, groups) = (64u32, 1000u32);
        let mut per_shard = vec![0u32; shards as usize];
        let mut tags = [0u32; 128];
        let n = 64_000u32;
        for i in 0..n {
            let p = place(
                crate::hash::hash(&k, format!("user:{i}").as_bytes()),
                shards,
                groups,
            );
            per_shard[p.shard] += 1;
            tags[(p.tag & 0x7f) as usize] += 1;
        }
        // Expected 1000 per shard, sd ~31: allow 6 sd.
        assert!(
            per_shard.iter().all(|&c| (810..=1190).contains(&c)),
            "{per_shard:?}"
        );
        // Expected 500 per tag, sd ~22: allow 6 sd.
        assert!(tags.iter().all(|&c| (360..=640).contains(&c)), "{tags:?}");
    }

    #[test]
    fn placement_in_range() {
        for i in 0..1000u64 {
            let p = place(
                crate::hash::hash(&crate::hash::HashKey::new((9, 9)), &i.to_le_bytes()),
                7,
                13,
            );
            assert!(p.shard < 7 && p.home < 13 && p.tag >= 0x80);
        }
    }

    #[test]
    fn probe_is_bounded_and_in_range() {
        for n in [1usize, 2, 3, 16, 17, 1000] {
            for home in [0, n / 2, n - 1] {
                let v: Vec<_> = Probe::new(home, n).collect();
                assert_eq!(v.len(), MAX_PROBE_GROUPS as usize);
                assert!(v.iter().all(|&g| g < n));
                assert_eq!(v[0], home);
            }
        }
        // With a power-of-two group count the first n steps visit n distinct groups.
        let v: std::collections::HashSet<_> = Probe::new(3, 16).collect();
        assert_eq!(v.len(), 16);
    }
}
