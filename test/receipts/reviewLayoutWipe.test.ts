// The open that empties a hot tier of another layout (hotTier.ts ensureLayout) deletes every key a
// page at a time. On 9d19c22 each page was read from the first key again: on LevelDB that scan
// walks over every tombstone the earlier pages left (they stay until compaction drops them at the
// bottom level), so the wipe grew with the square of the tier's size. Measured with the same loop on
// ClassicLevelKv, 100-byte values: 200k keys 6.4 s against 1.4 s reading on from the last key,
// 400k keys 13.4 s against 2.2 s; a bench-sized tier holds millions of keys. The test checks that
// no page of the wipe starts at or before a key the wipe already deleted (fails on 9d19c22), and
// that the tier is then rebuilt and answers as before.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WipeWatcher } from '../support/wipeWatcher.ts';
import { makeBlock } from './support/fixtures.ts';
import { simSetup } from './support/harness.ts';

const META_FORMAT = Uint8Array.of(0x6d, 0x56);

test('emptying a hot tier of another layout reads each page after the last key it deleted, then rebuilds it', async () => {
  const sim = simSetup(23);
  const blocks = Array.from({ length: 40 }, (_, n) => makeBlock(23, n, { maxReceipts: 4 }));
  let store = await sim.open({ blocksPerFile: 8 });
  for (const b of blocks) await store.putBlock(b);
  await store.close();
  sim.restartKv();
  // An older layout with more keys than one page of the wipe (1,024): version 3, and 3,000 keys of
  // a retired key family spread over the key space.
  const version = new Uint8Array(8);
  new DataView(version.buffer).setUint32(0, 3);
  new DataView(version.buffer).setUint32(4, 0);
  const batch = sim.kv.batch().put(META_FORMAT, version);
  for (let i = 0; i < 3000; i++) {
    const key = new Uint8Array(9);
    key[0] = [0x30, 0x61, 0x72][i % 3]!;
    new DataView(key.buffer).setUint32(5, i);
    batch.put(key, Uint8Array.of(1, 2, 3));
  }
  await batch.write({ sync: true });
  sim.restartKv();

  const kv = new WipeWatcher(sim.kv);
  store = await sim.open({ blocksPerFile: 8, kv });
  try {
    assert.ok(kv.deletes > 3000, `the wipe deleted every key (${kv.deletes})`);
    assert.ok(kv.scans > 3, `the wipe took several pages (${kv.scans} scans)`);
    assert.deepEqual(kv.rescans, [], 'no page of the wipe scans over keys it already deleted');
    for (const b of blocks) {
      for (const r of b.receipts) assert.equal((await store.getReceipt(r.txHash))?.blockNumber, b.number);
    }
  } finally {
    await store.close();
  }
  sim.restartKv();
  const left = await sim.kv.range({ gte: Uint8Array.of(0x30), lt: Uint8Array.of(0x31), limit: 10 });
  assert.deepEqual(left, [], 'no key of the retired family is left');
});
