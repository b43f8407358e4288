import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { ConsensusPersistence } from '../../src/consensus/persistence.ts';
import { globalRangeOf } from '../../src/domain/committee.ts';
import { hashBlockHeader } from '../../src/domain/crypto.ts';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { bytesEqual } from '../../src/lib/bytes.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { runDevnet } from '../../src/node/devnet.ts';
import { CairnNode, CONSENSUS_DIR } from '../../src/node/node.ts';
import { ConsensusFixture } from '../../src/testing/consensusFixture.ts';

function tempDir(name: string): string {
  return mkdtempSync(path.join(tmpdir(), `cairn-node-${name}-`));
}

/** Writes `roads` CommitQCs (and their blocks) through consensus persistence only: no block store. */
async function persistConsensusOnly(dataDir: string, fx: ConsensusFixture, roads: number): Promise<void> {
  const cp = await ConsensusPersistence.open({
    fs: realFileSystem,
    dir: path.join(dataDir, CONSENSUS_DIR),
    committee: fx.committee,
  });
  try {
    for (let r = 0; r < roads; r++) {
      for (const b of fx.produceRound(2)) {
        cp.pushBlock(b);
        await cp.waitVoteable(b.block.header.lane, b.block.header.blockNumber);
      }
      const qc = fx.nextCommitQC({ upTo: (lane) => cp.voteableNext(lane) });
      cp.pushCommitQC(qc);
      await cp.waitCommitQC(qc.roadIndex);
    }
  } finally {
    await cp.close();
  }
}

test('opening a node rewrites finalized blocks the block store lacks from the lane WALs', async () => {
  const dataDir = tempDir('catchup');
  try {
    const fx = new ConsensusFixture({ lanes: 4, seed: 7, payloadBytes: 300 });
    await persistConsensusOnly(dataDir, fx, 3);
    const expectedNext = globalRangeOf(fx.commitQC(2)).next;

    const { node, recovery } = await CairnNode.open({ dataDir, committee: fx.committee });
    try {
      assert.equal(recovery.refetchedBlocks, expectedNext);
      assert.deepEqual(recovery.blocks, { first: 0, next: expectedNext, floor: 0 });
      assert.equal(node.finalizer.flushedRoads, 3);
      // Every block is readable by number and by hash, and matches the QC's header.
      for (let road = 0; road < 3; road++) {
        const full = fx.fullCommitQC(fx.commitQC(road));
        const first = globalRangeOf(full.qc).first;
        full.headers.forEach((header, i) => {
          const byNumber = node.blocks.readBlock(first + i);
          assert.equal(byNumber.status, 'found');
          if (byNumber.status === 'found') {
            assert.ok(bytesEqual(hashBlockHeader(byNumber.value.header), hashBlockHeader(header)));
          }
          assert.equal(node.blocks.readBlockByHash(hashBlockHeader(header)).status, 'found');
        });
      }
    } finally {
      await node.close();
    }

    // A second open finds nothing to rewrite.
    const again = await CairnNode.open({ dataDir, committee: fx.committee });
    assert.equal(again.recovery.refetchedBlocks, 0);
    assert.equal(again.recovery.blocks.next, expectedNext);
    await again.node.close();
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('a second node on the same data directory fails with LOCKED and leaves the first one working', async () => {
  const dataDir = tempDir('lock');
  try {
    const fx = new ConsensusFixture({ lanes: 4, seed: 8 });
    const first = await CairnNode.open({ dataDir, committee: fx.committee });
    await assert.rejects(CairnNode.open({ dataDir, committee: fx.committee }), (err) =>
      isCairnError(err, 'LOCKED'),
    );
    const b = fx.produceBlock(fx.laneAt(0));
    first.node.consensus.pushBlock(b);
    assert.equal(await first.node.consensus.waitVoteable(b.block.header.lane, 0), 'durable');
    await first.node.close();
    // Released on close: a new node opens.
    const second = await CairnNode.open({ dataDir, committee: fx.committee });
    assert.equal(second.node.consensus.voteableNext(fx.laneAt(0)), 1);
    await second.node.close();
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('the devnet finalizes blocks, advances the anchor, prunes, and resumes where it stopped', async () => {
  const dataDir = tempDir('devnet');
  const out = new PassThrough();
  let printed = '';
  out.on('data', (chunk) => {
    printed += String(chunk);
  });
  const base = {
    dataDir,
    lanes: 4,
    lanesExplicit: true,
    seed: 3,
    ratePerLane: 200,
    blockBytes: 512,
    commitIntervalMs: 10,
    appLagRoads: 1,
    retainBlocks: 200,
    durationS: 0,
    logIntervalS: 60,
    out,
  };
  try {
    const first = await runDevnet({ ...base, blocks: 1500 });
    assert.equal(first.error, undefined);
    assert.equal(first.stoppedBy, 'blocks');
    assert.ok(first.blocksFinalized >= 1500);
    assert.match(printed, /new data directory/);

    const second = await runDevnet({ ...base, blocks: 300 });
    assert.equal(second.error, undefined);
    assert.equal(second.recovery.fresh, false);
    assert.ok(second.recovery.anchorRoad !== undefined, 'the prune anchor advanced in the first run');
    assert.ok(second.recovery.blocks.next >= 1500);
    assert.ok(second.recovery.blocks.floor > 0, 'the block store pruned below its retain height');
    assert.match(printed, /devnet: recovered/);

    // A devnet directory keeps its committee: a different --lanes is refused.
    await assert.rejects(runDevnet({ ...base, lanes: 5, blocks: 1 }), (err) =>
      isCairnError(err, 'INVALID_ARGUMENT'),
    );
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
