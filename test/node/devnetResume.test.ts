// The devnet must make progress after a restart whatever state the previous process left: in
// particular when every lane's admission window is full, every durable block is already finalized
// and flushed, and the prune anchor lags (the process died between a flushed road and its AppQC).
// Only a new AppQC can widen the windows then; nothing else will ever wake the lanes.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { seededCommittee } from '../../src/domain/committee.ts';
import { Rng } from '../../src/lib/rng.ts';
import { DevnetSimulation, type SimulationOptions } from '../../src/node/devnetSimulation.ts';
import { CairnNode } from '../../src/node/node.ts';

const LANES = 4;
const BLOCKS_PER_LANE = 8;

async function until(what: string, cond: () => boolean, limitMs = 20_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > limitMs) throw new Error(`gave up waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('a devnet restarted with full admission windows and a lagging anchor resumes voting', async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'cairn-devnet-resume-'));
  const { committee, keys } = seededCommittee(LANES, 5);
  const base: SimulationOptions = {
    ratePerLane: 200,
    blockBytes: 64,
    commitIntervalMs: 5,
    appLagRoads: 1,
    retainBlocks: 0,
  };
  const open = () => CairnNode.open({ dataDir, committee, blocksPerLane: BLOCKS_PER_LANE });
  try {
    // Run 1: no AppQC ever (lag beyond reach), so the windows fill and everything gets finalized.
    {
      const { node } = await open();
      const sim = new DevnetSimulation(node, keys, { ...base, appLagRoads: 1_000_000 }, new Rng(1));
      sim.start();
      await until('every lane full, finalized and flushed', () => {
        const last = node.consensus.lastCommitQC();
        if (!last) return false;
        return (
          last.laneRanges.every((lr) => lr.next === BLOCKS_PER_LANE) &&
          node.finalizer.flushedRoads === last.roadIndex + 1
        );
      });
      await sim.stop();
      await node.close();
    }
    // Run 2: the normal lag. The state on disk is what a kill between "road flushed" and "AppQC
    // durable" leaves; the simulation must form the AppQC the dead process owed.
    const { node } = await open();
    try {
      assert.equal(node.consensus.durableAnchor(), undefined, 'run 1 left no anchor');
      let votes = 0;
      const sim = new DevnetSimulation(node, keys, base, new Rng(2), { onVote: () => votes++ });
      sim.start();
      // Bounded by the test timeout, not by a timing assertion: today's code never votes again.
      await until('a vote after the restart', () => votes > 0 || sim.error !== undefined, 15_000);
      assert.equal(sim.error, undefined);
      assert.ok(node.consensus.latestAnchor() !== undefined, 'an AppQC moved the anchor');
      await sim.stop();
    } finally {
      await node.close();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
