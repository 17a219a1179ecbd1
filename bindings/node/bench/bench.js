#!/usr/bin/env node
'use strict';
// Benchmarks shmstate against what Node cluster users pick today, with 1 and 2 workers
// (node:cluster), 16-byte keys and 256-byte values, and prints a markdown table:
//
//   shmstate       get (a Buffer copy), set, incr, counter.add
//   master IPC     the guides' pattern: process.send to the primary holding a Map, await reply
//   memored        master IPC as an npm package (read, store)
//   lmdb           lmdb-js, its synchronous get, and put (asynchronous, batched; noSync)
//   ioredis        a real redis-server on a unix socket, started here (skipped if absent)
//   Map            an in-process Map: the floor (not shared)
//
//   node bench/bench.js            BENCH_MS=1000 per measurement (about 40 s)
//   node bench/bench.js --smoke    a few ms each: checks the harness runs (CI)

const cluster = require('node:cluster');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { Store } = require('..');

const SMOKE = process.argv.includes('--smoke');
const BENCH_MS = Number(process.env.BENCH_MS || (SMOKE ? 30 : 1000));
const KEYS = 1000;
const WORKER_COUNTS = [1, 2];
const tag = `${process.pid}`;
const REGION = `shmstate-bench-${tag}`;
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'shmstate-bench-'));
const LMDB_PATH = path.join(TMP, 'lmdb');
const REDIS_SOCKET = path.join(TMP, 'redis.sock');

const PLAN = [
  ['shmstate', ['get', 'set', 'incr', 'counter']],
  ['map', ['get', 'set', 'incr']],
  ['ipc', ['get', 'set', 'incr']],
  ['memored', ['get', 'set']],
  ['lmdb', ['get', 'set']],
  ['redis', ['get', 'set', 'incr']],
];
const LABEL = { shmstate: 'shmstate', map: 'in-process `Map` (floor, not shared)', ipc: 'master IPC (`process.send` + `Map`)', memored: '`memored`', lmdb: '`lmdb` (sync `get`, batched `put`)', redis: '`ioredis`, unix socket' };
const OPNAME = { get: 'get', set: 'set', incr: 'incr', counter: 'counter.add' };

function startRedis() {
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  if (which.status !== 0) {
    console.error('redis-server not found: skipping the Redis rows (apt-get install redis-server)');
    return null;
  }
  const proc = spawn(which.stdout.trim(), ['--port', '0', '--unixsocket', REDIS_SOCKET, '--save', '', '--appendonly', 'no', '--daemonize', 'no'], { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(REDIS_SOCKET)) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error('redis-server did not start');
    spawnSync('sleep', ['0.05']);
  }
  return proc;
}

async function prefill(system) {
  const value = 'v'.repeat(256);
  const keys = Array.from({ length: KEYS }, (_, i) => `key:${String(i).padStart(12, '0')}`);
  if (system === 'lmdb') {
    const { open } = require('lmdb');
    const db = open({ path: LMDB_PATH, encoding: 'binary', noSync: true });
    for (const k of keys) db.put(k, Buffer.from(value));
    await db.flushed;
    await db.close();
  } else if (system === 'redis') {
    const Redis = require('ioredis');
    const r = new Redis({ path: REDIS_SOCKET });
    for (const k of keys) await r.set(k, value);
    await r.quit();
  } else if (system === 'shmstate') {
    const s = Store.open(REGION);
    for (const k of keys) s.set(k, value);
  } else {
    for (const k of keys) ipcMap.set(k, value);
  }
}

// The primary's Map for the master-IPC rows.
const ipcMap = new Map();
function serveIpc(worker) {
  worker.on('message', (m) => {
    if (!m || m.t !== 'q') return;
    let v;
    if (m.op === 'get') v = ipcMap.get(m.key);
    else if (m.op === 'set') ipcMap.set(m.key, m.value);
    else {
      v = (ipcMap.get(`n${m.key}`) || 0) + 1;
      ipcMap.set(`n${m.key}`, v);
    }
    worker.send({ t: 'r', id: m.id, v });
  });
}

function once(worker, pred, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('benchmark worker timed out')), ms);
    worker.on('message', function on(m) {
      if (m && m.error) {
        clearTimeout(timer);
        reject(new Error(m.error));
      } else if (pred(m)) {
        clearTimeout(timer);
        worker.off('message', on);
        resolve(m);
      }
    });
  });
}

