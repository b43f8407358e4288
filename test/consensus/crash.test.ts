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

// The page-subset model (unsynced pages in any order, zeroed and garbled pages) plus drop and torn
// prefixes. F1 (a lost unsynced page in front of surviving lane-WAL frames read as corruption) is
// fixed by WAL frame format 2; seed 1595216958 reproduced it.
const POWER_LOSS = [
  POLICIES.random,
  POLICIES.pages,
  POLICIES.pagesZeroed,
  POLICIES.pagesGarbled,
  POLICIES.dropAll,
  POLICIES.tornGarbled,
];

test('simulated power loss over the persist loop: ≥ 5,000 crash states, acknowledged data survives', async () => {
  await sweep(POWER_LOSS, 5000, [1595216958]);
});

// What a node runs: preallocated segments and the always-ready spare (src/consensus/logOpener.ts).
test('persist loop with the production WAL configuration (preallocated segments, always-ready spare)', async () => {
  await sweep(POWER_LOSS, 2000, [], 'production');
});
