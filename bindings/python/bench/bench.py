"""get / set / incr from Python: shmstate against what Python users use today.

    python bench/bench.py [--seconds 1.0] [--smoke]

16-byte keys (1000 of them, cycled), 256-byte values. Each cell runs for --seconds in one
process, then in two processes at once (forked with multiprocessing, started together).
Prints markdown tables: nanoseconds per operation in one process, operations per second of
the two processes together, and ratios against shmstate measured in the same run.

Backends:
  shmstate     Store.anonymous (inherited by the forked processes); get copies into new bytes
  dict         a plain dict in each process (not shared: the floor). "get" is d[k] plus a copy
               of the value (bytearray(v)), as shmstate copies out of shared memory; the row
               "dict, get without copy" is d[k] alone
  (every cell calls the operation through a lambda, the same call overhead for every row)
  Manager      multiprocessing.Manager().dict(); incr = get + set under a Manager().Lock()
               (what it takes to be atomic across processes)
  diskcache    diskcache.Cache on a temporary directory; incr is diskcache's own (atomic)
  redis-py     redis.Redis over a unix socket to a redis-server this script starts (no
               persistence); GET / SET / INCR
diskcache and redis-py are skipped (and said so) when not installed, or when redis-server is
missing.
"""

import argparse
import datetime
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import shmstate

KEYS = [b"key:%012d" % i for i in range(1000)]
assert all(len(k) == 16 for k in KEYS)
VALUE = bytes(range(256))
OPS = ("get", "set", "incr")


# ---- backends: each is a class with setup() in the parent, open() in each process, and the
# three operations as methods taking the key index ----


class Shm:
    name = "shmstate"

    def setup(self):
        self.store = shmstate.Store.anonymous(capacity=10_000, max_key_len=16, max_value_len=256)
        for k in KEYS:
            self.store.set(k, VALUE)

    def open(self):
        s = self.store
        return {
            "get": lambda k: s.get(k),
            "set": lambda k: s.set(k, VALUE),
            "incr": lambda k: s.incr(b"counter:0000000"),
        }

    def close(self):
        pass


class Dict:
    name = "dict (floor)"

    def setup(self):
        pass

    def open(self):
        d = {k: VALUE for k in KEYS}
        d[b"counter"] = 0

        def incr(_):
            d[b"counter"] += 1

        return {
            "get": lambda k: bytearray(d[k]),
            "set": lambda k: d.__setitem__(k, VALUE),
            "incr": incr,
        }

    def close(self):
        pass


class DictNoCopy(Dict):
    name = "dict, get without copy"

    def open(self):
        fns = super().open()
        d = {k: VALUE for k in KEYS}
        fns["get"] = lambda k: d[k]
        return fns


class Manager:
    name = "Manager().dict()"

    def setup(self):
        self.mgr = multiprocessing.get_context("fork").Manager()
        self.d = self.mgr.dict()
        self.lock = self.mgr.Lock()
        for k in KEYS:
            self.d[k] = VALUE
        self.d[b"counter"] = 0

    def open(self):
        d, lock = self.d, self.lock

        def incr(_):
            with lock:
                d[b"counter"] = d[b"counter"] + 1

        return {
            "get": lambda k: d.get(k),
            "set": lambda k: d.__setitem__(k, VALUE),
            "incr": incr,
        }

    def close(self):
        self.mgr.shutdown()


