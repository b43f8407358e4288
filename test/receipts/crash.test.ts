// Simulated power loss under the receipt store: the WAL, the manifest (floors, file list) and the
// archive files' fsync/rename/unlink run on the simulated file system; the hot tier runs on
// MemoryKv (LevelDB's crash model) and the archive engine is a model that writes through the same
// simulated disk. After every crash state: every acknowledged block's receipts are found by hash
// and its logs by filter, the floor never moves back (nor beyond what was requested), nothing below
// the floor comes back, and the recovered store accepts the next block.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import { MemoryKv } from '../../src/testing/memoryKv.ts';
import type { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { type CrashContext, type CrashScenario, POLICIES, runCrashSweep } from '../support/crashHarness.ts';
import { expectedLogs, logKeys, makeBlock } from './support/fixtures.ts';
import { MemoryArchive } from './support/memoryArchive.ts';

interface State {
  seed: number;
  kv: MemoryKv;
  /** Highest block whose putBlock resolved. */
  acked: number;
  floorAcked: number;
  floorRequested: number;
}

const BLOCKS = 22;
const open = (fs: SimulatedFileSystem, kv: MemoryKv): Promise<ReceiptStore> =>
  ReceiptStore.open({
    dir: '/receipts',
    fs,
    kv,
    archive: new MemoryArchive(fs),
    blocksPerFile: 4,
    hotRetentionBlocks: 6,
    postingBucketBlocks: 3,
    walSegmentBytes: 16 * 1024,
  });

const scenario: CrashScenario<State> = {
  name: 'receipt store writes, rotates, prunes',
  start: (seed) => ({ seed, kv: new MemoryKv(), acked: -1, floorAcked: 0, floorRequested: 0 }),
  async run(fs, s) {
    const rng = new Rng(s.seed);
    let store = await open(fs, s.kv);
    for (let n = 0; n < BLOCKS; ) {
      // Sometimes several blocks in flight at once (one group commit).
      const group = Math.min(BLOCKS - n, rng.int(1, 4));
      const blocks = Array.from({ length: group }, (_, i) => makeBlock(s.seed, n + i));
      await Promise.all(blocks.map((b) => store.putBlock(b)));
      n += group;
      s.acked = n - 1;
      if (rng.bool(0.25)) {
        const want = Math.max(0, n - rng.int(6, 12));
        s.floorRequested = Math.max(s.floorRequested, want);
        s.floorAcked = Math.max(s.floorAcked, await store.pruneBelow(want));
      }
      if (n >= 10 && n < 10 + group) {
        await store.close();
        s.kv = s.kv.reopen();
        store = await open(fs, s.kv);
      }
    }
    await store.close();
  },
  async check(image, s, ctx: CrashContext) {
    const kv = s.kv.crashImage(new Rng(ctx.seed ^ (ctx.point === 'end' ? 0 : ctx.point)));
    const store = await open(image, kv);
    try {
      const r = store.ranges();
      assert.ok(r.latest >= s.acked, `acknowledged blocks lost: latest ${r.latest} < ${s.acked}`);
      assert.ok(r.floor >= s.floorAcked, `floor ${r.floor} below the acknowledged ${s.floorAcked}`);
      assert.ok(r.floor <= Math.max(s.floorRequested, r.first), `floor ${r.floor} above any request`);
      const blocks = Array.from({ length: r.latest + 1 }, (_, n) => makeBlock(s.seed, n));
      for (const b of blocks) {
        for (const rc of b.receipts) {
          if (b.number < r.floor) {
            // Not found, or PRUNED where the index still places it (a file straddling the floor).
            const gone = await store.getReceipt(rc.txHash).catch((e: unknown) => {
              assert.ok(isCairnError(e, 'PRUNED') && e.details?.floor === r.floor, String(e));
              return undefined;
            });
            assert.equal(gone, undefined, `pruned block ${b.number} came back by hash`);
            continue;
          }
          const got = await store.getReceipt(rc.txHash);
          assert.ok(got, `receipt ${b.number}/${rc.txIndex} missing (hot floor ${r.hotFloor})`);
          assert.equal(got.blockNumber, b.number);
          assert.equal(got.gasUsed, rc.gasUsed);
          assert.equal(got.logs.length, rc.logs.length);
        }
      }
      if (r.latest >= r.floor) {
        const f = { fromBlock: r.floor, toBlock: r.latest };
        assert.deepEqual(
          logKeys(await store.getLogs(f)),
          logKeys(expectedLogs(blocks, f, r.floor, r.latest)),
        );
      }
      if (r.floor > 0) {
        await assert.rejects(store.getLogs({ fromBlock: r.floor - 1, toBlock: r.floor }), (e) =>
          isCairnError(e, 'PRUNED'),
        );
      }
      await store.putBlock(makeBlock(s.seed, r.latest + 1));
    } finally {
      await store.close();
    }
  },
};

test('receipt store: simulated power loss at every I/O call (>= 3000 crash states)', async () => {
  const base = seedFromEnv();
  let total = 0;
  for (const seed of [base, base + 1, base + 2]) {
    console.log('seed', seed);
    const result = await runCrashSweep(scenario, {
      seed,
      points: { mode: 'every' },
      // Page subsets (the default random model), three draws: F1 is fixed by WAL frame format 2.
      policies: [
        POLICIES.random,
        { name: 'random-2', policy: { ...POLICIES.random.policy, seed: seed * 3 + 1 } },
        { name: 'random-3', policy: { ...POLICIES.random.policy, seed: seed * 3 + 2 } },
        POLICIES.dropAll,
        POLICIES.keepAll,
        POLICIES.torn,
        POLICIES.tornGarbled,
      ],
    });
    console.log(`seed ${seed}: ${result.mutations} mutations, ${result.crashStates} crash states`);
    total += result.crashStates;
  }
  console.log('total crash states', total);
  assert.ok(total >= 3000, `only ${total} crash states`);
});
