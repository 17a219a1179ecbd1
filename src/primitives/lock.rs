//! Leased locks with owner tokens, fencing tokens and takeover of dead or expired holders.
//!
//! # How it works
//!
//! A lock named `n` is one store entry (key `0xFF 'L' n`, no TTL) holding a 56-byte record:
//!
//! ```text
//! offset  size  field
//!      0     4  magic "LKS1"
//!      4     4  state: 0 = FREE, 1 = HELD
//!      8     8  fence: incremented by every acquisition; a new record starts at now_ms << 16
//!     16     8  token: random, unique per acquisition (0 when FREE)
//!     24     8  lease expiry, wall-clock ms since the epoch
//!     32    20  owner: boot id (8), pid (4), process start time (8)
//!     52     4  zero
//! ```
//!
//! Every transition is one [`Store::compare_and_swap`] of the whole record, so an acquirer, an
//! extender and a releaser each see exactly the record they decided on: release and extend
//! succeed only while the record is byte-for-byte the one this acquisition wrote (same token).
//! A HELD record may be taken over when its lease has expired, or when its owner is dead
//! (robust to pid reuse: pid plus start time plus boot id, zombies count as dead).
//!
//! The record stays in the store after release (FREE, with its fence), so fencing tokens of a
//! name are consecutive while it lives; a record that is deleted (retire a lock name with
//! [`Store::delete`] on [`lock_key`]) or evicted restarts at `now_ms << 16`, above any fence it
//! can have reached, so fences stay monotonic as long as the wall clock does not step back.
//!
//! On a store configured with [`WhenFull::Evict`](crate::WhenFull::Evict), a held lock's record
//! can be evicted under memory pressure, letting a second process acquire the lock: use a
//! `Refuse` store for locks that need mutual exclusion, or fence the protected resource.

use std::time::Duration;

use super::{check_name, key, ms_ceil, tag, Backoff};
use super::{u32_at, u64_at};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::process::{self, ProcId, PROC_ID_LEN};
use crate::store::Store;

const MAGIC: u32 = u32::from_le_bytes(*b"LKS1");
const FREE: u32 = 0;
const HELD: u32 = 1;
const LEN: usize = 56;
/// Bound on compare-and-swap retries within one acquisition attempt.
const CAS_ATTEMPTS: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    state: u32,
    fence: u64,
    token: u64,
    expires_ms: u64,
    owner: ProcId,
}

impl Record {
    fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.state.to_le_bytes());
        b[8..16].copy_from_slice(&self.fence.to_le_bytes());
        b[16..24].copy_from_slice(&self.token.to_le_bytes());
        b[24..32].copy_from_slice(&self.expires_ms.to_le_bytes());
        self.owner.encode(&mut b[32..32 + PROC_ID_LEN]);
        b
    }

    fn decode(b: &[u8]) -> Result<Record> {
        if b.len() != LEN || u32_at(b, 0) != MAGIC {
            return Err(Error::BadRecord {
                what: "lock record",
            });
        }
        let state = u32_at(b, 4);
        if state != FREE && state != HELD {
            return Err(Error::BadRecord {
                what: "lock record state",
            });
        }
        Ok(Record {
            state,
            fence: u64_at(b, 8),
            token: u64_at(b, 16),
            expires_ms: u64_at(b, 24),
            owner: ProcId::decode(&b[32..32 + PROC_ID_LEN]),
        })
    }
}

/// The store key under which the lock `name` keeps its record (for tools and for retiring a
/// lock name with [`Store::delete`]).
///
/// ```
/// # fn main() -> shmstate::Result<()> {
/// let store = shmstate::Store::anonymous(&shmstate::Config::new())?;
/// drop(store.try_lock("old-job", std::time::Duration::from_secs(1))?);
/// assert!(store.delete(&shmstate::lock_key("old-job"))?); // retire the name
/// # Ok(()) }
/// ```
pub fn lock_key(name: &str) -> Vec<u8> {
    key(tag::LOCK, &[name.as_bytes()])
}

