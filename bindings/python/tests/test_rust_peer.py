"""A region shared by a Python process and a Rust process sees the same values.

The Rust side is tests/rust_peer.rs (a plain program on the same core crate), built with
`cargo build --release --example rust_peer` unless SHMSTATE_RUST_PEER names the binary.
"""

import os
import subprocess
from pathlib import Path

import pytest

import shmstate
from test_memory import pattern

HERE = Path(__file__).resolve().parent
CRATE = HERE.parent


@pytest.fixture(scope="module")
def peer_path():
    path = os.environ.get("SHMSTATE_RUST_PEER")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR", str(CRATE / "target"))
        subprocess.run(
            ["cargo", "build", "--release", "--quiet", "--example", "rust_peer"],
            cwd=CRATE,
            check=True,
            timeout=900,
            env={**os.environ, "CARGO_TARGET_DIR": target},
        )
        path = os.path.join(target, "release", "examples", "rust_peer")
    assert os.access(path, os.X_OK), path
    return path


@pytest.fixture
def peer(peer_path):
    def run(*args, check=True):
        p = subprocess.run([peer_path, *map(str, args)], capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError("rust_peer %s: exit %d: %s" % (args, p.returncode, p.stderr))
        return p

    return run


def test_python_writes_rust_reads(peer, region_name):
    store = shmstate.Store.create(region_name, capacity=1000)
    store.set("greeting", "h\u00e9llo from Python")
    store.set(b"short", b"lived", ttl=30)
    store.incr("n", 41)
    assert peer(region_name, "get", "greeting").stdout == "h\u00e9llo from Python\n"
    assert peer(region_name, "get", "n").stdout == "41\n"
    assert peer(region_name, "get", "missing", check=False).returncode == 1
    assert 29_000 < int(peer(region_name, "ttl", "short").stdout) <= 30_000
    assert peer(region_name, "ttl", "greeting").stdout == "none\n"
    assert peer(region_name, "incr", "n", 1, 1).stdout == "42\n"
    assert store.get("n") == b"42"
    assert peer(region_name, "verify").returncode == 0


def test_rust_writes_python_reads(peer, region_name):
    store = shmstate.Store.create(region_name, capacity=1000)
    peer(region_name, "set", "from-rust", "bonjour", 60_000)
    assert store.get("from-rust") == b"bonjour"
    assert 59 < store.ttl("from-rust") <= 60
    peer(region_name, "counter", "hits", 5, 3)
    assert store.counter("hits").value == 15
    assert store.counters() == {"hits": 15}
    assert store.verify()


def test_concurrent_increments_from_both_languages(peer_path, region_name):
    store = shmstate.Store.create(region_name, capacity=1000)
    n = 20_000
    rust = [
        subprocess.Popen(
            [peer_path, region_name, "incr", "total", "1", str(n)], stdout=subprocess.DEVNULL
        )
        for _ in range(2)
    ]
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                for _ in range(n):
                    store.incr("total")
            finally:
                os._exit(0)
        pids.append(pid)
    try:
        for p in rust:
            p.wait(120)
            assert p.returncode == 0
    finally:
        for p in rust:
            if p.poll() is None:
                p.kill()
                p.wait()
        for pid in pids:
            os.waitpid(pid, 0)
    assert store.get("total") == b"%d" % (4 * n)


def test_lock_held_by_rust_is_respected(peer_path, region_name):
    store = shmstate.Store.create(region_name, capacity=1000)
    first = store.try_lock("job", 10)
    fence = first.fence
    first.release()
    p = subprocess.Popen([peer_path, region_name, "lock", "job", "2000"], stdout=subprocess.PIPE, text=True)
    try:
        rust_fence = int(p.stdout.readline())
        assert rust_fence > fence
        assert store.try_lock("job", 10) is None  # held by the Rust process
        assert store.lock_holder("job").pid == p.pid
        lk = store.lock("job", 10, wait=10)  # released by Rust after ~1 s
        assert lk.fence > rust_fence
        lk.release()
    finally:
        p.wait(30)
    assert p.returncode == 0


def test_values_of_every_size_cross_languages(peer, region_name):
    """Values in the heap (past 24 bytes, up to 1 MiB) written by one language are read back
    exactly by the other; rewrites and deletes are seen too."""
    store = shmstate.Store.create(region_name, memory=8 << 20)
    sizes = [0, 24, 25, 200, 2048, 4096, 4097, 40_000, 65_536, 1 << 20]
    for i, n in enumerate(sizes):
        store.set("py%d" % n, pattern(n, i))
    for i, n in enumerate(sizes):
        assert peer(region_name, "check", "py%d" % n, n, i).stdout == "ok\n", n
        peer(region_name, "fill", "rust%d" % n, n, i + 50)
    for i, n in enumerate(sizes):
        assert store.get("rust%d" % n) == pattern(n, i + 50), n
    store.set("py4097", pattern(100, 7))
    store.delete("py2048")
    assert peer(region_name, "check", "py4097", 100, 7).stdout == "ok\n"
    assert peer(region_name, "check", "py2048", 2048, 4).stdout == "absent\n"
    # The check can fail: a wrong seed or length is reported.
    assert peer(region_name, "check", "py40000", 40_000, 8).stdout == "differs at byte 0\n"
    assert peer(region_name, "check", "py40000", 40_001, 7).stdout == "length 40000\n"
    assert peer(region_name, "verify").returncode == 0
    heap = sum(n for n in sizes if n > 24)
    assert store.stats()["value_bytes"] == 2 * heap - 2048 - 4097 + 100
    assert store.verify()
