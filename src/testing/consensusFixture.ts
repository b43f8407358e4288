import { shortLane } from '../domain/codecs.ts';
import { globalRangeOf, laneRangeOf, seededCommittee } from '../domain/committee.ts';
import {
  hashBlockHeader,
  hashPayload,
  type SigningKey,
  signAppVote,
  signCommitVote,
  signLaneProposal,
} from '../domain/crypto.ts';
import {
  type AppQC,
  type BlockHeader,
  type CommitQC,
  type Committee,
  type FullCommitQC,
  type Hash,
  type LaneId,
  type LaneRange,
  MAX_BLOCKS_PER_LANE_PER_COMMIT,
  type PruneAnchor,
  type SignedLaneProposal,
  ZERO_HASH,
} from '../domain/types.ts';
import { CairnError } from '../lib/errors.ts';
import { Rng } from '../lib/rng.ts';

/**
 * Deterministic consensus fixtures for tests and benchmarks: a seeded committee of ed25519
 * keys, lanes producing hash-chained signed blocks, CommitQCs that finalize lane ranges following the
 * proposal rules (contiguous per lane, at most MAX_BLOCKS_PER_LANE_PER_COMMIT blocks per lane, global
 * ranges contiguous across roads) and AppQCs. Same seed, same bytes.
 */

export interface FixtureOptions {
  /** Committee size (= number of lanes). */
  lanes: number;
  seed: number;
  /** Payload size of every produced block (default 256 bytes). */
  payloadBytes?: number;
  /** Global number of the first block the first CommitQC finalizes (default 0). */
  globalFirst?: number;
  /** Sign blocks and QCs (default true). Unsigned fixtures carry zero signatures and are much faster. */
  sign?: boolean;
}

/** Committee of `n` deterministic keys (the devnet's derivation). `keys[i]` owns lane `committee.members[i]`. */
export function makeTestCommittee(n: number, seed: number): { committee: Committee; keys: SigningKey[] } {
  return seededCommittee(n, seed);
}

interface LaneState {
  readonly key: SigningKey;
  readonly blocks: SignedLaneProposal[];
  nextNumber: number;
  lastHash: Hash;
  /** Next block number not yet finalized by a produced CommitQC. */
  finalizedNext: number;
  finalizedLastHash: Hash;
}

export class ConsensusFixture {
  readonly committee: Committee;
  readonly keys: readonly SigningKey[];
  readonly lanes: readonly LaneId[];
  readonly commitQCs: CommitQC[] = [];
  private readonly laneStates = new Map<LaneId, LaneState>();
  private readonly rng: Rng;
  private readonly payloadBytes: number;
  private readonly sign: boolean;
  private globalNext: number;
  private createdAtMs = 1_700_000_000_000;

  constructor(options: FixtureOptions) {
    const { committee, keys } = makeTestCommittee(options.lanes, options.seed);
    this.committee = committee;
    this.keys = keys;
    this.lanes = committee.members;
    this.rng = new Rng(options.seed ^ 0x5eed);
    this.payloadBytes = options.payloadBytes ?? 256;
    this.sign = options.sign ?? true;
    this.globalNext = options.globalFirst ?? 0;
    for (const key of keys) {
      this.laneStates.set(key.publicKey, {
        key,
        blocks: [],
        nextNumber: 0,
        lastHash: ZERO_HASH,
        finalizedNext: 0,
        finalizedLastHash: ZERO_HASH,
      });
    }
  }

  private lane(lane: LaneId): LaneState {
    const s = this.laneStates.get(lane);
    if (!s)
      throw new CairnError('INVALID_ARGUMENT', `lane ${shortLane(lane)} is not in the fixture committee`);
    return s;
  }

  laneAt(i: number): LaneId {
    const lane = this.lanes[i];
    if (lane === undefined)
      throw new CairnError('OUT_OF_RANGE', `lane index ${i} outside [0, ${this.lanes.length})`);
    return lane;
  }

  /** Produces (and remembers) the next block of `lane`, chained to the previous one. */
  produceBlock(lane: LaneId, payload?: Uint8Array): SignedLaneProposal {
    const s = this.lane(lane);
    const body = payload ?? this.rng.bytes(this.payloadBytes);
    const header: BlockHeader = {
      lane,
      blockNumber: s.nextNumber,
      parentHash: s.lastHash,
      payloadHash: hashPayload(body),
    };
    const signature = this.sign ? signLaneProposal(s.key, header) : new Uint8Array(64);
    const proposal: SignedLaneProposal = { block: { header, payload: body }, signature };
    s.blocks.push(proposal);
    s.nextNumber++;
    s.lastHash = hashBlockHeader(header);
    return proposal;
  }

