// The finalizer must write every durable road to the block store, in order, whatever the grouping
// of CommitQC fsyncs; and at startup it must never start an empty block store above block 0.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { openBlockStore } from '../../src/blocks/openBlockStore.ts';
import { ConsensusPersistence } from '../../src/consensus/persistence.ts';
import { globalRangeOf } from '../../src/domain/committee.ts';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { BLOCKS_DIR, CairnNode, CONSENSUS_DIR } from '../../src/node/node.ts';
import { ConsensusFixture } from '../../src/testing/consensusFixture.ts';

function tempDir(name: string): string {
  return mkdtempSync(path.join(tmpdir(), `cairn-finalizer-${name}-`));
}

test('one CommitQC fsync covering several roads: every road is flushed, in order, from block 0', async () => {
  const dataDir = tempDir('grouped');
  try {
    const fx = new ConsensusFixture({ lanes: 4, seed: 21, payloadBytes: 100 });
    const { node } = await CairnNode.open({ dataDir, committee: fx.committee });
    try {
      const heard: number[] = [];
      node.finalizer.onRoadFlushed((qc) => heard.push(qc.roadIndex));
      for (const b of fx.produceRound(3)) node.consensus.pushBlock(b);
      for (const lane of fx.lanes) await node.consensus.waitVoteable(lane, 2);
      // Pipelined consensus: three QCs handed over before the CommitQC log's next fsync.
      for (let r = 0; r < 3; r++) node.consensus.pushCommitQC(fx.nextCommitQC({ maxPerLane: 1 }));
      await node.consensus.waitCommitQC(2);
      const all = new Promise<void>((resolve) => {
        node.finalizer.onRoadFlushed((qc) => {
          if (qc.roadIndex === 2) resolve();
        });
      });
      await all;
      assert.deepEqual(heard, [0, 1, 2], 'every road announced, in order');
      assert.equal(node.finalizer.flushedRoads, 3);
    } finally {
      await node.close();
    }
    // What is on disk: the block store holds [0, next of road 2) and every block reads back.
    const store = await openBlockStore({ dir: path.join(dataDir, BLOCKS_DIR), fs: realFileSystem });
    try {
      const r = store.ranges();
      assert.deepEqual(r.blocks, { first: 0, next: globalRangeOf(fx.commitQC(2)).next });
      for (let n = r.blocks.first; n < r.blocks.next; n++) assert.equal(store.readBlock(n).status, 'found');
    } finally {
      await store.close();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('catch-up refuses to start an empty block store above block 0 (DATA_LOSS, nothing written)', async () => {
  const dataDir = tempDir('empty-start');
  try {
    // Consensus holds one road whose blocks start at global 40 (what the buggy finalizer produced
    // on an empty store: the roads below were skipped, the store started at the newest road).
    const fx40 = new ConsensusFixture({ lanes: 4, seed: 22, payloadBytes: 100, globalFirst: 40 });
    const cp = await ConsensusPersistence.open({
      fs: realFileSystem,
      dir: path.join(dataDir, CONSENSUS_DIR),
      committee: fx40.committee,
    });
    try {
      for (const b of fx40.produceRound(2)) cp.pushBlock(b);
      for (const lane of fx40.lanes) await cp.waitVoteable(lane, 1);
      cp.pushCommitQC(fx40.nextCommitQC());
      await cp.waitCommitQC(0);
    } finally {
      await cp.close();
    }
    await assert.rejects(CairnNode.open({ dataDir, committee: fx40.committee }), (err) => {
      assert.ok(isCairnError(err, 'DATA_LOSS'), String(err));
      assert.match((err as Error).message, /\[0, 40\)/);
      return true;
    });
    const store = await openBlockStore({ dir: path.join(dataDir, BLOCKS_DIR), fs: realFileSystem });
    try {
      assert.deepEqual(store.ranges().blocks, { first: 0, next: 0 }, 'nothing was written');
    } finally {
      await store.close();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
