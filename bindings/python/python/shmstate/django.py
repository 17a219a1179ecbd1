"""A Django cache backend on a shmstate store, shared by every worker process of the host.

::

    CACHES = {
        "default": {
            "BACKEND": "shmstate.django.ShmStateCache",
            "LOCATION": "myapp-cache",          # a named shm object (/dev/shm/myapp-cache)
            # "LOCATION": "file:/var/lib/myapp/cache",  # or a file (survives restarts)
            # "LOCATION": "",                   # or anonymous: create before fork (--preload)
            "TIMEOUT": 300,
            "OPTIONS": {"memory": 256 * 1024 * 1024},   # the region: index and values
        }
    }

``OPTIONS`` takes the store's options (``memory``, ``capacity``, ``max_key_len``,
``max_value_len``, ``max_counters``, ``shards``, ``when_full``, ``lock_timeout``,
``line_sized_slots``); the defaults here are those of a cache: 64 MiB (``memory``, unless
``memory`` or ``capacity`` is given; the number of entries derives from it, one per KiB),
250-byte keys, values up to 1 MiB (memcached's limit; a limit, not a reservation: each value
takes the memory it needs), ``when_full="evict"``.
``MAX_ENTRIES`` and ``CULL_FREQUENCY`` are honoured only when given (Django's culling: when the
store holds ``MAX_ENTRIES`` entries, a write first deletes 1/``CULL_FREQUENCY`` of them, or all
with 0); otherwise the store's capacity and eviction policy bound it. ``PICKLE_PROTOCOL``
(at least 2) sets the pickle protocol.

Values are pickled, as Django's backends do, except ``int`` values that fit in 64 bits: they
are stored as decimal text so that ``incr``/``decr`` are one atomic operation of the store
(as Django's Redis backend does). Keys longer than ``max_key_len`` bytes (UTF-8) are stored
under a BLAKE2b digest of the key. A value larger than ``max_value_len`` raises
``shmstate.ValueTooLarge`` from ``set``/``add`` (``set_many`` returns it among the failed keys).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
from typing import Any, Dict, Iterable, List, Optional, Tuple

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.exceptions import ImproperlyConfigured

from . import OPTIONS as STORE_OPTIONS
from . import Full, KeyTooLong, NotAnInteger, Overflow, Store, ValueTooLarge

__all__ = ["ShmStateCache", "DEFAULT_STORE_OPTIONS"]

DEFAULT_STORE_OPTIONS: Dict[str, Any] = {
    "max_key_len": 250,
    "max_value_len": 1024 * 1024,
    "when_full": "evict",
}
# The region's size when OPTIONS gives neither ``memory`` nor ``capacity`` (with either one,
# the store derives the other).
DEFAULT_MEMORY = 64 * 1024 * 1024

_DJANGO_OPTIONS = {"MAX_ENTRIES", "CULL_FREQUENCY", "PICKLE_PROTOCOL"}
_EXPIRED = object()  # a timeout of zero or less: "do not keep"
_PICKLE_MARK = b"\x80"  # every pickle of protocol 2 or more starts with PROTO (0x80)
_I64 = (-(2**63), 2**63 - 1)
_CAS_ATTEMPTS = 100

# One handle per (location, options) in this process, shared by the per-thread backend
# objects Django creates, and inherited by forked children.
_stores: Dict[Tuple[str, Tuple[Tuple[str, Any], ...]], Store] = {}
_stores_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _stores_lock
    _stores_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_after_fork)


def _open(location: str, options: Dict[str, Any]) -> Store:
    key = (location, tuple(sorted(options.items())))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            if not location:
                store = Store.anonymous(**options)
            elif location.startswith("file:"):
                store = Store.open_or_create_file(location[len("file:") :], **options)
            else:
                store = Store.open_or_create(location, **options)
            _stores[key] = store
        return store


class ShmStateCache(BaseCache):
    """Django cache backend over a shmstate store (see the module documentation)."""

    def __init__(self, location: str, params: Dict[str, Any]) -> None:
        super().__init__(params)
        options = dict(params.get("OPTIONS") or {})
        unknown = set(options) - _DJANGO_OPTIONS - set(STORE_OPTIONS)
        if unknown:
            raise ImproperlyConfigured(
                "shmstate.django.ShmStateCache: unknown OPTIONS %s (store options: %s; "
                "Django options: %s)"
                % (
                    ", ".join(sorted(unknown)),
                    ", ".join(STORE_OPTIONS),
                    ", ".join(sorted(_DJANGO_OPTIONS)),
                )
            )
        self._cull_enabled = "MAX_ENTRIES" in options or "max_entries" in params
        self._protocol = int(options.pop("PICKLE_PROTOCOL", pickle.HIGHEST_PROTOCOL))
        if self._protocol < 2:
            raise ImproperlyConfigured("PICKLE_PROTOCOL must be at least 2")
        for name in _DJANGO_OPTIONS:
            options.pop(name, None)
        self._store_options = {**DEFAULT_STORE_OPTIONS, **options}
        if "memory" not in options and "capacity" not in options:
            self._store_options["memory"] = DEFAULT_MEMORY
        self._key_limit = int(self._store_options["max_key_len"])
        self._location = location or ""
        self._store = _open(self._location, self._store_options)

    @property
    def store(self) -> Store:
        """The underlying :class:`shmstate.Store` (for counters, locks, rate limits...)."""
        return self._store

    # ---- keys, values, timeouts ----

    def _key(self, key: Any, version: Optional[int]) -> bytes:
        k = self.make_and_validate_key(key, version=version).encode()
        if len(k) > self._key_limit:
            k = b"#b2:" + hashlib.blake2b(k, digest_size=20).hexdigest().encode()
        return k

    def _encode(self, value: Any) -> bytes:
        if type(value) is int and _I64[0] <= value <= _I64[1]:
            return b"%d" % value
        return pickle.dumps(value, self._protocol)

    @staticmethod
    def _decode(raw: bytes) -> Any:
        if raw[:1] == _PICKLE_MARK:
            return pickle.loads(raw)
        try:
            return int(raw)
        except ValueError:
            return raw  # not written by this backend: hand back the bytes

    def _ttl(self, timeout: Any) -> Any:
        """Seconds for the store, None for "forever", or _EXPIRED."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        if timeout <= 0:
            return _EXPIRED
        return float(timeout)

    def _cull_if_needed(self) -> None:
        if not self._cull_enabled:
            return
        store = self._store
        if len(store) < self._max_entries:
            return
        if self._cull_frequency == 0:
            store.clear()
            return
        to_delete = len(store) // self._cull_frequency
        victims: List[bytes] = []
        for k in store.keys():
            if len(victims) >= to_delete:
                break
            if not k.startswith(b"\xff"):  # leave the primitives' reserved keys alone
                victims.append(k)
        for k in victims:
            store.delete(k)

    # ---- the cache API ----

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        k = self._key(key, version)
        v = self._encode(value)
        ttl = self._ttl(timeout)
        if ttl is _EXPIRED:
            # Stored and expired at once, as Django's other backends do: "added" if absent.
            return k not in self._store
        self._cull_if_needed()
        return self._store.add(k, v, ttl)

    def get(self, key, default=None, version=None):
        raw = self._store.get(self._key(key, version))
        if raw is None:
            return default
        return self._decode(raw)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        k = self._key(key, version)
        v = self._encode(value)
        ttl = self._ttl(timeout)
        if ttl is _EXPIRED:
            self._store.delete(k)
            return
        self._cull_if_needed()
        self._store.set(k, v, ttl)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        k = self._key(key, version)
        ttl = self._ttl(timeout)
        if ttl is _EXPIRED:
            return self._store.delete(k)
        return self._store.expire(k, ttl)

    def delete(self, key, version=None):
        return self._store.delete(self._key(key, version))

    def has_key(self, key, version=None):
        return self._key(key, version) in self._store

    def incr(self, key, delta=1, version=None):
        k = self._key(key, version)
        store = self._store
        raw = store.get(k)
        if raw is None:
            raise ValueError("Key '%s' not found" % key)
        if raw[:1] != _PICKLE_MARK and type(delta) is int and _I64[0] <= delta <= _I64[1]:
            try:
                # One atomic operation. If the key vanished since the get, it is created
                # with delta and the default timeout (as Django's Redis backend, which
                # checks EXISTS then INCRs).
                ttl = self._ttl(DEFAULT_TIMEOUT)
                return store.incr(k, delta, None if ttl is _EXPIRED else ttl)
            except (NotAnInteger, Overflow):
                pass
        # A pickled value (or a result past 64 bits): read-modify-write, made atomic by
        # compare-and-swap; the TTL left is kept.
        for _ in range(_CAS_ATTEMPTS):
            new_value = self._decode(raw) + delta
            left = store.ttl(k)
            if left is None:
                raise ValueError("Key '%s' not found" % key)
            ttl = None if left == float("inf") else max(left, 0.001)
            if store.compare_and_swap(k, raw, self._encode(new_value), ttl):
                return new_value
            raw = store.get(k)
            if raw is None:
                raise ValueError("Key '%s' not found" % key)
        raise RuntimeError("incr of %r lost %d compare-and-swap races" % (key, _CAS_ATTEMPTS))

    def decr(self, key, delta=1, version=None):
        return self.incr(key, -delta, version)

    def get_many(self, keys: Iterable[Any], version=None):
        out = {}
        store = self._store
        for key in keys:
            raw = store.get(self._key(key, version))
            if raw is not None:
                out[key] = self._decode(raw)
        return out

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        failed = []
        ttl = self._ttl(timeout)
        store = self._store
        for key, value in data.items():
            k = self._key(key, version)
            v = self._encode(value)
            if ttl is _EXPIRED:
                store.delete(k)
                continue
            self._cull_if_needed()
            try:
                store.set(k, v, ttl)
            except (ValueTooLarge, KeyTooLong, Full):
                failed.append(key)
        return failed

    def delete_many(self, keys, version=None):
        store = self._store
        for key in keys:
            store.delete(self._key(key, version))

    def clear(self):
        self._store.clear()

    def close(self, **kwargs):
        # The mapping is shared by every backend object of the process: nothing to close.
        pass
