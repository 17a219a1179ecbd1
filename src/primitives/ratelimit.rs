//! Rate limiters keyed by client: fixed window, sliding window, and GCRA (a token bucket in one
//! 64-bit word).
//!
//! Each client's state is one store entry with a TTL, so thousands of distinct clients cost
//! one entry each while active, and an idle client's entry expires by itself. Every check is
//! one store operation on that entry ([`Store::incr`] for the fixed window, a read plus one
//! [`Store::compare_and_swap`] for the others, retried a bounded number of times if another
//! process changed the entry in between).
//!
//! | algorithm | state per client | exactness |
//! |---|---|---|
//! | [`RateLimiter::fixed_window`] | a decimal counter per window | exact per window; up to 2x the limit across a window boundary |
//! | [`RateLimiter::sliding_window`] | 24 bytes: window index, previous and current counts | weights the previous window by its overlap (Cloudflare's approximation) |
//! | [`RateLimiter::gcra`] | 8 bytes: the theoretical arrival time, ns | exact; smooth, with a burst allowance |

use std::time::Duration;

use super::u64_at;
use super::{check_name, key, ms_ceil, tag};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::store::Store;

/// Bound on compare-and-swap retries of one check.
const CAS_ATTEMPTS: u32 = 64;

/// The answer to one rate-limit check: enough for the `Retry-After` and the IETF
/// `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset` response headers.
///
/// ```
/// # fn main() -> shmstate::Result<()> {
/// use shmstate::{Config, RateLimiter, Store};
/// use std::time::Duration;
/// let store = Store::anonymous(&Config::new())?;
/// let rl = RateLimiter::gcra(&store, "api", 100, Duration::from_secs(60), 20)?;
/// let d = rl.check(b"203.0.113.9")?;
/// let secs = |t: Duration| t.as_secs() + u64::from(t.subsec_nanos() > 0); // round up
/// let mut headers = vec![
///     ("RateLimit-Limit", d.limit.to_string()),
///     ("RateLimit-Remaining", d.remaining.to_string()),
///     ("RateLimit-Reset", secs(d.reset_after).to_string()),
/// ];
/// if !d.allowed {
///     headers.push(("Retry-After", secs(d.retry_after).to_string())); // with a 429
/// }
/// assert_eq!(headers[1].1, "19");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the request is allowed (and was counted).
    pub allowed: bool,
    /// The limit (requests per window, or the burst for GCRA).
    pub limit: u64,
    /// How many more requests of cost 1 would be allowed right now.
    pub remaining: u64,
    /// When denied: how long until a request of the same cost would be allowed (`Retry-After`,
    /// round it up to whole seconds). Zero when allowed.
    pub retry_after: Duration,
    /// How long until the client's state is back to a full allowance (`RateLimit-Reset`).
    pub reset_after: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Algo {
    Fixed {
        limit: u64,
        window_ms: u64,
    },
    Sliding {
        limit: u64,
        window_ms: u64,
    },
    Gcra {
        interval_ns: u64,
        tau_ns: u64,
        burst: u64,
    },
}

/// A named rate limiter over a [`Store`]. Cheap to clone; create one per policy and call
/// [`check`](RateLimiter::check) with the client's key (an IP address, an API key) per request.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    store: Store,
    prefix: Vec<u8>,
    algo: Algo,
    clock: Clock,
}

fn positive(what: &'static str, v: u64) -> Result<u64> {
    if v == 0 {
        return Err(Error::InvalidArgument {
            what,
            reason: "zero",
        });
    }
    Ok(v)
}

impl RateLimiter {
    fn new(store: &Store, name: &str, algo: Algo) -> Result<Self> {
        check_name("rate limiter name", name, 64, b":")?;
        Ok(RateLimiter {
            store: store.clone(),
            prefix: key(tag::RATE, &[name.as_bytes(), b":"]),
            algo,
            clock: Clock::System,
        })
    }

