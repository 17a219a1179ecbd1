//! The kill -9 torture soak (see `common/torture.rs`), CI length: workers on a hot keyset,
//! random SIGKILLs, and lock holders parked at failpoints and killed. About 20 s on an
//! anonymous region, then 5 s each on a region file and a named shm object that every worker
//! opens itself, and 5 s with workers also calling `clear()`; each bounded by time and by an
//! operation budget. `SHMSTATE_TORTURE_SECONDS`
//! overrides the time of each.
//! `harness = false`: the process is single-threaded when it forks.

#[path = "common/forked.rs"]
#[allow(dead_code)]
mod forked;
#[path = "common/torture.rs"]
mod torture;

use std::time::Duration;

use torture::{check_conserved, check_value, make_value, Backing, Params};

type TestFn = fn();

fn main() {
    let tests: &[(&str, TestFn)] = &[
        ("checkers_reject_bad_data", checkers_reject_bad_data),
        ("soak", soak),
        ("soak_file_region", soak_file_region),
        ("soak_named_region", soak_named_region),
        ("soak_with_clears", soak_with_clears),
    ];
    forked::run_all("torture", tests);
}

/// The soak's own checks can fail: a torn, truncated or misplaced value and an out-of-range
/// counter are caught.
fn checkers_reject_bad_data() {
    let v = make_value(b"k:01", 7 << 32 | 3, 42, 100);
    assert_eq!(check_value(b"k:01", &v), Ok((7 << 32 | 3, 42)));
    assert!(check_value(b"k:02", &v).is_err(), "another key's value");
    let mut torn = v.clone();
    torn[60] ^= 1;
    assert!(check_value(b"k:01", &torn).is_err(), "a flipped byte");
    let mut mixed = make_value(b"k:01", 9, 43, 100);
    mixed[..40].copy_from_slice(&v[..40]);
    assert!(
        check_value(b"k:01", &mixed).is_err(),
        "half of each of two values"
    );
    assert!(
        check_value(b"k:01", &v[..v.len() - 1]).is_err(),
        "truncated"
    );
    assert!(check_value(b"k:01", b"").is_err(), "empty");
    assert!(check_conserved("c", 10, 10, 0).is_ok());
    assert!(check_conserved("c", 13, 10, 3).is_ok());
    assert!(check_conserved("c", 9, 10, 3).is_err(), "a lost increment");
    assert!(
        check_conserved("c", 14, 10, 3).is_err(),
        "a phantom increment"
    );
}

fn soak() {
    run_soak(Backing::Anonymous, 20);
}

/// The same storm on a region file that every (re)spawned worker opens itself: opening and
/// resolving counters race with the others' writes and with kills.
fn soak_file_region() {
    let path = std::env::temp_dir().join(format!("shmstate-torture-{}.region", std::process::id()));
    run_soak(Backing::File(path), 5);
}

/// The same on a named POSIX shm object.
fn soak_named_region() {
    run_soak(
        Backing::Named(format!("/shmstate-torture-{}", std::process::id())),
        5,
    );
}

/// Workers also call `clear()` and are killed half-way through clearing a shard; the incr and
/// private keys are left out (a clear wipes them), everything else is checked as usual.
fn soak_with_clears() {
    run_soak_with(Backing::Anonymous, 5, true);
}

/// Runs the soak for `default_seconds` (or `SHMSTATE_TORTURE_SECONDS`) and fails on any problem.
fn run_soak(backing: Backing, default_seconds: u64) {
    run_soak_with(backing, default_seconds, false);
}

fn run_soak_with(backing: Backing, default_seconds: u64, clears: bool) {
    let seconds: u64 = match std::env::var("SHMSTATE_TORTURE_SECONDS") {
        Ok(s) => s.parse().expect("SHMSTATE_TORTURE_SECONDS: whole seconds"),
        Err(_) => default_seconds,
    };
    let seed = std::env::var("SHMSTATE_TORTURE_SEED").ok().map_or_else(
        || std::process::id().into(),
        |s| s.parse().expect("SHMSTATE_TORTURE_SEED"),
    );
    let p = Params {
        duration: Duration::from_secs(seconds),
        // The time bound is the one that normally ends the run; this bounds it on a fast
        // machine.
        max_ops: 20_000_000 * seconds.max(1),
        seed,
        backing,
        clears,
        ..Params::default()
    };
    println!("  seed {seed} (SHMSTATE_TORTURE_SEED to repeat the choices)");
    let rep = torture::run(&p);
    rep.print();
    assert!(rep.ok(), "{} problems", rep.problems.len());
}
