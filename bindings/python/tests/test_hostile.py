"""The region is untrusted input: garbage written over a region file makes operations raise
shmstate errors (or succeed), never crash or hang the interpreter."""

import os
import random
import subprocess
import sys
import textwrap

import pytest

import shmstate

CHILD = textwrap.dedent(
    """
    import sys, shmstate
    try:
        s = shmstate.Store.open_file(sys.argv[1])
    except shmstate.Error as e:
        print("open:", type(e).__name__)
        sys.exit(0)
    errors = {}
    def attempt(fn, *args):
        try:
            fn(*args)
        except shmstate.Error as e:
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
    for i in range(300):
        k = "key:%d" % i
        attempt(s.get, k)
        attempt(s.set, k, b"v" * (i % 64))
        attempt(s.incr, "n:%d" % i)
        attempt(s.ttl, k)
        attempt(s.delete, k)
        attempt(s.compare_and_swap, k, None, b"x")
    attempt(lambda: list(s.keys()))
    attempt(s.counters)
    attempt(s.counter, "c")
    attempt(s.flush_expired)
    attempt(s.stats)
    report = None
    try:
        report = s.verify()
    except shmstate.Error as e:
        errors[type(e).__name__] = 1
    attempt(s.clear)
    print("errors:", errors, "verify:", None if report is None else report.ok)
    """
)


@pytest.mark.parametrize("seed", range(6))
def test_scribbled_region_file(tmp_path, seed):
    path = tmp_path / "region"
    s = shmstate.Store.create_file(path, capacity=500, max_value_len=64, lock_timeout=1)
    for i in range(200):
        s.set("key:%d" % i, b"value %d" % i, ttl=3600 if i % 2 else None)
    s.counter("c").add(5)
    del s
    size = os.path.getsize(path)
    rnd = random.Random(seed)
    with open(path, "r+b") as f:
        for _ in range(200):
            # Anywhere but the first 64 bytes (magic and version: that case is "Incompatible").
            off = rnd.randrange(64, size - 8)
            f.seek(off)
            f.write(bytes(rnd.randrange(256) for _ in range(rnd.choice([1, 4, 8]))))
    p = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, "crashed (exit %d): %s" % (p.returncode, p.stderr[-2000:])
    assert "errors:" in p.stdout or "open:" in p.stdout, p.stdout


def test_header_scribble_is_incompatible(tmp_path):
    path = tmp_path / "region"
    shmstate.Store.create_file(path, capacity=10)
    with open(path, "r+b") as f:
        f.write(b"NOTSHMST")
    with pytest.raises(shmstate.Incompatible):
        shmstate.Store.open_file(path)
