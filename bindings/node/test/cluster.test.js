'use strict';
// Real node:cluster workers sharing one named region: exact counters, a SIGKILL storm, lock
// takeover from a killed holder, and the cache stampede guard.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Store } = require('..');
const h = require('./helpers');

test.afterEach(async () => {
  await h.killAllWorkers();
  h.cleanupNames();
});

test('4 workers race openOrCreate on a new name, then counters and incr are exact across them', async () => {
  const region = h.uniqueName('exact');
  const N = 20_000;
  const ws = [1, 2, 3, 4].map(() => h.fork('exact', region, { N: String(N) }));
  await Promise.all(ws.map((w) => h.nextMessage(w, (m) => m.ready, 15_000, 'ready')));
  const done = Promise.all(ws.map((w) => h.nextMessage(w, (m) => m.done, 30_000, 'done')));
  for (const w of ws) w.send('go'); // all at once: nobody created the region before
  await done;
  const store = Store.open(region);
  assert.equal(store.counter('exact').get(), 4 * N);
  assert.equal(store.getString('exact-incr'), String(4 * N));
  assert.equal(store.incr('exact-by-3', 0), 3 * 4 * N);
  assert.ok(store.verify().ok);
});

test('a worker SIGKILLed at random during a storm never blocks or corrupts the others', async (t) => {
  const region = h.uniqueName('storm');
  Store.openOrCreate(region, { capacity: 4096, memory: 16 << 20, maxValueLen: 80_000, maxCounters: 64 });
  const STORM_MS = 5000;
  const MAX_KILLS = 40;
  const live = new Set();
  const ready = new Set();
  const errors = [];
  let maxOpMs = 0;
  let kills = 0;
  const bigReads = new Map(); // worker -> reads of values past 4 KiB it reported
  const spawn = () => {
    const w = h.fork('storm', region);
    w.on('message', (m) => {
      if (m.ready) ready.add(w);
      if (m.errors) errors.push(...m.errors);
      if (m.maxOpMs > maxOpMs) maxOpMs = m.maxOpMs;
      if (m.bigReads) bigReads.set(w, m.bigReads);
    });
    w.once('exit', () => {
      live.delete(w);
      ready.delete(w);
    });
    live.add(w);
    return w;
  };
  const first = [spawn(), spawn(), spawn(), spawn()];
  await Promise.all(first.map((w) => h.nextMessage(w, (m) => m.ready, 15_000, 'ready')));
  // Kill a random worker that is in the storm every 20-100 ms (keeping at least two in it),
  // and start a replacement each time.
  const end = Date.now() + STORM_MS;
  while (Date.now() < end && kills < MAX_KILLS) {
    await h.sleep(20 + Math.random() * 80);
    if (ready.size < 2) continue;
    const victims = [...ready];
    const v = victims[(Math.random() * victims.length) | 0];
    ready.delete(v);
    v.killed = true;
    v.process.kill('SIGKILL');
    kills++;
    spawn();
  }
  // Let the replacements join, then stop everybody.
  await Promise.all([...live].filter((w) => !ready.has(w) && !w.killed).map((w) => h.nextMessage(w, (m) => m.ready, 15_000, 'ready')));
  // Every survivor must still answer: a worker stuck on a lock a killed worker held would not.
  const finals = await Promise.all(
    [...live].filter((w) => !w.killed).map((w) => {
      const p = h.nextMessage(w, (m) => m.final, 10_000, 'final report');
      w.send('stop');
      return p;
    }),
  );
  for (const f of finals) {
    errors.push(...f.errors);
    maxOpMs = Math.max(maxOpMs, f.maxOpMs);
  }
  assert.deepEqual(errors, [], 'no operation failed and no value was torn');
  assert.ok(kills >= 10, `only ${kills} kills`);
  assert.ok(maxOpMs < 2000, `an operation took ${maxOpMs} ms`);
  const big = [...bigReads.values()].reduce((a, n) => a + n, 0);
  assert.ok(big > 0, 'values of several heap pages were read back whole during the storm');

  const store = Store.open(region);
  const report = store.verify();
  assert.ok(report.ok, report.summary);
  // Every acknowledged add is counted; a killed worker may have added once without acking.
  let acked = 0;
  for (const k of store.keys('ack:')) acked += Number(store.getString(k));
  const counted = store.counter('storm').get();
  assert.ok(counted >= acked && counted <= acked + kills, `counter ${counted}, acked ${acked}, kills ${kills}`);
  // Values are still well formed after the storm.
  for (let i = 0; i < 16; i++) {
    const v = store.getString(`hot:${i}`);
    if (v !== null) assert.equal(v.split('|')[0], `hot:${i}`);
  }
  t.diagnostic(`storm: ${kills} kills, ${store.stats().lockRecoveries} lock recoveries, counter ${counted}, max op ${maxOpMs.toFixed(1)} ms, ${big} reads of values > 4 KiB`);
});

