"""The exceptions of shmstate: one class per error of the Rust core.

Every class derives from :class:`shmstate.Error`; most also derive from the built-in exception
with the same meaning, so ``except ValueError`` catches a too-long key and ``except TimeoutError``
a lock timeout. Some carry attributes (``len`` and ``max`` for a too-long key or a too-large
value, ``waited`` in seconds for timeouts, ``path`` for files and shm objects).
"""

__all__ = [
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


class Error(Exception):
    """Base class of every shmstate error."""

    __module__ = "shmstate"


class KeyTooLong(Error, ValueError):
    """The key is longer than the store's ``max_key_len`` (attributes ``len``, ``max``)."""

    __module__ = "shmstate"


class ValueTooLarge(Error, ValueError):
    """The value is larger than the store's ``max_value_len`` (attributes ``len``, ``max``)."""

    __module__ = "shmstate"


class Full(Error):
    """No room: no free slot for a new key, or no heap space for its value even after
    reclaiming expired entries (the store refuses rather than evicts: ``when_full="refuse"``).
    Nothing was stored, and no other entry was touched."""

    __module__ = "shmstate"


class NotAnInteger(Error, ValueError):
    """``incr`` found a value that is not a decimal 64-bit integer."""

    __module__ = "shmstate"


class Overflow(Error, OverflowError):
    """``incr`` would overflow a signed 64-bit integer."""

    __module__ = "shmstate"


class InvalidTtl(Error, ValueError):
    """A TTL of zero, or one whose expiry time does not fit in 64-bit milliseconds."""

    __module__ = "shmstate"


class InvalidCounterName(Error, ValueError):
    """A counter name that is empty or too long (at most 112 bytes)."""

    __module__ = "shmstate"


class TooManyCounters(Error):
    """All counter slots of the region are taken (raise ``max_counters``)."""

    __module__ = "shmstate"


class InvalidConfig(Error, ValueError):
    """An option out of range (attribute ``field``)."""

    __module__ = "shmstate"


class InvalidName(Error, ValueError):
    """A shm object name that is empty, too long, or contains ``/`` after the first character."""

    __module__ = "shmstate"


class Incompatible(Error):
    """The region is not a shmstate region, is of another format version or build, or (for
    ``open_or_create``) has another configuration (attribute ``field``)."""

    __module__ = "shmstate"


class Corrupted(Error):
    """The region breaks an invariant (another process scribbled on it); nothing was done."""

    __module__ = "shmstate"


class Insecure(Error, PermissionError):
    """The object or file is not safe to map (owner, mode, not a regular file, a symlink)."""

    __module__ = "shmstate"


class AlreadyExists(Error, FileExistsError):
    """``create`` found a store of that name (attribute ``path``)."""

    __module__ = "shmstate"


class NotFound(Error, FileNotFoundError):
    """``open`` found no store of that name (attribute ``path``)."""

    __module__ = "shmstate"


class NotInitialized(Error):
    """The region's creator did not finish initializing it."""

    __module__ = "shmstate"


class LockTimeout(Error, TimeoutError):
    """A lock is still held by a live process after the wait bound (attribute ``waited``, in
    seconds): a shard lock after ``lock_timeout``, or ``Store.lock`` after its ``wait``."""

    __module__ = "shmstate"


class IoError(Error, OSError):
    """An operating-system call failed (``errno``, ``strerror``, and ``op``: which call)."""

    __module__ = "shmstate"


class BadRecord(Error):
    """A key reserved by a primitive (lock, rate limiter, cache, ...) holds a foreign value."""

    __module__ = "shmstate"


class InvalidArgument(Error, ValueError):
    """An argument of a primitive is out of range (attribute ``argument``)."""

    __module__ = "shmstate"


class Contended(Error):
    """A compare-and-swap loop kept losing to other writers; nothing changed, retry."""

    __module__ = "shmstate"


class RegistryFull(Error):
    """Every slot of a worker registry is held by a live worker."""

    __module__ = "shmstate"


class NotOwner(Error):
    """A per-process handle (a worker's gauge) was used from another process."""

    __module__ = "shmstate"


class CacheTimeout(Error, TimeoutError):
    """``Cache.get_or_compute`` waited ``wait`` seconds for another process's computation and
    had no stale value to serve (attribute ``waited``)."""

    __module__ = "shmstate"
