//! The region's byte layout. THE ONLY module that knows offsets.
//!
//! ```text
//! offset 0                                                      (every section 128-byte aligned)
//! +------------------------------------------------------------+
//! | Header (512 B)                                             |
//! |   0 magic "SHMSTATE"   8 version u32   12 init_state u32    |
//! |  16 fingerprint u64   24 total_len u64                      |
//! |  32 seed0 u64         40 seed1 u64     48 capacity u64      |
//! |  56 shards u32        60 groups_per_shard u32               |
//! |  64 max_key_len u32   68 max_value_len u32                  |
//! |  72 max_counters u32  76 policy u32    80 stat_slots u32    |
//! |  84 lock_timeout_ms u32                88 generation u64    |
//! |  96 created_ms u64   104 creator_pid u32                    |
//! | 128 counter-registry mutex (its own line)                   |
//! +------------------------------------------------------------+
//! | Counters: max_counters x 256 B                              |
//! |   [0,128) value AtomicI64 alone on its line                 |
//! |   128 state u32  132 name_len u32  136 hash u64             |
//! |   144 name [u8; 112]                                        |
//! +------------------------------------------------------------+
//! | Per-thread read statistics: STAT_SLOTS (256) x 128 B        |
//! |   0 owner tid u32   8 hits  16 misses  24 sets  32 deletes  |
//! |   40 expirations 48 evictions 56 full 64 recoveries         |
//! |   72 contended (u64 each, written only by the owner)        |
//! +------------------------------------------------------------+
//! | Per-thread scratch slots: STAT_SLOTS x slot_size (redo      |
//! |   copies of overwrites, private to the writing thread)      |
//! +------------------------------------------------------------+
//! | Shard 0 .. shards-1, each shard_size bytes:                 |
//! |   [0,40)    robust pthread mutex                            |
//! |   [40,60)   repair record: op, target, tag, touch (slot     |
//! |             being written + 1, or 0), scratch (which copy)  |
//! |   [64,88)   len, tombstones, sweep cursor (u64)             |
//! |   [256, ..) control bytes, one per slot (groups x 8),       |
//! |             padded to 128                                   |
//! |   scratch slot (redo copy of an overwrite in progress)      |
//! |   slots: groups x 8 x slot_size                             |
//! +------------------------------------------------------------+
//!
//! Slot (slot_size = 24 + round8(max_key_len) + round8(max_value_len)):
//!   0 seq u32 (odd = being written)   4 key_len u32   8 val_len u32
//!  12 flags u32 (bit 0: CLOCK reference)  16 expires_ms u64 (0 = never)
//!  24 key bytes, zero-padded to 8     .. value bytes, zero-padded to 8
//! ```
//!
//! All sizes are computed here with checked arithmetic from a [`Geometry`] that has been
//! validated; every other module asks this one for offsets. Nothing in the layout is `usize`:
//! fields are fixed-width, native-endian (little-endian on every supported target; the
//! fingerprint includes endianness so a mismatch is refused, not misread).

use crate::config::{limits, Config, WhenFull};
use crate::error::{Error, Result};
use crate::heap::{self, PoolGeom, Shape, PAGE};

/// "SHMSTATE".
pub const MAGIC: [u8; 8] = *b"SHMSTATE";
/// Bumped on any change of the layout or of the meaning of a field.
pub const FORMAT_VERSION: u32 = 4;

/// Explicit alignment of every section and hot word, independent of the architecture
/// (two 64-byte lines, because of the adjacent-line prefetcher).
pub const LINE: usize = 128;

/// A cache line: the unit [`Config::line_sized_slots`] rounds slots to.
pub const CACHE_LINE: usize = 64;

/// The field after one at `off` of `size` bytes, at the next multiple of `align`: every offset
/// below is derived from the previous field this way (as redb's header does), so a field that
/// grows moves the ones after it instead of overlapping them.
pub(crate) const fn after(off: usize, size: usize, align: usize) -> usize {
    (off + size).next_multiple_of(align)
}

/// Whether `fields` (offset, size) are in address order, each aligned to its size (8 for larger
/// fields), no two overlapping, all ending by `end`. Checked at compile time for every record.
const fn disjoint(fields: &[(usize, usize)], end: usize) -> bool {
    let mut i = 0;
    while i < fields.len() {
        let (off, size) = fields[i];
        let align = if size >= 8 { 8 } else { size };
        let limit = if i + 1 < fields.len() {
            fields[i + 1].0
        } else {
            end
        };
        if size == 0 || !off.is_multiple_of(align) || off + size > limit {
            return false;
        }
        i += 1;
    }
    true
}

