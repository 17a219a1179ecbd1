"""Worker functions for the multi-process tests (importable by spawned children)."""

import shmstate


def incr_many(store, n, tag):
    """n increments of a shared key, a shared counter and a compare-and-swap loop key."""
    c = store.counter("mp.counter")
    for _ in range(n):
        store.incr("mp.incr")
        c.add(1)
        # A read-modify-write made atomic by compare-and-swap.
        for _attempt in range(10_000):
            old = store.get("mp.cas")
            new = b"%d" % (int(old or b"0") + 1)
            if store.compare_and_swap("mp.cas", old, new):
                break
        else:
            raise RuntimeError("compare_and_swap never won")
    store.incr("mp.done.%s" % tag)


def open_and_incr(name, n, tag):
    """For the spawn start method: open the region by name in the child."""
    incr_many(shmstate.Store.open(name), n, tag)
