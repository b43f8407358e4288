// Simulated power loss under the block store (AT-11 at scale). The value log runs on the simulated
// file system; the index runs on MemoryKv, whose crash model is LevelDB's: synced batches survive,
// unsynced ones survive as any subset ('subset', MemoryKv.crashImage). After every crash state:
// every flushed block and QC is present and identical, every stored block has its QC, by-number and
// by-hash agree, and the floor never moves back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BlockStore } from '../../src/blocks/blockStore.ts';
import { openBlockStore } from '../../src/blocks/openBlockStore.ts';
import { hashBlockHeader } from '../../src/domain/crypto.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { type KvCrashModel, MemoryKv } from '../../src/testing/memoryKv.ts';
import type { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import {
  type CrashContext,
  type CrashScenario,
  type NamedPolicy,
  POLICIES,
  runCrashSweep,
} from '../support/crashHarness.ts';
import { type Chain, makeChain } from './support/chain.ts';

interface State {
  kv: MemoryKv;
  chain: Chain;
  /** Acknowledged (flush resolved): blocks below, QCs below. */
  blocksAcked: number;
  qcsAcked: number;
  /** Floor acknowledged by a resolved pruneBefore. */
  floorAcked: number;
  /** Highest floor ever requested (a crash may persist it without acknowledging it). */
  floorRequested: number;
}

const COHORTS = 18;
const open = (fs: SimulatedFileSystem, kv: MemoryKv): Promise<BlockStore> =>
  openBlockStore({ dir: '/blocks', fs, kv, segmentBytes: 8 * 1024 });

const scenario = (kvModel: KvCrashModel): CrashScenario<State> => ({
  name: `block store writes, flushes and prunes (index crash model ${kvModel})`,
  start: (seed) => ({
    kv: new MemoryKv(),
    chain: makeChain({ seed, cohorts: COHORTS, payloadBytes: 400 }),
    blocksAcked: 0,
    qcsAcked: 0,
    floorAcked: 0,
    floorRequested: 0,
  }),
  async run(fs, s) {
    const rng = new Rng(s.chain.qcs.length * 7919 + (s.chain.block(0).payload[0] ?? 0));
    let store = await open(fs, s.kv);
    for (let i = 0; i < COHORTS; i++) {
      store.writeQC(s.chain.qcs[i]!);
      const r = s.chain.range(i);
      // Sometimes the QC runs a cohort ahead of its blocks (the normal tail).
      for (let n = r.first; n < r.next; n++) store.writeBlock(n, s.chain.block(n));
      if (rng.bool(0.7)) {
        const blockNext = store.ranges().blocks.next;
        const qcNext = store.ranges().qcs.next;
        await store.flush();
        s.blocksAcked = blockNext;
        s.qcsAcked = qcNext;
      }
      if (i % 5 === 4) {
        const want = Math.max(0, s.blocksAcked - rng.int(2, 10));
        s.floorRequested = Math.max(s.floorRequested, want);
        const floor = await store.pruneBefore(want);
        s.floorAcked = Math.max(s.floorAcked, floor);
      }
      if (i === 9) {
        // A clean restart in the middle: recovery code runs inside the crash window too.
        await store.close();
        s.kv = s.kv.reopen();
        store = await open(fs, s.kv);
      }
    }
    await store.close();
  },
  async check(image, s, ctx: CrashContext) {
    const kv = s.kv.crashImage(new Rng(ctx.seed ^ (ctx.point === 'end' ? 0 : ctx.point)), kvModel);
    const store = await open(image, kv);
    try {
      const r = store.ranges();
      assert.ok(r.floor >= s.floorAcked, `floor ${r.floor} moved below the acknowledged ${s.floorAcked}`);
      assert.ok(
        r.floor <= s.floorRequested,
        `floor ${r.floor} above anything requested (${s.floorRequested})`,
      );
      assert.ok(
        r.blocks.next >= s.blocksAcked,
        `flushed blocks lost: next ${r.blocks.next} < ${s.blocksAcked}`,
      );
      assert.ok(r.qcs.next >= s.qcsAcked, `flushed QCs lost: next ${r.qcs.next} < ${s.qcsAcked}`);
      assert.ok(
        r.blocks.next <= r.qcs.next,
        `block ${r.blocks.next - 1} has no QC (QCs end at ${r.qcs.next})`,
      );
      for (let n = 0; n < r.blocks.next; n++) {
        const b = store.readBlock(n);
        if (n < r.floor) {
          assert.equal(b.status, 'pruned');
          continue;
        }
        assert.equal(b.status, 'found', `block ${n} in [${r.blocks.first}, ${r.blocks.next})`);
        if (b.status !== 'found') continue;
        assert.deepEqual(b.value, s.chain.block(n));
        const h = store.readBlockByHash(hashBlockHeader(b.value.header));
        assert.ok(h.status === 'found' && h.value.number === n, `by-hash of block ${n}`);
        const q = store.readQCForBlock(n);
        assert.equal(q.status, 'found', `QC of block ${n}`);
      }
      for (let i = 0; i < COHORTS; i++) {
        const range = s.chain.range(i);
        if (range.next <= r.floor || range.first >= r.qcs.next) continue;
        const q = store.readQCForBlock(range.first);
        assert.ok(q.status === 'found');
        if (q.status === 'found') assert.deepEqual(q.value, s.chain.qcs[i]);
      }
      // The recovered store accepts the continuation.
      const next = r.qcs.next;
      const idx = s.chain.qcs.findIndex((_, i) => s.chain.range(i).first === next);
      if (idx >= 0) store.writeQC(s.chain.qcs[idx]!);
      if (r.blocks.next < store.ranges().qcs.next)
        store.writeBlock(r.blocks.next, s.chain.block(r.blocks.next));
      await store.flush();
    } finally {
      await store.close();
    }
  },
});

async function sweep(
  kvModel: KvCrashModel,
  policies: readonly NamedPolicy[],
  seeds: number,
): Promise<number> {
  const base = seedFromEnv();
  let total = 0;
  for (let i = 0; i < seeds; i++) {
    const seed = base + i;
    console.log('seed', seed);
    const result = await runCrashSweep(scenario(kvModel), { seed, points: { mode: 'every' }, policies });
    console.log(`seed ${seed}: ${result.mutations} mutations, ${result.crashStates} crash states`);
    total += result.crashStates;
  }
  console.log('total crash states', total);
  return total;
}

// The new models together: value-log pages in any subset and order (zeroed and garbled pages, torn
// prefixes, drop, keep), and index batches of which LevelDB may lose an earlier unsynced one and keep
// a later one. F1 (the value log refusing a lost page in front of surviving frames; WAL frame format
// 2) and F2 (a gapped index; CAIRN_SEED=1584508319 found both) are fixed.
test('block store: simulated power loss at every I/O call (>= 3000 crash states, page subsets, index batch subsets)', async () => {
  const policies = [
    POLICIES.random,
    POLICIES.pages,
    POLICIES.pagesZeroed,
    POLICIES.pagesGarbled,
    POLICIES.dropAll,
    POLICIES.keepAll,
    POLICIES.tornGarbled,
  ];
  const total = await sweep('subset', policies, 6);
  assert.ok(total >= 3000, `only ${total} crash states`);
});