pub const HEADER_SIZE: usize = 512;
/// The region header: what the region is (magic, version, fingerprint, sizes, seed, config),
/// written once by the creator (`header.rs`), then only `generation` changes.
pub mod header {
    use super::{after, LINE};

    pub const MAGIC: usize = 0;
    pub const VERSION: usize = after(MAGIC, 8, 4);
    pub const INIT_STATE: usize = after(VERSION, 4, 4);
    pub const FINGERPRINT: usize = after(INIT_STATE, 4, 8);
    pub const TOTAL_LEN: usize = after(FINGERPRINT, 8, 8);
    pub const SEED0: usize = after(TOTAL_LEN, 8, 8);
    pub const SEED1: usize = after(SEED0, 8, 8);
    pub const CAPACITY: usize = after(SEED1, 8, 8);
    pub const SHARDS: usize = after(CAPACITY, 8, 4);
    pub const GROUPS_PER_SHARD: usize = after(SHARDS, 4, 4);
    pub const MAX_KEY_LEN: usize = after(GROUPS_PER_SHARD, 4, 4);
    pub const MAX_VALUE_LEN: usize = after(MAX_KEY_LEN, 4, 4);
    pub const MAX_COUNTERS: usize = after(MAX_VALUE_LEN, 4, 4);
    pub const POLICY: usize = after(MAX_COUNTERS, 4, 4);
    pub const STAT_SLOTS: usize = after(POLICY, 4, 4);
    pub const LOCK_TIMEOUT_MS: usize = after(STAT_SLOTS, 4, 4);
    pub const GENERATION: usize = after(LOCK_TIMEOUT_MS, 4, 8);
    pub const CREATED_MS: usize = after(GENERATION, 8, 8);
    pub const CREATOR_PID: usize = after(CREATED_MS, 8, 4);
    /// Heap pages per shard (format 4).
    pub const PAGES_PER_SHARD: usize = after(CREATOR_PID, 4, 4);
    /// A hash of the seed and every configuration field ([`config_check`](super::config_check)):
    /// a scribbled field whose value the layout does not depend on is refused all the same.
    pub const CONFIG_CHECK: usize = after(PAGES_PER_SHARD, 4, 8);
    /// The counter registry's robust mutex, on a line of its own.
    pub const REGISTRY_MUTEX: usize = after(CONFIG_CHECK, 8, LINE);

    /// Every field: name (as `Store::layout_map` reports it), offset, size.
    pub const FIELDS: [(&str, usize, usize); 21] = [
        ("magic", MAGIC, 8),
        ("version", VERSION, 4),
        ("init_state", INIT_STATE, 4),
        ("fingerprint", FINGERPRINT, 8),
        ("total_len", TOTAL_LEN, 8),
        ("seed0", SEED0, 8),
        ("seed1", SEED1, 8),
        ("capacity", CAPACITY, 8),
        ("shards", SHARDS, 4),
        ("groups_per_shard", GROUPS_PER_SHARD, 4),
        ("max_key_len", MAX_KEY_LEN, 4),
        ("max_value_len", MAX_VALUE_LEN, 4),
        ("max_counters", MAX_COUNTERS, 4),
        ("policy", POLICY, 4),
        ("stat_slots", STAT_SLOTS, 4),
        ("lock_timeout_ms", LOCK_TIMEOUT_MS, 4),
        ("generation", GENERATION, 8),
        ("created_ms", CREATED_MS, 8),
        ("creator_pid", CREATOR_PID, 4),
        ("pages_per_shard", PAGES_PER_SHARD, 4),
        ("config_check", CONFIG_CHECK, 8),
    ];
}

/// `init_state` values. Written last by the creator (Release), read first by openers (Acquire).
pub mod init_state {
    pub const READY: u32 = 0x5245_4459; // "READ"-ish, unlikely in random bytes
}

pub const COUNTER_SIZE: usize = 256;
/// A counter record: the value alone on its line, then the name.
pub mod counter {
    use super::{after, LINE};

    pub const VALUE: usize = 0;
    pub const STATE: usize = after(VALUE, 8, LINE);
    pub const NAME_LEN: usize = after(STATE, 4, 4);
    pub const HASH: usize = after(NAME_LEN, 4, 8);
    pub const NAME: usize = after(HASH, 8, 8);
    pub const NAME_CAP: usize = super::COUNTER_SIZE - NAME;
    /// Counter entry states.
    pub const EMPTY: u32 = 0;
    pub const LIVE: u32 = 1;
}

/// Number of per-thread statistics slots (slot 0 is shared by threads that find none free).
pub const STAT_SLOTS: u32 = 256;
pub const STAT_SLOT_SIZE: usize = 128;
/// A per-thread statistics slot: its owner, then one `u64` per statistic, written only by the
/// owner (no line shared with another thread).
pub mod stat_slot {
    use super::after;

