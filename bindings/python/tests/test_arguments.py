"""Bad arguments raise TypeError or ValueError with a clear message; never a crash."""

import math
from datetime import timedelta

import pytest

import shmstate
from shmstate import Store

BAD_KEYS = [None, 1, 1.5, ["k"], object(), memoryview(b"k"), ("k",)]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_wrong_key_type(store, key):
    calls = [
        lambda: store.get(key),
        lambda: store.set(key, b"v"),
        lambda: store.add(key, b"v"),
        lambda: store.replace(key, b"v"),
        lambda: store.delete(key),
        lambda: store.incr(key),
        lambda: store.ttl(key),
        lambda: store.expire(key, 1),
        lambda: store.compare_and_swap(key, None, b"v"),
        lambda: store[key],
        lambda: store.__setitem__(key, b"v"),
        lambda: store.__delitem__(key),
        lambda: key in store,
        lambda: store.get_many([key]),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="key must be str or bytes"):
            call()


@pytest.mark.parametrize("value", [None, 1, 2.5, [b"v"], {"a": 1}], ids=repr)
def test_wrong_value_type(store, value):
    with pytest.raises(TypeError, match="value must be str or bytes"):
        store.set("k", value)
    with pytest.raises(TypeError):
        store.add("k", value)
    with pytest.raises(TypeError):
        store["k"] = value
    assert "k" not in store


def test_unencodable_str_key(store):
    with pytest.raises(UnicodeEncodeError):  # a ValueError
        store.set("\udc80", b"v")


@pytest.mark.parametrize(
    "ttl", [-1, -0.5, float("nan"), float("inf"), -math.inf, timedelta(seconds=-1), 2**64, 1e300]
)
def test_bad_ttl_values(store, ttl):
    for call in (
        lambda: store.set("k", b"v", ttl=ttl),
        lambda: store.add("k", b"v", ttl),
        lambda: store.incr("k", 1, ttl),
        lambda: store.expire("k", ttl),
        lambda: store.compare_and_swap("k", None, b"v", ttl),
    ):
        with pytest.raises(ValueError):
            call()
    assert "k" not in store


@pytest.mark.parametrize("ttl", [0, 0.0, timedelta(0)])
def test_zero_ttl_is_refused(store, ttl):
    with pytest.raises(ValueError, match="more than zero"):
        store.set("k", b"v", ttl=ttl)


@pytest.mark.parametrize("ttl", ["10", b"10", [1], True, object()])
def test_bad_ttl_types(store, ttl):
    with pytest.raises(TypeError, match="ttl must be a number of seconds"):
        store.set("k", b"v", ttl=ttl)


def test_tiny_ttl_rounds_up_to_a_millisecond(store):
    store.set("k", b"v", ttl=1e-9)
    assert store.ttl("k") is None or store.ttl("k") <= 0.001


@pytest.mark.parametrize("delta", [2**63, -(2**63) - 1, 10**30])
def test_delta_out_of_range(store, delta):
    with pytest.raises(ValueError, match="delta must be between"):
        store.incr("n", delta)
    assert "n" not in store


@pytest.mark.parametrize("delta", [1.0, "1", None, True, b"1"])
def test_delta_wrong_type(store, delta):
    if delta is None:
        assert store.incr("n", delta) == 1  # None means the default, 1
        return
    with pytest.raises(TypeError, match="delta must be int"):
        store.incr("n", delta)


def test_decr_of_min_is_refused(store):
    with pytest.raises(ValueError):
        store.decr("n", -(2**63))


def test_counter_arguments(store):
    c = store.counter("c")
    with pytest.raises(ValueError):
        c.add(2**63)
    with pytest.raises(TypeError):
        c.add(1.5)
    with pytest.raises(TypeError):
        c.set("1")
    with pytest.raises(TypeError):
        store.counter(5)
    with pytest.raises(shmstate.InvalidCounterName):
        store.counter("x" * 200)
    assert c.value == 0


@pytest.mark.parametrize(
    "options, exc",
    [
        ({"capacity": -1}, ValueError),
        ({"capacity": 2**64}, ValueError),
        ({"capacity": 0}, shmstate.InvalidConfig),
        ({"capacity": 2**33}, shmstate.InvalidConfig),
        ({"capacity": 1.5}, TypeError),
        ({"capacity": "10"}, TypeError),
        ({"capacity": True}, TypeError),
        ({"max_key_len": 0}, shmstate.InvalidConfig),
        ({"max_key_len": 2**32}, ValueError),
        ({"max_value_len": 17 * 1024 * 1024}, shmstate.InvalidConfig),
        ({"shards": 5000}, shmstate.InvalidConfig),
        ({"when_full": "drop"}, ValueError),
        ({"when_full": 1}, TypeError),
        ({"lock_timeout": 0}, shmstate.InvalidConfig),
        ({"lock_timeout": -1}, ValueError),
        ({"lock_timeout": float("nan")}, ValueError),
        ({"line_sized_slots": 1}, TypeError),
        ({"capacityy": 10}, TypeError),
    ],
    ids=repr,
)
def test_bad_options(options, exc):
    with pytest.raises(exc):
        Store.anonymous(**options)


def test_invalid_config_is_a_value_error():
    with pytest.raises(ValueError, match="capacity"):
        Store.anonymous(capacity=0)


def test_unknown_option_names_the_known_ones():
    with pytest.raises(TypeError, match="max_value_len"):
        Store.anonymous(max_value_length=10)


@pytest.mark.parametrize("name", ["", "a/b", "x" * 300, "a\0b", ".."])
def test_bad_shm_names(name):
    with pytest.raises(ValueError):
        Store.open_or_create(name)
    with pytest.raises(shmstate.InvalidName):
        Store.open(name)


def test_bad_name_types():
    with pytest.raises(TypeError):
        Store.open(5)
    with pytest.raises(TypeError):
        Store.open_file(5)
    with pytest.raises(TypeError):
        Store.open_or_create(b"name")


def test_scan_arguments(store):
    with pytest.raises(ValueError):
        store.scan(-1)
    with pytest.raises(ValueError):
        store.scan(0, None, 0)
    with pytest.raises(TypeError):
        store.scan("0")
    assert store.scan(2**64 - 1) == ([], None)  # past the end: over


def test_primitive_arguments(store):
    with pytest.raises(ValueError):
        store.try_lock("l", 0)
    with pytest.raises(ValueError):
        store.try_lock("l", -1)
    with pytest.raises(TypeError):
        store.try_lock("l", "1")
    with pytest.raises(ValueError):
        store.lock("l", 1, wait=-1)
    with pytest.raises(ValueError):
        store.rate_limiter("r", 0, 1)
    with pytest.raises(ValueError):
        store.rate_limiter("r", 10, 0)
    with pytest.raises(ValueError):
        store.rate_limiter("r", 10, 1, algorithm="leaky")
    with pytest.raises(ValueError):
        store.rate_limiter("r", 10, 1, burst=5)  # burst is for gcra
    rl = store.rate_limiter("r", 10, 1)
    with pytest.raises(TypeError):
        rl.check(None)
    with pytest.raises(ValueError):
        rl.check("c", -1)
    with pytest.raises(shmstate.InvalidArgument):
        rl.check("c", 11)  # more than the limit could never pass
    with pytest.raises(TypeError):
        store.cache("c").get_or_compute("k", 10, "not callable")
    with pytest.raises(ValueError):
        store.cache("c", lease=0)
    with pytest.raises(ValueError):
        store.workers("w", 0)
