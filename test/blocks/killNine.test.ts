// AT-12 at scale: a child process writes blocks and QCs on the real disk (Wal + classic-level) and is
// killed with SIGKILL at a random moment, over and over on the same directory. After every kill the
// parent reopens the store and checks: every flushed block and QC is present and identical, every
// stored block has its QC, by-number and by-hash agree, the floor never moves back.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openBlockStore } from '../../src/blocks/openBlockStore.ts';
import { hashBlockHeader } from '../../src/domain/crypto.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { siblingPath, spawnTsChild } from '../support/childProcess.ts';
import { makeChain } from './support/chain.ts';

const KILLS = 100;
const LANES_PER_RUN = 2; // two independent directories killed in parallel (2 cores)
const COHORTS = 1500;

interface Acked {
  blocks: number;
  qcs: number;
  floor: number;
}

async function killLoop(
  dir: string,
  seed: number,
  kills: number,
  chain: ReturnType<typeof makeChain>,
): Promise<number> {
  const rng = new Rng(seed);
  const acked: Acked = { blocks: 0, qcs: 0, floor: 0 };
  const type = (m: unknown): string => (m as { type: string }).type;
  // Count a kill only when the child really died of SIGKILL before finishing its chain: a loop
  // iteration whose child had already exited (or finished) proves nothing.
  let killed = 0;
  for (let k = 0; killed < kills; k++) {
    assert.ok(
      k < kills * 2,
      `only ${killed} of ${k} children died of SIGKILL mid-run (seed ${seed}): the chain ran out?`,
    );
    const child = spawnTsChild(siblingPath(import.meta.url, './support/killChild.ts'), [
      dir,
      String(seed),
      String(COHORTS),
    ]);
    await child.waitFor((m) => type(m) === 'opened', 60_000);
    // Kill after a random number of acknowledgements plus a random sub-millisecond-to-ms delay.
    const waitAcks = rng.int(0, 6);
    const seen = (): number => child.messages.filter((m) => type(m) === 'flushed').length;
    while (seen() < waitAcks && child.messages.every((m) => type(m) !== 'done')) {
      await new Promise((r) => setTimeout(r, 1));
    }
    await new Promise((r) => setTimeout(r, rng.int(0, 4)));
    await child.kill9();
    const { signal } = await child.exited;
    if (signal === 'SIGKILL' && child.messages.every((m) => type(m) !== 'done')) killed++;
    for (const m of child.messages as { type: string; blocks?: number; qcs?: number; floor?: number }[]) {
      if (m.type === 'flushed') {
        acked.blocks = Math.max(acked.blocks, m.blocks!);
        acked.qcs = Math.max(acked.qcs, m.qcs!);
      }
      if (m.type === 'pruned') acked.floor = Math.max(acked.floor, m.floor!);
    }
    const store = await openBlockStore({ dir, segmentBytes: 128 * 1024 });
    try {
      const r = store.ranges();
      const where = `kill ${killed} (child ${k}, seed ${seed}, dir ${dir})`;
      assert.ok(r.floor >= acked.floor, `${where}: floor ${r.floor} < acknowledged ${acked.floor}`);
      acked.floor = r.floor; // the floor seen after a restart must never move back either
      assert.ok(
        r.blocks.next >= acked.blocks,
        `${where}: blocks next ${r.blocks.next} < acked ${acked.blocks}`,
      );
      assert.ok(r.qcs.next >= acked.qcs, `${where}: QCs next ${r.qcs.next} < acked ${acked.qcs}`);
      assert.ok(r.blocks.next <= r.qcs.next, `${where}: blocks beyond QCs`);
      // Check the newest 40 blocks fully and a sample of older ones.
      const from = Math.max(r.blocks.first, r.blocks.next - 40);
      const sample = [
        r.blocks.first,
        ...Array.from({ length: 8 }, () =>
          rng.int(r.blocks.first, Math.max(r.blocks.first + 1, r.blocks.next)),
        ),
      ];
      for (const n of [...sample, ...Array.from({ length: r.blocks.next - from }, (_, i) => from + i)]) {
        if (n >= r.blocks.next) continue;
        const b = store.readBlock(n);
        assert.equal(b.status, 'found', `${where}: block ${n}`);
        if (b.status !== 'found') continue;
        assert.deepEqual(b.value, chain.block(n), `${where}: block ${n} differs`);
        const h = store.readBlockByHash(hashBlockHeader(b.value.header));
        assert.ok(h.status === 'found' && h.value.number === n, `${where}: by-hash of block ${n}`);
        assert.equal(store.readQCForBlock(n).status, 'found', `${where}: QC of block ${n}`);
      }
      if (r.floor > 0) assert.equal(store.readBlock(r.floor - 1).status, 'pruned');
      // The whole store as it is on disk (every record's checksum, index against log, QC
      // coverage) halfway and after the last kill: a full read of the store is slow.
      if (killed === kills || killed === Math.ceil(kills / 2)) {
        const verified = await store.verify();
        assert.deepEqual(verified.problems, [], `${where}: verify found problems`);
        assert.equal(
          verified.blocks,
          r.blocks.next - r.blocks.first,
          `${where}: verify saw a different range`,
        );
      }
      acked.blocks = r.blocks.next;
      acked.qcs = r.qcs.next;
    } finally {
      await store.close();
    }
  }
  return killed;
}

test(`block store survives ${KILLS} real kill -9s with flushed data intact`, {
  timeout: 450_000,
}, async () => {
  const seed = seedFromEnv();
  console.log('seed', seed);
  const chain = makeChain({ seed, cohorts: COHORTS, payloadBytes: 2048 });
  const dirs = Array.from({ length: LANES_PER_RUN }, () => mkdtempSync(join(tmpdir(), 'cairn-kill9-')));
  try {
    const counts = await Promise.all(
      dirs.map((d) => killLoop(d, seed, Math.ceil(KILLS / LANES_PER_RUN), chain)),
    );
    const total = counts.reduce((a, b) => a + b, 0);
    console.log('children killed by SIGKILL mid-run', total);
    assert.ok(total >= KILLS);
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});
