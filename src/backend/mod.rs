//! One interface over the shared-memory [`Store`](crate::Store) and, with the `redis` feature, a Redis
//! server: [`StateBackend`].
//!
//! A server written against `&dyn StateBackend` (or a generic `B: StateBackend`) keeps its
//! state in shared memory while it runs on one host, and moves it to Redis when it needs more
//! than one host, by changing the line that builds the backend. `tests/backend_conformance.rs`
//! runs one behaviour suite against both implementations.
//!
//! The differences between the two are listed on [`StateBackend`].

use std::time::Duration;

use crate::error::{Error, Result};
use crate::primitives::lock::LockGuard;
use crate::primitives::ms_ceil;
use crate::{Decision, Ttl};

mod shm;

#[cfg(feature = "redis")]
pub(crate) mod redis;

/// The operations a pre-fork (or multi-host) server needs from its shared state, implemented
/// by the shared-memory [`Store`](crate::Store) and, with the `redis` feature, by
/// `RedisBackend`. Every method blocks until it is done (a store
/// operation takes about 100 ns; a Redis one a network round trip, bounded by the client's
/// timeouts). Keys and values are arbitrary bytes.
///
/// The trait is object safe: hold a `Box<dyn StateBackend>` or an `Arc<dyn StateBackend>`
/// and choose the implementation in one line of configuration.
///
/// ```
/// use shmstate::{Config, StateBackend, Store, Ttl};
/// use std::time::Duration;
///
/// # fn main() -> shmstate::Result<()> {
/// // With the `redis` feature, the one line to change would be:
/// // let backend: Box<dyn StateBackend> = Box::new(shmstate::RedisBackend::connect("unix:///run/redis.sock")?);
/// let backend: Box<dyn StateBackend> = Box::new(Store::anonymous(&Config::new())?);
///
/// backend.set(b"session:42", b"{\"user\":7}", Some(Duration::from_secs(3600)))?;
/// assert_eq!(backend.get(b"session:42")?.as_deref(), Some(&b"{\"user\":7}"[..]));
/// assert!(matches!(backend.ttl(b"session:42")?, Ttl::ExpiresIn(_)));
///
/// assert_eq!(backend.incr(b"hits", 1, None)?, 1);
/// assert!(backend.compare_and_swap(b"leader", None, Some(b"w1"), None)?);
/// assert_eq!(backend.counter_add("requests", 1)?, 1);
///
/// let lock = backend.try_lock("nightly", Duration::from_secs(30))?.expect("free");
/// assert!(backend.try_lock("nightly", Duration::from_secs(30))?.is_none());
/// assert!(backend.release(lock)?);
///
/// let d = backend.rate_limit(b"203.0.113.9", 100, Duration::from_secs(60))?;
/// assert!(d.allowed && d.remaining == 99);
/// # Ok(()) }
/// ```
///
/// # Where the implementations differ
///
/// The operations mean the same on both sides; these are the differences (the conformance
/// suite asserts those one host can observe):
///
/// | | [`Store`](crate::Store) | `RedisBackend` |
/// |---|---|---|
/// | TTL | wall-clock ms of this host; expiry exact at read time | ms, kept by the server's clock (so hosts with skewed clocks agree); expired keys also vanish in the background |
/// | sizes | keys up to `max_key_len`, values up to `max_value_len` ([`Error::KeyTooLong`], [`Error::ValueTooLarge`]) | 512 MB each |
/// | counters | a fixed table of atomics, wrapping on overflow, never deleted | ordinary keys (`INCRBY`), [`Error::Overflow`] instead of wrapping |
/// | locks | dead holders (by pid and start time) are taken over at once; `extend` after the lease ran out still succeeds if nobody took over; fences start at `now_ms << 16` | a dead holder's lock is free only when its lease ends; `extend` after the lease ran out fails (the key is gone); fences come from an `INCR` key and start at 1 |
/// | rate limit | windows aligned to multiples of `window` on this host's clock | the window starts with the client's first request, timed by the server |
/// | cluster | one host | one server (not a cluster client); each script's keys share one hash slot (hash tag `{name}`), nothing is atomic across slots |
/// | errors | the store's errors | the same typed errors (e.g. [`Error::NotAnInteger`]), plus [`Error::Backend`] for network and server failures |
pub trait StateBackend: Send + Sync {
    /// A short name for logs and metrics: `"shm"` or `"redis"`.
    fn backend_name(&self) -> &'static str;

    /// The value of `key`, if it exists and has not expired. (Redis `GET`.)
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Stores `value` under `key`, replacing any value and TTL; `ttl: None` means no expiry.
    /// (Redis `SET key value [PX ms]`.)
    fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()>;

