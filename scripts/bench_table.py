#!/usr/bin/env python3
"""Prints the markdown table of the last `cargo bench --bench ops` run (criterion's estimates),
with each shmstate operation next to the in-process baseline measured in the same run."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion") / "single_process"

def ns(name):
    f = root / name / "new" / "estimates.json"
    if not f.exists():
        return None
    return json.loads(f.read_text())["median"]["point_estimate"]

rows = [
    ("`Counter::add`", "counter_add", "`AtomicI64::fetch_add` on a shared page", "baseline_atomic_fetch_add_shared"),
    ("`get_into` hit", "get_into_hit_16B_256B", "`Mutex<HashMap>` get + clone", "baseline_mutex_hashmap_get_clone"),
    ("`get` hit (allocates)", "get_hit_alloc_16B_256B", "`Mutex<HashMap>` get + clone", "baseline_mutex_hashmap_get_clone"),
    ("`get` miss", "get_miss", None, None),
    ("`set` update", "set_update_256B", "`Mutex<HashMap>` insert", "baseline_mutex_hashmap_insert"),
    ("`set` insert + `delete`", "set_insert_then_delete_256B", None, None),
    ("`incr`", "incr", None, None),
    ("`compare_and_swap`", "compare_and_swap_256B", None, None),
]
print("| operation | shmstate ns/op | baseline | baseline ns/op | ratio |")
print("|---|---:|---|---:|---:|")
for label, name, blabel, bname in rows:
    v = ns(name)
    if v is None:
        continue
    b = ns(bname) if bname else None
    if b:
        print(f"| {label} | {v:.1f} | {blabel} | {b:.1f} | {v / b:.2f}x |")
    else:
        print(f"| {label} | {v:.1f} | | | |")