    pub const OWNER: usize = 0;
    pub const HITS: usize = after(OWNER, 4, 8);
    pub const MISSES: usize = after(HITS, 8, 8);
    pub const SETS: usize = after(MISSES, 8, 8);
    pub const DELETES: usize = after(SETS, 8, 8);
    pub const EXPIRATIONS: usize = after(DELETES, 8, 8);
    pub const EVICTIONS: usize = after(EXPIRATIONS, 8, 8);
    pub const FULL: usize = after(EVICTIONS, 8, 8);
    pub const RECOVERIES: usize = after(FULL, 8, 8);
    pub const CONTENDED: usize = after(RECOVERIES, 8, 8);
}

pub const SHARD_HEADER_SIZE: usize = 256;
/// Room reserved for a `pthread_mutex_t` (40 bytes on glibc and musl, 64-bit; checked below).
pub const MUTEX_ROOM: usize = 40;
/// A shard's header.
pub mod shard {
    use super::{after, CACHE_LINE, MUTEX_ROOM};

    // The first 64-byte cache line: the mutex and the repair record, the only shard-header
    // bytes an update writes (one line to move between cores per write).
    pub const MUTEX: usize = 0;
    /// The repair (redo) record: `redo.rs`.
    pub const REC_OP: usize = after(MUTEX, MUTEX_ROOM, 4);
    pub const REC_TARGET: usize = after(REC_OP, 4, 4);
    pub const REC_TAG: usize = after(REC_TARGET, 4, 4);
    pub const REC_TOUCH: usize = after(REC_TAG, 4, 4);
    /// Which scratch slot holds the redo copy: 0 = the shard's own, i = thread scratch i.
    pub const REC_SCRATCH: usize = after(REC_TOUCH, 4, 4);
    // The second line: counts written by inserts and deletes (under the lock).
    pub const LEN: usize = after(REC_SCRATCH, 4, CACHE_LINE);
    pub const TOMBSTONES: usize = after(LEN, 8, 8);
    pub const SWEEP_CURSOR: usize = after(TOMBSTONES, 8, 8);
    pub const CTRL: usize = super::SHARD_HEADER_SIZE;
}

/// Size of a slot's fixed fields (the key bytes start here).
pub const SLOT_HEADER: usize = slot::KEY;

/// Offset of the value bytes within a slot whose key room is `key_cap` bytes.
#[inline(always)]
pub const fn value_offset(key_cap: usize) -> usize {
    slot::KEY + key_cap
}
/// A slot: fixed fields, then the key room, then the value room.
pub mod slot {
    use super::after;

    pub const SEQ: usize = 0;
    pub const KEY_LEN: usize = after(SEQ, 4, 4);
    pub const VAL_LEN: usize = after(KEY_LEN, 4, 4);
    pub const FLAGS: usize = after(VAL_LEN, 4, 4);
    pub const EXPIRES: usize = after(FLAGS, 4, 8);
    pub const KEY: usize = after(EXPIRES, 8, 8);
    pub const FLAG_REFERENCED: u32 = 1;
}

/// Control bytes per group (one `u64` load).
pub const GROUP_WIDTH: usize = 8;
/// A lookup visits at most this many groups; a key that cannot be placed within them is `Full`.
pub const MAX_PROBE_GROUPS: u32 = 64;
/// Maximum load: 7/8 of a shard's slots.
pub const MAX_LOAD_NUM: u64 = 7;
pub const MAX_LOAD_DEN: u64 = 8;

/// Identifies the hash function (`hash.rs`, keyed folded multiply). Part of the fingerprint.
const HASH_ALGO: u64 = 0x666f_6c64_0000_0001;

const fn target_env_id() -> u64 {
    if cfg!(target_env = "gnu") {
        1
    } else if cfg!(target_env = "musl") {
        2
    } else {
        3
    }
}

const fn fnv1a(words: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < words.len() {
        let bytes = words[i].to_le_bytes();
        let mut j = 0;
        while j < 8 {
            h ^= bytes[j] as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
            j += 1;
        }
        i += 1;
    }
    h
}

/// Hash of everything a compatible build must agree on besides the format version: sizes of
/// the sections, of `pthread_mutex_t` (differs between glibc and musl), the hash function,
/// the probe constants, endianness and pointer width.
pub const FINGERPRINT: u64 = fnv1a(&[
    FORMAT_VERSION as u64,
    HEADER_SIZE as u64,
    COUNTER_SIZE as u64,
    STAT_SLOT_SIZE as u64,
    STAT_SLOTS as u64,
    SHARD_HEADER_SIZE as u64,
    SLOT_HEADER as u64,
    GROUP_WIDTH as u64,
    MAX_PROBE_GROUPS as u64,
    MAX_LOAD_NUM << 8 | MAX_LOAD_DEN,
    std::mem::size_of::<libc::pthread_mutex_t>() as u64,
    std::mem::align_of::<libc::pthread_mutex_t>() as u64,
    HASH_ALGO,
    heap::PAGE as u64,
    heap::INLINE_MAX as u64,
    heap::class::BLOCK_HEADER as u64,
    heap::class::CLASSES_DIGEST,
    heap::pool::hdr::SIZE as u64,
    heap::pool::desc::SIZE as u64,
    cfg!(target_endian = "little") as u64,
    usize::BITS as u64,
    target_env_id(),
]);

