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
//!
//! One of the few files allowed `unsafe`: every view of the mapping is made here.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use super::layout::{slot, value_offset, SLOT_HEADER};

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

    /// Appends `len` bytes at `off` (8-aligned) to `out`. The bytes may be torn by a
    /// concurrent writer: validate with the seqlock afterwards. Short strings are copied with
    /// relaxed atomic loads; long ones (heap values) with `copy_opaque` on x86-64.
    #[inline]
    pub(crate) fn read_bytes(&self, off: usize, len: usize, out: &mut Vec<u8>) {
        let words = self.words(off, len.div_ceil(8));
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if len >= OPAQUE_COPY_MIN {
            out.reserve(len);
            let start = out.len();
            // SAFETY: 1. the source: `len` bytes at `off` are in the mapping (`words` checked
            // ceil(len/8) words there); 2. the destination: `reserve(len)` made room for `len`
            // bytes after `start`, and `out` is ours alone; 3. the two do not overlap (one is
            // the mapping, the other a Vec's heap buffer).
            unsafe {
                copy_opaque(
                    words.as_ptr().cast::<u8>(),
                    out.as_mut_ptr().add(start),
                    len,
                );
                // 4. all `len` bytes after `start` were written just above.
                out.set_len(start + len);
            }
            return;
        }
        load_bytes(words, len, out);
    }

    /// Writes `src` at `off` (8-aligned), zero-padding the last word: relaxed atomic stores for
    /// short strings, `copy_opaque` for long ones on x86-64.
    #[inline]
    pub(crate) fn write_bytes(&self, off: usize, src: &[u8]) {
        let words = self.words(off, src.len().div_ceil(8));
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if src.len() >= OPAQUE_COPY_MIN {
            let whole = src.len() / 8 * 8;
            // SAFETY: 1. `whole <= src.len()` bytes are read from `src`; 2. they are written
            // to the first `whole / 8` of `words`, in the mapping (checked above); 3. no
            // overlap (a caller's slice is not the mapping: the region is never lent out as a
            // slice).
            unsafe { copy_opaque(src.as_ptr(), words.as_ptr().cast::<u8>().cast_mut(), whole) };
            if whole < src.len() {
                words[whole / 8].store(tail_word(&src[whole..]), Ordering::Relaxed);
            }
            return;
        }
        store_bytes(words, src);
    }

    /// A view of the slot at `off` (8-aligned) with `key_cap` and `val_cap` bytes of key and
    /// value room (multiples of 8). Bounds are checked once, here.
    #[inline]
    pub(crate) fn slot(&self, off: usize, key_cap: usize, val_cap: usize) -> SlotView<'_> {
        assert!(
            key_cap.is_multiple_of(8) && val_cap.is_multiple_of(8),
            "slot areas must be whole words"
        );
        let size = SLOT_HEADER
            .checked_add(key_cap)
            .and_then(|v| v.checked_add(val_cap))
            .unwrap_or(usize::MAX);
        self.check(off, size, 8);
        SlotView {
            // SAFETY: `off` is in bounds (checked above), so the pointer is within the mapping
            // and non-null.
            base: unsafe { NonNull::new_unchecked(self.base.as_ptr().add(off)) },
            key_cap,
            val_cap,
            _region: PhantomData,
        }
    }
}

/// One slot of the table: its header words, key area and value area, all proven in bounds when
/// the view was made ([`RawRegion::slot`]), so field access needs no further check.
#[derive(Clone, Copy)]
pub(crate) struct SlotView<'a> {
    base: NonNull<u8>,
    key_cap: usize,
    val_cap: usize,
    _region: PhantomData<&'a RawRegion>,
}

