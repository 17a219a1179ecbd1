//! Wall-clock milliseconds for TTLs, with a manual clock for tests.
//!
//! TTLs are stored as absolute wall-clock milliseconds since the Unix epoch (like Redis), so a
//! file-backed store keeps them across restarts and every process agrees on them. A wall clock
//! stepped backwards extends TTLs by the step; stepped forwards, shortens them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The time source of one [`Store`](crate::Store) handle.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// `SystemTime::now()`.
    #[default]
    System,
    /// A clock that only moves when told to (tests, simulations).
    Manual(ManualClock),
}

/// A settable clock shared by clones.
///
/// ```
/// use shmstate::ManualClock;
/// use std::time::Duration;
/// let c = ManualClock::new(1_000);
/// c.advance(Duration::from_millis(500));
/// assert_eq!(c.now_ms(), 1_500);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock reading `ms` milliseconds since the epoch.
    pub fn new(ms: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(ms)))
    }
    /// Current reading.
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    /// Sets the reading.
    pub fn set_ms(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(
            by.as_millis().min(u64::MAX as u128) as u64,
            Ordering::SeqCst,
        );
    }
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            Clock::Manual(m) => m.now_ms(),
        }
    }
}

/// Reads the clock at most once per operation, and only if asked: most operations touch no
/// entry with a TTL and never need the time (`clock_gettime` is a noticeable share of a write).
pub(crate) struct LazyNow<'c> {
    clock: &'c Clock,
    ms: std::cell::Cell<Option<u64>>,
}

impl<'c> LazyNow<'c> {
    pub(crate) fn new(clock: &'c Clock) -> Self {
        LazyNow {
            clock,
            ms: std::cell::Cell::new(None),
        }
    }
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        match self.ms.get() {
            Some(ms) => ms,
            None => {
                let ms = self.clock.now_ms();
                self.ms.set(Some(ms));
                ms
            }
        }
    }
}