// No two fields of a record overlap, each is aligned, and each record fits its size.
const _: () = {
    let mut fields = [(0, 0); header::FIELDS.len() + 1];
    let mut i = 0;
    while i < header::FIELDS.len() {
        fields[i] = (header::FIELDS[i].1, header::FIELDS[i].2);
        i += 1;
    }
    fields[i] = (header::REGISTRY_MUTEX, LINE);
    assert!(disjoint(&fields, HEADER_SIZE));
};
const _: () = assert!(disjoint(
    &[
        (counter::VALUE, 8),
        (counter::STATE, 4),
        (counter::NAME_LEN, 4),
        (counter::HASH, 8),
        (counter::NAME, counter::NAME_CAP),
    ],
    COUNTER_SIZE
));
const _: () = assert!(disjoint(
    &[
        (stat_slot::OWNER, 4),
        (stat_slot::HITS, 8),
        (stat_slot::MISSES, 8),
        (stat_slot::SETS, 8),
        (stat_slot::DELETES, 8),
        (stat_slot::EXPIRATIONS, 8),
        (stat_slot::EVICTIONS, 8),
        (stat_slot::FULL, 8),
        (stat_slot::RECOVERIES, 8),
        (stat_slot::CONTENDED, 8),
    ],
    STAT_SLOT_SIZE
));
const _: () = assert!(disjoint(
    &[
        (shard::MUTEX, MUTEX_ROOM),
        (shard::REC_OP, 4),
        (shard::REC_TARGET, 4),
        (shard::REC_TAG, 4),
        (shard::REC_TOUCH, 4),
        (shard::REC_SCRATCH, 4),
        (shard::LEN, 8),
        (shard::TOMBSTONES, 8),
        (shard::SWEEP_CURSOR, 8),
    ],
    shard::CTRL
));
const _: () = assert!(disjoint(
    &[
        (slot::SEQ, 4),
        (slot::KEY_LEN, 4),
        (slot::VAL_LEN, 4),
        (slot::FLAGS, 4),
        (slot::EXPIRES, 8),
    ],
    slot::KEY
));
// The mutex fits its room; the mutex and the repair record share the shard's first line; the
// value of a counter is alone on its line; the name room is what the docs promise.
const _: () = assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= MUTEX_ROOM);
const _: () = assert!(std::mem::align_of::<libc::pthread_mutex_t>() <= 8);
const _: () = assert!(shard::REC_SCRATCH + 4 <= CACHE_LINE);
const _: () = assert!(counter::STATE == LINE);
const _: () = assert!(counter::NAME_CAP == 112);
const _: () = assert!(SHARD_HEADER_SIZE.is_multiple_of(LINE) && HEADER_SIZE.is_multiple_of(LINE));
const _: () = assert!(slot::EXPIRES.is_multiple_of(8) && SLOT_HEADER.is_multiple_of(8));
const _: () = assert!(
    cfg!(target_endian = "little"),
    "shmstate supports little-endian targets"
);

/// The header's `config_check`: a hash of the hash seed and every configuration field.
pub fn config_check(geo: &Geometry, seed: (u64, u64)) -> u64 {
    fnv1a(&[
        seed.0,
        seed.1,
        geo.capacity,
        u64::from(geo.shards),
        u64::from(geo.groups_per_shard),
        u64::from(geo.max_key_len),
        u64::from(geo.max_value_len),
        u64::from(geo.max_counters),
        u64::from(geo.policy_code()),
        u64::from(geo.lock_timeout_ms),
        u64::from(geo.pages_per_shard),
        u64::from(STAT_SLOTS),
    ])
}

/// The region's shape: what is stored in the header, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub capacity: u64,
    pub shards: u32,
    pub groups_per_shard: u32,
    pub max_key_len: u32,
    pub max_value_len: u32,
    pub max_counters: u32,
    pub policy: WhenFull,
    pub lock_timeout_ms: u32,
    /// Heap pages of each shard.
    pub pages_per_shard: u32,
}

