// Consensus pruning stops at the lower of the prune anchor and the block store's flushed road
// (`finalizedGlobalNext` at open, `setFinalizedRoads` afterwards): in memory, in the WALs, and at
// the startup prune.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { ConsensusPersistence } from '../../src/consensus/persistence.ts';
import { globalRangeOf, laneRangeOf } from '../../src/domain/committee.ts';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { ConsensusFixture } from '../../src/testing/consensusFixture.ts';

test('an anchor ahead of the block store prunes only what the block store holds, live and at startup', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cairn-cp-prune-limit-'));
  const fx = new ConsensusFixture({ lanes: 4, seed: 41, payloadBytes: 64 });
  const lane = fx.laneAt(0);
  const open = (finalizedGlobalNext?: number) =>
    ConsensusPersistence.open({
      fs: realFileSystem,
      dir,
      committee: fx.committee,
      lazyPrune: false,
      ...(finalizedGlobalNext !== undefined ? { finalizedGlobalNext } : {}),
    });
  try {
    const cp = await open(0);
    try {
      for (const b of fx.produceRound(4)) cp.pushBlock(b);
      for (const l of fx.lanes) await cp.waitVoteable(l, 3);
      for (let r = 0; r < 4; r++) cp.pushCommitQC(fx.nextCommitQC({ maxPerLane: 1 }));
      await cp.waitCommitQC(3);
      const q2 = fx.commitQC(2);
      assert.equal(cp.pushAppQC(fx.appQC(q2), q2), true);
      await cp.waitAnchorDurable(2);
      // Nothing is flushed downstream: every block and QC stays.
      assert.equal(cp.firstBlock(lane), 0);
      assert.ok(cp.block(lane, 0));
      assert.ok(cp.commitQC(0));
      // The block store flushed road 0: pruning follows to road 0 only.
      cp.setFinalizedRoads(1);
      assert.equal(cp.firstBlock(lane), laneRangeOf(fx.commitQC(0), lane).first);
      assert.ok(cp.commitQC(0));
    } finally {
      await cp.close();
    }
    // Startup with the block store at the end of road 0: the lane WALs still hold road 1's blocks.
    const g1 = globalRangeOf(fx.commitQC(1)).first;
    const again = await open(g1);
    try {
      assert.equal(again.durableAnchor()?.commitQC.roadIndex, 2);
      assert.equal(again.firstBlock(lane), laneRangeOf(fx.commitQC(0), lane).first);
      assert.ok(again.block(lane, laneRangeOf(fx.commitQC(1), lane).first), 'road 1 block held');
      assert.ok(again.commitQC(1), 'road 1 QC held');
    } finally {
      await again.close();
    }
    // Block store past the anchor: pruning follows the anchor (road 2), as without a block store.
    const last = await open(globalRangeOf(fx.commitQC(3)).next);
    try {
      assert.equal(last.firstBlock(lane), laneRangeOf(fx.commitQC(2), lane).first);
      assert.equal(last.commitQC(1), undefined);
    } finally {
      await last.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
