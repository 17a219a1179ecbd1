//! Administration: sizes, counters, statistics, verification, and raw access for tests.

use std::sync::atomic::Ordering;

use super::Store;
use crate::config::WhenFull;
use crate::counter::{self, Counter};
use crate::error::Result;
use crate::region::header;
use crate::region::inspect::{self, RegionPart};
use crate::stats::{self, Stats};
use crate::table::{Problem, ProblemKind, Stat, Totals, VerifyReport};

impl Store {
    /// Entries stored (including expired entries not yet reclaimed, like Redis `DBSIZE`).
    pub fn len(&self) -> u64 {
        // Saturating: the stored counts are region words another process may have scribbled.
        (0..self.region.layout().geo.shards as usize)
            .map(|s| self.shard(s).len())
            .fold(0, u64::saturating_add)
    }

    /// Whether the store holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configured capacity (entries guaranteed to fit, barring extreme hash imbalance:
    /// shards are sized with four standard deviations of headroom).
    pub fn capacity(&self) -> u64 {
        self.region.layout().geo.capacity
    }

    /// Size of the mapped region in bytes.
    pub fn region_bytes(&self) -> u64 {
        self.region.layout().total_len as u64
    }

    /// Finds or registers the named counter. Resolve once and keep the [`Counter`]: each of its
    /// operations is then a single atomic instruction.
    pub fn counter(&self, name: &str) -> Result<Counter> {
        counter::resolve(
            &self.region,
            &self.inner.hash_key,
            name,
            self.inner.lock_timeout,
        )
    }

    /// Every registered counter with its current value.
    pub fn counters(&self) -> Result<Vec<(String, i64)>> {
        counter::list(self.region.raw(), self.region.layout())
    }

    /// A snapshot of the statistics (summed over shards and processes; not atomic as a whole).
    pub fn stats(&self) -> Stats {
        let r = self.region.raw();
        let l = self.region.layout();
        let mut st = Stats {
            capacity: l.geo.capacity,
            slots: l.slots_per_shard as u64 * u64::from(l.geo.shards),
            hits: stats::sum(r, l, stats::HITS),
            misses: stats::sum(r, l, stats::MISSES),
            region_bytes: l.total_len as u64,
            ..Stats::default()
        };
        st.heap_bytes =
            u64::from(l.geo.pages_per_shard) * crate::heap::PAGE as u64 * u64::from(l.geo.shards);
        for s in 0..l.geo.shards as usize {
            let sh = self.shard(s);
            st.entries = st.entries.saturating_add(sh.len());
            st.tombstones = st.tombstones.saturating_add(sh.tombstones());
            let (pool, value_bytes) = sh.heap_space();
            st.value_bytes = st.value_bytes.saturating_add(value_bytes);
            st.heap_free_bytes = st.heap_free_bytes.saturating_add(pool.0 + pool.1);
            st.heap_partial_free_bytes = st.heap_partial_free_bytes.saturating_add(pool.1);
            st.largest_value = st.largest_value.max(pool.2);
        }
        st.largest_value = st.largest_value.min(u64::from(l.geo.max_value_len));
        let sum = |f: Stat| stats::sum(r, l, f as usize);
        st.sets = sum(Stat::Sets);
        st.deletes = sum(Stat::Deletes);
        st.expirations = sum(Stat::Expirations);
        st.evictions = sum(Stat::Evictions);
        st.full_refusals = sum(Stat::Full);
        st.lock_recoveries = sum(Stat::Recoveries);
        st.lock_contended = sum(Stat::Contended);
        st.counters = self.counters().map_or(0, |c| c.len() as u64);
        st
    }

