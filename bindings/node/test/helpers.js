'use strict';
// Test helpers: unique region names (pid + counter) that are always unlinked, and real
// `cluster` workers that are always killed, with every wait bounded in time.

const cluster = require('node:cluster');
const path = require('node:path');
const { Store } = require('..');

let counter = 0;
const made = new Set();

/** A region name unique to this process and call; unlinked by `cleanup()`. */
function uniqueName(tag) {
  const name = `shmstate-node-test-${tag}-${process.pid}-${++counter}`;
  made.add(name);
  return name;
}

function cleanupNames() {
  for (const name of made) {
    try {
      Store.unlink(name);
    } catch (e) {
      if (e.code !== 'SHMSTATE_NOT_FOUND') throw e;
    }
  }
  made.clear();
}

/** Rejects after `ms` with `what` in the message. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const FIXTURE = path.join(__dirname, 'fixtures', 'worker.js');

/** Forks a cluster worker running `scenario` of fixtures/worker.js on `region`. */
function fork(scenario, region, env = {}) {
  cluster.setupPrimary({ exec: FIXTURE, silent: false });
  return cluster.fork({ SHMSTATE_SCENARIO: scenario, SHMSTATE_REGION: region, ...env });
}

/** The next message from `worker` that satisfies `pred` (bounded by `ms`). */
function nextMessage(worker, pred, ms, what = 'a message') {
  return within(
    new Promise((resolve, reject) => {
      const onMsg = (m) => {
        if (pred(m)) {
          worker.off('message', onMsg);
          worker.off('exit', onExit);
          resolve(m);
        }
      };
      const onExit = (code, signal) => {
        worker.off('message', onMsg);
        reject(new Error(`worker ${worker.process.pid} exited (${code ?? signal}) before ${what}`));
      };
      worker.on('message', onMsg);
      worker.once('exit', onExit);
    }),
    ms,
    what,
  );
}

function exited(worker, ms) {
  if (worker.process.exitCode !== null || worker.process.signalCode !== null) return Promise.resolve();
  return within(new Promise((resolve) => worker.once('exit', resolve)), ms, `exit of ${worker.process.pid}`);
}

/** SIGKILLs every cluster worker still running and waits (bounded) for their exit. */
async function killAllWorkers() {
  const ws = Object.values(cluster.workers || {});
  for (const w of ws) {
    try {
      w.process.kill('SIGKILL');
    } catch {}
  }
  await Promise.all(ws.map((w) => exited(w, 5000).catch(() => {})));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * `len` bytes that depend on `seed` and on each byte's position, so a misplaced or mixed-up
 * block shows. The Rust peer (`src/bin/peer.rs`, `fill` / `check`) makes the same bytes.
 */
function pattern(len, seed) {
  const b = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) b[i] = (i * 131 + seed * 7 + (i >>> 9)) & 0xff;
  return b;
}

module.exports = { uniqueName, cleanupNames, within, fork, nextMessage, exited, killAllWorkers, sleep, pattern };
