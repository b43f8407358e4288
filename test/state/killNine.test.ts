// Real kill -9: ≥ 100 SIGKILLs of child processes committing blocks to a state store on the real disk
// (LevelDB engine, real WAL, snapshots and retention running). After each kill the parent reopens the
// directory and checks: the height is at least the last acknowledged one, the root is exactly the
// root of that height on the deterministic chain (recomputed on an in-memory reference store), and a
// full-scan verify passes. SIGKILL keeps the page cache, so this proves process-crash safety and the
// real engine integration; power loss is the simulated suite's job.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { toHex } from '../../src/lib/bytes.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { StateStore } from '../../src/state/stateStore.ts';
import { bundleTsChild, killAllChildren, siblingPath, spawnNodeChild } from '../support/childProcess.ts';
import { openSim, simEnv } from './support/harness.ts';
import { chainBlock, KILL9_STORE_OPTIONS } from './support/stateChain.ts';

const KILLS = Number(process.env.CAIRN_STATE_KILL9_COUNT ?? 105);
const DIRS = 6;
const PARALLEL = 3;
const CHILD = siblingPath(import.meta.url, './support/stateChild.ts');
const root = mkdtempSync(join(tmpdir(), 'cairn-state-kill9-'));
after(() => {
  killAllChildren();
  rmSync(root, { recursive: true, force: true });
});

interface Dir {
  path: string;
  seed: number;
  acked: number;
  busy: boolean;
  /** Roots of the deterministic chain, computed lazily on a simulated store. */
  roots: string[];
  reference: Promise<StateStore> | undefined;
}

async function rootAt(d: Dir, h: number): Promise<string> {
  d.reference ??= openSim(simEnv(d.seed), { checkpointIntervalBlocks: 1000 });
  const ref = await d.reference;
  if (d.roots.length === 0) d.roots[0] = toHex(ref.committedRoot());
  while (d.roots.length <= h) {
    const next = ref.version + 1;
    await ref.commitBlock(next, chainBlock(d.seed, next));
    d.roots[next] = toHex(ref.committedRoot());
  }
  return d.roots[h]!;
}

type Msg = { type: 'ready' | 'acked'; height: number; root: string };

test(`state store: ${KILLS} SIGKILLs of committing children lose no acknowledged block`, async () => {
  const seed = seedFromEnv();
  console.log(`kill -9 seed ${seed} (replay: CAIRN_SEED=${seed})`);
  const rng = new Rng(seed);
  const dirs: Dir[] = Array.from({ length: DIRS }, (_, i) => ({
    path: join(root, `d${i}`),
    seed: rng.nextU32(),
    acked: 0,
    busy: false,
    roots: [],
    reference: undefined,
  }));
  const command = (await bundleTsChild(CHILD)).command;
  let kills = 0;
  let maxHeight = 0;

  const cycle = async (n: number): Promise<void> => {
    const d = dirs.find((x) => !x.busy)!;
    d.busy = true;
    try {
      const delayMs = rng.int(5, 60);
      const where = `kill ${n} of ${d.path} after ${delayMs} ms (CAIRN_SEED=${seed})`;
      const child = spawnNodeChild(command, [d.path, String(d.seed)]);
      try {
        const ready = await child.waitFor<Msg>((m) => (m as Msg).type === 'ready', 30_000);
        assert.ok(
          ready.height >= d.acked,
          `${where}: child opened at ${ready.height}, ${d.acked} acknowledged`,
        );
        await new Promise((r) => setTimeout(r, delayMs));
        assert.equal(child.child.exitCode, null, `${where}: the child died on its own`);
      } finally {
        await child.kill9();
      }
      kills++;
      for (const m of child.messages as Msg[]) {
        if (m.type !== 'acked') continue;
        assert.equal(
          m.root,
          await rootAt(d, m.height),
          `${where}: child acknowledged a wrong root at ${m.height}`,
        );
        d.acked = Math.max(d.acked, m.height);
      }
      const store = await StateStore.open({ dataDir: d.path, ...KILL9_STORE_OPTIONS });
      try {
        assert.ok(
          store.version >= d.acked,
          `${where}: reopened at ${store.version}, ${d.acked} acknowledged`,
        );
        assert.equal(
          toHex(store.committedRoot()),
          await rootAt(d, store.version),
          `${where}: wrong root at ${store.version}`,
        );
        if (n % 10 === 0) {
          const report = await store.verify();
          assert.ok(report.ok, `${where}: ${JSON.stringify(report.families.filter((f) => !f.ok))}`);
        }
        maxHeight = Math.max(maxHeight, store.version);
      } finally {
        await store.close();
      }
    } finally {
      d.busy = false;
    }
  };

  let next = 0;
  const lanes = Array.from({ length: PARALLEL }, async () => {
    while (next < KILLS) await cycle(next++);
  });
  await Promise.all(lanes);
  console.log(`${kills} kill -9 cycles, highest height ${maxHeight}`);
  assert.ok(kills >= KILLS);
});
