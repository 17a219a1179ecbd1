'use strict';
// The API in one process: every operation, TTLs, locks, rate limiters, the cache, workers and
// gauges, file-backed regions, statistics and the Prometheus text.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Store, ERROR_CODES, OPTIONS } = require('..');
const h = require('./helpers');

test.after(() => h.cleanupNames());

const open = (tag, options = {}) => Store.openOrCreate(h.uniqueName(tag), { capacity: 1000, maxValueLen: 256, ...options });

test('get/set with string and Buffer keys and values; get returns a fresh copy', () => {
  const s = open('kv');
  s.set('k', 'value');
  assert.deepEqual(s.get('k'), Buffer.from('value'));
  assert.equal(s.getString('k'), 'value');
  assert.equal(s.getString(Buffer.from('k')), 'value', 'a Buffer key is the same key');
  s.set(Buffer.from([0xff, 0, 1]), Buffer.from([1, 2, 3]));
  assert.deepEqual(s.get(Buffer.from([0xff, 0, 1])), Buffer.from([1, 2, 3]));
  s.set(new Uint8Array([9]), new Uint8Array([8, 7]));
  assert.deepEqual(s.get(new Uint8Array([9])), Buffer.from([8, 7]));
  s.set('unicode ключ 🔑', 'значение ✓');
  assert.equal(s.getString('unicode ключ 🔑'), 'значение ✓');
  s.set('empty', '');
  assert.deepEqual(s.get('empty'), Buffer.alloc(0));
  assert.equal(s.get('missing'), null);
  assert.equal(s.getString('missing'), null);
  // A returned Buffer is a copy: changing it or the stored value does not affect the other.
  const a = s.get('k');
  a.fill(0);
  assert.equal(s.getString('k'), 'value');
  const b = s.get('k');
  s.set('k', 'other');
  assert.equal(b.toString(), 'value');
  // Many gets: each Buffer keeps its own bytes (values are pooled like Buffer.allocUnsafe).
  const got = [];
  for (let i = 0; i < 2000; i++) {
    s.set(`n${i % 50}`, `v${i}`.repeat(1 + (i % 7)));
    got.push([i, s.get(`n${i % 50}`)]);
  }
  for (const [i, buf] of got) assert.equal(buf.toString(), `v${i}`.repeat(1 + (i % 7)));
  // Values larger than the pool's refill threshold still come back whole.
  const big = open('big', { maxValueLen: 6000 });
  for (let i = 0; i < 20; i++) {
    const v = Buffer.alloc(3000 + i * 100, i);
    big.set('v', v);
    assert.deepEqual(big.get('v'), v);
  }
});

test('has, add, replace, delete, compareAndSwap', () => {
  const s = open('ops');
  assert.equal(s.has('a'), false);
  assert.equal(s.add('a', '1'), true);
  assert.equal(s.add('a', '2'), false);
  assert.equal(s.getString('a'), '1');
  assert.equal(s.replace('a', '3'), true);
  assert.equal(s.replace('b', '3'), false);
  assert.equal(s.has('b'), false);
  assert.equal(s.compareAndSwap('a', '1', '4'), false);
  assert.equal(s.compareAndSwap('a', '3', '4'), true);
  assert.equal(s.compareAndSwap('c', null, 'new'), true, 'create if absent');
  assert.equal(s.compareAndSwap('c', null, 'again'), false);
  assert.equal(s.compareAndSwap('c', 'new', null), true, 'delete if equal');
  assert.equal(s.has('c'), false);
  assert.equal(s.delete('a'), true);
  assert.equal(s.delete('a'), false);
});

test('TTLs: expiry, ttl(), expire(), and TTLs on add/replace/cas/incr', async () => {
  const s = open('ttl');
  s.set('short', 'x', 30);
  s.set('long', 'x', 60_000);
  s.set('forever', 'x');
  const left = s.ttl('long');
  assert.ok(left > 59_000 && left <= 60_000, String(left));
  assert.equal(s.ttl('forever'), Infinity);
  assert.equal(s.ttl('nothing'), null);
  assert.equal(s.incr('counter', 1, 30), 1);
  assert.equal(s.add('added', 'x', 30), true);
  assert.equal(s.compareAndSwap('cas', null, 'x', 30), true);
  await h.sleep(60);
  for (const k of ['short', 'counter', 'added', 'cas']) assert.equal(s.get(k), null, k);
  assert.equal(s.incr('counter'), 1, 'an expired counter starts again');
  assert.equal(s.expire('forever', 30), true);
  assert.equal(s.expire('nothing', 30), false);
  assert.ok(s.ttl('forever') <= 30);
  assert.equal(s.expire('long', null), true, 'null removes the TTL');
  assert.equal(s.ttl('long'), Infinity);
  s.set('frac', 'x', 0.5); // fractions round up to whole milliseconds
  assert.ok(s.ttl('frac') <= 1);
});

