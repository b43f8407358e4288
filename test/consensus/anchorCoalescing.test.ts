/**
 * Coalesced prune-anchor writes (PersistLoop `anchorWriteIntervalMs`): at most one anchor write per
 * interval while nothing needs the durable anchor, and at once when something does
 * (`waitAnchorDurable`, `waitForCapacity`, a lane past half of its admission window, a batch
 * deferred until the anchor is durable). Every check reads the anchor back from disk.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openAnchorStore } from '../../src/consensus/anchorStore.ts';
import { InFlightState } from '../../src/consensus/inFlightState.ts';
import { PersistenceMetrics } from '../../src/consensus/metrics.ts';
import type { ConsensusPersistence } from '../../src/consensus/persistence.ts';
import type { ConsensusFixture } from '../../src/testing/consensusFixture.ts';
import type { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { openCp, ROOT, settle, simFs, smallFixture } from './helpers.ts';

/** Long enough that only an urgent need (or a test timeout) can explain a second write. */
const LONG_INTERVAL_MS = 600_000;

/** Road of the anchor the disk holds (a fresh open of the A/B file, as a restart would see it). */
function anchorRoadOnDisk(fs: SimulatedFileSystem): number | undefined {
  const { store, loaded } = openAnchorStore(fs, ROOT);
  store.close();
  return loaded?.commitQC.roadIndex;
}

/** A round of blocks per lane, made durable, then its CommitQC (published). Returns the road. */
async function roadOfBlocks(cp: ConsensusPersistence, f: ConsensusFixture): Promise<number> {
  const blocks = f.produceRound(1);
  for (const b of blocks) cp.pushBlock(b);
  await Promise.all(blocks.map((b) => cp.waitVoteable(b.block.header.lane, b.block.header.blockNumber)));
  const qc = f.nextCommitQC();
  cp.pushCommitQC(qc);
  await cp.waitCommitQC(qc.roadIndex);
  return qc.roadIndex;
}

function pushAnchor(cp: ConsensusPersistence, f: ConsensusFixture, road: number): void {
  const qc = f.commitQC(road);
  assert.equal(cp.pushAppQC(f.appQC(qc), qc), true);
}

test('anchor writes are coalesced while nothing waits; waitAnchorDurable writes the newest at once', {
  timeout: 60_000,
}, async () => {
  const fs = simFs();
  const f = smallFixture(3);
  const cp = await openCp(fs, f, { anchorWriteIntervalMs: LONG_INTERVAL_MS });
  for (let i = 0; i < 5; i++) await roadOfBlocks(cp, f);
  // The first anchor goes at once (no write yet in this interval).
  pushAnchor(cp, f, 0);
  await cp.waitAnchorDurable(0);
  assert.equal(anchorRoadOnDisk(fs), 0);
  assert.equal(cp.metrics.anchorWrites, 1);
  // Three more within the interval, nobody waiting: none is written.
  for (const road of [1, 2, 3]) pushAnchor(cp, f, road);
  await settle();
  assert.equal(cp.metrics.anchorWrites, 1, 'coalesced: no write inside the interval');
  assert.equal(cp.durableAnchor()?.commitQC.roadIndex, 0);
  assert.equal(anchorRoadOnDisk(fs), 0, 'the disk still holds the first anchor');
  assert.equal(cp.latestAnchor()?.commitQC.roadIndex, 3);
  // A waiter makes it urgent: one write, of the newest anchor.
  const durable = await cp.waitAnchorDurable(2);
  assert.equal(durable.commitQC.roadIndex, 3);
  assert.equal(cp.metrics.anchorWrites, 2, 'roads 1..3 cost one write');
  assert.equal(anchorRoadOnDisk(fs), 3);
  await cp.close();
});

test('a coalesced anchor is written when its interval ends, without any waiter', {
  timeout: 60_000,
}, async () => {
  const fs = simFs(2);
  const f = smallFixture(3);
  const cp = await openCp(fs, f, { anchorWriteIntervalMs: 30 });
  for (let i = 0; i < 3; i++) await roadOfBlocks(cp, f);
  pushAnchor(cp, f, 0);
  await cp.waitAnchorDurable(0);
  pushAnchor(cp, f, 1);
  // (That road 1 is held back is the first test's job, with an interval no test run outlasts.)
  // Poll (no waiter: a waiter would make the write urgent) until the timer's write is durable.
  while (cp.durableAnchor()?.commitQC.roadIndex !== 1) await new Promise((r) => setTimeout(r, 5));
  assert.equal(cp.metrics.anchorWrites, 2);
  assert.equal(anchorRoadOnDisk(fs), 1);
  await cp.close();
});

