//! The public [`Store`] API, in three files: `open.rs` (creating and opening regions),
//! `ops.rs` (the key-value operations) and `admin.rs` (sizes, counters, statistics,
//! verification); `int.rs` is the Redis-style integer format of `incr`. A `Store` is a
//! [`Region`] (shared with its counters) plus what this process's handles share: the hash
//! secrets, the lock timeout and the per-thread statistics slots.

mod admin;
mod int;
mod open;
mod ops;

pub use ops::Ttl;

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, LazyNow};
use crate::error::{Error, Result};
use crate::hash::{self, HashKey};
use crate::process;
use crate::region::Region;
use crate::stats::{self, StatSlots};
use crate::table::{self, Locked, Placement, Shard};

/// What every clone of one store handle shares in this process.
struct Inner {
    /// Kept for `Drop` (the statistics slots are given back into the region).
    region: Arc<Region>,
    hash_key: HashKey,
    lock_timeout: Duration,
    stat_slots: StatSlots,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stat_slots
            .release(self.region.raw(), self.region.layout());
    }
}

/// A handle to a shared-memory key-value store. `Clone` is cheap (one `Arc`), and clones,
/// threads and forked children all share the same region.
///
/// See the [crate documentation](crate) for the guarantees and limits.
#[derive(Clone)]
pub struct Store {
    /// The mapping (also held by counters), read on every operation.
    region: Arc<Region>,
    /// What this handle's clones share in this process.
    inner: Arc<Inner>,
    clock: Clock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("origin", self.region.origin())
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl Store {
    fn from_region(region: Region, lock_timeout: Duration) -> Self {
        process::my_pid(); // registers the fork handler before any fork
        let region = Arc::new(region);
        Store {
            inner: Arc::new(Inner {
                region: Arc::clone(&region),
                hash_key: HashKey::new(region.seed()),
                lock_timeout,
                stat_slots: StatSlots::default(),
            }),
            region,
            clock: Clock::System,
        }
    }

    #[inline]
    fn now(&self) -> LazyNow<'_> {
        LazyNow::new(&self.clock)
    }

    #[inline]
    fn check_key(&self, key: &[u8]) -> Result<()> {
        let max = self.region.layout().geo.max_key_len as usize;
        if key.len() > max {
            return Err(Error::KeyTooLong {
                len: key.len(),
                max,
            });
        }
        Ok(())
    }

    #[inline]
    fn check_value(&self, v: &[u8]) -> Result<()> {
        let max = self.region.layout().geo.max_value_len as usize;
        if v.len() > max {
            return Err(Error::ValueTooLarge { len: v.len(), max });
        }
        Ok(())
    }

    fn expiry(&self, ttl: Option<Duration>, now: &LazyNow<'_>) -> Result<u64> {
        let Some(d) = ttl else { return Ok(0) };
        let ms = d.as_nanos().div_ceil(1_000_000);
        if ms == 0 {
            return Err(Error::InvalidTtl { reason: "zero" });
        }
        u64::try_from(ms)
            .ok()
            .and_then(|ms| ms.checked_add(now.get()))
            .ok_or(Error::InvalidTtl {
                reason: "too large",
            })
    }

    #[inline]
    fn place(&self, key: &[u8]) -> Placement {
        let g = self.region.layout().geo;
        table::place(
            hash::hash(&self.inner.hash_key, key),
            g.shards,
            g.groups_per_shard,
        )
    }

