//! A Rust process on the same region as the Python tests (tests/test_rust_peer.py).
//!
//! Usage: `rust_peer <shm name> <command> [args]`, one command per run:
//!   get KEY                  prints the value (exit 1 if absent)
//!   set KEY VALUE [TTL_MS]
//!   incr KEY DELTA TIMES     TIMES increments; prints the last result
//!   counter NAME DELTA TIMES TIMES additions to a named counter; prints the last value
//!   ttl KEY                  prints the remaining ms, "none" (no expiry) or "absent"
//!   lock NAME LEASE_MS       takes the lock, prints its fence, holds it for LEASE_MS/2
//!   verify                   exit 0 if the region checks out
//!   fill KEY LEN SEED        stores LEN bytes of the test pattern (see `pattern`)
//!   check KEY LEN SEED       prints "ok", "absent", "length N" or "differs at byte I"

use std::process::ExitCode;
use std::time::Duration;

use shmstate::{Store, Ttl};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rust_peer: {e}");
            ExitCode::from(2)
        }
    }
}

fn arg(args: &[String], i: usize) -> Result<&str, String> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("missing argument {i}"))
}

fn num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

/// The bytes of `pattern(length, seed)` in tests/test_memory.py: each depends on its position
/// and on the seed, so a misplaced or mixed-up block shows.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 131 + seed * 7 + (i >> 9)) & 0xff) as u8)
        .collect()
}

fn run() -> Result<ExitCode, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let store = Store::open(arg(&args, 0)?).map_err(|e| e.to_string())?;
    let e = |e: shmstate::Error| e.to_string();
    match arg(&args, 1)? {
        "get" => match store.get(arg(&args, 2)?.as_bytes()).map_err(e)? {
            Some(v) => {
                println!("{}", String::from_utf8_lossy(&v));
                Ok(ExitCode::SUCCESS)
            }
            None => Ok(ExitCode::from(1)),
        },
        "set" => {
            let ttl = match args.get(4) {
                Some(ms) => Some(Duration::from_millis(num(ms)?)),
                None => None,
            };
            store
                .set(arg(&args, 2)?.as_bytes(), arg(&args, 3)?.as_bytes(), ttl)
                .map_err(e)?;
            Ok(ExitCode::SUCCESS)
        }
        "incr" => {
            let (key, delta, times): (_, i64, u64) =
                (arg(&args, 2)?, num(arg(&args, 3)?)?, num(arg(&args, 4)?)?);
            let mut last = 0;
            for _ in 0..times {
                last = store.incr(key.as_bytes(), delta, None).map_err(e)?;
            }
            println!("{last}");
            Ok(ExitCode::SUCCESS)
        }
        "counter" => {
            let c = store.counter(arg(&args, 2)?).map_err(e)?;
            let (delta, times): (i64, u64) = (num(arg(&args, 3)?)?, num(arg(&args, 4)?)?);
            let mut last = c.get();
            for _ in 0..times {
                last = c.add(delta);
            }
            println!("{last}");
            Ok(ExitCode::SUCCESS)
        }
        "ttl" => {
            match store.ttl(arg(&args, 2)?.as_bytes()).map_err(e)? {
                Ttl::NoKey => println!("absent"),
                Ttl::NoExpiry => println!("none"),
                Ttl::ExpiresIn(d) => println!("{}", d.as_millis()),
            }
            Ok(ExitCode::SUCCESS)
        }
        "lock" => {
            let lease = Duration::from_millis(num(arg(&args, 3)?)?);
            match store.try_lock(arg(&args, 2)?, lease).map_err(e)? {
                Some(g) => {
                    println!("{}", g.fence());
                    std::thread::sleep(lease / 2);
                    g.release().map_err(e)?;
                    Ok(ExitCode::SUCCESS)
                }
                None => Ok(ExitCode::from(1)),
            }
        }
        "verify" => {
            let r = store.verify().map_err(e)?;
            println!("{r}");
            Ok(if r.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        "fill" => {
            let v = pattern(num(arg(&args, 3)?)?, num(arg(&args, 4)?)?);
            store.set(arg(&args, 2)?.as_bytes(), &v, None).map_err(e)?;
            Ok(ExitCode::SUCCESS)
        }
        "check" => {
            let want = pattern(num(arg(&args, 3)?)?, num(arg(&args, 4)?)?);
            match store.get(arg(&args, 2)?.as_bytes()).map_err(e)? {
                None => println!("absent"),
                Some(v) if v.len() != want.len() => println!("length {}", v.len()),
                Some(v) => match v.iter().zip(&want).position(|(a, b)| a != b) {
                    Some(i) => println!("differs at byte {i}"),
                    None => println!("ok"),
                },
            }
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command {other:?}")),
    }
}
