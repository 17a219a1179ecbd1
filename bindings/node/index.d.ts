/// <reference types="node" />
// Types of the shmstate Node.js binding. Every operation is synchronous (about 100 ns) except
// the waits (`lock`, `Cache.getOrCompute`), which return Promises and never block the event
// loop.

/** A key or a value: a string (stored as its UTF-8 bytes) or bytes. */
export type Bytes = string | Buffer | Uint8Array;

/**
 * Options of a new region (ignored by `open`; `openOrCreate` refuses an existing region whose
 * options differ, with `SHMSTATE_INCOMPATIBLE`). A wrong type is a TypeError, a value out of
 * range a RangeError.
 */
export interface StoreOptions {
  /**
   * The region's size in bytes, index and values together (1 to 2^40, a number or a bigint),
   * like `lua_shared_dict cache 64m`. The index (`capacity` entries) comes first; the rest is
   * the value heap, shared equally between the shards, each of which must hold one value of
   * `maxValueLen` (else SHMSTATE_INVALID_CONFIG). Default: 1 KiB of heap per entry of
   * `capacity` (at least one `maxValueLen` value per shard) plus the index.
   */
  memory?: number | bigint;
  /**
   * Entries the store must hold (1 to 2^32). Default: `memory / 1024` when `memory` is set,
   * else 65 536. The table does not grow.
   */
  capacity?: number;
  /** Shards, each with its own lock (1 to 4096; default: a power of two >= 4 x CPUs, fewer for small stores). */
  shards?: number;
  /** Longest key in bytes (1 to 65 536; default 64). */
  maxKeyLen?: number;
  /**
   * Longest value in bytes (0 to 2 MiB - 16 KiB; default 1 MiB). A limit, not a reservation:
   * values take the memory they need (up to 24 bytes in the entry's slot, longer ones in the heap).
   */
  maxValueLen?: number;
  /** Named counters the region can hold (0 to 65 536; default 256). */
  maxCounters?: number;
  /**
   * What a write does when there is no room (no free slot for a new key, or no heap space
   * for its value after reclaiming expired entries): refuse (SHMSTATE_FULL) or evict.
   */
  whenFull?: 'refuse' | 'evict';
  /** How long a write waits for a shard lock held by a live process (default 10 000 ms). */
  lockTimeoutMs?: number;
  /** Round slots up to whole 64-byte cache lines (the extra room is usable key length). */
  lineSizedSlots?: boolean;
}

/** Every error code this package throws, each on an Error with that `code`. */
export type ErrorCode =
  | 'SHMSTATE_KEY_TOO_LONG'
  | 'SHMSTATE_VALUE_TOO_LARGE'
  | 'SHMSTATE_FULL'
  | 'SHMSTATE_NOT_AN_INTEGER'
  | 'SHMSTATE_OVERFLOW'
  | 'SHMSTATE_INVALID_TTL'
  | 'SHMSTATE_INVALID_COUNTER_NAME'
  | 'SHMSTATE_TOO_MANY_COUNTERS'
  | 'SHMSTATE_INVALID_CONFIG'
  | 'SHMSTATE_INVALID_NAME'
  | 'SHMSTATE_INCOMPATIBLE'
  | 'SHMSTATE_CORRUPTED'
  | 'SHMSTATE_INSECURE'
  | 'SHMSTATE_ALREADY_EXISTS'
  | 'SHMSTATE_NOT_FOUND'
  | 'SHMSTATE_NOT_INITIALIZED'
  | 'SHMSTATE_LOCK_TIMEOUT'
  | 'SHMSTATE_IO'
  | 'SHMSTATE_BAD_RECORD'
  | 'SHMSTATE_INVALID_ARGUMENT'
  | 'SHMSTATE_CONTENDED'
  | 'SHMSTATE_REGISTRY_FULL'
  | 'SHMSTATE_NOT_OWNER'
  | 'SHMSTATE_BACKEND'
  | 'SHMSTATE_UNSAFE_INTEGER'
  | 'SHMSTATE_CACHE_TIMEOUT'
  | 'SHMSTATE_INTERNAL'
  | 'SHMSTATE_ERROR'
  /** `require` found no built addon (run `npm run build`). */
  | 'SHMSTATE_NOT_BUILT'
  /** A wrong argument type (TypeError), as in Node's own APIs. */
  | 'ERR_INVALID_ARG_TYPE'
  /** An argument out of range (RangeError), as in Node's own APIs. */
  | 'ERR_OUT_OF_RANGE';

export interface ShmstateError extends Error {
  code: ErrorCode;
}

