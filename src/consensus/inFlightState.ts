import { encodeCommitQC, encodeSignedLaneProposal, shortLane } from '../domain/codecs.ts';
import { laneRangeOf, verifyAppQC, verifyCommitQC, verifyLaneProposal } from '../domain/committee.ts';
import { hashBlockHeader } from '../domain/crypto.ts';
import type {
  AppQC,
  CommitQC,
  Committee,
  Hash,
  LaneId,
  PruneAnchor,
  SignedLaneProposal,
} from '../domain/types.ts';
import { bytesEqual } from '../lib/bytes.ts';
import { CairnError } from '../lib/errors.ts';
import { reraiseApart } from '../lib/reraise.ts';
import { Signal, ThresholdWaiters } from '../lib/waiters.ts';
import { LaneBlockRing } from './laneBlockRing.ts';
import type { PersistenceMetrics } from './metrics.ts';

/**
 * In-memory state of what is in flight to disk: lane block queues, the CommitQC queue and the
 * prune anchor, with the persistence cursors and the gates built on them.
 *
 *  - A lane block becomes **voteable** only when it is durable (or when the anchor pruned it: a block
 *    below the anchor is finalized and executed and needs no vote).
 *  - The **latest CommitQC** is published only when durable; publication is monotonic.
 *  - Admission of blocks is bounded relative to the **durable** anchor (`blocksPerLane` per lane), and
 *    the CommitQC queue relative to the in-memory anchor (`commitQCWindow`).
 *
 * All methods are synchronous; the persist loop takes its batches here as consistent snapshots
 * (nothing can change between the reads of one snapshot, since no await happens inside it).
 */

export type PushResult = 'accepted' | 'duplicate' | 'pruned';
/** How a voteable wait ended: the block is durable, or it fell below the anchor before it was. */
export type VoteableStatus = 'durable' | 'pruned';

class LaneQueue {
  /**
   * Held blocks with their header hash (computed once at admission: the lane log's parent check
   * reuses it) and arrival time.
   */
  readonly blocks = new LaneBlockRing();
  /**
   * The lane's batch, refilled by every `takeLaneBatch` (the lane has one write at a time, and the
   * batch is not used after it): a batch allocates no arrays of its own. It keeps the last batch's
   * blocks referenced until the next one, at most one batch's bytes per lane (the batch limits).
   */
  readonly batch: { anchorQC: CommitQC | undefined; proposals: SignedLaneProposal[]; headerHashes: Hash[] } =
    {
      anchorQC: undefined,
      proposals: [],
      headerHashes: [],
    };
  /** Oldest block kept (the memory prune point's lane first: the anchor's, capped by the block store). */
  first = 0;
  /** Number the next pushed block must carry. */
  next = 0;
  /** Header hash of block `next - 1` when known (parent check). */
  lastHash: Hash | undefined;
  /** Persistence cursor: every block below is durable or pruned. The vote gate. */
  voteableNext = 0;
  /** Highest "next" reported durable by the lane log. */
  durableNext = 0;
  /** The durable prune point's lane first: admission window base. */
  admissionStart = 0;
  readonly voteWaiters = new ThresholdWaiters<VoteableStatus>();
  readonly capacityWaiters = new ThresholdWaiters<void>();
  /** Wakes this lane's persist pipeline. */
  readonly work = new Signal();
  /** Set when the durable anchor moved: the pipeline should re-check truncation. */
  anchorMoved = false;

  constructor(readonly lane: LaneId) {}
}

export interface InFlightStateOptions {
  committee: Committee;
  metrics: PersistenceMetrics;
  /** Blocks admitted per lane beyond the durable anchor's lane first (default 30). */
  blocksPerLane?: number;
  /** CommitQCs kept in memory beyond the anchor (default 256). */
  commitQCWindow?: number;
  /** Verify ed25519 signatures at admission (default true). */
  verifySignatures?: boolean;
}

/** A lane's batch: valid until the lane's next `takeLaneBatch` (its arrays are reused). */
export interface LaneBatch {
  /** Durable anchor CommitQC (justifies truncation), if any. */
  readonly anchorQC: CommitQC | undefined;
  readonly proposals: readonly SignedLaneProposal[];
  /** Header hash of each proposal (computed at admission). */
  readonly headerHashes: readonly Hash[];
}

const NO_PROPOSALS: readonly SignedLaneProposal[] = [];
const NO_HASHES: readonly Hash[] = [];

