"""The example WSGI app under a real gunicorn with 2 workers, with --preload (anonymous region)
and without (named region): real HTTP requests, a worker SIGKILLed, state survives."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

import shmstate
from conftest import unique_name

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class Server:
    def __init__(self, preload, tmp_path):
        self.region = None if preload else unique_name("gunicorn")
        env = {
            **os.environ,
            "RATE_LIMIT": "5",
            "RATE_WINDOW": "60",
            "SESSION_TTL": "600",
            "CACHE_TTL": "600",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("SHMSTATE_REGION", None)
        if self.region:
            env["SHMSTATE_REGION"] = self.region
        self.log_path = tmp_path / "gunicorn.log"
        self.log = open(self.log_path, "w")
        cmd = [
            sys.executable, "-m", "gunicorn",
            "--workers", "2",
            "--bind", "127.0.0.1:0",
            "--chdir", str(EXAMPLES),
            "--graceful-timeout", "5",
            "--log-level", "info",
        ]
        if preload:
            cmd.append("--preload")
        cmd.append("app:app")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.base = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", self.log_path.read_text())
            if m:
                self.base = "http://127.0.0.1:%s" % m.group(1)
                break
            time.sleep(0.05)
        if self.base is None:
            self.stop()
            raise AssertionError("gunicorn did not start:\n" + self.log_path.read_text())

    def request(self, path, method="GET", body=None, client=None):
        req = urllib.request.Request(self.base + path, data=body, method=method)
        req.add_header("X-Client-Id", client or uuid.uuid4().hex)
        req.add_header("Connection", "close")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def get(self, path, **kw):
        status, body, _ = self.request(path, **kw)
        assert status == 200, (path, status, body)
        return body

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self.region:
            try:
                shmstate.Store.unlink(self.region)
            except shmstate.NotFound:
                pass


def worker_pids_serving(server, n_requests=6):
    """Concurrent slow requests: with 2 sync workers, both must serve some."""
    pids = []

    def one():
        pids.append(int(server.get("/slow")))

    threads = [threading.Thread(target=one) for _ in range(n_requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return set(pids)


@pytest.fixture(params=["preload-anonymous", "named-region"])
def server(request, tmp_path):
    s = Server(preload=request.param == "preload-anonymous", tmp_path=tmp_path)
    try:
        yield s
    finally:
        s.stop()


def test_gunicorn_workers_share_state_and_survive_sigkill(server):
    pids = worker_pids_serving(server)
    assert len(pids) == 2, pids  # two worker processes served

    counts = [int(server.get("/counter", method="POST")) for _ in range(10)]
    assert sorted(counts) == list(range(1, 11))  # one shared counter, no lost update

    status, sid, _ = server.request("/session", method="POST", body=b"user=7")
    assert status == 201
    sid = sid.decode().strip()
    assert server.get("/session/" + sid) == b"user=7"
    assert server.request("/session/nope")[0] == 404

    for i in range(5):
        status, _, headers = server.request("/counter", client="greedy")
        assert status == 200 and headers["RateLimit-Remaining"] == str(4 - i)
    status, _, headers = server.request("/counter", client="greedy")
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 60

    page = server.get("/cached/home")
    assert server.get("/cached/home") == page
    assert json.loads(server.get("/stats"))["app.renders"] == 1

    # SIGKILL one worker; gunicorn's master starts a replacement.
    victim = int(server.get("/pid"))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    pids = set()
    while time.monotonic() < deadline:
        pids = worker_pids_serving(server)
        if len(pids) == 2 and victim not in pids:
            break
        time.sleep(0.2)
    assert len(pids) == 2 and victim not in pids, pids  # a new worker serves

    # Every piece of state survived, as seen by the new worker too.
    for _ in range(4):
        assert server.get("/counter") == b"10\n"
        assert server.get("/session/" + sid) == b"user=7"
        assert server.request("/counter", client="greedy")[0] == 429
        assert server.get("/cached/home") == page
    assert int(server.get("/counter", method="POST")) == 11
    assert json.loads(server.get("/stats"))["app.renders"] == 1
    assert server.get("/verify").endswith(b"ok")
    assert b"shmstate_counter_value" in server.get("/metrics")
    if server.region:
        outside = shmstate.Store.open(server.region)  # this test process, a third party
        assert outside.counter("app.hits").value == 11
        assert outside.verify()
