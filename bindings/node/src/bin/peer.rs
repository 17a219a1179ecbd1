//! A Rust process for the cross-language tests: opens the named region given as its argument
//! and runs one command per line of standard input, printing one line per command.
//!
//! ```text
//! get KEY                  -> the value, or (nil)
//! set KEY VALUE [TTL_MS]   -> OK
//! incr KEY DELTA           -> the new value
//! counter NAME DELTA       -> the counter's new value
//! cache-get NAME KEY       -> the fresh cached value, or (nil)     (shmstate::Cache)
//! trylock NAME LEASE_MS    -> "acquired FENCE" (released at once) or "busy"
//! trylock-keep NAME MS     -> "acquired FENCE", never released (the lock dies with us)
//! holder NAME              -> "PID FENCE" or "none"
//! verify                   -> "ok" or the report
//! fill KEY LEN SEED        -> OK (stores LEN bytes of the test pattern, see `pattern`)
//! check KEY LEN SEED       -> "ok", "(nil)", "length N" or "differs at byte I"
//! ```
//! Errors print `error: <message>`; the process exits 0 at end of input.

use std::io::{BufRead, Write};
use std::time::Duration;

use shmstate::{Cache, Store};

/// The bytes of `test/helpers.js`'s `pattern(len, seed)`: each depends on its position and the
/// seed, so a misplaced or mixed-up block shows.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 131 + seed * 7 + (i >> 9)) & 0xff) as u8)
        .collect()
}

fn run(store: &Store, words: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let text = |v: Option<Vec<u8>>| {
        v.map_or("(nil)".to_string(), |v| {
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    Ok(match words {
        ["get", k] => text(store.get(k.as_bytes())?),
        ["set", k, v] => {
            store.set(k.as_bytes(), v.as_bytes(), None)?;
            "OK".into()
        }
        ["set", k, v, ttl] => {
            store.set(
                k.as_bytes(),
                v.as_bytes(),
                Some(Duration::from_millis(ttl.parse()?)),
            )?;
            "OK".into()
        }
        ["incr", k, d] => store.incr(k.as_bytes(), d.parse()?, None)?.to_string(),
        ["counter", n, d] => store.counter(n)?.add(d.parse()?).to_string(),
        ["cache-get", n, k] => text(Cache::new(store, n)?.get(k.as_bytes())?),
        ["trylock", n, ms] => match store.try_lock(n, Duration::from_millis(ms.parse()?))? {
            Some(g) => format!("acquired {}", g.fence()),
            None => "busy".into(),
        },
        ["trylock-keep", n, ms] => match store.try_lock(n, Duration::from_millis(ms.parse()?))? {
            Some(g) => {
                let fence = g.fence();
                std::mem::forget(g); // held until this process exits: then a dead holder
                format!("acquired {fence}")
            }
            None => "busy".into(),
        },
        ["holder", n] => match store.lock_holder(n)? {
            Some(h) => format!("{} {}", h.pid, h.fence),
            None => "none".into(),
        },
        ["verify"] => {
            let r = store.verify()?;
            if r.is_ok() {
                "ok".into()
            } else {
                r.to_string().replace('\n', " | ")
            }
        }
        ["fill", k, len, seed] => {
            store.set(k.as_bytes(), &pattern(len.parse()?, seed.parse()?), None)?;
            "OK".into()
        }
        ["check", k, len, seed] => match store.get(k.as_bytes())? {
            None => "(nil)".into(),
            Some(v) => {
                let want = pattern(len.parse()?, seed.parse()?);
                if v.len() != want.len() {
                    format!("length {}", v.len())
                } else if let Some(i) = v.iter().zip(&want).position(|(a, b)| a != b) {
                    format!("differs at byte {i}")
                } else {
                    "ok".into()
                }
            }
        },
        _ => return Err(format!("unknown command {words:?}").into()),
    })
}

fn main() {
    let Some(name) = std::env::args().nth(1) else {
        eprintln!("usage: shmstate-node-peer REGION_NAME < commands");
        std::process::exit(2);
    };
    let store = match Store::open(&name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot open {name}: {e}");
            std::process::exit(1);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let reply = run(&store, &words).unwrap_or_else(|e| format!("error: {e}"));
        let _ = writeln!(out, "{reply}");
    }
}
