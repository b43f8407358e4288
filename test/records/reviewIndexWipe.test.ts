// The record store empties an index of another layout at open (recordStore.ts wipe) a batch of keys
// at a time. On 9d19c22 each batch was read from the first key again, which on LevelDB walks every
// tombstone the batches before it left: quadratic in the index's size (the same defect as the hot
// tier's layout wipe, measured in test/receipts/reviewLayoutWipe). This test checks that no batch
// of the wipe starts at or before a key already deleted (fails on 9d19c22) and that the store is
// then usable.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openBlockStore } from '../../src/blocks/openBlockStore.ts';
import { MemoryKv } from '../../src/testing/memoryKv.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { makeChain } from '../blocks/support/chain.ts';
import { WipeWatcher } from '../support/wipeWatcher.ts';

test('emptying an index of another layout reads each batch after the last key it deleted', async () => {
  const chain = makeChain({ seed: 12, cohorts: 3 });
  const fs = new SimulatedFileSystem({ seed: 12 });
  const inner = new MemoryKv();
  // No layout version and 10,000 keys of no known family: more than two wipe batches (4,096).
  const batch = inner.batch();
  for (let i = 0; i < 10_000; i++) {
    const key = new Uint8Array(9);
    key[0] = [0x01, 0x40, 0x90][i % 3]!;
    new DataView(key.buffer).setUint32(5, i);
    batch.put(key, Uint8Array.of(7));
  }
  await batch.write({ sync: true });
  const kv = new WipeWatcher(inner);
  const store = await openBlockStore({ dir: '/b', fs, kv, segmentBytes: 4096 });
  try {
    assert.ok(kv.deletes >= 10_000, `the wipe deleted every key (${kv.deletes})`);
    assert.ok(kv.scans >= 3, `the wipe took several batches (${kv.scans} scans)`);
    assert.deepEqual(kv.rescans, [], 'no batch of the wipe scans over keys it already deleted');
    store.writeQC(chain.qcs[0]!);
    const r = chain.range(0);
    for (let n = r.first; n < r.next; n++) store.writeBlock(n, chain.block(n));
    await store.flush();
    assert.equal(store.readBlock(r.first).status, 'found');
  } finally {
    await store.close();
  }
  const left = await inner.reopen().range({ gte: Uint8Array.of(0x01), lt: Uint8Array.of(0x02), limit: 10 });
  assert.deepEqual(left, [], 'no key of the old index is left');
});
