"""Locks, rate limiters, the stampede-guarded cache, namespaces, worker registries."""

import os
import signal
import threading
import time

import pytest

import shmstate


def test_try_lock_and_fence(store):
    a = store.try_lock("job", 30)
    assert a is not None and a.name == "job" and a.fence > 0
    assert store.try_lock("job", 30) is None  # not reentrant
    holder = store.lock_holder("job")
    assert holder.pid == os.getpid() and holder.fence == a.fence and not holder.holder_dead
    assert 29 < a.lease_left <= 30 and a.is_held()
    assert a.extend(60) and 59 < a.lease_left <= 60
    assert a.release() is True
    assert a.release() is False  # already released
    assert not a.is_held() and a.lease_left == 0.0
    assert store.lock_holder("job") is None
    b = store.try_lock("job", 30)
    assert b.fence > a.fence
    b.release()


def test_lock_context_manager(store):
    with store.lock("ctx", lease=10, wait=1) as lk:
        assert store.try_lock("ctx", 10) is None
        assert lk.is_held()
    assert not lk.is_held()
    assert store.try_lock("ctx", 10) is not None


def test_lock_released_when_garbage_collected(store):
    lk = store.try_lock("gc", 10)
    assert lk is not None
    del lk
    assert store.try_lock("gc", 10) is not None


def test_lock_times_out_with_lock_timeout(store):
    held = store.try_lock("busy", 30)
    t0 = time.monotonic()
    with pytest.raises(shmstate.LockTimeout) as ei:
        store.lock("busy", 5, wait=0.3)
    assert 0.25 < time.monotonic() - t0 < 5
    assert isinstance(ei.value, TimeoutError) and ei.value.waited >= 0.3
    held.release()


def test_lock_wait_releases_the_gil(store):
    """While one thread waits for a lock, another thread keeps running Python code."""
    held = store.try_lock("gil", 30)
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    try:
        with pytest.raises(shmstate.LockTimeout):
            store.lock("gil", 5, wait=0.5)
    finally:
        stop.set()
        t.join(5)
    assert len(ticks) > 50  # the other thread ran during the wait
    held.release()


def test_lock_taken_over_from_dead_holder(store):
    pid = os.fork()
    if pid == 0:
        try:
            lk = store.try_lock("crash", 3600)
            os._exit(0 if lk is not None else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    holder = store.lock_holder("crash")
    assert holder is not None and holder.holder_dead
    lk = store.lock("crash", 10, wait=1)  # taken over at once, not after the 1 h lease
    assert lk.fence >= 2


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "gcra"])
def test_rate_limiter(store, algorithm):
    rl = store.rate_limiter("api-" + algorithm, 3, 60, algorithm=algorithm)
    assert rl.algorithm == algorithm
    decisions = [rl.check("10.0.0.1") for _ in range(3)]
    assert all(decisions)
    assert [d.remaining for d in decisions] == [2, 1, 0]
    d = rl.check(b"10.0.0.1")
    assert not d and not d.allowed and d.limit == 3 and d.remaining == 0
    bound = 120 if algorithm == "sliding_window" else 60  # sliding: up to two windows
    assert 0 < d.retry_after <= bound and 0 < d.reset_after <= bound
    assert rl.check("10.0.0.2").allowed  # clients are independent
    assert "allowed=False" in repr(d)


def test_rate_limiter_cost_and_burst(store):
    rl = store.rate_limiter("bytes", 1000, 1, algorithm="gcra", burst=100)
    assert rl.check("t", 60).allowed
    d = rl.check("t", 60)
    assert not d.allowed and d.limit == 100
    assert 0 < d.retry_after < 1


def test_cache_get_or_compute(store):
    cache = store.cache("pages", stale_for=30)
    calls = []

    def render():
        calls.append(1)
        return "<html>"

    assert cache.get_or_compute("/", 60, render) == b"<html>"
    assert cache.get_or_compute("/", 60, render) == b"<html>"
    assert len(calls) == 1
    assert cache.get("/") == b"<html>"
    st = cache.stats()
    assert (st["hits"], st["misses"]) == (1, 1)
    assert cache.invalidate("/") is True
    assert cache.get("/") is None


