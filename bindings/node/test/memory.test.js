'use strict';
// The value heap from Node: a store sized in bytes (`memory`), values of every size up to the
// 1 MiB default limit, the heap statistics, and what a full heap does (SHMSTATE_FULL, or
// eviction).

const test = require('node:test');
const assert = require('node:assert/strict');
const { Store } = require('..');
const h = require('./helpers');

test.afterEach(() => h.cleanupNames());

const MiB = 1 << 20;

const { pattern } = h;

/** The heap statistics agree with each other and with what the test stored. */
function checkHeapStats(st, { valueBytes, maxValueLen }) {
  assert.equal(st.valueBytes, valueBytes, 'valueBytes is the sum of the lengths of the values past 24 bytes');
  assert.ok(st.heapBytes > 0 && st.heapBytes < st.regionBytes, `heapBytes ${st.heapBytes} of ${st.regionBytes}`);
  assert.ok(st.heapFreeBytes <= st.heapBytes - st.valueBytes, `free ${st.heapFreeBytes}, used ${st.valueBytes} of ${st.heapBytes}`);
  assert.ok(st.heapPartialFreeBytes <= st.heapFreeBytes);
  assert.ok(st.largestValue >= 0 && st.largestValue <= maxValueLen);
  assert.ok(st.fragmentation >= 0 && st.fragmentation <= 1);
  const expected = st.heapFreeBytes === 0 ? 0 : st.heapPartialFreeBytes / st.heapFreeBytes;
  assert.ok(Math.abs(st.fragmentation - expected) < 1e-9, `fragmentation ${st.fragmentation}, expected ${expected}`);
}

const SIZES = [0, 1, 7, 8, 23, 24, 25, 100, 255, 256, 1000, 2048, 2049, 4095, 4096, 4097, 16384, 65536, 65537, 300_000, MiB];
const heapBytesOf = (sizes) => sizes.filter((n) => n > 24).reduce((a, n) => a + n, 0);

test('memory: a store sized in bytes holds values of every size up to 1 MiB, read back exactly', () => {
  const name = h.uniqueName('mem');
  const s = Store.openOrCreate(name, { memory: 16 * MiB });
  assert.ok(s.regionBytes <= 16 * MiB && s.regionBytes > 15 * MiB, `regionBytes ${s.regionBytes}`);
  assert.equal(s.capacity, 16 * 1024, 'capacity derives from memory: one entry per KiB');
  // The same region by bigint, from a second handle: same configuration, so it opens.
  const t = Store.openOrCreate(name, { memory: 16n * 1024n * 1024n });
  const empty = t.stats();
  checkHeapStats(empty, { valueBytes: 0, maxValueLen: MiB });
  assert.equal(empty.heapFreeBytes, empty.heapBytes, 'an empty heap is all free');
  assert.equal(empty.largestValue, MiB, 'the default maxValueLen is 1 MiB, and it fits');

  SIZES.forEach((n, i) => s.set(`v${n}`, pattern(n, i)));
  SIZES.forEach((n, i) => {
    assert.deepEqual(t.get(`v${n}`), pattern(n, i), `${n}-byte value`);
    assert.equal(t.has(`v${n}`), true);
  });
  checkHeapStats(t.stats(), { valueBytes: heapBytesOf(SIZES), maxValueLen: MiB });
  assert.equal(t.stats().entries, SIZES.length);

  // Strings of any size too (UTF-8, multi-byte characters across block boundaries).
  const text = 'é€🦀'.repeat(40_000); // 360 000 bytes
  s.set('text', text, 60_000);
  assert.equal(t.getString('text'), text);
  assert.ok(t.ttl('text') > 59_000);

  // Every key rewritten with another size (growing and shrinking across inline, block classes
  // and whole pages), then read back.
  const swapped = [...SIZES].reverse();
  SIZES.forEach((n, i) => t.set(`v${n}`, pattern(swapped[i], i + 100)));
  SIZES.forEach((n, i) => assert.deepEqual(s.get(`v${n}`), pattern(swapped[i], i + 100), `v${n} now ${swapped[i]} bytes`));
  checkHeapStats(s.stats(), { valueBytes: heapBytesOf(SIZES) + 360_000, maxValueLen: MiB });
  assert.equal(s.verify().ok, true, s.verify().summary);

  // compareAndSwap compares large values byte for byte.
  assert.equal(s.compareAndSwap('v0', pattern(MiB, 99), 'x'), false);
  assert.equal(s.compareAndSwap('v0', pattern(MiB, 100), 'x'), true);
  assert.equal(s.getString('v0'), 'x');

  // The limit: maxValueLen (1 MiB by default) is refused one byte past it, as a RangeError.
  assert.throws(() => s.set('too-big', Buffer.alloc(MiB + 1)), { name: 'RangeError', code: 'SHMSTATE_VALUE_TOO_LARGE' });
  assert.equal(s.get('too-big'), null);

  // Deleting everything gives every byte back.
  for (const n of SIZES) assert.equal(s.delete(`v${n}`), true);
  assert.equal(s.delete('text'), true);
  const after = s.stats();
  checkHeapStats(after, { valueBytes: 0, maxValueLen: MiB });
  assert.equal(after.heapFreeBytes, after.heapBytes, 'no heap space leaked');
  assert.equal(after.entries, 0);
  assert.equal(s.verify().ok, true);

  // A different memory is a different configuration.
  assert.throws(() => Store.openOrCreate(name, { memory: 32 * MiB }), { name: 'Error', code: 'SHMSTATE_INCOMPATIBLE' });
});

