"""shmstate: shared state for the worker processes of one host, at memory speed.

A store is one fixed-layout shared-memory region: a sharded hash table guarded by robust
process-shared mutexes (a worker killed at any instant never blocks or corrupts the others),
lock-free reads, and named counters that are plain atomics. Create it before forking
(:meth:`Store.anonymous`), or open it by name (:meth:`Store.open_or_create`) or by file
(:meth:`Store.open_or_create_file`) from unrelated processes, including Rust and Node.js ones.

>>> import shmstate
>>> store = shmstate.Store.anonymous(memory=16 << 20)  # 16 MiB: index and values together
>>> store.set("session:42", b'{"user": 7}', ttl=3600)
>>> store.get("session:42")
b'{"user": 7}'
>>> store.incr("hits")
1
"""

from ._errors import (
    AlreadyExists,
    BadRecord,
    CacheTimeout,
    Contended,
    Corrupted,
    Error,
    Full,
    Incompatible,
    Insecure,
    InvalidArgument,
    InvalidConfig,
    InvalidCounterName,
    InvalidName,
    InvalidTtl,
    IoError,
    KeyTooLong,
    LockTimeout,
    NotAnInteger,
    NotFound,
    NotInitialized,
    NotOwner,
    Overflow,
    RegistryFull,
    TooManyCounters,
    ValueTooLarge,
)
from ._shmstate import (
    FORMAT_VERSION,
    OPTIONS,
    PROMETHEUS_CONTENT_TYPE,
    Cache,
    Counter,
    Decision,
    Gauge,
    KeyIter,
    Lock,
    LockHolder,
    Namespace,
    RateLimiter,
    Store,
    VerifyReport,
    Worker,
    Workers,
    __version__,
)

__all__ = [
    "Store",
    "Counter",
    "Lock",
    "LockHolder",
    "RateLimiter",
    "Decision",
    "Cache",
    "Namespace",
    "Workers",
    "Worker",
    "Gauge",
    "VerifyReport",
    "KeyIter",
    "FORMAT_VERSION",
    "OPTIONS",
    "PROMETHEUS_CONTENT_TYPE",
    "__version__",
    "Error",
    "KeyTooLong",
    "ValueTooLarge",
    "Full",
    "NotAnInteger",
    "Overflow",
    "InvalidTtl",
    "InvalidCounterName",
    "TooManyCounters",
    "InvalidConfig",
    "InvalidName",
    "Incompatible",
    "Corrupted",
    "Insecure",
    "AlreadyExists",
    "NotFound",
    "NotInitialized",
    "LockTimeout",
    "IoError",
    "BadRecord",
    "InvalidArgument",
    "Contended",
    "RegistryFull",
    "NotOwner",
    "CacheTimeout",
]
