'use strict';
// The adapters with the real express-session and express-rate-limit packages, over real HTTP
// on 127.0.0.1 (port 0). Across cluster workers they are tested in cluster-app.test.js.

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const express = require('express');
const session = require('express-session');
const { rateLimit } = require('express-rate-limit');
const { Store } = require('..');
const { ShmSessionStore } = require('../express-session');
const { ShmRateLimitStore } = require('../express-rate-limit');
const h = require('./helpers');

test.after(() => h.cleanupNames());

async function serve(t, app) {
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  t.after(() => new Promise((r) => server.close(r)));
  server.closeIdleConnections?.();
  return server.address().port;
}

function get(port, path, headers = {}) {
  return h.within(
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
        })
        .on('error', reject);
    }),
    10_000,
    `GET ${path}`,
  );
}

const callback = (fn) => new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));

test('express-session: sessions are stored, read back, touched, destroyed, and expire with the cookie', async (t) => {
  const store = Store.openOrCreate(h.uniqueName('sess'), { capacity: 1000, maxValueLen: 1024 });
  const sessions = new ShmSessionStore({ store });
  const app = express();
  app.use(session({ store: sessions, secret: 's3cret', resave: false, saveUninitialized: false, cookie: { maxAge: 60_000 } }));
  app.get('/login/:user', (req, res) => {
    req.session.user = req.params.user;
    res.json({ ok: true });
  });
  app.get('/short', (req, res) => {
    req.session.user = 'brief';
    req.session.cookie.maxAge = 100;
    res.json({ ok: true });
  });
  app.get('/me', (req, res) => {
    req.session.hits = (req.session.hits || 0) + 1;
    res.json({ user: req.session.user ?? null, hits: req.session.hits });
  });
  app.get('/logout', (req, res) => req.session.destroy(() => res.json({ ok: true })));
  const port = await serve(t, app);

  const login = await get(port, '/login/ada');
  const cookie = login.headers['set-cookie'][0].split(';')[0];
  assert.deepEqual(JSON.parse((await get(port, '/me', { cookie })).body), { user: 'ada', hits: 1 });
  assert.deepEqual(JSON.parse((await get(port, '/me', { cookie })).body), { user: 'ada', hits: 2 });

  // Stored as JSON under sess:<sid>, with the cookie's expiry as the TTL.
  const keys = [...store.keys('sess:')].map(String);
  assert.equal(keys.length, 1);
  const ttl = store.ttl(keys[0]);
  assert.ok(ttl > 55_000 && ttl <= 60_000, String(ttl));
  assert.equal(JSON.parse(store.getString(keys[0])).user, 'ada');
  assert.equal(await callback((cb) => sessions.length(cb)), 1);
  const all = await callback((cb) => sessions.all(cb));
  assert.equal(all[0].user, 'ada');

  // touch() refreshes the TTL without rewriting the session.
  store.expire(keys[0], 5000);
  const sid = keys[0].slice('sess:'.length);
  const sess = await callback((cb) => sessions.get(sid, cb));
  await callback((cb) => sessions.touch(sid, sess, cb));
  assert.ok(store.ttl(keys[0]) > 5000);

  // An unknown session id is no session.
  assert.equal(await callback((cb) => sessions.get('nope', cb)), null);

  // Logout destroys it.
  await get(port, '/logout', { cookie });
  assert.deepEqual(JSON.parse((await get(port, '/me', { cookie })).body), { user: null, hits: 1 });
  assert.equal(store.getString(keys[0]), null);

  // A session whose cookie expires in 100 ms is gone after it.
  const brief = (await get(port, '/short')).headers['set-cookie'][0].split(';')[0];
  assert.equal(JSON.parse((await get(port, '/me', { cookie: brief })).body).user, 'brief');
  await h.sleep(150);
  assert.equal(JSON.parse((await get(port, '/me', { cookie: brief })).body).user, null);

  await callback((cb) => sessions.clear(cb));
  assert.equal(await callback((cb) => sessions.length(cb)), 0);
});