test('incr: defaults, negative deltas, decimal strings, BigInt variant, errors', () => {
  const s = open('incr');
  assert.equal(s.incr('n'), 1);
  assert.equal(s.incr('n', 41), 42);
  assert.equal(s.incr('n', -50), -8);
  assert.equal(s.getString('n'), '-8');
  s.set('ten', '10');
  assert.equal(s.incr('ten'), 11);
  s.set('word', 'abc');
  assert.throws(() => s.incr('word'), { name: 'Error', code: 'SHMSTATE_NOT_AN_INTEGER' });
  assert.equal(s.incrBigInt('big', 2n ** 62n), 2n ** 62n);
  assert.equal(s.incrBigInt('big', 2n ** 62n - 1n), 2n ** 63n - 1n);
  assert.throws(() => s.incrBigInt('big', 1n), { name: 'RangeError', code: 'SHMSTATE_OVERFLOW' });
  // Past Number.MAX_SAFE_INTEGER the number API refuses and leaves the value unchanged.
  s.set('edge', String(Number.MAX_SAFE_INTEGER - 1));
  assert.equal(s.incr('edge'), Number.MAX_SAFE_INTEGER);
  assert.throws(() => s.incr('edge'), { name: 'RangeError', code: 'SHMSTATE_UNSAFE_INTEGER' });
  assert.equal(s.getString('edge'), String(Number.MAX_SAFE_INTEGER));
  assert.equal(s.incrBigInt('edge', 1n), 2n ** 53n);
  assert.throws(() => s.incr('edge', 0), { code: 'SHMSTATE_UNSAFE_INTEGER' });
});

test('counters: add/get, shared by name, BigInt variants, listed by counters()', () => {
  const s = open('counters');
  const c = s.counter('http.requests');
  assert.equal(c.add(), 1);
  assert.equal(c.add(9), 10);
  assert.equal(c.add(-3), 7);
  assert.equal(s.counter('http.requests').get(), 7, 'same name, same counter');
  c.set(Number.MAX_SAFE_INTEGER);
  assert.throws(() => c.add(1), { name: 'RangeError', code: 'SHMSTATE_UNSAFE_INTEGER' });
  assert.equal(c.get(), Number.MAX_SAFE_INTEGER, 'the refused add was undone');
  assert.equal(c.addBigInt(1n), 2n ** 53n);
  assert.throws(() => c.get(), { name: 'RangeError', code: 'SHMSTATE_UNSAFE_INTEGER' });
  assert.equal(c.getBigInt(), 2n ** 53n);
  c.set(2n ** 63n - 1n);
  assert.equal(c.addBigInt(1n), -(2n ** 63n), 'counters wrap, like the core');
  s.counter('other').add(5);
  const list = Object.fromEntries(s.counters().map(({ name, value }) => [name, value]));
  assert.equal(list.other, 5);
  assert.equal(list['http.requests'], -(2n ** 63n), 'unsafe values are listed as bigints');
});

test('scan, keys, deletePrefix, clear, flushExpired, size', async () => {
  const s = open('scan');
  for (let i = 0; i < 300; i++) s.set(`user:${i}`, 'x');
  for (let i = 0; i < 10; i++) s.set(`other:${i}`, 'x', 20);
  const keys = new Set([...s.keys('user:')].map(String));
  assert.equal(keys.size, 300);
  let cursor = 0;
  const paged = [];
  for (let pages = 0; cursor !== null && pages < 10_000; pages++) {
    const page = s.scan(cursor, { prefix: 'user:', limit: 7 });
    paged.push(...page.keys.map(String));
    cursor = page.cursor;
  }
  assert.equal(cursor, null);
  assert.equal(new Set(paged).size, 300);
  assert.equal(s.size, 310);
  assert.equal(s.deletePrefix('user:1'), 111); // user:1, user:10-19, user:100-199
  await h.sleep(40);
  assert.equal(s.flushExpired(), 10);
  assert.equal(s.size, 189);
  assert.equal(s.clear(), 189);
  assert.equal(s.size, 0);
});

