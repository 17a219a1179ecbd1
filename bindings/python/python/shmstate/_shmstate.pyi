"""Type stubs of the native module shmstate._shmstate (re-exported by the shmstate package)."""

import os
from datetime import timedelta
from types import TracebackType
from typing import (
    Callable,
    Dict,
    Final,
    Iterable,
    Iterator,
    List,
    Literal,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
    final,
    overload,
)

from typing_extensions import TypedDict, Unpack

_Key = Union[str, bytes, bytearray]
"""A key: str (stored as UTF-8) or bytes."""
_Value = Union[str, bytes, bytearray]
"""A value: bytes, or str (stored as UTF-8). Reads always return bytes."""
_Seconds = Union[int, float, timedelta]
"""A length of time: seconds (int or float) or a datetime.timedelta."""
_T = TypeVar("_T")
_Path = Union[str, "os.PathLike[str]"]

__all__ = [
    "Store",
    "KeyIter",
    "Counter",
    "VerifyReport",
    "Lock",
    "LockHolder",
    "RateLimiter",
    "Decision",
    "Cache",
    "Namespace",
    "Workers",
    "Worker",
    "Gauge",
    "FORMAT_VERSION",
    "PROMETHEUS_CONTENT_TYPE",
    "OPTIONS",
    "__version__",
]

FORMAT_VERSION: Final[int]
PROMETHEUS_CONTENT_TYPE: Final[str]
OPTIONS: Final[List[str]]
__version__: Final[str]

class _Options(TypedDict, total=False):
    """The options of a new region (ignored by ``open``; checked by ``open_or_create``)."""

    memory: int
    """The region's size in bytes, index and values together (like ``lua_shared_dict cache
    64m``; at most 1 TiB). The index (``capacity`` entries) comes first; the rest is the value
    heap, shared equally between the shards, each of which must hold one value of
    ``max_value_len`` (else InvalidConfig). Default: 1 KiB of heap per entry of ``capacity``
    (at least one ``max_value_len`` value per shard) plus the index."""
    capacity: int
    """Entries the store must hold (default ``memory // 1024`` when ``memory`` is given, else
    65 536). The table does not grow."""
    shards: int
    """Number of shards, each with its own lock (default: from the CPU count, fewer for small
    stores)."""
    max_key_len: int
    """Longest key in bytes (default 64)."""
    max_value_len: int
    """Longest value in bytes (default 1 MiB, at most 2 MiB - 16 KiB): a limit, not a
    reservation; values take the memory they need."""
    max_counters: int
    """Number of named counters (default 256)."""
    when_full: Literal["refuse", "evict"]
    """"refuse" (default: raise Full when there is no slot for a new key or no heap room for
    its value, after reclaiming expired entries) or "evict" (for caches)."""
    lock_timeout: _Seconds
    """How long a write waits for a shard lock held by a live process (default 10 s)."""
    line_sized_slots: bool
    """Round slots up to whole 64-byte cache lines (the extra room is usable key length)."""

class _Stats(TypedDict):
    """``Store.stats()``: counts since the region was created, summed over every process."""

    entries: int
    """Entries stored, including expired ones not yet reclaimed."""
    capacity: int
    slots: int
    tombstones: int
    hits: int
    misses: int
    sets: int
    deletes: int
    expirations: int
    evictions: int
    full_refusals: int
    lock_recoveries: int
    lock_contended: int
    counters: int
    region_bytes: int
    value_bytes: int
    """Bytes of the values stored in the heap (values longer than 24 bytes; shorter ones live
    in their slot)."""
    heap_bytes: int
    """Size of the value heap (every shard's pages)."""
    heap_free_bytes: int
    """Heap bytes free: whole free pages plus free blocks of partly used pages."""
    heap_partial_free_bytes: int
    """Of ``heap_free_bytes``, those in free blocks of partly used pages."""
    largest_value: int
    """The largest value a write can store now without evicting (a conservative estimate)."""
    fragmentation: float
    """``heap_partial_free_bytes / heap_free_bytes`` (0.0 when nothing is free)."""

