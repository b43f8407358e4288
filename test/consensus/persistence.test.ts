import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { openAnchorStore } from '../../src/consensus/anchorStore.ts';
import { InFlightState } from '../../src/consensus/inFlightState.ts';
import { WalLogOpener } from '../../src/consensus/logOpener.ts';
import { PersistenceMetrics } from '../../src/consensus/metrics.ts';
import { ConsensusPersistence } from '../../src/consensus/persistence.ts';
import { commitQCCodec, signedLaneProposalCodec } from '../../src/domain/codecs.ts';
import { laneRangeOf } from '../../src/domain/committee.ts';
import type { SignedLaneProposal } from '../../src/domain/types.ts';
import { mkdirDurable } from '../../src/io/fileSystem.ts';
import { RealFileSystem } from '../../src/io/realFileSystem.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import type { ConsensusFixture } from '../../src/testing/consensusFixture.ts';
import {
  expectCairn,
  GatedFileSystem,
  openCp,
  ROOT,
  settle,
  simFs,
  smallFixture,
  tempDir,
} from './helpers.ts';

async function pushAndWait(cp: ConsensusPersistence, blocks: readonly SignedLaneProposal[]): Promise<void> {
  for (const b of blocks) assert.equal(cp.pushBlock(b), 'accepted');
  const statuses = await Promise.all(
    blocks.map((b) => cp.waitVoteable(b.block.header.lane, b.block.header.blockNumber)),
  );
  assert.ok(statuses.every((s) => s === 'durable'));
}

/** One "road": a round of blocks, the CommitQC finalizing them, and the AppQC of the previous road. */
async function road(cp: ConsensusPersistence, f: ConsensusFixture, blocksPerLane = 2): Promise<void> {
  await pushAndWait(cp, f.produceRound(blocksPerLane));
  const qc = f.nextCommitQC();
  assert.equal(cp.pushCommitQC(qc), 'accepted');
  assert.equal((await cp.waitCommitQC(qc.roadIndex)).roadIndex, qc.roadIndex);
  if (qc.roadIndex >= 1) {
    const anchorQC = f.commitQC(qc.roadIndex - 1);
    assert.equal(cp.pushAppQC(f.appQC(anchorQC), anchorQC), true);
    await cp.waitAnchorDurable(anchorQC.roadIndex);
  }
}

test('AC-12 prune moves the lane persist cursor forward: no busy loop, no read of pruned entries', async () => {
  const f = smallFixture(3);
  const lane = f.laneAt(0);
  const state = new InFlightState({
    committee: f.committee,
    metrics: new PersistenceMetrics(),
    verifySignatures: false,
  });
  const blocks = f.produceRound(4).filter((b) => b.block.header.lane === lane);
  for (const b of f.blocksOf(f.laneAt(0))) state.pushBlock(b);
  for (const l of f.lanes.slice(1)) for (const b of f.blocksOf(l)) state.pushBlock(b);
  const pending = state.waitVoteable(lane, 1);
  const qc0 = f.nextCommitQC({ maxPerLane: 3 });
  state.pushCommitQC(qc0);
  f.produceRound(1);
  const qc1 = f.nextCommitQC();
  for (const b of f.lanes.flatMap((l) => [f.block(l, 4)])) state.pushBlock(b);
  state.pushCommitQC(qc1);
  assert.equal(state.pushAppQC(f.appQC(qc1), qc1), true);
  const first = laneRangeOf(qc1, lane).first;
  assert.equal(first, 3);
  assert.equal(state.voteableNext(lane), 3, 'the cursor moved with the prune');
  assert.equal(await pending, 'pruned');
  // The disk is at 0 and the anchor is not durable: re-positioning must wait (no spin, no batch).
  assert.equal(state.takeLaneBatch(lane, 0, 100, 1 << 20), undefined);
  state.markAnchorDurable({ appQC: f.appQC(qc1), commitQC: qc1 });
  const batch = state.takeLaneBatch(lane, 0, 100, 1 << 20)!;
  assert.deepEqual(
    batch.proposals.map((p) => p.block.header.blockNumber),
    [3, 4],
    'the batch starts at the anchor, never at pruned entries',
  );
  assert.equal(batch.anchorQC, qc1);
  assert.ok(blocks.length > 0);
});

