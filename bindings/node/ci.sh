#!/usr/bin/env bash
# CI of the Node.js binding, from a fresh clone: builds the addon from source (npm ci runs
# the install script, `cargo build --release`), checks that require('./bindings/node') works
# from the repository root, runs every test with node's test runner, and a smoke run of the
# benchmark harness (a few ms per row; CI does not benchmark).
# Needs Node >= 20, npm and cargo. Redis is optional (the bench smoke skips its rows without it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
start=$SECONDS

echo "== node $(node --version), npm $(npm --version), $(cargo --version)"
echo "== npm ci (builds the addon from source)"
npm ci --no-audit --no-fund
test -f shmstate.node || { echo "npm ci did not build shmstate.node" >&2; exit 1; }

echo "== the Rust peer of the cross-language test"
node scripts/build.js --peer

echo "== require('./bindings/node') from the repository root"
(cd ../.. && node -e "const { Store } = require('./bindings/node'); const s = Store.anonymous({ capacity: 10 }); s.set('k', 'v'); if (s.getString('k') !== 'v') process.exit(1);")

echo "== tests"
# One file at a time: the cluster tests fork several workers each, and this machine has 2 cores.
node --test --test-concurrency=1 --test-timeout=300000 test/*.test.js

echo "== benchmark harness smoke"
node bench/bench.js --smoke > /dev/null

echo "== node binding CI done in $((SECONDS - start)) s"