export interface CommitQCBatch {
  anchorQC: CommitQC | undefined;
  qcs: CommitQC[];
}

/** Where loaded state resumes after a restart (see `ConsensusPersistence.open`). */
export interface RestoredState {
  anchor: PruneAnchor | undefined;
  /**
   * Where pruning stands: the anchor's CommitQC, or an older road's when the block store had not
   * flushed the anchor's road yet (see `setFinalizedRoads`). Defaults to the anchor's.
   */
  pruneQC?: CommitQC;
  /** Roads flushed downstream (the block store) at startup; pruning never passes road next - 1. */
  finalizedRoads?: number;
  /** CommitQCs from the prune road on (its QC first), contiguous. */
  commitQCs: CommitQC[];
  /** Per lane: durable blocks from the prune QC's lane first, contiguous. */
  lanes: Map<LaneId, { first: number; blocks: SignedLaneProposal[] }>;
}

export class InFlightState {
  readonly committee: Committee;
  readonly blocksPerLane: number;
  /** Half the admission window, rounded up: past it, a pending anchor write is urgent. */
  private readonly admissionHalf: number;
  readonly commitQCWindow: number;
  private readonly verifySignatures: boolean;
  private readonly metrics: PersistenceMetrics;
  private readonly lanes = new Map<LaneId, LaneQueue>();

  private readonly commitQCs = new Map<number, { qc: CommitQC; arrivedAtMs: number }>();
  private commitQCFirst = 0;
  private commitQCNext = 0;
  private published: CommitQC | undefined;
  private readonly commitQCWaiters = new ThresholdWaiters<CommitQC>();
  private readonly commitQCListeners = new Set<(qc: CommitQC) => void>();
  private readonly voteableListeners = new Set<(lane: LaneId, next: number) => void>();
  private voteableListenerList: readonly ((lane: LaneId, next: number) => void)[] = [];
  /** Wakes the CommitQC pipeline. */
  readonly commitQCWork = new Signal();

  private memAnchor: PruneAnchor | undefined;
  private durable: PruneAnchor | undefined;
  /**
   * Roads below this are flushed downstream (the block store); Infinity when nothing downstream
   * limits pruning. Pruning — memory and disk — stops at road `finalizedRoads - 1` even when the
   * anchor is further: an AppQC from the network may arrive before this node flushed those roads.
   */
  private finalizedRoads = Number.POSITIVE_INFINITY;
  /** The CommitQC memory is pruned to: the in-memory anchor's, capped by `finalizedRoads`. */
  private memPruneQC: CommitQC | undefined;
  /** The CommitQC the logs may be truncated to: the durable anchor's, capped by `finalizedRoads`. */
  private durablePruneQC: CommitQC | undefined;
  private readonly anchorWaiters = new ThresholdWaiters<PruneAnchor>();
  private commitQCPruneDue = false;
  /**
   * A pipeline deferred a batch because the durable anchor is behind the in-memory one (a log must
   * be re-positioned past it): the anchor write is wanted now (see `anchorWriteUrgent`).
   */
  private deferredOnAnchor = false;
  /** Wakes the anchor pipeline. */
  readonly anchorWork = new Signal();

  private failure: Error | undefined;
  /** Set by `stopIntake`: pushes throw CLOSED. */
  private intakeStopped = false;

  constructor(options: InFlightStateOptions, restored?: RestoredState) {
    this.committee = options.committee;
    this.metrics = options.metrics;
    this.blocksPerLane = options.blocksPerLane ?? 30;
    this.admissionHalf = Math.ceil(this.blocksPerLane / 2);
    this.commitQCWindow = options.commitQCWindow ?? 256;
    this.verifySignatures = options.verifySignatures ?? true;
    for (const lane of this.committee.members) this.lanes.set(lane, new LaneQueue(lane));
    if (restored) this.restore(restored);
  }