    /// Walks the whole region and checks every invariant: the header still matches what was
    /// opened, counters are well formed and unique, and in every shard (each locked in turn,
    /// which also repairs a dead writer's work) control bytes are valid, live slots are not
    /// mid-write, lengths are within bounds, every key hashes to its shard and tag and is
    /// reachable by lookup exactly once, and the stored counts match.
    pub fn verify(&self) -> Result<VerifyReport> {
        let r = self.region.raw();
        let l = self.region.layout();
        let mut rep = VerifyReport {
            shards: l.geo.shards,
            ..VerifyReport::default()
        };
        let reread = header::read_layout(r);
        let header_problem = match reread {
            Ok(now) if now == *l => None,
            Ok(_) => Some("configuration fields"),
            Err(_) => Some("magic, version, fingerprint or sizes"),
        };
        if let Some(what) = header_problem {
            rep.problems.push(Problem {
                shard: u32::MAX,
                slot: None,
                kind: ProblemKind::HeaderChanged(what),
            });
        }
        if header::read_seed(r) != self.region.seed() {
            rep.problems.push(Problem {
                shard: u32::MAX,
                slot: None,
                kind: ProblemKind::HeaderChanged("hash seed"),
            });
        }
        let mut totals = Totals {
            counters: counter::verify(r, l, &self.inner.hash_key, &mut rep.problems),
            ..Totals::default()
        };
        let now = self.now();
        for s in 0..l.geo.shards as usize {
            match self.lock_index(s, false) {
                Ok(lk) => lk.verify(&self.inner.hash_key, &now, &mut rep.problems, &mut totals),
                Err(e) => rep.problems.push(Problem {
                    shard: s as u32,
                    slot: None,
                    kind: ProblemKind::ShardUnavailable(e.to_string()),
                }),
            }
        }
        rep.totals = totals;
        Ok(rep)
    }

    /// The current generation (bumped by `clear`), for tools that watch a region.
    pub fn generation(&self) -> u64 {
        header::generation(self.region.raw()).load(Ordering::Relaxed)
    }

    /// Whether entries may be evicted when full.
    pub fn evicts(&self) -> bool {
        self.region.layout().geo.policy == WhenFull::Evict
    }

    /// Base address and length of the mapping, for tests that deliberately corrupt a region.
    ///
    /// # Safety
    /// Writing through the pointer can break every invariant the store relies on (the store
    /// then reports [`Error::Corrupted`] or `verify` problems, but never reads out of bounds).
    /// The pointer is valid while this handle (or a clone) lives.
    #[doc(hidden)]
    #[allow(unsafe_code)] // a declaration only: the caller's writes are what is unsafe
    pub unsafe fn raw_region(&self) -> (*mut u8, usize) {
        (self.region.raw().base(), self.region.raw().len())
    }

    /// Named byte ranges of the region (header fields, mutexes, counter records, repair
    /// records, control bytes, slot fields; per shard the heap's pool header fields, used and
    /// partial-page maps, page descriptors and pages), for tests and fuzzers that corrupt it on
    /// purpose. About seven parts per slot and four per heap page.
    #[doc(hidden)]
    pub fn layout_map(&self) -> Vec<RegionPart> {
        inspect::layout_map(self.region.layout())
    }

    /// The header's `config_check` this region would hold with hash seed `seed` (a hash of the
    /// seed and the configuration fields), for tools that pin the seed of a region image (the
    /// fuzzers' base image rewrites both fields, so that every run sees the same bytes).
    #[doc(hidden)]
    pub fn config_check_with_seed(&self, seed: (u64, u64)) -> u64 {
        crate::region::layout::config_check(&self.region.layout().geo, seed)
    }

    /// Where the heap bytes of `key`'s value are (its blocks' headers and bytes, its extent's
    /// piece locators, its whole pages), for tests that corrupt a value on purpose: empty if
    /// the key is absent, expired, or its value (at most 24 bytes) is stored in its slot. Takes
    /// the key's shard lock; `Corrupted` if the slot's value does not decode.
    #[doc(hidden)]
    pub fn value_parts(&self, key: &[u8]) -> Result<Vec<RegionPart>> {
        self.check_key(key)?;
        let p = self.place(key);
        let lk = self.lock_shard(&p)?;
        let now = self.now();
        let Some(i) = lk.lookup(key, p).live(&now) else {
            return Ok(Vec::new());
        };
        Ok(match lk.stored(i)? {
            Some(v) => {
                inspect::value_parts(self.region.raw(), self.region.layout(), p.shard, i, &v)
            }
            None => Vec::new(),
        })
    }
}
