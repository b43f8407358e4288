/**
 * Review of the inline lane write (lat3: an idle lane writes its block and starts its fsync inside
 * `pushBlock`). Hostile use: the consensus layer reacts to a vote inside the vote callback itself
 * (`subscribeVoteable` runs synchronously in the lane's fsync completion), pushing the lane's next
 * block and one of another lane from there, while CommitQCs and AppQCs move the prune anchor
 * (truncations, prunes) in between. At the moment each vote is released, the test takes a power-cut
 * image that keeps nothing unsynced (DROP_ALL) and later recovers it: every block voted durable at
 * that moment must come back, in order, with the producer's bytes. Randomized: prints its seed,
 * replays with CAIRN_SEED.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConsensusPersistence } from '../../src/consensus/persistence.ts';
import { encodeSignedLaneProposal } from '../../src/domain/codecs.ts';
import { laneRangeOf } from '../../src/domain/committee.ts';
import type { LaneId } from '../../src/domain/types.ts';
import { bytesEqual } from '../../src/lib/bytes.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { ConsensusFixture } from '../../src/testing/consensusFixture.ts';
import { DROP_ALL, SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { GatedFileSystem } from './helpers.ts';
import { options } from './workload.ts';

interface Capture {
  image: SimulatedFileSystem;
  /** Per lane: blocks below `voteable` were released, those below `memFirst` as pruned. */
  lanes: Map<LaneId, { voteable: number; memFirst: number }>;
}

const SEEDS = 6;
const ROADS = 20;
const MAX_IMAGES = 24;

async function runOnce(seed: number): Promise<{ images: number; votes: number; inCallback: number }> {
  const f = new ConsensusFixture({ lanes: 3, seed, payloadBytes: 100, sign: false });
  const rng = new Rng(seed ^ 0x5eed);
  const fs = new SimulatedFileSystem({ seed });
  let fatal: Error | undefined;
  const cp = await ConsensusPersistence.open({ ...options(fs, f), onFatal: (e) => (fatal = e) });
  const pushedNext = new Map<LaneId, number>(f.lanes.map((l) => [l, 0]));
  const captures: Capture[] = [];
  let votes = 0;
  let inCallback = 0;

  /** Pushes the lane's next block (produced on first use); false when the window is full. */
  const pushNext = (lane: LaneId): boolean => {
    const n = Math.max(pushedNext.get(lane)!, cp.firstBlock(lane));
    const b = f.blocksOf(lane)[n] ?? f.produceBlock(lane);
    try {
      const r = cp.pushBlock(b);
      assert.ok(r === 'accepted' || r === 'pruned', `lane block ${n}: ${r}`);
    } catch (err) {
      // CLOSED: a vote callback of a write that finishes inside close() (intake stopped first).
      if (isCairnError(err, 'BACKPRESSURE') || isCairnError(err, 'CLOSED')) return false;
      throw err;
    }
    pushedNext.set(lane, n + 1);
    return true;
  };

  cp.subscribeVoteable((lane) => {
    votes++;
    if (captures.length < MAX_IMAGES && rng.bool(0.35)) {
      const lanes = new Map<LaneId, { voteable: number; memFirst: number }>();
      for (const l of f.lanes) lanes.set(l, { voteable: cp.voteableNext(l), memFirst: cp.firstBlock(l) });
      captures.push({ image: fs.crashImage(DROP_ALL), lanes });
    }
    // React inside the callback: this lane's next block, sometimes another lane's too.
    if (rng.bool(0.7) && pushNext(lane)) inCallback++;
    if (rng.bool(0.3) && pushNext(f.lanes[rng.int(0, f.lanes.length)]!)) inCallback++;
  });

  for (let r = 0; r < ROADS; r++) {
    for (const lane of f.lanes) for (let i = rng.int(0, 3); i > 0; i--) pushNext(lane);
    for (let t = rng.int(0, 4); t > 0; t--) await new Promise<void>((resolve) => setImmediate(resolve));
    // Finalize only what was voted for; an AppQC for an earlier road moves the prune anchor.
    const qc = f.nextCommitQC({ maxPerLane: rng.int(1, 4), upTo: (lane) => cp.voteableNext(lane) });
    cp.pushCommitQC(qc);
    if (r >= 2 && rng.bool(0.6)) {
      const a = f.commitQC(r - 1 - rng.int(0, 2));
      cp.pushAppQC(f.appQC(a), a);
    }
  }
  for (const lane of f.lanes) {
    const next = pushedNext.get(lane)!;
    if (next > 0) await cp.waitVoteable(lane, next - 1);
  }
  await cp.close();
  assert.equal(fatal, undefined, `the store failed: ${fatal?.message}`);

  for (const [i, c] of captures.entries()) {
    const again = await ConsensusPersistence.open(options(c.image, f));
    try {
      const anchor = again.durableAnchor();
      for (const lane of f.lanes) {
        const at = c.lanes.get(lane)!;
        const anchorFirst = anchor ? laneRangeOf(anchor.commitQC, lane).first : 0;
        const next = again.nextBlock(lane);
        // Blocks released as durable (not as pruned by an anchor) at the moment of the image.
        const mustHave = Math.max(anchorFirst, at.memFirst);
        assert.ok(
          at.voteable <= mustHave || next >= at.voteable,
          `seed ${seed} image ${i} lane ${lane.slice(0, 8)}: blocks below ${at.voteable} were voted durable, recovery holds [${again.firstBlock(lane)}, ${next})`,
        );
        for (let n = again.firstBlock(lane); n < next; n++) {
          const b = again.block(lane, n);
          assert.ok(
            b && bytesEqual(encodeSignedLaneProposal(b), encodeSignedLaneProposal(f.block(lane, n))),
            `seed ${seed} image ${i} lane ${lane.slice(0, 8)}: block ${n} differs`,
          );
        }
      }
    } finally {
      await again.close();
    }
  }
  return { images: captures.length, votes, inCallback };
}

