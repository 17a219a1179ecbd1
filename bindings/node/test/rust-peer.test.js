'use strict';
// A region shared by a Node cluster worker and a Rust process (src/bin/peer.rs, on the same
// core crate) sees the same values: keys, incr, counters, the cache, and locks.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { Store } = require('..');
const h = require('./helpers');

const ROOT = path.join(__dirname, '..');
const PEER = path.join(process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target'), 'release', 'shmstate-node-peer');

test.before(() => {
  if (!fs.existsSync(PEER)) {
    // Shares the addon's build (same crate, same dependencies): a link step or so.
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build.js'), '--peer'], { stdio: 'inherit', timeout: 600_000 });
    assert.equal(r.status, 0, 'building the Rust peer');
  }
});

test.afterEach(async () => {
  await h.killAllWorkers();
  h.cleanupNames();
});

/** Runs peer commands (one per line) in a Rust process; returns its output lines. */
function rust(region, ...commands) {
  const r = spawnSync(PEER, [region], { input: commands.join('\n') + '\n', encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trimEnd().split('\n');
}

test('a Node worker and a Rust process share keys, incr, counters, the cache and locks', async () => {
  const region = h.uniqueName('peer');
  const w = h.fork('rpc', region);
  await h.nextMessage(w, (m) => m.ready, 10_000, 'ready');
  let id = 0;
  const node = async (op, ...args) => {
    const my = ++id;
    const p = h.nextMessage(w, (m) => m.id === my, 10_000, op);
    w.send({ id: my, op, args });
    const r = await p;
    assert.equal(r.error, undefined, r.error);
    return r.result;
  };

  await node('set', 'from-node', 'héllo from node');
  await node('incr', 'hits', 5);
  await node('counterAdd', 'requests', 7);
  assert.equal(await node('cache', 'pages', 'home', 'rendered by node'), 'rendered by node');
  assert.deepEqual(rust(region, 'get from-node', 'incr hits 1', 'counter requests 3', 'cache-get pages home', 'set from-rust 🦀', 'verify'), [
    'héllo from node',
    '6',
    '10',
    'rendered by node',
    'OK',
    'ok',
  ]);
  assert.equal(await node('getString', 'from-rust'), '🦀');
  assert.equal(await node('incr', 'hits', 1), 7);
  assert.equal(await node('counterAdd', 'requests', 0), 10);

  // A lock held by the Node worker is held for Rust too; released, Rust gets a larger fence.
  const fence = BigInt(await node('tryLock', 'job', 60_000));
  const [busy, holder] = rust(region, 'trylock job 1000', 'holder job');
  assert.equal(busy, 'busy');
  assert.equal(holder, `${w.process.pid} ${fence}`);
  assert.equal(await node('release', 'job'), true);
  const [acquired] = rust(region, 'trylock job 1000');
  assert.match(acquired, /^acquired \d+$/);
  assert.ok(BigInt(acquired.split(' ')[1]) > fence);

  // A Rust process that exits holding a 60 s lock is a dead holder for Node: taken over at once.
  const [kept] = rust(region, 'trylock-keep orphan 60000');
  assert.match(kept, /^acquired \d+$/);
  const taken = await node('tryLock', 'orphan', 1000);
  assert.notEqual(taken, null, 'taken over from the exited Rust holder');
  assert.ok(BigInt(taken) > BigInt(kept.split(' ')[1]));
  assert.equal(await node('verify'), true);
});

test('a Node process and a Rust process share values of every size (the value heap)', () => {
  const region = h.uniqueName('peerheap');
  const s = Store.openOrCreate(region, { memory: 8 << 20 });
  const sizes = [0, 24, 25, 200, 2048, 4096, 4097, 40_000, 65_536, 1 << 20];
  sizes.forEach((n, i) => s.set(`node${n}`, h.pattern(n, i)));
  assert.deepEqual(
    rust(region, ...sizes.map((n, i) => `check node${n} ${n} ${i}`), ...sizes.map((n, i) => `fill rust${n} ${n} ${i + 50}`), 'verify'),
    [...sizes.map(() => 'ok'), ...sizes.map(() => 'OK'), 'ok'],
  );
  sizes.forEach((n, i) => assert.deepEqual(s.get(`rust${n}`), h.pattern(n, i + 50), `rust${n}`));
  // The Rust side sees Node's rewrites (another size, other bytes) and deletes; and a wrong
  // expectation is reported (the check can fail).
  s.set('node4097', h.pattern(100, 7));
  s.delete('node2048');
  assert.deepEqual(rust(region, 'check node4097 100 7', 'check node2048 2048 4', 'check node40000 40000 8', 'check node40000 40001 7', 'verify'), [
    'ok',
    '(nil)',
    'differs at byte 0',
    'length 40000',
    'ok',
  ]);
  const total = (sizes.filter((n) => n > 24).reduce((a, n) => a + n, 0) - 2048 - 4097 + 100) + sizes.filter((n) => n > 24).reduce((a, n) => a + n, 0);
  assert.equal(s.stats().valueBytes, total);
  assert.equal(s.verify().ok, true);
});