  private restore(r: RestoredState): void {
    const now = performance.now();
    if (r.finalizedRoads !== undefined) this.finalizedRoads = r.finalizedRoads;
    const pruneQC = r.pruneQC ?? r.anchor?.commitQC;
    if (r.anchor) {
      this.memAnchor = r.anchor;
      this.durable = r.anchor;
    }
    if (pruneQC) {
      this.memPruneQC = pruneQC;
      this.durablePruneQC = pruneQC;
      this.commitQCFirst = pruneQC.roadIndex;
      this.commitQCNext = this.commitQCFirst;
    }
    for (const qc of r.commitQCs) {
      this.commitQCs.set(qc.roadIndex, { qc, arrivedAtMs: now });
      this.commitQCNext = qc.roadIndex + 1;
    }
    if (r.commitQCs.length > 0) {
      this.commitQCFirst = r.commitQCs[0]!.roadIndex;
      this.published = r.commitQCs[r.commitQCs.length - 1];
    }
    for (const q of this.lanes.values()) {
      const first = pruneQC ? laneRangeOf(pruneQC, q.lane).first : 0;
      const loaded = r.lanes.get(q.lane);
      q.first = first;
      q.admissionStart = first;
      q.next = first;
      for (const p of loaded?.blocks ?? []) {
        const hash = hashBlockHeader(p.block.header);
        q.blocks.append(p.block.header.blockNumber, p, hash, now);
        q.next = p.block.header.blockNumber + 1;
        q.lastHash = hash;
      }
      q.voteableNext = q.next;
      q.durableNext = q.next;
    }
  }

  // ------------------------------------------------------------------ intake

  private checkHealthy(): void {
    if (this.failure) throw this.failure;
  }

  /** `checkHealthy`, and refused with CLOSED once the owner started closing (`stopIntake`). */
  private checkAdmitting(): void {
    this.checkHealthy();
    if (this.intakeStopped) {
      throw new CairnError('CLOSED', 'consensus persistence is closing: nothing more is admitted');
    }
  }

  /**
   * Refuses every later push (CLOSED) while waiters and writes in flight go on: called first thing
   * by close, whose loop stops and will not write anything admitted after this.
   */
  stopIntake(): void {
    this.intakeStopped = true;
  }

  private lane(lane: LaneId): LaneQueue {
    const q = this.lanes.get(lane);
    if (!q)
      throw new CairnError('INVALID_ARGUMENT', `lane ${shortLane(lane)} is not in the committee`, {
        details: { lane },
      });
    return q;
  }

  /**
   * Admits a lane block. Stale (below the anchor) → 'pruned'; identical re-delivery → 'duplicate';
   * a different block at a used number or a parent-hash break → CONFLICT; a number past the next →
   * OUT_OF_ORDER; beyond the admission window → BACKPRESSURE (wait with `waitForCapacity`).
   */
  pushBlock(p: SignedLaneProposal): PushResult {
    this.checkAdmitting();
    const h = p.block.header;
    const q = this.lane(h.lane);
    const n = h.blockNumber;
    if (n < q.first) return 'pruned';
    if (n < q.next) {
      const held = q.blocks.proposal(n);
      if (held && !bytesEqual(encodeSignedLaneProposal(held), encodeSignedLaneProposal(p))) {
        throw new CairnError(
          'CONFLICT',
          `${blockWhere(h)}: a different block with this number was already accepted`,
          {
            details: { lane: h.lane, blockNumber: n },
          },
        );
      }
      return 'duplicate';
    }
    if (n > q.next) {
      throw new CairnError('OUT_OF_ORDER', `${blockWhere(h)}: the lane expects block ${q.next} next`, {
        details: { lane: h.lane, blockNumber: n, expected: q.next },
      });
    }
    const limit = q.admissionStart + this.blocksPerLane;
    if (n >= limit) {
      throw new CairnError(
        'BACKPRESSURE',
        `${blockWhere(h)}: outside the admission window [${q.admissionStart}, ${limit}) of the durable anchor`,
        { details: { lane: h.lane, blockNumber: n, limit } },
      );
    }
    if (q.lastHash !== undefined && !bytesEqual(h.parentHash, q.lastHash)) {
      throw new CairnError('CONFLICT', `${blockWhere(h)}: parent hash does not match block ${n - 1}`, {
        details: { lane: h.lane, blockNumber: n },
      });
    }
    // After a reset past what the lane held (no parent known), the chain is anchored by the prune
    // point's CommitQC instead: its last block on this lane must be the one it certifies, and the
    // block after it must name it as parent.
    const pruneRange = this.memPruneQC ? laneRangeOf(this.memPruneQC, q.lane) : undefined;
    if (q.lastHash === undefined && pruneRange && pruneRange.next > pruneRange.first) {
      if (n === pruneRange.next && !bytesEqual(h.parentHash, pruneRange.lastHash)) {
        throw new CairnError(
          'CONFLICT',
          `${blockWhere(h)}: parent hash does not match block ${n - 1} of the prune anchor's CommitQC`,
          { details: { lane: h.lane, blockNumber: n } },
        );
      }
    }
    if (this.verifySignatures) verifyLaneProposal(p, this.committee);
    const hash = hashBlockHeader(h);
    if (
      pruneRange &&
      n === pruneRange.next - 1 &&
      pruneRange.next > pruneRange.first &&
      !bytesEqual(hash, pruneRange.lastHash)
    ) {
      throw new CairnError(
        'CONFLICT',
        `${blockWhere(h)}: not the block the prune anchor's CommitQC certifies at this number`,
        { details: { lane: h.lane, blockNumber: n } },
      );
    }
    q.blocks.append(n, p, hash, performance.now());
    q.next = n + 1;
    q.lastHash = hash;
    // `now`: the lane's state is complete, so an idle lane pipeline may write this block inside
    // this call (as a raw per-lane writer would) instead of after the rest of the turn.
    q.work.notify(true);
    // Half of the window used: a coalesced anchor write that is waiting should go now.
    if (n + 1 - q.admissionStart === this.admissionHalf) this.anchorWork.notify();
    return 'accepted';
  }

