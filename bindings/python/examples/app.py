"""A WSGI app whose gunicorn workers share state through shmstate.

Run it with a region created by the master before it forks (anonymous shared memory)::

    gunicorn --preload -w 4 -b 127.0.0.1:8000 --chdir examples app:app

or without --preload, each worker opening a named region (/dev/shm/NAME) after the fork::

    SHMSTATE_REGION=myapp gunicorn -w 4 -b 127.0.0.1:8000 --chdir examples app:app

Routes (every request is rate limited per client: X-Client-Id header, else the peer address):
  POST /counter          increments a counter shared by every worker, returns it
  GET  /counter          the counter
  POST /session          stores the request body as a session (TTL SESSION_TTL s), returns its id
  GET  /session/<id>     the session, or 404 once expired
  GET  /cached/<name>    an "expensive" page, computed by one worker and cached CACHE_TTL s
  GET  /pid              the worker's pid;  GET /slow: the same after 0.2 s
  GET  /stats            counters as JSON;  GET /metrics: Prometheus text;  GET /verify
Settings (environment): RATE_LIMIT requests per RATE_WINDOW s (default 100 per 60),
SESSION_TTL (1800), CACHE_TTL (30).
"""

import json
import math
import os
import secrets
import time

import shmstate

# One memory budget for index and values (like ``lua_shared_dict app 64m``): room for 65 536
# entries (one per KiB); each value takes the memory it needs (a 200-byte session about 200
# bytes, a cached page of 40 KiB about 40 KiB), up to max_value_len.
OPTIONS = {"memory": 64 << 20, "max_key_len": 64, "max_value_len": 256 << 10}
REGION = os.environ.get("SHMSTATE_REGION")
if REGION:
    # Without --preload this module is imported in each worker: open (or create) by name.
    store = shmstate.Store.open_or_create(REGION, **OPTIONS)
    CREATOR = None
else:
    # With --preload this runs once in the master; the workers inherit the mapping by fork.
    store = shmstate.Store.anonymous(**OPTIONS)
    CREATOR = os.getpid()

RATE_LIMIT = int(os.environ.get("RATE_LIMIT", "100"))
RATE_WINDOW = float(os.environ.get("RATE_WINDOW", "60"))
SESSION_TTL = float(os.environ.get("SESSION_TTL", "1800"))
CACHE_TTL = float(os.environ.get("CACHE_TTL", "30"))

hits = store.counter("app.hits")
requests = store.counter("app.requests")
renders = store.counter("app.renders")
limited = store.counter("app.rate_limited")
limiter = store.rate_limiter("per-client", RATE_LIMIT, RATE_WINDOW)
pages = store.cache("pages", lease=10, wait=5, stale_for=60)


def respond(start_response, status, body, ctype="text/plain; charset=utf-8", headers=()):
    if isinstance(body, str):
        body = body.encode()
    start_response(
        status,
        [("Content-Type", ctype), ("Content-Length", str(len(body))), *headers],
    )
    return [body]


def render(name):
    renders.add(1)
    time.sleep(0.05)  # the expensive part
    return "<h1>%s</h1><p>rendered by worker %d</p>" % (name, os.getpid())


def app(environ, start_response):
    if CREATOR == os.getpid():
        # An anonymous region made in this very worker is private to it: run with --preload,
        # or set SHMSTATE_REGION.
        return respond(start_response, "500 Internal Server Error",
                       "anonymous region not shared: use --preload or SHMSTATE_REGION\n")
    requests.add(1)
    client = environ.get("HTTP_X_CLIENT_ID") or environ.get("REMOTE_ADDR", "?")
    d = limiter.check(client)
    rl_headers = [
        ("RateLimit-Limit", str(d.limit)),
        ("RateLimit-Remaining", str(d.remaining)),
        ("RateLimit-Reset", str(math.ceil(d.reset_after))),
    ]
    if not d.allowed:
        limited.add(1)
        return respond(start_response, "429 Too Many Requests", "slow down\n",
                       headers=[*rl_headers, ("Retry-After", str(max(1, math.ceil(d.retry_after))))])

    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "/")
    ok = "200 OK"
    if path == "/counter":
        if method == "POST":
            return respond(start_response, ok, "%d\n" % hits.add(1), headers=rl_headers)
        return respond(start_response, ok, "%d\n" % hits.value, headers=rl_headers)
    if path == "/session" and method == "POST":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(size)
        sid = secrets.token_hex(16)
        store.set("session:" + sid, data, ttl=SESSION_TTL)
        return respond(start_response, "201 Created", sid + "\n", headers=rl_headers)
    if path.startswith("/session/"):
        data = store.get("session:" + path[len("/session/"):])
        if data is None:
            return respond(start_response, "404 Not Found", "no such session\n")
        return respond(start_response, ok, data, "application/octet-stream", rl_headers)
    if path.startswith("/cached/"):
        name = path[len("/cached/"):][:32]
        body = pages.get_or_compute(name, CACHE_TTL, lambda: render(name))
        return respond(start_response, ok, body, "text/html; charset=utf-8", rl_headers)
    if path == "/pid":
        return respond(start_response, ok, "%d\n" % os.getpid())
    if path == "/slow":
        time.sleep(0.2)
        return respond(start_response, ok, "%d\n" % os.getpid())
    if path == "/stats":
        return respond(start_response, ok, json.dumps(store.counters()), "application/json")
    if path == "/metrics":
        return respond(start_response, ok, store.prometheus(), shmstate.PROMETHEUS_CONTENT_TYPE)
    if path == "/verify":
        report = store.verify()
        return respond(start_response, ok if report else "500 Internal Server Error", str(report))
    return respond(start_response, "404 Not Found", "see the module docstring of app.py\n")