/// The key length whose slot fills whole cache lines: `max_key_len` rounded up so that
/// `SLOT_HEADER + key room + INLINE_MAX` is a multiple of [`CACHE_LINE`]; `max_key_len` itself if
/// that would pass the limit.
fn line_sized_key_len(max_key_len: u32) -> u32 {
    let fixed = (SLOT_HEADER + heap::INLINE_MAX) as u64;
    let key_cap = u64::from(max_key_len).next_multiple_of(8);
    let slot = (fixed + key_cap).next_multiple_of(CACHE_LINE as u64);
    match u32::try_from(slot - fixed) {
        Ok(v) if v <= limits::MAX_KEY_LEN => v,
        _ => max_key_len,
    }
}

/// Heap bytes assumed per entry where `capacity` and `memory` are derived from each other.
pub const BYTES_PER_ENTRY: u64 = 1024;

/// Pages a shard needs to hold one value of `max_value_len` bytes: its whole pages, plus one
/// page for each of the (at most three) size classes of its blocks.
pub fn min_pages(max_value_len: u32) -> u32 {
    Shape::of(max_value_len as usize).map_or(u32::MAX, |s| {
        let whole = match s {
            Shape::Extent { pages, .. } => pages,
            _ => 0,
        };
        whole as u32 + 3
    })
}

impl Geometry {
    /// The geometry a config asks for: shard sizes with headroom for uneven hashing
    /// (mean + 4 standard deviations + 8) at a maximum load of 7/8, and the heap pages that fit
    /// `memory` (or, without it, [`BYTES_PER_ENTRY`] per entry of `capacity`).
    pub fn from_config(cfg: &Config) -> Result<Self> {
        cfg.validate()?;
        let shards = cfg.effective_shards();
        let capacity = cfg.effective_capacity();
        let per_shard = capacity.div_ceil(u64::from(shards));
        let headroom = 4 * ((per_shard as f64).sqrt().ceil() as u64) + 8;
        let want = per_shard + headroom;
        let slots = (want * MAX_LOAD_DEN).div_ceil(MAX_LOAD_NUM);
        let groups = slots.div_ceil(GROUP_WIDTH as u64);
        let groups_per_shard = u32::try_from(groups).map_err(|_| Error::InvalidConfig {
            field: "capacity",
            reason: "too many entries per shard (add shards)",
        })?;
        let min = min_pages(cfg.max_value_len);
        let mut geo = Geometry {
            capacity,
            shards,
            groups_per_shard,
            max_key_len: if cfg.line_sized_slots {
                line_sized_key_len(cfg.max_key_len)
            } else {
                cfg.max_key_len
            },
            max_value_len: cfg.max_value_len,
            max_counters: cfg.max_counters,
            policy: cfg.when_full,
            lock_timeout_ms: cfg.lock_timeout.as_millis() as u32,
            pages_per_shard: 0,
        };
        geo.pages_per_shard = match cfg.memory {
            None => {
                let pages = (per_shard * BYTES_PER_ENTRY)
                    .div_ceil(PAGE as u64)
                    .max(u64::from(min));
                u32::try_from(pages)
                    .ok()
                    .filter(|&p| p <= heap::class::MAX_PAGES)
                    .ok_or(Error::InvalidConfig {
                        field: "capacity",
                        reason: "too many entries per shard (add shards)",
                    })?
            }
            Some(memory) => {
                let fits = |pages: u32| {
                    Layout::new(Geometry {
                        pages_per_shard: pages,
                        ..geo
                    })
                    .is_ok_and(|l| l.total_len as u64 <= memory)
                };
                if !fits(0) {
                    return Err(Error::InvalidConfig {
                        field: "memory",
                        reason: "smaller than the index `capacity` needs (lower capacity or raise memory)",
                    });
                }
                // The most pages that fit (fits() is monotonic in the page count).
                let (mut lo, mut hi) = (0u32, heap::class::MAX_PAGES);
                while lo < hi {
                    let mid = lo + (hi - lo).div_ceil(2);
                    if fits(mid) {
                        lo = mid;
                    } else {
                        hi = mid - 1;
                    }
                }
                if lo < min {
                    return Err(Error::InvalidConfig {
                        field: "memory",
                        reason: "each shard must hold one value of max_value_len (raise memory, \
                                 lower max_value_len, or use fewer shards)",
                    });
                }
                lo
            }
        };
        Layout::new(geo)?;
        Ok(geo)
    }

    pub fn policy_code(&self) -> u32 {
        match self.policy {
            WhenFull::Refuse => 0,
            WhenFull::Evict => 1,
        }
    }

    pub fn policy_from_code(code: u32) -> Option<WhenFull> {
        match code {
            0 => Some(WhenFull::Refuse),
            1 => Some(WhenFull::Evict),
            _ => None,
        }
    }
}

