//! Typed, bounds-checked access to the bytes of a mapped region.
//!
//! Other processes may write any byte of the region at any time, so this module never creates a
//! plain Rust reference (`&u8`, `&[u8]`, `&T`) into it. Shared words are viewed only as atomics
//! (`&AtomicU32`, `&AtomicU64`), and byte strings (keys, values, names) are copied in and out
//! with relaxed atomic `u64` loads and stores: that is free on x86-64 (plain `mov`s) and keeps a
//! concurrent write from being undefined behaviour. Consistency of a multi-word copy is the
//! caller's job (the slot seqlock).
//!
//! Every accessor checks alignment and bounds (one compare, always on), so a bug elsewhere can
//! at worst panic, never read outside the mapping.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

/// A mapped range of `len` bytes at `base`, 128-byte aligned (mappings are page aligned).
#[derive(Debug)]
pub(crate) struct RawRegion {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is only accessed through atomics, which may be shared across threads.
unsafe impl Send for RawRegion {}
// SAFETY: as above; no method hands out non-atomic references.
unsafe impl Sync for RawRegion {}

impl RawRegion {
    /// # Safety
    /// `base` must point to `len` bytes that stay mapped readable and writable, and 8-byte
    /// aligned, for as long as the returned value (and anything borrowed from it) lives.
    pub(crate) unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        debug_assert_eq!(base.as_ptr() as usize % 8, 0);
        RawRegion { base, len }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Panics (never returns) unless `size` bytes at `off` are in bounds and `align`-aligned.
    #[inline(always)]
    fn check(&self, off: usize, size: usize, align: usize) {
        if !off.is_multiple_of(align) || off > self.len || size > self.len - off {
            out_of_bounds(off, size, self.len);
        }
    }