    /// Stores only if `key` is absent (or expired); returns whether it stored. (Redis
    /// `SET key value NX [PX ms]`.)
    fn add(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<bool>;

    /// Removes `key`; returns whether a live entry was removed. (Redis `DEL`.)
    fn delete(&self, key: &[u8]) -> Result<bool>;

    /// Adds `delta` to the decimal integer stored under `key` and returns the result. A
    /// missing key counts as 0 and is created with `ttl_on_create`; an existing key keeps its
    /// TTL. A value that is not a decimal 64-bit integer gives [`Error::NotAnInteger`],
    /// overflow [`Error::Overflow`].
    fn incr(&self, key: &[u8], delta: i64, ttl_on_create: Option<Duration>) -> Result<i64>;

    /// Atomically: if the value of `key` equals `expected` (`None`: the key is absent),
    /// replace it with `new` (`None`: delete it) with the TTL `ttl`, and return `true`;
    /// otherwise change nothing and return `false`.
    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        ttl: Option<Duration>,
    ) -> Result<bool>;

    /// The remaining time to live of `key` (millisecond resolution). (Redis `PTTL`.)
    fn ttl(&self, key: &[u8]) -> Result<Ttl>;

    /// Sets (`Some`) or removes (`None`) the TTL of an existing key; returns whether the key
    /// existed. (Redis `PEXPIRE` / `PERSIST`.)
    fn expire(&self, key: &[u8], ttl: Option<Duration>) -> Result<bool>;

    /// Adds `delta` to the named counter (created at 0) and returns the new value.
    fn counter_add(&self, name: &str, delta: i64) -> Result<i64>;

    /// The named counter's value (0 if it was never added to).
    fn counter_get(&self, name: &str) -> Result<i64>;

    /// Tries once to acquire the leased lock `name` for `lease`; `Ok(None)` if another
    /// acquisition holds it with an unexpired lease. Not reentrant. Dropping the handle
    /// releases the lock (best effort); [`release`](StateBackend::release) says whether we
    /// still owned it.
    fn try_lock(&self, name: &str, lease: Duration) -> Result<Option<LockHandle>>;

    /// Releases `lock` if this acquisition still owns it; returns whether it did (`false`:
    /// the lease ran out and someone else took the lock meanwhile). A handle from another
    /// backend is refused with [`Error::InvalidArgument`].
    fn release(&self, lock: LockHandle) -> Result<bool>;

    /// Sets the lease of `lock` to end `lease` from now, if this acquisition still owns the
    /// lock; returns whether it did.
    fn extend(&self, lock: &mut LockHandle, lease: Duration) -> Result<bool>;

    /// Counts one request of `client` against a fixed-window limit of `limit` requests per
    /// `window` and says whether it is allowed (denied requests are counted too, as with the
    /// Redis `INCR` + `EXPIRE` idiom). A zero limit or window is refused with
    /// [`Error::InvalidArgument`].
    fn rate_limit(&self, client: &[u8], limit: u64, window: Duration) -> Result<Decision>;
}

/// An acquired leased lock, from [`StateBackend::try_lock`]: the owner token and the fencing
/// token of this acquisition. Dropping it releases the lock if this acquisition still owns it
/// (for Redis, one more round trip, whose failure is ignored: the lease then runs out).
#[derive(Debug)]
#[must_use = "dropping the handle releases the lock at once"]
pub struct LockHandle {
    name: String,
    token: u64,
    fence: u64,
    pub(crate) state: LockState,
}

/// Which backend a [`LockHandle`] belongs to, and what it needs to release the lock.
#[derive(Debug)]
pub(crate) enum LockState {
    /// The store's own guard (releases on drop).
    Shm(LockGuard),
    /// A Redis acquisition (releases on drop).
    #[cfg(feature = "redis")]
    Redis(self::redis::RedisLock),
}

impl LockHandle {
    pub(crate) fn new(name: &str, token: u64, fence: u64, state: LockState) -> Self {
        LockHandle {
            name: name.to_owned(),
            token,
            fence,
            state,
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The owner token of this acquisition (unique per acquisition, never 0).
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The fencing token: strictly greater than that of every earlier acquisition of this
    /// lock name on the same backend. Pass it with writes to the protected resource and have
    /// the resource reject tokens smaller than the largest it has seen.
    pub fn fence(&self) -> u64 {
        self.fence
    }
}

/// Milliseconds of a TTL, rounded up; zero and overflow refused as the store refuses them.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn ttl_ms(ttl: Duration) -> Result<u64> {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    if ms == 0 {
        return Err(Error::InvalidTtl { reason: "zero" });
    }
    u64::try_from(ms)
        .ok()
        .filter(|&ms| ms < 1 << 60)
        .ok_or(Error::InvalidTtl {
            reason: "too large",
        })
}

/// Validates the arguments of a fixed-window check the way `RateLimiter::fixed_window` does;
/// returns the window in ms.
pub(crate) fn rate_args(limit: u64, window: Duration) -> Result<u64> {
    if limit == 0 {
        return Err(Error::InvalidArgument {
            what: "limit",
            reason: "zero",
        });
    }
    ms_ceil("window", window)
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
fn foreign_handle() -> Error {
    Error::InvalidArgument {
        what: "lock handle",
        reason: "acquired from another backend",
    }
}
