// Issue #9 item 12: the LevelDB adapter classifies engine failures by the engine's error code, never
// by message text (a path `<data-dir>/blocks/index` contains "lock").
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ClassicLevelKv } from '../../src/kv/classicLevelKv.ts';
import { engineError } from '../../src/kv/engineErrors.ts';
import { u64Key } from '../../src/kv/orderedKv.ts';
import { isCairnError } from '../../src/lib/errors.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** `<tmp>/blocks/index`, the path shape of a node's block index. */
async function populatedIndex(): Promise<string> {
  const root = mkdtempSync(join(tmpdir(), 'cairn-kv-errors-'));
  dirs.push(root);
  const dir = join(root, 'blocks', 'index');
  mkdirSync(join(root, 'blocks'));
  const kv = await ClassicLevelKv.open(dir);
  await kv
    .batch()
    .put(u64Key(1, 1), new Uint8Array([1]))
    .write({ sync: true });
  await kv.close();
  return dir;
}

test('a damaged CURRENT under <data-dir>/blocks/index is CORRUPT, not LOCKED', async () => {
  const dir = await populatedIndex();
  writeFileSync(join(dir, 'CURRENT'), 'MANIFEST-999999\n');
  await assert.rejects(ClassicLevelKv.open(dir), (e: unknown) => {
    assert.ok(isCairnError(e), `untyped ${String(e)}`);
    assert.notEqual(e.code, 'LOCKED', e.message);
    assert.equal(e.kind, 'fatal');
    return true;
  });
  writeFileSync(join(dir, 'CURRENT'), 'garbage without newline');
  await assert.rejects(ClassicLevelKv.open(dir), (e: unknown) => isCairnError(e, 'CORRUPT'));
});

test('a second open of a held index is LOCKED (transient)', async () => {
  const dir = await populatedIndex();
  const kv = await ClassicLevelKv.open(dir);
  try {
    await assert.rejects(ClassicLevelKv.open(dir), (e: unknown) => isCairnError(e, 'LOCKED'));
  } finally {
    await kv.close();
  }
});

test('engine codes are read along the cause chain; message text never decides', () => {
  const wrapped = Object.assign(new Error('Database failed to open'), {
    code: 'LEVEL_DATABASE_NOT_OPEN',
    cause: Object.assign(new Error('Corruption: lock the blocks'), { code: 'LEVEL_CORRUPTION' }),
  });
  assert.equal(engineError(wrapped, 'opening', '/x/blocks/index').code, 'CORRUPT');
  const io = Object.assign(new Error('IO error: /x/blocks/index/LOCK: Permission denied'), {
    code: 'LEVEL_IO_ERROR',
  });
  assert.equal(engineError(io, 'opening', '/x/blocks/index').code, 'IO_FATAL');
  const locked = Object.assign(new Error('IO error: lock /x/LOCK: already held by process'), {
    code: 'LEVEL_LOCKED',
  });
  assert.equal(engineError(locked, 'opening', '/x').code, 'LOCKED');
  assert.equal(engineError(new Error('blocks lock'), 'opening', '/x').code, 'IO_FATAL');
});

test('a closed engine read is typed', async () => {
  const dir = await populatedIndex();
  const kv = await ClassicLevelKv.open(dir);
  await kv.close();
  assert.throws(
    () => kv.get(u64Key(1, 1)),
    (e: unknown) => isCairnError(e),
  );
});
