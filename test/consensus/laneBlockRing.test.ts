/**
 * The lane block ring against a plain Map model: random appends, drops (below, inside and past the
 * held range), restarts at a new number after emptying, across wrap-around and growth. Randomized:
 * prints its seed, replays with CAIRN_SEED.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LaneBlockRing } from '../../src/consensus/laneBlockRing.ts';
import type { Hash, SignedLaneProposal } from '../../src/domain/types.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';

/** Stand-ins: the ring only stores and returns them. */
const proposalFor = (n: number) => ({ n }) as unknown as SignedLaneProposal;
const hashFor = (n: number) => new Uint8Array([n & 0xff, (n >> 8) & 0xff]) as Hash;

test('the ring holds exactly what a map model holds, through wrap-around, growth and restarts', () => {
  const seed = seedFromEnv();
  console.log('seed', seed);
  const rng = new Rng(seed);
  const ring = new LaneBlockRing(4);
  const model = new Map<number, { proposal: SignedLaneProposal; hash: Hash; arrivedAtMs: number }>();
  let lo = 0;
  let next = 0;
  for (let step = 0; step < 5000; step++) {
    const action = rng.int(0, 10);
    if (action < 6) {
      const entry = { proposal: proposalFor(next), hash: hashFor(next), arrivedAtMs: step + 0.5 };
      ring.append(next, entry.proposal, entry.hash, entry.arrivedAtMs);
      model.set(next, entry);
      next++;
    } else if (action < 9) {
      // Drop below a point inside the range, or a little past its top (an anchor past the lane).
      const to = lo + rng.int(0, next - lo + 3);
      ring.dropBelow(to);
      for (let n = lo; n < Math.min(to, next); n++) model.delete(n);
      lo = Math.max(lo, to);
      if (lo > next) {
        // Emptied past its top: the lane continues at the new point (as after a re-positioning).
        next = lo;
      }
    } else if (model.size === 0) {
      // Empty: the next block may carry any number (a restart further on).
      next += rng.int(0, 50);
      lo = next;
    }
    assert.equal(ring.size, model.size, `size at step ${step} (seed ${seed})`);
    for (let n = lo - 2; n < next + 2; n++) {
      const want = model.get(n);
      assert.equal(ring.has(n), want !== undefined, `has(${n}) at step ${step} (seed ${seed})`);
      assert.equal(ring.proposal(n), want?.proposal, `proposal(${n}) at step ${step} (seed ${seed})`);
      if (want) {
        assert.equal(ring.hash(n), want.hash);
        assert.equal(ring.arrivedAtMs(n), want.arrivedAtMs);
      } else {
        assert.ok(Number.isNaN(ring.arrivedAtMs(n)));
      }
    }
  }
});

test('appending anything but the next number while blocks are held is refused', () => {
  const ring = new LaneBlockRing();
  ring.append(7, proposalFor(7), hashFor(7), 1);
  assert.throws(() => ring.append(9, proposalFor(9), hashFor(9), 2), /block 9 appended where 8 is next/);
  assert.throws(() => ring.append(7, proposalFor(7), hashFor(7), 2), /block 7 appended where 8 is next/);
  assert.equal(ring.size, 1);
  assert.throws(() => ring.hash(8), /block 8 is not held/);
});
