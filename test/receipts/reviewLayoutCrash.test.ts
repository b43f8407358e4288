// Review (rrev2): power loss in the middle of the hot tier's move to layout 3. The first open of a
// layout-2 tier empties it (ensureLayout: delete batches, then the synced version key) and rebuilds
// it from the archive and the WAL. The power is cut after each KV batch of that open in turn (the KV
// keeps its synced state plus any subset of the unsynced batches, the simulated disk any subset of
// its unsynced pages); the next open must answer every receipt and log query as before, and leave no
// layout-2 key behind. Nothing found: passes on 8322612 (the version key is written synced only
// after the last delete, and the rebuild's checkpoint only after the last block).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KvBatch, OrderedKv } from '../../src/kv/orderedKv.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { entryBodies } from '../../src/receipts/codec.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import type { LogFilter } from '../../src/receipts/types.ts';
import type { MemoryKv } from '../../src/testing/memoryKv.ts';
import type { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { ADDRESSES, expectedLogs, logKeys, makeBlock, TOPICS } from './support/fixtures.ts';
import { simSetup } from './support/harness.ts';
import { MemoryArchive } from './support/memoryArchive.ts';

const BLOCKS = 160;
const blocks = Array.from({ length: BLOCKS }, (_, n) => makeBlock(23, n, { maxReceipts: 6 }));
const OPTIONS = { blocksPerFile: 8, postingBucketBlocks: 4, walSegmentBytes: 16 * 1024 };
const filters: LogFilter[] = [{ addresses: [ADDRESSES[0]!] }, { topics: [[TOPICS[1]!]] }];

/** A store of BLOCKS blocks whose hot tier is rewritten as layout 2 (as hotLayout.test.ts does). */
async function layout2Store(seed: number): Promise<{ fs: SimulatedFileSystem; kv: MemoryKv }> {
  const sim = simSetup(seed);
  const store = await sim.open(OPTIONS);
  for (const b of blocks) await store.putBlock(b);
  await store.close();
  sim.restartKv();
  const blockValues = await sim.kv.range({
    gte: Uint8Array.of(0x72),
    lt: Uint8Array.of(0x73),
    limit: 100_000,
  });
  const version = new Uint8Array(8);
  new DataView(version.buffer).setUint32(0, 2);
  new DataView(version.buffer).setUint32(4, 4);
  const batch = sim.kv.batch().put(Uint8Array.of(0x6d, 0x56), version);
  for (const e of blockValues) {
    batch.del(e.key);
    for (const body of entryBodies(e.value)) {
      const key = new Uint8Array(13);
      key.set(e.key);
      key.set(body.subarray(65, 69).slice().reverse(), 9);
      batch.put(key, body.slice());
    }
  }
  await batch.write({ sync: true });
  sim.restartKv();
  sim.fs.makeEverythingDurable();
  return { fs: sim.fs, kv: sim.kv };
}

class PowerCut extends Error {}

/** `kv` whose batch writes are counted; at write number `cutAt` the power fails right after it. */
function cuttingKv(kv: MemoryKv, cutAt: number, onCut: () => void): { kv: OrderedKv; writes: () => number } {
  let writes = 0;
  const wrapped = new Proxy(kv, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (prop !== 'batch') return typeof value === 'function' ? value.bind(target) : value;
      return (): KvBatch => {
        const inner = target.batch();
        const batch: KvBatch = {
          put: (k, v) => {
            inner.put(k, v);
            return batch;
          },
          del: (k) => {
            inner.del(k);
            return batch;
          },
          get length() {
            return inner.length;
          },
          write: async (options) => {
            await inner.write(options);
            writes++;
            if (writes === cutAt) {
              onCut();
              throw new PowerCut(`power cut after KV batch ${writes}`);
            }
          },
        };
        return batch;
      };
    },
  });
  return { kv: wrapped, writes: () => writes };
}

async function openOn(fs: SimulatedFileSystem, kv: OrderedKv): Promise<ReceiptStore> {
  return ReceiptStore.open({ dir: '/r', fs, kv, archive: new MemoryArchive(fs), ...OPTIONS });
}

test('power loss after every KV batch of the move to hot-tier layout 3: the next open answers as before', async () => {
  const seed = seedFromEnv();
  console.log(`reviewLayoutCrash seed ${seed} (replay with CAIRN_SEED=${seed})`);
  const rng = new Rng(seed);
  // Dry run: how many KV batches the upgrading open writes.
  const dry = await layout2Store(1);
  const counted = cuttingKv(dry.kv, Number.POSITIVE_INFINITY, () => undefined);
  const before = counted.writes();
  const dryStore = await openOn(dry.fs, counted.kv);
  const batches = counted.writes() - before;
  await dryStore.close();
  assert.ok(batches >= 3, `the upgrade writes several batches (${batches})`);

  let images = 0;
  for (let cutAt = 1; cutAt <= batches; cutAt++) {
    for (let variant = 0; variant < 3; variant++) {
      const { fs, kv } = await layout2Store(1);
      let image: { fs: SimulatedFileSystem; kv: MemoryKv } | undefined;
      const cutting = cuttingKv(kv, cutAt, () => {
        image = { fs: fs.crashImage({ seed: rng.nextU32() }), kv: kv.crashImage(rng) };
      });
      // (The store wraps the engine's error: a typed error whose cause is the cut.)
      await assert.rejects(openOn(fs, cutting.kv), (err: unknown) => {
        let e: unknown = err;
        while (e instanceof Error && !(e instanceof PowerCut)) e = e.cause;
        return e instanceof PowerCut;
      });
      assert.ok(image !== undefined);
      images++;
      const where = `cut after KV batch ${cutAt} of ${batches}, variant ${variant} (CAIRN_SEED=${seed})`;
      const store = await openOn(image.fs, image.kv).catch((err: unknown) =>
        assert.fail(`${where}: open failed: ${String(err)}`),
      );
      try {
        for (const f of filters) {
          const got = await store.getLogs({ ...f, fromBlock: 0, toBlock: BLOCKS - 1 });
          assert.deepEqual(logKeys(got), logKeys(expectedLogs(blocks, f, 0, BLOCKS - 1)), `${where}: logs`);
        }
        for (const b of blocks) {
          for (const r of b.receipts) {
            const got = await store.getReceipt(r.txHash);
            assert.equal(got?.blockNumber, b.number, `${where}: receipt of block ${b.number}`);
            assert.equal(got?.logs.length, r.logs.length);
          }
        }
      } finally {
        await store.close();
      }
      const left = await image.kv
        .reopenImage()
        .range({ gte: Uint8Array.of(0x72), lt: Uint8Array.of(0x73), limit: 100_000 });
      assert.ok(
        left.every((e) => e.key.length === 9),
        `${where}: a layout-2 body key survived the rebuild`,
      );
    }
  }
  console.log(`reviewLayoutCrash: ${batches} KV batches in the upgrading open, ${images} power-cut images`);
});
