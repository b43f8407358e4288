// Enforces the one-way dependency rule of ARCHITECTURE.md: each layer of src/ may import only from the
// layers listed for it, and only src/io, src/cli and bench/ may touch node:fs directly (everything else
// goes through the injectable FileSystem so crash tests see every write).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';

const SRC = new URL('../../src/', import.meta.url).pathname;

/** layer → layers it may import from (itself always allowed). */
const ALLOWED: Record<string, readonly string[]> = {
  lib: [],
  domain: ['lib'],
  io: ['lib'],
  wal: ['lib', 'io'],
  kv: ['lib', 'io'],
  records: ['lib', 'io', 'wal', 'kv'],
  consensus: ['lib', 'io', 'wal', 'domain'],
  blocks: ['lib', 'io', 'wal', 'kv', 'records', 'domain'],
  state: ['lib', 'io', 'wal', 'kv', 'domain'],
  receipts: ['lib', 'io', 'wal', 'kv', 'records', 'domain'],
  rpc: ['lib', 'domain', 'consensus', 'blocks', 'state', 'receipts'],
  node: ['lib', 'domain', 'io', 'wal', 'kv', 'records', 'consensus', 'blocks', 'state', 'receipts', 'rpc'],
  // Test tools (simulated file system, in-memory KV, consensus fixtures): used by test/ and bench/, and
  // by no product layer: no entry above lists `testing`, so an import of it from product code fails.
  testing: ['lib', 'domain', 'io', 'wal', 'kv', 'records', 'consensus', 'blocks', 'state', 'receipts', 'rpc'],
  cli: [
    'lib',
    'domain',
    'io',
    'wal',
    'kv',
    'records',
    'consensus',
    'blocks',
    'state',
    'receipts',
    'rpc',
    'node',
  ],
};
const FS_ALLOWED = new Set(['io', 'cli']);

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...sourceFiles(full));
    else if (name.endsWith('.ts')) out.push(full);
  }
  return out;
}

function importsOf(source: string): string[] {
  const specs: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of source.matchAll(re)) specs.push((m[1] ?? m[2])!);
  return specs;
}

test('every layer imports only from the layers below it', () => {
  const violations: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const rel = relative(SRC, file);
    const layer = rel.split('/')[0]!;
    const allowed = ALLOWED[layer];
    if (!allowed) {
      violations.push(`${rel}: layer "${layer}" is not declared in the dependency rule`);
      continue;
    }
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      if (/^(node:)?fs(\/promises)?$/.test(spec) && !FS_ALLOWED.has(layer)) {
        violations.push(`${rel}: imports ${spec}; use the FileSystem interface from src/io`);
      }
      if (!spec.startsWith('.')) continue;
      const target = relative(SRC, join(file, '..', spec)).split('/')[0]!;
      if (target !== layer && !allowed.includes(target)) {
        violations.push(`${rel}: ${layer} may not import ${target} (${spec})`);
      }
    }
  }
  assert.deepEqual(violations, []);
});

test('the rule itself is acyclic', () => {
  const visiting = new Set<string>();
  const done = new Set<string>();
  const visit = (layer: string, path: string[]): void => {
    assert.ok(!visiting.has(layer), `cycle: ${[...path, layer].join(' → ')}`);
    if (done.has(layer)) return;
    visiting.add(layer);
    for (const dep of ALLOWED[layer] ?? []) visit(dep, [...path, layer]);
    visiting.delete(layer);
    done.add(layer);
  };
  for (const layer of Object.keys(ALLOWED)) visit(layer, []);
});

test('no product layer imports the test tools in src/testing', () => {
  const offenders: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const rel = relative(SRC, file);
    if (rel.startsWith('testing/')) continue;
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('.') && relative(SRC, join(file, '..', spec)).startsWith('testing/')) {
        offenders.push(`${rel}: ${spec}`);
      }
    }
  }
  assert.deepEqual(offenders, []);
});
