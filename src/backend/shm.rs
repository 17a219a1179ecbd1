//! [`StateBackend`] for the shared-memory [`Store`]: every method delegates to the store's
//! own API (and to its leased locks and fixed-window rate limiter).

use std::time::Duration;

#[cfg(feature = "redis")]
use super::foreign_handle;
use super::{rate_args, LockHandle, LockState, StateBackend};
use crate::error::Result;
use crate::{Decision, RateLimiter, Store, Ttl};

impl StateBackend for Store {
    fn backend_name(&self) -> &'static str {
        "shm"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Store::get(self, key)
    }

    fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        Store::set(self, key, value, ttl)
    }

    fn add(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<bool> {
        Store::add(self, key, value, ttl)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        Store::delete(self, key)
    }

    fn incr(&self, key: &[u8], delta: i64, ttl_on_create: Option<Duration>) -> Result<i64> {
        Store::incr(self, key, delta, ttl_on_create)
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        Store::compare_and_swap(self, key, expected, new, ttl)
    }

    fn ttl(&self, key: &[u8]) -> Result<Ttl> {
        Store::ttl(self, key)
    }

    fn expire(&self, key: &[u8], ttl: Option<Duration>) -> Result<bool> {
        Store::expire(self, key, ttl)
    }

    fn counter_add(&self, name: &str, delta: i64) -> Result<i64> {
        Ok(self.counter(name)?.add(delta))
    }

    fn counter_get(&self, name: &str) -> Result<i64> {
        Ok(self.counter(name)?.get())
    }

    fn try_lock(&self, name: &str, lease: Duration) -> Result<Option<LockHandle>> {
        Ok(Store::try_lock(self, name, lease)?.map(|g| {
            let (token, fence) = (g.token(), g.fence());
            LockHandle::new(name, token, fence, LockState::Shm(g))
        }))
    }

    fn release(&self, lock: LockHandle) -> Result<bool> {
        match lock.state {
            LockState::Shm(g) => g.release(),
            #[cfg(feature = "redis")]
            LockState::Redis(_) => Err(foreign_handle()),
        }
    }

    fn extend(&self, lock: &mut LockHandle, lease: Duration) -> Result<bool> {
        match &mut lock.state {
            LockState::Shm(g) => g.extend(lease),
            #[cfg(feature = "redis")]
            LockState::Redis(_) => Err(foreign_handle()),
        }
    }

    fn rate_limit(&self, client: &[u8], limit: u64, window: Duration) -> Result<Decision> {
        let window_ms = rate_args(limit, window)?;
        // One limiter name per window length, so that policies of different windows do not
        // count into each other's entries.
        RateLimiter::fixed_window(self, &format!("backend-{window_ms}ms"), limit, window)?
            .check(client)
    }
}