test('capacity: a lane that fills its admission window gets room from the pending anchor at once', {
  timeout: 60_000,
}, async () => {
  const fs = simFs(3);
  const f = smallFixture(3);
  const blocksPerLane = 6;
  const cp = await openCp(fs, f, { anchorWriteIntervalMs: LONG_INTERVAL_MS, blocksPerLane });
  const lane = f.laneAt(0);
  await roadOfBlocks(cp, f);
  pushAnchor(cp, f, 0);
  await cp.waitAnchorDurable(0);
  // Road 1 and its anchor (coalesced: the interval has just started, the lanes have room).
  await roadOfBlocks(cp, f);
  pushAnchor(cp, f, 1);
  await settle();
  assert.equal(anchorRoadOnDisk(fs), 0, 'nothing needs the anchor yet');
  // Fill lane 0's window (its base is the durable anchor of road 0): the next push is refused.
  // (Pushes are synchronous: the anchor pipeline cannot run in between.)
  const base = cp.durableAnchor()!.commitQC.laneRanges.find((r) => r.lane === lane)!.first;
  while (cp.nextBlock(lane) < base + blocksPerLane) cp.pushBlock(f.produceBlock(lane));
  const next = f.produceBlock(lane);
  assert.throws(() => cp.pushBlock(next), /admission window/);
  // Room comes from the anchor of road 1, which must be made durable now, not in ten minutes.
  await cp.waitForCapacity(lane);
  assert.equal(cp.durableAnchor()?.commitQC.roadIndex, 1);
  assert.equal(anchorRoadOnDisk(fs), 1, 'capacity is released only by an anchor that is on disk');
  assert.equal(cp.pushBlock(next), 'accepted');
  await cp.close();
});

test('urgency: waiters, half of an admission window, and a batch deferred until the anchor is durable', () => {
  const f = smallFixture(3);
  const metrics = new PersistenceMetrics();
  const state = new InFlightState({
    committee: f.committee,
    metrics,
    verifySignatures: false,
    blocksPerLane: 8,
  });
  const lane = f.laneAt(0);
  assert.equal(state.anchorWriteUrgent(), false);
  // Half of the window (4 of 8 blocks above the durable anchor's base) is urgent.
  for (let i = 0; i < 3; i++) state.pushBlock(f.produceBlock(lane));
  assert.equal(state.anchorWriteUrgent(), false);
  state.pushBlock(f.produceBlock(lane));
  assert.equal(state.anchorWriteUrgent(), true);

  // Another state: an anchor waiter is urgent.
  const s2 = new InFlightState({ committee: f.committee, metrics, verifySignatures: false });
  void s2.waitAnchorDurable(5).catch(() => undefined);
  assert.equal(s2.anchorWriteUrgent(), true);
  s2.close();

  // A lane whose in-memory anchor passed blocks the disk never got: its batch is deferred, urgently.
  const g = smallFixture(3, 12);
  const s3 = new InFlightState({ committee: g.committee, metrics, verifySignatures: false });
  const l0 = g.laneAt(0);
  for (const b of g.produceRound(3)) s3.pushBlock(b);
  const qc0 = g.nextCommitQC();
  s3.pushCommitQC(qc0);
  for (const b of g.produceRound(1)) s3.pushBlock(b);
  const qc1 = g.nextCommitQC();
  s3.pushCommitQC(qc1);
  // The anchor of road 1 starts each lane at 3: blocks 0..2 are pruned before the disk had them.
  assert.equal(s3.pushAppQC(g.appQC(qc1), qc1), true);
  assert.equal(s3.anchorWriteUrgent(), false, 'an anchor alone is not urgent');
  assert.equal(s3.takeLaneBatch(l0, 0, 100, 1 << 20), undefined, 'deferred: the disk is at 0');
  assert.equal(s3.anchorWriteUrgent(), true);
  s3.markAnchorDurable({ appQC: g.appQC(qc1), commitQC: qc1 });
  assert.equal(s3.anchorWriteUrgent(), false, 'the durable anchor clears it');
  s3.close();
});
