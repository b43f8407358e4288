/**
 * Power loss DURING the recovery of consensus persistence. Opening it is more than WAL recovery: it
 * creates the anchor slots, creates lane and CommitQC logs, and runs the startup prune — front
 * truncations and resets of lane logs below the durable anchor, and writing the anchor's CommitQC
 * back into an emptied CommitQC log. A crash at any of those calls must leave a disk that opens, with
 * every acknowledged vote and published CommitQC, and exactly what an uninterrupted recovery yields.
 *
 * Method as in recovery-crash.test.ts: crash the persist-loop workload at every other call (first image),
 * count the calls of an uninterrupted open of that image, crash a fresh copy's open after each of
 * them, and check every resulting image with the persist-loop checker plus a comparison with the
 * uninterrupted recovery. Seeds print; CAIRN_SEED replays.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConsensusPersistence } from '../../src/consensus/persistence.ts';
import { describe as describeError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { type CrashPolicy, DROP_ALL, SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { type Acks, options, persistLoopScenario } from '../consensus/workload.ts';
import { isCrashError, POLICIES } from '../support/crashHarness.ts';

// Both power cuts under the page-subset model (the default random policy), plus drop and torn
// prefixes. F1 (a lost unsynced page in front of surviving lane-WAL frames read as corruption) is
// fixed by WAL frame format 2.
const RECOVERY_POLICIES = [POLICIES.random, POLICIES.dropAll, POLICIES.tornGarbled] as const;
const WORKLOAD_POLICIES: readonly CrashPolicy[] = [
  POLICIES.random.policy,
  POLICIES.dropAll.policy,
  POLICIES.tornGarbled.policy,
  POLICIES.keepAll.policy,
  POLICIES.pagesZeroed.policy,
];

const POINT_STRIDE = 2;

interface Recovered {
  anchorRoad: number;
  lastRoad: number;
  lanes: string[];
}

/** Opens (recovers) consensus persistence and summarises what it found; leaves it open. */
async function recover(
  fs: SimulatedFileSystem,
  acks: Acks,
): Promise<{ cp: ConsensusPersistence; got: Recovered }> {
  const f = acks.fixture;
  const cp = await ConsensusPersistence.open(options(fs, f));
  const got: Recovered = {
    anchorRoad: cp.durableAnchor()?.commitQC.roadIndex ?? -1,
    lastRoad: cp.lastCommitQC()?.roadIndex ?? -1,
    lanes: f.lanes.map((lane) => `${cp.firstBlock(lane)}..${cp.nextBlock(lane)}`),
  };
  return { cp, got };
}

function copyOf(image: SimulatedFileSystem, seed: number): SimulatedFileSystem {
  return image.crashImage({ ...DROP_ALL, seed });
}

test('consensus persistence: a crash at any I/O call of its recovery (startup prune included) is recoverable', async () => {
  const base = seedFromEnv();
  console.log('seed', base);
  const scenario = persistLoopScenario();
  const rng = new Rng(base ^ 0xc0);
  let states = 0;
  let imagesWithRepairs = 0;
  let maxCalls = 0;
  let recoveriesThatWrite = 0;
  for (let s = 0; states < 1500; s++) {
    assert.ok(s < 20, `crash-state count stuck at ${states}`);
    const seed = (base + s * 7919) >>> 0;
    const probe = new SimulatedFileSystem({ seed, traceMutations: true });
    await scenario.run(probe, scenario.start(seed));
    const mutations = probe.mutationCount;
    // Every other workload point (the seed picks which half): under page subsets far more images need
    // repairs, and a repair is many recovery calls, so all points would triple the file's run time.
    for (let point = 1 + (seed % POINT_STRIDE); point <= mutations; point += POINT_STRIDE) {
      const fs = new SimulatedFileSystem({ seed });
      const acks = scenario.start(seed);
      fs.crashAfter(point, {
        ...WORKLOAD_POLICIES[rng.int(0, WORKLOAD_POLICIES.length)]!,
        seed: seed ^ point,
      });
      await scenario.run(fs, acks).catch((err) => {
        if (!fs.crashed) throw err;
      });
      assert.ok(fs.crashed, `workload never reached mutation ${point}`);
      const image = fs.crashedImage();

      const probeCopy = copyOf(image, seed + point);
      const reference = await recover(probeCopy, acks);
      const calls = probeCopy.mutationCount;
      await reference.cp.close();
      if (calls === 0) continue;
      imagesWithRepairs++;
      maxCalls = Math.max(maxCalls, calls);
      // Writes during recovery: WAL meta (startup prune), segment headers, the anchor QC written back.
      if (probeCopy.opCounts.writev > 0) recoveriesThatWrite++;
      for (let k = 1; k <= calls; k++) {
        const attempt = copyOf(image, seed + point);
        attempt.crashAfter(k, RECOVERY_POLICIES[0].policy);
        try {
          const { cp } = await recover(attempt, acks);
          await cp.close().catch(() => undefined);
        } catch (err) {
          if (!isCrashError(err)) {
            throw new Error(
              `seed ${seed} point ${point}: recovery failed at call ${k}/${calls} without a crash: ${describeError(err)}`,
              { cause: err },
            );
          }
        }
        assert.ok(attempt.crashed, `recovery made fewer than ${k} calls on a copy (expected ${calls})`);
        const images = [
          { name: RECOVERY_POLICIES[0].name, image: attempt.crashedImage() },
          ...RECOVERY_POLICIES.slice(1).map((p, i) => ({
            name: p.name,
            image: attempt.crashImage({ ...p.policy, seed: seed + k * 31 + i }),
          })),
        ];
        for (const { name, image: after } of images) {
          const where =
            `seed ${seed}: workload crash after mutation ${point}/${mutations}, crash during recovery after ` +
            `call ${k}/${calls} (policy ${name}); replay: CAIRN_SEED=${base}`;
          try {
            const again = await recover(copyOf(after, 3), acks);
            await again.cp.close();
            assert.deepEqual(again.got, reference.got, 'differs from an uninterrupted recovery');
            await scenario.check(after, acks, { scenario: 'recovery', seed, point, mutations, policy: name });
          } catch (err) {
            throw new Error(`${where}: ${describeError(err)}`, { cause: err });
          }
          states++;
        }
      }
    }
  }
  console.log('consensus crash-during-recovery states', {
    states,
    imagesWithRepairs,
    maxCalls,
    recoveriesThatWrite,
  });
  assert.ok(states >= 1500);
  assert.ok(maxCalls >= 4, 'no recovery did more than a trivial repair');
  assert.ok(recoveriesThatWrite > 0, 'no recovery wrote anything (no startup prune was exercised)');
});
