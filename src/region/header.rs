//! The region header, read and written side by side (like redb's
//! `DatabaseHeader::{from_bytes, to_bytes}`): [`Header::write`] is what a creator stores,
//! [`Header::read`] what every opener checks before it builds any view of the rest. Offsets come
//! from [`layout::header`](super::layout::header).
//!
//! The header is untrusted input: [`parse`] checks the magic, the format version, the layout
//! fingerprint, every configuration field against the limits, and the mapped size against the
//! size the fields imply, and refuses with a specific error.

use std::sync::atomic::{AtomicU64, Ordering};

use super::layout::{
    config_check, header, init_state, Geometry, Layout, FINGERPRINT, FORMAT_VERSION, HEADER_SIZE,
    MAGIC, STAT_SLOTS,
};
use super::raw::RawRegion;
use crate::error::{Error, Incompatibility, Result};

/// What a region's header says, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Sizes and offsets of everything after the header.
    pub(crate) layout: Layout,
    /// The hash seed, chosen at random by the creator.
    pub(crate) seed: (u64, u64),
}

impl Header {
    /// Reads and validates the header of a mapping (each field read once); refuses a region
    /// whose creator has not marked it ready.
    pub(crate) fn read(raw: &RawRegion) -> Result<Self> {
        let layout = read_layout(raw)?;
        if !is_ready(raw) {
            return Err(Error::corrupted("header: not marked ready"));
        }
        Ok(Header {
            layout,
            seed: read_seed(raw),
        })
    }

    /// Writes every field of a fresh header into a zero-filled region, except `init_state`:
    /// the creator initializes the rest of the region, then calls [`mark_ready`].
    pub(crate) fn write(&self, raw: &RawRegion, created_ms: u64, creator_pid: u32) {
        let g = &self.layout.geo;
        let w32 = |off, v: u32| raw.u32_at(off).store(v, Ordering::Relaxed);
        let w64 = |off, v: u64| raw.u64_at(off).store(v, Ordering::Relaxed);
        w64(header::MAGIC, u64::from_ne_bytes(MAGIC));
        w32(header::VERSION, FORMAT_VERSION);
        w64(header::FINGERPRINT, FINGERPRINT);
        w64(header::TOTAL_LEN, self.layout.total_len as u64);
        w64(header::SEED0, self.seed.0);
        w64(header::SEED1, self.seed.1);
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
        w64(header::CREATED_MS, created_ms);
        w32(header::CREATOR_PID, creator_pid);
        w32(header::PAGES_PER_SHARD, g.pages_per_shard);
        w64(header::CONFIG_CHECK, config_check(g, self.seed));
    }
}

/// Validates the header's format and configuration fields (not `init_state`) and returns the
/// layout they describe.
pub(crate) fn read_layout(raw: &RawRegion) -> Result<Layout> {
    parse(
        raw.len() as u64,
        read_magic(raw),
        |off| raw.u32_at(off).load(Ordering::Relaxed),
        |off| raw.u64_at(off).load(Ordering::Relaxed),
    )
}

/// The hash seed as stored now.
pub(crate) fn read_seed(raw: &RawRegion) -> (u64, u64) {
    (
        raw.u64_at(header::SEED0).load(Ordering::Relaxed),
        raw.u64_at(header::SEED1).load(Ordering::Relaxed),
    )
}

/// The 8 magic bytes.
pub(crate) fn read_magic(raw: &RawRegion) -> [u8; 8] {
    raw.u64_at(header::MAGIC)
        .load(Ordering::Relaxed)
        .to_ne_bytes()
}

/// Whether the creator finished initializing the region (Acquire: everything it wrote before
/// [`mark_ready`] is visible).
pub(crate) fn is_ready(raw: &RawRegion) -> bool {
    raw.u32_at(header::INIT_STATE).load(Ordering::Acquire) == init_state::READY
}

/// The creator's last write (Release).
pub(crate) fn mark_ready(raw: &RawRegion) {
    raw.u32_at(header::INIT_STATE)
        .store(init_state::READY, Ordering::Release);
}

/// The generation word (bumped by `clear`, for tools that watch a region).
pub(crate) fn generation(raw: &RawRegion) -> &AtomicU64 {
    raw.u64_at(header::GENERATION)
}

