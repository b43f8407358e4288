// Simulated power loss under the state store. Cairn's own files (state WAL, CURRENT, intent and
// import markers, snapshot manifests and dumps) live on the simulated file system and are cut by its
// crash policies; the engine is MemoryKv behind the in-memory host, whose crash images keep the
// synced state plus ANY SUBSET of the unsynced batches (an earlier one lost, a later one kept).
// After every crash state the store must open at a height ≥ the last acknowledged commit with
// exactly that height's root (or at an in-flight rollback's / import's outcome), pass a full-scan
// verify, and accept the next block. Four workloads: commits, snapshots with retention, rollbacks,
// and an import (one refused by its expectedRoot, then one that succeeds).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { toHex } from '../../src/lib/bytes.ts';
import { describe } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { type NamedChangeSet, StateStore, type StateStoreOptions } from '../../src/state/stateStore.ts';
import type { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { type CrashContext, type CrashScenario, POLICIES, runCrashSweep } from '../support/crashHarness.ts';
import { DIR, randomBlock } from './support/harness.ts';
import { MemoryKvHost } from './support/memoryKvHost.ts';

const EMPTY_ROOT = 'be2a8de3dcf46c94ce85cdc8e07ac308f4d8a95490d956c38d780fd610db0813';
const OPTIONS: Partial<StateStoreOptions> = {
  lockDir: false,
  walSegmentBytes: 1536,
  snapshotIntervalBlocks: 4,
  retainBlocks: 4,
  checkpointIntervalBlocks: 3,
};

interface State {
  host: MemoryKvHost | undefined;
  /** Root of every height on the current timeline (including commits not yet acknowledged). */
  roots: Map<number, string>;
  acked: number;
  /** Outcomes of an in-flight rollback or import that a crash may also legitimately leave. */
  alternatives: { height: number; root: string }[];
  exportChunks: Uint8Array[] | undefined;
  exportRoot: string;
}

const blockAt = (h: number, salt: number): NamedChangeSet[] => randomBlock(new Rng(h * 7919 + salt), 6);

function open(fs: SimulatedFileSystem, host: MemoryKvHost): Promise<StateStore> {
  return StateStore.open({ dataDir: DIR, fs, kvHost: host, ...OPTIONS });
}

async function commit(store: StateStore, s: State, h: number, salt: number): Promise<void> {
  await store.applyChangeSets(h, blockAt(h, salt));
  s.roots.set(h, toHex(store.workingRoot()));
  await store.commit(h);
  s.acked = h;
}

type Workload = (store: StateStore, s: State, fs: SimulatedFileSystem) => Promise<StateStore>;

function scenario(name: string, workload: Workload): CrashScenario<State> {
  return {
    name,
    start: () => ({
      host: undefined,
      roots: new Map([[0, EMPTY_ROOT]]),
      acked: 0,
      alternatives: [],
      exportChunks: undefined,
      exportRoot: '',
    }),
    async run(fs, s) {
      s.host = new MemoryKvHost(fs);
      let store = await open(fs, s.host);
      store = await workload(store, s, fs);
      await store.close();
    },
    async check(image, s, ctx: CrashContext) {
      const rng = new Rng(ctx.seed ^ (ctx.point === 'end' ? 0x7fff : ctx.point) ^ ctx.policy.length);
      const host = s.host!.crashImage(image, rng, 'subset');
      let store: StateStore;
      try {
        store = await open(image, host);
      } catch (err) {
        throw new Error(`open refused: ${describe(err)} (acked ${s.acked})`, { cause: err });
      }
      try {
        const height = store.version;
        const root = toHex(store.committedRoot());
        const onTimeline = height >= s.acked && s.roots.get(height) === root;
        const alternative = s.alternatives.some((a) => a.height === height && a.root === root);
        assert.ok(
          onTimeline || alternative,
          `opened at ${height} root ${root.slice(0, 16)}; acked ${s.acked}, expected root at ${height}: ` +
            `${s.roots.get(height)?.slice(0, 16)}, alternatives ${JSON.stringify(s.alternatives.map((a) => a.height))}`,
        );
        const report = await store.verify();
        assert.ok(report.ok, `full scan: ${JSON.stringify(report.families.filter((f) => !f.ok))}`);
        await store.commitBlock(height + 1, blockAt(height + 1, 99));
      } finally {
        await store.close().catch(() => undefined);
      }
    },
  };
}

const commits = scenario('commits with checkpoints and a clean restart', async (store, s, fs) => {
  for (let h = 1; h <= 11; h++) {
    await commit(store, s, h, 1);
    if (h === 5) {
      await store.close();
      s.host = s.host!.reopenImage(fs);
      store = await open(fs, s.host);
    }
  }
  return store;
});

const snapshots = scenario('snapshots, retention and WAL truncation', async (store, s) => {
  for (let h = 1; h <= 11; h++) {
    await commit(store, s, h, 2);
    if (h === 6) await store.snapshot();
  }
  return store;
});

const rollbacks = scenario('rollbacks with the intent record', async (store, s) => {
  for (let h = 1; h <= 6; h++) await commit(store, s, h, 3);
  // Rollback to 5 (snapshot at 4 + WAL), then a new timeline, then rollback to 2 (empty base + WAL).
  s.alternatives = [{ height: 5, root: s.roots.get(5)! }];
  await store.rollback(5);
  s.roots.delete(6);
  s.acked = 5;
  s.alternatives = [];
  for (let h = 6; h <= 7; h++) await commit(store, s, h, 33);
  s.alternatives = [{ height: 3, root: s.roots.get(3)! }];
  await store.rollback(3);
  for (const h of [...s.roots.keys()]) if (h > 3) s.roots.delete(h);
  s.acked = 3;
  s.alternatives = [];
  await commit(store, s, 4, 333);
  return store;
});

const imports = scenario('export and import over existing state', async (store, s) => {
  for (let h = 1; h <= 3; h++) await commit(store, s, h, 4);
  if (!s.exportChunks) {
    // The stream being imported: a different history at height 5, built once (same for every run).
    const side = await StateStore.open({
      dataDir: '/side',
      fs: (store as unknown as { core: { fs: SimulatedFileSystem } }).core.fs,
      kvHost: s.host!,
      ...OPTIONS,
    });
    for (let h = 1; h <= 5; h++) await side.commitBlock(h, blockAt(h, 44));
    const chunks: Uint8Array[] = [];
    const r = await side.exportState(0, (c) => {
      chunks.push(c.slice());
    });
    await side.close();
    s.exportChunks = chunks;
    s.exportRoot = toHex(r.root);
  }
  // A refused import (wrong expectedRoot) purges the store and leaves it usable: a crash anywhere in
  // it lands on the old tip or on the empty store, and the store commits a new history afterwards.
  s.alternatives = [{ height: 0, root: EMPTY_ROOT }];
  await assert.rejects(store.importState(s.exportChunks, { expectedRoot: new Uint8Array(32) }), /differs/);
  s.roots = new Map([[0, EMPTY_ROOT]]);
  s.acked = 0;
  s.alternatives = [];
  for (let h = 1; h <= 2; h++) await commit(store, s, h, 5);
  s.alternatives = [
    { height: 0, root: EMPTY_ROOT },
    { height: 5, root: s.exportRoot },
  ];
  await store.importState(s.exportChunks);
  s.roots = new Map([[5, s.exportRoot]]);
  s.acked = 5;
  s.alternatives = [];
  await commit(store, s, 6, 4);
  return store;
});

/** Crash after every mutation by default; CAIRN_STATE_CRASH_SAMPLE=n samples n points instead. */
const SAMPLE = process.env.CAIRN_STATE_CRASH_SAMPLE;
let totalCrashStates = 0;

for (const sc of [commits, snapshots, rollbacks, imports]) {
  test(`state power loss: ${sc.name}`, async () => {
    const seed = seedFromEnv();
    const result = await runCrashSweep(sc, {
      seed,
      points: SAMPLE
        ? { mode: 'sample', count: Number(SAMPLE), maxAdjacent: Number(SAMPLE) }
        : { mode: 'every' },
      // Page subsets (the default random model): F1 is fixed by WAL frame format 2.
      policies: [POLICIES.random, POLICIES.dropAll, POLICIES.torn, POLICIES.tornGarbled],
    });
    totalCrashStates += result.crashStates;
    console.log(
      `${sc.name}: ${result.crashStates} crash states over ${result.points} points of ${result.mutations} mutations (CAIRN_SEED=${seed})`,
    );
    assert.ok(result.crashStates >= 4 * result.points);
  });
}

test('state power loss: at least 3,000 crash states in total', () => {
  console.log(`total state crash states: ${totalCrashStates}`);
  if (!SAMPLE) assert.ok(totalCrashStates >= 3000, `only ${totalCrashStates} crash states`);
});