test('memory: maxValueLen up to the core limit (2 MiB - 16 KiB) stores such a value', () => {
  const max = 2 * MiB - 16 * 1024;
  const s = Store.anonymous({ memory: 8 * MiB, maxValueLen: max });
  s.set('max', pattern(max, 3));
  assert.deepEqual(s.get('max'), pattern(max, 3));
  assert.throws(() => s.set('max', Buffer.alloc(max + 1)), { code: 'SHMSTATE_VALUE_TOO_LARGE' });
  assert.deepEqual(s.get('max'), pattern(max, 3), 'a refused write leaves the old value');
  checkHeapStats(s.stats(), { valueBytes: max, maxValueLen: max });
});

// A small heap: 2 MiB in all, one shard, values up to 64 KiB, room for 1000 entries (so the
// heap, not the index, runs out).
const SMALL = { memory: 2 * MiB, shards: 1, capacity: 1000, maxKeyLen: 16, maxValueLen: 64 * 1024 };
const BIG = 60 * 1024;

/** Sets 60 KiB values `k0, k1, ...` until the store refuses one; returns how many it took. */
function fill(s, ttlMs) {
  for (let i = 0; i < 200; i++) {
    try {
      s.set(`k${i}`, pattern(BIG, i), ttlMs);
    } catch (e) {
      assert.equal(e.code, 'SHMSTATE_FULL', `set k${i}: ${e.code} ${e.message}`);
      assert.equal(e.constructor, Error, 'SHMSTATE_FULL is a plain Error, not a RangeError');
      return i;
    }
  }
  assert.fail('a 2 MiB heap took 200 values of 60 KiB');
}

