// Kill, then power loss, under the block store (issue #9 §1): a first process writes, flushes and
// prunes and is killed (page cache and unsynced LevelDB batches survive, unsynced); a second process
// reopens both, writes and flushes more (acknowledged), then the power fails. Every block and QC
// either process acknowledged must be there, identical, and the floor must not move back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BlockStore } from '../../src/blocks/blockStore.ts';
import { openBlockStore } from '../../src/blocks/openBlockStore.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { type KvCrashModel, MemoryKv } from '../../src/testing/memoryKv.ts';
import type { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { type KillThenCrashScenario, POLICIES, runKillThenCrashSweep } from '../support/crashHarness.ts';
import { type Chain, makeChain } from './support/chain.ts';

interface State {
  kv: MemoryKv;
  chain: Chain;
  blocksAcked: number;
  qcsAcked: number;
  floorAcked: number;
}

const COHORTS_FIRST = 6;
const COHORTS_TOTAL = 10;
const open = (fs: SimulatedFileSystem, kv: MemoryKv): Promise<BlockStore> =>
  openBlockStore({ dir: '/blocks', fs, kv, segmentBytes: 8 * 1024 });

/** Writes cohorts from wherever the store stands up to `until`, a flush (acknowledged) after each. */
async function writeCohorts(store: BlockStore, s: State, until: number, pruneEvery: number): Promise<void> {
  let i = s.chain.qcs.findIndex((_, k) => s.chain.range(k).first === store.ranges().qcs.next);
  if (store.ranges().qcs.next === 0) i = 0;
  for (let n = store.ranges().blocks.next; n < store.ranges().qcs.next; n++)
    store.writeBlock(n, s.chain.block(n));
  for (; i >= 0 && i < until; i++) {
    store.writeQC(s.chain.qcs[i]!);
    const r = s.chain.range(i);
    for (let n = store.ranges().blocks.next; n < r.next; n++) store.writeBlock(n, s.chain.block(n));
    await store.flush();
    s.blocksAcked = Math.max(s.blocksAcked, store.ranges().blocks.next);
    s.qcsAcked = Math.max(s.qcsAcked, store.ranges().qcs.next);
    if (i % pruneEvery === pruneEvery - 1) {
      s.floorAcked = Math.max(s.floorAcked, await store.pruneBefore(Math.max(0, s.blocksAcked - 5)));
    }
  }
}

function scenario(kvModel: KvCrashModel): KillThenCrashScenario<State> {
  return {
    name: `block store killed, reopened, flushed, power cut (index model ${kvModel})`,
    start: (seed) => ({
      kv: new MemoryKv(),
      chain: makeChain({ seed, cohorts: COHORTS_TOTAL, payloadBytes: 400 }),
      blocksAcked: 0,
      qcsAcked: 0,
      floorAcked: 0,
    }),
    async first(fs, s) {
      const store = await open(fs, s.kv);
      await writeCohorts(store, s, COHORTS_FIRST, 3);
      // No close: the process is killed, or dies right after its last flush.
    },
    async second(fs, s) {
      s.kv = s.kv.reopen(); // the next process: everything written visible, unsynced stays unsynced
      const store = await open(fs, s.kv);
      try {
        await writeCohorts(store, s, COHORTS_TOTAL, 2);
      } finally {
        await store.close().catch(() => undefined);
      }
    },
    async check(image, s, ctx) {
      const kv = s.kv.crashImage(new Rng(ctx.seed ^ (ctx.point === 'end' ? 7 : ctx.point)), kvModel);
      const store = await open(image, kv);
      try {
        const r = store.ranges();
        assert.ok(r.floor >= s.floorAcked, `floor ${r.floor} moved below the acknowledged ${s.floorAcked}`);
        assert.ok(
          r.blocks.next >= s.blocksAcked,
          `flushed blocks lost: next ${r.blocks.next} < ${s.blocksAcked}`,
        );
        assert.ok(r.qcs.next >= s.qcsAcked, `flushed QCs lost: next ${r.qcs.next} < ${s.qcsAcked}`);
        for (let n = r.floor; n < r.blocks.next; n++) {
          const b = store.readBlock(n);
          assert.equal(b.status, 'found', `block ${n} in [${r.floor}, ${r.blocks.next})`);
          if (b.status === 'found') assert.deepEqual(b.value, s.chain.block(n));
        }
      } finally {
        await store.close();
      }
    },
  };
}

// F3 (unsynced directory entries of a killed process), F1 (page subsets) and F2 (index batch subsets)
// are fixed.
test('block store: kill, reopen, acknowledged flushes, power loss', async () => {
  const seed = seedFromEnv();
  console.log('seed', seed);
  const r = await runKillThenCrashSweep(scenario('subset'), {
    seed,
    killPoints: { mode: 'sample', count: 30, maxAdjacent: 30 },
    crashPointsPerKill: 2,
    policies: [POLICIES.random, POLICIES.dropAll],
  });
  console.log(
    `block store kill-then-crash: ${r.mutations} mutations, ${r.points} kill points, ${r.crashStates} crash states`,
  );
});
