"""A handle survives fork; multiprocessing workers (fork and spawn) get exact totals."""

import multiprocessing
import os

import pytest

import shmstate
from _workers import incr_many, open_and_incr

N = 20_000
PROCS = 4


def check_totals(store):
    assert store.get("mp.incr") == b"%d" % (N * PROCS)
    assert store.counter("mp.counter").value == N * PROCS
    assert store.get("mp.cas") == b"%d" % (N * PROCS)
    assert store.verify()


def run(ctx, target, args_for):
    procs = [ctx.Process(target=target, args=args_for(i)) for i in range(PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert [p.exitcode for p in procs] == [0] * PROCS


def test_handle_survives_os_fork(store):
    store.set("before", b"1")
    c = store.counter("forks")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ok = store.get("before") == b"1"
            store.set("from-child", b"hello", ttl=60)
            c.add(1)
            # and a grandchild
            gpid = os.fork()
            if gpid == 0:
                try:
                    store.incr("grandchild")
                finally:
                    os._exit(0)
            os.waitpid(gpid, 0)
            code = 0 if ok else 2
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert store.get("from-child") == b"hello"
    assert store.get("grandchild") == b"1"
    assert c.value == 1
    assert store.verify()


def test_multiprocessing_fork_anonymous():
    store = shmstate.Store.anonymous(capacity=1000)
    ctx = multiprocessing.get_context("fork")
    run(ctx, incr_many, lambda i: (store, N, i))  # fork: args are inherited, not pickled
    check_totals(store)
    assert all(store.get("mp.done.%d" % i) == b"1" for i in range(PROCS))


def test_multiprocessing_fork_pool():
    store = shmstate.Store.anonymous(capacity=1000)
    global POOL_STORE
    POOL_STORE = store
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(PROCS) as pool:
        results = pool.map(_pool_task, range(200), chunksize=5)
    assert sorted(results) == list(range(1, 201))  # every incr returned a distinct value
    assert store.get("pool") == b"200"


POOL_STORE = None


def _pool_task(_):
    return POOL_STORE.incr("pool")


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_multiprocessing_spawn_named(region_name, method):
    store = shmstate.Store.create(region_name, capacity=1000)
    ctx = multiprocessing.get_context(method)
    run(ctx, open_and_incr, lambda i: (region_name, N, i))
    check_totals(store)


def test_spawn_with_pickled_store(region_name):
    """A named store passed as an argument is pickled as "open it by name"."""
    store = shmstate.Store.create(region_name, capacity=1000)
    ctx = multiprocessing.get_context("spawn")
    run(ctx, incr_many, lambda i: (store, N, i))
    check_totals(store)