test('AC-13 crash between the anchor write and the CommitQC append: recovery uses the anchor QC', async () => {
  const fs = simFs();
  const f = smallFixture(3);
  let cp = await openCp(fs, f);
  await road(cp, f);
  await road(cp, f);
  await cp.close();
  // The anchor (road 4) became durable; the CommitQC log only holds roads 0..1.
  for (let i = 0; i < 3; i++) {
    f.produceRound(2);
    f.nextCommitQC();
  }
  const anchorQC = f.commitQC(4);
  const { store } = openAnchorStore(fs, ROOT);
  store.write(f.pruneAnchor(anchorQC));
  store.close();
  cp = await openCp(fs, f);
  assert.equal(cp.lastCommitQC()?.roadIndex, 4, 'the anchor QC is the latest CommitQC');
  assert.equal(cp.durableAnchor()?.commitQC.roadIndex, 4);
  assert.equal(cp.nextCommitQCRoad(), 5);
  for (const lane of f.lanes) {
    const first = laneRangeOf(anchorQC, lane).first;
    assert.deepEqual([cp.firstBlock(lane), cp.nextBlock(lane), cp.voteableNext(lane)], [first, first, first]);
  }
  // Consensus continues from there.
  f.produceRound(1);
  for (const lane of f.lanes)
    for (let n = laneRangeOf(anchorQC, lane).first; n < f.blocksOf(lane).length; n++)
      cp.pushBlock(f.block(lane, n));
  const qc5 = f.nextCommitQC();
  cp.pushCommitQC(qc5);
  await cp.waitCommitQC(5);
  await cp.close();
  // The startup wrote the anchor QC back into the log.
  const wal = await new WalLogOpener({ fs, preallocate: false }).open(path.join(ROOT, 'commitqcs'), 0);
  assert.deepEqual(
    [...wal.iterate()].map((r) => commitQCCodec.decode(r.payload).roadIndex),
    [4, 5],
  );
  await wal.close();
});

test('AC-14 end-to-end flow with disk persistence and concurrent prune, repeated', async () => {
  const seed = seedFromEnv();
  console.log('seed', seed);
  for (let run = 0; run < 5; run++) {
    const rng = new Rng(seed + run);
    const fs = simFs(seed + run);
    const f = smallFixture(4, seed + run);
    const cp = await openCp(fs, f, { segmentBytes: 2048 });
    const durable: Promise<unknown>[] = [];
    for (let r = 0; r < 12; r++) {
      // Blocks arrive; the CommitQC and the AppQC follow without waiting for durability, so
      // in-memory pruning races the persist loop.
      for (const b of f.produceRound(rng.int(1, 4))) {
        cp.pushBlock(b);
        durable.push(cp.waitVoteable(b.block.header.lane, b.block.header.blockNumber));
      }
      if (rng.bool(0.5)) await settle(rng.int(0, 3));
      const qc = f.nextCommitQC();
      cp.pushCommitQC(qc);
      if (r >= 2 && rng.bool(0.7)) {
        const a = f.commitQC(r - rng.int(0, 2));
        cp.pushAppQC(f.appQC(a), a);
      }
      if (rng.bool(0.3)) await settle(rng.int(0, 5));
    }
    await Promise.all(durable);
    const last = f.commitQCs.length - 1;
    await cp.waitCommitQC(last);
    const anchorRoad = cp.latestAnchor()!.commitQC.roadIndex;
    await cp.waitAnchorDurable(anchorRoad);
    assert.equal(cp.lastCommitQC()?.roadIndex, last);
    for (const lane of f.lanes) assert.equal(cp.voteableNext(lane), f.blocksOf(lane).length);
    assert.equal(cp.failure, undefined);
    await cp.close();
    const re = await openCp(fs, f);
    assert.equal(re.lastCommitQC()?.roadIndex, last);
    assert.equal(re.durableAnchor()?.commitQC.roadIndex, anchorRoad);
    for (const lane of f.lanes) assert.equal(re.nextBlock(lane), f.blocksOf(lane).length);
    await re.close();
  }
});

