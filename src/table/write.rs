//! Locked writes: insert into a free slot, overwrite through the redo record, delete, change
//! expiry, make room (expired entries, then CLOCK eviction), the amortized expiry sweep, and the
//! whole-shard passes (scan, delete by prefix, flush expired, clear). Every multi-word change
//! goes through the redo record ([`crate::redo`]); see the [module docs](super).

use std::sync::atomic::Ordering;

use super::space::{write_val, Val};
use super::{ctrl, Locked, Lookup, Placement, Probe, Stat};
use crate::clock::LazyNow;
use crate::config::WhenFull;
use crate::error::{Error, Result};
use crate::redo::Put;
use crate::region::layout::{shard, slot, GROUP_WIDTH};
use crate::region::raw::{self, SlotView};
use crate::sync::seqlock;

/// Slots examined per refused insert by the amortized expiry sweep.
const SWEEP_BUDGET: usize = 128;

/// An entry to write.
pub(crate) struct Entry<'e> {
    pub key: &'e [u8],
    pub value: &'e [u8],
    pub expires_ms: u64,
    pub tag: u8,
}

impl Locked<'_> {
    fn add_len(&self, field: usize, delta: i64) {
        let w = self.s.hdr_u64(field);
        w.store(
            w.load(Ordering::Relaxed).saturating_add_signed(delta),
            Ordering::Relaxed,
        );
    }

    /// Stores control byte `b` for slot `i` (we are the only writer of control groups).
    pub(super) fn set_ctrl(&self, i: usize, b: u8) {
        let g = self.s.group(i / GROUP_WIDTH);
        let sh = 8 * (i % GROUP_WIDTH);
        let w = g.load(Ordering::Relaxed);
        g.store(
            (w & !(0xffu64 << sh)) | (u64::from(b) << sh),
            Ordering::Release,
        );
    }

    /// Writes every field of an entry into `sv` (the key length was checked against the limit
    /// by the caller, so it fits the slot's room; the value is inline or a heap locator).
    pub(super) fn write_fields(
        sv: SlotView<'_>,
        key: &[u8],
        val: &Val<'_>,
        expires_ms: u64,
        flags: u32,
    ) {
        sv.key_len().store(key.len() as u32, Ordering::Relaxed);
        sv.val_len().store(val.len() as u32, Ordering::Relaxed);
        sv.flags().store(flags, Ordering::Relaxed);
        sv.expires().store(expires_ms, Ordering::Relaxed);
        raw::store_bytes(sv.key_words(key.len()), key);
        write_val(sv, val);
    }

    /// Puts `e` (its value placed as `val`) into free slot `i` and publishes it.
    fn insert_free(&self, i: usize, e: &Entry<'_>, val: &Val<'_>) {
        // `lookup` found slot `i` free under this lock; no assertion on it: another process
        // scribbling on the region could have changed the byte since, and shared bytes never
        // make us panic.
        let was = self.s.ctrl_of(i, Ordering::Relaxed);
        self.s.rec().set_touch(Some(i));
        let sv = self.s.slot(i);
        let odd = seqlock::write_begin(sv.seq());
        Self::write_fields(sv, e.key, val, e.expires_ms, 0);
        failpoint!("insert.written");
        self.set_ctrl(i, e.tag);
        failpoint!("insert.published");
        seqlock::write_end(sv.seq(), odd);
        self.s.rec().set_touch(None);
        self.add_len(shard::LEN, 1);
        if was == ctrl::DELETED {
            self.add_len(shard::TOMBSTONES, -1);
        }
    }

    /// Replaces FULL slot `i` with `e`: places the new value (making room if needed, never by
    /// removing slot `i`), publishes it through the redo record, then frees the old value.
    pub(crate) fn overwrite(&self, i: usize, e: &Entry<'_>, now: &LazyNow<'_>) -> Result<()> {
        let val = self.store_value(i, e.value, now)?;
        // Decoded only now: making room may have moved slot `i`'s blocks.
        let old = match self.stored(i) {
            Ok(old) => old,
            Err(err) => {
                self.discard(&val)?;
                return Err(err);
            }
        };
        self.overwrite_val(i, e.key, &val, e.expires_ms, e.tag, 0);
        if let Some(old) = old {
            failpoint!("put.freeing");
            self.free_value(&old)?;
        }
        Ok(())
    }

    /// Frees a value placed for a slot that was then not written.
    fn discard(&self, val: &Val<'_>) -> Result<()> {
        if let Val::Heap { len, root } = *val {
            if let Some(v) = crate::heap::value::decode(&self.s.pool(), root, len) {
                self.free_value(&v)?;
            }
        }
        Ok(())
    }

    /// Replaces FULL slot `i` with the given fields, through the scratch slot and the redo
    /// record (the value already placed).
    pub(super) fn overwrite_val(
        &self,
        i: usize,
        key: &[u8],
        val: &Val<'_>,
        expires_ms: u64,
        tag: u8,
        flags: u32,
    ) {
        let rec = self.s.rec();
        // The redo copy goes to this thread's own scratch slot when it has one (its cache
        // lines then never move between cores), else to the shard's.
        let scratch = self.ts.scratch();
        let sc = match scratch {
            0 => self.s.scratch(),
            i => self.s.thread_scratch(i as usize),
        };
        Self::write_fields(sc, key, val, expires_ms, flags);
        failpoint!("put.scratch");
        rec.commit_put(Put {
            target: i as u32,
            tag: u32::from(tag),
            scratch,
        });
        failpoint!("put.committed");
        rec.set_touch(Some(i));
        let sv = self.s.slot(i);
        let odd = seqlock::write_begin(sv.seq());
        Self::write_fields(sv, key, val, expires_ms, flags);
        failpoint!("put.applying");
        // An update of the same key leaves the control byte as it is: storing it anyway would
        // invalidate the line in every reader's cache (64 slots share it).
        if self.s.ctrl_of(i, Ordering::Relaxed) != tag {
            self.set_ctrl(i, tag);
        }
        seqlock::write_end(sv.seq(), odd);
        failpoint!("put.published");
        rec.set_touch(None);
        rec.idle();
    }

    /// Removes the entry in slot `i`, then frees its heap value.
    pub(crate) fn remove(&self, i: usize) -> Result<()> {
        let old = self.stored(i)?;
        let g = self.s.group(i / GROUP_WIDTH).load(Ordering::Relaxed);
        // EMPTY only if the group already stops lookups (has another EMPTY byte).
        let b = if ctrl::match_empty(g) != 0 {
            ctrl::EMPTY
        } else {
            ctrl::DELETED
        };
        self.s.rec().set_touch(Some(i));
        let seq = self.s.slot(i).seq();
        let odd = seqlock::write_begin(seq);
        self.set_ctrl(i, b);
        failpoint!("delete.ctrl");
        seqlock::write_end(seq, odd);
        self.s.rec().set_touch(None);
        self.add_len(shard::LEN, -1);
        if b == ctrl::DELETED {
            self.add_len(shard::TOMBSTONES, 1);
        }
        if let Some(old) = old {
            failpoint!("delete.freeing");
            self.free_value(&old)?;
        }
        Ok(())
    }

    /// Changes slot `i`'s expiry.
    pub(crate) fn set_expiry(&self, i: usize, expires_ms: u64) {
        self.s.rec().set_touch(Some(i));
        let sv = self.s.slot(i);
        let seq = sv.seq();
        let odd = seqlock::write_begin(seq);
        sv.expires().store(expires_ms, Ordering::Relaxed);
        failpoint!("expire.stored");
        seqlock::write_end(seq, odd);
        self.s.rec().set_touch(None);
    }

    pub(super) fn slot_expired(&self, i: usize, now: &LazyNow<'_>) -> bool {
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
            self.overwrite(i, e, now)?;
            self.bump(Stat::Sets);
            return Ok(());
        }
        let max = self.l().max_entries_per_shard;
        let mut free = lk.free;
        if self.s.len() >= max && self.sweep_expired(now, SWEEP_BUDGET)? > 0 && free.is_none() {
            // The sweep may have freed a slot on this key's path.
            free = self.lookup(e.key, p).free;
        }
        if self.s.len() < max {
            if let Some(f) = free {
                let val = self.store_value(f, e.value, now)?;
                self.insert_free(f, e, &val);
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
                    self.overwrite(i, e, now)?;
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
                self.overwrite(victim, e, now)?;
                self.bump(Stat::Evictions);
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
    pub(crate) fn sweep_expired(&self, now: &LazyNow<'_>, budget: usize) -> Result<usize> {
        let n = self.l().slots_per_shard;
        let cursor = self.s.hdr_u64(shard::SWEEP_CURSOR);
        let mut i = (cursor.load(Ordering::Relaxed) % n as u64) as usize;
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            if ctrl::is_full(self.s.ctrl_of(i, Ordering::Relaxed)) && self.slot_expired(i, now) {
                self.remove(i)?;
                failpoint!("sweep.removed");
                self.bump(Stat::Expirations);
                removed += 1;
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
        cursor.store(i as u64, Ordering::Relaxed);
        Ok(removed)
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
                self.remove(i)?;
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
    pub(crate) fn flush_expired(&self, now: &LazyNow<'_>) -> Result<usize> {
        let mut removed = 0;
        for i in 0..self.l().slots_per_shard {
            if ctrl::is_full(self.s.ctrl_of(i, Ordering::Relaxed)) && self.slot_expired(i, now) {
                self.remove(i)?;
                failpoint!("flush.removed");
                self.bump(Stat::Expirations);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Empties the shard (atomically: a crash midway is finished by repair). Returns how many
    /// entries it held, counted from the control bytes (the stored count may be garbage).
    pub(crate) fn clear(&self) -> u64 {
        let (before, _) = self.count_ctrl();
        let rec = self.s.rec();
        self.touch_heap();
        rec.commit_clear();
        self.redo_clear(false);
        rec.idle();
        before
    }

    /// Empties every control group, then the heap. `repairing`: also closes any odd sequence
    /// of an already emptied group (a clearer killed inside a group's window).
    pub(super) fn redo_clear(&self, repairing: bool) {
        let groups = self.s.groups();
        for g in 0..groups {
            // A live slot's control byte goes inside its sequence's odd window, as in a delete:
            // the heap is reset below and its blocks reused, so a reader that took one of these
            // slots' locators must fail its validation, and one that validates after the window
            // sees the emptied byte.
            let grp = self.s.group(g).load(Ordering::Relaxed);
            let mut odd = [(0usize, 0u32); GROUP_WIDTH];
            let mut n = 0;
            for j in 0..GROUP_WIDTH {
                let seq = self.s.slot(g * GROUP_WIDTH + j).seq();
                if ctrl::is_full(ctrl::byte(grp, j))
                    || (repairing && seq.load(Ordering::Relaxed) & 1 == 1)
                {
                    odd[n] = (j, seqlock::write_begin(seq));
                    n += 1;
                }
            }
            self.s.group(g).store(0, Ordering::Release);
            for &(j, o) in &odd[..n] {
                seqlock::write_end(self.s.slot(g * GROUP_WIDTH + j).seq(), o);
            }
            if g == groups / 2 {
                failpoint!("clear.half");
            }
        }
        self.s.hdr_u64(shard::LEN).store(0, Ordering::Relaxed);
        self.s
            .hdr_u64(shard::TOMBSTONES)
            .store(0, Ordering::Relaxed);
        self.s.pool().reset();
        failpoint!("clear.heap_reset");
        self.s.rec().set_touch(None);
    }
}