/// Validates the header of a mapped region of `mapped_len` bytes and computes its layout.
/// `read_u32` / `read_u64` read one header field each (once); nothing here trusts a value before
/// checking it. (Separate from the region so the checks are testable field by field.)
pub(crate) fn parse(
    mapped_len: u64,
    magic: [u8; 8],
    read_u32: impl Fn(usize) -> u32,
    read_u64: impl Fn(usize) -> u64,
) -> Result<Layout> {
    if mapped_len < HEADER_SIZE as u64 {
        return Err(Error::Incompatible {
            reason: Incompatibility::Size {
                actual: mapped_len,
                expected: HEADER_SIZE as u64,
            },
        });
    }
    if magic != MAGIC {
        return Err(Error::Incompatible {
            reason: Incompatibility::BadMagic,
        });
    }
    let version = read_u32(header::VERSION);
    if version != FORMAT_VERSION {
        return Err(Error::Incompatible {
            reason: Incompatibility::Version {
                found: version,
                expected: FORMAT_VERSION,
            },
        });
    }
    let fp = read_u64(header::FINGERPRINT);
    if fp != FINGERPRINT {
        return Err(Error::Incompatible {
            reason: Incompatibility::Fingerprint {
                found: fp,
                expected: FINGERPRINT,
            },
        });
    }
    let policy = Geometry::policy_from_code(read_u32(header::POLICY))
        .ok_or(Error::corrupted("header: unknown full policy"))?;
    let geo = Geometry {
        capacity: read_u64(header::CAPACITY),
        shards: read_u32(header::SHARDS),
        groups_per_shard: read_u32(header::GROUPS_PER_SHARD),
        max_key_len: read_u32(header::MAX_KEY_LEN),
        max_value_len: read_u32(header::MAX_VALUE_LEN),
        max_counters: read_u32(header::MAX_COUNTERS),
        policy,
        lock_timeout_ms: read_u32(header::LOCK_TIMEOUT_MS),
        pages_per_shard: read_u32(header::PAGES_PER_SHARD),
    };
    if read_u32(header::STAT_SLOTS) != STAT_SLOTS {
        return Err(Error::corrupted("header: process slot count"));
    }
    let layout = Layout::new(geo).map_err(|_| Error::corrupted("header: config out of range"))?;
    let seed = (read_u64(header::SEED0), read_u64(header::SEED1));
    if read_u64(header::CONFIG_CHECK) != config_check(&geo, seed) {
        return Err(Error::corrupted(
            "header: configuration fields disagree with their check",
        ));
    }
    let total = read_u64(header::TOTAL_LEN);
    if total != layout.total_len as u64 {
        return Err(Error::corrupted(
            "header: total length disagrees with config",
        ));
    }
    if mapped_len != total {
        return Err(Error::Incompatible {
            reason: Incompatibility::Size {
                actual: mapped_len,
                expected: total,
            },
        });
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn written_header_reads_back() {
        let cfg = Config::new().capacity(100).shards(2).max_value_len(40);
        let layout = Layout::new(Geometry::from_config(&cfg).unwrap()).unwrap();
        let map = crate::region::Mapping::anonymous(layout.total_len).unwrap();
        let h = Header {
            layout,
            seed: (7, 9),
        };
        h.write(map.raw(), 1234, 42);
        assert!(matches!(
            Header::read(map.raw()),
            Err(Error::Corrupted { .. })
        ));
        mark_ready(map.raw());
        assert_eq!(Header::read(map.raw()).unwrap(), h);
        assert_eq!(generation(map.raw()).load(Ordering::Relaxed), 1);
    }

    #[test]
    fn header_checks_each_field() {
        let l = Layout::new(Geometry::from_config(&Config::new().capacity(100)).unwrap()).unwrap();
        let good = |off: usize| -> u64 {
            match off {
                header::VERSION => FORMAT_VERSION as u64,
                header::FINGERPRINT => FINGERPRINT,
                header::POLICY => 0,
                header::CAPACITY => l.geo.capacity,
                header::SHARDS => l.geo.shards as u64,
                header::GROUPS_PER_SHARD => l.geo.groups_per_shard as u64,
                header::MAX_KEY_LEN => l.geo.max_key_len as u64,
                header::MAX_VALUE_LEN => l.geo.max_value_len as u64,
                header::MAX_COUNTERS => l.geo.max_counters as u64,
                header::STAT_SLOTS => STAT_SLOTS as u64,
                header::LOCK_TIMEOUT_MS => l.geo.lock_timeout_ms as u64,
                header::PAGES_PER_SHARD => l.geo.pages_per_shard as u64,
                header::CONFIG_CHECK => config_check(&l.geo, (0, 0)),
                header::TOTAL_LEN => l.total_len as u64,
                _ => 0,
            }
        };
        let len = l.total_len as u64;
        let ok = parse(len, MAGIC, |o| good(o) as u32, good).unwrap();
        assert_eq!(ok, l);
        assert!(matches!(
            parse(len, *b"NOTSHMST", |o| good(o) as u32, good),
            Err(Error::Incompatible {
                reason: Incompatibility::BadMagic
            })
        ));
        assert!(matches!(
            parse(len - 1, MAGIC, |o| good(o) as u32, good),
            Err(Error::Incompatible {
                reason: Incompatibility::Size { .. }
            })
        ));
        assert!(matches!(
            parse(10, MAGIC, |o| good(o) as u32, good),
            Err(Error::Incompatible {
                reason: Incompatibility::Size { .. }
            })
        ));
        for (field, val) in [
            (header::VERSION, u64::from(FORMAT_VERSION) + 1),
            (header::FINGERPRINT, 1),
            (header::POLICY, 9),
            (header::SHARDS, 0),
            (header::GROUPS_PER_SHARD, 0),
            (header::MAX_KEY_LEN, u32::MAX as u64),
            (header::TOTAL_LEN, 12345),
        ] {
            let bad = |o: usize| if o == field { val } else { good(o) };
            assert!(
                parse(len, MAGIC, |o| bad(o) as u32, bad).is_err(),
                "field at {field} = {val} accepted"
            );
        }
    }
}