/// Who holds a lock, as returned by [`Store::lock_holder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockHolder {
    /// Process id of the holder.
    pub pid: u32,
    /// Fencing token of the holder's acquisition.
    pub fence: u64,
    /// Time left on the lease (zero if it has expired but nobody took over yet).
    pub lease_left: Duration,
    /// Whether the holding process has exited (the lock will be taken over by the next
    /// acquirer).
    pub holder_dead: bool,
}

/// An acquired leased lock. Dropping it releases the lock if this acquisition still owns it.
///
/// The guard is tied to the process that acquired the lock: in a child forked while holding
/// it, dropping the guard (or calling [`release`](LockGuard::release)) does nothing.
///
/// ```
/// # fn main() -> shmstate::Result<()> {
/// use std::time::Duration;
/// let store = shmstate::Store::anonymous(&shmstate::Config::new())?;
/// let mut g = store.try_lock("compaction", Duration::from_secs(10))?.unwrap();
/// // Long job: keep the lease alive, and stop if we lost the lock meanwhile.
/// if !g.extend(Duration::from_secs(10))? {
///     return Ok(()); // someone took over after our lease expired
/// }
/// assert!(g.is_held()? && g.lease_left() > Duration::from_secs(9));
/// assert!(g.release()?); // true: nobody took it from us
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard {
    store: Store,
    key: Vec<u8>,
    rec: Record,
    done: bool,
}

impl LockGuard {
    /// The fencing token: strictly greater than that of every earlier acquisition of this
    /// lock. Pass it to the resource you protect and have it reject writes carrying a token
    /// smaller than the largest it has seen, so a holder that stalled past its lease cannot
    /// overwrite its successor's work.
    pub fn fence(&self) -> u64 {
        self.rec.fence
    }

    /// The owner token of this acquisition (random, unique per acquisition).
    pub fn token(&self) -> u64 {
        self.rec.token
    }

    /// Time left on the lease by this process's clock (zero once expired).
    pub fn lease_left(&self) -> Duration {
        Duration::from_millis(self.rec.expires_ms.saturating_sub(Clock::System.now_ms()))
    }

    fn mine(&self) -> bool {
        crate::process::my_pid() == self.rec.owner.pid
    }

    /// Whether this acquisition still owns the lock (nobody took it over after the lease
    /// expired). Takes no lock.
    pub fn is_held(&self) -> Result<bool> {
        Ok(!self.done && self.store.get(&self.key)?.as_deref() == Some(&self.rec.encode()[..]))
    }

    /// Sets the lease to expire `lease` from now, if this acquisition still owns the lock;
    /// returns whether it did. (Redis: a Lua script doing `PEXPIRE` only if `GET` returns our
    /// token.) A lease that expired is still extended if nobody took the lock over meanwhile.
    pub fn extend(&mut self, lease: Duration) -> Result<bool> {
        let lease_ms = ms_ceil("lease", lease)?;
        if self.done || !self.mine() {
            return Ok(false);
        }
        let new = Record {
            expires_ms: Clock::System.now_ms().saturating_add(lease_ms),
            ..self.rec
        };
        let ok = self.store.compare_and_swap(
            &self.key,
            Some(&self.rec.encode()),
            Some(&new.encode()),
            None,
        )?;
        if ok {
            self.rec = new;
        }
        Ok(ok)
    }

    /// Releases the lock; returns whether this acquisition still owned it (`false`: the lease
    /// expired and another process took the lock over, so whatever we did under it may have
    /// raced with them). (Redis: the `if GET == token then DEL` Lua script.)
    pub fn release(mut self) -> Result<bool> {
        self.release_inner()
    }

    fn release_inner(&mut self) -> Result<bool> {
        if self.done || !self.mine() {
            return Ok(false);
        }
        self.done = true;
        let free = Record {
            state: FREE,
            token: 0,
            expires_ms: 0,
            ..self.rec
        };
        self.store.compare_and_swap(
            &self.key,
            Some(&self.rec.encode()),
            Some(&free.encode()),
            None,
        )
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // An error here (the shard lock timed out) leaves the lock to expire with its lease.
        let _ = self.release_inner();
    }
}

