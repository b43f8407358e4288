import { globalRangeOf, laneRangeOf } from '../domain/committee.ts';
import {
  commitQCDigest,
  hashBlockHeader,
  hashPayload,
  type SigningKey,
  sha256,
  signAppVote,
  signCommitVote,
  signLaneProposal,
} from '../domain/crypto.ts';
import type {
  AppQC,
  BlockHeader,
  CommitQC,
  Committee,
  Hash,
  LaneId,
  LaneRange,
  SignedLaneProposal,
} from '../domain/types.ts';
import { MAX_BLOCKS_PER_LANE_PER_COMMIT, ZERO_HASH } from '../domain/types.ts';
import { isCairnError } from '../lib/errors.ts';
import type { Rng } from '../lib/rng.ts';
import type { CairnNode } from './node.ts';

export interface SimulationOptions {
  /** Blocks per second each lane proposes. */
  ratePerLane: number;
  /** Mean payload size; each block varies uniformly within ±50%. */
  blockBytes: number;
  /** How often a CommitQC is formed over what the lanes have made voteable. */
  commitIntervalMs: number;
  /** AppQC for road r is formed once road r + lag is durable in the block store. */
  appLagRoads: number;
  /** Block store keeps the newest this many global blocks (0 = keep all). */
  retainBlocks: number;
}

/** Observable counters of a running simulation (read by the progress display and the tests). */
export interface SimulationStats {
  blocksProposed: number;
  votes: number;
  roadsPublished: number;
  roadsFlushed: number;
  appQCs: number;
  /** Global blocks durable in the block store (next global number). */
  globalNext: number;
  backpressureWaits: number;
}

/** Notifications for a supervising process (kill -9 tests): each fires only after the fact is durable. */
export interface SimulationEvents {
  onVote?(lane: LaneId, blockNumber: number): void;
  onCommitQCPublished?(qc: CommitQC): void;
  onRoadFlushed?(qc: CommitQC, globalNext: number): void;
  onAnchorDurable?(road: number): void;
}

interface LaneProducer {
  readonly key: SigningKey;
  next: number;
  parentHash: Hash;
  blocked: boolean;
  /** Fractional blocks owed by the rate limiter. */
  credit: number;
}

const TICK_MS = 10;
const DEFAULT_APP_DOMAIN = new TextEncoder().encode('cairn/devnet/app-hash/v1');

/**
 * Drives a node the way a validator's consensus and execution would, on one machine: every lane
 * proposes signed blocks at a fixed rate and votes only once a block is durable; a leader forms a
 * CommitQC over voteable blocks at a fixed interval; durable CommitQCs flow into the block store;
 * after each flushed road an (instant) executor votes and, `appLagRoads` later, an AppQC advances
 * the prune anchor. Every step resumes from what the node recovered, so a restart after `kill -9`
 * simply continues.
 */
export class DevnetSimulation {
  readonly stats: SimulationStats = {
    blocksProposed: 0,
    votes: 0,
    roadsPublished: 0,
    roadsFlushed: 0,
    appQCs: 0,
    globalNext: 0,
    backpressureWaits: 0,
  };
  private readonly producers = new Map<LaneId, LaneProducer>();
  private readonly finalizedNext = new Map<LaneId, number>();
  private nextRoad: number;
  private globalNext: number;
  private roadInFlight = false;
  private timers: NodeJS.Timeout[] = [];
  private lastTickMs = performance.now();
  private stopped = false;
  private failure: Error | undefined;
  /** Writes in flight (block store prunes): stop() lets them finish. */
  private readonly inflight = new Set<Promise<unknown>>();
  private unsubscribeFlushed: (() => void) | undefined;

  constructor(
    private readonly node: CairnNode,
    private readonly keys: readonly SigningKey[],
    private readonly options: SimulationOptions,
    private readonly rng: Rng,
    private readonly events: SimulationEvents = {},
    private readonly onFatal: (err: Error) => void = () => undefined,
  ) {
    const c = node.consensus;
    const last = c.lastCommitQC();
    const anchor = c.durableAnchor();
    this.nextRoad = last ? last.roadIndex + 1 : 0;
    this.globalNext = last ? globalRangeOf(last).next : 0;
    this.stats.globalNext = node.blocks.ranges().blocks.next;
    for (const key of keys) {
      const lane = key.publicKey;
      const next = c.nextBlock(lane);
      this.producers.set(lane, {
        key,
        next,
        parentHash: this.tipHash(lane, next, anchor?.commitQC),
        blocked: false,
        credit: 0,
      });
      const lr = last ? laneRangeOf(last, lane) : undefined;
      this.finalizedNext.set(lane, lr ? lr.next : c.firstBlock(lane));
    }
  }

  get committee(): Committee {
    return this.node.committee;
  }

