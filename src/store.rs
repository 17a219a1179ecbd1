//! The public [`Store`] API: opening regions and the key-value operations, gluing together the
//! layout, the table, the counters and the statistics.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, LazyNow};
use crate::config::{Config, WhenFull};
use crate::counter::{self, Counter};
use crate::error::{Error, Incompatibility, Result};
use crate::hash;
use crate::layout::{header, init_state, shard, stat_slot, Geometry, Layout, MAGIC, STAT_SLOTS};
use crate::process;
use crate::raw::RawRegion;
use crate::region::{self, Mapping, Origin};
use crate::stats::{self, StatSlots, Stats, ThreadSlot};
use crate::sync::RobustMutex;
use crate::table::{self, Placement};
use crate::table::{Entry, Locked, Read, Shard, Stat};
use crate::verify::{Problem, ProblemKind, Totals, VerifyReport};

/// The shared state of every handle of one mapping in this process.
pub(crate) struct Inner {
    map: Mapping,
    layout: Layout,
    seed: (u64, u64),
    hash_key: hash::HashKey,
    lock_timeout: Duration,
    stat_slots: StatSlots,
}

impl Inner {
    #[inline]
    pub(crate) fn raw(&self) -> &RawRegion {
        self.map.raw()
    }
    #[inline]
    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }
    #[inline]
    pub(crate) fn hash_key(&self) -> &hash::HashKey {
        &self.hash_key
    }

    /// Reads and validates the header of a mapping (each field read once).
    fn from_mapping(map: Mapping) -> Result<Self> {
        let raw = map.raw();
        let l = Layout::from_header(
            raw.len() as u64,
            region::read_magic(raw),
            |off| raw.u32_at(off).load(Ordering::Relaxed),
            |off| raw.u64_at(off).load(Ordering::Relaxed),
        )?;
        if raw.u32_at(header::INIT_STATE).load(Ordering::Acquire) != init_state::READY {
            return Err(Error::corrupted("header: not marked ready"));
        }
        let seed = (
            raw.u64_at(header::SEED0).load(Ordering::Relaxed),
            raw.u64_at(header::SEED1).load(Ordering::Relaxed),
        );
        Ok(Inner {
            lock_timeout: Duration::from_millis(u64::from(l.geo.lock_timeout_ms)),
            layout: l,
            seed,
            hash_key: hash::HashKey::new(seed),
            map,
            stat_slots: StatSlots::default(),
        })
    }

    /// Writes a fresh header and initializes every mutex of a zero-filled mapping; marks it
    /// ready last.
    fn initialize(map: Mapping, layout: Layout) -> Result<Self> {
        let seed = hash::random_seed().map_err(|e| Error::io("getrandom", e))?;
        let raw = map.raw();
        let g = &layout.geo;
        let w32 = |off, v: u32| raw.u32_at(off).store(v, Ordering::Relaxed);
        let w64 = |off, v: u64| raw.u64_at(off).store(v, Ordering::Relaxed);
        w64(header::MAGIC, u64::from_ne_bytes(MAGIC));
        w32(header::VERSION, crate::layout::FORMAT_VERSION);
        w64(header::FINGERPRINT, crate::layout::FINGERPRINT);
        w64(header::TOTAL_LEN, layout.total_len as u64);
        w64(header::SEED0, seed.0);
        w64(header::SEED1, seed.1);
        w64(header::CAPACITY, g.capacity);
        w32(header::SHARDS, g.shards);
        w32(header::GROUPS_PER_SHARD, g.groups_per_shard);
        w32(header::MAX_KEY_LEN, g.max_key_len);
        w32(header::MAX_VALUE_LEN, g.max_value_len);
        w32(header::MAX_COUNTERS, g.max_counters);
        w32(header::POLICY, g.policy_code());
        w32(header::STAT_SLOTS, STAT_SLOTS);
        w32(header::LOCK_TIMEOUT_MS, g.lock_timeout_ms);
        w64(header::GENERATION, 1);
        w64(header::CREATED_MS, Clock::System.now_ms());
        w32(header::CREATOR_PID, process::my_pid());
        Self::init_mutexes(raw, &layout)?;
        raw.u32_at(header::INIT_STATE)
            .store(init_state::READY, Ordering::Release);
        Ok(Inner {
            lock_timeout: Duration::from_millis(u64::from(g.lock_timeout_ms)),
            layout,
            seed,
            hash_key: hash::HashKey::new(seed),
            map,
            stat_slots: StatSlots::default(),
        })
    }

    fn init_mutexes(raw: &RawRegion, l: &Layout) -> Result<()> {
        let init = |off| {
            // SAFETY: called only while creating the region or as its only user (we hold
            // LOCK_EX on it), so no thread of any process uses these mutexes.
            unsafe { RobustMutex::at(raw, off).init() }
                .map_err(|e| Error::io("pthread_mutex_init", e))
        };
        init(header::REGISTRY_MUTEX)?;
        for s in 0..l.geo.shards as usize {
            init(l.shard_off(s) + shard::MUTEX)?;
        }
        Ok(())
    }

    /// As the region's only user (after a reboot, or after every user died): re-initializes
    /// the mutexes (a mutex word may name a thread that no longer exists, which no kernel will
    /// mark dead), forgets per-process slot owners, and repairs every shard.
    fn recover_as_sole_user(&self) -> Result<()> {
        let raw = self.raw();
        Self::init_mutexes(raw, &self.layout)?;
        // Repair every shard first (a pending redo may name a dead thread's scratch slot),
        // counting in the shared overflow slot, then forget the dead threads' slots.
        let overflow = ThreadSlot {
            off: self.layout.stat_slot_off(0),
            index: 0,
            exclusive: false,
        };
        for s in 0..self.layout.geo.shards as usize {
            // Locking repairs a busy record; a shard that cannot be repaired reports
            // `Corrupted` on use and in `verify`, and must not stop the others opening.
            let _ = Shard::new(raw, &self.layout, s).lock(self.lock_timeout, false, overflow);
        }
        for i in 1..STAT_SLOTS as usize {
            raw.u32_at(self.layout.stat_slot_off(i) + stat_slot::OWNER)
                .store(0, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stat_slots.release(self.map.raw(), &self.layout);
    }
}

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

/// A handle to a shared-memory key-value store. `Clone` is cheap (one `Arc`), and clones,
/// threads and forked children all share the same region.
///
/// See the [crate documentation](crate) for the guarantees and limits.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    clock: Clock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("origin", &self.inner.map.origin)
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

/// Decimal i64 as Redis writes it (no `+`, no leading zeros, no `-0`).
fn parse_int(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 19 || (digits[0] == b'0' && b.len() > 1) {
        return None;
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if neg {
        Some(v)
    } else {
        v.checked_neg()
    }
}

fn format_int(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

impl Store {
    fn from_inner(inner: Inner) -> Self {
        process::my_pid(); // registers the fork handler before any fork
        Store {
            inner: Arc::new(inner),
            clock: Clock::System,
        }
    }

    /// Creates a store in anonymous shared memory. Create it before `fork`: children inherit
    /// the mapping. Nothing appears on the filesystem, and the memory is freed when the last
    /// process unmaps it.
    pub fn anonymous(config: &Config) -> Result<Self> {
        let layout = Layout::new(Geometry::from_config(config)?)?;
        let map = Mapping::anonymous(layout.total_len)?;
        let mut inner = Inner::initialize(map, layout)?;
        inner.lock_timeout = config.lock_timeout;
        Ok(Self::from_inner(inner))
    }

    fn create_at(path: &Path, origin: Origin, config: &Config) -> Result<Option<Self>> {
        let layout = Layout::new(Geometry::from_config(config)?)?;
        let Some(map) = region::create(path, layout.total_len, origin)? else {
            return Ok(None);
        };
        let mut inner = match Inner::initialize(map, layout) {
            Ok(i) => i,
            Err(e) => {
                let _ = region::unlink(path);
                return Err(e);
            }
        };
        inner.map.downgrade()?;
        inner.lock_timeout = config.lock_timeout;
        Ok(Some(Self::from_inner(inner)))
    }

    fn open_at(path: &Path, origin: Origin) -> Result<Self> {
        let opened = region::open(path, origin, |raw| {
            raw.u32_at(header::INIT_STATE).load(Ordering::Acquire) == init_state::READY
        })?;
        let inner = Inner::from_mapping(opened.mapping)?;
        if opened.sole_user {
            inner.recover_as_sole_user()?;
            inner.map.downgrade()?;
        }
        Ok(Self::from_inner(inner))
    }

    fn open_or_create_at(path: &Path, origin: Origin, config: &Config) -> Result<Self> {
        let want = Geometry::from_config(config)?;
        for _ in 0..16 {
            if let Some(s) = Self::create_at(path, origin.clone(), config)? {
                return Ok(s);
            }
            match Self::open_at(path, origin.clone()) {
                Ok(mut s) => {
                    s.check_geometry(&want)?;
                    Arc::get_mut(&mut s.inner)
                        .expect("fresh handle")
                        .lock_timeout = config.lock_timeout;
                    return Ok(s);
                }
                // Unlinked between our create and open attempts: try again.
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::NotInitialized {
            path: path.to_owned(),
            reason: "created and removed repeatedly by other processes",
        })
    }

    fn check_geometry(&self, want: &Geometry) -> Result<()> {
        let have = &self.inner.layout.geo;
        let field = if have.capacity != want.capacity {
            "capacity"
        } else if have.shards != want.shards {
            "shards"
        } else if have.max_key_len != want.max_key_len {
            "max_key_len"
        } else if have.max_value_len != want.max_value_len {
            "max_value_len"
        } else if have.max_counters != want.max_counters {
            "max_counters"
        } else if have.policy != want.policy {
            "when_full"
        } else {
            return Ok(());
        };
        Err(Error::Incompatible {
            reason: Incompatibility::ConfigMismatch { field },
        })
    }

    /// Creates a named POSIX shared-memory object (`O_CREAT|O_EXCL`, mode 0600). Fails with
    /// [`Error::AlreadyExists`] if the name is taken. The object outlives the processes until
    /// [`Store::unlink`] (or a reboot).
    pub fn create(name: &str, config: &Config) -> Result<Self> {
        let path = region::shm_path(name)?;
        Self::create_at(&path, Origin::Shm(name.to_owned()), config)?
            .ok_or(Error::AlreadyExists { path })
    }

    /// Opens an existing named store, waiting (at most 5 s) for its creator to finish
    /// initializing it.
    pub fn open(name: &str) -> Result<Self> {
        let path = region::shm_path(name)?;
        Self::open_at(&path, Origin::Shm(name.to_owned()))
    }

    /// Opens the named store, creating it if it does not exist. Safe when many processes race:
    /// exactly one initializes, the others wait for it and open. An existing store whose
    /// configuration differs from `config` is refused with
    /// [`Incompatibility::ConfigMismatch`].
    pub fn open_or_create(name: &str, config: &Config) -> Result<Self> {
        let path = region::shm_path(name)?;
        Self::open_or_create_at(&path, Origin::Shm(name.to_owned()), config)
    }

    /// Removes a named store. Processes that have it open keep using it; the memory is freed
    /// when the last one unmaps it.
    pub fn unlink(name: &str) -> Result<()> {
        let path = region::shm_path(name)?;
        region::unlink(&path).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::NotFound { path }
            }
            e => e,
        })
    }

    /// Creates a file-backed store (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600). Its contents,
    /// TTLs included, survive restarts of every process and of the machine.
    pub fn create_file(path: impl AsRef<Path>, config: &Config) -> Result<Self> {
        let path = path.as_ref();
        Self::create_at(path, Origin::File(path.to_owned()), config)?.ok_or(Error::AlreadyExists {
            path: path.to_owned(),
        })
    }

    /// Opens a file-backed store. If no other process has it open, this one re-initializes
    /// the locks and repairs any write interrupted by a crash.
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::open_at(path, Origin::File(path.to_owned()))
    }

    /// Opens the file-backed store, creating it if absent (race-safe, as `open_or_create`).
    pub fn open_or_create_file(path: impl AsRef<Path>, config: &Config) -> Result<Self> {
        let path = path.as_ref();
        Self::open_or_create_at(path, Origin::File(path.to_owned()), config)
    }

    /// This handle with another time source (e.g. [`ManualClock`](crate::ManualClock) in
    /// tests). Other handles keep theirs.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// What the region was made from.
    pub fn origin(&self) -> &Origin {
        &self.inner.map.origin
    }

    /// The region's configuration (as stored in its header).
    pub fn config(&self) -> Config {
        let g = &self.inner.layout.geo;
        Config::new()
            .capacity(g.capacity)
            .shards(g.shards)
            .max_key_len(g.max_key_len)
            .max_value_len(g.max_value_len)
            .max_counters(g.max_counters)
            .when_full(g.policy)
            .lock_timeout(self.inner.lock_timeout)
    }

    // ---- helpers ----

    #[inline]
    fn now(&self) -> LazyNow<'_> {
        LazyNow::new(&self.clock)
    }

    #[inline]
    fn check_key(&self, key: &[u8]) -> Result<()> {
        let max = self.inner.layout.geo.max_key_len as usize;
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
        let max = self.inner.layout.geo.max_value_len as usize;
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
        let g = &self.inner.layout.geo;
        table::place(
            hash::hash(&self.inner.hash_key, key),
            g.shards,
            g.groups_per_shard,
        )
    }

    #[inline]
    fn shard(&self, i: usize) -> Shard<'_> {
        Shard::new(self.inner.raw(), &self.inner.layout, i)
    }

    fn lock_shard(&self, p: &Placement) -> Result<Locked<'_>> {
        self.lock_index(p.shard, false)
    }

    /// Locks shard `s` on behalf of the calling thread (see `Shard::lock`).
    fn lock_index(&self, s: usize, force: bool) -> Result<Locked<'_>> {
        let ts = self
            .inner
            .stat_slots
            .current(self.inner.raw(), &self.inner.layout);
        self.shard(s).lock(self.inner.lock_timeout, force, ts)
    }

    #[inline]
    fn count_read(&self, hit: bool) {
        let field = if hit { stats::HITS } else { stats::MISSES };
        self.inner
            .stat_slots
            .bump(self.inner.raw(), &self.inner.layout, field);
    }

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
        let hit = match self.shard(p.shard).read(key, p, &|| now.get(), out)? {
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

    /// Whether `key` is present and not expired.
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        let mut v = Vec::new();
        self.get_into(key, &mut v)
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
                lk.overwrite(i, &e);
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
                lk.remove(i);
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
                lk.overwrite(i, &e);
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
                lk.remove(i);
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
                if n > self.inner.layout.geo.max_value_len as usize {
                    return Err(Error::corrupted("slot value length exceeds max_value_len"));
                }
                if n > 20 {
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
                lk.overwrite(i, &e);
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
        for s in 0..self.inner.layout.geo.shards as usize {
            let lk = self.lock_index(s, true)?;
            removed += lk.clear();
        }
        self.inner
            .raw()
            .u64_at(header::GENERATION)
            .fetch_add(1, Ordering::Relaxed);
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
        let l = &self.inner.layout;
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
        if prefix.len() > self.inner.layout.geo.max_key_len as usize {
            return Ok(0);
        }
        let mut removed = 0;
        for s in 0..self.inner.layout.geo.shards as usize {
            let lk = self.lock_index(s, false)?;
            removed += lk.delete_prefix(prefix, &self.now())?;
        }
        Ok(removed)
    }

    /// Removes every expired entry now (expiry is otherwise lazy: on access, and when an
    /// insert needs room). Returns how many were removed.
    pub fn flush_expired(&self) -> Result<u64> {
        let mut removed = 0;
        for s in 0..self.inner.layout.geo.shards as usize {
            let lk = self.lock_index(s, false)?;
            removed += lk.flush_expired(&self.now()) as u64;
        }
        Ok(removed)
    }

    // ---- sizes, counters, stats, verification ----

    /// Entries stored (including expired entries not yet reclaimed, like Redis `DBSIZE`).
    pub fn len(&self) -> u64 {
        // Saturating: the stored counts are region words another process may have scribbled.
        (0..self.inner.layout.geo.shards as usize)
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
        self.inner.layout.geo.capacity
    }

    /// Size of the mapped region in bytes.
    pub fn region_bytes(&self) -> u64 {
        self.inner.layout.total_len as u64
    }

    /// Finds or registers the named counter. Resolve once and keep the [`Counter`]: each of its
    /// operations is then a single atomic instruction.
    pub fn counter(&self, name: &str) -> Result<Counter> {
        counter::resolve(&self.inner, name, self.inner.lock_timeout)
    }

    /// Every registered counter with its current value.
    pub fn counters(&self) -> Result<Vec<(String, i64)>> {
        counter::list(self.inner.raw(), &self.inner.layout)
    }

    /// A snapshot of the statistics (summed over shards and processes; not atomic as a whole).
    pub fn stats(&self) -> Stats {
        let r = self.inner.raw();
        let l = &self.inner.layout;
        let mut st = Stats {
            capacity: l.geo.capacity,
            slots: l.slots_per_shard as u64 * u64::from(l.geo.shards),
            hits: stats::sum(r, l, stats::HITS),
            misses: stats::sum(r, l, stats::MISSES),
            region_bytes: l.total_len as u64,
            ..Stats::default()
        };
        for s in 0..l.geo.shards as usize {
            let sh = self.shard(s);
            st.entries = st.entries.saturating_add(sh.len());
            st.tombstones = st.tombstones.saturating_add(sh.tombstones());
        }
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
        let r = self.inner.raw();
        let l = &self.inner.layout;
        let mut rep = VerifyReport {
            shards: l.geo.shards,
            ..VerifyReport::default()
        };
        let reread = Layout::from_header(
            r.len() as u64,
            region::read_magic(r),
            |off| r.u32_at(off).load(Ordering::Relaxed),
            |off| r.u64_at(off).load(Ordering::Relaxed),
        );
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
        if (
            r.u64_at(header::SEED0).load(Ordering::Relaxed),
            r.u64_at(header::SEED1).load(Ordering::Relaxed),
        ) != self.inner.seed
        {
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
        self.inner
            .raw()
            .u64_at(header::GENERATION)
            .load(Ordering::Relaxed)
    }

    /// Whether entries may be evicted when full.
    pub fn evicts(&self) -> bool {
        self.inner.layout.geo.policy == WhenFull::Evict
    }

    /// Base address and length of the mapping, for tests that deliberately corrupt a region.
    ///
    /// # Safety
    /// Writing through the pointer can break every invariant the store relies on (the store
    /// then reports [`Error::Corrupted`] or `verify` problems, but never reads out of bounds).
    /// The pointer is valid while this handle (or a clone) lives.
    #[doc(hidden)]
    pub unsafe fn raw_region(&self) -> (*mut u8, usize) {
        (self.inner.raw().base(), self.inner.raw().len())
    }

    /// Named byte ranges of the region (header fields, mutexes, counter records, repair
    /// records, control bytes, slot fields), for tests and fuzzers that corrupt it on purpose.
    #[doc(hidden)]
    pub fn layout_map(&self) -> Vec<crate::inspect::RegionPart> {
        crate::inspect::layout_map(&self.inner.layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

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
        let (r, l) = (store.inner.raw(), &store.inner.layout);
        let live = std::process::id(); // alive, and no thread of ours has this id but main's
        let dead = 0x7fff_fff0u32; // no such process
        let owner = |i: usize| r.u32_at(l.stat_slot_off(i) + stat_slot::OWNER);
        for i in 1..STAT_SLOTS as usize {
            owner(i).store(if i == 7 { dead } else { live }, Ordering::Relaxed);
        }
        let rec_op = r.u32_at(l.shard_off(1) + shard::REC_OP);
        let rec_scratch = r.u32_at(l.shard_off(1) + shard::REC_SCRATCH);
        rec_op.store(crate::layout::rec::REDO_PUT, Ordering::Relaxed);
        rec_scratch.store(7, Ordering::Relaxed);
        let claim = || {
            let s = store.clone();
            std::thread::spawn(move || s.inner.stat_slots.current(s.inner.raw(), &s.inner.layout))
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
        rec_op.store(crate::layout::rec::IDLE, Ordering::Relaxed);
        let t = claim();
        assert_eq!(
            (t.index, t.exclusive),
            (7, true),
            "reclaimed once the redo is done"
        );
        assert_eq!(t.scratch(), 7);
    }

    #[test]
    fn ints_parse_like_redis() {
        for (s, v) in [
            ("0", Some(0)),
            ("-5", Some(-5)),
            ("9223372036854775807", Some(i64::MAX)),
        ] {
            assert_eq!(parse_int(s.as_bytes()), v, "{s}");
        }
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            "",
            "-",
            "+1",
            "01",
            "-0",
            " 1",
            "1 ",
            "1a",
            "9223372036854775808",
        ] {
            assert_eq!(parse_int(bad.as_bytes()), None, "{bad}");
        }
        let mut b = [0u8; 20];
        for v in [0, 1, -1, 42, i64::MAX, i64::MIN] {
            assert_eq!(format_int(v, &mut b), v.to_string().as_bytes());
        }
    }
}
