'use strict';
// An express-rate-limit Store over a shmstate Store: one count per client shared by every
// cluster worker, exact (each hit is one atomic increment in shared memory), surviving the
// death of any worker.
//
//   const { rateLimit } = require('express-rate-limit');
//   const { ShmRateLimitStore } = require('shmstate/express-rate-limit');
//   app.use(rateLimit({ windowMs: 60_000, limit: 100, store: new ShmRateLimitStore({ store }) }));
//
// A client's window starts with its first hit (the count is created with a TTL of windowMs),
// as with the Redis store.

const { Store } = require('./index.js');

class ShmRateLimitStore {
  #store;
  #windowMs = 60_000;

  /**
   * @param {object} options
   * @param {Store} options.store the shmstate store
   * @param {string} [options.prefix='rl:'] key prefix (use one per limiter)
   */
  constructor({ store, prefix = 'rl:' } = {}) {
    if (!(store instanceof Store)) throw new TypeError('options.store must be a shmstate Store');
    if (typeof prefix !== 'string') throw new TypeError('options.prefix must be a string');
    this.#store = store;
    /** The counts are shared by every process using the store. */
    this.localKeys = false;
    this.prefix = prefix;
  }

  init(options) {
    this.#windowMs = options.windowMs;
  }

  #info(key, totalHits) {
    let ttl = this.#store.ttl(key);
    if (ttl === Infinity) {
      // Someone removed the TTL (or set the key without one): give it a window again.
      this.#store.expire(key, this.#windowMs);
      ttl = this.#windowMs;
    }
    return { totalHits, resetTime: new Date(Date.now() + (ttl ?? this.#windowMs)) };
  }

  async increment(key) {
    const k = this.prefix + key;
    return this.#info(k, this.#store.incr(k, 1, this.#windowMs));
  }

  async decrement(key) {
    const k = this.prefix + key;
    const ttl = this.#store.ttl(k);
    // Only an existing count. (If it expires between the two calls, the -1 made here lives
    // for what was left of its window.)
    if (ttl !== null) this.#store.incr(k, -1, ttl === Infinity ? this.#windowMs : Math.max(1, ttl));
  }

  async get(key) {
    const k = this.prefix + key;
    const v = this.#store.getString(k);
    if (v === null) return undefined;
    return this.#info(k, Number(v));
  }

  async resetKey(key) {
    this.#store.delete(this.prefix + key);
  }

  async resetAll() {
    this.#store.deletePrefix(this.prefix);
  }
}

module.exports = { ShmRateLimitStore };
