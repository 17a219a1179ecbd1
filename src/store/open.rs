//! Opening and creating stores: anonymous, named shm and file-backed regions, initializing a
//! fresh region (header, then mutexes, then "ready"), and the recovery a sole opener runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::Store;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Incompatibility, Result};
use crate::hash;
use crate::process;
use crate::region::header::{self, Header};
use crate::region::layout::{self, stat_slot, Geometry, Layout, STAT_SLOTS};
use crate::region::{open, Mapping, Origin, Region, SoleUser};
use crate::stats::ThreadSlot;
use crate::sync::RobustMutex;
use crate::table::Shard;

/// Writes a fresh header and initializes every mutex of a zero-filled mapping we just made;
/// marks it ready last.
fn initialize(map: Mapping, layout: Layout) -> Result<Region> {
    let seed = hash::random_seed().map_err(|e| Error::io("getrandom", e))?;
    let header = Header { layout, seed };
    {
        let sole = map
            .sole_user()
            .expect("a mapping we just created has no other user");
        header.write(sole.raw(), Clock::System.now_ms(), process::my_pid());
        init_mutexes(&sole, &layout)?;
        header::mark_ready(sole.raw());
    }
    Ok(Region::new(map, header))
}

/// Initializes the counter registry's mutex and every shard's.
fn init_mutexes(sole: &SoleUser<'_>, l: &Layout) -> Result<()> {
    let init = |off| RobustMutex::init(sole, off).map_err(|e| Error::io("pthread_mutex_init", e));
    init(layout::header::REGISTRY_MUTEX)?;
    for s in 0..l.geo.shards as usize {
        init(l.shard_off(s) + layout::shard::MUTEX)?;
    }
    Ok(())
}

/// As the region's only user (after a reboot, or after every user died): re-initializes the
/// mutexes (a mutex word may name a thread that no longer exists, which no kernel will mark
/// dead), forgets per-process slot owners, and repairs every shard.
fn recover_as_sole_user(sole: &SoleUser<'_>, l: &Layout, lock_timeout: Duration) -> Result<()> {
    let raw = sole.raw();
    init_mutexes(sole, l)?;
    // Repair every shard first (a pending redo may name a dead thread's scratch slot),
    // counting in the shared overflow slot, then forget the dead threads' slots.
    let overflow = ThreadSlot {
        off: l.stat_slot_off(0),
        index: 0,
        exclusive: false,
    };
    for s in 0..l.geo.shards as usize {
        // Locking repairs a busy record; a shard that cannot be repaired reports
        // `Corrupted` on use and in `verify`, and must not stop the others opening.
        let _ = Shard::new(raw, l, s).lock(lock_timeout, false, overflow);
    }
    for i in 1..STAT_SLOTS as usize {
        raw.u32_at(l.stat_slot_off(i) + stat_slot::OWNER)
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

impl Store {
    /// Creates a store in anonymous shared memory. Create it before `fork`: children inherit
    /// the mapping. Nothing appears on the filesystem, and the memory is freed when the last
    /// process unmaps it.
    pub fn anonymous(config: &Config) -> Result<Self> {
        let layout = Layout::new(Geometry::from_config(config)?)?;
        let map = Mapping::anonymous(layout.total_len)?;
        let mut region = initialize(map, layout)?;
        region.downgrade()?;
        Ok(Self::from_region(region, config.lock_timeout))
    }

    fn create_at(path: &Path, origin: Origin, config: &Config) -> Result<Option<Self>> {
        let layout = Layout::new(Geometry::from_config(config)?)?;
        let Some(map) = open::create(path, layout.total_len, origin)? else {
            return Ok(None);
        };
        let mut region = match initialize(map, layout) {
            Ok(r) => r,
            Err(e) => {
                let _ = open::unlink(path);
                return Err(e);
            }
        };
        region.downgrade()?;
        Ok(Some(Self::from_region(region, config.lock_timeout)))
    }

    fn open_at(path: &Path, origin: Origin) -> Result<Self> {
        let map = open::open(path, origin)?;
        let header = Header::read(map.raw())?;
        let mut region = Region::new(map, header);
        let lock_timeout = Duration::from_millis(u64::from(region.layout().geo.lock_timeout_ms));
        if let Some(sole) = region.sole_user() {
            recover_as_sole_user(&sole, region.layout(), lock_timeout)?;
            region.downgrade()?;
        }
        Ok(Self::from_region(region, lock_timeout))
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
        let have = self.region.layout().geo;
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
        } else if have.pages_per_shard != want.pages_per_shard {
            "memory"
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
        let path = open::shm_path(name)?;
        Self::create_at(&path, Origin::Shm(name.to_owned()), config)?
            .ok_or(Error::AlreadyExists { path })
    }

    /// Opens an existing named store, waiting (at most 5 s) for its creator to finish
    /// initializing it.
    pub fn open(name: &str) -> Result<Self> {
        let path = open::shm_path(name)?;
        Self::open_at(&path, Origin::Shm(name.to_owned()))
    }

    /// Opens the named store, creating it if it does not exist. Safe when many processes race:
    /// exactly one initializes, the others wait for it and open. An existing store whose
    /// configuration differs from `config` is refused with
    /// [`Incompatibility::ConfigMismatch`].
    pub fn open_or_create(name: &str, config: &Config) -> Result<Self> {
        let path = open::shm_path(name)?;
        Self::open_or_create_at(&path, Origin::Shm(name.to_owned()), config)
    }

    /// Removes a named store. Processes that have it open keep using it; the memory is freed
    /// when the last one unmaps it.
    pub fn unlink(name: &str) -> Result<()> {
        let path = open::shm_path(name)?;
        open::unlink(&path).map_err(|e| match e {
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
        self.region.origin()
    }

    /// The region's configuration (as stored in its header).
    pub fn config(&self) -> Config {
        let g = self.region.layout().geo;
        Config::new()
            .capacity(g.capacity)
            .shards(g.shards)
            .max_key_len(g.max_key_len)
            .max_value_len(g.max_value_len)
            .max_counters(g.max_counters)
            .when_full(g.policy)
            .lock_timeout(self.inner.lock_timeout)
            .memory(self.region.layout().total_len as u64)
    }
}
