//! The `shmstate` binary run against real regions: every subcommand, its exit codes, and clear
//! errors (exit 2, message on stderr, no panic) for missing, foreign and incompatible regions.
//! Every shm object and file a test creates is removed by a guard, even when the test fails.

mod common;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{ShmName, TempDir};
use shmstate::{Config, Store};

/// Runs `shmstate ARGS`, killed if it takes longer than a minute.
fn run(args: &[&str]) -> Output {
    assert_cmd::Command::new(env!("CARGO_BIN_EXE_shmstate"))
        .args(args)
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run shmstate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit code `code`, with the output in the failure message.
#[track_caller]
fn expect(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// Asserts a clean error: exit 2, a message on stderr containing `msg`, nothing on stdout,
/// and no panic.
#[track_caller]
fn expect_error(o: &Output, msg: &str) {
    expect(o, 2);
    let err = stderr(o);
    assert!(err.contains(msg), "stderr lacks {msg:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{err}");
    assert!(o.stdout.is_empty(), "{}", stdout(o));
}

fn write_file(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn help_for_everything() {
    let o = run(&["--help"]);
    expect(&o, 0);
    let top = stdout(&o);
    let subs = [
        "info", "stats", "get", "set", "del", "incr", "ttl", "keys", "counters", "verify", "watch",
        "create", "unlink",
    ];
    for sub in subs {
        assert!(top.contains(sub), "{sub} missing from --help");
        let o = run(&[sub, "--help"]);
        expect(&o, 0);
        assert!(stdout(&o).contains("Usage: shmstate"), "{sub}");
        assert!(stdout(&o).contains("--file"), "{sub} --help lacks --file");
    }
    // Usage errors are clap's: exit 2, message on stderr.
    expect_error(&run(&["get", "only-a-region"]), "required");
    expect_error(&run(&["frobnicate"]), "unrecognized subcommand");
    expect_error(
        &run(&["set", "r", "k", "v", "--ttl", "10x"]),
        "unknown unit",
    );
}

#[test]
fn shm_region_lifecycle() {
    let name = ShmName::new("cli-life");
    let n = name.0.as_str();
    let o = run(&["create", n, "--capacity", "1000", "--max-value-len", "64"]);
    expect(&o, 0);
    assert!(
        stdout(&o).contains("max value:     64 bytes"),
        "{}",
        stdout(&o)
    );
    // A second create is refused.
    expect_error(&run(&["create", n]), "already exists");
    // A region sized by its memory budget.
    let sized = ShmName::new("cli-memory");
    let o = run(&["create", sized.0.as_str(), "--memory", "8m"]);
    expect(&o, 0);
    let o = run(&["info", sized.0.as_str(), "--json"]);
    expect(&o, 0);
    assert!(stdout(&o).contains("\"region_bytes\":8"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("\"heap_free_bytes\":"),
        "{}",
        stdout(&o)
    );

    expect(&run(&["set", n, "greeting", "hello"]), 0);
    let o = run(&["get", n, "greeting"]);
    expect(&o, 0);
    assert_eq!(stdout(&o), "hello\n");
    let o = run(&["get", n, "greeting", "--raw"]);
    assert_eq!(o.stdout, b"hello");

    // What the tool wrote, the library sees, and the other way round.
    let s = Store::open(n).unwrap();
    assert_eq!(s.get(b"greeting").unwrap().as_deref(), Some(&b"hello"[..]));
    s.set(b"from-lib", b"42", None).unwrap();
    s.counter("http.requests").unwrap().add(7);
    s.counter("odd \"name\"\\").unwrap().add(-1);

    let o = run(&["incr", n, "from-lib", "8"]);
    expect(&o, 0);
    assert_eq!(stdout(&o), "50\n");
    let o = run(&["incr", n, "from-lib", "-60"]);
    assert_eq!(stdout(&o), "-10\n");
    let o = run(&["incr", n, "greeting"]);
    expect_error(&o, "not a decimal");

    // TTLs.
    let o = run(&["ttl", n, "greeting"]);
    expect(&o, 0);
    assert_eq!(stdout(&o), "none\n");
    expect(&run(&["set", n, "temp", "x", "--ttl", "1h"]), 0);
    let o = run(&["ttl", n, "temp"]);
    let ms: u64 = stdout(&o).trim().parse().unwrap();
    assert!(ms > 3_500_000 && ms <= 3_600_000, "{ms}");

    // Missing keys: exit 1, nothing on stdout.
    for cmd in ["get", "ttl", "del"] {
        let o = run(&[cmd, n, "absent"]);
        expect(&o, 1);
        assert!(o.stdout.is_empty());
        assert!(stderr(&o).contains("key not found"));
    }
    expect(&run(&["del", n, "temp"]), 0);
    assert_eq!(s.get(b"temp").unwrap(), None);

    // Values too large for the region: a clean error.
    let big = "v".repeat(65);
    expect_error(&run(&["set", n, "k", &big]), "max_value_len of 64");

    // Counters, sorted by name, in text and JSON.
    let o = run(&["counters", n]);
    expect(&o, 0);
    assert!(stdout(&o).contains("7  http.requests"), "{}", stdout(&o));
    let o = run(&["counters", n, "--json"]);
    assert_eq!(
        stdout(&o),
        "{\"http.requests\":7,\"odd \\\"name\\\"\\\\\":-1}\n"
    );

    // Statistics in three formats.
    let o = run(&["stats", n]);
    expect(&o, 0);
    assert!(
        stdout(&o).contains("entries          2\n"),
        "{}",
        stdout(&o)
    );
    let o = run(&["stats", n, "--json"]);
    let json = stdout(&o);
    assert!(
        json.starts_with("{\"entries\":2,\"capacity\":1000,"),
        "{json}"
    );
    let o = run(&["stats", n, "--prometheus"]);
    expect(&o, 0);
    let text = stdout(&o);
    assert!(
        text.contains("# TYPE shmstate_sets_total counter\n"),
        "{text}"
    );
    assert!(text.contains("shmstate_entries 2\n"), "{text}");
    assert!(text.contains("shmstate_counter_value{name=\"http.requests\"} 7\n"));
    assert!(text.contains("shmstate_counter_value{name=\"odd \\\"name\\\"\\\\\"} -1\n"));
    expect_error(
        &run(&["stats", n, "--json", "--prometheus"]),
        "cannot be used",
    );

    // Info, text and JSON.
    let o = run(&["info", n]);
    expect(&o, 0);
    assert!(stdout(&o).contains(&format!("/dev/shm/{n}")));
    assert!(stdout(&o).contains("2 / 1000 entries"), "{}", stdout(&o));
    let o = run(&["info", n, "--json"]);
    assert!(stdout(&o).contains("\"capacity\":1000"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("\"max_value_len\":64"),
        "{}",
        stdout(&o)
    );

    let o = run(&["verify", n]);
    expect(&o, 0);
    assert!(stdout(&o).contains("ok"), "{}", stdout(&o));

    drop(s);
    let o = run(&["unlink", n]);
    expect(&o, 0);
    expect_error(&run(&["info", n]), "does not exist");
    expect_error(&run(&["unlink", n]), "does not exist");
}

#[test]
fn file_region_lifecycle_and_unlink_safety() {
    let dir = TempDir::new("cli-file");
    let p = dir.file("store");
    let ps = p.to_str().unwrap();
    let o = run(&["create", "--file", ps, "--capacity", "500", "--evict"]);
    expect(&o, 0);
    assert!(
        stdout(&o).contains("when full:     evict"),
        "{}",
        stdout(&o)
    );
    expect(&run(&["set", "--file", ps, "k", "v"]), 0);
    // The contents are in the file: a later process sees them.
    assert_eq!(
        Store::open_file(&p).unwrap().get(b"k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
    expect(&run(&["verify", "--file", ps]), 0);

    // `unlink --file` refuses to delete a file that is not a shmstate region...
    let other = dir.file("precious.txt");
    write_file(&other, b"not a store, keep me\n");
    expect_error(
        &run(&["unlink", "--file", other.to_str().unwrap()]),
        "use --force",
    );
    assert!(other.exists());
    // ...unless forced.
    expect(
        &run(&["unlink", "--file", other.to_str().unwrap(), "--force"]),
        0,
    );
    assert!(!other.exists());

    expect(&run(&["unlink", "--file", ps]), 0);
    assert!(!p.exists());
}

#[test]
fn missing_foreign_and_incompatible_regions_are_clear_errors() {
    let dir = TempDir::new("cli-bad");
    let missing = ShmName::new("cli-missing");
    expect_error(&run(&["info", &missing.0]), "does not exist");
    expect_error(&run(&["get", &missing.0, "k"]), "does not exist");
    let nofile = dir.file("nothing-here");
    expect_error(
        &run(&["stats", "--file", nofile.to_str().unwrap()]),
        "does not exist",
    );
    expect_error(&run(&["info", "a/b"]), "invalid shm name");

    // Random bytes.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..65_536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let foreign = dir.file("random");
    write_file(&foreign, &random);
    let fs = foreign.to_str().unwrap();
    for cmd in [
        &["info", "--file", fs][..],
        &["stats", "--file", fs, "--prometheus"],
        &["verify", "--file", fs],
        &["keys", "--file", fs],
        &["watch", "--file", fs, "--count", "1"],
    ] {
        expect_error(&run(cmd), "not a shmstate region");
    }

    // A real region from "another format version".
    let good = dir.file("good");
    drop(Store::create_file(&good, &Config::new().capacity(100)).unwrap());
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    let v99 = dir.file("v99");
    write_file(&v99, &bytes);
    let o = run(&["info", "--file", v99.to_str().unwrap()]);
    expect_error(&o, "format version 99");
    assert!(stderr(&o).contains("incompatible"), "{}", stderr(&o));
}

#[test]
fn verify_reports_problems_with_exit_1() {
    let name = ShmName::new("cli-verify");
    let s = Store::create(
        &name.0,
        &Config::new().capacity(100).shards(1).max_value_len(32),
    )
    .unwrap();
    for i in 0..20u32 {
        s.set(&i.to_le_bytes(), b"value", None).unwrap();
    }
    expect(&run(&["verify", &name.0]), 0);
    // Same technique as tests/api.rs: find live slot headers (seq 2, key_len 4, val_len 5)
    // and make their value length impossible.
    // SAFETY: the test deliberately corrupts the region; no reference into it outlives this
    // block and every access is within the mapping's length.
    let hits = unsafe {
        let (base, len) = s.raw_region();
        let region = std::slice::from_raw_parts_mut(base, len);
        let pattern = [2u8, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0];
        let mut hits = 0;
        for off in (0..len - 12).step_by(8) {
            if region[off..off + 12] == pattern {
                region[off + 8..off + 12].copy_from_slice(&u32::MAX.to_le_bytes());
                hits += 1;
            }
        }
        hits
    };
    assert!(hits > 0);
    let o = run(&["verify", &name.0]);
    expect(&o, 1);
    assert!(stdout(&o).contains("problems"), "{}", stdout(&o));
    assert!(stdout(&o).contains("ValueTooLong"), "{}", stdout(&o));
}

#[test]
fn keys_are_bounded_and_paginated() {
    let name = ShmName::new("cli-keys");
    let s = Store::create(&name.0, &Config::new().capacity(2000).max_key_len(32)).unwrap();
    for i in 0..25 {
        s.set(format!("user:{i}").as_bytes(), b"v", None).unwrap();
        s.set(format!("sess:{i}").as_bytes(), b"v", None).unwrap();
    }
    s.set(b"bin\n\xff", b"v", None).unwrap();

    // One page of at most 10, with a cursor to continue from.
    let o = run(&["keys", &name.0, "user:", "--limit", "10"]);
    expect(&o, 0);
    assert_eq!(stdout(&o).lines().count(), 10, "{}", stdout(&o));
    assert!(stderr(&o).contains("--cursor"), "{}", stderr(&o));

    // Following the cursors yields every matching key exactly once.
    let mut seen = Vec::new();
    let mut cursor = "0".to_owned();
    for _ in 0..100 {
        let o = run(&[
            "keys", &name.0, "user:", "--limit", "7", "--cursor", &cursor,
        ]);
        expect(&o, 0);
        seen.extend(stdout(&o).lines().map(str::to_owned));
        let err = stderr(&o);
        match err.split("--cursor ").nth(1) {
            Some(c) => cursor = c.trim().to_owned(),
            None => break,
        }
    }
    seen.sort();
    let mut want: Vec<String> = (0..25).map(|i| format!("user:{i}")).collect();
    want.sort();
    assert_eq!(seen, want);

    // Without a prefix, everything (51 keys fit the default limit of 100); binary bytes are
    // escaped, one key per line.
    let o = run(&["keys", &name.0]);
    expect(&o, 0);
    let all = stdout(&o);
    assert_eq!(all.lines().count(), 51, "{all}");
    assert!(all.lines().any(|l| l == "bin\\x0a\\xff"), "{all}");
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    expect_error(&run(&["keys", &name.0, "--limit", "0"]), "--limit");
}

#[test]
fn watch_is_bounded_and_sees_traffic() {
    let name = ShmName::new("cli-watch");
    let s = Store::create(&name.0, &Config::new().capacity(1000)).unwrap();
    s.set(b"k", b"v", None).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Traffic while watching: bounded by a flag and by count.
    let traffic = {
        let (s, done) = (s.clone(), done.clone());
        std::thread::spawn(move || {
            for _ in 0..5_000_000u64 {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let _ = s.get(b"k");
            }
        })
    };
    let t = Instant::now();
    let o = run(&["watch", &name.0, "--interval", "100ms", "--count", "3"]);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    traffic.join().unwrap();
    expect(&o, 0);
    assert!(t.elapsed() < Duration::from_secs(30));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}"); // header + 3 refreshes
    assert!(lines[0].contains("ops/s") && lines[0].contains("recovered"));
    // Some refresh saw the reader's lookups, all hits.
    assert!(
        lines[1..].iter().any(|l| {
            let mut f = l.split_whitespace();
            f.next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) > 0.0
                && f.next() == Some("100.0%")
        }),
        "{out}"
    );
    expect_error(&run(&["watch", &name.0, "--count", "0"]), "--count");
}