test('AC-15 full stop and restart restores the AppQC, CommitQCs, LastCommitQC and per-lane next block', async () => {
  const { dir, cleanup } = tempDir('cp-restart');
  try {
    const fs = new RealFileSystem();
    const f = smallFixture(4, 5, true, 512);
    const opts = { fs, dir, committee: f.committee, verifySignatures: true, segmentBytes: 64 * 1024 };
    let cp = await ConsensusPersistence.open(opts);
    for (let i = 0; i < 4; i++) await road(cp, f);
    for (const b of f.produceRound(1)) cp.pushBlock(b); // a few blocks beyond the last QC
    await Promise.all(f.lanes.map((l) => cp.waitVoteable(l, cp.nextBlock(l) - 1)));
    const before = {
      anchor: cp.durableAnchor()!.appQC,
      last: cp.lastCommitQC()!.roadIndex,
      next: f.lanes.map((l) => cp.nextBlock(l)),
      first: f.lanes.map((l) => cp.firstBlock(l)),
    };
    await cp.close();
    cp = await ConsensusPersistence.open(opts);
    assert.deepEqual(cp.durableAnchor()!.appQC, before.anchor);
    assert.equal(cp.lastCommitQC()!.roadIndex, before.last);
    assert.ok(cp.commitQC(before.anchor.proposal.roadIndex), 'CommitQCs from the anchor on are restored');
    assert.deepEqual(
      f.lanes.map((l) => cp.nextBlock(l)),
      before.next,
    );
    assert.deepEqual(
      f.lanes.map((l) => cp.voteableNext(l)),
      before.next,
      'everything loaded is durable, hence voteable',
    );
    assert.deepEqual(
      f.lanes.map((l) => cp.firstBlock(l)),
      before.first,
    );
    // And it continues.
    await road(cp, f);
    await cp.close();
  } finally {
    cleanup();
  }
});

test('restart rejects a lane log that starts past the anchor (GAP naming lane and number)', async () => {
  const fs = simFs();
  const f = smallFixture(2);
  const lane = f.laneAt(1);
  for (let i = 0; i < 9; i++) f.produceBlock(lane);
  mkdirDurable(fs, ROOT, path);
  const wal = await new WalLogOpener({ fs, preallocate: false }).open(path.join(ROOT, 'blocks', lane), 7);
  wal.append(
    [7, 8].map((n) => signedLaneProposalCodec.encode(f.block(lane, n))),
    7,
  );
  await wal.sync();
  await wal.close();
  const err = await expectCairn(
    () => openCp(fs, f),
    'GAP',
    /blocks \[0, 7\) are missing \(no prune anchor\)/,
  );
  assert.equal(err.details.lane, lane);
  assert.equal(err.details.blockNumber, 0);
});

test('restart rejects a CommitQC log that starts past the anchor', async () => {
  const fs = simFs();
  const f = smallFixture(2);
  for (let i = 0; i < 6; i++) {
    f.produceRound(1);
    f.nextCommitQC();
  }
  mkdirDurable(fs, ROOT, path);
  const wal = await new WalLogOpener({ fs, preallocate: false }).open(path.join(ROOT, 'commitqcs'), 4);
  wal.append([commitQCCodec.encode(f.commitQC(4)), commitQCCodec.encode(f.commitQC(5))], 4);
  await wal.sync();
  await wal.close();
  await expectCairn(() => openCp(fs, f), 'GAP', /starts at road 4 but no prune anchor/);
  const { store } = openAnchorStore(fs, ROOT);
  store.write(f.pruneAnchor(f.commitQC(1)));
  store.close();
  await expectCairn(() => openCp(fs, f), 'GAP', /roads \[2, 4\) are missing \(prune anchor at road 1\)/);
});

test('a slow lane delays neither other lanes nor CommitQC publication; its backlog costs one fsync', async () => {
  const f = smallFixture(3);
  const slow = f.laneAt(0);
  const fs = new GatedFileSystem(simFs(), slow);
  const cp = await openCp(fs, f);
  fs.hold();
  const first = f.produceBlock(slow);
  cp.pushBlock(first);
  const slowVoteable = cp.waitVoteable(slow, 0);
  await settle();
  assert.equal(fs.gatedSyncs, 1, 'the slow lane is inside its fsync');
  // Meanwhile: 20 more blocks on the slow lane, blocks on the others, and a CommitQC.
  const backlog = Array.from({ length: 20 }, () => f.produceBlock(slow));
  for (const b of backlog) cp.pushBlock(b);
  for (const lane of f.lanes.slice(1)) {
    const b = f.produceBlock(lane);
    cp.pushBlock(b);
    assert.equal(await cp.waitVoteable(lane, 0), 'durable');
  }
  const qc = f.nextCommitQC({ maxPerLane: 0 });
  cp.pushCommitQC(qc);
  await cp.waitCommitQC(0);
  assert.equal(cp.voteableNext(slow), 0, 'the slow lane is still waiting for its fsync');
  fs.release();
  assert.equal(await slowVoteable, 'durable');
  // (The lane's first fsyncs also created its log: count from block 0 being durable.)
  const syncsAfterFirst = fs.gatedSyncs;
  await cp.waitVoteable(slow, 20);
  assert.equal(fs.gatedSyncs, syncsAfterFirst + 1, 'the 20 queued blocks were made durable by one fsync');
  await cp.close();
});

