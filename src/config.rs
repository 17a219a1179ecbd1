//! `Config`: the user-facing sizes of a region, and their validation.
//!
//! A `Config` is only used when a region is created; it is then written into the region's header,
//! and every process that opens the region reads it back from there (and re-validates it).

use std::time::Duration;

use crate::error::{Error, Result};

/// What a write does when the key's shard has no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Refuse with [`Error::Full`]. The default: a state store does not drop data silently.
    #[default]
    Refuse,
    /// Evict an entry (expired ones first, then one not recently read, CLOCK-style, among the
    /// slots the new key could occupy). For cache use.
    Evict,
}

/// Sizes and policies of a new region. Builder style:
///
/// ```
/// use shmstate::{Config, WhenFull};
/// let cfg = Config::new()
///     .capacity(100_000)
///     .max_key_len(64)
///     .max_value_len(512)
///     .when_full(WhenFull::Evict);
/// assert_eq!(cfg.settings().capacity, 100_000);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) capacity: Option<u64>,
    pub(crate) memory: Option<u64>,
    pub(crate) shards: Option<u32>,
    pub(crate) max_key_len: u32,
    pub(crate) max_value_len: u32,
    pub(crate) max_counters: u32,
    pub(crate) when_full: WhenFull,
    pub(crate) lock_timeout: Duration,
    pub(crate) line_sized_slots: bool,
}

/// The settings of a [`Config`], read with [`Config::settings`]. Read-only: it cannot be built
/// outside this crate (`#[non_exhaustive]`), so a new setting is not a breaking change; set
/// values with the [`Config`] builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Entries the store must hold ([`Config::capacity`]; derived from `memory` when not set).
    pub capacity: u64,
    /// The region's size in bytes, index and values together, or `None` to derive it from
    /// `capacity` ([`Config::memory`]).
    pub memory: Option<u64>,
    /// Shards asked for, or `None` for the default ([`Config::shards`];
    /// [`Config::effective_shards`] gives the number a store will have).
    pub shards: Option<u32>,
    /// Longest key in bytes ([`Config::max_key_len`]).
    pub max_key_len: u32,
    /// Longest value in bytes ([`Config::max_value_len`]).
    pub max_value_len: u32,
    /// Named counters the region can hold ([`Config::max_counters`]).
    pub max_counters: u32,
    /// What a write does when there is no room ([`Config::when_full`]).
    pub when_full: WhenFull,
    /// How long a write waits for a lock held by a live process ([`Config::lock_timeout`]).
    pub lock_timeout: Duration,
    /// Whether slots are rounded to whole cache lines ([`Config::line_sized_slots`]).
    pub line_sized_slots: bool,
}

/// Hard limits on configuration values (checked by [`Config::validate`]).
pub mod limits {
    /// Largest `capacity` (entries).
    pub const MAX_CAPACITY: u64 = 1 << 32;
    /// Largest number of shards.
    pub const MAX_SHARDS: u32 = 4096;
    /// Largest key length in bytes.
    pub const MAX_KEY_LEN: u32 = 64 * 1024;
    /// Largest value length in bytes (2 MiB - 16 KiB: what one extent block can list).
    pub const MAX_VALUE_LEN: u32 = crate::heap::class::MAX_VALUE as u32;
    /// The default `max_value_len` (1 MiB). A limit, not a reservation: values take the memory
    /// they need.
    pub const DEFAULT_MAX_VALUE_LEN: u32 = 1 << 20;
    /// The most entries one insert evicts to make room in the heap under
    /// [`WhenFull::Evict`](crate::WhenFull::Evict) before it gives up with `Error::Full`.
    pub const MAX_EVICTIONS_PER_INSERT: usize = 1024;
    /// The default `capacity` (entries) when neither `capacity` nor `memory` is set.
    pub const DEFAULT_CAPACITY: u64 = 65_536;
    /// Largest number of named counters.
    pub const MAX_COUNTERS: u32 = 1 << 16;
    /// Largest region size in bytes (1 TiB).
    pub const MAX_REGION_BYTES: u64 = 1 << 40;
    /// Longest lock timeout.
    pub const MAX_LOCK_TIMEOUT_MS: u64 = 3_600_000;
}