  /**
   * Admits the CommitQC of the next road. Same duplicate / conflict / order rules as blocks; each
   * lane range must continue the previous QC's (when it is still in memory).
   */
  pushCommitQC(qc: CommitQC): PushResult {
    this.checkAdmitting();
    const r = qc.roadIndex;
    if (r < this.commitQCFirst) return 'pruned';
    if (r < this.commitQCNext) {
      const held = this.commitQCs.get(r);
      if (held && held.qc !== qc && !bytesEqual(encodeCommitQC(held.qc), encodeCommitQC(qc))) {
        throw new CairnError('CONFLICT', `CommitQC ${r}: a different QC for this road was already accepted`, {
          details: { roadIndex: r },
        });
      }
      return 'duplicate';
    }
    if (r > this.commitQCNext) {
      throw new CairnError('OUT_OF_ORDER', `CommitQC ${r}: road ${this.commitQCNext} is expected next`, {
        details: { roadIndex: r, expected: this.commitQCNext },
      });
    }
    if (this.commitQCNext - this.commitQCFirst >= this.commitQCWindow) {
      throw new CairnError(
        'BACKPRESSURE',
        `CommitQC ${r}: ${this.commitQCWindow} CommitQCs are already held above the anchor at road ${this.commitQCFirst}`,
        { details: { roadIndex: r } },
      );
    }
    verifyCommitQC(qc, this.committee, { signatures: this.verifySignatures });
    const previous = this.commitQCs.get(r - 1)?.qc;
    if (previous) {
      qc.laneRanges.forEach((lr, i) => {
        const before = previous.laneRanges[i]!;
        if (lr.first !== before.next) {
          throw new CairnError(
            'INVALID_ARGUMENT',
            `CommitQC ${r}: lane ${shortLane(lr.lane)} range starts at ${lr.first}, previous road ended at ${before.next}`,
          );
        }
      });
    }
    this.commitQCs.set(r, { qc, arrivedAtMs: performance.now() });
    this.commitQCNext = r + 1;
    this.commitQCWork.notify();
    return 'accepted';
  }