/// Every offset and size of a region, derived from a validated [`Geometry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub geo: Geometry,
    pub key_cap: usize,
    pub val_cap: usize,
    pub slot_size: usize,
    pub slots_per_shard: usize,
    pub max_entries_per_shard: u64,
    pub counters_off: usize,
    pub stats_off: usize,
    /// Per-thread scratch slots (index 1.. matches the thread's statistics slot; 0 unused).
    pub thread_scratch_off: usize,
    pub shards_off: usize,
    pub ctrl_size: usize,
    pub scratch_off_in_shard: usize,
    pub slots_off_in_shard: usize,
    /// The shard's heap pool (offsets from the start of the shard).
    pub pool: PoolGeom,
    pub shard_size: usize,
    pub total_len: usize,
}

fn round_up(x: usize, to: usize) -> Option<usize> {
    x.checked_add(to - 1).map(|v| v / to * to)
}

impl Layout {
    /// Computes the layout, refusing geometry outside the limits or whose size overflows.
    pub fn new(geo: Geometry) -> Result<Self> {
        let cfg_err = |field, reason| Error::InvalidConfig { field, reason };
        if geo.shards == 0 || geo.shards > limits::MAX_SHARDS {
            return Err(cfg_err("shards", "out of range"));
        }
        if geo.groups_per_shard == 0 {
            return Err(cfg_err("capacity", "out of range"));
        }
        if geo.max_key_len == 0 || geo.max_key_len > limits::MAX_KEY_LEN {
            return Err(cfg_err("max_key_len", "out of range"));
        }
        if geo.max_value_len > limits::MAX_VALUE_LEN {
            return Err(cfg_err("max_value_len", "out of range"));
        }
        if geo.pages_per_shard > heap::class::MAX_PAGES {
            return Err(cfg_err("memory", "too many pages per shard (add shards)"));
        }
        if geo.max_counters > limits::MAX_COUNTERS {
            return Err(cfg_err("max_counters", "out of range"));
        }
        if geo.capacity == 0 || geo.capacity > limits::MAX_CAPACITY {
            return Err(cfg_err("capacity", "out of range"));
        }
        if geo.lock_timeout_ms == 0 || u64::from(geo.lock_timeout_ms) > limits::MAX_LOCK_TIMEOUT_MS
        {
            return Err(cfg_err("lock_timeout", "out of range"));
        }
        let too_big = || cfg_err("capacity", "region would exceed 1 TiB");
        let key_cap = round_up(geo.max_key_len as usize, 8).ok_or_else(too_big)?;
        // Values longer than the slot's value field live in the heap.
        let val_cap = heap::INLINE_MAX;
        let slot_size = SLOT_HEADER
            .checked_add(key_cap)
            .and_then(|v| v.checked_add(val_cap))
            .ok_or_else(too_big)?;
        let slots_per_shard = (geo.groups_per_shard as usize)
            .checked_mul(GROUP_WIDTH)
            .ok_or_else(too_big)?;
        if slots_per_shard >= u32::MAX as usize {
            return Err(too_big());
        }
        let max_entries_per_shard = slots_per_shard as u64 * MAX_LOAD_NUM / MAX_LOAD_DEN;

        let counters_off = HEADER_SIZE;
        let stats_off = (geo.max_counters as usize)
            .checked_mul(COUNTER_SIZE)
            .and_then(|v| v.checked_add(counters_off))
            .ok_or_else(too_big)?;
        let thread_scratch_off = (STAT_SLOTS as usize)
            .checked_mul(STAT_SLOT_SIZE)
            .and_then(|v| v.checked_add(stats_off))
            .ok_or_else(too_big)?;
        // Shards start on a page, so heap pages are page-aligned in the region.
        let shards_off = (STAT_SLOTS as usize)
            .checked_mul(slot_size)
            .and_then(|v| v.checked_add(thread_scratch_off))
            .and_then(|v| round_up(v, PAGE))
            .ok_or_else(too_big)?;
        let ctrl_size = round_up(slots_per_shard, LINE).ok_or_else(too_big)?;
        let scratch_off_in_shard = SHARD_HEADER_SIZE
            .checked_add(ctrl_size)
            .ok_or_else(too_big)?;
        // Slots start on a cache line, so slots of whole lines never share one.
        let slots_off_in_shard = scratch_off_in_shard
            .checked_add(slot_size)
            .and_then(|v| round_up(v, LINE))
            .ok_or_else(too_big)?;
        let slots_end = slots_per_shard
            .checked_mul(slot_size)
            .and_then(|v| v.checked_add(slots_off_in_shard))
            .and_then(|v| round_up(v, LINE))
            .ok_or_else(too_big)?;
        let pool = PoolGeom::new(slots_end, geo.pages_per_shard).ok_or_else(too_big)?;
        let shard_size = slots_end
            .checked_add(pool.size)
            .and_then(|v| round_up(v, PAGE))
            .ok_or_else(too_big)?;
        let total_len = shard_size
            .checked_mul(geo.shards as usize)
            .and_then(|v| v.checked_add(shards_off))
            .ok_or_else(too_big)?;
        if total_len as u64 > limits::MAX_REGION_BYTES {
            return Err(too_big());
        }
        Ok(Layout {
            geo,
            key_cap,
            val_cap,
            slot_size,
            slots_per_shard,
            max_entries_per_shard,
            counters_off,
            stats_off,
            thread_scratch_off,
            shards_off,
            ctrl_size,
            scratch_off_in_shard,
            slots_off_in_shard,
            pool,
            shard_size,
            total_len,
        })
    }

