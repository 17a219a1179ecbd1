'use strict';
// A benchmark worker (a node:cluster worker started by bench.js): runs one operation of one
// system in a loop for BENCH_MS after the primary says 'go', and reports how many it did.

const { Store } = require('..');

const { SYSTEM, OP, BENCH_MS, REGION, LMDB_PATH, REDIS_SOCKET, KEYS } = process.env;
const N_KEYS = Number(KEYS);
const durationMs = Number(BENCH_MS);
const keys = Array.from({ length: N_KEYS }, (_, i) => `key:${String(i).padStart(12, '0')}`); // 16 bytes
const valueStr = 'v'.repeat(256);
const valueBuf = Buffer.from(valueStr);

async function setup() {
  switch (SYSTEM) {
    case 'shmstate': {
      const store = Store.open(REGION);
      const c = store.counter('bench');
      return {
        get: (k) => store.get(k),
        set: (k) => store.set(k, valueBuf),
        incr: (k) => store.incr(`n${k}`),
        counter: () => c.add(1),
      };
    }
    case 'map': {
      const m = new Map(keys.map((k) => [k, Buffer.from(valueBuf)]));
      return {
        get: (k) => m.get(k),
        set: (k) => m.set(k, valueBuf),
        incr: (k) => {
          const v = (m.get(`n${k}`) || 0) + 1;
          m.set(`n${k}`, v);
          return v;
        },
      };
    }
    case 'ipc': {
      // The guides' pattern: ask the primary, which holds a Map, and await its reply.
      let id = 0;
      const pending = new Map();
      process.on('message', (m) => {
        if (m && m.t === 'r') {
          const resolve = pending.get(m.id);
          pending.delete(m.id);
          resolve(m.v);
        }
      });
      const ask = (op, key, value) =>
        new Promise((resolve) => {
          const i = ++id;
          pending.set(i, resolve);
          process.send({ t: 'q', id: i, op, key, value });
        });
      return { get: (k) => ask('get', k), set: (k) => ask('set', k, valueStr), incr: (k) => ask('incr', k), async: true };
    }
    case 'memored': {
      const memored = require('memored');
      const p = (f) => new Promise((resolve, reject) => f((err, v) => (err ? reject(err) : resolve(v))));
      return {
        get: (k) => p((cb) => memored.read(k, cb)),
        set: (k) => p((cb) => memored.store(k, valueStr, cb)),
        async: true,
      };
    }
    case 'lmdb': {
      const { open } = require('lmdb');
      const db = open({ path: LMDB_PATH, encoding: 'binary', noSync: true });
      let n = 0;
      return {
        get: (k) => db.get(k),
        // put is asynchronous (batched into transactions): keep up to 256 in flight.
        set: async (k) => {
          if (++n % 256 === 0) await db.put(k, valueBuf);
          else db.put(k, valueBuf);
        },
        async: true,
        asyncOps: ['set'],
      };
    }
    case 'redis': {
      const Redis = require('ioredis');
      const r = new Redis({ path: REDIS_SOCKET, lazyConnect: true, enableOfflineQueue: false });
      await r.connect();
      return { get: (k) => r.getBuffer(k), set: (k) => r.set(k, valueBuf), incr: (k) => r.incr(`n${k}`), async: true, close: () => r.quit() };
    }
    default:
      throw new Error(`unknown system ${SYSTEM}`);
  }
}

async function main() {
  const sys = await setup();
  const op = sys[OP];
  const isAsync = sys.async && (!sys.asyncOps || sys.asyncOps.includes(OP));
  process.send({ ready: true });
  await new Promise((r) => process.on('message', (m) => m === 'go' && r()));
  let ops = 0;
  const t0 = process.hrtime.bigint();
  const end = t0 + BigInt(durationMs) * 1_000_000n;
  let now = t0;
  if (isAsync) {
    while (now < end) {
      for (let i = 0; i < 16; i++) await op(keys[(ops + i) % N_KEYS]);
      ops += 16;
      now = process.hrtime.bigint();
    }
  } else {
    while (now < end) {
      for (let i = 0; i < 1000; i++) op(keys[(ops + i) % N_KEYS]);
      ops += 1000;
      now = process.hrtime.bigint();
    }
  }
  const elapsedNs = Number(now - t0);
  if (sys.close) await sys.close();
  process.send({ ops, elapsedNs });
  process.disconnect();
}

main().catch((e) => {
  process.send({ error: String(e && e.stack) });
  process.exitCode = 1;
});
