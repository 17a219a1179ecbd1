//! A hostile live region: the base image opened, then fuzzer-chosen bytes written over the live
//! mapping (through the hidden `Store::raw_region`; offsets drawn from the parts of the store's
//! own map: header, counters, tables, heap metadata, heap values, or anywhere) between
//! operations. Every operation must return `Ok` or `Err`: never a panic, hang or out-of-bounds
//! access.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmstate::{Clock, ManualClock, Store};
use shmstate_fuzz::{base_image, exercise, TempRegion, Where, T0_MS};

#[derive(Debug, Arbitrary)]
struct Scribble {
    /// Where in the mapping (see `Where`), and the offset within that part.
    part: Where,
    offset: u32,
    bytes: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
struct Round {
    scribbles: Vec<Scribble>,
    data: Vec<u8>,
}

fuzz_target!(|rounds: Vec<Round>| {
    let file = TempRegion::new("scribble");
    file.write(base_image());
    let clock = ManualClock::new(T0_MS + 100);
    let s = Store::open_file(file.path())
        .expect("open base image")
        .with_clock(Clock::Manual(clock.clone()));
    for round in rounds.iter().take(4) {
        // SAFETY: the pointer is valid for `len` bytes while `s` lives; every write stays in
        // bounds. Writing garbage is the point: the store must cope.
        let (base, len) = unsafe { s.raw_region() };
        for w in round.scribbles.iter().take(32) {
            let off = w.part.offset(w.offset, len);
            for (i, b) in w.bytes.iter().take(len - off).enumerate() {
                // SAFETY: off + i < len (see above).
                unsafe { std::ptr::write_volatile(base.add(off + i), *b) };
            }
        }
        exercise(&s, &clock, &round.data);
    }
});
