// Issue #9 items 8 and 13 on the record layer: prunes delete index entries in bounded batches and
// keep only a bounded window of hash tombstones; the prune floor survives the loss of the index.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openBlockStore } from '../../src/blocks/openBlockStore.ts';
import { hashBlockHeader } from '../../src/domain/crypto.ts';
import type { KvBatch } from '../../src/kv/orderedKv.ts';
import { RecordStore } from '../../src/records/recordStore.ts';
import { MemoryKv } from '../../src/testing/memoryKv.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { makeChain } from '../blocks/support/chain.ts';
import { MemoryLog } from '../blocks/support/memoryLog.ts';
import { ObservedKv } from '../support/observedKv.ts';

/** Records the size of every batch written. */
class CountingKv extends ObservedKv<MemoryKv> {
  readonly batchSizes: number[] = [];
  protected override writeBatch(inner: KvBatch, options: { sync: boolean }): Promise<void> {
    this.batchSizes.push(inner.length);
    return inner.write(options);
  }
}

const POINT = 1;
const hashOf = (n: number): Uint8Array => {
  const h = new Uint8Array(32);
  new DataView(h.buffer).setUint32(0, n + 1);
  h[31] = 0xab;
  return h;
};

describe('bounded growth (item 8)', () => {
  test('a prune of 12,000 index entries writes bounded batches and keeps a bounded tombstone window', async () => {
    const kv = new CountingKv(new MemoryKv());
    const records = await RecordStore.open({
      log: new MemoryLog(),
      kv,
      name: 'bounds',
      rangedKinds: [],
      pointKinds: [POINT],
      hashTombstoneNumbers: 500,
    });
    const total = 14_000;
    for (let n = 0; n < total; n++) records.append(POINT, n, n + 1, new Uint8Array([n & 0xff]), hashOf(n));
    await records.flush();
    kv.batchSizes.length = 0;
    await records.pruneBefore(12_000);
    await records.sweepIdle();
    const largest = Math.max(...kv.batchSizes);
    assert.ok(largest <= 4096, `a prune batch held ${largest} operations`);
    // Index entries below floor - window are gone, with their hash aliases.
    const all = await kv.range({ limit: 1_000_000 });
    const recordKeys = all.filter((e) => e.key[0] === 0x52).length;
    const hashKeys = all.filter((e) => e.key[0] === 0x48).length;
    assert.ok(recordKeys <= 2000 + 500, `${recordKeys} record entries kept`);
    assert.ok(hashKeys <= 2000 + 500, `${hashKeys} hash entries kept`);
    assert.equal(records.getByHash(hashOf(11_900)).status, 'pruned', 'a recent tombstone reads pruned');
    assert.equal(records.getByHash(hashOf(10)).status, 'absent', 'an old tombstone is compacted away');
    assert.equal(records.get(POINT, 10).status, 'pruned');
    assert.equal(records.get(POINT, 12_000).status, 'found');
    await records.close();
  });
});

describe('prune floor outside the index (item 13)', () => {
  const chain = makeChain({ seed: 8, cohorts: 5 });
  // Losing the index directory, or only CURRENT (LevelDB then starts an empty database), both
  // leave an empty index: modelled by a new MemoryKv. The real-disk case is in inspection.test.ts.
  for (const loss of ['a lost index'] as const) {
    test(`the floor survives ${loss}: pruned numbers read pruned, verify agrees`, async () => {
      const fs = new SimulatedFileSystem({ seed: 2 });
      const open = (kv: MemoryKv) => openBlockStore({ dir: '/b', fs, kv, segmentBytes: 4096 });
      const store = await open(new MemoryKv());
      for (let i = 0; i < 5; i++) {
        store.writeQC(chain.qcs[i]!);
        const r = chain.range(i);
        for (let n = r.first; n < r.next; n++) store.writeBlock(n, chain.block(n));
      }
      await store.flush();
      assert.equal(await store.pruneBefore(9), 8);
      await store.close();
      // The index is derived: a new, empty one is rebuilt from the value log at open.
      const rebuilt = await open(new MemoryKv());
      assert.equal(rebuilt.floor, 8);
      assert.deepEqual(rebuilt.ranges().blocks, { first: 8, next: 20 });
      for (let n = 0; n < 8; n++) assert.equal(rebuilt.readBlock(n).status, 'pruned', `block ${n}`);
      assert.equal(rebuilt.readBlock(8).status, 'found');
      assert.equal(rebuilt.readBlockByHash(hashBlockHeader(chain.block(12).header)).status, 'found');
      const v = await rebuilt.verify();
      assert.deepEqual(v.problems, []);
      await rebuilt.close();
    });
  }
});

test('an index of the older layout is rebuilt at open, and its floor is copied into the floor file', async () => {
  const chain = makeChain({ seed: 9, cohorts: 5 });
  const fs = new SimulatedFileSystem({ seed: 3 });
  const open = (kv: MemoryKv) => openBlockStore({ dir: '/b', fs, kv, segmentBytes: 4096 });
  const kv = new MemoryKv();
  const store = await open(kv);
  for (let i = 0; i < 5; i++) {
    store.writeQC(chain.qcs[i]!);
    const r = chain.range(i);
    for (let n = r.first; n < r.next; n++) store.writeBlock(n, chain.block(n));
  }
  await store.flush();
  await store.pruneBefore(9);
  await store.close();
  // Make it look like a store from before the floor file and the layout version.
  for (const slot of ['/b/floor.a', '/b/floor.b']) fs.unlink(slot);
  const legacy = kv.reopenImage();
  await legacy
    .batch()
    .del(new Uint8Array([0x4d, ...new TextEncoder().encode('format')]))
    .write({ sync: true });
  const migrated = await open(legacy);
  assert.equal(migrated.floor, 8, 'the floor of the old index was kept');
  assert.deepEqual(migrated.ranges().blocks, { first: 8, next: 20 });
  assert.deepEqual((await migrated.verify()).problems, []);
  await migrated.close();
  const afterLoss = await open(new MemoryKv());
  assert.equal(afterLoss.floor, 8, 'the floor file holds the migrated floor');
  await afterLoss.close();
});
