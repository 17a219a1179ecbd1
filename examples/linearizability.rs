//! The linearizability check of `tests/linearizability.rs`, for long runs: rounds of forked
//! workers running random operations on a few keys, with values stored inline, in one heap
//! block or in pages and tail blocks, in a near-full heap, while some are SIGKILLed or die at a
//! failpoint inside a write path of the table or the heap; each round's logged history is
//! checked against a sequential model (`tests/common/linearize.rs`). Prints the deaths at each
//! failpoint at the end. Panics (exit 101) on a violation, printing a minimal
//! non-linearizable history of one key.
//!
//! ```text
//! cargo run --release --features failpoints --example linearizability -- --seconds 600
//! ```

#[cfg(feature = "failpoints")]
#[path = "../tests/linearizability.rs"]
#[allow(dead_code)]
mod linearizability;

const USAGE: &str = "\
usage: linearizability [--seconds S] [--ops N] [--seed N]

  --seconds S  run rounds for this long (default 60)
  --ops N      operations per round (default 5000)
  --seed N     seed of round 0; round i uses seed + i (default: from the clock)";

#[cfg(feature = "failpoints")]
fn main() {
    use std::time::Duration;
    let mut seconds = 60;
    let mut ops = 5000;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> u64 {
            let v = args.next().unwrap_or_default();
            v.parse().unwrap_or_else(|_| {
                eprintln!("{name} needs a number\n{USAGE}");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--seconds" => seconds = value("--seconds"),
            "--ops" => ops = value("--ops"),
            "--seed" => seed = value("--seed"),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                std::process::exit(2)
            }
        }
    }
    linearizability::soak(&linearizability::Soak {
        seed,
        min_rounds: 1,
        min_time: Duration::from_secs(seconds),
        ops,
        round_time: Duration::from_secs(10),
        print_every: 25,
    });
}

#[cfg(not(feature = "failpoints"))]
fn main() {
    eprintln!("build with --features failpoints (workers die at failpoints)\n{USAGE}");
    std::process::exit(2);
}