@final
class Store:
    """A shared-memory key-value store: a handle to one region, shared by threads and by
    processes forked after it was made. Reads take no lock; writes hold one shard's robust
    lock for nanoseconds."""

    @staticmethod
    def anonymous(**options: Unpack[_Options]) -> "Store":
        """A store in anonymous shared memory, for a process that forks its workers afterwards
        (gunicorn --preload, multiprocessing with the fork start method)."""
    @staticmethod
    def create(name: str, **options: Unpack[_Options]) -> "Store":
        """Creates the named store (/dev/shm/NAME); AlreadyExists if the name is taken."""
    @staticmethod
    def open(name: str) -> "Store":
        """Opens the named store; NotFound if it does not exist."""
    @staticmethod
    def open_or_create(name: str, **options: Unpack[_Options]) -> "Store":
        """Opens the named store, creating it if absent (safe when many processes race);
        Incompatible if it exists with another configuration."""
    @staticmethod
    def create_file(path: _Path, **options: Unpack[_Options]) -> "Store":
        """Creates a file-backed store (its contents survive restarts)."""
    @staticmethod
    def open_file(path: _Path) -> "Store":
        """Opens a file-backed store."""
    @staticmethod
    def open_or_create_file(path: _Path, **options: Unpack[_Options]) -> "Store":
        """Opens a file-backed store, creating it if absent."""
    @staticmethod
    def unlink(name: str) -> None:
        """Removes the named store; processes that have it open keep using it."""

    @overload
    def get(self, key: _Key) -> Optional[bytes]: ...
    @overload
    def get(self, key: _Key, default: _T) -> Union[bytes, _T]: ...
    def get_many(self, keys: Iterable[_Key]) -> Dict[_Key, bytes]:
        """The present keys among `keys` and their values."""
    def __getitem__(self, key: _Key, /) -> bytes: ...
    def __contains__(self, key: _Key, /) -> bool: ...
    def ttl(self, key: _Key) -> Optional[float]:
        """_Seconds left to live; None if the key is absent, math.inf if it never expires."""
    def set(self, key: _Key, value: _Value, ttl: Optional[_Seconds] = None) -> None:
        """Stores value under key, replacing value and TTL; ttl None means no expiry."""
    def __setitem__(self, key: _Key, value: _Value, /) -> None: ...
    def add(self, key: _Key, value: _Value, ttl: Optional[_Seconds] = None) -> bool:
        """Stores only if key is absent; returns whether it stored."""
    def replace(self, key: _Key, value: _Value, ttl: Optional[_Seconds] = None) -> bool:
        """Stores only if key is present; returns whether it stored."""
    def delete(self, key: _Key) -> bool:
        """Removes key; returns whether it was present."""
    def __delitem__(self, key: _Key, /) -> None: ...
    def compare_and_swap(
        self,
        key: _Key,
        expected: Optional[_Value],
        new: Optional[_Value],
        ttl: Optional[_Seconds] = None,
    ) -> bool:
        """If the value of key equals expected (None: absent), replaces it with new (None:
        deletes it) and returns True; otherwise changes nothing and returns False."""
    def incr(self, key: _Key, delta: int = 1, ttl: Optional[_Seconds] = None) -> int:
        """Adds delta to the decimal integer under key; a missing key counts as 0 and is
        created with ttl. NotAnInteger, Overflow."""
    def decr(self, key: _Key, delta: int = 1, ttl: Optional[_Seconds] = None) -> int:
        """incr(key, -delta, ttl)."""
    def expire(self, key: _Key, ttl: Optional[_Seconds]) -> bool:
        """Sets (or with None removes) the TTL of an existing key; returns whether it exists."""
    def persist(self, key: _Key) -> bool:
        """Removes the TTL of key; returns whether it exists."""
    def clear(self) -> int:
        """Removes every entry (counters are kept); returns how many."""
    def flush_expired(self) -> int:
        """Removes the expired entries now; returns how many."""
    def delete_prefix(self, prefix: _Key) -> int:
        """Deletes every live key starting with prefix; returns how many."""
    def scan(
        self, cursor: int = 0, prefix: Optional[_Key] = None, limit: int = 100
    ) -> Tuple[List[bytes], Optional[int]]:
        """One page of keys, like Redis SCAN; the cursor is None when the scan is over."""
    def keys(self, prefix: Optional[_Key] = None) -> "KeyIter":
        """Iterates over the live keys starting with prefix."""
    def __len__(self) -> int:
        """Entries stored, including expired ones not yet reclaimed."""
    @property
    def capacity(self) -> int: ...
    @property
    def region_bytes(self) -> int: ...
    @property
    def generation(self) -> int:
        """Bumped by every clear()."""
    @property
    def origin(self) -> Tuple[Literal["anonymous", "shm", "file"], Optional[str]]: ...
    def counter(self, name: str) -> "Counter":
        """The named counter (created on first use)."""
    def counters(self) -> Dict[str, int]:
        """Every named counter and its value."""
    def stats(self) -> _Stats:
        """Statistics summed over shards and processes (counts and bytes, and the heap's
        fragmentation as a float)."""
    def verify(self) -> "VerifyReport":
        """Checks every invariant of the region."""
    def prometheus(self) -> str:
        """Statistics and counters in the Prometheus text format."""
    def try_lock(self, name: str, lease: _Seconds) -> Optional["Lock"]:
        """Tries once to take the leased lock; None if a live process holds it."""
    def lock(self, name: str, lease: _Seconds, wait: _Seconds = 10.0) -> "Lock":
        """Takes the leased lock, waiting at most `wait` (the GIL is released); LockTimeout
        if it is still held then."""
    def lock_holder(self, name: str) -> Optional["LockHolder"]:
        """Who holds the lock, if anyone."""
    def rate_limiter(
        self,
        name: str,
        limit: int,
        window: _Seconds,
        *,
        algorithm: Literal["fixed_window", "sliding_window", "gcra"] = "fixed_window",
        burst: Optional[int] = None,
    ) -> "RateLimiter":
        """A named limiter: `limit` requests per `window` per client (gcra: sustained rate
        limit/window with bursts of `burst`, default `limit`)."""
    def cache(
        self,
        name: str,
        *,
        lease: _Seconds = 10.0,
        wait: _Seconds = 5.0,
        stale_for: _Seconds = 0.0,
    ) -> "Cache":
        """A named read-through cache with a stampede guard."""
    def namespace(self, name: str) -> "Namespace":
        """A namespace with versioned invalidation."""
    def workers(self, name: str, max_workers: int = 64) -> "Workers":
        """A registry of live workers with per-worker gauges."""

