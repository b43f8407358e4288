// LevelDB may lose an earlier unsynced batch yet keep a later one (the hardening issue's fault
// model). The hot tier re-applies everything after its last *synced* checkpoint from the WAL, so
// every such image recovers. A recording KV replays the batch history with one unsynced batch
// dropped, for every unsynced batch in turn.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ForwardingKv } from '../../src/kv/forwardingKv.ts';
import type { KvBatch, OrderedKv } from '../../src/kv/orderedKv.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import { MemoryKv } from '../../src/testing/memoryKv.ts';
import { expectedLogs, logKeys, makeBlock } from './support/fixtures.ts';
import { simSetup } from './support/harness.ts';
import { MemoryArchive } from './support/memoryArchive.ts';

type Op = { put: boolean; key: Uint8Array; value?: Uint8Array };

class RecordingKv extends ForwardingKv<MemoryKv> {
  readonly batches: { ops: Op[]; sync: boolean }[] = [];
  override batch(): KvBatch {
    const ops: Op[] = [];
    const inner = this.inner.batch();
    const self = this;
    const b: KvBatch = {
      put(key, value) {
        ops.push({ put: true, key: key.slice(), value: value.slice() });
        inner.put(key, value);
        return b;
      },
      del(key) {
        ops.push({ put: false, key: key.slice() });
        inner.del(key);
        return b;
      },
      get length() {
        return ops.length;
      },
      async write(options) {
        await inner.write(options);
        self.batches.push({ ops, sync: options.sync });
      },
    };
    return b;
  }
  /** Every batch applied in order, except batch `drop` (which must be unsynced and after the last sync). */
  async imageWithout(drop: number): Promise<MemoryKv> {
    const kv = new MemoryKv();
    for (let i = 0; i < this.batches.length; i++) {
      if (i === drop) continue;
      const b = kv.batch();
      for (const op of this.batches[i]!.ops) {
        if (op.put) b.put(op.key, op.value!);
        else b.del(op.key);
      }
      await b.write({ sync: true });
    }
    return kv;
  }
}

test('a hot tier that lost an earlier unsynced batch but kept later ones recovers every acknowledged block', async () => {
  const sim = simSetup(61);
  const rec = new RecordingKv(new MemoryKv());
  const open = (kv: OrderedKv) =>
    ReceiptStore.open({
      dir: '/r',
      fs: sim.fs,
      kv,
      archive: sim.archive,
      blocksPerFile: 8,
      postingBucketBlocks: 3,
      walSegmentBytes: 16 * 1024,
    });
  const store = await open(rec);
  // Left running: no close, so nothing after the last rotation is synced in the KV.
  const blocks = Array.from({ length: 13 }, (_, n) => makeBlock(61, n, { maxReceipts: 5 }));
  for (const b of blocks) await store.putBlock(b);
  const lastSync = rec.batches.map((b) => b.sync).lastIndexOf(true);
  const candidates = rec.batches.map((_, i) => i).filter((i) => i > lastSync && !rec.batches[i]!.sync);
  assert.ok(candidates.length >= 3, `only ${candidates.length} unsynced batches after the last sync`);
  for (const drop of candidates.slice(0, -1)) {
    const image = await rec.imageWithout(drop);
    const fs = sim.fs.crash({ data: 'keep', dirOps: 'keep' });
    const s = await ReceiptStore.open({
      dir: '/r',
      fs,
      kv: image,
      archive: new MemoryArchive(fs),
      blocksPerFile: 8,
      postingBucketBlocks: 3,
      walSegmentBytes: 16 * 1024,
    });
    try {
      assert.equal(s.ranges().latest, 12);
      for (const b of blocks) {
        for (const r of b.receipts)
          assert.equal((await s.getReceipt(r.txHash))?.blockNumber, b.number, `drop ${drop}`);
      }
      assert.deepEqual(
        logKeys(await s.getLogs({ fromBlock: 0, toBlock: 12 })),
        logKeys(expectedLogs(blocks, {}, 0, 12)),
      );
    } finally {
      await s.close();
    }
  }
});
