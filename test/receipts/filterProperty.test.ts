// Property: eth_getLogs over the receipt store equals a plain in-memory model, for random chains,
// random filters (ranges or block hashes, address lists, positional topics with OR lists and
// wildcards) and random prunes, whether the range falls in the hot tier, the archive or both.
// Run with the model archive engine (many cases) and with DuckDB/Parquet (fewer, slower cases).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { isCairnError } from '../../src/lib/errors.ts';
import { seedFromEnv } from '../../src/lib/rng.ts';
import type { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import { ReceiptStore as Store } from '../../src/receipts/receiptStore.ts';
import type { LogFilter } from '../../src/receipts/types.ts';
import { ADDRESSES, expectedLogs, logKeys, makeBlock, TOPICS } from './support/fixtures.ts';
import { simSetup, withTempDir } from './support/harness.ts';

const topicValue = fc.constantFrom(...TOPICS);
const position = fc.oneof(
  fc.constant(null),
  fc.constant([] as Uint8Array[]),
  fc.array(topicValue, { minLength: 1, maxLength: 3 }),
);
const filterShape = fc.record({
  addresses: fc.oneof(
    fc.constant(undefined),
    fc.array(fc.constantFrom(...ADDRESSES), { minLength: 0, maxLength: 3 }),
  ),
  topics: fc.oneof(fc.constant(undefined), fc.array(position, { minLength: 0, maxLength: 4 })),
  byHash: fc.boolean(),
  a: fc.nat(),
  b: fc.nat(),
});

const scenario = fc.record({
  chainSeed: fc.nat(),
  blocks: fc.integer({ min: 1, max: 40 }),
  blocksPerFile: fc.integer({ min: 1, max: 9 }),
  // Small posting buckets, so chains span closed buckets, the filling one, and prunes cut through.
  postingBucketBlocks: fc.integer({ min: 1, max: 8 }),
  hotRetention: fc.oneof(fc.constant(undefined), fc.integer({ min: 1, max: 20 })),
  pruneTo: fc.oneof(fc.constant(0), fc.nat({ max: 30 })),
  reopen: fc.boolean(),
  filters: fc.array(filterShape, { minLength: 1, maxLength: 6 }),
});

type Scenario = typeof scenario extends fc.Arbitrary<infer T> ? T : never;

async function check(open: () => Promise<ReceiptStore>, s: Scenario): Promise<void> {
  const blocks = Array.from({ length: s.blocks }, (_, n) => makeBlock(s.chainSeed, n, { maxReceipts: 4 }));
  let store = await open();
  try {
    for (const b of blocks) await store.putBlock(b);
    if (s.pruneTo > 0) await store.pruneBelow(Math.min(s.pruneTo, s.blocks));
    if (s.reopen) {
      await store.close();
      store = await open();
    }
    const { floor, latest } = store.ranges();
    if (floor > latest) {
      // Everything pruned: any range reaching below the floor is refused.
      await assert.rejects(store.getLogs({ fromBlock: 0, toBlock: latest }), (e) =>
        isCairnError(e, 'PRUNED'),
      );
      return;
    }
    for (const f of s.filters) {
      let from = floor + (f.a % (latest - floor + 1));
      let to = from + (f.b % (latest - from + 1));
      const filter: LogFilter = { addresses: f.addresses, topics: f.topics };
      if (f.byHash) {
        to = from;
        filter.blockHash = blocks[from]!.hash;
      } else {
        filter.fromBlock = from;
        filter.toBlock = to;
      }
      const got = await store.getLogs(filter);
      assert.deepEqual(logKeys(got), logKeys(expectedLogs(blocks, filter, from, to)));
      if (floor > 0 && !f.byHash) {
        from = f.a % floor;
        await assert.rejects(store.getLogs({ ...filter, fromBlock: from, toBlock: to }), (e) =>
          isCairnError(e, 'PRUNED'),
        );
      }
    }
  } finally {
    await store.close();
  }
}

test('getLogs equals the in-memory model (model archive engine, 150 cases)', async () => {
  const seed = seedFromEnv();
  console.log(`fast-check seed ${seed} (replay: CAIRN_SEED=${seed})`);
  await fc.assert(
    fc.asyncProperty(scenario, async (s) => {
      const sim = simSetup(s.chainSeed);
      await check(async () => {
        sim.restartKv();
        return sim.open({
          blocksPerFile: s.blocksPerFile,
          hotRetentionBlocks: s.hotRetention,
          postingBucketBlocks: s.postingBucketBlocks,
        });
      }, s);
    }),
    { seed, numRuns: 150 },
  );
});

test('getLogs equals the in-memory model (DuckDB + Parquet + LevelDB, 8 cases)', async () => {
  const seed = seedFromEnv() + 1;
  console.log(`fast-check seed ${seed} (replay: CAIRN_SEED=${seed - 1})`);
  await fc.assert(
    fc.asyncProperty(scenario, async (s) => {
      await withTempDir(async (dir) => {
        await check(
          () =>
            Store.open({
              dir,
              blocksPerFile: s.blocksPerFile,
              hotRetentionBlocks: s.hotRetention,
              postingBucketBlocks: s.postingBucketBlocks,
            }),
          s,
        );
      });
    }),
    { seed, numRuns: 8 },
  );
});