@final
class KeyIter(Iterator[bytes]):
    def __iter__(self) -> "KeyIter": ...
    def __next__(self) -> bytes: ...

@final
class Counter:
    """A named 64-bit counter; every operation is one atomic instruction (wrapping)."""

    def add(self, n: int = 1) -> int:
        """Adds n and returns the new value."""
    @property
    def value(self) -> int: ...
    def get(self) -> int: ...
    def set(self, v: int) -> None: ...
    def swap(self, v: int) -> int: ...
    def fetch_max(self, v: int) -> int: ...
    @property
    def name(self) -> str: ...
    def __int__(self) -> int: ...

@final
class VerifyReport:
    """The result of Store.verify(); true when the region has no problem."""

    ok: bool
    shards: int
    entries: int
    expired: int
    tombstones: int
    counters: int
    problems: List[str]
    text: str
    def __bool__(self) -> bool: ...

@final
class Lock:
    """An acquired leased lock; a context manager that releases it on exit."""

    @property
    def fence(self) -> int:
        """Fencing token: larger than that of every earlier acquisition of this lock."""
    @property
    def token(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def lease_left(self) -> float: ...
    def is_held(self) -> bool: ...
    def extend(self, lease: _Seconds) -> bool: ...
    def release(self) -> bool: ...
    def __enter__(self) -> "Lock": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

@final
class LockHolder:
    pid: int
    fence: int
    lease_left: float
    holder_dead: bool

@final
class RateLimiter:
    @property
    def algorithm(self) -> str: ...
    def check(self, client: _Key, cost: int = 1) -> "Decision":
        """Checks and counts a request of weight cost for client."""

@final
class Decision:
    """True when allowed. _Seconds in retry_after (when denied) and reset_after."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float
    def __bool__(self) -> bool: ...

@final
class Cache:
    def get_or_compute(self, key: _Key, ttl: _Seconds, fn: Callable[[], _Value]) -> bytes:
        """The fresh cached value, or fn() computed by one process and cached for ttl;
        CacheTimeout if another process's computation did not finish within `wait`."""
    def get(self, key: _Key) -> Optional[bytes]: ...
    def invalidate(self, key: _Key) -> bool: ...
    def stats(self) -> Dict[str, int]: ...

@final
class Namespace:
    def get(self, key: _Key) -> Optional[bytes]: ...
    def set(self, key: _Key, value: _Value, ttl: Optional[_Seconds] = None) -> None: ...
    def delete(self, key: _Key) -> bool: ...
    def key(self, key: _Key) -> bytes: ...
    def generation(self) -> int: ...
    def invalidate(self) -> int: ...
    def delete_prefix(self, prefix: _Key) -> int: ...
    def purge_old_generations(self) -> int: ...

@final
class Workers:
    def register(self, label: str = "") -> "Worker": ...
    def list(self) -> List[Dict[str, Union[int, str]]]: ...
    def reap(self) -> int: ...
    def gauge_total(self, name: str) -> int: ...
    def gauge_by_worker(self, name: str) -> List[Tuple[Dict[str, Union[int, str]], int]]: ...

@final
class Worker:
    @property
    def slot(self) -> int: ...
    def gauge(self, name: str) -> "Gauge": ...
    def deregister(self) -> bool: ...

@final
class Gauge:
    def add(self, delta: int = 1) -> int: ...
    def set(self, v: int) -> None: ...
    @property
    def value(self) -> int: ...
