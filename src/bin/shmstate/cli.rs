//! The command line, as `clap` parses it.

use std::ffi::OsString;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Inspect and operate shmstate shared-memory stores.
///
/// REGION is the name of a POSIX shared-memory store (the object /dev/shm/REGION), or with
/// --file the path of a file-backed store.
///
/// Exit status: 0 success; 1 the key does not exist (get, del, ttl) or verify found problems;
/// 2 error (region missing, foreign or incompatible, invalid arguments).
#[derive(Debug, Parser)]
#[command(name = "shmstate", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Which region a command works on.
#[derive(Debug, Args)]
pub struct Target {
    /// Shared-memory store name, or the file's path with --file.
    #[arg(value_name = "REGION")]
    pub region: OsString,
    /// REGION is the path of a file-backed store.
    #[arg(long)]
    pub file: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Format, configuration, fill and memory of a region.
    Info {
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Statistics (counts since the region was created, summed over all processes).
    Stats {
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Print the Prometheus text exposition format (statistics and named counters).
        #[arg(long)]
        prometheus: bool,
    },
    /// Print a key's value (exit 1 if the key does not exist).
    Get {
        #[command(flatten)]
        target: Target,
        /// The key.
        key: OsString,
        /// Print the value's bytes only, without a trailing newline.
        #[arg(long)]
        raw: bool,
    },
    /// Store a value.
    Set {
        #[command(flatten)]
        target: Target,
        /// The key.
        key: OsString,
        /// The value.
        value: OsString,
        /// Time to live, e.g. 500ms, 30s, 5m, 2h, 1d (a bare number is seconds).
        #[arg(long, value_name = "DURATION")]
        ttl: Option<DurationArg>,
    },
    /// Delete a key (exit 1 if it did not exist).
    Del {
        #[command(flatten)]
        target: Target,
        /// The key.
        key: OsString,
    },
    /// Add to a key's decimal integer value (created as 0 if absent) and print the result.
    Incr {
        #[command(flatten)]
        target: Target,
        /// The key.
        key: OsString,
        /// How much to add (may be negative).
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        delta: i64,
        /// Time to live if the key is created, e.g. 60s.
        #[arg(long, value_name = "DURATION")]
        ttl: Option<DurationArg>,
    },
    /// Print a key's remaining time to live in milliseconds, or "none" (exit 1 if no key).
    Ttl {
        #[command(flatten)]
        target: Target,
        /// The key.
        key: OsString,
    },
    /// List keys, optionally only those starting with PREFIX, at most --limit per call.
    ///
    /// Keys are printed one per line, with bytes outside printable ASCII (and backslash)
    /// escaped as \xNN. If more keys may follow, the cursor to continue from is printed on
    /// stderr. Each step locks one shard briefly.
    Keys {
        #[command(flatten)]
        target: Target,
        /// Only keys starting with these bytes.
        prefix: Option<OsString>,
        /// Most keys to print.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
        /// Where to start (a cursor printed by a previous call).
        #[arg(long, default_value_t = 0)]
        cursor: u64,
    },
    /// Named counters and their values.
    Counters {
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every invariant of the region (exit 0 sound, 1 problems found, 2 error).
    ///
    /// Locks each shard in turn, which also repairs a write interrupted by a dead process.
    Verify {
        #[command(flatten)]
        target: Target,
    },
    /// Live view of operations per second, hit rate, fill and lock recoveries, like top.
    Watch {
        #[command(flatten)]
        target: Target,
        /// Time between refreshes, e.g. 1s or 250ms.
        #[arg(long, default_value = "1s", value_name = "DURATION")]
        interval: DurationArg,
        /// Stop after this many refreshes (default: until interrupted).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
    /// Create a region (refused if it already exists).
    Create {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        args: CreateArgs,
    },
    /// Remove a region. Processes that have it open keep using it until they unmap it.
    Unlink {
        #[command(flatten)]
        target: Target,
        /// Remove it even if it cannot be opened as a shmstate region.
        #[arg(long)]
        force: bool,
    },
}

/// Configuration of a new region.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The region's size, index and values together: bytes, or with a unit (k, m, g: powers of
    /// 1024), e.g. `64m`. Default: from the capacity (1 KiB of values per entry).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<ByteSize>,
    /// Entries the table must hold (default: memory / 1024, or 65536 without --memory).
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Longest key in bytes.
    #[arg(long, default_value_t = 64)]
    pub max_key_len: u32,
    /// Longest value in bytes: a limit, not a reservation (values take the memory they need).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_value_len: u32,
    /// Round the key room up so each slot fills whole 64-byte cache lines (no two entries
    /// share a line; the extra room is usable key length).
    #[arg(long)]
    pub line_sized_slots: bool,
    /// Named counter slots.
    #[arg(long, default_value_t = 256)]
    pub max_counters: u32,
    /// Shards (default: from the CPU count and capacity).
    #[arg(long)]
    pub shards: Option<u32>,
    /// Evict entries when full (cache use) instead of refusing new keys.
    #[arg(long)]
    pub evict: bool,
    /// How long a write waits for a lock held by a live process.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub lock_timeout: DurationArg,
}

/// A size on the command line: bytes, or a number with a unit k, m or g (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let t = t
            .strip_suffix("ib")
            .or_else(|| t.strip_suffix('b'))
            .unwrap_or(&t);
        let (num, shift) = match t.char_indices().last() {
            Some((i, 'k')) => (&t[..i], 10),
            Some((i, 'm')) => (&t[..i], 20),
            Some((i, 'g')) => (&t[..i], 30),
            _ => (t, 0),
        };
        let n: u64 = num
            .trim()
            .parse()
            .map_err(|_| format!("not a size: {s:?} (bytes, or a number with k, m or g)"))?;
        n.checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("size too large: {s:?}"))
    }
}

/// A duration on the command line: a number with an optional unit (ms, s, m, h, d; default s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationArg(pub Duration);

impl FromStr for DurationArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration (expected e.g. 500ms, 30s, 5m)"))?;
        let ms_per: u64 = match unit {
            "ms" => 1,
            "" | "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("unknown unit {unit:?} (use ms, s, m, h or d)")),
        };
        let ms = n
            .checked_mul(ms_per)
            .ok_or_else(|| format!("{s:?} is too long a duration"))?;
        Ok(DurationArg(Duration::from_millis(ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let b = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(b("4096"), Ok(4096));
        assert_eq!(b("64m"), Ok(64 << 20));
        assert_eq!(b("64MiB"), Ok(64 << 20));
        assert_eq!(b("2G"), Ok(2 << 30));
        assert_eq!(b("8k"), Ok(8192));
        for bad in ["", "m", "1.5m", "-1", "10x", "99999999999g"] {
            assert!(b(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn durations() {
        let d = |s: &str| s.parse::<DurationArg>().map(|d| d.0);
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("30"), Ok(Duration::from_secs(30)));
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(d("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(d("1d"), Ok(Duration::from_secs(86_400)));
        for bad in [
            "",
            "s",
            "1.5s",
            "-1s",
            "10x",
            "99999999999999999999",
            "999999999999999d",
        ] {
            assert!(d(bad).is_err(), "{bad}");
        }
    }
}