test('express-session: a session too large for the store is an error passed to next(), not a crash', async (t) => {
  const store = Store.openOrCreate(h.uniqueName('sess-big'), { capacity: 100, maxValueLen: 200 });
  const app = express();
  app.use(session({ store: new ShmSessionStore({ store }), secret: 's', resave: false, saveUninitialized: false }));
  app.get('/big', (req, res) => {
    req.session.blob = 'x'.repeat(500);
    res.json({ ok: true });
  });
  const errors = [];
  app.use((err, req, res, next) => {
    errors.push(err.code);
    if (!res.headersSent) res.status(500).end();
  });
  const port = await serve(t, app);
  // express-session saves when the response ends, and hands a failed save to next(err).
  await get(port, '/big');
  for (let i = 0; i < 100 && errors.length === 0; i++) await h.sleep(10);
  assert.deepEqual(errors, ['SHMSTATE_VALUE_TOO_LARGE']);
  assert.equal([...store.keys('sess:')].length, 0, 'nothing stored');
  assert.throws(() => new ShmSessionStore({ store: {} }), TypeError);
});

test('express-rate-limit: exact limit, 429 with Retry-After, reset, decrement on skipped requests', async (t) => {
  const store = Store.openOrCreate(h.uniqueName('rl'), { capacity: 1000 });
  const limits = new ShmRateLimitStore({ store, prefix: 'rl:test:' });
  const app = express();
  app.use(rateLimit({ windowMs: 60_000, limit: 5, standardHeaders: 'draft-7', legacyHeaders: false, store: limits }));
  app.get('/', (req, res) => res.send('ok'));
  const port = await serve(t, app);
  const statuses = [];
  let last;
  for (let i = 0; i < 7; i++) {
    last = await get(port, '/');
    statuses.push(last.status);
  }
  assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429, 429]);
  const retryAfter = Number(last.headers['retry-after']);
  assert.ok(retryAfter >= 59 && retryAfter <= 60, String(last.headers['retry-after']));
  assert.match(last.headers.ratelimit, /limit=5, remaining=0/);
  // The count lives in the shared store, with the window as its TTL.
  const key = [...store.keys('rl:test:')].map(String)[0];
  assert.equal(store.getString(key), '7');
  assert.ok(store.ttl(key) <= 60_000);
  const info = await limits.get(key.slice('rl:test:'.length));
  assert.equal(info.totalHits, 7);
  assert.ok(info.resetTime instanceof Date && info.resetTime > new Date());
  await limits.resetKey(key.slice('rl:test:'.length));
  assert.equal((await get(port, '/')).status, 200);
  assert.equal(await limits.get('never-seen'), undefined);
  await limits.decrement('never-seen');
  assert.equal(store.get('rl:test:never-seen'), null, 'decrement does not create a count');
  await limits.resetAll();
  assert.equal([...store.keys('rl:test:')].length, 0);

  // skipFailedRequests: a failed response is decremented again.
  const store2 = new ShmRateLimitStore({ store, prefix: 'rl:skip:' });
  const app2 = express();
  app2.use(rateLimit({ windowMs: 60_000, limit: 2, skipFailedRequests: true, store: store2 }));
  app2.get('/fail', (req, res) => res.status(500).send('no'));
  app2.get('/', (req, res) => res.send('ok'));
  const port2 = await serve(t, app2);
  for (let i = 0; i < 5; i++) assert.equal((await get(port2, '/fail')).status, 500);
  await h.sleep(20);
  assert.equal((await get(port2, '/')).status, 200, 'failed requests were not counted');
  assert.equal((await get(port2, '/')).status, 200);
  assert.equal((await get(port2, '/')).status, 429);
});

test('express-rate-limit: two stores over one region count together (as two workers do)', async () => {
  const name = h.uniqueName('rl2');
  const a = new ShmRateLimitStore({ store: Store.openOrCreate(name, { capacity: 100 }) });
  const b = new ShmRateLimitStore({ store: Store.openOrCreate(name, { capacity: 100 }) });
  a.init({ windowMs: 1000 });
  b.init({ windowMs: 1000 });
  const hits = [];
  for (let i = 0; i < 10; i++) hits.push((await (i % 2 ? a : b).increment('1.2.3.4')).totalHits);
  assert.deepEqual(hits, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
});
