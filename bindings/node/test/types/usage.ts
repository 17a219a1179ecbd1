// Compiled by test/types.test.js with `tsc --noEmit --strict`: the declarations describe the
// API as index.js implements it (the JS tests run the same calls).
import { Store, Lock, ERROR_CODES, ShmstateError, Decision, StoreOptions } from 'shmstate';
import { ShmSessionStore } from 'shmstate/express-session';
import { ShmRateLimitStore } from 'shmstate/express-rate-limit';
import session from 'express-session';
import { rateLimit } from 'express-rate-limit';

const options: StoreOptions = { capacity: 10, maxValueLen: 64, whenFull: 'evict', lineSizedSlots: false };
const store: Store = Store.openOrCreate('types', options);
store.set('k', 'v', 1000);
store.set(Buffer.from('k'), new Uint8Array([1]), null);
const b: Buffer | null = store.get('k');
const s: string | null = store.getString('k');
const n: number = store.incr('n', 2, 1000);
const big: bigint = store.incrBigInt('n', 2n);
const ttl: number | null = store.ttl('k');
const ok: boolean = store.compareAndSwap('k', null, 'x') && store.add('a', 'b') && store.delete('a');
const c = store.counter('c');
const cv: number = c.add() + c.add(2) + c.get();
const cb: bigint = c.addBigInt(1n) + c.getBigInt();
const lock: Lock | null = store.tryLock('l', 1000);
if (lock) {
  const fence: bigint = lock.fence;
  lock.extend(10) && lock.release();
}
async function waits(): Promise<void> {
  const l = await store.lock('l', 1000, 50);
  l?.release();
  const cache = store.cache('pages', { staleForMs: 1, leaseMs: 2, waitMs: 3 });
  const v: Buffer = await cache.getOrCompute('k', 1000, async () => 'value');
  const w: Buffer = await cache.getOrCompute('k', 1000, () => Buffer.from('x'));
}
const d: Decision = store.rateLimiter({ algorithm: 'gcra', name: 'r', limit: 1, windowMs: 1, burst: 1 }).check('ip', 1);
const allowed: boolean = d.allowed && d.retryAfterMs >= 0;
const reg = store.workers('w', 4);
const g = reg.register('me').gauge('inflight');
g.add(1);
const total: number = reg.gaugeTotal('inflight');
const v = store.verify();
const problems: string[] = v.ok ? [] : v.problems;
const hits: number = store.stats().hits;
const st = store.stats();
const heap: number = st.valueBytes + st.heapBytes + st.heapFreeBytes + st.heapPartialFreeBytes + st.largestValue + st.fragmentation;
const sized: Store = Store.anonymous({ memory: 64 << 20, maxValueLen: 1 << 20 });
Store.anonymous({ memory: 64n << 20n });
// @ts-expect-error memory is bytes, not a string
Store.anonymous({ memory: '64m' });
const page = store.scan(0, { prefix: 'a', limit: 10 });
const next: number | null = page.cursor;
for (const key of store.keys('a')) key.length;
const cls: string = ERROR_CODES['SHMSTATE_FULL'];
try {
  store.set('k', 'v');
} catch (e) {
  const code = (e as ShmstateError).code;
  if (code === 'SHMSTATE_FULL' || code === 'ERR_OUT_OF_RANGE') {
  }
}
session({ store: new ShmSessionStore({ store, prefix: 'sess:', ttlMs: 1000 }), secret: 's' });
rateLimit({ windowMs: 1000, limit: 5, store: new ShmRateLimitStore({ store, prefix: 'rl:' }) });
// @ts-expect-error a number is not a key
store.get(5);
// @ts-expect-error unknown option
Store.openOrCreate('x', { maxValueLength: 5 });
// @ts-expect-error the constructor is private
new Store();
