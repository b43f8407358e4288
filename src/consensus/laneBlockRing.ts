import type { Hash, SignedLaneProposal } from '../domain/types.ts';
import { invariant } from '../lib/assert.ts';

const INITIAL_CAPACITY = 16;

/**
 * The blocks a lane holds in memory, numbers `lo` to `hi - 1` with no gap, in a ring of parallel
 * slots (proposal, header hash, arrival time) that doubles when full and never shrinks: its size
 * is bounded by the lane's admission window. Blocks enter at the top and leave from the bottom,
 * the only two moves the in-flight state makes, so it needs no per-block object and no map entry
 * (measured on the consensus bench: the map entry and the per-block record were about a tenth of
 * the heap allocated per block, young-generation garbage that every scavenge has to visit).
 */
export class LaneBlockRing {
  private proposals: (SignedLaneProposal | undefined)[];
  private hashes: (Hash | undefined)[];
  private arrivedMs: Float64Array;
  /** Slot of block `lo`. */
  private head = 0;
  /** First held block number. */
  private lo = 0;
  /** One past the last held block number. */
  private hi = 0;

  constructor(capacity = INITIAL_CAPACITY) {
    this.proposals = new Array(capacity).fill(undefined);
    this.hashes = new Array(capacity).fill(undefined);
    this.arrivedMs = new Float64Array(capacity);
  }

  /** Blocks held. */
  get size(): number {
    return this.hi - this.lo;
  }

  has(n: number): boolean {
    return n >= this.lo && n < this.hi;
  }

  proposal(n: number): SignedLaneProposal | undefined {
    return this.has(n) ? this.proposals[this.slot(n)] : undefined;
  }

  /** Header hash of block `n` (held blocks only). */
  hash(n: number): Hash {
    invariant(this.has(n), `lane ring: block ${n} is not held`);
    return this.hashes[this.slot(n)]!;
  }

  /** Arrival time of block `n`, NaN when it is not held. */
  arrivedAtMs(n: number): number {
    return this.has(n) ? this.arrivedMs[this.slot(n)]! : Number.NaN;
  }

  /** Adds block `n`: the next number after the held ones, or anything when none is held. */
  append(n: number, proposal: SignedLaneProposal, hash: Hash, arrivedAtMs: number): void {
    if (this.hi === this.lo) {
      this.lo = n;
      this.hi = n;
      this.head = 0;
    }
    invariant(n === this.hi, `lane ring: block ${n} appended where ${this.hi} is next`);
    if (this.hi - this.lo === this.proposals.length) this.grow();
    const s = this.slot(n);
    this.proposals[s] = proposal;
    this.hashes[s] = hash;
    this.arrivedMs[s] = arrivedAtMs;
    this.hi++;
  }

  /** Drops every block below `n` (all of them when `n` is past the top). */
  dropBelow(n: number): void {
    const capacity = this.proposals.length;
    while (this.lo < this.hi && this.lo < n) {
      this.proposals[this.head] = undefined;
      this.hashes[this.head] = undefined;
      this.head = this.head + 1 === capacity ? 0 : this.head + 1;
      this.lo++;
    }
  }

  private slot(n: number): number {
    const s = this.head + (n - this.lo);
    const capacity = this.proposals.length;
    return s >= capacity ? s - capacity : s;
  }

  private grow(): void {
    const size = this.hi - this.lo;
    const capacity = this.proposals.length * 2;
    const proposals = new Array<SignedLaneProposal | undefined>(capacity).fill(undefined);
    const hashes = new Array<Hash | undefined>(capacity).fill(undefined);
    const arrivedMs = new Float64Array(capacity);
    for (let i = 0; i < size; i++) {
      const s = this.slot(this.lo + i);
      proposals[i] = this.proposals[s];
      hashes[i] = this.hashes[s];
      arrivedMs[i] = this.arrivedMs[s]!;
    }
    this.proposals = proposals;
    this.hashes = hashes;
    this.arrivedMs = arrivedMs;
    this.head = 0;
  }
}
