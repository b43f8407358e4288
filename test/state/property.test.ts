// A14 as a property: after randomized blocks over every family (add, update, delete, recreate,
// EOA ↔ contract, zero writes, empty misc values, several applies per block, repeated keys), the
// incrementally maintained per-family roots and stats equal a full scan, at every height and after a
// crash that loses engine batches. Seeded by CAIRN_SEED (printed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { toHex } from '../../src/lib/bytes.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import type { NamedChangeSet } from '../../src/state/stateStore.ts';
import { crashEnv, openSim, randomBlock, simEnv } from './support/harness.ts';

test('A14: incremental roots and stats equal a full scan after random blocks (fast-check)', async () => {
  const seed = seedFromEnv();
  console.log(`property seed ${seed} (replay: CAIRN_SEED=${seed})`);
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.record({
          blockSeed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
          applies: fc.integer({ min: 0, max: 3 }),
          size: fc.integer({ min: 0, max: 30 }),
        }),
        { minLength: 1, maxLength: 25 },
      ),
      async (blocks) => {
        let env = simEnv(blocks.length);
        let store = await openSim(env, { checkpointIntervalBlocks: 5 });
        const roots: string[] = [];
        for (const [i, b] of blocks.entries()) {
          const h = i + 1;
          const rng = new Rng(b.blockSeed);
          for (let a = 0; a < b.applies; a++) await store.applyChangeSets(h, randomBlock(rng, b.size));
          await store.commit(h);
          roots[h] = toHex(store.committedRoot());
          const report = await store.verify();
          assert.ok(report.ok, `height ${h}: ${JSON.stringify(report.families.filter((f) => !f.ok))}`);
        }
        // Lose every unsynced engine batch: replay from the checkpoint must land on the same root.
        env = crashEnv(env, new Rng(blocks.length), { engine: 'subset' });
        store = await openSim(env, { checkpointIntervalBlocks: 5 });
        assert.equal(store.version, blocks.length);
        assert.equal(toHex(store.committedRoot()), roots[blocks.length]);
        assert.ok((await store.verify()).ok);
        await store.close();
      },
    ),
    { seed, numRuns: 40 },
  );
});

/** Many distinct storage slots and a few deletes of earlier ones: enough rows for the worker pool. */
function wideBlock(rng: Rng, size: number): NamedChangeSet[] {
  const pairs: NamedChangeSet['pairs'][number][] = [];
  for (let i = 0; i < size; i++) {
    const key = new Uint8Array(53);
    key[0] = 0x03;
    key[1] = rng.int(0, 4);
    key[52] = i & 0xff;
    key[51] = i >> 8;
    pairs.push(rng.bool(0.1) ? { key, delete: true } : { key, value: rng.bytes(32) });
  }
  return [{ name: 'evm', pairs }];
}

test('LtHash split over worker threads is bit-identical to the serial sum (large random blocks)', async () => {
  const seed = seedFromEnv();
  const serial = await openSim(simEnv(1));
  const parallel = await openSim(simEnv(2), { hashWorkers: 2 });
  try {
    for (let h = 1; h <= 6; h++) {
      const rng = new Rng(seed + h);
      const blocks = [randomBlock(rng, 400), randomBlock(rng, 300), wideBlock(rng, 1500)];
      for (const b of blocks) {
        await serial.applyChangeSets(h, b);
        await parallel.applyChangeSets(h, b);
      }
      await serial.commit(h);
      await parallel.commit(h);
      assert.equal(
        toHex(parallel.committedRoot()),
        toHex(serial.committedRoot()),
        `height ${h} (CAIRN_SEED=${seed})`,
      );
    }
    assert.ok((await parallel.verify()).ok);
  } finally {
    await serial.close();
    await parallel.close();
  }
});
