// Consensus spec weak points (issue #9 item 11): records loaded from the WALs are re-verified at
// open (a typed error naming the lane and block, or the road); after a reset past what a lane
// held, the first blocks must chain to what the prune anchor's CommitQC certifies.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { BlockPersister } from '../../src/consensus/blockPersister.ts';
import { WalLogOpener } from '../../src/consensus/logOpener.ts';
import { PersistenceMetrics } from '../../src/consensus/metrics.ts';
import { ConsensusPersistence } from '../../src/consensus/persistence.ts';
import { hashPayload, signLaneProposal } from '../../src/domain/crypto.ts';
import type { SignedLaneProposal } from '../../src/domain/types.ts';
import { ZERO_HASH } from '../../src/domain/types.ts';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { ConsensusFixture } from '../../src/testing/consensusFixture.ts';
import { simFs, smallFixture } from './helpers.ts';

test('a lane block whose signature does not verify is refused at open, naming lane and block', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cairn-load-verify-'));
  try {
    const fx = new ConsensusFixture({ lanes: 4, seed: 51, payloadBytes: 32 });
    const lane = fx.laneAt(1);
    // Written by a process that did not verify (or damaged behind a valid frame checksum).
    const cp = await ConsensusPersistence.open({
      fs: realFileSystem,
      dir,
      committee: fx.committee,
      verifySignatures: false,
    });
    try {
      const good = fx.produceBlock(lane);
      const forged = fx.produceBlock(lane);
      const bad: SignedLaneProposal = { ...forged, signature: new Uint8Array(64) };
      cp.pushBlock(good);
      cp.pushBlock(bad);
      await cp.waitVoteable(lane, 1);
    } finally {
      await cp.close();
    }
    await assert.rejects(
      ConsensusPersistence.open({ fs: realFileSystem, dir, committee: fx.committee }),
      (err) => {
        assert.ok(isCairnError(err, 'CORRUPT'), String(err));
        assert.match((err as Error).message, new RegExp(`lane ${lane.slice(0, 12)}.*block 1`));
        assert.equal((err as { details: { blockNumber?: number } }).details.blockNumber, 1);
        return true;
      },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('after an anchor reset past a lane, the first blocks must chain to the anchor QC', async () => {
  const fx = new ConsensusFixture({ lanes: 4, seed: 52, payloadBytes: 32 });
  const lane = fx.laneAt(0);
  const key = fx.keys.find((k) => k.publicKey === lane)!;
  fx.produceRound(2);
  const q0 = fx.nextCommitQC({ maxPerLane: 1 });
  const q1 = fx.nextCommitQC({ maxPerLane: 1 });
  const cp = await ConsensusPersistence.open({ committee: fx.committee });
  try {
    // This node received none of the blocks; the anchor at road 1 re-positions every lane at 1.
    cp.pushCommitQC(q0);
    assert.equal(cp.pushAppQC(fx.appQC(q1), q1), true);
    assert.equal(cp.nextBlock(lane), 1);
    // A block 1 signed by the lane owner but not the one road 1 certifies.
    const payload = new Uint8Array([1, 2, 3]);
    const header = { lane, blockNumber: 1, parentHash: ZERO_HASH, payloadHash: hashPayload(payload) };
    const forged: SignedLaneProposal = {
      block: { header, payload },
      signature: signLaneProposal(key, header),
    };
    assert.throws(
      () => cp.pushBlock(forged),
      (err) => isCairnError(err, 'CONFLICT'),
    );
    // The certified block is accepted.
    assert.equal(cp.pushBlock(fx.block(lane, 1)), 'accepted');
  } finally {
    await cp.close();
  }
});

test('open seeks each lane log to the prune point: records below it are not read back', async () => {
  const fs = simFs(53);
  const f = smallFixture(2, 53);
  const lane = f.laneAt(0);
  const opener = () => new WalLogOpener({ fs, segmentBytes: 1 << 20, preallocate: false });
  const first = await BlockPersister.open({
    opener: opener(),
    blocksDir: '/data/blocks',
    lanes: f.lanes,
    metrics: new PersistenceMetrics(),
  });
  const blocks = Array.from({ length: 40 }, () => f.produceBlock(lane));
  await first.persister.persistBlocks(lane, blocks);
  await first.persister.close();
  // The prune point is at block 30 (lazy pruning left 0..29 in the log's only segment).
  const again = await BlockPersister.open({
    opener: opener(),
    blocksDir: '/data/blocks',
    lanes: f.lanes,
    metrics: new PersistenceMetrics(),
    startOf: () => 30,
  });
  try {
    const loaded = again.loaded.find((l) => l.lane === lane)!;
    assert.equal(loaded.first, 0, 'the log still holds 0..29');
    assert.deepEqual(
      loaded.blocks.map((p) => p.block.header.blockNumber),
      Array.from({ length: 10 }, (_, i) => 30 + i),
    );
  } finally {
    await again.persister.close();
  }
});
