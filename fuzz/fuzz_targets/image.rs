//! Corrupted region files: the base image (a valid, populated file region, the same in every
//! run, with heap values of three shapes) with fuzzer-chosen byte patches (offsets drawn from the
//! parts of the store's own map: header, counters, tables, heap metadata, heap values, or
//! anywhere) and a fuzzer-chosen length, opened with `Store::open_file`. Opening must succeed or fail with an error; an opened store must answer
//! every operation with `Ok` or `Err`, never a panic, hang or out-of-bounds access.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmstate::{Clock, ManualClock, Store};
use shmstate_fuzz::{base_image, exercise, TempRegion, Where, T0_MS};

#[derive(Debug, Arbitrary)]
struct Patch {
    /// Where in the image (see `Where`), and the offset within that part.
    part: Where,
    offset: u32,
    bytes: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
enum Length {
    Same,
    /// Truncate to 1 + this many bytes (modulo the image length). Not to 0 bytes: an empty
    /// file is a creator that has not sized it yet, which `open_file` waits 500 ms for, by
    /// design.
    Truncate(u32),
    /// Append this many zero bytes (modulo 8 KiB).
    Extend(u16),
}

#[derive(Debug, Arbitrary)]
struct Input {
    patches: Vec<Patch>,
    length: Length,
    /// Keys, values and counters `exercise` uses besides the image's own.
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let mut img = base_image().to_vec();
    let len = img.len();
    for p in input.patches.iter().take(64) {
        let off = p.part.offset(p.offset, len);
        let n = p.bytes.len().min(len - off);
        img[off..off + n].copy_from_slice(&p.bytes[..n]);
    }
    match input.length {
        Length::Same => {}
        Length::Truncate(n) => img.truncate(1 + n as usize % (len - 1)),
        Length::Extend(n) => img.resize(len + usize::from(n) % 8192, 0),
    }
    let unchanged = img == base_image();
    let file = TempRegion::new("image");
    file.write(&img);
    let clock = ManualClock::new(T0_MS + 100);
    match Store::open_file(file.path()) {
        Ok(s) => {
            let s = s.with_clock(Clock::Manual(clock.clone()));
            if unchanged {
                let rep = s.verify().expect("verify of the intact image");
                assert!(rep.is_ok(), "intact image: {rep}");
            }
            exercise(&s, &clock, &input.data);
        }
        Err(e) => {
            assert!(!unchanged, "the intact image does not open: {e}");
            let _ = e.to_string();
        }
    }
});
