//! Repair: what the next lock holder does after a writer died (or left the redo record
//! busy, or the heap mid-change). Redoes a committed put or clear from the record, makes the
//! touched slot's sequence even, recounts the shard, rebuilds the heap's metadata from the
//! slots, idles the record. Idempotent, and it validates every value it reads
//! from the record and the scratch slot (they are region bytes).

use std::sync::atomic::Ordering;

use super::{ctrl, Locked};
use crate::error::{Error, Result};
use crate::redo;
use crate::region::layout::{shard, STAT_SLOTS};
use crate::region::raw;
use crate::sync::seqlock;

impl Locked<'_> {
    /// Brings the shard back to a consistent state after a writer died (see the module docs).
    /// Idempotent; validates every value it reads from the record and the scratch slot.
    pub(crate) fn repair(&self) -> Result<()> {
        let n = self.l().slots_per_shard;
        let rec = self.s.rec();
        match rec.op() {
            redo::IDLE => {}
            redo::REDO_PUT => {
                let put = rec.pending_put();
                let (target, tag) = (put.target as usize, put.tag);
                if target >= n {
                    return Err(Error::corrupted("repair record: target slot out of range"));
                }
                let tag = u8::try_from(tag)
                    .ok()
                    .filter(|t| ctrl::is_full(*t))
                    .ok_or(Error::corrupted("repair record: invalid tag"))?;
                let sc = match put.scratch {
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
                rec.set_touch(Some(target));
                let dst = self.s.slot(target);
                let seq = dst.seq();
                let odd = seqlock::write_begin(seq);
                // Header fields after `seq`, then key and value (lengths validated above).
                dst.key_len().store(klen as u32, Ordering::Relaxed);
                dst.val_len().store(vlen as u32, Ordering::Relaxed);
                dst.flags()
                    .store(sc.flags().load(Ordering::Relaxed), Ordering::Relaxed);
                dst.expires()
                    .store(sc.expires().load(Ordering::Relaxed), Ordering::Relaxed);
                raw::copy_words(sc.key_words(klen), dst.key_words(klen));
                // The whole value field: inline bytes, or the heap locator.
                raw::copy_words(sc.value_words(sc.val_cap()), dst.value_words(dst.val_cap()));
                failpoint!("repair.redone");
                self.set_ctrl(target, tag);
                seqlock::write_end(seq, odd);
            }
            redo::REDO_CLEAR => self.redo_clear(true),
            _ => return Err(Error::corrupted("repair record: unknown operation")),
        }
        let touch = rec.touch();
        if touch != redo::NO_SLOT {
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
        // The heap's metadata, from the slots as they now are (a writer may have died
        // mid-allocation or mid-free; nothing of it was logged).
        self.rebuild_heap()?;
        rec.set_touch(None);
        rec.idle();
        Ok(())
    }

    /// (FULL, DELETED) control bytes in the shard.
    pub(super) fn count_ctrl(&self) -> (u64, u64) {
        let (mut full, mut deleted) = (0u64, 0u64);
        for g in 0..self.s.groups() {
            let grp = self.s.group(g).load(Ordering::Relaxed);
            full += u64::from(ctrl::match_full(grp).count_ones());
            deleted += u64::from(ctrl::match_byte(grp, ctrl::DELETED).count_ones());
        }
        (full, deleted)
    }
}
