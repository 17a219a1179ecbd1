"""The key-value API: every operation, the mapping protocol, TTLs, counters, opening regions."""

import math
import os
import pickle
import time
from datetime import timedelta

import pytest

import shmstate
from shmstate import Store


def test_get_set_bytes_and_str(store):
    assert store.get("missing") is None
    assert store.get("missing", b"dflt") == b"dflt"
    store.set("k", b"v")
    assert store.get("k") == b"v"
    assert store.get(b"k") == b"v"  # str keys are their UTF-8 bytes
    store.set(b"\xff\x00bin", "h\u00e9llo")  # str values are stored as UTF-8
    assert store.get(b"\xff\x00bin") == "h\u00e9llo".encode()
    store.set("ba", bytearray(b"xyz"))
    assert store.get(bytearray(b"ba")) == b"xyz"
    assert isinstance(store.get("k"), bytes)
    store.set("empty", b"")
    assert store.get("empty") == b""


def test_get_returns_a_copy(store):
    store.set("k", b"one")
    v = store.get("k")
    store.set("k", b"two")
    assert v == b"one"  # not a view into the shared region


def test_mapping_protocol(store):
    store["a"] = "1"
    assert store["a"] == b"1"
    assert "a" in store and b"a" in store and "b" not in store
    with pytest.raises(KeyError):
        store["b"]
    del store["a"]
    with pytest.raises(KeyError):
        del store["a"]
    store["x"] = b"1"
    store["y"] = b"2"
    assert len(store) == 2


def test_add_replace_delete(store):
    assert store.add("k", b"1") is True
    assert store.add("k", b"2") is False
    assert store.get("k") == b"1"
    assert store.replace("k", b"3") is True
    assert store.replace("nope", b"3") is False
    assert "nope" not in store
    assert store.get("k") == b"3"
    assert store.delete("k") is True
    assert store.delete("k") is False


def test_compare_and_swap(store):
    assert store.compare_and_swap("leader", None, b"w1") is True  # create if absent
    assert store.compare_and_swap("leader", None, b"w2") is False
    assert store.compare_and_swap("leader", b"w2", b"w3") is False
    assert store.compare_and_swap("leader", "w1", "w3") is True  # set if equal
    assert store.get("leader") == b"w3"
    assert store.compare_and_swap("leader", b"w3", None) is True  # delete if equal
    assert "leader" not in store
    assert store.compare_and_swap("t", None, b"x", ttl=60) is True
    assert 59 < store.ttl("t") <= 60


def test_incr_decr(store):
    assert store.incr("n") == 1
    assert store.incr("n", 41) == 42
    assert store.get("n") == b"42"  # decimal ASCII, as Redis
    assert store.decr("n") == 41
    assert store.decr("n", 50) == -9
    assert store.incr("n", -(2**63) + 9) == -(2**63)
    with pytest.raises(shmstate.Overflow):
        store.decr("n")
    assert store.get("n") == str(-(2**63)).encode()  # unchanged
    store.set("s", b"10")
    assert store.incr("s", 5) == 15
    store.set("word", b"ten")
    with pytest.raises(shmstate.NotAnInteger) as ei:
        store.incr("word")
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, shmstate.Error)
    assert store.incr("fresh", 3, ttl=30) == 3
    assert 29 < store.ttl("fresh") <= 30
    store.incr("fresh")  # an existing key keeps its TTL
    assert 29 < store.ttl("fresh") <= 30


def test_ttl_and_expire(store):
    assert store.ttl("missing") is None
    store.set("forever", b"v")
    assert store.ttl("forever") == math.inf
    store.set("short", b"v", ttl=0.2)
    assert 0 < store.ttl("short") <= 0.2
    store.set("td", b"v", ttl=timedelta(minutes=2))
    assert 119 < store.ttl("td") <= 120
    assert store.expire("forever", 10) is True
    assert 9 < store.ttl("forever") <= 10
    assert store.persist("forever") is True
    assert store.ttl("forever") == math.inf
    assert store.expire("forever", None) is True
    assert store.expire("missing", 10) is False
    deadline = time.monotonic() + 5
    while "short" in store and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.get("short") is None
    assert store.ttl("short") is None


def test_set_replaces_ttl(store):
    store.set("k", b"v", ttl=5)
    store.set("k", b"v2")
    assert store.ttl("k") == math.inf


def test_get_many(store):
    store.set("a", b"1")
    store.set(b"b", b"2")
    assert store.get_many(["a", b"b", "c"]) == {"a": b"1", b"b": b"2"}
    assert store.get_many(iter([])) == {}


def test_clear_scan_keys_delete_prefix(store):
    for i in range(50):
        store.set("user:%d" % i, b"x")
    for i in range(10):
        store.set("other:%d" % i, b"y")
    assert sorted(store.keys("user:")) == sorted(("user:%d" % i).encode() for i in range(50))
    assert len(list(store.keys())) == 60
    seen, cursor = [], 0
    for _ in range(10_000):
        page, cursor = store.scan(cursor, "other:", 3)
        seen.extend(page)
        if cursor is None:
            break
    assert sorted(seen) == sorted(("other:%d" % i).encode() for i in range(10))
    assert store.delete_prefix("other:") == 10
    assert len(store) == 50
    store.set("gone", b"1", ttl=0.05)
    time.sleep(0.1)
    assert store.flush_expired() == 1
    store.counter("survives").add(5)
    generation = store.generation
    assert store.clear() == 50
    assert store.generation == generation + 1
    assert len(store) == 0
    assert store.counter("survives").value == 5  # counters are kept


