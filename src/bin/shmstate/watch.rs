//! `watch`: a refreshing view of a live region, like `top`.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use shmstate::{Stats, Store};

use crate::output::human_bytes;

/// Shortest and longest refresh interval accepted.
const MIN_INTERVAL: Duration = Duration::from_millis(10);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// Rates between two snapshots.
struct Delta {
    secs: f64,
    ops: u64,
    hits: u64,
    lookups: u64,
    recoveries: u64,
    evictions: u64,
    expirations: u64,
    refusals: u64,
}

impl Delta {
    fn between(a: &Stats, b: &Stats, secs: f64) -> Self {
        let d = |x: u64, y: u64| y.wrapping_sub(x);
        let hits = d(a.hits, b.hits);
        let lookups = hits.wrapping_add(d(a.misses, b.misses));
        Delta {
            secs,
            ops: lookups
                .wrapping_add(d(a.sets, b.sets))
                .wrapping_add(d(a.deletes, b.deletes)),
            hits,
            lookups,
            recoveries: d(a.lock_recoveries, b.lock_recoveries),
            evictions: d(a.evictions, b.evictions),
            expirations: d(a.expirations, b.expirations),
            refusals: d(a.full_refusals, b.full_refusals),
        }
    }

    fn per_sec(&self, n: u64) -> f64 {
        if self.secs > 0.0 {
            n as f64 / self.secs
        } else {
            0.0
        }
    }

    fn hit_rate(&self) -> String {
        if self.lookups == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}%", self.hits as f64 * 100.0 / self.lookups as f64)
        }
    }
}

fn fill(st: &Stats) -> f64 {
    if st.capacity == 0 {
        0.0
    } else {
        st.entries as f64 * 100.0 / st.capacity as f64
    }
}

/// Refreshes every `interval`, `count` times (or until interrupted). On a terminal the screen
/// is redrawn in place; otherwise one line per refresh is printed, after a header.
pub fn run(
    s: &Store,
    interval: Duration,
    count: Option<u64>,
    out: &mut impl Write,
) -> io::Result<()> {
    let interval = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
    let tty = io::stdout().is_terminal();
    let mut prev = s.stats();
    let mut at = Instant::now();
    if !tty {
        writeln!(
            out,
            "{:>12} {:>8} {:>8} {:>12} {:>10} {:>10} {:>10} {:>8}",
            "ops/s", "hit", "fill", "entries", "recovered", "evicted", "expired", "refused"
        )?;
        out.flush()?;
    }
    // `None` means until interrupted; u64::MAX refreshes at 10 ms would take 5 billion years.
    for _ in 0..count.unwrap_or(u64::MAX) {
        std::thread::sleep(interval);
        let now = s.stats();
        let t = Instant::now();
        let d = Delta::between(&prev, &now, t.duration_since(at).as_secs_f64());
        if tty {
            frame(s, &now, &d, out)?;
        } else {
            writeln!(
                out,
                "{:>12.0} {:>8} {:>7.1}% {:>12} {:>10} {:>10} {:>10} {:>8}",
                d.per_sec(d.ops),
                d.hit_rate(),
                fill(&now),
                now.entries,
                now.lock_recoveries,
                now.evictions,
                now.expirations,
                now.full_refusals
            )?;
        }
        out.flush()?;
        prev = now;
        at = t;
    }
    Ok(())
}

/// One full-screen frame.
fn frame(s: &Store, st: &Stats, d: &Delta, out: &mut impl Write) -> io::Result<()> {
    // Home the cursor and clear the screen.
    write!(out, "\x1b[H\x1b[2J")?;
    writeln!(
        out,
        "shmstate watch: {:?}   generation {}",
        s.origin(),
        s.generation()
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "ops/s        {:>12.0}   (lookups {:.0}/s, hit rate {})",
        d.per_sec(d.ops),
        d.per_sec(d.lookups),
        d.hit_rate()
    )?;
    writeln!(
        out,
        "fill         {:>11.1}%   ({} / {} entries, {} tombstones)",
        fill(st),
        st.entries,
        st.capacity,
        st.tombstones
    )?;
    writeln!(
        out,
        "recoveries   {:>12}   (+{} since last refresh)",
        st.lock_recoveries, d.recoveries
    )?;
    writeln!(
        out,
        "evictions    {:>12}   (+{:.0}/s)",
        st.evictions,
        d.per_sec(d.evictions)
    )?;
    writeln!(
        out,
        "expirations  {:>12}   (+{:.0}/s)",
        st.expirations,
        d.per_sec(d.expirations)
    )?;
    writeln!(
        out,
        "refused      {:>12}   (+{})",
        st.full_refusals, d.refusals
    )?;
    writeln!(out, "contended    {:>12}", st.lock_contended)?;
    writeln!(out, "counters     {:>12}", st.counters)?;
    writeln!(out, "memory       {:>12}", human_bytes(st.region_bytes))
}