test('stats, verify, metrics, origin, capacity', () => {
  const s = open('stats');
  s.set('a', '1');
  s.get('a');
  s.get('b');
  s.counter('req').add(3);
  const st = s.stats();
  assert.equal(st.entries, 1);
  assert.ok(st.hits >= 1 && st.misses >= 1 && st.sets >= 1);
  assert.equal(st.capacity, 1000);
  assert.equal(s.capacity, 1000);
  assert.ok(s.regionBytes > 0);
  const v = s.verify();
  assert.equal(v.ok, true);
  assert.deepEqual(v.problems, []);
  assert.equal(v.entries, 1);
  const m = s.metrics();
  assert.match(m, /# TYPE shmstate_entries gauge\nshmstate_entries 1\n/);
  assert.match(m, /shmstate_counter_value\{name="req"\} 3\n/);
  assert.match(s.origin, /^shm:shmstate-node-test-stats-/);
});

test('openOrCreate: the same region from two handles; a different configuration is refused', () => {
  const name = h.uniqueName('reopen');
  const a = Store.openOrCreate(name, { capacity: 500 });
  const b = Store.openOrCreate(name, { capacity: 500 });
  const c = Store.open(name);
  a.set('k', 'v');
  assert.equal(b.getString('k'), 'v');
  assert.equal(c.getString('k'), 'v');
  assert.throws(() => Store.openOrCreate(name, { capacity: 501 }), { name: 'Error', code: 'SHMSTATE_INCOMPATIBLE' });
  assert.throws(() => Store.create(name), { code: 'SHMSTATE_ALREADY_EXISTS' });
  Store.unlink(name);
  assert.throws(() => Store.open(name), { code: 'SHMSTATE_NOT_FOUND' });
  assert.throws(() => Store.unlink(name), { code: 'SHMSTATE_NOT_FOUND' });
  assert.equal(a.getString('k'), 'v', 'an unlinked region stays usable by those who have it open');
});

test('file-backed regions keep their data across opens', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmstate-node-'));
  try {
    const file = path.join(dir, 'state.shm');
    const a = Store.createFile(file, { capacity: 100 });
    a.set('persist', 'yes', 60_000);
    a.counter('boots').add(1);
    const b = Store.openFile(file);
    assert.equal(b.getString('persist'), 'yes');
    const c = Store.openOrCreateFile(file, { capacity: 100 });
    assert.equal(c.counter('boots').get(), 1);
    assert.match(a.origin, /^file:/);
    assert.throws(() => Store.createFile(file), { code: 'SHMSTATE_ALREADY_EXISTS' });
    assert.throws(() => Store.openFile(path.join(dir, 'none')), { code: 'SHMSTATE_NOT_FOUND' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('full store: SHMSTATE_FULL, or eviction with whenFull: evict', () => {
  const refuse = open('full', { capacity: 16, shards: 1 });
  let err;
  for (let i = 0; i < 1000 && !err; i++) {
    try {
      refuse.set(`k${i}`, 'v');
    } catch (e) {
      err = e;
    }
  }
  assert.ok(err, 'a 16-entry store refuses new keys at some point');
  assert.equal(err.code, 'SHMSTATE_FULL');
  assert.equal(err.constructor, Error);
  const evict = open('evict', { capacity: 16, shards: 1, whenFull: 'evict' });
  for (let i = 0; i < 1000; i++) evict.set(`k${i}`, 'v');
  assert.equal(evict.getString('k999'), 'v');
  assert.ok(evict.stats().evictions > 0);
});

test('locks: tryLock, fence, extend, release, lockHolder', async () => {
  const s = open('locks');
  const l = s.tryLock('job', 1000);
  assert.ok(l);
  assert.equal(typeof l.fence, 'bigint');
  assert.ok(l.leaseLeftMs > 900 && l.leaseLeftMs <= 1000);
  assert.equal(s.tryLock('job', 1000), null, 'not reentrant');
  const holder = s.lockHolder('job');
  assert.equal(holder.pid, process.pid);
  assert.equal(holder.fence, l.fence);
  assert.equal(holder.holderDead, false);
  assert.equal(l.isHeld(), true);
  assert.equal(l.extend(5000), true);
  assert.ok(l.leaseLeftMs > 4000);
  assert.equal(l.release(), true);
  assert.equal(l.release(), false, 'already released');
  assert.equal(l.isHeld(), false);
  assert.equal(s.lockHolder('job'), null);
  const again = s.tryLock('job', 20);
  assert.ok(again.fence > l.fence, 'fences increase');
  // An expired lease is taken over; the old holder learns it lost the lock.
  await h.sleep(40);
  const taker = await s.lock('job', 1000, 100);
  assert.ok(taker);
  assert.equal(again.isHeld(), false);
  assert.equal(again.release(), false);
  assert.equal(taker.release(), true);
  const free = await s.lock('free', 1000); // waitMs defaults to 0: one attempt
  assert.ok(free);
  assert.equal(free.release(), true);
});

test('rate limiters: fixed window, sliding window, GCRA with burst and cost', () => {
  const s = open('rl', { capacity: 1000 });
  const fixed = s.rateLimiter({ name: 'fixed', limit: 3, windowMs: 60_000 });
  const a = [1, 2, 3, 4].map(() => fixed.check('10.0.0.1'));
  assert.deepEqual(a.map((d) => d.allowed), [true, true, true, false]);
  assert.deepEqual(a.map((d) => d.remaining), [2, 1, 0, 0]);
  assert.equal(a[3].limit, 3);
  assert.ok(a[3].retryAfterMs > 0 && a[3].retryAfterMs <= 60_000);
  assert.equal(a[0].retryAfterMs, 0);
  assert.equal(fixed.check('10.0.0.2').allowed, true, 'clients are independent');
  const sliding = s.rateLimiter({ algorithm: 'sliding-window', name: 'sliding', limit: 2, windowMs: 60_000 });
  assert.deepEqual([1, 2, 3].map(() => sliding.check(Buffer.from('c')).allowed), [true, true, false]);
  const gcra = s.rateLimiter({ algorithm: 'gcra', name: 'gcra', limit: 10, windowMs: 1000, burst: 5 });
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => gcra.check('k').allowed), [true, true, true, true, true, false]);
  const d = gcra.check('k');
  assert.ok(d.retryAfterMs > 0 && d.retryAfterMs <= 100, String(d.retryAfterMs));
  assert.equal(gcra.check('other', 5).allowed, true);
  assert.equal(gcra.check('other', 1).allowed, false);
  assert.throws(() => gcra.check('x', 6), { name: 'RangeError', code: 'SHMSTATE_INVALID_ARGUMENT' });
});

test('cache: getOrCompute computes once, serves hits, stale values, and compute errors', async () => {
  const s = open('cache');
  const cache = s.cache('users', { staleForMs: 5000 });
  let calls = 0;
  const compute = async () => {
    calls++;
    return `computed ${calls}`;
  };
  assert.equal((await cache.getOrCompute('u1', 50, compute)).toString(), 'computed 1');
  assert.equal((await cache.getOrCompute('u1', 50, compute)).toString(), 'computed 1');
  assert.equal(calls, 1);
  assert.equal(cache.get('u1').toString(), 'computed 1');
  await h.sleep(70);
  assert.equal(cache.get('u1'), null, 'stale: not fresh any more');
  assert.equal((await cache.getOrCompute('u1', 50, compute)).toString(), 'computed 2', 'expired: recomputed by us');
  await assert.rejects(cache.getOrCompute('boom', 1000, async () => { throw new Error('db down'); }), /db down/);
  assert.equal(cache.get('boom'), null, 'nothing cached after a failure');
  assert.equal((await cache.getOrCompute('boom', 1000, () => 'sync ok')).toString(), 'sync ok', 'the lease was released');
  assert.equal(cache.invalidate('u1'), true);
  assert.equal(cache.get('u1'), null);
  const st = cache.stats();
  assert.equal(st.misses, 4);
  assert.equal(st.hits, 1);
  // A value too large for the store fails the call, and the lease is released.
  await assert.rejects(cache.getOrCompute('huge', 1000, () => Buffer.alloc(300)), { code: 'SHMSTATE_VALUE_TOO_LARGE' });
  assert.equal((await cache.getOrCompute('huge', 1000, () => 'small')).toString(), 'small');
});

test('cache: a second caller gets the stale value while one refreshes it, and waits when there is none', async () => {
  const s = open('cache2');
  const c1 = s.cache('pages', { staleForMs: 10_000, waitMs: 2000 });
  const c2 = s.cache('pages', { staleForMs: 10_000, waitMs: 2000 });
  await c1.getOrCompute('p', 20, () => 'v1');
  await h.sleep(40);
  let release;
  const slow = c1.getOrCompute('p', 60_000, () => new Promise((r) => (release = r)));
  await h.sleep(5);
  assert.equal((await c2.getOrCompute('p', 60_000, () => 'never')).toString(), 'v1', 'stale value served');
  // No stale value: the second caller waits (on timers) for the first one's result.
  let release2;
  const slow2 = c1.getOrCompute('q', 60_000, () => new Promise((r) => (release2 = r)));
  await h.sleep(5);
  const waiting = c2.getOrCompute('q', 60_000, () => 'never');
  setTimeout(() => release2('q-value'), 50);
  assert.equal((await waiting).toString(), 'q-value');
  release('v2');
  assert.equal((await slow).toString(), 'v2');
  assert.equal((await slow2).toString(), 'q-value');
  // Nobody finishes: the waiter gives up after waitMs.
  const c3 = s.cache('pages', { waitMs: 50 });
  let release3;
  const never = c1.getOrCompute('r', 60_000, () => new Promise((r) => (release3 = r)));
  await h.sleep(5);
  await assert.rejects(c3.getOrCompute('r', 1000, () => 'x'), { code: 'SHMSTATE_CACHE_TIMEOUT' });
  release3('done');
  await never;
  assert.equal(c3.stats().timeouts, 1);
});

test('workers and gauges', () => {
  const s = open('workers');
  const reg = s.workers('http', 8);
  const me = reg.register('worker-a');
  assert.equal(me.slot, 0);
  const g = me.gauge('inflight');
  assert.equal(g.add(), 1);
  assert.equal(g.add(2), 3);
  assert.equal(g.add(-1), 2);
  g.set(5);
  assert.equal(g.get(), 5);
  assert.equal(reg.gaugeTotal('inflight'), 5);
  assert.deepEqual(reg.list().map((w) => [w.pid, w.label]), [[process.pid, 'worker-a']]);
  assert.equal(reg.gaugeByWorker('inflight')[0].value, 5);
  assert.equal(reg.reap(), 0);
  assert.equal(me.deregister(), true);
  assert.equal(reg.gaugeTotal('inflight'), 0);
  assert.deepEqual(reg.list(), []);
});

test('an anonymous store works in one process', () => {
  const s = Store.anonymous({ capacity: 10 });
  s.set('a', 'b');
  assert.equal(s.getString('a'), 'b');
  assert.equal(s.origin, 'anonymous');
});

test('every error code is documented in index.d.ts and the README', () => {
  const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  const codes = Object.keys(ERROR_CODES);
  assert.ok(codes.length >= 25);
  for (const code of codes) {
    assert.ok(dts.includes(`'${code}'`), `${code} in index.d.ts`);
    assert.ok(readme.includes(`\`${code}\``), `${code} in README.md`);
  }
  for (const o of OPTIONS) assert.ok(dts.includes(`${o}?:`), `option ${o} in index.d.ts`);
});

test('the package exports the adapters by subpath', () => {
  const pkg = require('../package.json');
  assert.equal(pkg.name, 'shmstate');
  assert.ok(pkg.exports['./express-session']);
  assert.ok(pkg.exports['./express-rate-limit']);
  assert.equal(typeof require('shmstate/express-session').ShmSessionStore, 'function');
  assert.equal(typeof require('shmstate/express-rate-limit').ShmRateLimitStore, 'function');
});

test('worker_threads: threads of one process share a region like processes do', async () => {
  const { Worker } = require('node:worker_threads');
  const name = h.uniqueName('threads');
  const s = Store.openOrCreate(name, { capacity: 100 });
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const { Store } = require(${JSON.stringify(path.join(__dirname, '..'))});
    const s = Store.openOrCreate(workerData, { capacity: 100 });
    const c = s.counter('c');
    for (let i = 0; i < 5000; i++) { c.add(1); s.incr('n'); s.get('n'); }
    parentPort.postMessage('done');`;
  const ws = [1, 2].map(() => new Worker(code, { eval: true, workerData: name }));
  const done = ws.map((w) => h.within(new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); }), 30_000, 'thread'));
  for (let i = 0; i < 5000; i++) {
    s.counter('c').add(1);
    s.incr('n');
  }
  await Promise.all(done);
  await Promise.all(ws.map((w) => w.terminate()));
  assert.equal(s.counter('c').get(), 15_000);
  assert.equal(s.getString('n'), '15000');
});
