"""The value heap from Python: a store sized in bytes (``memory=``), values of every size up to
the 1 MiB default limit, the heap statistics, and what a full heap does (``Full``, or
eviction)."""

import time

import pytest

import shmstate
from shmstate import Store

MiB = 1 << 20

# pattern(): byte i is (131 i + 7 seed + i // 512) mod 256. Within a 512-byte block the
# i // 512 term is constant and 131 i mod 256 repeats, so a value is a join of 512-byte rows.
_ROWS = [bytes((131 * j + s) & 0xFF for j in range(512)) for s in range(256)]


def pattern(length, seed):
    """``length`` bytes that depend on ``seed`` and on each byte's position (a misplaced
    block shows); tests/rust_peer.rs makes the same bytes."""
    blocks = (length + 511) // 512
    return b"".join(_ROWS[(7 * seed + k) & 0xFF] for k in range(blocks))[:length]


def test_pattern_is_the_documented_formula():
    for n, seed in [(0, 0), (1, 3), (513, 1), (5000, 77)]:
        assert pattern(n, seed) == bytes((i * 131 + seed * 7 + (i >> 9)) & 0xFF for i in range(n))


def check_heap_stats(st, value_bytes, max_value_len):
    """The heap statistics agree with each other and with what the test stored."""
    assert st["value_bytes"] == value_bytes, "the sum of the lengths of the values past 24 bytes"
    assert 0 < st["heap_bytes"] < st["region_bytes"]
    assert st["heap_free_bytes"] <= st["heap_bytes"] - st["value_bytes"]
    assert st["heap_partial_free_bytes"] <= st["heap_free_bytes"]
    assert 0 <= st["largest_value"] <= max_value_len
    assert isinstance(st["fragmentation"], float)
    expected = st["heap_partial_free_bytes"] / st["heap_free_bytes"] if st["heap_free_bytes"] else 0.0
    assert st["fragmentation"] == pytest.approx(expected)
    assert 0.0 <= st["fragmentation"] <= 1.0
    for k, v in st.items():
        if k != "fragmentation":
            assert isinstance(v, int), k


SIZES = [0, 1, 7, 8, 23, 24, 25, 100, 255, 256, 1000, 2048, 2049, 4095, 4096, 4097, 16384,
         65536, 65537, 300_000, MiB]


def heap_bytes_of(sizes):
    return sum(n for n in sizes if n > 24)


def test_memory_sized_store_holds_every_size_up_to_1_mib(region_name):
    s = Store.open_or_create(region_name, memory=16 * MiB)
    assert 15 * MiB < s.region_bytes <= 16 * MiB
    assert s.capacity == 16 * 1024  # one entry per KiB of memory
    t = Store.open_or_create(region_name, memory=16 * MiB)  # same options: the same region
    empty = t.stats()
    check_heap_stats(empty, 0, MiB)
    assert empty["heap_free_bytes"] == empty["heap_bytes"]
    assert empty["largest_value"] == MiB  # the default max_value_len, and it fits

    for i, n in enumerate(SIZES):
        s.set("v%d" % n, pattern(n, i))
    for i, n in enumerate(SIZES):
        assert t.get("v%d" % n) == pattern(n, i), n
        assert "v%d" % n in t
    assert t.get_many(["v%d" % n for n in SIZES]) == {"v%d" % n: pattern(n, i) for i, n in enumerate(SIZES)}
    check_heap_stats(t.stats(), heap_bytes_of(SIZES), MiB)
    assert len(t) == len(SIZES)

    text = "\u00e9\u20ac\U0001f980" * 40_000  # 360 000 bytes of UTF-8
    s.set("text", text, ttl=60)
    assert t.get("text") == text.encode()
    assert 59 < t.ttl("text") <= 60
    s.set("ba", bytearray(pattern(70_000, 5)))
    assert t["ba"] == pattern(70_000, 5)

    # Every key rewritten with another size (growing, shrinking, inline <-> heap).
    swapped = SIZES[::-1]
    for i, n in enumerate(SIZES):
        t.set("v%d" % n, pattern(swapped[i], i + 100))
    for i, n in enumerate(SIZES):
        assert s.get("v%d" % n) == pattern(swapped[i], i + 100)
    check_heap_stats(s.stats(), heap_bytes_of(SIZES) + 360_000 + 70_000, MiB)
    assert s.verify()

    assert not s.compare_and_swap("v0", pattern(MiB, 99), b"x")
    assert s.compare_and_swap("v0", pattern(MiB, 100), b"x")
    assert s.get("v0") == b"x"

    with pytest.raises(shmstate.ValueTooLarge) as ei:
        s.set("too-big", bytes(MiB + 1))
    assert (ei.value.len, ei.value.max) == (MiB + 1, MiB)
    assert "too-big" not in s

    for n in SIZES:
        assert s.delete("v%d" % n)
    assert s.delete("text") and s.delete("ba")
    after = s.stats()
    check_heap_stats(after, 0, MiB)
    assert after["heap_free_bytes"] == after["heap_bytes"], "no heap space leaked"
    assert len(s) == 0 and s.verify()

    with pytest.raises(shmstate.Incompatible):
        Store.open_or_create(region_name, memory=32 * MiB)


