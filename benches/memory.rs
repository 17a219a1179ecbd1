//! Memory efficiency: how much of a region holds data, on the value-size mix of issue 11
//! (16-byte keys; values 8 B 40%, 200 B 40%, 2 KiB 15%, 16 KiB 5%: about 1.2 KiB of payload per
//! entry).
//!
//! ```text
//! cargo bench --bench memory             # 256 MiB region (about a minute)
//! cargo bench --bench memory -- --test   # smoke: a 16 MiB region
//! ```
//!
//! 1. Fill the region with the mix until the store refuses (`Full`): stored key + value bytes
//!    over the region's bytes.
//! 2. Delete a random half, then refill with a mix shifted towards large values (8 B 15%,
//!    200 B 15%, 2 KiB 35%, 16 KiB 35%) until `Full`.
//! 3. The same fill in a store of format 3's design (every slot reserves the largest value) is
//!    computed from its slot size: `(24 + 16 + 16384) x 8/7` bytes per entry at its 7/8 load.
//!
//! Not a timing: bytes are counted, so the figures are the same on a busy machine.

use std::time::Instant;

use shmstate::{Config, Error, Store};

const KEY_LEN: usize = 16;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// (value length, percent).
type Mix = [(usize, u64); 4];
const MIX: Mix = [(8, 40), (200, 40), (2048, 15), (16384, 5)];
const SHIFTED: Mix = [(8, 15), (200, 15), (2048, 35), (16384, 35)];

fn draw(rng: &mut Rng, mix: &Mix) -> usize {
    let mut r = rng.below(100);
    for (len, pct) in mix {
        if r < *pct {
            return *len;
        }
        r -= pct;
    }
    mix[0].0
}

fn key(i: u64) -> [u8; KEY_LEN] {
    let mut k = [b'k'; KEY_LEN];
    k[..8].copy_from_slice(&i.to_le_bytes());
    k
}

/// Stores values drawn from `mix` under fresh keys until the store refuses one; returns the
/// keys stored with their value lengths. Bounded: a refusal ends it.
fn fill(s: &Store, rng: &mut Rng, mix: &Mix, next: &mut u64, live: &mut Vec<(u64, usize)>) {
    let buf = vec![0x5au8; 16384];
    loop {
        let len = draw(rng, mix);
        match s.set(&key(*next), &buf[..len], None) {
            Ok(()) => {
                live.push((*next, len));
                *next += 1;
            }
            Err(Error::Full) => return,
            Err(e) => panic!("fill: {e}"),
        }
    }
}

fn payload(live: &[(u64, usize)]) -> u64 {
    live.iter().map(|&(_, l)| (KEY_LEN + l) as u64).sum()
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let memory: u64 = if smoke { 16 << 20 } else { 256 << 20 };
    let t = Instant::now();
    let s = Store::anonymous(
        &Config::new()
            .memory(memory)
            .max_key_len(KEY_LEN as u32)
            .max_value_len(16384),
    )
    .expect("store");
    let region = s.region_bytes();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut next, mut live) = (0u64, Vec::new());
    fill(&s, &mut rng, &MIX, &mut next, &mut live);
    let filled = payload(&live);
    let n_fill = live.len();
    let st = s.stats();

    // Delete a random half, refill with the shifted mix.
    for i in (1..live.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        live.swap(i, j);
    }
    let half = live.len() / 2;
    for &(k, _) in &live[..half] {
        assert!(s.delete(&key(k)).expect("delete"));
    }
    live.drain(..half);
    fill(&s, &mut rng, &SHIFTED, &mut next, &mut live);
    let refilled = payload(&live);
    let st2 = s.stats();
    let report = s.verify().expect("verify");
    assert!(report.is_ok(), "{report}");

    let mean = MIX
        .iter()
        .map(|(l, p)| (KEY_LEN + l) as f64 * *p as f64 / 100.0)
        .sum::<f64>();
    let fixed_slot = (24.0 + 16.0 + 16384.0) * 8.0 / 7.0;
    println!(
        "memory efficiency, {} MiB region ({} bytes mapped), 16-byte keys",
        memory >> 20,
        region
    );
    println!();
    println!("| fill | entries | key+value bytes | of the region |");
    println!("|---|---:|---:|---:|");
    println!(
        "| format 3 (fixed slots of 16 KiB), computed | - | - | {:.1}% |",
        100.0 * mean / fixed_slot
    );
    println!(
        "| mix until Full | {n_fill} | {filled} | {:.1}% |",
        100.0 * filled as f64 / region as f64
    );
    println!(
        "| half deleted, refilled with large values until Full | {} | {refilled} | {:.1}% |",
        live.len(),
        100.0 * refilled as f64 / region as f64
    );
    println!();
    println!(
        "after the fill: heap {} of {} bytes free, fragmentation {:.1}%; after the refill: \
         {} free, fragmentation {:.1}%, {} evictions, {} refusals ({:.1?})",
        st.heap_free_bytes,
        st.heap_bytes,
        100.0 * st.fragmentation(),
        st2.heap_free_bytes,
        100.0 * st2.fragmentation(),
        st2.evictions,
        st2.full_refusals,
        t.elapsed()
    );
}
