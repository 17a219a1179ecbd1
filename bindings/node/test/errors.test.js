'use strict';
// Bad input gets a TypeError (wrong type) or a RangeError (out of range) with a code, never a
// crash; store errors are Errors with a stable SHMSTATE_* code and the core's message.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Store, ERROR_CODES } = require('..');
const h = require('./helpers');

test.after(() => h.cleanupNames());

const store = () => Store.openOrCreate(h.uniqueName('err'), { capacity: 100, maxKeyLen: 16, maxValueLen: 32 });
const typeErr = { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' };
const rangeErr = { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' };

const NOT_KEYS = [undefined, null, 1, 1.5, true, {}, [], Symbol('s'), () => {}, 10n];

test('keys and values must be strings or Buffers (TypeError)', () => {
  const s = store();
  for (const bad of NOT_KEYS) {
    for (const call of [
      () => s.get(bad),
      () => s.getString(bad),
      () => s.has(bad),
      () => s.set(bad, 'v'),
      () => s.set('k', bad),
      () => s.add(bad, 'v'),
      () => s.replace('k', bad),
      () => s.delete(bad),
      () => s.incr(bad),
      () => s.ttl(bad),
      () => s.expire(bad, 10),
      () => s.compareAndSwap(bad, null, 'v'),
    ]) {
      assert.throws(call, typeErr, `${String(bad)} in ${call}`);
    }
  }
  // compareAndSwap: null/undefined mean "absent" for expected and value, other non-bytes throw.
  assert.throws(() => s.compareAndSwap('k', 5, 'v'), typeErr);
  assert.throws(() => s.compareAndSwap('k', null, {}), typeErr);
  assert.throws(() => s.rateLimiter({ name: 'r', limit: 1, windowMs: 1 }).check(42), typeErr);
});

test('TTLs must be numbers > 0 (RangeError for negative, zero, NaN, Infinity; TypeError for other types)', () => {
  const s = store();
  for (const bad of [-1, 0, -0, NaN, Infinity, -Infinity, 1e16]) {
    assert.throws(() => s.set('k', 'v', bad), rangeErr, String(bad));
    assert.throws(() => s.add('k', 'v', bad), rangeErr, String(bad));
    assert.throws(() => s.incr('k', 1, bad), rangeErr, String(bad));
    assert.throws(() => s.expire('k', bad), rangeErr, String(bad));
    assert.throws(() => s.compareAndSwap('k', null, 'v', bad), rangeErr, String(bad));
    assert.throws(() => s.tryLock('l', bad), rangeErr, String(bad));
  }
  for (const bad of ['10', true, {}, 10n]) {
    assert.throws(() => s.set('k', 'v', bad), typeErr, String(bad));
    assert.throws(() => s.tryLock('l', bad), typeErr, String(bad));
  }
  assert.equal(s.get('k'), null, 'nothing was stored by the refused calls');
});

test('incr and counters: deltas must be safe integers; results past 2^53 are refused', () => {
  const s = store();
  const c = s.counter('c');
  for (const bad of [2 ** 53, -(2 ** 53), 1.5, NaN, Infinity, Number.MAX_VALUE]) {
    assert.throws(() => s.incr('n', bad), rangeErr, String(bad));
    assert.throws(() => c.add(bad), rangeErr, String(bad));
  }
  for (const bad of ['1', 1n, {}, null]) {
    assert.throws(() => s.incr('n', bad), typeErr, String(bad));
    assert.throws(() => c.add(bad), typeErr, String(bad));
  }
  assert.throws(() => s.incrBigInt('n', 1), typeErr);
  assert.throws(() => s.incrBigInt('n', 2n ** 64n), rangeErr);
  assert.throws(() => c.addBigInt(5), typeErr);
  assert.throws(() => c.set('5'), typeErr);
  assert.throws(() => c.set(0.5), rangeErr);
  assert.equal(s.get('n'), null);
  assert.equal(c.get(), 0);
  s.set('n', String(Number.MAX_SAFE_INTEGER));
  assert.throws(() => s.incr('n'), { name: 'RangeError', code: 'SHMSTATE_UNSAFE_INTEGER' });
  assert.equal(s.getString('n'), String(Number.MAX_SAFE_INTEGER), 'unchanged');
  c.set(-Number.MAX_SAFE_INTEGER);
  assert.throws(() => c.add(-1), { code: 'SHMSTATE_UNSAFE_INTEGER' });
  assert.equal(c.get(), -Number.MAX_SAFE_INTEGER);
});

test('store limits: SHMSTATE_KEY_TOO_LONG and SHMSTATE_VALUE_TOO_LARGE are RangeErrors with the core message', () => {
  const s = store();
  assert.throws(() => s.set('k'.repeat(17), 'v'), {
    name: 'RangeError',
    code: 'SHMSTATE_KEY_TOO_LONG',
    message: "key is 17 bytes, longer than this store's max_key_len of 16",
  });
  // Multi-byte characters count as their UTF-8 bytes; long strings are measured whole.
  assert.throws(() => s.get('é'.repeat(9)), { code: 'SHMSTATE_KEY_TOO_LONG', message: /key is 18 bytes/ });
  assert.throws(() => s.get('x'.repeat(100_000)), { code: 'SHMSTATE_KEY_TOO_LONG', message: /key is 100000 bytes/ });
  assert.throws(() => s.set('k', Buffer.alloc(33)), { name: 'RangeError', code: 'SHMSTATE_VALUE_TOO_LARGE' });
  assert.throws(() => s.set('k', '€'.repeat(11)), { code: 'SHMSTATE_VALUE_TOO_LARGE', message: /value is 33 bytes/ });
  s.set('k', '€'.repeat(10));
  assert.equal(s.getString('k'), '€'.repeat(10));
});

test('store options: wrong types are TypeErrors, out of range RangeErrors, unknown names TypeErrors', () => {
  const name = h.uniqueName('opts');
  const cases = [
    [{ capacity: '100' }, typeErr],
    [{ capacity: 0 }, rangeErr],
    [{ capacity: 1.5 }, rangeErr],
    [{ capacity: -1 }, rangeErr],
    [{ capacity: 2 ** 33 }, rangeErr],
    [{ maxKeyLen: 0 }, rangeErr],
    [{ maxValueLen: 17 * 1024 * 1024 }, rangeErr],
    [{ maxValueLen: 2 * 1024 * 1024 - 16 * 1024 + 1 }, rangeErr],
    [{ memory: '64m' }, typeErr],
    [{ memory: 0 }, rangeErr],
    [{ memory: 2 ** 41 }, rangeErr],
    [{ memory: 2n ** 41n }, rangeErr],
    [{ shards: 5000 }, rangeErr],
    [{ whenFull: 'drop' }, rangeErr],
    [{ whenFull: 1 }, typeErr],
    [{ lineSizedSlots: 'yes' }, typeErr],
    [{ lockTimeoutMs: 0 }, rangeErr],
    [{ maxValueLength: 10 }, typeErr],
    ['big', typeErr],
    [[1], typeErr],
  ];
  for (const [opts, err] of cases) {
    assert.throws(() => Store.openOrCreate(name, opts), err, JSON.stringify(opts, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)));
  }
  for (const bad of [undefined, null, 5, {}]) {
    assert.throws(() => Store.openOrCreate(bad), typeErr);
    assert.throws(() => Store.open(bad), typeErr);
    assert.throws(() => Store.unlink(bad), typeErr);
  }
  assert.throws(() => Store.openOrCreate(''), rangeErr);
  assert.throws(() => Store.openOrCreate('a/b'), { name: 'RangeError', code: 'SHMSTATE_INVALID_NAME' });
  assert.throws(() => new Store(), TypeError);
  assert.throws(() => Store.open(name), { name: 'Error', code: 'SHMSTATE_NOT_FOUND' });
});

test('primitives: bad names and options', async () => {
  const s = Store.openOrCreate(h.uniqueName('prim'), { capacity: 100 });
  assert.throws(() => s.counter(''), rangeErr);
  assert.throws(() => s.counter(7), typeErr);
  assert.throws(() => s.counter('x'.repeat(200)), { name: 'RangeError', code: 'SHMSTATE_INVALID_COUNTER_NAME' });
  assert.throws(() => s.tryLock(5, 100), typeErr);
  assert.throws(() => s.tryLock('', 100), { name: 'RangeError', code: 'SHMSTATE_INVALID_ARGUMENT' });
  await assert.rejects(s.lock('l', 100, -1), rangeErr);
  assert.throws(() => s.rateLimiter(), typeErr);
  assert.throws(() => s.rateLimiter({ name: 'r', limit: 0, windowMs: 10 }), rangeErr);
  assert.throws(() => s.rateLimiter({ name: 'r', limit: 1, windowMs: -10 }), rangeErr);
  assert.throws(() => s.rateLimiter({ name: 'r', limit: 1, windowMs: 10, algorithm: 'leaky' }), rangeErr);
  assert.throws(() => s.rateLimiter({ name: 'r', limit: 1, windowMs: 10, burst: 2 }), RangeError);
  assert.throws(() => s.rateLimiter({ name: 'r:x', limit: 1, windowMs: 10 }), { code: 'SHMSTATE_INVALID_ARGUMENT' });
  assert.throws(() => s.rateLimiter({ name: 'r', limit: 1, windowMs: 10, window: 5 }), typeErr);
  const rl = s.rateLimiter({ name: 'r', limit: 2, windowMs: 1000 });
  assert.throws(() => rl.check('c', 0), rangeErr);
  assert.throws(() => rl.check('c', 1.5), rangeErr);
  assert.throws(() => rl.check('c', 3), { code: 'SHMSTATE_INVALID_ARGUMENT' });
  assert.throws(() => s.cache(''), rangeErr);
  assert.throws(() => s.cache('c', { staleForMs: -1 }), rangeErr);
  assert.throws(() => s.cache('c', { ttl: 1 }), typeErr);
  assert.throws(() => s.cache('a:b'), { code: 'SHMSTATE_INVALID_ARGUMENT' });
  const cache = s.cache('c');
  await assert.rejects(cache.getOrCompute('k', 0, () => 'v'), rangeErr);
  await assert.rejects(cache.getOrCompute('k', 10, 'not a function'), typeErr);
  await assert.rejects(cache.getOrCompute(5, 10, () => 'v'), typeErr);
  await assert.rejects(cache.getOrCompute('k', 10, () => 5), typeErr);
  assert.throws(() => s.workers('w', 0), rangeErr);
  assert.throws(() => s.workers('a.b', 4), { code: 'SHMSTATE_INVALID_ARGUMENT' });
  assert.throws(() => s.workers('w', 4).register(5), typeErr);
  assert.throws(() => s.scan(-1), rangeErr);
  assert.throws(() => s.scan('0'), typeErr);
  assert.throws(() => s.deletePrefix(5), typeErr);
});

test('store errors: NOT_AN_INTEGER, FULL, TOO_MANY_COUNTERS carry codes and classes from ERROR_CODES', () => {
  const s = Store.openOrCreate(h.uniqueName('codes'), { capacity: 8, shards: 1, maxCounters: 2 });
  s.set('w', 'word');
  const seen = [];
  const expectCode = (fn, code) => {
    let err;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    assert.ok(err, `${code} thrown`);
    assert.equal(err.code, code);
    assert.equal(err.constructor.name, ERROR_CODES[code]);
    assert.ok(err instanceof Error);
    seen.push(code);
  };
  expectCode(() => s.incr('w'), 'SHMSTATE_NOT_AN_INTEGER');
  s.incrBigInt('big', 2n ** 63n - 1n);
  expectCode(() => s.incrBigInt('big', 1n), 'SHMSTATE_OVERFLOW');
  s.counter('a');
  s.counter('b');
  expectCode(() => s.counter('c'), 'SHMSTATE_TOO_MANY_COUNTERS');
  expectCode(() => {
    for (let i = 0; i < 100; i++) s.set(`k${i}`, 'v');
  }, 'SHMSTATE_FULL');
  assert.equal(seen.length, 4);
});

test('a foreign value in a lock record is SHMSTATE_BAD_RECORD, not a crash', () => {
  const s = Store.openOrCreate(h.uniqueName('bad'), { capacity: 100 });
  const l = s.tryLock('job', 1000);
  l.release();
  // The lock record lives under 0xFF 'L' + name; scribble on it.
  s.set(Buffer.concat([Buffer.from([0xff, 0x4c]), Buffer.from('job')]), 'garbage');
  assert.throws(() => s.tryLock('job', 1000), { name: 'Error', code: 'SHMSTATE_BAD_RECORD' });
});

test('random arguments to every method: only TypeError, RangeError or coded store errors, never a crash', async () => {
  const fuzzName = h.uniqueName('fuzz');
  const s = Store.openOrCreate(fuzzName, { capacity: 200, maxKeyLen: 32, maxValueLen: 64 });
  const known = new Set([...Object.keys(ERROR_CODES), 'ERR_INVALID_ARG_TYPE', 'ERR_OUT_OF_RANGE']);
  let seed = 12345;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  const sab = new Uint8Array(new SharedArrayBuffer(4));
  const pool = [
    undefined, null, true, 0, -0, 1, -1, 0.5, 2 ** 53, -(2 ** 53), 1e300, NaN, Infinity, -Infinity,
    '', 'k', 'key', 'x'.repeat(40), '\u{1F511}', '\uD800', 'a\0b', '10', '-5',
    Buffer.alloc(0), Buffer.from('k'), Buffer.alloc(100), new Uint8Array([1, 2]), new Float64Array(2), new DataView(new ArrayBuffer(3)), sab,
    {}, [], [1], () => {}, Symbol('s'), 0n, 1n, 2n ** 70n, new String('k'), new Date(), /re/, new Map(),
  ];
  const any = () => pool[rand(pool.length)];
  const c = s.counter('fz');
  const rl = s.rateLimiter({ name: 'fz', limit: 100, windowMs: 1000 });
  const calls = [
    () => s.get(any()), () => s.getString(any()), () => s.has(any()), () => s.set(any(), any(), any()),
    () => s.add(any(), any(), any()), () => s.replace(any(), any(), any()), () => s.delete(any()),
    () => s.compareAndSwap(any(), any(), any(), any()), () => s.incr(any(), any(), any()),
    () => s.incrBigInt(any(), any(), any()), () => s.ttl(any()), () => s.expire(any(), any()),
    () => c.add(any()), () => c.set(any()), () => c.addBigInt(any()), () => rl.check(any(), any()),
    () => s.tryLock(any(), any()), () => s.counter(any()), () => s.scan(any(), { prefix: any(), limit: any() }),
    () => s.deletePrefix(any()), () => s.lockHolder(any()), () => Store.open(any()), () => Store.openOrCreate(fuzzName, any()),
    () => Store.openOrCreate(fuzzName, { memory: any(), maxValueLen: any() }),
  ];
  let threw = 0;
  for (let i = 0; i < 5000; i++) {
    try {
      const r = calls[rand(calls.length)]();
      if (r && typeof r.release === 'function') r.release();
    } catch (e) {
      threw++;
      assert.ok(e instanceof Error, String(e));
      assert.ok(known.has(e.code), `unexpected ${e.name} ${e.code}: ${e.message}`);
      assert.ok(['Error', 'TypeError', 'RangeError'].includes(e.constructor.name));
    }
  }
  assert.ok(threw > 1000, `${threw} calls threw`);
  assert.ok(s.verify().ok);
});
