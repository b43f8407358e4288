// Issue #9 item 7: inspection commands never write. `cairn blocks get|range|verify` against a
// missing directory exits non-zero with NOT_FOUND and creates nothing; against a copy of a crashed
// store it answers and leaves every byte of the tree as it was. Item 14's `blocks reindex` is the
// one command that writes, and only the index.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { siblingPath, spawnTsChild } from '../support/childProcess.ts';

const CAIRN_BIN = fileURLToPath(new URL('../../bin/cairn.js', import.meta.url));
const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function tempRoot(): string {
  const r = mkdtempSync(join(tmpdir(), 'cairn-inspect-'));
  roots.push(r);
  return r;
}

/** Every path under `dir` with its size and SHA-256 (directories as entries too). */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string): void => {
    for (const name of readdirSync(d).sort()) {
      const full = join(d, name);
      const key = `${rel}${name}`;
      if (statSync(full).isDirectory()) {
        out[`${key}/`] = 'dir';
        walk(full, `${key}/`);
      } else {
        out[key] = createHash('sha256').update(readFileSync(full)).digest('hex');
      }
    }
  };
  walk(dir, '');
  return out;
}

function cairn(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CAIRN_BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('inspection of a missing store: NOT_FOUND, non-zero exit, nothing created', () => {
  const root = tempRoot();
  const before = tree(root);
  for (const cmd of [['range'], ['verify'], ['get', '0']]) {
    const r = cairn('blocks', ...cmd, '--data-dir', join(root, 'typo'));
    assert.notEqual(r.code, 0, `${cmd.join(' ')} exited 0: ${r.stdout}`);
    assert.match(r.stdout, /NOT_FOUND/, r.stdout + r.stderr);
  }
  assert.equal(existsSync(join(root, 'typo')), false, 'the typo directory was created');
  assert.deepEqual(tree(root), before);
});

test('inspection of a crashed store answers and changes no byte; reindex rebuilds the index', async () => {
  const root = tempRoot();
  const dir = join(root, 'node', 'blocks');
  const child = spawnTsChild(siblingPath(import.meta.url, './support/crashedStoreChild.ts'), [dir]);
  const exit = await child.exited;
  assert.equal(exit.code, 0);
  const before = tree(root);
  const range = cairn('blocks', 'range', '--data-dir', join(root, 'node'));
  assert.equal(range.code, 0, range.stdout + range.stderr);
  const r = JSON.parse(range.stdout) as { floor: number; blocks: { first: number; next: number } };
  assert.equal(r.floor, 4);
  assert.deepEqual(r.blocks, { first: 4, next: 20 });
  const get = cairn('blocks', 'get', '7', '--data-dir', dir);
  assert.equal(get.code, 0, get.stdout + get.stderr);
  const pruned = cairn('blocks', 'get', '1', '--data-dir', dir);
  assert.match(pruned.stdout, /"pruned"/);
  const verify = cairn('blocks', 'verify', '--data-dir', dir);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  assert.deepEqual(tree(root), before, 'inspection changed the store');

  // Lose the index entirely: the floor survives in the floor file (item 13); reindex rebuilds it.
  rmSync(join(dir, 'index'), { recursive: true, force: true });
  const reindex = cairn('blocks', 'reindex', '--data-dir', dir);
  assert.equal(reindex.code, 0, reindex.stdout + reindex.stderr);
  assert.equal(existsSync(join(dir, 'index.rebuild')), false);
  const again = JSON.parse(cairn('blocks', 'range', '--data-dir', dir).stdout) as typeof r;
  assert.equal(again.floor, 4, 'the rebuilt index lost the prune floor');
  assert.deepEqual(again.blocks, { first: 4, next: 20 });
  assert.match(cairn('blocks', 'get', '1', '--data-dir', dir).stdout, /"pruned"/);

  // Lose only CURRENT (LevelDB then starts an empty database): the floor still holds.
  rmSync(join(dir, 'index', 'CURRENT'));
  const noCurrent = JSON.parse(cairn('blocks', 'range', '--data-dir', dir).stdout) as typeof r;
  assert.equal(noCurrent.floor, 4, 'losing CURRENT lost the prune floor');
  assert.deepEqual(noCurrent.blocks, { first: 4, next: 20 });
});