  /**
   * Advances the prune anchor in memory to (appQC, commitQC of the same road) and prunes every
   * queue below it; the anchor pipeline then makes it durable. Returns false for a stale anchor.
   */
  pushAppQC(appQC: AppQC, commitQC: CommitQC): boolean {
    this.checkAdmitting();
    const road = appQC.proposal.roadIndex;
    if (road !== commitQC.roadIndex) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `AppQC road ${road} does not match CommitQC road ${commitQC.roadIndex}`,
      );
    }
    if (this.memAnchor && road <= this.memAnchor.commitQC.roadIndex) return false;
    const held = this.commitQCs.get(road);
    // The same object (consensus hands back the QC it pushed) needs no byte comparison: two
    // encodings of a CommitQC per AppQC, on the main thread, for nothing.
    if (held && held.qc !== commitQC && !bytesEqual(encodeCommitQC(held.qc), encodeCommitQC(commitQC))) {
      throw new CairnError(
        'CONFLICT',
        `AppQC ${road}: its CommitQC differs from the one accepted for this road`,
      );
    }
    if (!held) verifyCommitQC(commitQC, this.committee, { signatures: this.verifySignatures });
    verifyAppQC(appQC, this.committee, { signatures: this.verifySignatures });
    this.memAnchor = { appQC, commitQC };
    this.pruneMemory();
    this.anchorWork.notify();
    return true;
  }

  /**
   * Roads below `roads` are durable downstream (the block store): pruning may now go that far
   * (up to the anchor). Called by the node's finalizer after each flush; monotonic.
   */
  setFinalizedRoads(roads: number): void {
    // Without a downstream limit (no block store configured) there is nothing to lift.
    if (this.failure || !Number.isFinite(this.finalizedRoads) || roads <= this.finalizedRoads) return;
    this.finalizedRoads = roads;
    this.pruneMemory();
    this.advanceDurablePrune();
  }

  /** Prune road allowed for `anchor`: its own, or the newest flushed road when that is lower. */
  private pruneRoadFor(anchor: PruneAnchor | undefined): number | undefined {
    if (!anchor) return undefined;
    const road = Math.min(anchor.commitQC.roadIndex, this.finalizedRoads - 1);
    return road >= 0 ? road : undefined;
  }

  /** The CommitQC of `road` for pruning: the anchor's own, or one still held (never pruned past). */
  private pruneQCAt(road: number, anchor: PruneAnchor): CommitQC {
    if (road === anchor.commitQC.roadIndex) return anchor.commitQC;
    const held = this.commitQCs.get(road)?.qc;
    if (!held) throw new Error(`invariant violated: CommitQC ${road} to prune to is not held`);
    return held;
  }

  /** Drops what lies below the memory prune point from the queues; the cursors move with it. */
  private pruneMemory(): void {
    const road = this.pruneRoadFor(this.memAnchor);
    if (road === undefined || (this.memPruneQC && road <= this.memPruneQC.roadIndex)) return;
    const commitQC = this.pruneQCAt(road, this.memAnchor!);
    this.memPruneQC = commitQC;
    // CommitQCs: drop roads below the prune road; its QC stays at the front of the queue.
    for (let r = this.commitQCFirst; r < Math.min(road, this.commitQCNext); r++) this.commitQCs.delete(r);
    this.commitQCFirst = road;
    if (this.commitQCNext <= road) {
      this.commitQCs.set(road, { qc: commitQC, arrivedAtMs: performance.now() });
      this.commitQCNext = road + 1;
    }
    // Lanes: drop blocks below the prune QC's lane first; the cursor moves with it.
    for (const q of this.lanes.values()) {
      const first = laneRangeOf(commitQC, q.lane).first;
      if (first <= q.first) continue;
      q.blocks.dropBelow(first);
      q.first = first;
      if (q.next < first) {
        q.next = first;
        q.lastHash = undefined;
      }
      this.advanceVoteable(q, first);
      q.work.notify();
    }
    this.commitQCWork.notify();
  }

  /** Moves the point the logs may be truncated to (durable anchor, capped); widens admission. */
  private advanceDurablePrune(): void {
    const road = this.pruneRoadFor(this.durable);
    if (road === undefined || (this.durablePruneQC && road <= this.durablePruneQC.roadIndex)) return;
    const qc = this.pruneQCAt(road, this.durable!);
    this.durablePruneQC = qc;
    for (const q of this.lanes.values()) {
      const first = laneRangeOf(qc, q.lane).first;
      if (first > q.admissionStart) {
        q.admissionStart = first;
        q.capacityWaiters.release(first, () => undefined);
      }
      q.anchorMoved = true;
      q.work.notify();
    }
    this.commitQCPruneDue = true;
    this.commitQCWork.notify();
  }

  // ------------------------------------------------------------------ gates

  /** Blocks of `lane` below this number are voteable. */
  voteableNext(lane: LaneId): number {
    return this.lane(lane).voteableNext;
  }

  /** Next block number `lane` expects from `pushBlock`. */
  nextBlock(lane: LaneId): number {
    return this.lane(lane).next;
  }

  /** First block number held for `lane` (the in-memory anchor's lane first). */
  firstBlock(lane: LaneId): number {
    return this.lane(lane).first;
  }

  /** Block `n` of `lane` if it is held in memory (accepted and not pruned). */
  block(lane: LaneId, n: number): SignedLaneProposal | undefined {
    return this.lane(lane).blocks.proposal(n);
  }

  /** Resolves when block `n` of `lane` is voteable: 'durable' (on disk) or 'pruned' (below the anchor). */
  waitVoteable(lane: LaneId, n: number): Promise<VoteableStatus> {
    const q = this.lane(lane);
    if (this.failure) return Promise.reject(this.failure);
    if (n < q.voteableNext) return Promise.resolve(statusOf(q, n));
    return q.voteWaiters.add(n);
  }

  /** Resolves when `lane` can admit its next block (the durable anchor moved far enough). */
  waitForCapacity(lane: LaneId): Promise<void> {
    const q = this.lane(lane);
    if (this.failure) return Promise.reject(this.failure);
    const limit = q.admissionStart + this.blocksPerLane;
    if (q.next < limit) return Promise.resolve();
    // Released once admissionStart + blocksPerLane > q.next, i.e. admissionStart > q.next - blocksPerLane.
    const released = q.capacityWaiters.add(q.next - this.blocksPerLane);
    this.anchorWork.notify(); // a coalesced anchor write must not keep admission closed
    return released;
  }

  /** The latest durable CommitQC (what consensus may advance on). */
  lastCommitQC(): CommitQC | undefined {
    return this.published;
  }

  /** Resolves with the latest published CommitQC once road `road` or later is durable. */
  waitCommitQC(road: number): Promise<CommitQC> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.published && this.published.roadIndex >= road) return Promise.resolve(this.published);
    return this.commitQCWaiters.add(road);
  }

  /** CommitQC of `road` if it is still held in memory. */
  commitQC(road: number): CommitQC | undefined {
    return this.commitQCs.get(road)?.qc;
  }

  /** Next road `pushCommitQC` expects. */
  nextCommitQCRoad(): number {
    return this.commitQCNext;
  }

  subscribeCommitQC(listener: (qc: CommitQC) => void): () => void {
    this.commitQCListeners.add(listener);
    return () => this.commitQCListeners.delete(listener);
  }

  /** Called with (lane, voteableNext) each time a lane's voteable cursor moves. */
  subscribeVoteable(listener: (lane: LaneId, next: number) => void): () => void {
    this.voteableListeners.add(listener);
    this.voteableListenerList = [...this.voteableListeners];
    return () => {
      this.voteableListeners.delete(listener);
      this.voteableListenerList = [...this.voteableListeners];
    };
  }

  /** The prune anchor known in memory (may not be durable yet). */
  latestAnchor(): PruneAnchor | undefined {
    return this.memAnchor;
  }

  /** The last anchor made durable. */
  durableAnchor(): PruneAnchor | undefined {
    return this.durable;
  }

  /** Resolves once an anchor at road `road` or later is durable. */
  waitAnchorDurable(road: number): Promise<PruneAnchor> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.durable && this.durable.commitQC.roadIndex >= road) return Promise.resolve(this.durable);
    const durable = this.anchorWaiters.add(road);
    this.anchorWork.notify(); // someone waits: a coalesced anchor write goes now
    return durable;
  }

  /** Blocks accepted but not yet voteable, per lane. */
  persistLag(): Map<LaneId, number> {
    const out = new Map<LaneId, number>();
    for (const q of this.lanes.values()) out.set(q.lane, q.next - q.voteableNext);
    return out;
  }

  // ------------------------------------------------------------------ persistence side

  laneIds(): readonly LaneId[] {
    return this.committee.members;
  }

  laneSignal(lane: LaneId): Signal {
    return this.lane(lane).work;
  }

  /**
   * Takes the lane's next batch: the durable anchor (only a durable anchor may justify a
   * truncation) and the waiting blocks from the voteable cursor, bounded by count and bytes.
   * `diskNext` is where the lane log stands; when the cursor is past it (the anchor pruned blocks
   * that were never written), the log can only be re-positioned once an anchor at least that far is
   * durable, so the batch is deferred (undefined) until then.
   */
  takeLaneBatch(lane: LaneId, diskNext: number, maxBlocks: number, maxBytes: number): LaneBatch | undefined {
    const q = this.lane(lane);
    const anchorQC = this.durablePruneQC;
    const start = Math.max(q.voteableNext, q.first);
    const anchorMoved = q.anchorMoved;
    // Nothing waiting and no anchor to apply (an in-memory anchor move wakes every lane): no batch,
    // and no allocation.
    if (start >= q.next && !anchorMoved) return undefined;
    q.anchorMoved = false;
    if (start > diskNext) {
      const durableFirst = anchorQC ? laneRangeOf(anchorQC, lane).first : 0;
      if (durableFirst < start) return this.deferOnAnchor();
    }
    const batch = q.batch;
    const { proposals, headerHashes } = batch;
    let count = 0;
    let bytes = 0;
    for (let n = start; n < q.next && count < maxBlocks; n++) {
      const p = q.blocks.proposal(n)!;
      const payloadBytes = p.block.payload.byteLength;
      if (count > 0 && bytes + payloadBytes > maxBytes) break;
      proposals[count] = p;
      headerHashes[count] = q.blocks.hash(n);
      count++;
      bytes += payloadBytes;
    }
    if (count === 0) {
      // An anchor-only batch (rare): its own object, so the lane's arrays are never emptied (V8
      // would give an emptied array a new backing store on its next write).
      return anchorMoved ? { anchorQC, proposals: NO_PROPOSALS, headerHashes: NO_HASHES } : undefined;
    }
    // Shrinking keeps the backing store (V8 trims in place, if at all): no allocation.
    if (proposals.length !== count) {
      proposals.length = count;
      headerHashes.length = count;
    }
    batch.anchorQC = anchorQC;
    return batch;
  }

  /** Whether the lane has blocks waiting (the pipeline re-checks after each batch). */
  laneHasBacklog(lane: LaneId): boolean {
    const q = this.lane(lane);
    return Math.max(q.voteableNext, q.first) < q.next;
  }

  /** The lane log reports blocks below `next` durable. */
  markLaneDurable(lane: LaneId, next: number): void {
    const q = this.lane(lane);
    if (next > q.durableNext) q.durableNext = next;
    const now = performance.now();
    for (let n = Math.max(q.voteableNext, q.first); n < next; n++) {
      const arrivedAtMs = q.blocks.arrivedAtMs(n);
      if (!Number.isNaN(arrivedAtMs)) this.metrics.arrivalToVoteable.record(now - arrivedAtMs);
    }
    this.advanceVoteable(q, next);
  }

  private advanceVoteable(q: LaneQueue, next: number): void {
    if (next <= q.voteableNext) return;
    q.voteableNext = next;
    if (q.voteWaiters.size > 0) q.voteWaiters.release(next, (n) => statusOf(q, n));
    // Indexed over a snapshot (a Set iterator per call was measurable on the lane hot path); a
    // listener unsubscribed by an earlier one in this loop is skipped, as the Set would.
    const listeners = this.voteableListenerList;
    for (let i = 0; i < listeners.length; i++) {
      const listener = listeners[i]!;
      if (this.voteableListeners.has(listener)) callVoteableListener(listener, q.lane, next);
    }
  }

  /**
   * Takes the CommitQC pipeline's next batch: the QCs from the publication cursor (clamped to the
   * in-memory anchor), with the durable anchor. Deferred while the log would need re-positioning
   * past an anchor that is not durable yet.
   */
  takeCommitQCBatch(diskNext: number, maxQCs: number): CommitQCBatch | undefined {
    const anchorQC = this.durablePruneQC;
    const start = this.commitQCStart();
    if (start > diskNext && (anchorQC?.roadIndex ?? 0) < start) return this.deferOnAnchor();
    const qcs: CommitQC[] = [];
    for (let r = start; r < this.commitQCNext && qcs.length < maxQCs; r++)
      qcs.push(this.commitQCs.get(r)!.qc);
    const pruneDue = anchorQC !== undefined && this.commitQCPruneDue;
    this.commitQCPruneDue = false;
    if (qcs.length === 0 && !pruneDue) return undefined;
    return { anchorQC, qcs };
  }

  private commitQCStart(): number {
    return Math.max(this.published ? this.published.roadIndex + 1 : 0, this.commitQCFirst);
  }

  commitQCHasBacklog(): boolean {
    return this.commitQCStart() < this.commitQCNext;
  }

  /** The CommitQC log reports `qc` (and every road before it) durable: publish it. */
  markCommitQCDurable(qc: CommitQC): void {
    if (this.published && qc.roadIndex <= this.published.roadIndex) return; // monotonic
    const now = performance.now();
    const from = this.published ? this.published.roadIndex + 1 : 0;
    for (let r = Math.max(from, this.commitQCFirst); r <= qc.roadIndex; r++) {
      const held = this.commitQCs.get(r);
      if (held) this.metrics.commitQCToPublished.record(now - held.arrivedAtMs);
    }
    this.published = qc;
    this.commitQCWaiters.release(qc.roadIndex + 1, () => qc);
    for (const listener of this.commitQCListeners) callCommitQCListener(listener, qc);
  }

  /** A batch waits for the durable anchor: note it and wake the anchor pipeline (no batch now). */
  private deferOnAnchor(): undefined {
    if (!this.deferredOnAnchor) {
      this.deferredOnAnchor = true;
      this.anchorWork.notify();
    }
    return undefined;
  }

  /**
   * Whether a pending anchor write should go now rather than be coalesced with later ones: someone
   * waits for it (`waitAnchorDurable`, `waitForCapacity`), a pipeline deferred a batch until it is
   * durable, or a lane has used half of its admission window (whose base is the durable anchor).
   * Otherwise delaying it only delays pruning.
   */
  anchorWriteUrgent(): boolean {
    if (this.deferredOnAnchor || this.anchorWaiters.size > 0) return true;
    for (const q of this.lanes.values()) {
      if (q.capacityWaiters.size > 0 || q.next - q.admissionStart >= this.admissionHalf) return true;
    }
    return false;
  }

  /** The anchor the anchor pipeline should write, if the in-memory one is ahead of the durable one. */
  takeAnchor(): PruneAnchor | undefined {
    const mem = this.memAnchor;
    if (!mem) return undefined;
    if (this.durable && this.durable.commitQC.roadIndex >= mem.commitQC.roadIndex) return undefined;
    return mem;
  }

  /** The anchor is durable: widen admission windows and let pipelines truncate up to it. */
  markAnchorDurable(anchor: PruneAnchor): void {
    if (this.durable && anchor.commitQC.roadIndex <= this.durable.commitQC.roadIndex) return;
    this.durable = anchor;
    this.deferredOnAnchor = false;
    this.advanceDurablePrune();
    this.anchorWaiters.release(anchor.commitQC.roadIndex + 1, () => anchor);
  }

  /** Latches a fatal error: every waiter rejects with it, every later call throws it. */
  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.rejectAll(err);
  }

  /** Stops: every waiter rejects with CLOSED (unless a failure is latched). */
  close(): void {
    if (!this.failure) this.failure = new CairnError('CLOSED', 'consensus persistence is closed');
    this.rejectAll(this.failure);
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  private rejectAll(err: Error): void {
    for (const q of this.lanes.values()) {
      q.voteWaiters.rejectAll(err);
      q.capacityWaiters.rejectAll(err);
      q.work.notify();
    }
    this.commitQCWaiters.rejectAll(err);
    this.anchorWaiters.rejectAll(err);
    this.commitQCWork.notify();
    this.anchorWork.notify();
  }
}

