// The real-disk damage helpers (test/support/fileDamage.ts) on a real LevelDB directory: they find
// the engine's files by kind and damage exactly the bytes they report.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ClassicLevelKv } from '../../src/kv/classicLevelKv.ts';
import { u64Key } from '../../src/kv/orderedKv.ts';
import { Rng } from '../../src/lib/rng.ts';
import {
  flipBit,
  garblePage,
  levelDbFiles,
  pageCount,
  randomDamage,
  zeroPage,
} from '../support/fileDamage.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cairn-damage-'));
  dirs.push(d);
  return d;
}

test('levelDbFiles finds tables, the manifest, CURRENT and the log of a real LevelDB', async () => {
  const dir = tempDir();
  const kv = await ClassicLevelKv.open(dir);
  // Enough data to flush a table at reopen; the reopened engine starts a fresh log.
  for (let b = 0; b < 4; b++) {
    const batch = kv.batch();
    for (let i = 0; i < 500; i++) batch.put(u64Key(1, b * 500 + i), new Uint8Array(100).fill(i & 0xff));
    await batch.write({ sync: true });
  }
  await kv.close();
  const again = await ClassicLevelKv.open(dir);
  await again.close();
  const kinds = new Set(levelDbFiles(dir).map((f) => f.kind));
  for (const kind of ['table', 'manifest', 'current', 'log'] as const)
    assert.ok(kinds.has(kind), `found a ${kind}`);
});

test('zeroPage, garblePage and flipBit change exactly the bytes they report', () => {
  const dir = tempDir();
  const file = join(dir, 'f');
  const original = new Uint8Array(2 * 4096 + 10).fill(7);
  writeFileSync(file, original);
  assert.equal(pageCount(file), 3);

  const z = zeroPage(file, 2);
  assert.deepEqual([z.from, z.to], [8192, 8202]);
  let now = new Uint8Array(readFileSync(file));
  assert.equal(now.byteLength, original.byteLength, 'damage never changes the size');
  assert.ok(now.subarray(8192).every((b) => b === 0));
  assert.ok(now.subarray(0, 8192).every((b) => b === 7));

  garblePage(file, 0, 99);
  now = new Uint8Array(readFileSync(file));
  assert.ok(now.subarray(0, 4096).every((b) => b !== 0));
  assert.ok(now.subarray(0, 4096).some((b) => b !== 7));
  assert.ok(now.subarray(4096, 8192).every((b) => b === 7));

  flipBit(file, 5000, 3);
  now = new Uint8Array(readFileSync(file));
  assert.equal(now[5000], 7 ^ 8);

  assert.throws(() => zeroPage(file, 3), RangeError);
  assert.throws(() => flipBit(file, original.byteLength, 0), RangeError);
  const d = randomDamage(file, new Rng(5));
  assert.ok(['zero-page', 'garble-page', 'flip-bit'].includes(d.kind));
});