def test_cache_compute_error_propagates_and_caches_nothing(store):
    cache = store.cache("err")

    def boom():
        raise KeyError("nope")

    with pytest.raises(KeyError):
        cache.get_or_compute("k", 10, boom)
    assert cache.get("k") is None
    with pytest.raises(TypeError, match="returned by fn"):
        cache.get_or_compute("k", 10, lambda: 42)
    # the lease was released: the next caller computes at once
    assert cache.get_or_compute("k", 10, lambda: b"ok") == b"ok"


def test_cache_timeout_while_another_process_computes(store):
    cache = store.cache("slow", lease=30, wait=0.3)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)

            def slow():
                os.write(w, b"s")
                time.sleep(3)
                return b"late"

            cache.get_or_compute("k", 10, slow)
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"s"  # the child holds the lease and computes
        ticks = []
        stop = threading.Event()

        def spin():
            while not stop.is_set():
                ticks.append(1)
                time.sleep(0.001)

        t = threading.Thread(target=spin)
        t.start()
        try:
            with pytest.raises(shmstate.CacheTimeout) as ei:
                cache.get_or_compute("k", 10, lambda: b"mine")
        finally:
            stop.set()
            t.join(5)
        assert isinstance(ei.value, TimeoutError)
        assert len(ticks) > 30  # another thread ran while this one waited: the GIL was released
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
    # the computing process died: its lease is taken over at once
    assert cache.get_or_compute("k", 10, lambda: b"mine") == b"mine"


def test_cache_compute_runs_once_across_processes(store):
    """8 forked processes ask for the same missing key: one computes, the others wait."""
    cache = store.cache("once", wait=10)
    computed = store.counter("once.computed")
    pids = []
    for _ in range(8):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:

                def compute():
                    computed.add(1)
                    time.sleep(0.3)
                    return b"value"

                code = 0 if cache.get_or_compute("k", 30, compute) == b"value" else 3
            finally:
                os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
    assert codes == [0] * 8
    assert computed.value == 1


def test_namespace(store):
    ns = store.namespace("users")
    ns.set("7", b"old")
    assert ns.get("7") == b"old"
    g = ns.generation()
    assert ns.invalidate() == g + 1
    assert ns.get("7") is None
    ns.set("7", b"new", ttl=60)
    assert store.get(ns.key("7")) == b"new"
    assert ns.purge_old_generations() == 1
    ns.set("a:1", b"x")
    ns.set("a:2", b"x")
    assert ns.delete_prefix("a:") == 2
    assert ns.delete("7") is True


def test_workers_and_gauges(store):
    reg = store.workers("http", 4)
    me = reg.register("worker-1")
    g = me.gauge("connections")
    assert g.add() == 1 and g.add(4) == 5
    g.set(3)
    assert g.value == 3
    assert reg.gauge_total("connections") == 3
    assert [w["label"] for w in reg.list()] == ["worker-1"]
    [(info, value)] = reg.gauge_by_worker("connections")
    assert info["pid"] == os.getpid() and info["slot"] == me.slot and value == 3
    # a child that registers and dies is reaped; its gauge stops counting
    pid = os.fork()
    if pid == 0:
        try:
            w = reg.register("child")
            w.gauge("connections").add(100)
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    assert reg.gauge_total("connections") == 3
    assert reg.reap() == 0  # already reaped by gauge_total
    assert me.deregister() is True
    assert reg.gauge_total("connections") == 0
    with pytest.raises(ValueError):
        me.gauge("x")


def test_gauge_in_forked_child_is_not_owner(store):
    reg = store.workers("own", 2)
    me = reg.register("parent")
    g = me.gauge("x")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            g.add(1)
        except shmstate.NotOwner:
            code = 0
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_lock_wait_is_interrupted_by_ctrl_c(store):
    held = store.try_lock("sigint", 60)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            store.lock("sigint", 5, wait=30)
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 5
    held.release()