    #[inline]
    fn shard(&self, i: usize) -> Shard<'_> {
        Shard::new(self.region.raw(), self.region.layout(), i)
    }

    fn lock_shard(&self, p: &Placement) -> Result<Locked<'_>> {
        self.lock_index(p.shard, false)
    }

    /// Locks shard `s` on behalf of the calling thread (see `Shard::lock`).
    fn lock_index(&self, s: usize, force: bool) -> Result<Locked<'_>> {
        let ts = self
            .inner
            .stat_slots
            .current(self.region.raw(), self.region.layout());
        self.shard(s).lock(self.inner.lock_timeout, force, ts)
    }

    #[inline]
    fn count_read(&self, hit: bool) {
        let field = if hit { stats::HITS } else { stats::MISSES };
        self.inner
            .stat_slots
            .bump(self.region.raw(), self.region.layout(), field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::{Config, WhenFull};
    use crate::region::layout::{shard, stat_slot, STAT_SLOTS};
    use std::sync::atomic::Ordering;

    /// Every table path on a small region, sized so that `cargo miri test` runs it (Miri
    /// checks each access of the region for bounds, alignment and data races): inserts into
    /// free slots and tombstones, overwrites through the scratch slot, deletes, TTL expiry and
    /// the sweep of a full shard, CLOCK eviction, incr, compare_and_swap, scan,
    /// delete_prefix, counters, clear and verify.
    #[test]
    fn every_table_path_on_a_small_region() {
        let clock = ManualClock::new(1_000);
        let refuse = Store::anonymous(&Config::new().capacity(24).shards(1).max_value_len(40))
            .unwrap()
            .with_clock(Clock::Manual(clock.clone()));
        let mut inserted = 0u32;
        while inserted < 200 {
            let ttl = inserted
                .is_multiple_of(2)
                .then_some(Duration::from_millis(10));
            match refuse.set(
                format!("k{inserted}").as_bytes(),
                &[inserted as u8; 33],
                ttl,
            ) {
                Ok(()) => inserted += 1,
                Err(Error::Full) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!((24..200).contains(&inserted), "{inserted}");
        assert_eq!(refuse.get(b"k1").unwrap().unwrap(), [1u8; 33]);
        refuse.set(b"k1", b"short", None).unwrap();
        assert_eq!(refuse.get(b"k1").unwrap().unwrap(), b"short");
        assert!(refuse.delete(b"k3").unwrap());
        assert!(!refuse.contains(b"k3").unwrap());
        clock.advance(Duration::from_millis(20));
        // Half the entries expired: a new key sweeps them and fits.
        refuse.set(b"after-expiry", b"v", None).unwrap();
        assert_eq!(refuse.incr(b"n", 41, None).unwrap(), 41);
        assert_eq!(refuse.incr(b"n", 1, None).unwrap(), 42);
        assert!(refuse
            .compare_and_swap(b"n", Some(b"42"), Some(b"7"), None)
            .unwrap());
        assert!(!refuse
            .compare_and_swap(b"n", Some(b"42"), None, None)
            .unwrap());
        assert!(refuse.expire(b"k1", Some(Duration::from_secs(5))).unwrap());
        let (keys, _) = refuse.scan(0, b"k", 1000).unwrap();
        assert!(keys.iter().any(|k| k == b"k1"));
        assert!(refuse.delete_prefix(b"k").unwrap() > 0);
        assert_eq!(refuse.get(b"k1").unwrap(), None);
        assert_eq!(refuse.flush_expired().unwrap(), 0);
        let c = refuse.counter("hits").unwrap();
        c.add(3);
        assert_eq!(refuse.counters().unwrap(), [("hits".to_owned(), 3)]);
        assert!(refuse.verify().unwrap().is_ok());
        refuse.clear().unwrap();
        assert_eq!(refuse.len(), 0);

        let evict = Store::anonymous(
            &Config::new()
                .capacity(24)
                .shards(1)
                .when_full(WhenFull::Evict),
        )
        .unwrap();
        for i in 0..100u32 {
            evict.set(&i.to_le_bytes(), &i.to_be_bytes(), None).unwrap();
            if i % 3 == 0 {
                // Reads set CLOCK bits, so eviction gives second chances.
                let _ = evict.get(&(i / 2).to_le_bytes()).unwrap();
            }
        }
        assert_eq!(
            evict.get(&99u32.to_le_bytes()).unwrap().unwrap(),
            99u32.to_be_bytes()
        );
        assert!(evict.stats().evictions > 0);
        assert!(evict.verify().unwrap().is_ok());
    }

    /// A dead thread's statistics slot is not handed to another thread while a shard's pending
    /// redo record still names its scratch slot (the new owner would overwrite the redo copy).
    #[test]
    #[cfg_attr(miri, ignore = "needs kill(2) to tell a dead thread")]
    fn pending_scratch_is_not_reclaimed() {
        let store = Store::anonymous(&Config::new().capacity(100).shards(2)).unwrap();
        let (r, l) = (store.region.raw(), store.region.layout());
        let live = std::process::id(); // alive, and no thread of ours has this id but main's
        let dead = 0x7fff_fff0u32; // no such process
        let owner = |i: usize| r.u32_at(l.stat_slot_off(i) + stat_slot::OWNER);
        for i in 1..STAT_SLOTS as usize {
            owner(i).store(if i == 7 { dead } else { live }, Ordering::Relaxed);
        }
        let rec_op = r.u32_at(l.shard_off(1) + shard::REC_OP);
        let rec_scratch = r.u32_at(l.shard_off(1) + shard::REC_SCRATCH);
        rec_op.store(crate::redo::REDO_PUT, Ordering::Relaxed);
        rec_scratch.store(7, Ordering::Relaxed);
        let claim = || {
            let s = store.clone();
            std::thread::spawn(move || {
                s.inner
                    .stat_slots
                    .current(s.region.raw(), s.region.layout())
            })
            .join()
            .unwrap()
        };
        let t = claim();
        assert_eq!(
            (t.index, t.exclusive),
            (0, false),
            "slot 7 holds a pending redo copy"
        );
        assert_eq!(t.scratch(), 0, "the overflow slot uses the shard's scratch");
        rec_op.store(crate::redo::IDLE, Ordering::Relaxed);
        let t = claim();
        assert_eq!(
            (t.index, t.exclusive),
            (7, true),
            "reclaimed once the redo is done"
        );
        assert_eq!(t.scratch(), 7);
    }
}
