//! Prints how many bytes of region each configured entry costs, for common configurations.
//!
//! ```text
//! cargo run --release --example sizes
//! ```

use shmstate::{Config, Store};

fn main() -> shmstate::Result<()> {
    println!("| capacity | max key | max value | region | bytes per entry | overhead per entry |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for &(cap, key, value) in &[
        (100_000u64, 16u32, 16u32),
        (100_000, 32, 256),
        (100_000, 64, 512),
        (100_000, 64, 4096),
        (1_000_000, 16, 256),
        (1_000_000, 32, 64),
    ] {
        let s = Store::anonymous(
            &Config::new()
                .capacity(cap)
                .max_key_len(key)
                .max_value_len(value),
        )?;
        let per = s.region_bytes() as f64 / cap as f64;
        println!(
            "| {cap} | {key} B | {value} B | {:.1} MiB | {per:.0} | {:.0} |",
            s.region_bytes() as f64 / (1 << 20) as f64,
            per - f64::from(key + value)
        );
    }
    Ok(())
}
