'use strict';
// An express-session Store over a shmstate Store: every cluster worker sees every session, a
// worker killed mid-request never loses or corrupts the others' sessions, and sessions
// expire by themselves (the cookie's expiry is the entry's TTL).
//
//   const session = require('express-session');
//   const { ShmSessionStore } = require('shmstate/express-session');
//   app.use(session({ store: new ShmSessionStore({ store }), secret, resave: false, saveUninitialized: false }));
//
// Sessions are stored as JSON strings under `prefix + sid`; a session must fit the store's
// maxValueLen (a larger one fails the request with SHMSTATE_VALUE_TOO_LARGE).

const { Store: SessionStore } = require('express-session');
const { Store } = require('./index.js');

const DAY_MS = 86_400_000;

class ShmSessionStore extends SessionStore {
  #store;
  #prefix;
  #ttlMs;
  #serializer;

  /**
   * @param {object} options
   * @param {Store} options.store the shmstate store
   * @param {string} [options.prefix='sess:'] key prefix
   * @param {number} [options.ttlMs=86400000] TTL of sessions whose cookie has no expiry
   * @param {{stringify: Function, parse: Function}} [options.serializer=JSON]
   */
  constructor({ store, prefix = 'sess:', ttlMs = DAY_MS, serializer = JSON } = {}) {
    super();
    if (!(store instanceof Store)) throw new TypeError('options.store must be a shmstate Store');
    if (typeof prefix !== 'string') throw new TypeError('options.prefix must be a string');
    if (typeof ttlMs !== 'number' || !(ttlMs > 0)) throw new RangeError('options.ttlMs must be a number > 0');
    if (!serializer || typeof serializer.parse !== 'function' || typeof serializer.stringify !== 'function') {
      throw new TypeError('options.serializer must have parse() and stringify()');
    }
    this.#store = store;
    this.#prefix = prefix;
    this.#ttlMs = ttlMs;
    this.#serializer = serializer;
  }

  /** Milliseconds the session should live: the cookie's expiry, else the default. */
  #ttl(sess) {
    const c = sess && sess.cookie;
    if (c) {
      if (c.expires) {
        const ms = new Date(c.expires).getTime() - Date.now();
        if (!Number.isNaN(ms)) return ms;
      }
      if (typeof c.maxAge === 'number') return c.maxAge;
    }
    return this.#ttlMs;
  }

  get(sid, cb) {
    let result = null;
    try {
      const s = this.#store.getString(this.#prefix + sid);
      result = s === null ? null : this.#serializer.parse(s);
    } catch (e) {
      return cb(e);
    }
    cb(null, result);
  }

  set(sid, sess, cb = noop) {
    try {
      const ttl = this.#ttl(sess);
      if (ttl <= 0) {
        this.#store.delete(this.#prefix + sid); // already expired
      } else {
        this.#store.set(this.#prefix + sid, this.#serializer.stringify(sess), ttl);
      }
    } catch (e) {
      return cb(e);
    }
    cb(null);
  }

  touch(sid, sess, cb = noop) {
    try {
      const ttl = this.#ttl(sess);
      if (ttl <= 0) this.#store.delete(this.#prefix + sid);
      else this.#store.expire(this.#prefix + sid, ttl);
    } catch (e) {
      return cb(e);
    }
    cb(null);
  }

  destroy(sid, cb = noop) {
    try {
      this.#store.delete(this.#prefix + sid);
    } catch (e) {
      return cb(e);
    }
    cb(null);
  }

  /** Number of sessions (a scan of the keys with the prefix). */
  length(cb) {
    let n = 0;
    try {
      for (const _ of this.#store.keys(this.#prefix)) n++;
    } catch (e) {
      return cb(e);
    }
    cb(null, n);
  }

  /** Removes every session (not atomic across the store's shards). */
  clear(cb = noop) {
    try {
      this.#store.deletePrefix(this.#prefix);
    } catch (e) {
      return cb(e);
    }
    cb(null);
  }

  /** Every session, as an array (a scan; sessions that expire meanwhile are left out). */
  all(cb) {
    const out = [];
    try {
      for (const k of this.#store.keys(this.#prefix)) {
        const s = this.#store.getString(k);
        if (s !== null) out.push(this.#serializer.parse(s));
      }
    } catch (e) {
      return cb(e);
    }
    cb(null, out);
  }
}

function noop() {}

module.exports = { ShmSessionStore };