async function measure(system, op, n) {
  cluster.setupPrimary({ exec: path.join(__dirname, 'worker.js'), silent: false });
  if (system === 'memored') require('memored'); // installs its primary-side handlers
  const env = { SYSTEM: system, OP: op, BENCH_MS: String(BENCH_MS), REGION, LMDB_PATH, REDIS_SOCKET, KEYS: String(KEYS) };
  const ws = Array.from({ length: n }, () => cluster.fork(env));
  try {
    if (system === 'ipc') ws.forEach(serveIpc);
    await Promise.all(ws.map((w) => once(w, (m) => m.ready, 30_000)));
    const results = ws.map((w) => once(w, (m) => 'ops' in m, BENCH_MS + 30_000));
    for (const w of ws) w.send('go');
    const rs = await Promise.all(results);
    const opsPerSec = rs.reduce((a, r) => a + r.ops / (r.elapsedNs / 1e9), 0);
    const nsPerOp = rs.reduce((a, r) => a + r.elapsedNs / r.ops, 0) / rs.length;
    return { opsPerSec, nsPerOp };
  } finally {
    for (const w of ws) if (!w.isDead()) w.process.kill('SIGKILL');
  }
}

const fmtNs = (ns) => (ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(0)} ns`);
const fmtRate = (r) => (r >= 1e6 ? `${(r / 1e6).toFixed(2)} M/s` : r >= 1e3 ? `${(r / 1e3).toFixed(1)} k/s` : `${r.toFixed(0)}/s`);

async function main() {
  Store.create(REGION, { capacity: 20_000, maxKeyLen: 32, maxValueLen: 256, maxCounters: 16 });
  let redis = null;
  const results = {};
  try {
    redis = startRedis();
    for (const [system, ops] of PLAN) {
      if (system === 'redis' && !redis) continue;
      await prefill(system);
      for (const op of ops) {
        for (const n of WORKER_COUNTS) {
          results[`${system}/${op}/${n}`] = await measure(system, op, n);
          process.stderr.write('.');
        }
      }
    }
  } finally {
    if (redis) {
      redis.kill('SIGTERM');
      await new Promise((r) => (redis.exitCode !== null ? r() : redis.once('exit', r)));
    }
    Store.unlink(REGION);
    fs.rmSync(TMP, { recursive: true, force: true });
  }
  process.stderr.write('\n');

  const load = os.loadavg()[0].toFixed(2);
  const lines = [];
  lines.push(`Node ${process.version}, ${os.cpus().length} vCPUs (${os.cpus()[0].model.trim()}), ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${BENCH_MS} ms per measurement, load average ${load}; 16-byte keys, 256-byte values, ${KEYS} keys; no CPU pinning.`);
  lines.push('');
  lines.push('| system | op | 1 worker: per op | 1 worker | 2 workers (total) | shmstate speed-up, 1 worker | 2 workers |');
  lines.push('|---|---|---:|---:|---:|---:|---:|');
  for (const [system, ops] of PLAN) {
    for (const op of ops) {
      const one = results[`${system}/${op}/1`];
      const two = results[`${system}/${op}/2`];
      if (!one) continue;
      const s1 = results[`shmstate/${op}/1`];
      const s2 = results[`shmstate/${op}/2`];
      const up = (s, o) => (s && o ? `${(s.opsPerSec / o.opsPerSec).toFixed(s.opsPerSec < o.opsPerSec ? 2 : 1)}x` : '');
      lines.push(`| ${LABEL[system]} | ${OPNAME[op]} | ${fmtNs(one.nsPerOp)} | ${fmtRate(one.opsPerSec)} | ${fmtRate(two.opsPerSec)} | ${system === 'shmstate' ? '' : up(s1, one)} | ${system === 'shmstate' ? '' : up(s2, two)} |`);
    }
  }
  lines.push('');
  const r = (a, b) => (results[a] && results[b] ? results[a].opsPerSec / results[b].opsPerSec : NaN);
  const target = (what, v, goal) => `- ${what}: **${v.toFixed(1)}x** (target ${goal}x): ${Number.isNaN(v) ? 'not measured' : v >= goal ? 'met' : 'missed'}`;
  lines.push('Targets (1 worker):');
  lines.push(target('`get` vs master IPC', r('shmstate/get/1', 'ipc/get/1'), 50));
  lines.push(target('`get` vs ioredis', r('shmstate/get/1', 'redis/get/1'), 20));
  lines.push(target('`get` vs lmdb sync `get`', r('shmstate/get/1', 'lmdb/get/1'), 1));
  lines.push(target('`incr` vs ioredis `incr`', r('shmstate/incr/1', 'redis/incr/1'), 20));
  console.log(lines.join('\n'));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