test('a full heap is SHMSTATE_FULL: nothing partial, nothing else lost, room again after a delete', () => {
  const s = Store.openOrCreate(h.uniqueName('heapfull'), SMALL);
  const heap = s.stats().heapBytes;
  const n = fill(s);
  assert.ok(n * BIG >= 0.75 * heap, `${n} values of 60 KiB in a heap of ${heap} bytes`);
  const st = s.stats();
  assert.equal(st.entries, n);
  assert.ok(st.fullRefusals >= 1);
  assert.ok(st.largestValue < BIG, `largestValue ${st.largestValue} when a ${BIG}-byte value was refused`);
  checkHeapStats(st, { valueBytes: n * BIG, maxValueLen: 64 * 1024 });
  assert.equal(s.get(`k${n}`), null, 'the refused value was not stored, not even in part');
  for (let i = 0; i < n; i++) assert.deepEqual(s.get(`k${i}`), pattern(BIG, i), `k${i} intact`);

  // Growing a value in a full heap: it either happens or leaves the old value.
  try {
    s.set('k0', pattern(64 * 1024, 500));
    assert.deepEqual(s.get('k0'), pattern(64 * 1024, 500));
  } catch (e) {
    assert.equal(e.code, 'SHMSTATE_FULL');
    assert.deepEqual(s.get('k0'), pattern(BIG, 0));
  }
  // Values of up to 24 bytes live in the slot: a full heap does not refuse them.
  s.set('tiny', 'fits in the slot');
  assert.equal(s.getString('tiny'), 'fits in the slot');

  assert.equal(s.delete('k1'), true);
  s.set(`k${n}`, pattern(BIG, n));
  assert.deepEqual(s.get(`k${n}`), pattern(BIG, n));
  assert.equal(s.verify().ok, true, s.verify().summary);
});

test('a heap full of expired values makes room for new ones (whenFull: refuse reclaims them first)', async () => {
  const s = Store.openOrCreate(h.uniqueName('heapttl'), SMALL);
  const n = fill(s, 30);
  assert.ok(n > 10);
  await new Promise((r) => setTimeout(r, 80));
  for (let i = 0; i < n; i++) s.set(`new${i}`, pattern(BIG, 1000 + i));
  for (let i = 0; i < n; i++) assert.deepEqual(s.get(`new${i}`), pattern(BIG, 1000 + i));
  assert.equal(s.get('k0'), null);
  assert.ok(s.stats().expirations >= 1);
  assert.equal(s.verify().ok, true);
});

test("whenFull: 'evict' evicts to make heap room: no error, the newest value readable", () => {
  const s = Store.openOrCreate(h.uniqueName('heapevict'), { ...SMALL, whenFull: 'evict' });
  for (let i = 0; i < 150; i++) s.set(`k${i}`, pattern(BIG, i));
  const st = s.stats();
  assert.ok(st.evictions > 0, `evictions ${st.evictions}`);
  assert.equal(st.fullRefusals, 0);
  assert.deepEqual(s.get('k149'), pattern(BIG, 149));
  let present = 0;
  for (let i = 0; i < 150; i++) {
    const v = s.get(`k${i}`);
    if (v !== null) {
      assert.deepEqual(v, pattern(BIG, i), `k${i} is its own value or gone`);
      present++;
    }
  }
  assert.equal(present, st.entries);
  assert.equal(s.verify().ok, true);
});

test('memory: wrong types are TypeErrors, out of range RangeErrors, too small SHMSTATE_INVALID_CONFIG', () => {
  const typeErr = { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' };
  const rangeErr = { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' };
  for (const [memory, err] of [
    ['64m', typeErr],
    [null, typeErr],
    [true, typeErr],
    [{}, typeErr],
    [0, rangeErr],
    [-1, rangeErr],
    [1.5, rangeErr],
    [NaN, rangeErr],
    [Infinity, rangeErr],
    [2 ** 40 + 1, rangeErr],
    [2 ** 53, rangeErr],
    [0n, rangeErr],
    [-5n, rangeErr],
    [2n ** 40n + 1n, rangeErr],
    [2n ** 70n, rangeErr],
  ]) {
    assert.throws(() => Store.anonymous({ memory }), err, String(memory));
  }
  assert.throws(() => Store.anonymous({ maxValueLen: 2 * MiB - 16 * 1024 + 1 }), rangeErr);
  const invalid = { name: 'RangeError', code: 'SHMSTATE_INVALID_CONFIG' };
  assert.throws(() => Store.anonymous({ memory: 4096 }), invalid);
  assert.throws(() => Store.anonymous({ memory: MiB, capacity: 1_000_000 }), { ...invalid, message: /memory/ });
  assert.throws(() => Store.anonymous({ memory: 2 * MiB, shards: 64 }), { ...invalid, message: /memory/ });
  assert.throws(() => Store.create(h.uniqueName('memnone'), { memory: 4096 }), invalid);
});
