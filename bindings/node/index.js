'use strict';
// shmstate for Node.js: the JS API over the native addon (shmstate.node, built from src/ by
// scripts/build.js). Per-request operations go straight to raw Node-API functions that check
// their own arguments; everything else is validated here first. Waits (lock, the cache's wait
// for another worker's computation) use timers and never block the event loop.

const native = loadNative();

function loadNative() {
  try {
    return require('./shmstate.node');
  } catch (e) {
    if (e && e.code === 'MODULE_NOT_FOUND') {
      const err = new Error(
        `shmstate: the native addon is not built. Run "npm run build" in ${__dirname} ` +
          '(needs cargo and a Rust toolchain).',
      );
      err.code = 'SHMSTATE_NOT_BUILT';
      err.cause = e;
      throw err;
    }
    throw e;
  }
}

// ---- argument checks (TypeError for a wrong type, RangeError for a value out of range) ----

function typeError(msg) {
  const e = new TypeError(msg);
  e.code = 'ERR_INVALID_ARG_TYPE';
  return e;
}

function rangeError(msg) {
  const e = new RangeError(msg);
  e.code = 'ERR_OUT_OF_RANGE';
  return e;
}

function describe(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  const t = typeof v;
  return t === 'object' ? 'an object' : t === 'undefined' ? 'undefined' : `a ${t} (${String(v)})`;
}

function checkString(v, what) {
  if (typeof v !== 'string') throw typeError(`${what} must be a string, got ${describe(v)}`);
  if (v.length === 0) throw rangeError(`${what} must not be empty`);
  return v;
}