    /// At most `limit` requests per client in each aligned window of length `window`.
    ///
    /// Replaces the Redis idiom `INCR rl:<client>` + `EXPIRE rl:<client> <window>` (one
    /// [`Store::incr`] here, with the TTL set atomically on creation). Denied requests are
    /// counted too, as with the Redis idiom.
    ///
    /// ```
    /// # fn main() -> shmstate::Result<()> {
    /// use shmstate::{RateLimiter, Store, Config};
    /// use std::time::Duration;
    /// let store = Store::anonymous(&Config::new())?;
    /// let rl = RateLimiter::fixed_window(&store, "api", 2, Duration::from_secs(60))?;
    /// assert!(rl.check(b"10.0.0.1")?.allowed);
    /// assert!(rl.check(b"10.0.0.1")?.allowed);
    /// let d = rl.check(b"10.0.0.1")?;
    /// assert!(!d.allowed && d.remaining == 0);
    /// let retry_after_secs = d.retry_after.as_secs() + 1; // for the Retry-After header
    /// assert!(retry_after_secs <= 60);
    /// assert!(rl.check(b"10.0.0.2")?.allowed); // clients are independent
    /// # Ok(()) }
    /// ```
    pub fn fixed_window(store: &Store, name: &str, limit: u64, window: Duration) -> Result<Self> {
        let algo = Algo::Fixed {
            limit: positive("limit", limit)?.min(i64::MAX as u64),
            window_ms: ms_ceil("window", window)?,
        };
        Self::new(store, name, algo)
    }

    /// At most about `limit` requests per client in any interval of length `window`: the count
    /// of the previous aligned window, weighted by how much of it the sliding interval still
    /// covers, plus the current window's count. Denied requests are not counted.
    ///
    /// Replaces the Redis sorted-set idiom (`ZREMRANGEBYSCORE` + `ZADD` + `ZCARD` in a
    /// `MULTI`), or its two-counter approximation, with 24 bytes per client.
    ///
    /// ```
    /// # fn main() -> shmstate::Result<()> {
    /// use shmstate::{RateLimiter, Store, Config};
    /// use std::time::Duration;
    /// let store = Store::anonymous(&Config::new())?;
    /// let rl = RateLimiter::sliding_window(&store, "login", 3, Duration::from_secs(60))?;
    /// for _ in 0..3 {
    ///     assert!(rl.check(b"alice")?.allowed);
    /// }
    /// assert!(!rl.check(b"alice")?.allowed);
    /// # Ok(()) }
    /// ```
    pub fn sliding_window(store: &Store, name: &str, limit: u64, window: Duration) -> Result<Self> {
        let algo = Algo::Sliding {
            limit: positive("limit", limit)?.min(u64::from(u32::MAX)),
            window_ms: ms_ceil("window", window)?,
        };
        Self::new(store, name, algo)
    }

    /// GCRA (the generic cell rate algorithm, a token bucket): a sustained `rate` requests per
    /// `period`, with bursts of up to `burst` requests. The state is one 64-bit word per
    /// client (its theoretical arrival time), checked and consumed with one compare-and-swap;
    /// the entry expires once the client's bucket is full again.
    ///
    /// Replaces the Redis `redis-cell` module's `CL.THROTTLE` (or a Lua token-bucket script).
    ///
    /// ```
    /// # fn main() -> shmstate::Result<()> {
    /// use shmstate::{RateLimiter, Store, Config};
    /// use std::time::Duration;
    /// let store = Store::anonymous(&Config::new())?;
    /// // 10 per second sustained, bursts of 5.
    /// let rl = RateLimiter::gcra(&store, "search", 10, Duration::from_secs(1), 5)?;
    /// for _ in 0..5 {
    ///     assert!(rl.check(b"key-123")?.allowed);
    /// }
    /// let d = rl.check(b"key-123")?;
    /// assert!(!d.allowed);
    /// assert!(d.retry_after <= Duration::from_millis(100)); // one emission interval
    /// # Ok(()) }
    /// ```
    pub fn gcra(
        store: &Store,
        name: &str,
        rate: u64,
        period: Duration,
        burst: u64,
    ) -> Result<Self> {
        let rate = positive("rate", rate)?;
        let burst = positive("burst", burst)?;
        let period_ns = u64::try_from(period.as_nanos()).map_err(|_| Error::InvalidArgument {
            what: "period",
            reason: "too large",
        })?;
        let interval_ns = period_ns / rate;
        if interval_ns == 0 {
            return Err(Error::InvalidArgument {
                what: "rate",
                reason: "more than one request per nanosecond",
            });
        }
        let tau_ns = interval_ns
            .checked_mul(burst)
            .filter(|&t| t < 1 << 62)
            .ok_or(Error::InvalidArgument {
                what: "burst",
                reason: "burst times the emission interval is too long",
            })?;
        let algo = Algo::Gcra {
            interval_ns,
            tau_ns,
            burst,
        };
        Self::new(store, name, algo)
    }

