#!/usr/bin/env python3
"""Prints markdown tables of the last `cargo bench --bench ops` and `--bench multiproc` runs
(criterion's median estimates), each shmstate figure next to the baselines measured in the same
run, with ratios.

    python3 scripts/bench_table.py [target/criterion]
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def est(group, *bench):
    f = root.joinpath(group, *bench, "new", "estimates.json")
    if not f.exists():
        return None
    return json.loads(f.read_text())["median"]["point_estimate"]


def fmt_ns(v):
    if v is None:
        return "–"
    if v >= 1000:
        return f"{v / 1000:.1f} µs"
    return f"{v:.1f} ns"


def ratio(a, b):
    if a is None or b is None:
        return "–"
    return f"{a / b:.2f}x"


def single():
    print("#### Single process, ns per operation (lower is better)\n")
    print("| table | operation | shmstate | `Mutex<HashMap>` | `DashMap` | shmstate / `Mutex<HashMap>` |")
    print("|---|---|---:|---:|---:|---:|")
    groups = ["small_v16", "small_v256", "small_v4096", "large_v256"]
    for g in groups:
        if not root.joinpath(g).exists():
            continue
        label = g.replace("small_", "1k keys, ").replace("large_", "1M keys, ").replace("v", "value ") + " B"
        rows = [
            ("get hit (copy out)", "get_hit", "baseline_mutex_hashmap_get_copy", "baseline_dashmap_get_copy"),
            ("get miss", "get_miss", None, None),
            ("set (update)", "set_update", "baseline_mutex_hashmap_insert", "baseline_dashmap_insert"),
            ("set (insert) + delete", "set_insert_delete", None, None),
            ("compare_and_swap", "compare_and_swap", None, None),
        ]
        for name, ours, m, d in rows:
            v = est(g, ours)
            if v is None:
                continue
            mv = est(g, m) if m else None
            dv = est(g, d) if d else None
            print(f"| {label} | {name} | {fmt_ns(v)} | {fmt_ns(mv)} | {fmt_ns(dv)} | {ratio(v, mv)} |")
        ref = est(g, "baseline_mutex_hashmap_get_ref")
        if ref is not None:
            print(f"| {label} | (`Mutex<HashMap>` get, no copy) | | {fmt_ns(ref)} | | |")
    c = est("counter", "counter_add")
    a = est("counter", "baseline_atomic_fetch_add_shared")
    if c is not None:
        print(f"| counter | `Counter::add` vs `AtomicI64::fetch_add` on a shared page | {fmt_ns(c)} | {fmt_ns(a)} (atomic) | | {ratio(c, a)} |")
    i = est("counter", "incr")
    if i is not None:
        print(f"| 1k keys | `incr` | {fmt_ns(i)} | | | |")


def remote():
    g = "remote_v256"
    if not root.joinpath(g).exists():
        return
    get = est("small_v256", "get_hit")
    setu = est("small_v256", "set_update")
    print("\n#### Against a server: ns per request, 256-byte values (lower is better)\n")
    print("| baseline | server on the client's core | on the other core | shmstate (same op) | speed-up (same core / other core) |")
    print("|---|---:|---:|---:|---:|")
    rows = [
        ("Redis GET, unix socket", "baseline_redis_unix_get", get),
        ("Redis GET, TCP loopback", "baseline_redis_tcp_get", get),
        ("Redis SET, unix socket", "baseline_redis_unix_set", setu),
        ("Redis INCR, unix socket", "baseline_redis_unix_incr", est("counter", "incr")),
        ("master process + `HashMap`, get", "baseline_coordinator_get", get),
        ("master process + `HashMap`, set", "baseline_coordinator_set", setu),
    ]
    for name, b, ours in rows:
        same = est(g, b, "same_core")
        other = est(g, b, "other_core")
        if same is None and other is None:
            continue
        sp = f"{ratio(same, ours)} / {ratio(other, ours)}"
        print(f"| {name} | {fmt_ns(same)} | {fmt_ns(other)} | {fmt_ns(ours)} | {sp} |")


def multiproc():
    groups = sorted(p.name for p in root.glob("multiproc_*") if p.is_dir())
    if not groups:
        return
    print("\n#### Several processes: aggregate operations per second (higher is better)\n")
    print("| workload | processes | shmstate | Redis (unix) | master process | shmstate / Redis | scaling vs 1 process |")
    print("|---|---:|---:|---:|---:|---:|---:|")

    def ops(g, backend, procs):
        v = est(g, backend, f"{procs}proc")
        return None if v is None else procs * 1e9 / v

    def fmt_ops(v):
        if v is None:
            return "–"
        if v >= 1e6:
            return f"{v / 1e6:.2f} M/s"
        return f"{v / 1e3:.0f} k/s"

    for g in groups:
        one = ops(g, "shmstate", 1)
        for procs in range(1, 17):
            s = ops(g, "shmstate", procs)
            if s is None:
                continue
            r = ops(g, "baseline_redis_unix", procs)
            c = ops(g, "baseline_coordinator", procs)
            scale = ratio(s, one) if procs > 1 else ""
            print(f"| {g.removeprefix('multiproc_')} | {procs} | {fmt_ops(s)} | {fmt_ops(r)} | {fmt_ops(c)} | {ratio(s, r)} | {scale} |")


def primitives():
    if not root.joinpath("primitives").exists():
        return
    print("\n#### Coordination primitives vs their Redis idioms: ns per call (lower is better)\n")
    print("| hot path | shmstate | Redis (unix socket, same core) | Redis idiom | speed-up |")
    print("|---|---:|---:|---|---:|")
    rows = [
        ("try_lock + release", "try_lock + release", "`SET NX PX` + Lua compare-and-delete"),
        ("rate limit: fixed window", "rate limit check_ fixed window", "`MULTI INCR; PEXPIRE NX EXEC`"),
        ("rate limit: GCRA", "rate limit check_ gcra", "Lua GCRA script"),
        ("`get_or_compute` hit", "get_or_compute hit", "`GET`"),
    ]
    for label, name, idiom in rows:
        ours = est("primitives", name)
        theirs = est("primitives_redis", name)
        if ours is None:
            continue
        print(f"| {label} | {fmt_ns(ours)} | {fmt_ns(theirs)} | {idiom} | {ratio(theirs, ours)} |")
    sl = est("primitives", "rate limit check_ sliding window")
    if sl is not None:
        print(f"| rate limit: sliding window | {fmt_ns(sl)} | | | |")


single()
remote()
multiproc()
primitives()
