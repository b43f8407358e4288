/**
 * Simulated power loss over the persist loop with several lanes. For every crash point of a
 * deterministic workload (blocks on 3 lanes, CommitQCs, AppQCs racing the loop, small segments so
 * segments roll and get pruned), the recovered store must:
 *  - open (never refuse to start after a crash);
 *  - hold every block that had become voteable as durable, unless the recovered anchor is past it;
 *  - hold every CommitQC that had been published (the latest published road or later);
 *  - hold an anchor at least as new as the last one reported durable, and nothing below it;
 *  - have every lane as a contiguous prefix starting at the anchor's lane first.
 * Total crash states per run: printed; the file asserts ≥ 5,000.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seedFromEnv } from '../../src/lib/rng.ts';
import { type NamedPolicy, POLICIES, runCrashSweep } from '../support/crashHarness.ts';
import { persistLoopScenario, type WalConfig } from './workload.ts';

async function sweep(
  policies: readonly NamedPolicy[],
  minStates: number,
  knownSeeds: readonly number[] = [],
  wal: WalConfig = 'test',
): Promise<number> {
  const base = seedFromEnv();
  console.log('seed', base);
  let states = 0;
  let seeds = 0;
  while (states < minStates) {
    // Seeds that once found a defect run first (unless a seed is given to replay).
    const known = process.env.CAIRN_SEED ? undefined : knownSeeds[seeds];
    const seed = known ?? (base + seeds * 7919) >>> 0;
    const result = await runCrashSweep(persistLoopScenario(7, wal), {
      seed,
      points: { mode: 'every' },
      policies,
    });
    states += result.crashStates;
    seeds++;
    console.log(`seed ${seed}: ${result.mutations} mutations, ${result.crashStates} crash states`);
  }
  console.log(`total crash states: ${states} over ${seeds} seeds`);
  assert.ok(states >= minStates);
  return states;
}

// The legacy model (unsynced data survives as a torn prefix): green today.
test('simulated power loss over the persist loop: ≥ 5,000 crash states, acknowledged data survives', async () => {
  await sweep([POLICIES.randomPrefix, POLICIES.dropAll, POLICIES.tornGarbled], 5000);
});

test('persist loop under the page-subset model (unsynced pages in any order, zeroed and garbled pages)', {
  todo: 'F1: the lane WALs read a lost unsynced page followed by a surviving one as corruption',
}, async () => {
  const newModel = [POLICIES.random, POLICIES.pages, POLICIES.pagesZeroed, POLICIES.pagesGarbled];
  await sweep(newModel, 1500, [1595216958]);
});

// What a node runs: preallocated segments and the always-ready spare (src/consensus/logOpener.ts).
test('persist loop with the production WAL configuration (preallocated segments, always-ready spare)', async () => {
  await sweep([POLICIES.randomPrefix, POLICIES.dropAll, POLICIES.tornGarbled], 2000, [], 'production');
});

test('persist loop with the production WAL configuration under the page-subset model', {
  todo: 'F1: the lane WALs read a lost unsynced page followed by a surviving one as corruption',
}, async () => {
  const newModel = [POLICIES.random, POLICIES.pages, POLICIES.pagesZeroed, POLICIES.pagesGarbled];
  await sweep(newModel, 1500, [], 'production');
});