/** "lane <short> block <n>", built only for error messages (pushBlock runs for every block). */
function blockWhere(h: SignedLaneProposal['block']['header']): string {
  return `lane ${shortLane(h.lane)} block ${h.blockNumber}`;
}

/**
 * Calls one `subscribeVoteable` listener (no closure: this runs per block on the lane path). A
 * listener that throws breaks its own contract, not persistence's: the throw must not reach the
 * pipeline that made the block voteable or the CommitQC durable (it would latch persistence as
 * fatal and refuse every later vote), nor stop the listeners after it. It is re-raised in a
 * microtask of its own, where it surfaces as an uncaught exception (as a throwing
 * commit-scheduler callback does): reported, not swallowed.
 */
function callVoteableListener(
  listener: (lane: LaneId, next: number) => void,
  lane: LaneId,
  next: number,
): void {
  try {
    listener(lane, next);
  } catch (thrown) {
    reraiseApart(thrown);
  }
}

/** As `callVoteableListener`, for a `subscribeCommitQC` listener. */
function callCommitQCListener(listener: (qc: CommitQC) => void, qc: CommitQC): void {
  try {
    listener(qc);
  } catch (thrown) {
    reraiseApart(thrown);
  }
}

/**
 * Status of a block below the voteable cursor. Pending waiters are released the moment the cursor
 * passes them: by a durable write (the block is at or above the anchor) or by an anchor prune (it
 * is below it), so "below the in-memory first" tells the two apart.
 */
function statusOf(q: LaneQueue, n: number): VoteableStatus {
  return n < q.first ? 'pruned' : 'durable';
}
