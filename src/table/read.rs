//! The lock-free read: probe the key's groups, match tags, copy the slot under its seqlock;
//! retry a bounded number of times, then tell the caller to take the lock (no reader waits on a
//! writer, dead or alive).

use std::sync::atomic::Ordering;

use super::{ctrl, Placement, Probe, Shard};
use crate::config::WhenFull;
use crate::error::{Error, Result};
use crate::region::layout::{slot, GROUP_WIDTH};
use crate::region::raw;
use crate::sync::seqlock;

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

impl Shard<'_> {
    /// Lock-free lookup: copies the value into `out` on a hit (`None`: only whether there is
    /// one). Writes nothing shared, except setting a CLOCK reference bit (only when not already
    /// set) under `WhenFull::Evict`.
    #[inline]
    pub(crate) fn read(
        &self,
        key: &[u8],
        p: Placement,
        now: &dyn Fn() -> u64,
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<Read> {
        'retry: for _ in 0..READ_RETRIES {
            for g in Probe::new(p.home, self.groups()) {
                let grp = self.group(g).load(Ordering::Acquire);
                let mut m = ctrl::match_byte(grp, p.tag);
                while m != 0 {
                    let i = g * GROUP_WIDTH + ctrl::lowest(m);
                    m &= m - 1;
                    match self.read_slot(i, key, p.tag, out.as_deref_mut())? {
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
    fn read_slot(
        &self,
        i: usize,
        key: &[u8],
        tag: u8,
        out: Option<&mut Vec<u8>>,
    ) -> Result<SlotRead> {
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
        if out.is_some_and(|out| !self.copy_value(sv, vlen, out)) {
            return match unstable_or(SlotRead::Other) {
                SlotRead::Unstable => Ok(SlotRead::Unstable),
                _ => Err(Error::corrupted("slot value locator out of range")),
            };
        }
        Ok(unstable_or(SlotRead::Match { expires_ms }))
    }
}
