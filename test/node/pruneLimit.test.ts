// The prune anchor must never pass the block store: an AppQC may arrive (from the network) before
// this node has flushed the roads below it. Pruning (memory and lane/CommitQC WALs) stops at the
// lower of the anchor and the block store's flushed road, so the finalizer still has every block
// it needs, now and after a restart.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { openBlockStore } from '../../src/blocks/openBlockStore.ts';
import { globalRangeOf } from '../../src/domain/committee.ts';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { BLOCKS_DIR, CairnNode } from '../../src/node/node.ts';
import { ConsensusFixture } from '../../src/testing/consensusFixture.ts';

test('an AppQC ahead of the block store prunes nothing the finalizer still needs, before or after a restart', async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'cairn-prune-limit-'));
  try {
    const fx = new ConsensusFixture({ lanes: 4, seed: 31, payloadBytes: 100 });
    const { node } = await CairnNode.open({ dataDir, committee: fx.committee });
    let anchorDurable: Promise<unknown> | undefined;
    try {
      for (const b of fx.produceRound(3)) node.consensus.pushBlock(b);
      for (const lane of fx.lanes) await node.consensus.waitVoteable(lane, 2);
      // The moment road 2 is durable (before the finalizer has written anything), the AppQC for
      // road 2 arrives and is handed over.
      node.consensus.subscribeCommitQC((qc) => {
        if (qc.roadIndex !== 2 || anchorDurable) return;
        node.consensus.pushAppQC(fx.appQC(qc), qc);
        anchorDurable = node.consensus.waitAnchorDurable(2);
        anchorDurable.catch(() => undefined); // awaited below unless the finalizer failed first
      });
      for (let r = 0; r < 3; r++) node.consensus.pushCommitQC(fx.nextCommitQC({ maxPerLane: 1 }));
      let poll: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve, reject) => {
        node.finalizer.onRoadFlushed((qc) => {
          if (qc.roadIndex === 2) resolve();
        });
        poll = setInterval(() => {
          if (node.finalizer.error) reject(node.finalizer.error);
        }, 5);
      }).finally(() => clearInterval(poll));
      assert.ok(anchorDurable, 'the AppQC was handed over');
      await anchorDurable;
      assert.equal(node.finalizer.error, undefined);
      assert.equal(node.finalizer.flushedRoads, 3);
    } finally {
      await node.close();
    }
    // A restart opens (the startup prune kept what the block store had not flushed) and the block
    // store on disk holds every finalized block from 0.
    const again = await CairnNode.open({ dataDir, committee: fx.committee });
    try {
      assert.equal(again.recovery.anchorRoad, 2);
    } finally {
      await again.node.close();
    }
    const store = await openBlockStore({ dir: path.join(dataDir, BLOCKS_DIR), fs: realFileSystem });
    try {
      assert.deepEqual(store.ranges().blocks, { first: 0, next: globalRangeOf(fx.commitQC(2)).next });
    } finally {
      await store.close();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