    /// This limiter with another time source (e.g. a [`ManualClock`](crate::ManualClock) in
    /// tests). Give the [`Store`] handle the same clock, so entries expire on the same time.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks and consumes one request for `client` (see [`Decision`] for the headers).
    ///
    /// ```
    /// # fn main() -> shmstate::Result<()> {
    /// use shmstate::{Config, RateLimiter, Store};
    /// let store = Store::anonymous(&Config::new())?;
    /// let rl = RateLimiter::fixed_window(&store, "a", 1, std::time::Duration::from_secs(9))?;
    /// assert!(rl.check(b"c")?.allowed);
    /// assert!(!rl.check(b"c")?.allowed);
    /// # Ok(()) }
    /// ```
    pub fn check(&self, client: &[u8]) -> Result<Decision> {
        self.check_n(client, 1)
    }

    /// Checks and consumes a request of weight `cost` for `client`. A cost larger than the
    /// limit (or the burst) could never pass and is refused with [`Error::InvalidArgument`].
    ///
    /// ```
    /// # fn main() -> shmstate::Result<()> {
    /// use shmstate::{Config, RateLimiter, Store};
    /// use std::time::Duration;
    /// let store = Store::anonymous(&Config::new())?;
    /// // A byte budget: 1 MB per minute, bursts of 256 KB.
    /// let rl = RateLimiter::gcra(&store, "egress", 1 << 20, Duration::from_secs(60), 1 << 18)?;
    /// assert!(rl.check_n(b"tenant-1", 200_000)?.allowed);
    /// assert!(!rl.check_n(b"tenant-1", 200_000)?.allowed);
    /// # Ok(()) }
    /// ```
    pub fn check_n(&self, client: &[u8], cost: u64) -> Result<Decision> {
        positive("cost", cost)?;
        let mut k = Vec::with_capacity(self.prefix.len() + client.len() + 8);
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(client);
        match self.algo {
            Algo::Fixed { limit, window_ms } => self.fixed(k, cost, limit, window_ms),
            Algo::Sliding { limit, window_ms } => self.sliding(&k, cost, limit, window_ms),
            Algo::Gcra {
                interval_ns,
                tau_ns,
                burst,
            } => self.gcra_check(&k, cost, interval_ns, tau_ns, burst),
        }
    }

    fn too_costly(cost: u64, limit: u64) -> Result<()> {
        if cost > limit {
            return Err(Error::InvalidArgument {
                what: "cost",
                reason: "larger than the limit, so it could never be allowed",
            });
        }
        Ok(())
    }

    fn fixed(&self, mut k: Vec<u8>, cost: u64, limit: u64, window_ms: u64) -> Result<Decision> {
        Self::too_costly(cost, limit)?;
        let now = self.clock.now_ms();
        let idx = now / window_ms;
        let left_ms = window_ms - now % window_ms;
        k.extend_from_slice(&idx.to_le_bytes());
        // `cost <= limit <= i64::MAX`, so the cast is exact.
        let n = self
            .store
            .incr(&k, cost as i64, Some(Duration::from_millis(left_ms)))?;
        let n = u64::try_from(n).map_err(|_| Error::BadRecord {
            what: "fixed-window count is negative",
        })?;
        let allowed = n <= limit;
        let left = Duration::from_millis(left_ms);
        Ok(Decision {
            allowed,
            limit,
            remaining: limit.saturating_sub(n),
            retry_after: if allowed { Duration::ZERO } else { left },
            reset_after: left,
        })
    }