/** `code -> 'Error' | 'RangeError'` for every SHMSTATE_* code. */
export const ERROR_CODES: Readonly<Record<string, 'Error' | 'RangeError' | 'TypeError'>>;

/** Names of the store options. */
export const OPTIONS: readonly string[];

export interface Stats {
  entries: number;
  capacity: number;
  slots: number;
  tombstones: number;
  hits: number;
  misses: number;
  sets: number;
  deletes: number;
  expirations: number;
  evictions: number;
  fullRefusals: number;
  lockRecoveries: number;
  lockContended: number;
  counters: number;
  regionBytes: number;
  /** Bytes of the values stored in the heap (values longer than 24 bytes; shorter ones live in their slot). */
  valueBytes: number;
  /** Size of the value heap (every shard's pages). */
  heapBytes: number;
  /** Heap bytes free: whole free pages plus free blocks of partly used pages. */
  heapFreeBytes: number;
  /** Of `heapFreeBytes`, those in free blocks of partly used pages (compaction frees them when needed). */
  heapPartialFreeBytes: number;
  /** The largest value a write can store now without evicting (conservative: the key's shard may have less room). */
  largestValue: number;
  /** `heapPartialFreeBytes / heapFreeBytes`, from 0 to 1 (0 when nothing is free). */
  fragmentation: number;
}

export interface VerifyResult {
  /** True when no invariant is broken. */
  ok: boolean;
  shards: number;
  entries: number;
  expired: number;
  tombstones: number;
  counters: number;
  /** One line per broken invariant. */
  problems: string[];
  summary: string;
}

export interface LockHolder {
  pid: number;
  fence: bigint;
  leaseLeftMs: number;
  holderDead: boolean;
}

export interface RateLimiterOptions {
  /** Default 'fixed-window'. */
  algorithm?: 'fixed-window' | 'sliding-window' | 'gcra';
  /** At most 64 bytes, no ':'. */
  name: string;
  /** Requests per window (for GCRA: the sustained rate per window). */
  limit: number;
  windowMs: number;
  /** GCRA only: the burst allowance (default `limit`). */
  burst?: number;
}

export interface Decision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** When denied: ms until a request of the same cost is allowed (for Retry-After). */
  retryAfterMs: number;
  /** Ms until the client's allowance is full again (for RateLimit-Reset). */
  resetAfterMs: number;
}

export interface CacheOptions {
  /** How long after its TTL a value may still be served while one worker refreshes it (default 0). */
  staleForMs?: number;
  /** How long the computing worker holds the per-key lease before another may take over (default 10 000). */
  leaseMs?: number;
  /** How long a worker without a stale value waits for another's computation (default 5 000). */
  waitMs?: number;
}

export interface CacheStats {
  hits: number;
  misses: number;
  stale: number;
  timeouts: number;
}

export interface WorkerInfo {
  slot: number;
  pid: number;
  label: string;
}

export interface GaugeValue extends WorkerInfo {
  value: number;
}

/** A named 64-bit counter: each call is one atomic instruction. */
export class Counter {
  private constructor();
  readonly name: string;
  /** Adds `delta` (default 1, a safe integer) and returns the new value. A result past
   * Number.MAX_SAFE_INTEGER is undone and throws RangeError SHMSTATE_UNSAFE_INTEGER. */
  add(delta?: number): number;
  /** The value (RangeError SHMSTATE_UNSAFE_INTEGER past Number.MAX_SAFE_INTEGER). */
  get(): number;
  /** Full 64-bit range (wraps on overflow). */
  addBigInt(delta: bigint): bigint;
  getBigInt(): bigint;
  set(value: number | bigint): void;
}

/** An acquired leased lock. Not released by garbage collection: only by `release()`, the end
 * of its lease, or the death of this process (then the next `tryLock` takes it over at once). */
export class Lock {
  private constructor();
  readonly name: string;
  /** Fencing token: larger than every earlier acquisition's of this name. */
  readonly fence: bigint;
  readonly leaseLeftMs: number;
  isHeld(): boolean;
  extend(leaseMs: number): boolean;
  /** False if the lease had expired and another process took the lock over. */
  release(): boolean;
}

export class RateLimiter {
  private constructor();
  readonly algorithm: 'fixed-window' | 'sliding-window' | 'gcra';
  readonly name: string;
  /** Checks and counts a request of weight `cost` (default 1) for `client`. */
  check(client: Bytes, cost?: number): Decision;
}

