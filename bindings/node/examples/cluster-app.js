'use strict';
// The guides' Express cluster app, done right.
//
// The clustering guides say workers cannot share a Map, and offer a message to the primary
// (a bottleneck that dies with it) or Redis (a server and a round trip per request). Here the
// workers share one named shared-memory region: a request counter, the sessions
// (express-session), per-IP rate limits (express-rate-limit), a cached expensive route behind
// a stampede guard, per-worker gauges and /metrics. The primary holds no state: it forks one
// worker per CPU and replaces dead ones. A worker killed at any instant (SIGKILL, OOM) loses
// nothing of the others'. SIGTERM drains: servers stop accepting and finish their requests.
//
//   node examples/cluster-app.js          PORT=3000 WORKERS=<cpus> SHMSTATE_REGION=cluster-app
//   curl localhost:3000/increment ; curl localhost:3000/metrics
//
// Under pm2 (whose primary is not yours) run the worker part alone: every worker opens the
// region with openOrCreate, which is safe when they all race.

const cluster = require('node:cluster');
const os = require('node:os');
const express = require('express');
const session = require('express-session');
const { rateLimit } = require('express-rate-limit');
const { Store } = require('shmstate');
const { ShmSessionStore } = require('shmstate/express-session');
const { ShmRateLimitStore } = require('shmstate/express-rate-limit');

const REGION = process.env.SHMSTATE_REGION || 'cluster-app';
const PORT = Number(process.env.PORT ?? 3000);
const WORKERS = Number(process.env.WORKERS || os.availableParallelism());
const RATE_LIMIT = Number(process.env.RATE_LIMIT || 1000); // requests per minute per IP
// Every process passes the same options; openOrCreate refuses a region made with others.
// One memory budget (like `lua_shared_dict app 64m`): 64 MiB for index and values together,
// room for 65 536 entries (one per KiB). Each value takes the memory it needs (a 200-byte
// session about 200 bytes, a 40 KiB cached page about 40 KiB), up to maxValueLen.
const OPTIONS = { memory: 64 << 20, maxKeyLen: 128, maxValueLen: 256 << 10, maxCounters: 512 };

if (cluster.isPrimary) {
  let shuttingDown = false;
  let announced = false;
  const fork = () => cluster.fork();
  for (let i = 0; i < WORKERS; i++) fork();

  cluster.on('listening', (worker, address) => {
    if (!announced) {
      announced = true;
      console.log(`listening on http://127.0.0.1:${address.port}`);
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    if (shuttingDown) {
      if (Object.keys(cluster.workers).length === 0) process.exit(0);
      return;
    }
    console.log(`worker ${worker.process.pid} died (${signal || code}); starting a new one`);
    fork();
  });
  const shutdown = () => {
    if (shuttingDown) return;
    shuttingDown = true;
    console.log('draining');
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    if (Object.keys(cluster.workers).length === 0) process.exit(0);
    setTimeout(() => process.exit(1), 15_000).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
} else {
  runWorker();
}

function runWorker() {
  const store = Store.openOrCreate(REGION, OPTIONS);
  const pid = process.pid;
  const requests = store.counter('requests');
  const workers = store.workers('app', 64);
  const me = workers.register(`worker-${cluster.worker.id}`);
  const inflight = me.gauge('inflight');
  const served = me.gauge('served');
  const pages = store.cache('pages', { staleForMs: 30_000, leaseMs: 10_000, waitMs: 5_000 });

  const app = express();
  app.use((req, res, next) => {
    inflight.add(1);
    served.add(1);
    res.on('close', () => inflight.add(-1));
    res.set('X-Worker', String(pid));
    next();
  });
  // Per-IP limit over all routes, exact across workers.
  app.use(
    rateLimit({
      windowMs: 60_000,
      limit: RATE_LIMIT,
      standardHeaders: 'draft-7',
      legacyHeaders: false,
      store: new ShmRateLimitStore({ store, prefix: 'rl:all:' }),
    }),
  );
  app.use(
    session({
      store: new ShmSessionStore({ store }),
      secret: process.env.SESSION_SECRET || 'change-me',
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 3_600_000 },
    }),
  );

  app.get('/', (req, res) => res.json({ pid, worker: cluster.worker.id }));

  // The guides' shared counter: one atomic add in shared memory.
  app.get('/increment', (req, res) => res.json({ counter: requests.add(1), pid }));

  // Sessions: any worker serves any user.
  app.get('/session', (req, res) => {
    req.session.views = (req.session.views || 0) + 1;
    res.json({ views: req.session.views, pid });
  });

  // A strict limit for an expensive endpoint (like login attempts): 5 per minute per IP.
  const strict = rateLimit({
    windowMs: 60_000,
    limit: 5,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    store: new ShmRateLimitStore({ store, prefix: 'rl:strict:' }),
  });
  app.get('/limited', strict, (req, res) => res.json({ ok: true, pid }));

  // An expensive page behind the stampede guard: computed by one worker at a time, cached
  // for 10 s, then served stale for 30 s while one worker refreshes it.
  app.get('/expensive', async (req, res, next) => {
    try {
      const body = await pages.getOrCompute('fib', 10_000, async () =>
        JSON.stringify({ fib30: fib(30), computedBy: pid, at: Date.now() }),
      );
      res.type('json').send(body);
    } catch (e) {
      next(e);
    }
  });

  app.get('/metrics', (req, res) => {
    let text = store.metrics();
    text += '# HELP app_worker_inflight Requests in flight per worker.\n# TYPE app_worker_inflight gauge\n';
    for (const w of workers.gaugeByWorker('inflight')) {
      text += `app_worker_inflight{worker="${w.label}",pid="${w.pid}"} ${w.value}\n`;
    }
    text += '# HELP app_worker_served Requests served per worker (since it started).\n# TYPE app_worker_served gauge\n';
    for (const w of workers.gaugeByWorker('served')) {
      text += `app_worker_served{worker="${w.label}",pid="${w.pid}"} ${w.value}\n`;
    }
    res.type('text/plain; version=0.0.4; charset=utf-8').send(text);
  });

  app.get('/verify', (req, res) => res.json(store.verify()));

  app.use((err, req, res, next) => {
    res.status(err.code === 'SHMSTATE_CACHE_TIMEOUT' ? 503 : 500).json({ error: err.code || 'error', message: err.message });
  });

  const server = app.listen(PORT, '127.0.0.1');
  process.on('SIGTERM', () => {
    // Drain: stop accepting, let in-flight requests finish, then leave the registry.
    server.close(() => {
      me.deregister();
      process.exit(0);
    });
    server.closeIdleConnections?.();
    setTimeout(() => process.exit(0), 10_000).unref();
  });
}

function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}
