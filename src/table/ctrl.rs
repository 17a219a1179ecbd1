//! Control bytes: one per slot, eight per group (one `u64` load), matched with SWAR bit tricks.
//!
//! | control byte  | meaning                                                   |
//! |---------------|-----------------------------------------------------------|
//! | `0x00`        | EMPTY: never used since the group last had room; lookups stop at a group containing one |
//! | `0x01`        | DELETED: a tombstone; lookups continue past it            |
//! | `0x80 \| h7`  | FULL, with 7 bits of the key's hash                       |
//! | `0x02..=0x7F` | invalid (corruption; reported by `verify`)                |

pub(crate) const EMPTY: u8 = 0x00;
pub(crate) const DELETED: u8 = 0x01;
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The FULL control byte for hash `h`.
#[inline]
pub(crate) fn full(h: u64) -> u8 {
    0x80 | (h as u8 & 0x7f)
}
#[inline]
pub(crate) fn is_full(b: u8) -> bool {
    b & 0x80 != 0
}
#[inline]
pub(crate) fn is_valid(b: u8) -> bool {
    b == EMPTY || b == DELETED || is_full(b)
}
/// 0x80 in each byte of `x` that is zero, exactly (no false positives).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}
/// Bytes equal to `b`.
#[inline]
pub(crate) fn match_byte(group: u64, b: u8) -> u64 {
    zero_bytes(group ^ (LO * u64::from(b)))
}
#[inline]
pub(crate) fn match_empty(group: u64) -> u64 {
    zero_bytes(group)
}
/// EMPTY or DELETED (top bit clear, and valid).
#[inline]
pub(crate) fn match_free(group: u64) -> u64 {
    zero_bytes(group) | match_byte(group, DELETED)
}
#[inline]
pub(crate) fn match_full(group: u64) -> u64 {
    group & HI
}
/// Index (0..8) of the lowest matched byte.
#[inline]
pub(crate) fn lowest(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}
#[inline]
pub(crate) fn byte(group: u64, i: usize) -> u8 {
    (group >> (8 * i)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swar_matching_is_exact() {
        let bytes = [0x00u8, 0x01, 0x85, 0xff, 0x00, 0x85, 0x7f, 0x80];
        let g = u64::from_le_bytes(bytes);
        let idx = |mut m: u64| {
            let mut v = vec![];
            while m != 0 {
                v.push(lowest(m));
                m &= m - 1;
            }
            v
        };
        assert_eq!(idx(match_empty(g)), vec![0, 4]);
        assert_eq!(idx(match_byte(g, 0x85)), vec![2, 5]);
        assert_eq!(idx(match_free(g)), vec![0, 1, 4]);
        assert_eq!(idx(match_full(g)), vec![2, 3, 5, 7]);
        // Every byte value against every position (no false positives, none missed).
        for v in 0..=255u8 {
            for pos in 0..8 {
                let mut b = [0x42u8; 8];
                b[pos] = v;
                let g = u64::from_le_bytes(b);
                let m = match_byte(g, v);
                if v == 0x42 {
                    assert_eq!(m.count_ones(), 8);
                } else {
                    assert_eq!(idx(m), vec![pos]);
                }
            }
        }
    }
}