/// Outcome of one acquisition attempt.
enum Attempt {
    Acquired(LockGuard),
    /// Held by a live owner whose lease ends in this many ms.
    Busy(u64),
}

fn attempt(store: &Store, key: &[u8], lease_ms: u64) -> Result<Attempt> {
    let me = process::current()?;
    let mut buf = Vec::with_capacity(LEN);
    for _ in 0..CAS_ATTEMPTS {
        let now = Clock::System.now_ms();
        let found = store.get_into(key, &mut buf)?;
        let prev = if found {
            Some(Record::decode(&buf)?)
        } else {
            None
        };
        if let Some(r) = prev {
            if r.state == HELD && r.expires_ms > now && !process::is_dead(&r.owner) {
                return Ok(Attempt::Busy(r.expires_ms - now));
            }
        }
        let fence = match prev {
            Some(r) => r.fence.checked_add(1).ok_or(Error::Overflow)?,
            // A first acquisition, or the record was deleted or evicted: start above every
            // fence the lost record can have held (fewer than 2^16 acquisitions fit in a
            // millisecond), so fences stay monotonic even across a lost record.
            None => now.saturating_mul(1 << 16).max(1),
        };
        let rec = Record {
            state: HELD,
            fence,
            token: process::unique_token(),
            expires_ms: now.saturating_add(lease_ms),
            owner: me,
        };
        let expected = found.then_some(&buf[..]);
        if store.compare_and_swap(key, expected, Some(&rec.encode()), None)? {
            return Ok(Attempt::Acquired(LockGuard {
                store: store.clone(),
                key: key.to_vec(),
                rec,
                done: false,
            }));
        }
        // Someone changed the record between our read and our swap: decide again.
    }
    Err(Error::Contended {
        attempts: CAS_ATTEMPTS,
    })
}

fn lock_key_checked(name: &str) -> Result<Vec<u8>> {
    check_name("lock name", name, 4096, &[])?;
    Ok(lock_key(name))
}

/// Leased locks.
impl Store {
    /// Tries once to acquire the leased lock `name` for `lease`; `Ok(None)` if a live process
    /// holds it with an unexpired lease. A lock whose lease expired, or whose holder died, is
    /// taken over. The lock is not reentrant: a second `try_lock` by the holder returns `None`.
    ///
    /// Replaces the Redis idiom `SET lock:n <token> NX PX <lease>` (plus a Lua script to
    /// release only if `GET` returns our token); unlike it, a crashed holder's lock is taken
    /// over at once instead of after its lease, and each acquisition gets a fencing token.
    ///
    /// ```
    /// # fn main() -> shmstate::Result<()> {
    /// use std::time::Duration;
    /// let store = shmstate::Store::anonymous(&shmstate::Config::new())?;
    /// let guard = store.try_lock("nightly-report", Duration::from_secs(30))?.expect("free");
    /// assert!(store.try_lock("nightly-report", Duration::from_secs(30))?.is_none());
    /// let fence = guard.fence(); // pass along with writes; reject smaller fences
    /// assert!(guard.release()?); // we still owned it
    /// let again = store.try_lock("nightly-report", Duration::from_secs(30))?.unwrap();
    /// assert!(again.fence() > fence);
    /// # Ok(()) }
    /// ```
    pub fn try_lock(&self, name: &str, lease: Duration) -> Result<Option<LockGuard>> {
        let key = lock_key_checked(name)?;
        let lease_ms = ms_ceil("lease", lease)?;
        match attempt(self, &key, lease_ms)? {
            Attempt::Acquired(g) => Ok(Some(g)),
            Attempt::Busy(_) => Ok(None),
        }
    }