function checkInt(v, what, min, max) {
  if (typeof v !== 'number') throw typeError(`${what} must be a number, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw rangeError(`${what} must be an integer from ${min} to ${max}, got ${v}`);
  }
  return v;
}

const MAX_MS = 9e15;

function checkMs(v, what, { allowZero = false } = {}) {
  if (typeof v !== 'number') throw typeError(`${what} must be a number, got ${describe(v)}`);
  if (Number.isNaN(v) || v < 0 || (v === 0 && !allowZero) || v > MAX_MS) {
    throw rangeError(`${what} must be a number of milliseconds ${allowZero ? '>= 0' : '> 0'} and <= 9e15, got ${v}`);
  }
  return v;
}

function checkFunction(v, what) {
  if (typeof v !== 'function') throw typeError(`${what} must be a function, got ${describe(v)}`);
  return v;
}

function checkObject(v, what) {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) {
    throw typeError(`${what} must be an object, got ${describe(v)}`);
  }
  return v;
}

/** A key or value for the cold (napi-rs) calls: a Buffer. */
function toBytes(v, what) {
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (Buffer.isBuffer(v)) return v;
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  throw typeError(`${what} must be a string or a Buffer, got ${describe(v)}`);
}

function checkKnown(obj, known, what) {
  for (const k of Object.keys(obj)) {
    if (!Object.prototype.hasOwnProperty.call(known, k)) {
      throw typeError(`unknown ${what} ${JSON.stringify(k)} (known: ${Object.keys(known).join(', ')})`);
    }
  }
}

// ---- store options ----

const int = (min, max) => (v, name) => checkInt(v, `options.${name}`, min, max);
const oneOf = (...allowed) => (v, name) => {
  if (typeof v !== 'string') throw typeError(`options.${name} must be a string, got ${describe(v)}`);
  if (!allowed.includes(v)) {
    throw rangeError(`options.${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got '${v}'`);
  }
  return v;
};
const bool = () => (v, name) => {
  if (typeof v !== 'boolean') throw typeError(`options.${name} must be a boolean, got ${describe(v)}`);
  return v;
};
/** A size in bytes: an integer number or a bigint (returned as a number: the range is below 2^53). */
const bytes = (min, max) => (v, name) => {
  if (typeof v === 'bigint') {
    if (v < BigInt(min) || v > BigInt(max)) {
      throw rangeError(`options.${name} must be an integer from ${min} to ${max}, got ${v}n`);
    }
    return Number(v);
  }
  if (typeof v !== 'number') throw typeError(`options.${name} must be a number or a bigint, got ${describe(v)}`);
  return checkInt(v, `options.${name}`, min, max);
};

/**
 * Every store option: its check (type and range). The core's Config is the source of the
 * limits (`shmstate::limits`); src/config.rs maps each name to its builder call. Adding an
 * option is one line here and one there. Combinations (a `memory` too small for `capacity`,
 * or for one value of `maxValueLen` per shard) are checked by the core: SHMSTATE_INVALID_CONFIG.
 */
const OPTIONS = {
  memory: bytes(1, 2 ** 40),
  capacity: int(1, 2 ** 32),
  shards: int(1, 4096),
  maxKeyLen: int(1, 64 * 1024),
  maxValueLen: int(0, 2 * 1024 * 1024 - 16 * 1024),
  maxCounters: int(0, 65536),
  lockTimeoutMs: int(1, 3_600_000),
  whenFull: oneOf('refuse', 'evict'),
  lineSizedSlots: bool(),
};

function parseOptions(options) {
  const o = checkObject(options, 'options');
  checkKnown(o, OPTIONS, 'option');
  const out = {};
  for (const [name, check] of Object.entries(OPTIONS)) {
    if (o[name] !== undefined) out[name] = check(o[name], name);
  }
  return out;
}

// ---- the store ----

const kNative = Symbol('shmstate.native');
const kFns = Symbol('shmstate.fns');
const kCreate = Symbol('shmstate.create');

// `get` copies values into a pooled slab and returns views of it, like Buffer.allocUnsafe
// (a Buffer made through Node-API costs several times more than the lookup). Each value gets
// its own bytes: the views never overlap and never point into shared memory. As with
// Buffer.allocUnsafe's pool, a retained small value keeps its 8 KiB slab alive.
const SLAB_SIZE = 8 * 1024;
const SLAB_REFILL = 1024; // start a new slab when less room than this is left
let slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
let slabPos = 0;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class Store {
  /** Use the static factories (`Store.openOrCreate(name, options)` etc.). */
  constructor(token, nativeStore) {
    if (token !== kCreate) {
      throw new TypeError('use Store.openOrCreate(), Store.create(), Store.open() or the file variants');
    }
    this[kNative] = nativeStore;
    this[kFns] = nativeStore.functions();
  }

  static #open(how, path, options) {
    return new Store(kCreate, native.NativeStore.open(how, path, options));
  }

  /** Opens the named region, creating it if needed. Safe when every worker races here. */
  static openOrCreate(name, options) {
    return Store.#open('openOrCreate', checkString(name, 'name'), parseOptions(options));
  }

  /** Creates the named region; fails with SHMSTATE_ALREADY_EXISTS if it exists. */
  static create(name, options) {
    return Store.#open('create', checkString(name, 'name'), parseOptions(options));
  }

  /** Opens an existing named region; fails with SHMSTATE_NOT_FOUND if there is none. */
  static open(name) {
    return Store.#open('open', checkString(name, 'name'), undefined);
  }

  /** Removes the name (processes that have the region open keep using it). */
  static unlink(name) {
    native.NativeStore.unlink(checkString(name, 'name'));
  }

  static createFile(path, options) {
    return Store.#open('createFile', checkString(path, 'path'), parseOptions(options));
  }

  static openFile(path) {
    return Store.#open('openFile', checkString(path, 'path'), undefined);
  }

  static openOrCreateFile(path, options) {
    return Store.#open('openOrCreateFile', checkString(path, 'path'), parseOptions(options));
  }

  /**
   * A region in anonymous shared memory: private to this process and the children it
   * fork()s without exec. Node's cluster and child_process start workers with fork+exec, so
   * they do not inherit it: use a named region to share with them.
   */
  static anonymous(options) {
    return Store.#open('anonymous', '', parseOptions(options));
  }

  // -- per-request operations (synchronous: a few hundred nanoseconds each) --

  /** A copy of the value of `key` (a Buffer), or null. */
  get(key) {
    const pos = slabPos;
    const n = this[kFns].getInto(key, slab, pos);
    if (typeof n !== 'number') return n; // did not fit: a Buffer of its own
    if (n < 0) return null;
    const b = slab.subarray(pos, pos + n);
    slabPos = (pos + n + 7) & ~7;
    if (SLAB_SIZE - slabPos < SLAB_REFILL) {
      slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
      slabPos = 0;
    }
    return b;
  }

  getString(key) {
    return this[kFns].getString(key);
  }

  has(key) {
    return this[kFns].has(key);
  }

  set(key, value, ttlMs) {
    this[kFns].set(key, value, ttlMs);
  }

  add(key, value, ttlMs) {
    return this[kFns].add(key, value, ttlMs);
  }

  replace(key, value, ttlMs) {
    return this[kFns].replace(key, value, ttlMs);
  }

  delete(key) {
    return this[kFns].delete(key);
  }

  compareAndSwap(key, expected, value, ttlMs) {
    return this[kFns].compareAndSwap(key, expected, value, ttlMs);
  }

  incr(key, delta, ttlMs) {
    return this[kFns].incr(key, delta, ttlMs);
  }

  incrBigInt(key, delta, ttlMs) {
    return this[kFns].incrBig(key, delta, ttlMs);
  }

  ttl(key) {
    return this[kFns].ttl(key);
  }

  expire(key, ttlMs) {
    return this[kFns].expire(key, ttlMs);
  }

  counter(name) {
    return new Counter(this[kNative].counter(checkString(name, 'counter name')), name);
  }

  // -- whole store --

  counters() {
    return this[kNative].counters().map(([name, value]) => ({ name, value }));
  }

  get size() {
    return this[kNative].len();
  }

  get capacity() {
    return this[kNative].capacity();
  }

  get regionBytes() {
    return this[kNative].regionBytes();
  }

  /** Where the region lives: 'anonymous', 'shm:<name>' or 'file:<path>'. */
  get origin() {
    return this[kNative].describe();
  }

  clear() {
    return this[kNative].clear();
  }

  flushExpired() {
    return this[kNative].flushExpired();
  }

  deletePrefix(prefix) {
    return this[kNative].deletePrefix(toBytes(prefix, 'prefix'));
  }

  /** One page of keys starting with `prefix`, from `cursor` (0 to start). */
  scan(cursor = 0, { prefix = '', limit = 100 } = {}) {
    if (typeof cursor !== 'number' || !Number.isSafeInteger(cursor) || cursor < 0) {
      throw (typeof cursor === 'number' ? rangeError : typeError)(`cursor must be an integer >= 0, got ${describe(cursor)}`);
    }
    checkInt(limit, 'limit', 1, 2 ** 31);
    const page = this[kNative].scan(cursor, toBytes(prefix, 'prefix'), limit);
    return { keys: page.keys, cursor: page.cursor ?? null };
  }

  /** Every key starting with `prefix` (like Redis SCAN: keys changed meanwhile may or may not come back). */
  *keys(prefix = '') {
    const p = toBytes(prefix, 'prefix');
    let cursor = 0;
    while (cursor != null) {
      const page = this[kNative].scan(cursor, p, 1000);
      yield* page.keys;
      cursor = page.cursor;
    }
  }

  stats() {
    return this[kNative].stats();
  }

  verify() {
    return this[kNative].verify();
  }

  /** Statistics and counters in the Prometheus text format. */
  metrics() {
    return this[kNative].metrics();
  }

  // -- coordination primitives --

  /** The lock `name` for `leaseMs`, or null if a live process holds it. */
  tryLock(name, leaseMs) {
    const t = this[kFns].tryLock(name, leaseMs);
    return t === 0 ? null : new Lock(this[kFns], t, name);
  }

  /** Waits up to `waitMs` (on timers) for the lock; resolves to the lock or null. */
  async lock(name, leaseMs, waitMs = 0) {
    checkString(name, 'lock name');
    checkMs(leaseMs, 'leaseMs');
    checkMs(waitMs, 'waitMs', { allowZero: true });
    const deadline = Date.now() + waitMs;
    let delay = 1;
    for (;;) {
      const t = this[kFns].tryLock(name, leaseMs);
      if (t !== 0) return new Lock(this[kFns], t, name);
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await sleep(Math.min(delay, left));
      delay = Math.min(delay * 2, 32);
    }
  }

  lockHolder(name) {
    checkString(name, 'lock name');
    return this[kNative].lockHolder(name);
  }

  rateLimiter(options) {
    return new RateLimiter(this, options);
  }

  cache(name, options) {
    return new Cache(this, name, options);
  }

  workers(name, maxWorkers = 64) {
    checkString(name, 'registry name');
    checkInt(maxWorkers, 'maxWorkers', 1, 4096);
    return new Workers(this[kNative].workers(name, maxWorkers), name);
  }
}

class Counter {
  #f;
  constructor(fns, name) {
    this.#f = fns;
    this.name = name;
  }
  /** Adds `delta` (default 1) and returns the new value. */
  add(delta) {
    return this.#f.add(delta);
  }
  get() {
    return this.#f.get();
  }
  addBigInt(delta) {
    return this.#f.addBigInt(delta);
  }
  getBigInt() {
    return this.#f.getBigInt();
  }
  set(value) {
    this.#f.set(value);
  }
}

// A lock that becomes garbage is forgotten, not released: it stays held until its lease ends
// or this process dies (taking a lock "for its lease" on purpose is a common pattern).
const forgetLock = new FinalizationRegistry(({ fns, ticket }) => fns.lockForget(ticket));

class Lock {
  #fns;
  #ticket;
  constructor(fns, ticket, name) {
    this.#fns = fns;
    this.#ticket = ticket;
    this.name = name;
    forgetLock.register(this, { fns, ticket }, this);
  }
  /** The fencing token (a bigint): larger than every earlier acquisition's of this name. */
  get fence() {
    return this.#fns.lockFence(this.#ticket);
  }
  /** Milliseconds left on the lease (0 once it ran out). */
  get leaseLeftMs() {
    return this.#fns.lockLeaseLeft(this.#ticket);
  }
  /** Whether this acquisition still owns the lock. */
  isHeld() {
    return this.#fns.lockHeld(this.#ticket);
  }
  /** Sets the lease to end `leaseMs` from now, if still ours; returns whether it was. */
  extend(leaseMs) {
    return this.#fns.lockExtend(this.#ticket, leaseMs);
  }
  /** Releases; false if the lease had expired and another process took the lock over. */
  release() {
    forgetLock.unregister(this);
    return this.#fns.lockRelease(this.#ticket);
  }
}

const ALGORITHMS = ['fixed-window', 'sliding-window', 'gcra'];

class RateLimiter {
  #check;
  #out = new Float64Array(5);
  constructor(store, options) {
    const o = checkObject(options, 'options');
    checkKnown(o, { algorithm: 1, name: 1, limit: 1, windowMs: 1, burst: 1 }, 'rate limiter option');
    const algorithm = o.algorithm === undefined ? 'fixed-window' : o.algorithm;
    if (typeof algorithm !== 'string') throw typeError(`options.algorithm must be a string, got ${describe(algorithm)}`);
    if (!ALGORITHMS.includes(algorithm)) {
      throw rangeError(`options.algorithm must be one of ${ALGORITHMS.join(', ')}, got '${algorithm}'`);
    }
    checkString(o.name, 'options.name');
    checkInt(o.limit, 'options.limit', 1, Number.MAX_SAFE_INTEGER);
    checkMs(o.windowMs, 'options.windowMs');
    let burst = 0;
    if (algorithm === 'gcra') {
      burst = o.burst === undefined ? o.limit : checkInt(o.burst, 'options.burst', 1, Number.MAX_SAFE_INTEGER);
    } else if (o.burst !== undefined) {
      throw rangeError(`options.burst applies to the 'gcra' algorithm only`);
    }
    this.algorithm = algorithm;
    this.name = o.name;
    this.#check = store[kNative].rateLimiter(algorithm, o.name, o.limit, o.windowMs, burst, this.#out);
  }
  /** Checks and counts a request of weight `cost` (default 1) for `client`. */
  check(client, cost) {
    this.#check(client, cost);
    const o = this.#out;
    return { allowed: o[0] === 1, limit: o[1], remaining: o[2], retryAfterMs: o[3], resetAfterMs: o[4] };
  }
}

class Cache {
  #n;
  #leaseMs;
  #waitMs;
  constructor(store, name, options) {
    checkString(name, 'cache name');
    const o = checkObject(options, 'options');
    checkKnown(o, { staleForMs: 1, leaseMs: 1, waitMs: 1 }, 'cache option');
    const staleForMs = o.staleForMs === undefined ? 0 : checkMs(o.staleForMs, 'options.staleForMs', { allowZero: true });
    this.#leaseMs = o.leaseMs === undefined ? 10_000 : checkMs(o.leaseMs, 'options.leaseMs');
    this.#waitMs = o.waitMs === undefined ? 5_000 : checkMs(o.waitMs, 'options.waitMs', { allowZero: true });
    this.#n = store[kNative].cache(name, staleForMs);
    this.name = name;
  }

  /**
   * The value of `key`: fresh from the cache, else computed by exactly one worker (the one that
   * wins the per-key lease) and cached for `ttlMs`, while the others get the stale value (within
   * `staleForMs`) or wait on timers (at most `waitMs`) for the result.
   */
  async getOrCompute(key, ttlMs, compute) {
    const k = toBytes(key, 'key');
    checkMs(ttlMs, 'ttlMs');
    checkFunction(compute, 'compute');
    const deadline = Date.now() + this.#waitMs;
    let delay = 1;
    for (;;) {
      const step = this.#n.step(k, this.#leaseMs);
      if (step.kind === 'hit' || step.kind === 'stale') return step.value;
      if (step.kind === 'compute') {
        let bytes;
        try {
          bytes = toBytes(await compute(), 'the computed value');
        } catch (e) {
          this.#n.abandon(step.ticket);
          throw e;
        }
        this.#n.fill(step.ticket, k, ttlMs, bytes);
        return Buffer.from(bytes);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        this.#n.timedOut();
        const e = new Error(`gave up after ${this.#waitMs} ms waiting for another worker to compute the value`);
        e.code = 'SHMSTATE_CACHE_TIMEOUT';
        throw e;
      }
      await sleep(Math.min(delay, left));
      delay = Math.min(delay * 2, 32);
    }
  }

  /** The fresh cached value, or null (never computes). */
  get(key) {
    return this.#n.peek(toBytes(key, 'key'));
  }

  invalidate(key) {
    return this.#n.invalidate(toBytes(key, 'key'));
  }

  /** Hits, misses, stale serves and timeouts of this cache name, summed over every process. */
  stats() {
    return this.#n.counts();
  }
}

