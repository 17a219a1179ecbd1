"""What Django's own suite (run by ci.sh) does not cover: atomic incr across processes, long
keys, size limits, LOCATION forms, configuration errors."""

import os
import warnings

import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(CACHES={}, USE_TZ=True)

from django.core.exceptions import ImproperlyConfigured  # noqa: E402

import shmstate  # noqa: E402
from shmstate.django import ShmStateCache  # noqa: E402


def backend(location, **options):
    return ShmStateCache(location, {"OPTIONS": options})


def test_incr_is_atomic_across_processes(region_name):
    cache = backend(region_name)
    cache.set("hits", 0)
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            try:
                c = backend(region_name)  # the worker's own backend object, same region
                for _ in range(2000):
                    c.incr("hits")
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    assert cache.get("hits") == 8000
    assert cache.store.get(cache.make_key("hits")) == b"8000"  # stored as text, not pickled


def test_incr_of_pickled_and_big_values(region_name):
    cache = backend(region_name)
    cache.set("f", 1.5)
    assert cache.incr("f") == 2.5
    cache.set("big", 2**63 - 1)
    assert cache.incr("big") == 2**63  # past 64 bits: pickled, still correct
    assert cache.get("big") == 2**63
    cache.set("t", 5, timeout=100)
    cache.set("big", 2**70, timeout=100)
    cache.incr("big")
    assert 99 < cache.store.ttl(cache.make_key("big")) <= 100  # the TTL is kept
    with pytest.raises(ValueError):
        cache.incr("missing")
    cache.set("none", None)
    with pytest.raises(TypeError):
        cache.incr("none")


def test_long_keys_are_hashed(region_name):
    cache = backend(region_name, max_key_len=64)
    long_key = "k" * 500
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Django warns: too long for memcached
        cache.set(long_key, "v")
        assert cache.get(long_key) == "v"
        assert cache.get("k" * 499) is None
        assert cache.delete(long_key) is True


def test_value_too_large(region_name):
    cache = backend(region_name, max_value_len=100)
    with pytest.raises(shmstate.ValueTooLarge):
        cache.set("big", "x" * 1000)
    assert cache.set_many({"big": "x" * 1000, "small": "y"}) == ["big"]
    assert cache.get("small") == "y"


def test_default_size_is_a_memory_budget(region_name):
    """Without memory or capacity, a cache region is 64 MiB (entries derive from it) and takes
    values up to 1 MiB, each at the memory it needs; with capacity only, the store sizes the
    rest."""
    cache = backend(region_name)
    assert 63 << 20 < cache.store.region_bytes <= 64 << 20
    assert cache.store.capacity == 65_536
    page = "x" * 500_000
    cache.set("page", page)
    assert cache.get("page") == page
    assert cache.store.stats()["value_bytes"] > 500_000
    with pytest.raises(shmstate.ValueTooLarge):
        cache.set("huge", "y" * (1 << 20))  # pickled: a bit more than 1 MiB
    small = backend("", capacity=1000)
    assert small.store.capacity == 1000 and small.store.region_bytes < 16 << 20
    sized = backend("", memory=8 << 20)
    assert sized.store.capacity == 8192 and sized.store.region_bytes <= 8 << 20


def test_file_and_anonymous_locations(tmp_path):
    path = tmp_path / "cache.region"
    a = backend("file:%s" % path)
    a.set("k", {"x": 1}, timeout=None)
    assert shmstate.Store.open_file(path).get(a.make_key("k")) is not None
    anon1, anon2 = backend(""), backend("")
    anon1.set("shared", 1)
    assert anon2.get("shared") == 1  # one anonymous region per process and options


def test_same_location_different_options_is_refused(region_name):
    backend(region_name, capacity=1000)
    with pytest.raises(shmstate.Incompatible):
        backend(region_name, capacity=2000)


def test_unknown_options_are_refused(region_name):
    with pytest.raises(ImproperlyConfigured, match="capasity"):
        backend(region_name, capasity=10)
    with pytest.raises(ImproperlyConfigured):
        backend(region_name, PICKLE_PROTOCOL=1)


def test_foreign_value_is_returned_as_bytes(region_name):
    cache = backend(region_name)
    cache.store.set(cache.make_key("raw"), b"not pickled")
    assert cache.get("raw") == b"not pickled"