    // ---- offsets (all in-bounds for in-range indices, by construction) ----

    #[inline]
    pub fn counter_off(&self, i: usize) -> usize {
        debug_assert!(i < self.geo.max_counters as usize);
        self.counters_off + i * COUNTER_SIZE
    }

    #[inline]
    pub fn stat_slot_off(&self, i: usize) -> usize {
        debug_assert!(i < STAT_SLOTS as usize);
        self.stats_off + i * STAT_SLOT_SIZE
    }

    #[inline]
    pub fn shard_off(&self, s: usize) -> usize {
        debug_assert!(s < self.geo.shards as usize);
        self.shards_off + s * self.shard_size
    }

    /// Offset of control group `g` (8 control bytes, one `u64`) of the shard at `shard_off`.
    #[inline]
    pub fn group_off(&self, shard_off: usize, g: usize) -> usize {
        debug_assert!(g < self.geo.groups_per_shard as usize);
        shard_off + shard::CTRL + g * GROUP_WIDTH
    }

    /// Offset of thread scratch slot `i` (1 ≤ i < STAT_SLOTS).
    #[inline]
    pub fn thread_scratch_slot_off(&self, i: usize) -> usize {
        debug_assert!(i > 0 && i < STAT_SLOTS as usize);
        self.thread_scratch_off + i * self.slot_size
    }

    #[inline]
    pub fn scratch_off(&self, shard_off: usize) -> usize {
        shard_off + self.scratch_off_in_shard
    }