class Workers {
  #n;
  constructor(nativeWorkers, name) {
    this.#n = nativeWorkers;
    this.name = name;
  }
  /** Registers this process (after fork); dead workers' slots are reaped on the way. */
  register(label = `pid-${process.pid}`) {
    if (typeof label !== 'string') throw typeError(`label must be a string, got ${describe(label)}`);
    return new Worker(this.#n.register(label));
  }
  list() {
    return this.#n.list();
  }
  gaugeTotal(gauge) {
    return this.#n.gaugeTotal(checkString(gauge, 'gauge name'));
  }
  gaugeByWorker(gauge) {
    return this.#n.gaugeByWorker(checkString(gauge, 'gauge name'));
  }
  reap() {
    return this.#n.reap();
  }
}

class Worker {
  #n;
  constructor(nativeWorker) {
    this.#n = nativeWorker;
  }
  get slot() {
    return this.#n.slot;
  }
  /** This worker's gauge `name`: `{ add(delta), set(value), get() }`, one atomic op each. */
  gauge(name) {
    return this.#n.gauge(checkString(name, 'gauge name'));
  }
  deregister() {
    return this.#n.deregister();
  }
}

/** Every error code and its class (`Error` or `RangeError`). */
const ERROR_CODES = Object.freeze(
  Object.fromEntries([
    ...native.errorCodes().map(([code, cls]) => [code, cls]),
    ['SHMSTATE_UNSAFE_INTEGER', 'RangeError'],
    ['SHMSTATE_CACHE_TIMEOUT', 'Error'],
    ['SHMSTATE_INTERNAL', 'Error'],
    ['SHMSTATE_ERROR', 'Error'],
  ]),
);

module.exports = { Store, Counter, Lock, RateLimiter, Cache, Workers, Worker, ERROR_CODES, OPTIONS: Object.keys(OPTIONS) };
