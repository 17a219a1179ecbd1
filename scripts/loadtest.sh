#!/usr/bin/env bash
# Bounded load test of the example pre-fork server (examples/server.rs) with wrk, on 127.0.0.1
# only: once with the shared-memory store, once with the same server on `--backend redis`
# against a redis-server this script starts on a unix socket in a temporary directory. Runs one
# wrk pass per endpoint, prints requests/s, and stops everything (SIGTERM, then SIGKILL) and
# removes the temporary directory whatever happens.
#
#   scripts/loadtest.sh [--duration SECS] [--workers N] [--connections N] [--threads N]
#                       [--backend shm|redis|both]
#
# Defaults: 10 s per endpoint, workers = CPUs, 64 connections, 2 wrk threads, both backends.
# Needs wrk (Debian: apt-get install wrk) and, for Redis, redis-server (apt-get install
# redis-server; skipped with a message if missing). Rate limiting stays on, with a limit no
# single client reaches, so every request pays for the limiter's shared increment.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
workers=$(nproc)
connections=64
threads=2
backends="shm redis"
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration=$2; shift 2 ;;
        --workers) workers=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --backend)
            case "$2" in
                shm|redis) backends=$2 ;;
                both) backends="shm redis" ;;
                *) echo "--backend must be shm, redis or both" >&2; exit 2 ;;
            esac
            shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
case "$duration" in ''|*[!0-9]*) echo "--duration must be whole seconds" >&2; exit 2 ;; esac
[ "$duration" -ge 1 ] && [ "$duration" -le 600 ] || { echo "--duration must be 1..600" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 2; }

cargo build --release --quiet --features redis --example server
bin="${CARGO_TARGET_DIR:-target}/release/examples/server"

tmp=$(mktemp -d)
server_pid=
redis_pid=
stop() { # pid: SIGTERM, wait up to 10 s, then SIGKILL
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    stop "$server_pid"
    stop "$redis_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

cat >"$tmp/post.lua" <<'LUA'
wrk.method = "POST"
LUA

run() { # name, url, [wrk args...]
    local name=$1 target=$2; shift 2
    local out rps
    out=$(timeout $((duration + 30)) wrk --latency -t "$threads" -c "$connections" -d "${duration}s" "$@" "$target")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    local p50 p99 non2xx
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    printf '%-22s %12s req/s   p50 %-9s p99 %-9s non-2xx %s\n' "$name" "$rps" "$p50" "$p99" "${non2xx:-0}"
}

start_redis() {
    if ! command -v redis-server >/dev/null; then
        echo "redis: SKIPPED (redis-server not found; apt-get install redis-server)"
        return 1
    fi
    redis-server --port 0 --unixsocket "$tmp/redis.sock" --unixsocketperm 700 \
        --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 100); do
        [ -S "$tmp/redis.sock" ] && return 0
        sleep 0.1
    done
    echo "redis-server did not start:" >&2
    cat "$tmp/redis.log" >&2
    exit 1
}

bench() { # backend
    local backend=$1
    local args=(--backend "$backend")
    if [ "$backend" = redis ]; then
        start_redis || return 0
        args+=(--redis-url "unix://$tmp/redis.sock")
    fi
    : >"$tmp/server.log"
    "$bin" --workers "$workers" --port 0 --bind 127.0.0.1 --rate-limit 1000000000 --rate-window 60 \
        "${args[@]}" >"$tmp/server.log" 2>&1 &
    server_pid=$!
    local port=
    for _ in $(seq 100); do
        port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server.log")
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "server did not start:" >&2; cat "$tmp/server.log" >&2; exit 1; }
    local url="http://127.0.0.1:$port"

    # A session to read back.
    local id
    id=$(curl -fsS -m 10 -X POST --data '{"user":7}' "$url/session" | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p')
    [ -n "$id" ] || { echo "could not create a session" >&2; exit 1; }

    echo
    echo "backend $backend: $workers workers on $url; wrk: $threads threads, $connections connections, ${duration}s per run"
    run "POST /counter" "$url/counter" -s "$tmp/post.lua"
    run "GET /counter" "$url/counter"
    run "GET /session/{id}" "$url/session/$id"
    run "GET /metrics" "$url/metrics"
    echo "server final state:"
    curl -fsS -m 10 "$url/metrics" | grep -E '^(shmstate_(counter_value|lock_contended_total|entries )|server_global_counter)' || true
    stop "$server_pid"
    server_pid=
    if [ -n "$redis_pid" ]; then
        stop "$redis_pid"
        redis_pid=
    fi
}

for b in $backends; do
    bench "$b"
done