def test_counters(store):
    c = store.counter("http.requests")
    assert c.name == "http.requests"
    assert c.add() == 1
    assert c.add(9) == 10
    assert c.value == 10 and c.get() == 10 and int(c) == 10
    assert store.counter("http.requests").value == 10  # same counter
    assert c.swap(3) == 10
    assert c.fetch_max(7) == 3
    assert c.value == 7
    c.set(-5)
    assert c.value == -5
    c.set(2**63 - 1)
    assert c.add() == -(2**63)  # wraps, one atomic instruction
    assert store.counters() == {"http.requests": -(2**63)}
    with pytest.raises(shmstate.InvalidCounterName):
        store.counter("")
    assert "http.requests" in repr(c)


def test_stats_verify_prometheus(store):
    store.set("a", b"1")
    store.get("a")
    store.get("b")
    s = store.stats()
    assert s["entries"] == 1 and s["sets"] >= 0 and s["hits"] >= 1 and s["misses"] >= 1
    assert s["capacity"] == 1000 and s["region_bytes"] == store.region_bytes
    report = store.verify()
    assert report and report.ok and report.problems == [] and report.entries == 1
    assert "ok" in str(report)
    text = store.prometheus()
    assert "shmstate_entries" in text
    assert shmstate.PROMETHEUS_CONTENT_TYPE.startswith("text/plain")


def test_full_and_limits():
    s = Store.anonymous(capacity=10, max_key_len=8, max_value_len=4)
    with pytest.raises(shmstate.KeyTooLong) as ei:
        s.set("k" * 9, b"v")
    assert (ei.value.len, ei.value.max) == (9, 8)
    with pytest.raises(shmstate.ValueTooLarge) as ei:
        s.set("k", b"12345")
    assert (ei.value.len, ei.value.max) == (5, 4)
    with pytest.raises(shmstate.Full):
        for i in range(10_000):
            s.set("k%d" % i, b"v")
    assert s.verify()
    evicting = Store.anonymous(capacity=10, when_full="evict")
    for i in range(1000):
        evicting.set("k%d" % i, b"v")
    assert 0 < len(evicting) < 1000
    assert evicting.stats()["evictions"] > 0


def test_named_store(region_name):
    a = Store.create(region_name, capacity=100, max_value_len=32)
    b = Store.open(region_name)
    a.set("k", b"v")
    assert b.get("k") == b"v"
    assert a.origin == ("shm", region_name)
    with pytest.raises(shmstate.AlreadyExists) as ei:
        Store.create(region_name)
    assert isinstance(ei.value, FileExistsError)
    c = Store.open_or_create(region_name, capacity=100, max_value_len=32)
    assert c.get("k") == b"v"
    with pytest.raises(shmstate.Incompatible) as ei:
        Store.open_or_create(region_name, capacity=200, max_value_len=32)
    assert ei.value.field == "capacity"
    Store.unlink(region_name)
    assert a.get("k") == b"v"  # still mapped
    with pytest.raises(shmstate.NotFound) as ei:
        Store.open(region_name)
    assert isinstance(ei.value, FileNotFoundError)
    with pytest.raises(shmstate.NotFound):
        Store.unlink(region_name)


def test_file_store(tmp_path):
    path = tmp_path / "region"
    s = Store.create_file(path, capacity=100)
    s.set("k", b"v", ttl=3600)
    s.counter("c").add(3)
    assert s.origin == ("file", str(path))
    del s
    t = Store.open_file(str(path))  # str or PathLike
    assert t.get("k") == b"v" and 3599 < t.ttl("k") <= 3600
    assert t.counter("c").value == 3
    u = Store.open_or_create_file(path, capacity=100)
    assert u.get("k") == b"v"
    with pytest.raises(shmstate.NotFound):
        Store.open_file(tmp_path / "nope")
    (tmp_path / "junk").write_bytes(b"not a region" * 1000)
    os.chmod(tmp_path / "junk", 0o600)
    with pytest.raises(shmstate.Incompatible):
        Store.open_file(tmp_path / "junk")


def test_insecure_file_refused(tmp_path):
    path = tmp_path / "region"
    Store.create_file(path, capacity=10)
    os.chmod(path, 0o666)
    with pytest.raises(shmstate.Insecure) as ei:
        Store.open_file(path)
    assert isinstance(ei.value, PermissionError)


def test_pickle_named_and_anonymous(region_name, store):
    s = Store.open_or_create(region_name)
    s.set("k", b"v")
    t = pickle.loads(pickle.dumps(s))
    assert t.get("k") == b"v" and t.origin == ("shm", region_name)
    with pytest.raises(TypeError, match="anonymous"):
        pickle.dumps(store)


def test_exceptions_pickle_and_hierarchy(store):
    with pytest.raises(shmstate.KeyTooLong) as ei:
        store.get("x" * 65)
    e = pickle.loads(pickle.dumps(ei.value))
    assert type(e) is shmstate.KeyTooLong and e.max == 64
    for name in shmstate._errors.__all__:
        assert issubclass(getattr(shmstate, name), shmstate.Error)
    assert issubclass(shmstate.LockTimeout, TimeoutError)
    assert issubclass(shmstate.CacheTimeout, TimeoutError)


def test_repr_and_module_constants(store):
    assert "anonymous" in repr(store)
    assert isinstance(shmstate.FORMAT_VERSION, int)
    assert "capacity" in shmstate.OPTIONS and "when_full" in shmstate.OPTIONS
    assert shmstate.__version__


def test_threads_share_a_store(store):
    import threading

    def work():
        for _ in range(2000):
            store.incr("n")
            store.counter("c").add()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert store.get("n") == b"8000"
    assert store.counter("c").value == 8000