impl<'a> SlotView<'a> {
    #[inline(always)]
    fn u32(&self, field: usize) -> &'a AtomicU32 {
        debug_assert!(field.is_multiple_of(4) && field + 4 <= SLOT_HEADER);
        // SAFETY: the view covers SLOT_HEADER bytes at `base` (checked at creation), `base` is
        // 8-aligned and `field` a 4-aligned header offset; atomics tolerate concurrent writers.
        unsafe { &*self.base.as_ptr().add(field).cast::<AtomicU32>() }
    }
    #[inline(always)]
    fn u64(&self, field: usize) -> &'a AtomicU64 {
        debug_assert!(field.is_multiple_of(8) && field + 8 <= SLOT_HEADER);
        // SAFETY: as in `u32`, for an 8-aligned header offset.
        unsafe { &*self.base.as_ptr().add(field).cast::<AtomicU64>() }
    }
    #[inline(always)]
    pub(crate) fn seq(&self) -> &'a AtomicU32 {
        self.u32(slot::SEQ)
    }
    #[inline(always)]
    pub(crate) fn key_len(&self) -> &'a AtomicU32 {
        self.u32(slot::KEY_LEN)
    }
    #[inline(always)]
    pub(crate) fn val_len(&self) -> &'a AtomicU32 {
        self.u32(slot::VAL_LEN)
    }
    #[inline(always)]
    pub(crate) fn flags(&self) -> &'a AtomicU32 {
        self.u32(slot::FLAGS)
    }
    #[inline(always)]
    pub(crate) fn expires(&self) -> &'a AtomicU64 {
        self.u64(slot::EXPIRES)
    }
    /// The words holding the first `len` bytes of the key area (`len` at most the key room).
    #[inline(always)]
    pub(crate) fn key_words(&self, len: usize) -> &'a [AtomicU64] {
        assert!(len <= self.key_cap, "key length beyond the slot's key room");
        // SAFETY: the key area (key_cap bytes at slot::KEY) is in the view; `len <= key_cap`
        // and key_cap is a multiple of 8, so ceil(len/8) words fit; 8-aligned.
        unsafe {
            std::slice::from_raw_parts(
                self.base.as_ptr().add(slot::KEY).cast::<AtomicU64>(),
                len.div_ceil(8),
            )
        }
    }
    /// The words holding the first `len` bytes of the value area (`len` at most the room).
    #[inline(always)]
    pub(crate) fn value_words(&self, len: usize) -> &'a [AtomicU64] {
        assert!(
            len <= self.val_cap,
            "value length beyond the slot's value room"
        );
        // SAFETY: the value area (val_cap bytes after the key area) is in the view; as above.
        unsafe {
            std::slice::from_raw_parts(
                self.base
                    .as_ptr()
                    .add(value_offset(self.key_cap))
                    .cast::<AtomicU64>(),
                len.div_ceil(8),
            )
        }
    }
    /// Room for the value, in bytes.
    #[inline(always)]
    pub(crate) fn val_cap(&self) -> usize {
        self.val_cap
    }
}

