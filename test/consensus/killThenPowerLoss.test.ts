// Kill, then power loss, over the consensus persist loop (issue #9 §1), with the production WAL
// configuration (preallocated segments, always-ready spare): the persist-loop workload runs in a
// first process that is killed (page cache survives, unsynced); a second process opens the same
// disk, re-offers what it does not hold, adds two roads of new blocks and CommitQCs and waits for
// them to be durable (acknowledged); then the power fails. The usual recovery check follows:
// every acknowledged anchor, CommitQC and voteable block of either process is there.
import { test } from 'node:test';
import { ConsensusPersistence } from '../../src/consensus/persistence.ts';
import { seedFromEnv } from '../../src/lib/rng.ts';
import { type KillThenCrashScenario, POLICIES, runKillThenCrashSweep } from '../support/crashHarness.ts';
import { type Acks, options, persistLoopScenario, type WalConfig } from './workload.ts';

function scenario(wal: WalConfig): KillThenCrashScenario<Acks> {
  const loop = persistLoopScenario(5, wal);
  return {
    name: `consensus persist loop (${wal} WAL) killed, reopened, extended, power cut`,
    start: loop.start,
    first: loop.run,
    async second(fs, acks) {
      const f = acks.fixture;
      const cp = await ConsensusPersistence.open({
        ...options(fs, f, wal),
        onFatal: (e) => (acks.failure = e),
      });
      const waits: Promise<unknown>[] = [];
      const offer = (lane: string, n: number): void => {
        cp.pushBlock(f.block(lane, n));
        const p = cp.waitVoteable(lane, n).then((status) => {
          if (status === 'durable') acks.voteable.set(lane, Math.max(acks.voteable.get(lane) ?? -1, n));
        });
        p.catch(() => undefined); // after a crash they all reject; the run stops at the next await
        waits.push(p);
      };
      cp.subscribeCommitQC((qc) => {
        acks.publishedRoad = Math.max(acks.publishedRoad, qc.roadIndex);
      });
      try {
        // What the dead process had accepted but never wrote is offered again, as peers would.
        for (const lane of f.lanes) {
          for (let n = cp.nextBlock(lane); n < f.blocksOf(lane).length; n++) offer(lane, n);
        }
        for (let r = (cp.lastCommitQC()?.roadIndex ?? -1) + 1; r < f.commitQCs.length; r++) {
          cp.pushCommitQC(f.commitQC(r));
        }
        for (let road = 0; road < 2; road++) {
          for (const lane of f.lanes) {
            const b = f.produceBlock(lane);
            offer(lane, b.block.header.blockNumber);
          }
          await new Promise<void>((resolve) => setImmediate(resolve));
          cp.pushCommitQC(f.nextCommitQC({ maxPerLane: 2 }));
        }
        await Promise.all(waits);
        await cp.waitCommitQC(f.commitQCs.length - 1);
      } finally {
        await cp.close().catch(() => undefined);
      }
    },
    check: loop.check,
  };
}

for (const wal of ['production', 'test'] as const) {
  // F3 (unsynced directory entries of a killed process) and F1 (page subsets) are fixed.
  test(`persist loop (${wal} WAL configuration): kill, reopen, acknowledged work, power loss`, async () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    const r = await runKillThenCrashSweep(scenario(wal), {
      seed,
      killPoints: { mode: 'sample', count: 25, maxAdjacent: 25 },
      crashPointsPerKill: 2,
      policies: [POLICIES.random, POLICIES.dropAll],
    });
    console.log(`${wal}: ${r.mutations} mutations, ${r.points} kill points, ${r.crashStates} crash states`);
  });
}