def test_max_value_len_up_to_the_core_limit():
    top = 2 * MiB - 16 * 1024
    s = Store.anonymous(memory=8 * MiB, max_value_len=top)
    s.set("max", pattern(top, 3))
    assert s.get("max") == pattern(top, 3)
    with pytest.raises(shmstate.ValueTooLarge):
        s.set("max", bytes(top + 1))
    assert s.get("max") == pattern(top, 3)  # a refused write leaves the old value
    check_heap_stats(s.stats(), top, top)
    with pytest.raises(shmstate.InvalidConfig):
        Store.anonymous(max_value_len=top + 1)


# A small heap: 2 MiB in all, one shard, values up to 64 KiB, room for 1000 entries (so the
# heap, not the index, runs out).
SMALL = dict(memory=2 * MiB, shards=1, capacity=1000, max_key_len=16, max_value_len=64 * 1024)
BIG = 60 * 1024


def fill(s, ttl=None):
    """Sets 60 KiB values k0, k1, ... until the store raises Full; returns how many it took."""
    for i in range(200):
        try:
            s.set("k%d" % i, pattern(BIG, i), ttl)
        except shmstate.Full as e:
            assert not isinstance(e, ValueError)
            return i
    pytest.fail("a 2 MiB heap took 200 values of 60 KiB")


def test_full_heap_raises_full_and_loses_nothing():
    s = Store.anonymous(**SMALL)
    heap = s.stats()["heap_bytes"]
    n = fill(s)
    assert n * BIG >= 0.75 * heap, (n, heap)
    st = s.stats()
    assert st["entries"] == n and st["full_refusals"] >= 1
    assert st["largest_value"] < BIG
    check_heap_stats(st, n * BIG, 64 * 1024)
    assert s.get("k%d" % n) is None  # not stored, not even in part
    for i in range(n):
        assert s.get("k%d" % i) == pattern(BIG, i)

    # Growing a value in a full heap: it either happens or leaves the old value.
    try:
        s.set("k0", pattern(64 * 1024, 500))
        assert s.get("k0") == pattern(64 * 1024, 500)
    except shmstate.Full:
        assert s.get("k0") == pattern(BIG, 0)
    # Values of up to 24 bytes live in the slot: a full heap does not refuse them.
    s.set("tiny", b"fits in the slot")
    assert s.get("tiny") == b"fits in the slot"
    # add() and incr() on a full heap: refused or done, never partial.
    with pytest.raises(shmstate.Full):
        s.add("another", pattern(BIG, 9))
    assert "another" not in s
    assert s.incr("count") == 1

    assert s.delete("k1")
    s.set("k%d" % n, pattern(BIG, n))
    assert s.get("k%d" % n) == pattern(BIG, n)
    assert s.verify()


def test_expired_values_make_room():
    s = Store.anonymous(**SMALL)
    n = fill(s, ttl=0.03)
    assert n > 10
    time.sleep(0.08)
    for i in range(n):
        s.set("new%d" % i, pattern(BIG, 1000 + i))
    for i in range(n):
        assert s.get("new%d" % i) == pattern(BIG, 1000 + i)
    assert s.get("k0") is None
    assert s.stats()["expirations"] >= 1
    assert s.verify()


def test_evict_makes_heap_room():
    s = Store.anonymous(when_full="evict", **SMALL)
    for i in range(150):
        s.set("k%d" % i, pattern(BIG, i))
    st = s.stats()
    assert st["evictions"] > 0 and st["full_refusals"] == 0
    assert s.get("k149") == pattern(BIG, 149)
    present = 0
    for i in range(150):
        v = s.get("k%d" % i)
        if v is not None:
            assert v == pattern(BIG, i)
            present += 1
    assert present == st["entries"]
    assert s.verify()


@pytest.mark.parametrize(
    "options, exc",
    [
        ({"memory": "64m"}, TypeError),
        ({"memory": 1.5}, TypeError),
        ({"memory": True}, TypeError),
        ({"memory": None}, TypeError),
        ({"memory": -1}, ValueError),
        ({"memory": 2**64}, ValueError),
        ({"memory": 2**41}, shmstate.InvalidConfig),
        ({"memory": 0}, shmstate.InvalidConfig),
        ({"memory": 4096}, shmstate.InvalidConfig),
        ({"memory": MiB, "capacity": 1_000_000}, shmstate.InvalidConfig),
        ({"memory": 2 * MiB, "shards": 64}, shmstate.InvalidConfig),
    ],
    ids=repr,
)
def test_bad_memory(options, exc):
    with pytest.raises(exc) as ei:
        Store.anonymous(**options)
    if exc is shmstate.InvalidConfig:
        assert ei.value.field == "memory"