  get error(): Error | undefined {
    return this.failure;
  }

  start(): void {
    this.unsubscribeFlushed = this.node.finalizer.onRoadFlushed((qc) => this.afterRoadFlushed(qc));
    // Roads the block store already held at startup (flushed by the previous process, or rewritten
    // by the finalizer's catch-up) announce nothing; the execution step the previous process owed
    // for the newest of them (its AppQC) is due now. Without it a restart whose lanes all sit at a
    // full admission window, with every durable block already finalized, never moves again: no
    // road can form, so no AppQC, so the anchor (the only thing that widens the window) stays put.
    const flushed = this.node.finalizer.flushedRoads;
    const newest = flushed > 0 ? this.node.consensus.commitQC(flushed - 1) : undefined;
    if (newest) this.guard(() => this.executeUpTo(newest));
    this.lastTickMs = performance.now();
    this.timers.push(setInterval(() => this.guard(() => this.produceTick()), TICK_MS));
    this.timers.push(setInterval(() => this.guard(() => this.formRoad()), this.options.commitIntervalMs));
  }

  /**
   * Stops proposing and forming roads, then waits for the writes it started (block store prunes).
   * Gate waits (capacity, votes, CommitQCs, anchors) are not awaited: they may only settle when
   * the node closes (a lane at a full window waits for an anchor that will not come), which would
   * make stop hang; once stopped, their CLOSED rejections are ignored.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.unsubscribeFlushed?.();
    await Promise.allSettled([...this.inflight]);
  }

  private guard(step: () => void): void {
    if (this.stopped || this.failure) return;
    try {
      step();
    } catch (err) {
      this.fail(err);
    }
  }

  private fail(err: unknown): void {
    if (this.stopped && isCairnError(err, 'CLOSED')) return;
    if (this.failure) return;
    this.failure = err instanceof Error ? err : new Error(String(err));
    this.onFatal(this.failure);
  }

  /** Watches a gate wait: its failure is the simulation's. */
  private track<T>(p: Promise<T>): void {
    p.then(undefined, (err) => this.fail(err));
  }

  /** Watches a write stop() must wait for. */
  private trackWork<T>(p: Promise<T>): void {
    this.inflight.add(p);
    p.then(
      () => this.inflight.delete(p),
      (err) => {
        this.inflight.delete(p);
        this.fail(err);
      },
    );
  }

  /** Hash of the block before `next` on `lane`, from memory or (after a reset) the anchor. */
  private tipHash(lane: LaneId, next: number, anchorQC: CommitQC | undefined): Hash {
    const held = next > 0 ? this.node.consensus.block(lane, next - 1) : undefined;
    if (held) return hashBlockHeader(held.block.header);
    if (anchorQC) {
      const lr = laneRangeOf(anchorQC, lane);
      if (lr.next === next) return lr.lastHash;
    }
    return ZERO_HASH;
  }

  private produceTick(): void {
    const now = performance.now();
    const elapsedS = Math.min(1, (now - this.lastTickMs) / 1000);
    this.lastTickMs = now;
    for (const [lane, p] of this.producers) {
      // Cap the credit so a stalled lane does not burst a backlog the moment it unblocks.
      p.credit = Math.min(p.credit + elapsedS * this.options.ratePerLane, MAX_BLOCKS_PER_LANE_PER_COMMIT);
      while (p.credit >= 1 && !p.blocked && !this.stopped) {
        if (!this.proposeOne(lane, p)) break;
        p.credit -= 1;
      }
    }
  }

  private proposeOne(lane: LaneId, p: LaneProducer): boolean {
    const size = Math.max(1, Math.round(this.options.blockBytes * (0.5 + this.rng.next())));
    const payload = this.rng.bytes(size);
    const header: BlockHeader = {
      lane,
      blockNumber: p.next,
      parentHash: p.parentHash,
      payloadHash: hashPayload(payload),
    };
    const proposal: SignedLaneProposal = {
      block: { header, payload },
      signature: signLaneProposal(p.key, header),
    };
    try {
      this.node.consensus.pushBlock(proposal);
    } catch (err) {
      if (!isCairnError(err, 'BACKPRESSURE')) throw err;
      // The admission window above the durable anchor is full: wait until the anchor moves.
      p.blocked = true;
      this.stats.backpressureWaits++;
      this.track(
        this.node.consensus.waitForCapacity(lane).then(() => {
          p.blocked = false;
        }),
      );
      return false;
    }
    const n = p.next;
    p.next++;
    p.parentHash = hashBlockHeader(header);
    this.stats.blocksProposed++;
    this.track(
      this.node.consensus.waitVoteable(lane, n).then((status) => {
        if (status !== 'durable') return;
        this.stats.votes++;
        this.events.onVote?.(lane, n);
      }),
    );
    return true;
  }

