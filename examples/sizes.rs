//! Prints what an entry costs: index bytes per configured entry (slot, control byte, shard
//! headroom), and heap bytes per stored value of a given length (measured: the heap's free bytes
//! before and after storing many such values).
//!
//! ```text
//! cargo run --release --example sizes
//! ```

use shmstate::{Config, Store};

fn main() -> shmstate::Result<()> {
    println!("Index: bytes of region per configured entry, besides the value heap");
    println!();
    println!("| capacity | max key | slot | index bytes per entry |");
    println!("|---:|---:|---:|---:|");
    for &(cap, key, line_sized) in &[
        (100_000u64, 16u32, false),
        (100_000, 32, false),
        (100_000, 64, false),
        (1_000_000, 16, false),
        (1_000_000, 20, true),
    ] {
        let cfg = Config::new()
            .capacity(cap)
            .max_key_len(key)
            .max_value_len(4096)
            .line_sized_slots(line_sized);
        let s = Store::anonymous(&cfg)?;
        let st = s.stats();
        let got = s.config().settings().max_key_len;
        let key_col = if got == key {
            format!("{key} B")
        } else {
            format!("{key} B → {got} B (line-sized slots)")
        };
        let slot = 24 + u64::from(got).next_multiple_of(8) + 24;
        let index = st.region_bytes - st.heap_bytes;
        println!(
            "| {cap} | {key_col} | {slot} B | {:.0} |",
            index as f64 / cap as f64
        );
    }
    println!();
    println!("Heap: bytes taken per stored value (values up to 24 bytes live in the slot)");
    println!();
    println!("| value | heap bytes per value | overhead |");
    println!("|---:|---:|---:|");
    for len in [
        8usize, 25, 100, 200, 256, 1000, 2048, 4096, 5000, 16384, 65536,
    ] {
        let n = (8 << 20) / (len + 64);
        let s = Store::anonymous(
            &Config::new()
                .capacity(n as u64 + 16)
                .memory(32 << 20)
                .max_key_len(16)
                .max_value_len(len as u32),
        )?;
        let before = s.stats().heap_free_bytes;
        let v = vec![7u8; len];
        for i in 0..n as u64 {
            s.set(&i.to_le_bytes(), &v, None)?;
        }
        let used = before - s.stats().heap_free_bytes;
        let per = used as f64 / n as f64;
        println!(
            "| {len} B | {per:.0} | {:.1}% |",
            100.0 * (per - len as f64) / len as f64
        );
    }
    Ok(())
}
