#!/usr/bin/env node
'use strict';
// Builds the native addon from source: `cargo build --release` in this directory, then copies
// the shared library to shmstate.node (what index.js loads). Needs only cargo and a Rust
// toolchain; nothing is downloaded except crates from crates.io.
//
//   node scripts/build.js            the addon (run by `npm install` / `npm run build`)
//   node scripts/build.js --peer     also the Rust peer program the tests use

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
// Not --locked: Cargo.lock pins the dependencies, but a dependency the core adds later must not
// break `npm install` (cargo then adds it to the lock file).
const args = ['build', '--release', '--lib'];
if (process.argv.includes('--peer')) args.push('--bin', 'shmstate-node-peer');

const cargo = process.env.CARGO || 'cargo';
const r = spawnSync(cargo, args, { cwd: root, stdio: 'inherit' });
if (r.error) {
  console.error(`shmstate: cannot run ${cargo} (${r.error.message}). Install Rust (https://rustup.rs) and retry.`);
  process.exit(1);
}
if (r.status !== 0) process.exit(r.status || 1);

const targetDir = process.env.CARGO_TARGET_DIR
  ? path.resolve(root, process.env.CARGO_TARGET_DIR)
  : path.join(root, 'target');
const lib = path.join(targetDir, 'release', process.platform === 'darwin' ? 'libshmstate_node.dylib' : 'libshmstate_node.so');
const dest = path.join(root, 'shmstate.node');
// Copy to a temporary name and rename, so a running process never sees a half-written file.
fs.copyFileSync(lib, `${dest}.tmp`);
fs.renameSync(`${dest}.tmp`, dest);
console.log(`shmstate: built ${path.relative(process.cwd(), dest) || dest}`);