  /** The leader's step: a CommitQC over the voteable blocks not yet finalized, one road at a time. */
  private formRoad(): void {
    if (this.roadInFlight) return;
    const c = this.node.consensus;
    const laneRanges: LaneRange[] = [];
    let blocks = 0;
    // The admission window only widens when an AppQC moves the anchor, and the AppQC for road r
    // needs roads up to r + appLagRoads flushed: those roads (and the one after) must fit in the
    // window together, or the lanes fill it, no road can form, and the devnet stops for good.
    const perRoad = Math.max(
      1,
      Math.min(MAX_BLOCKS_PER_LANE_PER_COMMIT, Math.floor(c.blocksPerLane / (this.options.appLagRoads + 2))),
    );
    for (const lane of this.committee.members) {
      const first = this.finalizedNext.get(lane)!;
      const next = Math.max(first, Math.min(c.voteableNext(lane), first + perRoad));
      const lastHash = next > first ? hashBlockHeader(c.block(lane, next - 1)!.block.header) : ZERO_HASH;
      laneRanges.push({ lane, first, next, lastHash });
      blocks += next - first;
    }
    if (blocks === 0) return;
    const body = {
      roadIndex: this.nextRoad,
      viewNumber: 0,
      createdAtMs: Date.now(),
      globalFirst: this.globalNext,
      laneRanges,
    };
    const signatures = this.quorumKeys()
      .map((k) => signCommitVote(k, body))
      .sort((a, b) => (a.signer < b.signer ? -1 : 1));
    const qc: CommitQC = { ...body, signatures };
    c.pushCommitQC(qc);
    this.roadInFlight = true;
    this.nextRoad++;
    this.globalNext += blocks;
    for (const lr of laneRanges) {
      this.finalizedNext.set(lr.lane, lr.next);
    }
    // Consensus moves to the next road only once this QC is durable (published).
    this.track(
      c.waitCommitQC(qc.roadIndex).then(() => {
        this.roadInFlight = false;
        this.stats.roadsPublished++;
        this.events.onCommitQCPublished?.(qc);
      }),
    );
  }

  private quorumKeys(): readonly SigningKey[] {
    return this.keys.slice(0, this.committee.quorum);
  }

  /** Execution side: the road is durable in the block store, so the app may vote on it. */
  private afterRoadFlushed(qc: CommitQC): void {
    if (this.stopped || this.failure) return;
    const range = globalRangeOf(qc);
    this.stats.roadsFlushed++;
    this.stats.globalNext = Math.max(this.stats.globalNext, range.next);
    this.events.onRoadFlushed?.(qc, range.next);
    this.executeUpTo(qc);
  }

  /** The executor has executed through `qc`'s road: AppQC `appLagRoads` behind it, then prune. */
  private executeUpTo(qc: CommitQC): void {
    const range = globalRangeOf(qc);
    const appRoad = qc.roadIndex - this.options.appLagRoads;
    if (appRoad < 0) return;
    const appCommitQC = this.node.consensus.commitQC(appRoad);
    const anchor = this.node.consensus.latestAnchor();
    if (!appCommitQC || (anchor && anchor.commitQC.roadIndex >= appRoad)) return;
    this.guard(() => {
      const appQC = this.appQCFor(appCommitQC);
      if (this.node.consensus.pushAppQC(appQC, appCommitQC)) {
        this.stats.appQCs++;
        this.track(
          this.node.consensus.waitAnchorDurable(appRoad).then(() => this.events.onAnchorDurable?.(appRoad)),
        );
      }
      this.pruneBlockStore(range.next);
    });
  }

  private appQCFor(qc: CommitQC): AppQC {
    const range = globalRangeOf(qc);
    const road = new Uint8Array(8);
    new DataView(road.buffer).setBigUint64(0, BigInt(qc.roadIndex), true);
    const proposal = {
      roadIndex: qc.roadIndex,
      globalNumber: range.next > range.first ? range.next - 1 : range.first,
      // A stand-in for execution: deterministic in the road's content.
      appHash: sha256(DEFAULT_APP_DOMAIN, road, commitQCDigest(qc)),
    };
    const signatures = this.quorumKeys()
      .map((k) => signAppVote(k, proposal))
      .sort((a, b) => (a.signer < b.signer ? -1 : 1));
    return { proposal, signatures };
  }

  private pruneBlockStore(globalNext: number): void {
    if (this.options.retainBlocks <= 0) return;
    const retainHeight = globalNext - this.options.retainBlocks;
    // Prune in steps: each call rewrites index entries and may drop segments, so not every road.
    const step = Math.max(1_000, Math.floor(this.options.retainBlocks / 10));
    if (retainHeight < this.node.blocks.ranges().floor + step) return;
    this.trackWork(this.node.flushGate.pruneToRetainHeight(retainHeight));
  }
}
