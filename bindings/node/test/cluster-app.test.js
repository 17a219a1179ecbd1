'use strict';
// Runs examples/cluster-app.js (a real primary and 2 real workers) with real HTTP requests,
// SIGKILLs a worker mid-load, and checks that the counter, the sessions and the limits
// survive, that the stampede guard computes once, and that verify() is clean.

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { Store } = require('..');
const h = require('./helpers');

const APP = path.join(__dirname, '..', 'examples', 'cluster-app.js');

/** One request on a new connection (so the primary spreads them over the workers). */
function request(port, urlPath, headers = {}) {
  return h.within(
    new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: urlPath, headers, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
        res.on('error', reject);
      });
      req.on('error', reject);
    }),
    10_000,
    `GET ${urlPath}`,
  );
}

test('the cluster app: shared counter, sessions, limits and cache survive a SIGKILLed worker', async (t) => {
  const region = h.uniqueName('app');
  const app = spawn(process.execPath, [APP], {
    env: { ...process.env, PORT: '0', WORKERS: '2', SHMSTATE_REGION: region, RATE_LIMIT: '100000' },
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true, // its own process group, so cleanup reaches the workers too
  });
  let out = '';
  app.stdout.on('data', (d) => (out += d));
  const killGroup = () => {
    try {
      process.kill(-app.pid, 'SIGKILL');
    } catch {}
  };
  t.after(() => {
    killGroup();
    h.cleanupNames();
  });

  const port = await h.within(
    (async () => {
      while (!/listening on http:\/\/127\.0\.0\.1:(\d+)/.test(out)) await h.sleep(20);
      return Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)[1]);
    })(),
    20_000,
    'the app to listen',
  );
  // Both workers up.
  const pids = new Set();
  for (let i = 0; i < 200 && pids.size < 2; i++) {
    pids.add(JSON.parse((await request(port, '/')).body).pid);
    if (pids.size < 2) await h.sleep(20);
  }
  assert.equal(pids.size, 2, 'two workers answer');

  // Sessions: created on one worker, continued on the others.
  const first = await request(port, '/session');
  const cookie = first.headers['set-cookie'][0].split(';')[0];
  assert.equal(JSON.parse(first.body).views, 1);
  const sessionPids = new Set([JSON.parse(first.body).pid]);
  let views = 1;
  for (let i = 0; i < 10; i++) {
    const r = JSON.parse((await request(port, '/session', { cookie })).body);
    views++;
    assert.equal(r.views, views);
    sessionPids.add(r.pid);
  }
  assert.equal(sessionPids.size, 2, 'the session was used by both workers');

  // Limits: exactly 5 allowed across both workers, then 429 with Retry-After.
  const limited = [];
  for (let i = 0; i < 8; i++) limited.push(await request(port, '/limited'));
  assert.deepEqual(limited.map((r) => r.status), [200, 200, 200, 200, 200, 429, 429, 429]);
  assert.equal(new Set(limited.slice(0, 5).map((r) => JSON.parse(r.body).pid)).size, 2);
  const retryAfter = Number(limited[5].headers['retry-after']);
  assert.ok(retryAfter > 0 && retryAfter <= 60, `Retry-After: ${limited[5].headers['retry-after']}`);

  // Load on /increment from 8 concurrent clients; one worker is SIGKILLed midway.
  const TOTAL = 600;
  let sent = 0;
  let ok = 0;
  let failed = 0;
  let victim = null;
  const client = async () => {
    while (sent < TOTAL) {
      sent++;
      try {
        const r = await request(port, '/increment');
        if (r.status === 200) {
          ok++;
          if (victim === null && ok === 150) {
            victim = JSON.parse(r.body).pid;
            process.kill(victim, 'SIGKILL');
          }
        } else failed++;
      } catch {
        failed++; // the killed worker's in-flight requests
      }
    }
  };
  await h.within(Promise.all(Array.from({ length: 8 }, client)), 60_000, 'the load');
  assert.ok(victim !== null);
  // Every acknowledged increment counted; a killed in-flight one may or may not have been.
  const after = JSON.parse((await request(port, '/increment')).body).counter - 1;
  assert.ok(after >= ok && after <= ok + failed, `counter ${after}, ok ${ok}, failed ${failed}`);
  t.diagnostic(`load: ${ok} ok, ${failed} failed around the kill of worker ${victim}; counter ${after}`);

  // The primary replaced the dead worker; the new one serves the same state.
  const newPids = new Set();
  for (let i = 0; i < 500 && newPids.size < 2; i++) {
    const pid = JSON.parse((await request(port, '/')).body).pid;
    if (pid !== victim) newPids.add(pid);
    if (newPids.size < 2) await h.sleep(20);
  }
  assert.equal(newPids.size, 2, 'two live workers again');
  assert.ok(!newPids.has(victim));
  for (let i = 0; i < 4; i++) {
    const r = JSON.parse((await request(port, '/session', { cookie })).body);
    views++;
    assert.equal(r.views, views, 'the session survived');
  }
  assert.equal((await request(port, '/limited')).status, 429, 'the limit survived');

  // The expensive page: 8 concurrent requests, one computation.
  const pages = await Promise.all(Array.from({ length: 8 }, () => request(port, '/expensive')));
  assert.equal(new Set(pages.map((p) => p.body)).size, 1);
  assert.equal(JSON.parse(pages[0].body).fib30, 832040);
  const store = Store.open(region);
  assert.equal(store.cache('pages').stats().misses, 1);

  // Metrics: Prometheus text with the counter and the per-worker gauges of live workers only.
  const metrics = (await request(port, '/metrics')).body;
  assert.match(metrics, /shmstate_counter_value\{name="requests"\} \d+/);
  const served = [...metrics.matchAll(/app_worker_served\{worker="[^"]+",pid="(\d+)"\} (\d+)/g)];
  assert.equal(served.length, 2);
  assert.ok(!served.some((m) => Number(m[1]) === victim), 'the dead worker was reaped');

  // verify() is clean, from a worker and from here.
  assert.equal(JSON.parse((await request(port, '/verify')).body).ok, true);
  const report = store.verify();
  assert.ok(report.ok, report.summary);

  // SIGTERM drains and exits.
  const exited = new Promise((resolve) => app.once('exit', (code) => resolve(code)));
  process.kill(app.pid, 'SIGTERM');
  assert.equal(await h.within(exited, 20_000, 'the app to drain'), 0);
  assert.match(out, /draining/);
});
