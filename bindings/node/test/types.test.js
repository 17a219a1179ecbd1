'use strict';
// The TypeScript declarations compile against a usage file under --strict (and reject what
// they should, via @ts-expect-error).

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

test('index.d.ts and the adapters’ declarations type-check', () => {
  const tsc = require.resolve('typescript/bin/tsc');
  const r = spawnSync(
    process.execPath,
    [tsc, '--noEmit', '--strict', '--esModuleInterop', '--module', 'node16', '--moduleResolution', 'node16', '--target', 'es2022', '--types', 'node', path.join(__dirname, 'types', 'usage.ts')],
    { encoding: 'utf8', timeout: 120_000 },
  );
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