  /** Produces `count` blocks on every lane, round-robin; returns them in production order. */
  produceRound(count = 1): SignedLaneProposal[] {
    const out: SignedLaneProposal[] = [];
    for (let i = 0; i < count; i++) for (const lane of this.lanes) out.push(this.produceBlock(lane));
    return out;
  }

  /** Every block produced on `lane` so far (index = block number). */
  blocksOf(lane: LaneId): readonly SignedLaneProposal[] {
    return this.lane(lane).blocks;
  }

  block(lane: LaneId, blockNumber: number): SignedLaneProposal {
    const b = this.lane(lane).blocks[blockNumber];
    if (!b) throw new CairnError('NOT_FOUND', `lane ${shortLane(lane)} has no block ${blockNumber}`);
    return b;
  }

  /**
   * The next CommitQC: for every lane it finalizes the produced blocks not yet finalized, at most
   * `maxPerLane` (≤ MAX_BLOCKS_PER_LANE_PER_COMMIT) of them and none at or above `upTo(lane)` (e.g.
   * the blocks a node has voted for). Signed by the first `quorum` keys.
   */
  nextCommitQC(options: { maxPerLane?: number; upTo?: (lane: LaneId) => number } = {}): CommitQC {
    const maxPerLane = Math.min(
      options.maxPerLane ?? MAX_BLOCKS_PER_LANE_PER_COMMIT,
      MAX_BLOCKS_PER_LANE_PER_COMMIT,
    );
    const laneRanges: LaneRange[] = [];
    for (const lane of this.lanes) {
      const s = this.lane(lane);
      const first = s.finalizedNext;
      const limit = Math.max(first, Math.min(s.nextNumber, options.upTo?.(lane) ?? s.nextNumber));
      const next = Math.min(limit, first + maxPerLane);
      const lastHash = next > first ? hashBlockHeader(s.blocks[next - 1]!.block.header) : ZERO_HASH;
      laneRanges.push({ lane, first, next, lastHash });
      s.finalizedNext = next;
      s.finalizedLastHash = lastHash;
    }
    this.createdAtMs += 1000;
    const body = {
      roadIndex: this.commitQCs.length,
      viewNumber: 0,
      createdAtMs: this.createdAtMs,
      globalFirst: this.globalNext,
      laneRanges,
    };
    const signers = this.keys.slice(0, this.committee.quorum);
    const signatures = signers
      .map((k) =>
        this.sign ? signCommitVote(k, body) : { signer: k.publicKey, signature: new Uint8Array(64) },
      )
      .sort((a, b) => (a.signer < b.signer ? -1 : 1));
    const qc: CommitQC = { ...body, signatures };
    this.globalNext = globalRangeOf(qc).next;
    this.commitQCs.push(qc);
    return qc;
  }

  commitQC(roadIndex: number): CommitQC {
    const qc = this.commitQCs[roadIndex];
    if (!qc) throw new CairnError('NOT_FOUND', `no CommitQC ${roadIndex} produced yet`);
    return qc;
  }

  /** The headers a CommitQC finalizes, in global order. */
  fullCommitQC(qc: CommitQC): FullCommitQC {
    const headers: BlockHeader[] = [];
    for (const lr of qc.laneRanges) {
      for (let n = lr.first; n < lr.next; n++) headers.push(this.block(lr.lane, n).block.header);
    }
    return { qc, headers };
  }

  /** An AppQC for the road of `qc`, with a deterministic app hash. */
  appQC(qc: CommitQC): AppQC {
    const range = globalRangeOf(qc);
    const proposal = {
      roadIndex: qc.roadIndex,
      globalNumber: range.next > range.first ? range.next - 1 : range.first,
      appHash: hashPayload(new TextEncoder().encode(`app-state-after-road-${qc.roadIndex}`)),
    };
    const signatures = this.keys
      .slice(0, this.committee.quorum)
      .map((k) =>
        this.sign ? signAppVote(k, proposal) : { signer: k.publicKey, signature: new Uint8Array(64) },
      )
      .sort((a, b) => (a.signer < b.signer ? -1 : 1));
    return { proposal, signatures };
  }

  pruneAnchor(qc: CommitQC): PruneAnchor {
    return { appQC: this.appQC(qc), commitQC: qc };
  }

  /** First block of `lane` not yet finalized (the lane's first in the QC after `qc`). */
  laneFirstAfter(qc: CommitQC, lane: LaneId): number {
    return laneRangeOf(qc, lane).next;
  }
}