impl Default for Config {
    fn default() -> Self {
        Config {
            capacity: None,
            memory: None,
            shards: None,
            max_key_len: 64,
            max_value_len: limits::DEFAULT_MAX_VALUE_LEN,
            max_counters: 256,
            when_full: WhenFull::Refuse,
            lock_timeout: Duration::from_secs(10),
            line_sized_slots: false,
        }
    }
}

impl Config {
    /// Defaults: 65,536 entries and 64 MiB of value heap (about 73 MiB in all), 64-byte keys,
    /// values up to 1 MiB, 256 counters, refuse when full, shards a power of two at least four
    /// times the number of CPUs, 10 s lock timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries the store must hold (at least; the table is sized with headroom so that
    /// uneven hashing does not fill one shard early). Without it: `memory / 1024` when `memory`
    /// is set, else 65,536.
    pub fn capacity(mut self, entries: u64) -> Self {
        self.capacity = Some(entries);
        self
    }

    /// The region's size in bytes, index and values together (like `lua_shared_dict cache 64m`
    /// or `apc.shm_size`). The index (`capacity` slots) comes first; the rest is the value heap,
    /// shared out equally between the shards. Each shard must be able to hold one value of
    /// `max_value_len` bytes. Without it, the heap gets 1 KiB per entry of `capacity` (at least
    /// room for one `max_value_len` value per shard).
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = Some(bytes);
        self
    }

    /// Number of shards (each with its own lock). Default: a power of two at least four times
    /// the CPU count, at most one per 64 entries of capacity and (with `memory`) at most one
    /// per 2 x `max_value_len` bytes of memory.
    pub fn shards(mut self, shards: u32) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Longest key in bytes.
    pub fn max_key_len(mut self, len: u32) -> Self {
        self.max_key_len = len;
        self
    }

    /// Longest value in bytes: a limit, not a reservation (values take the memory they need).
    /// Default 1 MiB; at most [`limits::MAX_VALUE_LEN`] (2 MiB - 16 KiB).
    pub fn max_value_len(mut self, len: u32) -> Self {
        self.max_value_len = len;
        self
    }

    /// Rounds the key room up so that each slot (24-byte header, key room, 24-byte value field)
    /// fills whole 64-byte cache lines and starts on one. No two entries then share a cache
    /// line, so a write to one entry never takes the line holding its neighbour away from
    /// another process that is reading it. The extra room goes to keys: the store accepts keys
    /// up to the rounded length, which [`Store::config`](crate::Store::config) reports. Costs up
    /// to 56 bytes per slot; the default (off) keeps the exact length asked for. With 16-byte
    /// keys, slots are exactly one line either way (24 + 16 + 24 = 64). Ignored if the rounded
    /// length would pass [`limits::MAX_KEY_LEN`].
    pub fn line_sized_slots(mut self, on: bool) -> Self {
        self.line_sized_slots = on;
        self
    }

    /// Number of named counters the region can hold.
    pub fn max_counters(mut self, n: u32) -> Self {
        self.max_counters = n;
        self
    }

    /// What a write does when there is no room (default [`WhenFull::Refuse`]).
    pub fn when_full(mut self, policy: WhenFull) -> Self {
        self.when_full = policy;
        self
    }

    /// How long a write waits for a shard lock held by a *live* process before failing with
    /// [`Error::LockTimeout`]. (A dead holder is detected at once and its shard repaired.)
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// What this config says, as a read-only plain struct (`cfg.settings().capacity`). The
    /// setters above are named after the settings, so reading goes through this one method
    /// rather than `get_*` getters (the Rust API guidelines' C-GETTER).
    pub fn settings(&self) -> Settings {
        Settings {
            capacity: self.effective_capacity(),
            memory: self.memory,
            shards: self.shards,
            max_key_len: self.max_key_len,
            max_value_len: self.max_value_len,
            max_counters: self.max_counters,
            when_full: self.when_full,
            lock_timeout: self.lock_timeout,
            line_sized_slots: self.line_sized_slots,
        }
    }

    /// The capacity (entries) this config will produce: `capacity`, else `memory / 1024`,
    /// else 65,536.
    pub fn effective_capacity(&self) -> u64 {
        match (self.capacity, self.memory) {
            (Some(c), _) => c,
            (None, Some(m)) => (m / crate::region::layout::BYTES_PER_ENTRY).max(1),
            (None, None) => limits::DEFAULT_CAPACITY,
        }
    }

    /// The number of shards this config will produce.
    pub fn effective_shards(&self) -> u32 {
        match self.shards {
            Some(s) => s,
            None => default_shards(self.effective_capacity(), self.memory, self.max_value_len),
        }
    }

    /// Checks every value against [`limits`].
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason| Err(Error::InvalidConfig { field, reason });
        if self.effective_capacity() == 0 {
            return bad("capacity", "must be at least 1");
        }
        if self.memory.is_some_and(|m| m > limits::MAX_REGION_BYTES) {
            return bad("memory", "exceeds 1 TiB");
        }
        if self.effective_capacity() > limits::MAX_CAPACITY {
            return bad("capacity", "exceeds 2^32 entries");
        }
        let shards = self.effective_shards();
        if shards == 0 {
            return bad("shards", "must be at least 1");
        }
        if shards > limits::MAX_SHARDS {
            return bad("shards", "exceeds 4096");
        }
        if self.max_key_len == 0 {
            return bad("max_key_len", "must be at least 1");
        }
        if self.max_key_len > limits::MAX_KEY_LEN {
            return bad("max_key_len", "exceeds 64 KiB");
        }
        if self.max_value_len > limits::MAX_VALUE_LEN {
            return bad("max_value_len", "exceeds 2 MiB - 16 KiB");
        }
        if self.max_counters > limits::MAX_COUNTERS {
            return bad("max_counters", "exceeds 65536");
        }
        let ms = self.lock_timeout.as_millis();
        if ms == 0 {
            return bad("lock_timeout", "must be at least 1 ms");
        }
        if ms > u128::from(limits::MAX_LOCK_TIMEOUT_MS) {
            return bad("lock_timeout", "exceeds one hour");
        }
        Ok(())
    }
}