export class Cache {
  private constructor();
  readonly name: string;
  /**
   * The value of `key`: fresh from the cache, else computed by exactly one worker and cached
   * for `ttlMs`; the others get the stale value or wait (on timers) for the result. Rejects with
   * `compute`'s error (nothing cached), or SHMSTATE_CACHE_TIMEOUT after `waitMs`.
   */
  getOrCompute(key: Bytes, ttlMs: number, compute: () => Bytes | Promise<Bytes>): Promise<Buffer>;
  /** The fresh cached value, or null (never computes). */
  get(key: Bytes): Buffer | null;
  invalidate(key: Bytes): boolean;
  stats(): CacheStats;
}

export interface Gauge {
  /** Adds `delta` (default 1) to this worker's value; returns it. */
  add(delta?: number): number;
  set(value: number): void;
  get(): number;
}

export class Worker {
  private constructor();
  readonly slot: number;
  /** This worker's gauge: summed over live workers by `Workers.gaugeTotal`. */
  gauge(name: string): Gauge;
  deregister(): boolean;
}

export class Workers {
  private constructor();
  readonly name: string;
  /** Registers this process; a dead worker's slot (and its gauges) is reaped on the way. */
  register(label?: string): Worker;
  list(): WorkerInfo[];
  gaugeTotal(gauge: string): number;
  gaugeByWorker(gauge: string): GaugeValue[];
  reap(): number;
}

export class Store {
  private constructor();

  /** Opens the named region, creating it if needed; safe when every worker races here. */
  static openOrCreate(name: string, options?: StoreOptions): Store;
  static create(name: string, options?: StoreOptions): Store;
  static open(name: string): Store;
  /** Removes the name; processes that have the region open keep using it. */
  static unlink(name: string): void;
  /** A file-backed region (survives restarts, TTLs included). */
  static createFile(path: string, options?: StoreOptions): Store;
  static openFile(path: string): Store;
  static openOrCreateFile(path: string, options?: StoreOptions): Store;
  /** Anonymous shared memory: only children forked without exec share it (not cluster workers). */
  static anonymous(options?: StoreOptions): Store;

  /** A copy of the value (never a view of shared memory), or null. */
  get(key: Bytes): Buffer | null;
  /** The value decoded as UTF-8, or null. */
  getString(key: Bytes): string | null;
  has(key: Bytes): boolean;
  /** Stores `value`; `ttlMs` (> 0) makes it expire, undefined/null means never. */
  set(key: Bytes, value: Bytes, ttlMs?: number | null): void;
  /** Stores only if absent; returns whether it did. */
  add(key: Bytes, value: Bytes, ttlMs?: number | null): boolean;
  /** Stores only if present; returns whether it did. */
  replace(key: Bytes, value: Bytes, ttlMs?: number | null): boolean;
  delete(key: Bytes): boolean;
  /** If the value equals `expected` (null: absent), replace it with `value` (null: delete). */
  compareAndSwap(key: Bytes, expected: Bytes | null, value: Bytes | null, ttlMs?: number | null): boolean;
  /** Adds `delta` (default 1) to the decimal integer under `key` (created with `ttlMs`). */
  incr(key: Bytes, delta?: number, ttlMs?: number | null): number;
  incrBigInt(key: Bytes, delta: bigint, ttlMs?: number | null): bigint;
  /** Ms left; Infinity if the key never expires; null if absent. */
  ttl(key: Bytes): number | null;
  /** Sets (or with null removes) the TTL of an existing key; returns whether it existed. */
  expire(key: Bytes, ttlMs: number | null): boolean;
  counter(name: string): Counter;
  /** Every counter; values past 2^53 are bigints. */
  counters(): Array<{ name: string; value: number | bigint }>;

  readonly size: number;
  readonly capacity: number;
  readonly regionBytes: number;
  /** 'anonymous', 'shm:<name>' or 'file:<path>'. */
  readonly origin: string;
  clear(): number;
  flushExpired(): number;
  deletePrefix(prefix: Bytes): number;
  scan(cursor?: number, options?: { prefix?: Bytes; limit?: number }): { keys: Buffer[]; cursor: number | null };
  keys(prefix?: Bytes): Generator<Buffer, void, undefined>;
  stats(): Stats;
  verify(): VerifyResult;
  /** Statistics and counters in the Prometheus text format (version 0.0.4). */
  metrics(): string;

  tryLock(name: string, leaseMs: number): Lock | null;
  /** Waits up to `waitMs` (default 0) on timers; resolves to the lock or null. */
  lock(name: string, leaseMs: number, waitMs?: number): Promise<Lock | null>;
  lockHolder(name: string): LockHolder | null;
  rateLimiter(options: RateLimiterOptions): RateLimiter;
  cache(name: string, options?: CacheOptions): Cache;
  workers(name: string, maxWorkers?: number): Workers;
}
