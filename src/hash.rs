//! The keyed hash. Keys come from clients (IP addresses, session ids), so the hash is SipHash-1-3
//! keyed with a random 128-bit seed chosen when the region is created and stored in its header:
//! an attacker who cannot read the region cannot aim keys at one shard or one probe sequence.
//! SipHash is specified, so every build of every process computes the same value (unlike
//! `ahash`/`foldhash`, whose output depends on CPU features and crate version).

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

/// Hash of `key` under `seed`.
#[inline]
pub(crate) fn hash(seed: (u64, u64), key: &[u8]) -> u64 {
    let mut h = SipHasher13::new_with_keys(seed.0, seed.1);
    h.write(key);
    h.finish()
}

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
        tag: crate::table::ctrl::full(h),
    }
}

/// A fresh random seed from the OS.
pub(crate) fn random_seed() -> std::io::Result<(u64, u64)> {
    let mut buf = [0u8; 16];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: `buf[filled..]` is a valid writable buffer of the given length.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    let a = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    let b = u64::from_le_bytes(buf[8..].try_into().expect("8 bytes"));
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_stable() {
        let a = hash((1, 2), b"key");
        assert_eq!(a, hash((1, 2), b"key"));
        assert_ne!(a, hash((1, 3), b"key"));
        assert_ne!(hash((1, 2), b""), hash((1, 2), b"\0"));
        assert_ne!(random_seed().unwrap(), random_seed().unwrap());
    }

    #[test]
    fn placement_in_range() {
        for i in 0..1000u64 {
            let p = place(hash((9, 9), &i.to_le_bytes()), 7, 13);
            assert!(p.shard < 7 && p.home < 13 && p.tag >= 0x80);
        }
    }
}