/// A power of two at least 4x the CPU count (so two processes rarely meet on one lock), at most
/// one shard per 64 entries of capacity, at most one per two `max_value_len` values of `memory`
/// (each shard's heap must hold such a value), at least 1.
fn default_shards(capacity: u64, memory: Option<u64>, max_value_len: u32) -> u32 {
    let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
    let want = (cpus.saturating_mul(4)).next_power_of_two().clamp(8, 256) as u64;
    let by_capacity = (capacity / 64).max(1);
    let by_memory = memory.map_or(u64::MAX, |m| {
        let one =
            u64::from(crate::region::layout::min_pages(max_value_len)) * crate::heap::PAGE as u64;
        (m / one.saturating_mul(2)).max(1)
    });
    let mut s = want;
    while (s > by_capacity || s > by_memory) && s > 1 {
        s /= 2;
    }
    s as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::new().validate().unwrap();
        assert!(Config::new().effective_shards().is_power_of_two());
    }

    #[test]
    fn small_capacity_gets_few_shards() {
        assert_eq!(Config::new().capacity(10).effective_shards(), 1);
        assert!(Config::new().capacity(1_000_000).effective_shards() >= 8);
    }

    #[test]
    fn rejects_out_of_range() {
        let cases = [
            Config::new().capacity(0),
            Config::new().capacity(limits::MAX_CAPACITY + 1),
            Config::new().shards(0),
            Config::new().shards(5000),
            Config::new().max_key_len(0),
            Config::new().max_key_len(limits::MAX_KEY_LEN + 1),
            Config::new().max_value_len(limits::MAX_VALUE_LEN + 1),
            Config::new().max_counters(limits::MAX_COUNTERS + 1),
            Config::new().lock_timeout(Duration::ZERO),
        ];
        for c in cases {
            assert!(
                matches!(c.validate(), Err(Error::InvalidConfig { .. })),
                "{c:?}"
            );
        }
    }
}