    fn sliding(&self, k: &[u8], cost: u64, limit: u64, w: u64) -> Result<Decision> {
        Self::too_costly(cost, limit)?;
        let mut buf = Vec::with_capacity(24);
        for _ in 0..CAS_ATTEMPTS {
            let now = self.clock.now_ms();
            let idx = now / w;
            let e = now % w; // elapsed in the current window
            let found = self.store.get_into(k, &mut buf)?;
            let (prev, curr) = if found {
                if buf.len() != 24 {
                    return Err(Error::BadRecord {
                        what: "sliding-window record",
                    });
                }
                let (ridx, rp, rc) = (u64_at(&buf, 0), u64_at(&buf, 8), u64_at(&buf, 16));
                if ridx == idx {
                    (rp, rc)
                } else if ridx.checked_add(1) == Some(idx) {
                    (rc, 0)
                } else {
                    (0, 0)
                }
            } else {
                (0, 0)
            };
            // Weighted count, scaled by w: prev * (w - e) + curr * w. Counts are < 2^64 and
            // w < 2^60, so u128 cannot overflow.
            let weighted =
                |curr: u64| u128::from(prev) * u128::from(w - e) + u128::from(curr) * u128::from(w);
            let cap = u128::from(limit) * u128::from(w);
            let remaining = |curr: u64| (cap.saturating_sub(weighted(curr)) / u128::from(w)) as u64;
            // Counts recorded in this window weigh on the next one too: the allowance is whole
            // again at the end of the next window (or of this one if nothing is counted here).
            let reset_after =
                |curr: u64| Duration::from_millis(if curr > 0 { 2 * w - e } else { w - e });
            // The record is untrusted (another process may have written any counts): saturate.
            // A saturated count is above the limit, so it is never stored.
            let next = curr.saturating_add(cost);
            if weighted(next) > cap {
                return Ok(Decision {
                    allowed: false,
                    limit,
                    remaining: remaining(curr),
                    retry_after: Duration::from_millis(sliding_retry(
                        prev, curr, cost, limit, w, e,
                    )),
                    reset_after: reset_after(curr),
                });
            }
            let mut rec = [0u8; 24];
            rec[0..8].copy_from_slice(&idx.to_le_bytes());
            rec[8..16].copy_from_slice(&prev.to_le_bytes());
            rec[16..24].copy_from_slice(&next.to_le_bytes());
            // The record matters until the end of the next window.
            let ttl = Duration::from_millis(2 * w - e);
            let expected = found.then_some(&buf[..]);
            if self
                .store
                .compare_and_swap(k, expected, Some(&rec), Some(ttl))?
            {
                return Ok(Decision {
                    allowed: true,
                    limit,
                    remaining: remaining(next),
                    retry_after: Duration::ZERO,
                    reset_after: reset_after(next),
                });
            }
        }
        Err(Error::Contended {
            attempts: CAS_ATTEMPTS,
        })
    }

    fn gcra_check(
        &self,
        k: &[u8],
        cost: u64,
        interval_ns: u64,
        tau_ns: u64,
        burst: u64,
    ) -> Result<Decision> {
        Self::too_costly(cost, burst)?;
        let inc = interval_ns * cost; // cost <= burst, and interval * burst < 2^62
        let mut buf = Vec::with_capacity(8);
        for _ in 0..CAS_ATTEMPTS {
            let now = self.clock.now_ms().saturating_mul(1_000_000);
            let found = self.store.get_into(k, &mut buf)?;
            let stored = if found {
                if buf.len() != 8 {
                    return Err(Error::BadRecord {
                        what: "GCRA record",
                    });
                }
                u64_at(&buf, 0)
            } else {
                0
            };
            let tat = stored.max(now);
            let new_tat = tat.saturating_add(inc);
            let allow_at = new_tat.saturating_sub(tau_ns);
            if now < allow_at {
                return Ok(Decision {
                    allowed: false,
                    limit: burst,
                    remaining: (tau_ns.saturating_sub(tat - now)) / interval_ns,
                    retry_after: Duration::from_nanos(allow_at - now),
                    reset_after: Duration::from_nanos(tat - now),
                });
            }
            let ttl_ms = (new_tat - now).div_ceil(1_000_000).max(1);
            let expected = found.then_some(&buf[..]);
            if self.store.compare_and_swap(
                k,
                expected,
                Some(&new_tat.to_le_bytes()),
                Some(Duration::from_millis(ttl_ms)),
            )? {
                return Ok(Decision {
                    allowed: true,
                    limit: burst,
                    remaining: (tau_ns.saturating_sub(new_tat - now)) / interval_ns,
                    retry_after: Duration::ZERO,
                    reset_after: Duration::from_nanos(new_tat - now),
                });
            }
        }
        Err(Error::Contended {
            attempts: CAS_ATTEMPTS,
        })
    }
}

/// Milliseconds until a sliding-window request of `cost` would pass, given the previous and
/// current counts and `e` ms elapsed in a window of `w` ms.
fn sliding_retry(prev: u64, curr: u64, cost: u64, limit: u64, w: u64, e: u64) -> u64 {
    let (prev, curr, cost, limit, w, e) = (
        u128::from(prev),
        u128::from(curr),
        u128::from(cost),
        u128::from(limit),
        u128::from(w),
        u128::from(e),
    );
    let at = if curr + cost <= limit {
        // Still this window: need prev * (w - t) <= (limit - curr - cost) * w, i.e.
        // t >= w - (limit - curr - cost) * w / prev (prev > 0, else we would have passed).
        let t = w - ((limit - curr - cost) * w / prev.max(1)).min(w);
        t.max(e + 1)
    } else {
        // Next window, where the current count becomes the previous one:
        // curr * (w - t) <= (limit - cost) * w.
        let t = w - ((limit - cost) * w / curr.max(1)).min(w);
        w + t
    };
    (at - e) as u64
}