    #[inline]
    pub fn slot_off(&self, shard_off: usize, i: usize) -> usize {
        debug_assert!(i < self.slots_per_shard);
        shard_off + self.slots_off_in_shard + i * self.slot_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(cfg: Config) -> Layout {
        Layout::new(Geometry::from_config(&cfg).unwrap()).unwrap()
    }

    /// The offsets of format version 4, as numbers: a change that moves a byte fails here and
    /// must bump `FORMAT_VERSION`.
    #[test]
    fn format_4_offsets_are_pinned() {
        assert_eq!(FORMAT_VERSION, 4);
        let h: Vec<usize> = header::FIELDS.iter().map(|f| f.1).collect();
        assert_eq!(
            h,
            [0, 8, 12, 16, 24, 32, 40, 48, 56, 60, 64, 68, 72, 76, 80, 84, 88, 96, 104, 108, 112]
        );
        assert_eq!(header::REGISTRY_MUTEX, 128);
        let c = [
            counter::VALUE,
            counter::STATE,
            counter::NAME_LEN,
            counter::HASH,
            counter::NAME,
        ];
        assert_eq!(c, [0, 128, 132, 136, 144]);
        let st = [
            stat_slot::OWNER,
            stat_slot::HITS,
            stat_slot::MISSES,
            stat_slot::SETS,
            stat_slot::DELETES,
            stat_slot::EXPIRATIONS,
            stat_slot::EVICTIONS,
            stat_slot::FULL,
            stat_slot::RECOVERIES,
            stat_slot::CONTENDED,
        ];
        assert_eq!(st, [0, 8, 16, 24, 32, 40, 48, 56, 64, 72]);
        let sh = [
            shard::MUTEX,
            shard::REC_OP,
            shard::REC_TARGET,
            shard::REC_TAG,
            shard::REC_TOUCH,
            shard::REC_SCRATCH,
            shard::LEN,
            shard::TOMBSTONES,
            shard::SWEEP_CURSOR,
            shard::CTRL,
        ];
        assert_eq!(sh, [0, 40, 44, 48, 52, 56, 64, 72, 80, 256]);
        let sl = [
            slot::SEQ,
            slot::KEY_LEN,
            slot::VAL_LEN,
            slot::FLAGS,
            slot::EXPIRES,
            slot::KEY,
        ];
        assert_eq!(sl, [0, 4, 8, 12, 16, 24]);
        assert_eq!((HEADER_SIZE, COUNTER_SIZE, STAT_SLOT_SIZE), (512, 256, 128));
        assert_eq!((SHARD_HEADER_SIZE, SLOT_HEADER), (256, 24));
        use crate::heap::pool::{desc, hdr};
        assert_eq!(
            [
                hdr::USED_PAGES,
                hdr::VALUE_BYTES,
                hdr::CLOCK_HAND,
                hdr::FREE_CURSOR,
                hdr::DIRTY
            ],
            [0, 8, 16, 24, 32]
        );
        assert_eq!(
            [hdr::CLASS_PAGES, hdr::CLASS_USED, hdr::CLASS_HINT],
            [64, 160, 256]
        );
        assert_eq!(
            [desc::KIND, desc::OWNER, desc::BITS, desc::SIZE],
            [0, 4, 8, 16]
        );
        assert_eq!(
            (hdr::SIZE, crate::heap::PAGE, crate::heap::INLINE_MAX),
            (512, 4096, 24)
        );
    }

    #[test]
    fn sections_are_aligned_and_disjoint() {
        let l = layout(Config::new().capacity(1000).shards(4).max_value_len(100));
        assert_eq!(l.counters_off % LINE, 0);
        assert_eq!(l.stats_off % LINE, 0);
        assert_eq!(l.shards_off % LINE, 0);
        assert_eq!(l.shard_size % PAGE, 0);
        assert_eq!(l.shards_off % PAGE, 0);
        assert_eq!(l.pool.pages % PAGE, 0);
        assert!(l.pool.hdr >= l.slots_off_in_shard + l.slots_per_shard * l.slot_size);
        assert!(l.pool.hdr + l.pool.size <= l.shard_size);
        assert_eq!(l.slot_size % 8, 0);
        assert_eq!(l.slots_off_in_shard % 8, 0);
        assert!(l.scratch_off_in_shard >= SHARD_HEADER_SIZE + l.slots_per_shard);
        let last_slot_end = l.slot_off(l.shard_off(3), l.slots_per_shard - 1) + l.slot_size;
        assert!(last_slot_end <= l.total_len);
        assert_eq!(l.shard_off(3) + l.shard_size, l.total_len);
    }

    #[test]
    fn headroom_covers_capacity() {
        for cap in [1u64, 7, 100, 10_000, 1_000_000] {
            let l = layout(Config::new().capacity(cap));
            let total = l.max_entries_per_shard * u64::from(l.geo.shards);
            assert!(total >= cap, "cap {cap}: {total}");
        }
    }

    #[test]
    fn slot_overhead_is_small() {
        // With 16-byte keys a slot is one cache line, whatever max_value_len is.
        for v in [8, 256, limits::DEFAULT_MAX_VALUE_LEN] {
            let l = layout(Config::new().max_key_len(16).max_value_len(v));
            assert_eq!(l.slot_size, 64);
        }
        const { assert!(SLOT_HEADER <= 32) };
    }

    #[test]
    fn memory_is_the_region_size_and_capacity_derives_from_it() {
        for mem in [4u64 << 20, 64 << 20, 256 << 20] {
            let cfg = Config::new().memory(mem);
            let l = layout(cfg.clone());
            assert!(l.total_len as u64 <= mem);
            // Less than one page per shard is left over.
            assert!(
                mem - (l.total_len as u64)
                    < (PAGE as u64 + 512) * u64::from(l.geo.shards) + PAGE as u64,
                "{mem}: {}",
                l.total_len
            );
            assert_eq!(l.geo.capacity, mem / BYTES_PER_ENTRY);
        }
        // Without memory, the heap gets 1 KiB per entry, and room for one max-size value.
        let l = layout(Config::new().capacity(64_000).shards(8));
        assert_eq!(
            u64::from(l.geo.pages_per_shard),
            8000 * BYTES_PER_ENTRY / PAGE as u64
        );
        let l = layout(Config::new().capacity(10).shards(1));
        assert_eq!(
            l.geo.pages_per_shard,
            min_pages(limits::DEFAULT_MAX_VALUE_LEN)
        );
        // Too little memory for the index, or for one value per shard: clear errors.
        for cfg in [
            Config::new().memory(1 << 20).capacity(1_000_000),
            Config::new().memory(1 << 20).shards(8),
        ] {
            assert!(matches!(
                Geometry::from_config(&cfg),
                Err(Error::InvalidConfig {
                    field: "memory",
                    ..
                })
            ));
        }
    }

    #[test]
    fn oversize_is_refused() {
        let e = Geometry::from_config(
            &Config::new()
                .capacity(limits::MAX_CAPACITY)
                .max_value_len(limits::MAX_VALUE_LEN),
        );
        assert!(matches!(e, Err(Error::InvalidConfig { .. })));
    }
}