/// Appends `len` bytes held in `words` to `out` (relaxed atomic loads; may be torn by a
/// concurrent writer: validate with the seqlock afterwards).
#[inline]
pub(crate) fn load_bytes(words: &[AtomicU64], len: usize, out: &mut Vec<u8>) {
    assert!(len <= words.len() * 8);
    out.reserve(len);
    let start = out.len();
    let full = len / 8;
    let dst = out.spare_capacity_mut().as_mut_ptr().cast::<u8>();
    // Four words per iteration: the loads are independent, and the loop overhead is paid once
    // per 32 bytes (this copy is most of a `get` of a large value).
    let (quads, singles) = words[..full].as_chunks::<4>();
    for (q, ws) in quads.iter().enumerate() {
        let v = [
            ws[0].load(Ordering::Relaxed),
            ws[1].load(Ordering::Relaxed),
            ws[2].load(Ordering::Relaxed),
            ws[3].load(Ordering::Relaxed),
        ];
        // SAFETY: `reserve(len)` made room for `len` bytes after `start`; these 32 bytes end at
        // 32 * (q + 1) <= 8 * full <= len.
        unsafe { dst.add(32 * q).cast::<[u64; 4]>().write_unaligned(v) };
    }
    for (j, w) in singles.iter().enumerate() {
        let v = w.load(Ordering::Relaxed);
        // SAFETY: as above; this word ends at 32 * quads.len() + 8 * (j + 1) <= 8 * full.
        unsafe {
            dst.add(32 * quads.len() + 8 * j)
                .cast::<u64>()
                .write_unaligned(v)
        };
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

/// Fills `dst` from `words` (relaxed atomic loads).
#[inline]
pub(crate) fn load_into(words: &[AtomicU64], dst: &mut [u8]) {
    for (chunk, w) in dst.chunks_mut(8).zip(words) {
        let v = w.load(Ordering::Relaxed).to_ne_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Stores `src` into `words` (relaxed atomic stores), zero-padding the last word.
#[inline]
pub(crate) fn store_bytes(words: &[AtomicU64], src: &[u8]) {
    let (chunks, tail) = src.as_chunks::<8>();
    let words_full = &words[..chunks.len()];
    let (wq, ws) = words_full.as_chunks::<4>();
    let (cq, cs) = chunks.as_chunks::<4>();
    for (w, c) in wq.iter().zip(cq) {
        w[0].store(u64::from_ne_bytes(c[0]), Ordering::Relaxed);
        w[1].store(u64::from_ne_bytes(c[1]), Ordering::Relaxed);
        w[2].store(u64::from_ne_bytes(c[2]), Ordering::Relaxed);
        w[3].store(u64::from_ne_bytes(c[3]), Ordering::Relaxed);
    }
    for (w, c) in ws.iter().zip(cs) {
        w.store(u64::from_ne_bytes(*c), Ordering::Relaxed);
    }
    if !tail.is_empty() {
        words[chunks.len()].store(tail_word(tail), Ordering::Relaxed);
    }
}

/// Whether the first `key.len()` bytes held in `words` are `key`. The bytes after them in the
/// last word are not part of the string (`store_bytes` zeroes them, but another process may
/// not have), so they are masked off: a comparison agrees with what `load_bytes` reads.
#[inline]
pub(crate) fn words_eq(words: &[AtomicU64], key: &[u8]) -> bool {
    let (chunks, tail) = key.as_chunks::<8>();
    for (w, c) in words.iter().zip(chunks) {
        if w.load(Ordering::Relaxed) != u64::from_ne_bytes(*c) {
            return false;
        }
    }
    // Little-endian (layout.rs refuses other targets): the string's bytes are the low ones.
    let mask = u64::MAX >> (8 * (8 - tail.len()) % 64);
    tail.is_empty() || words[chunks.len()].load(Ordering::Relaxed) & mask == tail_word(tail)
}

/// Copies `src` to `dst` word by word (relaxed atomics), up to the shorter of the two.
#[inline]
pub(crate) fn copy_words(src: &[AtomicU64], dst: &[AtomicU64]) {
    for (a, b) in src.iter().zip(dst) {
        b.store(a.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Copies of at least this many bytes go through `copy_opaque` (x86-64, not Miri).
const OPAQUE_COPY_MIN: usize = 1024;

/// Copies `len` bytes with code the compiler cannot see into: `rep movsb`, as fast as
/// `memcpy` for large copies on current x86-64 CPUs. A concurrent writer in another process may
/// change the bytes during the copy; as with the relaxed atomic loads of [`load_bytes`], that
/// can tear the copy (the seqlock says so afterwards) but is not a data race in the program's
/// memory model: the assembly is opaque to the compiler, which can assume nothing about the
/// bytes it moves (the approach of seqlock-protected copies such as the `atomic-memcpy`
/// crate's). Elsewhere, and under Miri, the word-by-word atomic copies are used instead.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of `len` bytes, not overlapping.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline]
unsafe fn copy_opaque(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: by the caller's contract; `rep movsb` copies `rcx` bytes from `rsi` to `rdi`
    // forwards (the direction flag is clear on entry to `asm!`, as Rust guarantees on x86),
    // touches no other memory and no flags, and does not use the stack.
    unsafe {
        std::arch::asm!(
            "rep movsb",
            inout("rcx") len => _,
            inout("rsi") src => _,
            inout("rdi") dst => _,
            options(nostack, preserves_flags)
        );
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
            assert!(words_eq(r.words(8, len.div_ceil(8)), &src));
            if len > 0 {
                let mut other = src.clone();
                other[len - 1] ^= 1;
                assert!(!words_eq(r.words(8, len.div_ceil(8)), &other));
            }
        }
    }

    /// Bytes after a string in its last word (not zeroed by a foreign writer) do not change
    /// what compares equal: `words_eq` agrees with `read_bytes`.
    #[test]
    fn padding_is_not_compared() {
        let (_v, r) = heap(4);
        for len in 1..=16usize {
            let src: Vec<u8> = (0..len as u8).map(|b| b ^ 0x5a).collect();
            r.write_bytes(0, &src);
            let words = r.words(0, len.div_ceil(8));
            let last = &words[words.len() - 1];
            if len % 8 != 0 {
                let pad = u64::MAX << (8 * (len % 8));
                last.store(last.load(Ordering::Relaxed) | pad, Ordering::Relaxed);
            }
            let mut out = Vec::new();
            r.read_bytes(0, len, &mut out);
            assert_eq!(out, src);
            assert!(words_eq(words, &src), "len {len}");
            let mut other = src.clone();
            other[len - 1] ^= 0x80;
            assert!(!words_eq(words, &other), "len {len}");
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn out_of_bounds_panics_not_ub() {
        let (_v, r) = heap(2);
        r.u64_at(16);
    }
}
