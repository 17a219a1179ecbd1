//! Where a key goes (shard, home group, tag) and the bounded triangular probe sequence.
//!
//! A key's probe sequence visits groups `home, home+1, home+3, home+6, ...` (triangular
//! numbers, modulo the group count), at most [`MAX_PROBE_GROUPS`]. With a power-of-two group
//! count the first `n` steps visit `n` distinct groups (hashbrown's argument: the step after
//! `k` probes is `k(k+1)/2`, and `k(k+1)/2 = j(j+1)/2 mod 2^m` forces `k = j` for `k, j < 2^m`);
//! with other counts the bound still holds, some groups may be visited twice.

use super::ctrl;
use crate::region::layout::MAX_PROBE_GROUPS;

/// Where a hash sends a key: which shard, which home group, and the 7-bit tag kept in the
/// control byte. The three use different bits so that keys sharing a group rarely share a tag.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    pub shard: usize,
    pub home: usize,
    pub tag: u8,
}

/// `(x * n) >> 32`: maps the 32-bit `x` to `0..n` without a division (Lemire's fastrange).
#[inline]
pub(crate) fn fastrange(x: u32, n: u32) -> u32 {
    ((u64::from(x) * u64::from(n)) >> 32) as u32
}

#[inline]
pub(crate) fn place(h: u64, shards: u32, groups: u32) -> Placement {
    Placement {
        shard: fastrange(h as u32, shards) as usize,
        home: fastrange((h >> 32) as u32, groups) as usize,
        tag: ctrl::full(h),
    }
}

/// Triangular probe sequence over `n` groups, at most `MAX_PROBE_GROUPS` long.
#[derive(Clone)]
pub(crate) struct Probe {
    pos: usize,
    stride: usize,
    n: usize,
    left: u32,
}

impl Probe {
    #[inline]
    pub(crate) fn new(home: usize, n: usize) -> Self {
        Probe {
            pos: home,
            stride: 0,
            n,
            left: MAX_PROBE_GROUPS,
        }
    }
}

impl Iterator for Probe {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let g = self.pos;
        self.stride += 1;
        self.pos += self.stride;
        while self.pos >= self.n {
            self.pos -= self.n;
        }
        Some(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{hash, random_seed, HashKey};

    #[test]
    #[cfg_attr(
        miri,
        ignore = "64 000 keys hashed: a statistics test of the hash, nothing for Miri to check"
    )]
    fn spreads_sequential_keys() {
        let k = HashKey::new(random_seed().unwrap());
        let (shards, groups) = (64u32, 1000u32);
        let mut per_shard = vec![0u32; shards as usize];
        let mut tags = [0u32; 128];
        let n = 64_000u32;
        for i in 0..n {
            let p = place(hash(&k, format!("user:{i}").as_bytes()), shards, groups);
            per_shard[p.shard] += 1;
            tags[(p.tag & 0x7f) as usize] += 1;
        }
        // Expected 1000 per shard, sd ~31: allow 6 sd.
        assert!(
            per_shard.iter().all(|&c| (810..=1190).contains(&c)),
            "{per_shard:?}"
        );
        // Expected 500 per tag, sd ~22: allow 6 sd.
        assert!(tags.iter().all(|&c| (360..=640).contains(&c)), "{tags:?}");
    }

    #[test]
    fn placement_in_range() {
        for i in 0..1000u64 {
            let p = place(hash(&HashKey::new((9, 9)), &i.to_le_bytes()), 7, 13);
            assert!(p.shard < 7 && p.home < 13 && p.tag >= 0x80);
        }
    }

    #[test]
    fn probe_is_bounded_and_in_range() {
        for n in [1usize, 2, 3, 16, 17, 1000] {
            for home in [0, n / 2, n - 1] {
                let v: Vec<_> = Probe::new(home, n).collect();
                assert_eq!(v.len(), MAX_PROBE_GROUPS as usize);
                assert!(v.iter().all(|&g| g < n));
                assert_eq!(v[0], home);
            }
        }
        // With a power-of-two group count the first n steps visit n distinct groups.
        let v: std::collections::HashSet<_> = Probe::new(3, 16).collect();
        assert_eq!(v.len(), 16);
    }
}
