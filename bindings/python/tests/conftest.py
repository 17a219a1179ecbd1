import itertools
import os

import pytest

import shmstate

_counter = itertools.count()


def unique_name(tag: str = "t") -> str:
    """A shm name unique to this process and call (tests may run in parallel)."""
    return "pytest-%s-%d-%d" % (tag, os.getpid(), next(_counter))


@pytest.fixture
def store():
    """A small anonymous store."""
    return shmstate.Store.anonymous(capacity=1000, max_key_len=64, max_value_len=256)


@pytest.fixture
def region_name():
    """A unique shm name, unlinked after the test."""
    name = unique_name()
    yield name
    try:
        shmstate.Store.unlink(name)
    except shmstate.NotFound:
        pass