    /// The `u64` at `off` (8-aligned).
    #[inline]
    pub(crate) fn u64_at(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8, 8);
        // SAFETY: in bounds and aligned (checked above); the mapping outlives `&self`;
        // AtomicU64 has the size and alignment of u64 and tolerates concurrent writers.
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU64>() }
    }

    /// The `i64` at `off` (8-aligned).
    #[inline]
    pub(crate) fn i64_at(&self, off: usize) -> &AtomicI64 {
        self.check(off, 8, 8);
        // SAFETY: as in `u64_at`.
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicI64>() }
    }

    /// The `u32` at `off` (4-aligned).
    #[inline]
    pub(crate) fn u32_at(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4, 4);
        // SAFETY: as in `u64_at`, with 4-byte size and alignment.
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU32>() }
    }

    /// Raw pointer to `size` bytes at `off` (8-aligned), for the pthread mutex functions,
    /// which take a pointer and do their own atomic accesses.
    #[inline]
    pub(crate) fn ptr_at(&self, off: usize, size: usize) -> *mut u8 {
        self.check(off, size, 8);
        // SAFETY: in bounds (checked above).
        unsafe { self.base.as_ptr().add(off) }
    }

    /// The `n` words at `off` (8-aligned) as a slice of atomics (bounds checked once).
    #[inline]
    pub(crate) fn words(&self, off: usize, n: usize) -> &[AtomicU64] {
        let size = n.checked_mul(8).expect("word count overflows");
        self.check(off, size, 8);
        // SAFETY: `n` words at `off` are in bounds and 8-aligned (checked above); AtomicU64 has
        // the layout of u64 and tolerates concurrent writers; the mapping outlives `&self`.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(off).cast::<AtomicU64>(), n) }
    }

    /// Appends `len` bytes at `off` (8-aligned) to `out`, with relaxed atomic loads. The bytes
    /// may be torn by a concurrent writer: validate with the seqlock afterwards.
    #[inline]
    pub(crate) fn read_bytes(&self, off: usize, len: usize, out: &mut Vec<u8>) {
        let words = self.words(off, len.div_ceil(8));
        out.reserve(len);
        let start = out.len();
        let full = len / 8;
        let dst = out.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        for (i, w) in words[..full].iter().enumerate() {
            let v = w.load(Ordering::Relaxed);
            // SAFETY: `reserve(len)` made room for `len` bytes after `start`; `8 * i + 8 <= len`.
            unsafe { dst.add(8 * i).cast::<u64>().write_unaligned(v) };
        }
        let rest = len - 8 * full;
        if rest > 0 {
            let v = words[full].load(Ordering::Relaxed).to_ne_bytes();
            // SAFETY: as above, the last `rest` bytes of the reserved room.
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), dst.add(8 * full), rest) };
        }
        // SAFETY: all `len` bytes after `start` were initialized above.
        unsafe { out.set_len(start + len) };
    }

    /// Fills `dst` from the bytes at `off` (8-aligned), with relaxed atomic loads.
    #[inline]
    pub(crate) fn read_into(&self, off: usize, dst: &mut [u8]) {
        let words = self.words(off, dst.len().div_ceil(8));
        for (chunk, w) in dst.chunks_mut(8).zip(words) {
            let v = w.load(Ordering::Relaxed).to_ne_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// Writes `src` at `off` (8-aligned) with relaxed atomic stores, zero-padding the last word.
    #[inline]
    pub(crate) fn write_bytes(&self, off: usize, src: &[u8]) {
        let words = self.words(off, src.len().div_ceil(8));
        let (chunks, tail) = src.as_chunks::<8>();
        for (w, c) in words.iter().zip(chunks) {
            w.store(u64::from_ne_bytes(*c), Ordering::Relaxed);
        }
        if !tail.is_empty() {
            words[chunks.len()].store(tail_word(tail), Ordering::Relaxed);
        }
    }

    /// Copies `n` 8-byte words from `src` to `dst` within the region (relaxed atomics).
    pub(crate) fn copy_words(&self, src: usize, dst: usize, n: usize) {
        let (s, d) = (self.words(src, n), self.words(dst, n));
        for (a, b) in s.iter().zip(d) {
            b.store(a.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Whether the `key.len()` bytes at `off` equal `key` (relaxed loads; the stored tail is
    /// zero-padded, as `write_bytes` leaves it, so whole words compare).
    #[inline]
    pub(crate) fn bytes_eq(&self, off: usize, key: &[u8]) -> bool {
        let words = self.words(off, key.len().div_ceil(8));
        let (chunks, tail) = key.as_chunks::<8>();
        for (w, c) in words.iter().zip(chunks) {
            if w.load(Ordering::Relaxed) != u64::from_ne_bytes(*c) {
                return false;
            }
        }
        tail.is_empty() || words[chunks.len()].load(Ordering::Relaxed) == tail_word(tail)
    }
}

#[cold]
#[inline(never)]
fn out_of_bounds(off: usize, size: usize, len: usize) -> ! {
    panic!("region access out of bounds: offset {off} size {size} in {len} bytes")
}

/// Up to 8 bytes as a zero-padded native-endian word, built in a register (going through a
/// stack buffer costs a store-forwarding stall on every write).
#[inline]
fn tail_word(tail: &[u8]) -> u64 {
    debug_assert!(tail.len() < 8);
    tail.iter()
        .enumerate()
        .fold(0u64, |v, (i, &b)| v | u64::from(b) << (8 * i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap(words: usize) -> (Vec<u64>, RawRegion) {
        let mut v = vec![0u64; words];
        let base = NonNull::new(v.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the Vec outlives the region in each test (returned together, dropped after).
        let r = unsafe { RawRegion::new(base, words * 8) };
        (v, r)
    }

    #[test]
    fn bytes_round_trip_all_lengths() {
        let (_v, r) = heap(8);
        for len in 0..=40 {
            let src: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(7) + 1).collect();
            r.write_bytes(8, &src);
            let mut out = Vec::new();
            r.read_bytes(8, len, &mut out);
            assert_eq!(out, src);
            assert!(r.bytes_eq(8, &src));
            if len > 0 {
                let mut other = src.clone();
                other[len - 1] ^= 1;
                assert!(!r.bytes_eq(8, &other));
            }
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn out_of_bounds_panics_not_ub() {
        let (_v, r) = heap(2);
        r.u64_at(16);
    }
}