test('a lock held by a killed worker is taken over at once, with a larger fence', async () => {
  const region = h.uniqueName('lock');
  const holder = h.fork('lockHolder', region);
  const held = await h.nextMessage(holder, (m) => 'held' in m, 10_000, 'lock held');
  assert.equal(held.held, true);
  // While the holder lives, nobody else gets it.
  const store = Store.openOrCreate(region, { capacity: 4096, memory: 16 << 20, maxValueLen: 80_000, maxCounters: 64 });
  assert.equal(store.tryLock('takeover', 1000), null);
  assert.equal(store.lockHolder('takeover').pid, holder.process.pid);
  holder.process.kill('SIGKILL');
  await h.exited(holder, 5000);
  const taker = h.fork('lockTaker', region);
  const got = await h.nextMessage(taker, (m) => 'acquired' in m, 15_000, 'lock taken');
  assert.equal(got.acquired, true);
  assert.ok(BigInt(got.fence) > BigInt(held.fence), `fence ${got.fence} > ${held.fence}`);
  // The holder's lease was 60 s: the taker did not wait for it.
  assert.ok(got.waitedMs < 5000, `waited ${got.waitedMs} ms`);
});

test('lock() waits on timers: the event loop keeps running while another worker holds it', async () => {
  const region = h.uniqueName('lockwait');
  const holder = h.fork('lockHolder', region);
  await h.nextMessage(holder, (m) => m.held, 10_000, 'lock held');
  const store = Store.openOrCreate(region, { capacity: 4096, memory: 16 << 20, maxValueLen: 80_000, maxCounters: 64 });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  const t0 = Date.now();
  const l = await store.lock('takeover', 1000, 400);
  clearInterval(timer);
  assert.equal(l, null, 'held by a live worker for 60 s');
  assert.ok(Date.now() - t0 >= 390);
  assert.ok(ticks >= 10, `the event loop ran ${ticks} timer ticks while waiting`);
});

test('the stampede guard computes once across 4 workers; the others wait without blocking', async () => {
  const region = h.uniqueName('stampede');
  const ws = [1, 2, 3, 4].map(() => h.fork('stampede', region));
  await Promise.all(ws.map((w) => h.nextMessage(w, (m) => m.ready, 10_000, 'ready')));
  const results = Promise.all(ws.map((w) => h.nextMessage(w, (m) => 'value' in m || 'error' in m, 20_000, 'value')));
  for (const w of ws) w.send('go');
  const rs = await results;
  for (const r of rs) assert.equal(r.error, undefined);
  const values = new Set(rs.map((r) => r.value));
  assert.equal(values.size, 1, [...values].join(', '));
  const store = Store.open(region);
  assert.equal(store.getString('computes'), '1');
  // Waiters kept their event loops running (their 5 ms timers ticked during the 300 ms compute).
  assert.ok(rs.filter((r) => r.ticks >= 10).length >= 3, rs.map((r) => r.ticks).join(','));
  const st = store.cache('pages').stats();
  assert.equal(st.misses, 1);
  assert.equal(st.hits, 3);
});

test('the stampede guard: a computing worker killed mid-computation is taken over', async () => {
  const region = h.uniqueName('stampede-kill');
  const ws = [1, 2, 3].map(() => h.fork('stampede', region, { COMPUTE_MS: '1500' }));
  await Promise.all(ws.map((w) => h.nextMessage(w, (m) => m.ready, 10_000, 'ready')));
  const computing = Promise.race(ws.map((w) => h.nextMessage(w, (m) => m.computing, 10_000, 'computing').then(() => w)));
  for (const w of ws) w.send('go');
  const victim = await computing;
  victim.process.kill('SIGKILL');
  await h.exited(victim, 5000);
  const rest = ws.filter((w) => w !== victim);
  const rs = await Promise.all(rest.map((w) => h.nextMessage(w, (m) => 'value' in m || 'error' in m, 20_000, 'value')));
  for (const r of rs) assert.equal(r.error, undefined);
  assert.equal(new Set(rs.map((r) => r.value)).size, 1);
  assert.notEqual(rs[0].value, `value-from-${victim.process.pid}`);
  assert.equal(Store.open(region).getString('computes'), '2');
});
