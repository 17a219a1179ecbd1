//! The key-value operations: lock-free reads, locked writes, and the whole-table passes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::int::{format_int, parse_int};
use super::Store;
use crate::error::{Error, Result};
use crate::region::header;
use crate::table::{Entry, Read, Stat};

/// The remaining time to live of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key does not exist (or has expired).
    NoKey,
    /// The key exists and never expires.
    NoExpiry,
    /// The key expires after this long (millisecond resolution).
    ExpiresIn(Duration),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Always,
    IfAbsent,
    IfPresent,
}

impl Store {
    // ---- reads ----

    /// The value of `key`, or `None` if absent or expired. Takes no lock.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut v = Vec::new();
        Ok(self.get_into(key, &mut v)?.then_some(v))
    }

    /// Copies the value of `key` into `out` (replacing its contents) and returns `true`, or
    /// returns `false` (and clears `out`) if absent. Allocation-free once `out` has capacity.
    pub fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        self.check_key(key)?;
        let p = self.place(key);
        let now = self.now();
        let hit = match self.shard(p.shard).read(key, p, &|| now.get(), Some(out))? {
            Read::Hit { .. } => true,
            Read::Miss => false,
            Read::Contended => {
                // A slot stayed mid-write: take the lock (which repairs a dead writer's slot).
                let lk = self.lock_shard(&p)?;
                let l = lk.lookup(key, p);
                match l.live(&now) {
                    Some(i) => {
                        lk.read_value(i, out)?;
                        true
                    }
                    None => false,
                }
            }
        };
        if !hit {
            out.clear();
        }
        self.count_read(hit);
        Ok(hit)
    }

    /// Whether `key` is present and not expired. Takes no lock and copies no value.
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        self.check_key(key)?;
        let p = self.place(key);
        let now = self.now();
        let hit = match self.shard(p.shard).read(key, p, &|| now.get(), None)? {
            Read::Hit { .. } => true,
            Read::Miss => false,
            Read::Contended => {
                let lk = self.lock_shard(&p)?;
                lk.lookup(key, p).live(&now).is_some()
            }
        };
        self.count_read(hit);
        Ok(hit)
    }

    /// Remaining time to live of `key`.
    pub fn ttl(&self, key: &[u8]) -> Result<Ttl> {
        self.check_key(key)?;
        let p = self.place(key);
        let lk = self.lock_shard(&p)?;
        let now = self.now();
        let l = lk.lookup(key, p);
        Ok(match l.live(&now) {
            None => Ttl::NoKey,
            Some(_) if l.expires_ms == 0 => Ttl::NoExpiry,
            Some(_) => Ttl::ExpiresIn(Duration::from_millis(
                l.expires_ms.saturating_sub(now.get()),
            )),
        })
    }

    // ---- writes ----

    fn write(&self, key: &[u8], value: &[u8], ttl: Option<Duration>, mode: Mode) -> Result<bool> {
        self.check_key(key)?;
        self.check_value(value)?;
        let now = self.now();
        let expires_ms = self.expiry(ttl, &now)?;
        let p = self.place(key);
        let lk = self.lock_shard(&p)?;
        let l = lk.lookup(key, p);
        let e = Entry {
            key,
            value,
            expires_ms,
            tag: p.tag,
        };
        match (l.live(&now), mode) {
            (Some(_), Mode::IfAbsent) | (None, Mode::IfPresent) => Ok(false),
            (Some(i), _) => {
                lk.overwrite(i, &e, &now)?;
                lk.bump(Stat::Sets);
                Ok(true)
            }
            (None, _) => {
                lk.insert_new(&l, &e, p, &now)?;
                Ok(true)
            }
        }
    }

    /// Stores `value` under `key`, replacing any value and TTL. `ttl: None` means no expiry.
    pub fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.write(key, value, ttl, Mode::Always).map(drop)
    }

    /// Stores only if `key` is absent (or expired); returns whether it stored. (Redis `SET NX`.)
    pub fn add(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<bool> {
        self.write(key, value, ttl, Mode::IfAbsent)
    }

    /// Stores only if `key` is present; returns whether it stored. (Redis `SET XX`.)
    pub fn replace(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<bool> {
        self.write(key, value, ttl, Mode::IfPresent)
    }

    /// Removes `key`; returns whether a live entry was removed.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.check_key(key)?;
        let p = self.place(key);
        let lk = self.lock_shard(&p)?;
        let l = lk.lookup(key, p);
        let live = l.live(&self.now()).is_some();
        match l.slot {
            Some(i) => {
                lk.remove(i)?;
                lk.bump(if live {
                    Stat::Deletes
                } else {
                    Stat::Expirations
                });
                Ok(live)
            }
            None => Ok(false),
        }
    }

    /// Atomically: if the current value of `key` equals `expected` (`None`: the key is
    /// absent), replace it with `new` (`None`: delete it) and return `true`; otherwise change
    /// nothing and return `false`. `ttl` applies to a stored `new` value.
    ///
    /// Covers set-if-equal, delete-if-equal (release a lock only if you own it) and
    /// create-if-absent.
    pub fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        self.check_key(key)?;
        if let Some(v) = new {
            self.check_value(v)?;
        }
        let now = self.now();
        let expires_ms = self.expiry(ttl, &now)?;
        let p = self.place(key);
        let lk = self.lock_shard(&p)?;
        let l = lk.lookup(key, p);
        let live = l.live(&now);
        let matches = match (live, expected) {
            (None, None) => true,
            (Some(i), Some(exp)) => lk.value_eq(i, exp)?,
            _ => false,
        };
        if !matches {
            return Ok(false);
        }
        failpoint!("cas.matched");
        match (live, new) {
            (Some(i), Some(value)) => {
                let e = Entry {
                    key,
                    value,
                    expires_ms,
                    tag: p.tag,
                };
                lk.overwrite(i, &e, &now)?;
                lk.bump(Stat::Sets);
            }
            (None, Some(value)) => {
                let e = Entry {
                    key,
                    value,
                    expires_ms,
                    tag: p.tag,
                };
                lk.insert_new(&l, &e, p, &now)?;
            }
            (Some(i), None) => {
                lk.remove(i)?;
                lk.bump(Stat::Deletes);
            }
            (None, None) => {}
        }
        Ok(true)
    }

    /// Adds `delta` to the integer stored under `key` and returns the result. A missing key
    /// counts as 0 and is created with `ttl_on_create`; an existing key keeps its TTL. Values
    /// are stored as decimal ASCII (as Redis does), so `get` returns e.g. `b"42"` and `set`
    /// of `b"10"` can be incremented. Non-integers give [`Error::NotAnInteger`], overflow
    /// [`Error::Overflow`].
    pub fn incr(&self, key: &[u8], delta: i64, ttl_on_create: Option<Duration>) -> Result<i64> {
        self.check_key(key)?;
        let now = self.now();
        let p = self.place(key);
        let lk = self.lock_shard(&p)?;
        let l = lk.lookup(key, p);
        let mut buf = [0u8; 20];
        match l.live(&now) {
            Some(i) => {
                let mut cur = [0u8; 24];
                let n = lk.value_len(i);
                if n > self.region.layout().geo.max_value_len as usize {
                    return Err(Error::corrupted("slot value length exceeds max_value_len"));
                }
                if n > 20 {
                    // Not an integer whatever its bytes; a heap value's locator is still
                    // checked, so a corrupted slot is reported as such.
                    lk.stored(i)?;
                    return Err(Error::NotAnInteger);
                }
                lk.read_small(i, &mut cur[..n]);
                let old = parse_int(&cur[..n]).ok_or(Error::NotAnInteger)?;
                let new = old.checked_add(delta).ok_or(Error::Overflow)?;
                let value = format_int(new, &mut buf);
                self.check_value(value)?;
                failpoint!("incr.computed");
                let e = Entry {
                    key,
                    value,
                    expires_ms: l.expires_ms,
                    tag: p.tag,
                };
                lk.overwrite(i, &e, &now)?;
                lk.bump(Stat::Sets);
                Ok(new)
            }
            None => {
                let value = format_int(delta, &mut buf);
                self.check_value(value)?;
                failpoint!("incr.computed");
                let e = Entry {
                    key,
                    value,
                    expires_ms: self.expiry(ttl_on_create, &now)?,
                    tag: p.tag,
                };
                lk.insert_new(&l, &e, p, &now)?;
                Ok(delta)
            }
        }
    }

    /// Sets (`Some`) or removes (`None`) the TTL of an existing key; returns whether the key
    /// existed.
    pub fn expire(&self, key: &[u8], ttl: Option<Duration>) -> Result<bool> {
        self.check_key(key)?;
        let now = self.now();
        let expires_ms = self.expiry(ttl, &now)?;
        let p = self.place(key);
        let lk = self.lock_shard(&p)?;
        let l = lk.lookup(key, p);
        match l.live(&now) {
            Some(i) => {
                lk.set_expiry(i, expires_ms);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Removes every entry (counters are kept). Each shard is emptied atomically; the whole
    /// table is not (a concurrent writer may add to a shard already cleared). Returns how many
    /// entries were removed.
    pub fn clear(&self) -> Result<u64> {
        let mut removed = 0;
        for s in 0..self.region.layout().geo.shards as usize {
            let lk = self.lock_index(s, true)?;
            removed += lk.clear();
        }
        header::generation(self.region.raw()).fetch_add(1, Ordering::Relaxed);
        Ok(removed)
    }

    /// One page of a scan over the live keys starting with `prefix`, like Redis `SCAN`: pass
    /// cursor 0 to start and the returned cursor to continue; `None` means the scan is over.
    /// Returns at most `limit` keys per call (fewer, possibly none, when it reaches the end of a
    /// shard or has visited many empty slots: keep calling until the cursor is `None`). Each
    /// call locks one shard briefly. A key present for the whole scan is returned exactly once
    /// (keys never move); keys added or removed during the scan may or may not be, and a key
    /// deleted and added again during the scan may be returned twice (as with Redis `SCAN`).
    ///
    /// ```
    /// # fn main() -> shmstate::Result<()> {
    /// let store = shmstate::Store::anonymous(&shmstate::Config::new())?;
    /// store.set(b"user:1", b"a", None)?;
    /// store.set(b"user:2", b"b", None)?;
    /// store.set(b"other", b"c", None)?;
    /// let (mut keys, mut cursor) = (Vec::new(), Some(0));
    /// while let Some(c) = cursor {
    ///     let (page, next) = store.scan(c, b"user:", 100)?;
    ///     keys.extend(page);
    ///     cursor = next;
    /// }
    /// keys.sort();
    /// assert_eq!(keys, [b"user:1".to_vec(), b"user:2".to_vec()]);
    /// # Ok(()) }
    /// ```
    pub fn scan(
        &self,
        cursor: u64,
        prefix: &[u8],
        limit: usize,
    ) -> Result<(Vec<Vec<u8>>, Option<u64>)> {
        let l = self.region.layout();
        let per = l.slots_per_shard as u64;
        let total = per * u64::from(l.geo.shards);
        let mut out = Vec::new();
        if cursor >= total || prefix.len() > l.geo.max_key_len as usize {
            return Ok((out, None));
        }
        let shard = (cursor / per) as usize;
        let from = (cursor % per) as usize;
        let limit = limit.max(1);
        let lk = self.lock_index(shard, false)?;
        let next = lk.scan_keys(
            from,
            prefix,
            limit,
            limit.saturating_mul(16).max(4096),
            &self.now(),
            &mut out,
        )?;
        drop(lk);
        let next = shard as u64 * per + next as u64;
        Ok((out, (next < total).then_some(next)))
    }

    /// Deletes every live key starting with `prefix` (a full scan, one shard locked at a time;
    /// not atomic across shards). Returns how many were deleted.
    pub fn delete_prefix(&self, prefix: &[u8]) -> Result<u64> {
        if prefix.len() > self.region.layout().geo.max_key_len as usize {
            return Ok(0);
        }
        let mut removed = 0;
        for s in 0..self.region.layout().geo.shards as usize {
            let lk = self.lock_index(s, false)?;
            removed += lk.delete_prefix(prefix, &self.now())?;
        }
        Ok(removed)
    }

    /// Removes every expired entry now (expiry is otherwise lazy: on access, and when an
    /// insert needs room). Returns how many were removed.
    pub fn flush_expired(&self) -> Result<u64> {
        let mut removed = 0;
        for s in 0..self.region.layout().geo.shards as usize {
            let lk = self.lock_index(s, false)?;
            removed += lk.flush_expired(&self.now())? as u64;
        }
        Ok(removed)
    }
}