class DiskCache:
    name = "diskcache"

    def setup(self):
        import diskcache  # noqa: F401

        self.dir = tempfile.mkdtemp(prefix="bench-diskcache-")
        c = diskcache.Cache(self.dir)
        for k in KEYS:
            c.set(k, VALUE)
        c.close()

    def open(self):
        import diskcache

        c = diskcache.Cache(self.dir)
        return {
            "get": lambda k: c.get(k),
            "set": lambda k: c.set(k, VALUE),
            "incr": lambda k: c.incr(b"counter"),
        }

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    name = "redis-py (unix socket)"

    def setup(self):
        import redis  # noqa: F401

        server = shutil.which("redis-server")
        if not server:
            raise RuntimeError("redis-server not found (apt-get install redis-server)")
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.sock = os.path.join(self.dir, "redis.sock")
        self.proc = subprocess.Popen(
            [server, "--port", "0", "--unixsocket", self.sock, "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not os.path.exists(self.sock):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        r = self._client()
        for _ in range(100):
            try:
                r.ping()
                break
            except Exception:
                time.sleep(0.05)
        for k in KEYS:
            r.set(k, VALUE)
        self.version = r.info()["redis_version"]
        r.close()

    def _client(self):
        import redis

        return redis.Redis(unix_socket_path=self.sock)

    def open(self):
        r = self._client()
        return {
            "get": lambda k: r.get(k),
            "set": lambda k: r.set(k, VALUE),
            "incr": lambda k: r.incr(b"counter"),
        }

    def close(self):
        if getattr(self, "proc", None) and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(getattr(self, "dir", ""), ignore_errors=True)


# ---- measurement ----


def run_for(fn, seconds):
    """Calls fn(key) in batches of 100 until `seconds` have passed; returns (ops, elapsed)."""
    keys = KEYS
    n = len(keys)
    ops = 0
    i = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            fn(keys[i])
            i += 1
            if i == n:
                i = 0
        ops += 100
        now = time.perf_counter()
        if now >= deadline:
            return ops, now - start


def one_process(backend, op, seconds):
    fns = backend.open()
    run_for(fns[op], min(seconds / 10, 0.1))  # warm up
    ops, elapsed = run_for(fns[op], seconds)
    return elapsed / ops * 1e9


def _child(backend, op, seconds, barrier, results):
    fns = backend.open()
    run_for(fns[op], min(seconds / 10, 0.1))
    barrier.wait(60)
    ops, elapsed = run_for(fns[op], seconds)
    results.put(ops / elapsed)


def two_processes(backend, op, seconds):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(backend, op, seconds, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    rates = [results.get(timeout=seconds * 10 + 120) for _ in procs]
    for p in procs:
        p.join(60)
        if p.is_alive():
            p.kill()
    return sum(rates)


def fmt_ns(ns):
    return "%.0f" % ns if ns >= 100 else "%.1f" % ns


def fmt_rate(r):
    if r >= 1e6:
        return "%.2f M" % (r / 1e6)
    if r >= 1e3:
        return "%.1f k" % (r / 1e3)
    return "%.0f" % r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="per cell and process count")
    ap.add_argument("--smoke", action="store_true", help="a few ms per cell (checks the script)")
    args = ap.parse_args()
    seconds = 0.02 if args.smoke else args.seconds

    backends = [Shm(), Dict(), DictNoCopy(), Manager(), DiskCache(), Redis()]
    results = {}
    notes = []
    for b in backends:
        try:
            b.setup()
        except Exception as e:  # a missing optional package or server
            notes.append("%s: skipped (%s: %s)" % (b.name, type(e).__name__, e))
            continue
        try:
            row = {}
            for op in OPS:
                row[op] = one_process(b, op, seconds)
                row[op + "2"] = two_processes(b, op, seconds)
            results[b.name] = row
            if isinstance(b, Redis):
                notes.append("redis-server %s" % b.version)
        finally:
            b.close()

    load = os.getloadavg()
    print("Run %s, Python %s, %s, %d CPUs, load average %.1f at the end, %.2f s per cell%s."
          % (datetime.date.today().isoformat(), platform.python_version(), platform.machine(),
             os.cpu_count(), load[0], seconds, " (smoke)" if args.smoke else ""))
    print("16-byte keys, 256-byte values. Processes are not pinned to CPUs.")
    for n in notes:
        print("- " + n)
    print()
    print("| backend | get ns/op | set ns/op | incr ns/op | get ops/s, 2 procs | set ops/s, 2 procs | incr ops/s, 2 procs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print("| %s | %s | %s | %s | %s | %s | %s |" % (
            name, fmt_ns(r["get"]), fmt_ns(r["set"]), fmt_ns(r["incr"]),
            fmt_rate(r["get2"]), fmt_rate(r["set2"]), fmt_rate(r["incr2"])))
    shm = results.get("shmstate")
    if not shm:
        sys.exit("shmstate did not run")
    print()
    print("shmstate speed-up (other's time per op / shmstate's; 2 procs: shmstate's ops/s / other's):")
    print()
    print("| against | get | set | incr | get, 2 procs | set, 2 procs | incr, 2 procs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        if name == "shmstate":
            continue
        print("| %s | %.1fx | %.1fx | %.1fx | %.1fx | %.1fx | %.1fx |" % (
            name, r["get"] / shm["get"], r["set"] / shm["set"], r["incr"] / shm["incr"],
            shm["get2"] / r["get2"], shm["set2"] / r["set2"], shm["incr2"] / r["incr2"]))
    print()
    targets = []
    if "Manager().dict()" in results:
        x = results["Manager().dict()"]["get"] / shm["get"]
        targets.append(("get >= 100x Manager().dict()", x >= 100, "%.0fx" % x))
    if "redis-py (unix socket)" in results:
        x = results["redis-py (unix socket)"]["get"] / shm["get"]
        targets.append(("get >= 10x redis-py", x >= 10, "%.1fx" % x))
    x = shm["get"] / results["dict (floor)"]["get"]
    targets.append(("get within 3x of dict lookup + copy", x <= 3, "%.2fx the floor" % x))
    for what, ok, val in targets:
        print("- target %s: %s (%s)" % (what, "met" if ok else "NOT met", val))


if __name__ == "__main__":
    main()