test('admission: order, conflicts, duplicates and the window of the durable anchor', async () => {
  const fs = simFs();
  const f = smallFixture(2);
  const lane = f.laneAt(0);
  const cp = await openCp(fs, f, { blocksPerLane: 4 });
  const blocks = Array.from({ length: 6 }, () => f.produceBlock(lane));
  await expectCairn(() => cp.pushBlock(blocks[1]!), 'OUT_OF_ORDER', /expects block 0 next/);
  for (const b of blocks.slice(0, 4)) cp.pushBlock(b);
  assert.equal(cp.pushBlock(blocks[2]!), 'duplicate');
  const other = smallFixture(2, 11, false, 65).produceBlock(lane);
  await expectCairn(() => cp.pushBlock(other), 'CONFLICT', /different block/);
  await expectCairn(() => cp.pushBlock(blocks[4]!), 'BACKPRESSURE', /outside the admission window \[0, 4\)/);
  const capacity = cp.waitForCapacity(lane);
  f.produceBlock(f.laneAt(1));
  cp.pushBlock(f.block(f.laneAt(1), 0));
  const qc0 = f.nextCommitQC({ maxPerLane: 2 });
  const qc1 = f.nextCommitQC({ maxPerLane: 2 });
  cp.pushCommitQC(qc0);
  cp.pushCommitQC(qc1);
  await expectCairn(() => cp.pushCommitQC({ ...qc1, roadIndex: 3 }), 'OUT_OF_ORDER');
  assert.equal(cp.pushCommitQC(qc1), 'duplicate');
  cp.pushAppQC(f.appQC(qc1), qc1);
  await capacity; // the anchor (lane first 2) is durable: the window is now [2, 6)
  assert.equal(cp.pushBlock(blocks[4]!), 'accepted');
  assert.equal(cp.pushBlock(blocks[5]!), 'accepted');
  assert.equal(cp.pushBlock(blocks[0]!), 'pruned');
  await cp.waitVoteable(lane, 5);
  await cp.close();
  await cp.close(); // idempotent
  await expectCairn(() => cp.pushBlock(f.produceBlock(lane)), 'CLOSED');
});

test('no-op mode: the same loop runs, cursors advance, nothing is written', async () => {
  const f = smallFixture(3);
  const warnings: string[] = [];
  const cp = await ConsensusPersistence.open({
    committee: f.committee,
    verifySignatures: false,
    onWarning: (m) => warnings.push(m),
  });
  assert.equal(cp.noop, true);
  assert.match(warnings.join(), /DISABLED/);
  for (let i = 0; i < 4; i++) await road(cp, f);
  assert.equal(cp.lastCommitQC()?.roadIndex, 3);
  assert.equal(cp.durableAnchor()?.commitQC.roadIndex, 2);
  assert.ok(cp.metrics.fsyncs > 0, 'the persisters ran (their syncs are no-ops)');
  await cp.close();
  await expectCairn(
    () => ConsensusPersistence.open({ committee: f.committee, dir: '/x' }),
    'INVALID_ARGUMENT',
  );
});

test('a failed lane fsync is fatal: no cursor advances, waiters and later calls get the original error', async () => {
  const fs = simFs();
  const f = smallFixture(2);
  const lane = f.laneAt(0);
  let fatal: Error | undefined;
  const cp = await openCp(fs, f, { onFatal: (e) => (fatal = e) });
  await pushAndWait(cp, [f.produceBlock(lane)]);
  fs.injectFault({ op: 'syncAsync', nth: 1, error: 'EIO', pathIncludes: lane });
  const b1 = f.produceBlock(lane);
  cp.pushBlock(b1);
  await assert.rejects(cp.waitVoteable(lane, 1), (e) => isCairnError(e, 'IO_FATAL') && /EIO/.test(e.message));
  assert.equal(cp.voteableNext(lane), 1, 'the cursor did not pass the failed write');
  assert.ok(fatal && /EIO/.test(fatal.message));
  assert.equal(cp.failure, fatal);
  assert.throws(() => cp.pushBlock(f.produceBlock(f.laneAt(1))), /EIO/);
  await assert.rejects(cp.waitCommitQC(0), /EIO/);
  await cp.close().catch(() => undefined);
  // After a restart the durable prefix is intact.
  const re = await openCp(fs, f);
  assert.ok(re.nextBlock(lane) >= 1);
  await re.close();
});