test('votes released from the fsync completion are durable; pushes made inside the vote callback are written in order', async () => {
  const base = seedFromEnv();
  console.log(
    `reviewInline seed ${base} (replay with CAIRN_SEED=${base}); seeds ${base}..${base + SEEDS - 1}`,
  );
  let images = 0;
  let inCallback = 0;
  for (let s = 0; s < SEEDS; s++) {
    const r = await runOnce((base + s) >>> 0);
    images += r.images;
    inCallback += r.inCallback;
  }
  console.log(
    `reviewInline: ${images} power-cut images checked, ${inCallback} pushes made inside vote callbacks`,
  );
  assert.ok(images > 0 && inCallback > 0, 'the workload exercised the callback path');
});

for (const [op, error] of [
  ['writev', 'EIO'],
  ['syncAsync', 'EIO'],
] as const) {
  test(`an inline lane write whose ${op} fails (${error}) latches: no vote, the same error everywhere after, other lanes stop too`, async () => {
    const f = new ConsensusFixture({ lanes: 2, seed: 5, payloadBytes: 100, sign: false });
    const [lane, other] = [f.laneAt(0), f.laneAt(1)];
    const fs = new SimulatedFileSystem({ seed: 5 });
    let fatal: Error | undefined;
    const cp = await ConsensusPersistence.open({ ...options(fs, f), onFatal: (e) => (fatal = e) });
    // Block 0 of each lane creates its log (the slow path); block 1 is then an inline write.
    for (const l of [lane, other]) {
      cp.pushBlock(f.produceBlock(l));
      assert.equal(await cp.waitVoteable(l, 0), 'durable');
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
    const fault = fs.injectFault({ op, nth: 1, error, pathIncludes: lane });
    const b1 = f.produceBlock(lane);
    assert.equal(cp.pushBlock(b1), 'accepted');
    if (op === 'writev') assert.equal(fault.firedCount, 1, 'the write ran inside pushBlock');
    const vote = cp.waitVoteable(lane, 1);
    const voteErr = await vote.then(
      () => assert.fail('a vote for a block whose write failed'),
      (e: unknown) => e as Error,
    );
    assert.equal(fault.firedCount, 1);
    assert.ok(fatal !== undefined, 'onFatal was called');
    assert.equal(voteErr, fatal, 'the vote waiter got the latched error');
    assert.equal(cp.voteableNext(lane), 1);
    assert.throws(
      () => cp.pushBlock(f.produceBlock(other)),
      (e) => e === fatal,
      'a later push rejects with the cause',
    );
    await assert.rejects(cp.waitVoteable(other, 1), (e) => e === fatal);
    await cp.close().catch(() => undefined);
    // What recovery finds is a prefix: block 0, and block 1 only if its bytes reached the disk.
    const again = await ConsensusPersistence.open(options(fs.crashImage(DROP_ALL), f));
    try {
      assert.ok(again.nextBlock(lane) >= 1);
      for (let n = 0; n < again.nextBlock(lane); n++) {
        assert.ok(
          bytesEqual(
            encodeSignedLaneProposal(again.block(lane, n)!),
            encodeSignedLaneProposal(f.block(lane, n)),
          ),
        );
      }
    } finally {
      await again.close();
    }
  });
}

test('close() while an inline write waits for its fsync: close waits for it, the vote is durable or CLOSED, recovery agrees', async () => {
  const f = new ConsensusFixture({ lanes: 2, seed: 9, payloadBytes: 100, sign: false });
  const lane = f.laneAt(0);
  const fs = new GatedFileSystem(new SimulatedFileSystem({ seed: 9 }), lane);
  const cp = await ConsensusPersistence.open(options(fs as unknown as SimulatedFileSystem, f));
  cp.pushBlock(f.produceBlock(lane));
  assert.equal(await cp.waitVoteable(lane, 0), 'durable');
  await new Promise<void>((resolve) => setImmediate(resolve));
  fs.hold();
  const syncs = fs.gatedSyncs;
  cp.pushBlock(f.produceBlock(lane));
  assert.equal(fs.gatedSyncs, syncs + 1, 'the fsync started inside pushBlock');
  const vote = cp.waitVoteable(lane, 1).then(
    (s) => s,
    (e: unknown) => e as Error,
  );
  let closed = false;
  const closing = cp.close().then(() => (closed = true));
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.equal(closed, false, 'close waits for the fsync in flight');
  // A push while close runs is not written (the pipelines are stopping): it is refused, or
  // accepted and its vote waiter gets CLOSED, never 'durable'.
  let late: Promise<unknown> = Promise.resolve('refused');
  try {
    cp.pushBlock(f.produceBlock(lane));
    late = cp.waitVoteable(lane, 2).then(
      (s) => s,
      (e: unknown) => e,
    );
  } catch (e) {
    assert.ok(isCairnError(e, 'CLOSED'), String(e));
  }
  fs.release();
  await closing;
  const outcome = await vote;
  const lateOutcome = await late;
  assert.ok(
    lateOutcome === 'refused' || isCairnError(lateOutcome, 'CLOSED'),
    `late push: ${String(lateOutcome)}`,
  );
  const image = (fs.inner as SimulatedFileSystem).crashImage(DROP_ALL);
  const again = await ConsensusPersistence.open(options(image, f));
  try {
    assert.ok(again.nextBlock(lane) <= 2, 'the block pushed during close was not written');
    if (outcome === 'durable') assert.equal(again.nextBlock(lane), 2, 'a block voted durable is on disk');
    else assert.ok(isCairnError(outcome, 'CLOSED'), `vote outcome ${String(outcome)}`);
  } finally {
    await again.close();
  }
});
