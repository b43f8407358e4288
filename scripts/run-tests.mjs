#!/usr/bin/env node
// Runs the test suite with an explicit list of files: on Node 20 a bare `node --test` does not
// find .ts files and "passes" having run nothing. Fails if the list is empty.
// Usage: npm test [-- <substring filter> ...]
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const filters = process.argv.slice(2);

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...collect(full));
    else if (name.endsWith('.test.ts')) out.push(relative(root, full));
  }
  return out;
}

const files = collect(join(root, 'test')).filter(
  (f) => filters.length === 0 || filters.some((x) => f.includes(x)),
);
if (files.length === 0) {
  console.error(`no test files matched ${filters.join(' ') || '(all)'}`);
  process.exit(1);
}
console.log(`running ${files.length} test files`);
// A test that sets no timeout of its own gets 10 minutes: a hang then fails the run with the test's
// name instead of stalling CI until its 90-minute limit.
const DEFAULT_TEST_TIMEOUT_MS = 600_000;
const args = [
  '--import',
  'tsx',
  '--test',
  '--test-reporter=spec',
  `--test-timeout=${DEFAULT_TEST_TIMEOUT_MS}`,
];
const result = spawnSync(process.execPath, [...args, ...files], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '64' },
});
process.exit(result.status ?? 1);
