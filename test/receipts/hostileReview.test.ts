// Findings of the hostile review of the receipt store: each test failed before its fix.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import { blockHash, makeBlock } from './support/fixtures.ts';
import { simSetup, withTempDir } from './support/harness.ts';

const empty = (n: number) => ({ number: n, hash: blockHash(n), receipts: [] });

test('hot-tier rebuild from the archive restores empty blocks: getLogs by their hash still answers (DuckDB)', async () => {
  await withTempDir(async (dir) => {
    const blocks = Array.from({ length: 12 }, (_, n) => (n % 3 === 1 ? empty(n) : makeBlock(7, n)));
    let store = await ReceiptStore.open({ dir, blocksPerFile: 4 });
    for (const b of blocks) await store.putBlock(b);
    assert.ok(store.ranges().archivedThrough >= 7, 'blocks 0..7 are archive-only after the WAL truncation');
    await store.close();
    rmSync(join(dir, 'hot'), { recursive: true, force: true });
    store = await ReceiptStore.open({ dir, blocksPerFile: 4 });
    try {
      for (const n of [1, 4, 7, 10]) {
        assert.deepEqual(await store.getLogs({ blockHash: blockHash(n) }), [], `empty block ${n}`);
      }
      assert.deepEqual((await store.verify()).problems, []);
    } finally {
      await store.close();
    }
  });
});

test('hot-tier rebuild from the archive restores empty blocks (model archive, lost KV)', async () => {
  const sim = simSetup(3);
  let store = await sim.open();
  for (let n = 0; n < 10; n++) await store.putBlock(n % 2 === 0 ? empty(n) : makeBlock(5, n));
  await store.close();
  sim.kv = new (sim.kv.constructor as new () => typeof sim.kv)();
  store = await sim.open();
  try {
    for (const n of [0, 2, 4, 6, 8]) {
      assert.deepEqual(await store.getLogs({ blockHash: blockHash(n) }), [], `empty block ${n}`);
    }
  } finally {
    await store.close();
  }
});