    /// Acquires the leased lock `name`, waiting at most `wait`; `Ok(None)` if it is still held
    /// by a live process then. Waiting sleeps with exponential backoff (1 ms to 32 ms, and never
    /// past the holder's lease), so waiters do not spin a core.
    ///
    /// Replaces the Redis client loop of `SET NX PX` retries with sleeps (Redlock's "retry
    /// delay").
    ///
    /// ```
    /// # fn main() -> shmstate::Result<()> {
    /// use std::time::Duration;
    /// let store = shmstate::Store::anonymous(&shmstate::Config::new())?;
    /// let held = store.try_lock("migrate", Duration::from_millis(20))?.unwrap();
    /// std::mem::forget(held); // as if the holder hung: its lease runs out after 20 ms
    /// let g = store.lock("migrate", Duration::from_secs(5), Duration::from_secs(1))?;
    /// assert!(g.expect("taken over after the lease").fence() > 0);
    /// # Ok(()) }
    /// ```
    pub fn lock(&self, name: &str, lease: Duration, wait: Duration) -> Result<Option<LockGuard>> {
        let key = lock_key_checked(name)?;
        let lease_ms = ms_ceil("lease", lease)?;
        let mut backoff = Backoff::new(wait);
        loop {
            match attempt(self, &key, lease_ms) {
                Ok(Attempt::Acquired(g)) => return Ok(Some(g)),
                Ok(Attempt::Busy(left_ms)) => {
                    if !backoff.sleep(Duration::from_millis(left_ms + 1)) {
                        return Ok(None);
                    }
                }
                // Others kept winning the race: that is contention, keep waiting.
                Err(Error::Contended { .. }) => {
                    if !backoff.sleep(Duration::from_millis(32)) {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Who holds the lock `name`, if anyone (lease unexpired or not yet taken over). Takes no
    /// lock. (Redis: `GET lock:n` plus `PTTL lock:n`.)
    ///
    /// ```
    /// # fn main() -> shmstate::Result<()> {
    /// use std::time::Duration;
    /// let store = shmstate::Store::anonymous(&shmstate::Config::new())?;
    /// assert!(store.lock_holder("jobs")?.is_none());
    /// let g = store.try_lock("jobs", Duration::from_secs(5))?.unwrap();
    /// assert_eq!(store.lock_holder("jobs")?.unwrap().pid, std::process::id());
    /// drop(g);
    /// assert!(store.lock_holder("jobs")?.is_none());
    /// # Ok(()) }
    /// ```
    pub fn lock_holder(&self, name: &str) -> Result<Option<LockHolder>> {
        let key = lock_key_checked(name)?;
        let Some(v) = self.get(&key)? else {
            return Ok(None);
        };
        let r = Record::decode(&v)?;
        if r.state != HELD {
            return Ok(None);
        }
        Ok(Some(LockHolder {
            pid: r.owner.pid,
            fence: r.fence,
            lease_left: Duration::from_millis(r.expires_ms.saturating_sub(Clock::System.now_ms())),
            holder_dead: process::is_dead(&r.owner),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rejects_foreign_values() {
        let r = Record {
            state: HELD,
            fence: 7,
            token: 99,
            expires_ms: 1234,
            owner: process::current().unwrap(),
        };
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        assert!(matches!(
            Record::decode(b"hello"),
            Err(Error::BadRecord { .. })
        ));
        let mut b = r.encode();
        b[4] = 9;
        assert!(matches!(Record::decode(&b), Err(Error::BadRecord { .. })));
    }

    #[test]
    fn holder_with_reused_pid_is_dead() {
        // A HELD record naming *our* pid but another start time: the process that held it
        // exited and its pid was reused (by us). Its 1-hour lease must not block us.
        let store = Store::anonymous(&crate::Config::new()).unwrap();
        let me = process::current().unwrap();
        let ghost = Record {
            state: HELD,
            fence: 41,
            token: 1,
            expires_ms: Clock::System.now_ms() + 3_600_000,
            owner: ProcId {
                start: me.start.wrapping_sub(1),
                ..me
            },
        };
        store
            .set(&lock_key("reused"), &ghost.encode(), None)
            .unwrap();
        let h = store.lock_holder("reused").unwrap().unwrap();
        assert!(h.holder_dead && h.pid == me.pid);
        let g = store
            .try_lock("reused", Duration::from_secs(1))
            .unwrap()
            .expect("dead holder taken over despite its lease");
        assert_eq!(g.fence(), 42);
        // A live holder (us, right start time) is respected.
        assert!(store
            .try_lock("reused", Duration::from_secs(1))
            .unwrap()
            .is_none());
    }
}
