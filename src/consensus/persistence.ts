import * as path from 'node:path';
import { encodeCommitQC, shortLane } from '../domain/codecs.ts';
import {
  globalRangeOf,
  laneRangeOf,
  verifyCommitQC,
  verifyLaneProposal,
  verifyPruneAnchor,
} from '../domain/committee.ts';
import { hashBlockHeader } from '../domain/crypto.ts';
import type { AppQC, CommitQC, Committee, LaneId, PruneAnchor, SignedLaneProposal } from '../domain/types.ts';
import { type FileSystem, mkdirDurable } from '../io/fileSystem.ts';
import { bytesEqual } from '../lib/bytes.ts';
import { CairnError, ioFatal } from '../lib/errors.ts';
import { runAllThenThrowFirst } from '../lib/lifecycle.ts';
import type { Durability } from '../wal/types.ts';
import { type AnchorStore, NullAnchorStore, openAnchorStore } from './anchorStore.ts';
import { BlockPersister } from './blockPersister.ts';
import { CommitQCPersister } from './commitQCPersister.ts';
import { InFlightState, type PushResult, type VoteableStatus } from './inFlightState.ts';
import { type LogOpener, NullLogOpener, WalLogOpener } from './logOpener.ts';
import { PersistenceMetrics } from './metrics.ts';
import { PersistLoop } from './persistLoop.ts';

/**
 * Consensus persistence: the façade the node (devnet, consensus) talks to.
 *
 * ```ts
 * const cp = await ConsensusPersistence.open({ fs, dir: '/data/consensus', committee });
 * cp.pushBlock(signedProposal);                       // admission (sync; throws typed errors)
 * await cp.waitVoteable(lane, n);                      // vote only after this resolves
 * cp.pushCommitQC(qc);                                 // consensus hands over each road's QC
 * cp.subscribeCommitQC((qc) => advanceView(qc));       // published only once durable
 * cp.pushAppQC(appQC, commitQC);                       // advances the prune anchor
 * await cp.close();
 * ```
 *
 * Layout under `dir`: `anchor.a|b` (prune anchor, A/B), `commitqcs/` (CommitQC WAL),
 * `blocks/<lane hex>/` (one WAL per lane, created lazily). Without `dir` (and `fs`), persistence is
 * disabled: the same loop runs with logs that discard everything, so cursors advance at once.
 */
export interface ConsensusPersistenceOptions {
  /** File system and directory; omit both for the no-op mode (persistence disabled — unsafe). */
  fs?: FileSystem;
  dir?: string;
  committee: Committee;
  /** Admission window per lane beyond the durable anchor (default 30). */
  blocksPerLane?: number;
  /** CommitQCs held above the anchor (default 256). */
  commitQCWindow?: number;
  /** Verify signatures at admission and of the loaded anchor (default true). */
  verifySignatures?: boolean;
  /** WAL segment size (default 4 MiB). */
  segmentBytes?: number;
  /** Lane-log fsyncs on the libuv pool (default true; set UV_THREADPOOL_SIZE high, e.g. 64). */
  syncOffThread?: boolean;
  /** WAL durability; anything but the default 'on-request' breaks the vote gate's guarantee. */
  durability?: Durability;
  preallocate?: boolean;
  maxBatchBlocks?: number;
  maxBatchBytes?: number;
  /** Drop records below the anchor only when whole segments are freed (default true). */
  lazyPrune?: boolean;
  /**
   * Prune-anchor writes are coalesced to at most one per this many ms while nothing waits for the
   * durable anchor (default 1000; 0 writes every anchor at once). See `PersistLoop`.
   */
  anchorWriteIntervalMs?: number;
  onWarning?: (message: string, details: Record<string, unknown>) => void;
  /** Called once with the first fatal error; the component has stopped. */
  onFatal?: (err: Error) => void;
  /**
   * Where the downstream block store ends (global block number; blocks below it are durable there).
   * When given, pruning — at startup and later, in memory and on disk — never passes the newest road
   * the block store holds, even when the prune anchor is further (an AppQC can arrive before this
   * node flushed those roads); the node then reports progress with `setFinalizedRoads`. Omitted:
   * pruning follows the anchor alone.
   */
  finalizedGlobalNext?: number;
}

export const COMMITQCS_DIR = 'commitqcs';
export const BLOCKS_DIR = 'blocks';

export class ConsensusPersistence {
  readonly metrics: PersistenceMetrics;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly state: InFlightState,
    private readonly loop: PersistLoop,
    private readonly blocks: BlockPersister,
    private readonly commitQCs: CommitQCPersister,
    private readonly anchorStore: AnchorStore,
    metrics: PersistenceMetrics,
    /** True when persistence is disabled. */
    readonly noop: boolean,
  ) {
    this.metrics = metrics;
  }

  /**
   * Opens (or creates) the store, loads the anchor, the CommitQC log and every lane log, checks
   * them against each other, prunes what lies below the anchor, and starts the persist loop with
   * every cursor at its durable position. Inconsistencies are typed errors naming lane and number:
   * GAP (records missing between the anchor and a log), CORRUPT (a record that does not belong),
   * DATA_LOSS (a log yielded fewer records than it holds).
   */
  static async open(options: ConsensusPersistenceOptions): Promise<ConsensusPersistence> {
    const metrics = new PersistenceMetrics();
    const warn = options.onWarning ?? (() => undefined);
    const { committee } = options;
    const persistent = options.dir !== undefined;
    if (persistent !== (options.fs !== undefined)) {
      throw new CairnError('INVALID_ARGUMENT', 'pass both fs and dir (persistent) or neither (no-op mode)');
    }
    let opener: LogOpener;
    let anchorStore: AnchorStore;
    let anchor: PruneAnchor | undefined;
    const dir = options.dir ?? '';
    if (options.fs !== undefined && options.dir !== undefined) {
      try {
        mkdirDurable(options.fs, dir, path);
      } catch (err) {
        throw ioFatal(`creating ${dir}`, err, { file: dir });
      }
      const opened = openAnchorStore(options.fs, dir);
      for (const w of opened.warnings) warn(w, { file: dir });
      anchorStore = opened.store;
      anchor = opened.loaded;
      opener = new WalLogOpener({
        fs: options.fs,
        ...(options.segmentBytes !== undefined ? { segmentBytes: options.segmentBytes } : {}),
        ...(options.durability !== undefined ? { durability: options.durability } : {}),
        ...(options.preallocate !== undefined ? { preallocate: options.preallocate } : {}),
        syncOffThread: options.syncOffThread ?? true,
        onWarning: warn,
      });
    } else {
      warn('consensus persistence is DISABLED: votes and CommitQCs are not crash-safe', {});
      anchorStore = new NullAnchorStore();
      opener = new NullLogOpener();
    }

    const closeables: { close(): unknown }[] = [anchorStore];
    try {
      if (anchor) {
        try {
          verifyPruneAnchor(anchor, committee, { signatures: options.verifySignatures ?? true });
        } catch (err) {
          throw new CairnError(
            'CORRUPT',
            `prune anchor in ${dir} does not verify: ${(err as Error).message}`,
            {
              cause: err,
              details: { file: path.join(dir, 'anchor') },
            },
          );
        }
      }
      const anchorRoad = anchor?.commitQC.roadIndex;

      // CommitQC log.
      const qcDir = path.join(dir, COMMITQCS_DIR);
      const { persister: commitQCs, loaded: loadedQCs } = await CommitQCPersister.open({
        opener,
        dir: qcDir,
        initialRoad: anchorRoad ?? 0,
        readFrom: anchorRoad ?? 0,
        metrics,
      });
      closeables.push({ close: () => commitQCs.close() });
      // Roads below the anchor the block store has not flushed yet are still needed: read those
      // back too (newest first, as far as the block store is behind; bounded by that lag).
      if (anchor && options.finalizedGlobalNext !== undefined) {
        let road = Math.min(anchor.commitQC.roadIndex, loadedQCs[0]?.roadIndex ?? anchor.commitQC.roadIndex);
        let lowest: CommitQC = loadedQCs[0] ?? anchor.commitQC;
        while (globalRangeOf(lowest).next > options.finalizedGlobalNext && road > commitQCs.first) {
          road--;
          const qc = commitQCs.readRetained(road);
          if (!qc) break;
          loadedQCs.unshift(qc);
          lowest = qc;
        }
      }
      const { pruneQC, finalizedRoads } = prunePoint(anchor, loadedQCs, options.finalizedGlobalNext);
      const restoredQCs = reconcileCommitQCs(
        qcDir,
        anchor,
        pruneQC,
        commitQCs.first,
        commitQCs.next,
        loadedQCs,
      );
      const laneStart = (lane: LaneId) => (pruneQC ? laneRangeOf(pruneQC, lane).first : 0);

      // Lane logs.
      const blocksDir = path.join(dir, BLOCKS_DIR);
      const {
        persister: blocks,
        loaded: loadedLanes,
        orphans,
      } = await BlockPersister.open({
        opener,
        blocksDir,
        lanes: committee.members,
        startOf: laneStart,
        metrics,
        onWarning: warn,
      });
      closeables.push({ close: () => blocks.close() });
      const restoredLanes = new Map<LaneId, { first: number; blocks: SignedLaneProposal[] }>();
      for (const loaded of loadedLanes) {
        restoredLanes.set(loaded.lane, reconcileLane(blocksDir, anchor, pruneQC, loaded));
      }

      // Re-verify what the WALs gave back (a record behind a valid frame checksum may still be one
      // this process must not trust: written by a build that did not verify, or damaged and
      // re-checksummed). Only what is retained from the prune point is read, so this is bounded
      // by the admission windows and the CommitQC window.
      if (options.verifySignatures ?? true) {
        verifyLoaded(qcDir, blocksDir, committee, restoredQCs, restoredLanes, anchorRoad);
      }

      if (options.fs !== undefined) {
        reclaimOrphanLanes(options.fs, blocksDir, orphans, anchor, restoredQCs, warn);
      }

      // Startup prune (before the loop starts): drop what lies below the prune point (the anchor,
      // or the newest road the block store holds when that is lower), re-position emptied logs,
      // and write the anchor's QC back if the CommitQC log lost it.
      if (anchor && pruneQC) {
        if (pruneQC.roadIndex < anchor.commitQC.roadIndex && commitQCs.next === anchor.commitQC.roadIndex) {
          await commitQCs.persist([anchor.commitQC]);
        }
        for (const loaded of loadedLanes) {
          await blocks.pruneAndPersistLane(loaded.lane, pruneQC, [], { lazyPrune: false });
        }
        await commitQCs.pruneAndPersist(pruneQC, [], { lazyPrune: false });
      }

      const state = new InFlightState(
        {
          committee,
          metrics,
          ...(options.blocksPerLane !== undefined ? { blocksPerLane: options.blocksPerLane } : {}),
          ...(options.commitQCWindow !== undefined ? { commitQCWindow: options.commitQCWindow } : {}),
          ...(options.verifySignatures !== undefined ? { verifySignatures: options.verifySignatures } : {}),
        },
        {
          anchor,
          ...(pruneQC ? { pruneQC } : {}),
          ...(finalizedRoads !== undefined ? { finalizedRoads } : {}),
          commitQCs: restoredQCs,
          lanes: restoredLanes,
        },
      );
      const loop = new PersistLoop(state, blocks, commitQCs, anchorStore, metrics, {
        ...(options.maxBatchBlocks !== undefined ? { maxBatchBlocks: options.maxBatchBlocks } : {}),
        ...(options.maxBatchBytes !== undefined ? { maxBatchBytes: options.maxBatchBytes } : {}),
        lazyPrune: options.lazyPrune ?? true,
        ...(options.anchorWriteIntervalMs !== undefined
          ? { anchorWriteIntervalMs: options.anchorWriteIntervalMs }
          : {}),
        ...(options.onFatal ? { onFatal: options.onFatal } : {}),
      });
      const cp = new ConsensusPersistence(state, loop, blocks, commitQCs, anchorStore, metrics, !persistent);
      loop.start();
      return cp;
    } catch (err) {
      for (const c of closeables.reverse()) {
        try {
          await c.close();
        } catch {
          // The open error is the one to report.
        }
      }
      throw err;
    }
  }

  // ------------------------------------------------------------------ intake

  /** Admits a signed lane block; see `InFlightState.pushBlock` for the rules. */
  pushBlock(p: SignedLaneProposal): PushResult {
    return this.state.pushBlock(p);
  }
  pushCommitQC(qc: CommitQC): PushResult {
    return this.state.pushCommitQC(qc);
  }
  /** Advances the prune anchor (made durable by the loop before anything is truncated for it). */
  pushAppQC(appQC: AppQC, commitQC: CommitQC): boolean {
    return this.state.pushAppQC(appQC, commitQC);
  }

  // ------------------------------------------------------------------ gates

  /** Resolves once block `n` of `lane` is durable ('durable') or below the anchor ('pruned'). */
  waitVoteable(lane: LaneId, n: number): Promise<VoteableStatus> {
    return this.state.waitVoteable(lane, n);
  }
  voteableNext(lane: LaneId): number {
    return this.state.voteableNext(lane);
  }
  nextBlock(lane: LaneId): number {
    return this.state.nextBlock(lane);
  }
  firstBlock(lane: LaneId): number {
    return this.state.firstBlock(lane);
  }
  /** Block `n` of `lane` if held (accepted and at or above the anchor). */
  block(lane: LaneId, n: number): SignedLaneProposal | undefined {
    return this.state.block(lane, n);
  }
  waitForCapacity(lane: LaneId): Promise<void> {
    return this.state.waitForCapacity(lane);
  }
  /**
   * `listener(lane, next)` each time a lane's voteable cursor moves. A listener must not throw; one
   * that does is isolated (the others still run, persistence goes on) and its throw re-raised as
   * an uncaught exception.
   */
  subscribeVoteable(listener: (lane: LaneId, next: number) => void): () => void {
    return this.state.subscribeVoteable(listener);
  }
  /** Latest durable CommitQC. */
  lastCommitQC(): CommitQC | undefined {
    return this.state.lastCommitQC();
  }
  waitCommitQC(road: number): Promise<CommitQC> {
    return this.state.waitCommitQC(road);
  }
  /** `listener(qc)` for each CommitQC published (durable); throws are isolated as for subscribeVoteable. */
  subscribeCommitQC(listener: (qc: CommitQC) => void): () => void {
    return this.state.subscribeCommitQC(listener);
  }
  commitQC(road: number): CommitQC | undefined {
    return this.state.commitQC(road);
  }
  nextCommitQCRoad(): number {
    return this.state.nextCommitQCRoad();
  }
  latestAnchor(): PruneAnchor | undefined {
    return this.state.latestAnchor();
  }
  durableAnchor(): PruneAnchor | undefined {
    return this.state.durableAnchor();
  }
  waitAnchorDurable(road: number): Promise<PruneAnchor> {
    return this.state.waitAnchorDurable(road);
  }
  persistLag(): Map<LaneId, number> {
    return this.state.persistLag();
  }
  /** Admission window per lane above the durable prune point. */
  get blocksPerLane(): number {
    return this.state.blocksPerLane;
  }
  /**
   * Roads below `roads` are durable in the block store: pruning may follow the anchor that far.
   * A no-op unless the store was opened with `finalizedGlobalNext`.
   */
  setFinalizedRoads(roads: number): void {
    this.state.setFinalizedRoads(roads);
  }
  /** The fatal error that stopped persistence, if any. */
  get failure(): Error | undefined {
    return this.loop.failure;
  }

  /**
   * Stops the loop (in-flight writes finish), rejects waiters with CLOSED, closes every log and the
   * anchor file. Idempotent: every call gets the same promise.
   */
  close(): Promise<void> {
    // Intake stops now, not once the loop has stopped: a block admitted meanwhile would be answered
    // 'accepted' and never written.
    if (this.closing === undefined) this.state.stopIntake();
    this.closing ??= (async () => {
      await this.loop.stop();
      this.state.close();
      await runAllThenThrowFirst([
        () => this.blocks.close(),
        () => this.commitQCs.close(),
        () => this.anchorStore.close(),
      ]);
    })();
    return this.closing;
  }
}

/**
 * Where startup pruning stops, and how many roads the block store holds (`finalizedRoads`, when
 * `finalizedGlobalNext` is given). The prune point is the anchor's CommitQC, or — when the block
 * store has not flushed the anchor's road — the newest road it has flushed, if the CommitQC log
 * still holds that road (otherwise the anchor's: the block store lost roads consensus no longer
 * holds, and the node's catch-up reports that as DATA_LOSS).
 */
function prunePoint(
  anchor: PruneAnchor | undefined,
  loaded: readonly CommitQC[],
  finalizedGlobalNext: number | undefined,
): { pruneQC: CommitQC | undefined; finalizedRoads: number | undefined } {
  if (finalizedGlobalNext === undefined) return { pruneQC: anchor?.commitQC, finalizedRoads: undefined };
  let finalizedRoads = 0;
  const candidates = anchor ? [...loaded, anchor.commitQC] : loaded;
  for (const qc of candidates) {
    if (globalRangeOf(qc).next <= finalizedGlobalNext) {
      finalizedRoads = Math.max(finalizedRoads, qc.roadIndex + 1);
    }
  }
  if (!anchor || finalizedRoads - 1 >= anchor.commitQC.roadIndex) {
    return { pruneQC: anchor?.commitQC, finalizedRoads };
  }
  const held = loaded.find((qc) => qc.roadIndex === finalizedRoads - 1);
  return { pruneQC: held ?? anchor.commitQC, finalizedRoads };
}

/**
 * Checks the loaded CommitQCs against the anchor and each other; returns them from the prune
 * road on (the anchor's road, or a lower one the block store has not flushed past).
 */
function reconcileCommitQCs(
  location: string,
  anchor: PruneAnchor | undefined,
  pruneQC: CommitQC | undefined,
  logFirst: number,
  logNext: number,
  loaded: readonly CommitQC[],
): CommitQC[] {
  const road = anchor?.commitQC.roadIndex;
  if (road === undefined) {
    if (logFirst !== 0) {
      throw new CairnError(
        'GAP',
        `${location}: the CommitQC log starts at road ${logFirst} but no prune anchor justifies dropping roads [0, ${logFirst})`,
        { details: { file: location, roadIndex: 0, logFirst } },
      );
    }
  } else if (logFirst > road + 1 || (logFirst === logNext && logNext > road + 1)) {
    throw new CairnError(
      'GAP',
      `${location}: CommitQCs of roads [${road + 1}, ${logFirst}) are missing (prune anchor at road ${road})`,
      { details: { file: location, roadIndex: road + 1, logFirst } },
    );
  }
  const from = pruneQC?.roadIndex;
  const kept = loaded.filter((qc) => from === undefined || qc.roadIndex >= from);
  if (anchor && road !== undefined) {
    const held = kept.find((qc) => qc.roadIndex === road);
    if (held && !bytesEqual(encodeCommitQC(held), encodeCommitQC(anchor.commitQC))) {
      throw new CairnError('CORRUPT', `${location}: CommitQC ${road} differs from the prune anchor's`, {
        details: { file: location, roadIndex: road },
      });
    }
  }
  const out: CommitQC[] = [];
  if (pruneQC) out.push(pruneQC);
  const push = (qc: CommitQC) => {
    const previous = out[out.length - 1];
    if (previous) {
      if (qc.roadIndex !== previous.roadIndex + 1) {
        throw new CairnError(
          'GAP',
          `${location}: CommitQC ${qc.roadIndex} follows road ${previous.roadIndex}`,
          {
            details: { file: location, roadIndex: previous.roadIndex + 1 },
          },
        );
      }
      checkLaneRangesContinue(location, previous, qc);
    }
    out.push(qc);
  };
  for (const qc of kept) {
    if (pruneQC && qc.roadIndex === pruneQC.roadIndex) continue;
    push(qc);
  }
  // The anchor's QC above the log's end (the log lost it, or never had it): written back at open.
  if (anchor && road !== undefined && out[out.length - 1]!.roadIndex < road) push(anchor.commitQC);
  return out;
}

function checkLaneRangesContinue(location: string, previous: CommitQC, qc: CommitQC): void {
  const same = previous.laneRanges.length === qc.laneRanges.length;
  for (let i = 0; same && i < qc.laneRanges.length; i++) {
    const a = previous.laneRanges[i]!;
    const b = qc.laneRanges[i]!;
    if (a.lane !== b.lane || a.next !== b.first) {
      throw new CairnError(
        'CORRUPT',
        `${location}: CommitQC ${qc.roadIndex} lane ${shortLane(b.lane)} starts at ${b.first}, road ${previous.roadIndex} ended at ${a.next}`,
        { details: { file: location, roadIndex: qc.roadIndex, lane: b.lane } },
      );
    }
  }
}

/**
 * Lane directories of lanes outside the committee (e.g. after a committee change). They are removed
 * only when the decision is safe: a durable anchor that verified against this committee (so the
 * committee is not a misconfiguration that would make every real lane look orphaned) and no
 * retained CommitQC naming the lane (nothing still to finalize or serve refers to its blocks).
 * Otherwise they are left alone with a warning. Every removal is logged with what it freed.
 */
function reclaimOrphanLanes(
  fs: FileSystem,
  blocksDir: string,
  orphans: readonly LaneId[],
  anchor: PruneAnchor | undefined,
  retained: readonly CommitQC[],
  warn: (message: string, details: Record<string, unknown>) => void,
): void {
  for (const lane of orphans) {
    const dir = path.join(blocksDir, lane);
    const referenced = retained.some((qc) => qc.laneRanges.some((lr) => lr.lane === lane));
    if (!anchor || referenced) {
      warn(
        `ignoring lane directory ${dir}: lane ${shortLane(lane)} is not in the committee; kept because ` +
          (anchor ? 'a retained CommitQC names it' : 'no durable prune anchor confirms the committee yet'),
        { lane, file: dir },
      );
      continue;
    }
    let files = 0;
    let bytes = 0;
    try {
      for (const name of fs.readdir(dir)) {
        const file = path.join(dir, name);
        bytes += fs.stat(file).size;
        fs.unlink(file);
        files++;
      }
      fs.rmdir(dir);
      fs.syncDir(blocksDir);
    } catch (err) {
      throw ioFatal(`removing orphan lane directory ${dir}`, err, { file: dir });
    }
    warn(
      `removed orphan lane directory ${dir}: lane ${shortLane(lane)} is not in the committee and no ` +
        `retained CommitQC names it (${files} files, ${bytes} bytes)`,
      { lane, file: dir, files, bytes },
    );
  }
}

function verifyLoaded(
  qcDir: string,
  blocksDir: string,
  committee: Committee,
  qcs: readonly CommitQC[],
  lanes: ReadonlyMap<LaneId, { blocks: SignedLaneProposal[] }>,
  anchorRoad: number | undefined,
): void {
  for (const qc of qcs) {
    if (qc.roadIndex === anchorRoad) continue; // verified with the anchor
    try {
      verifyCommitQC(qc, committee, { signatures: true });
    } catch (err) {
      throw new CairnError(
        'CORRUPT',
        `${qcDir}: CommitQC ${qc.roadIndex} loaded from the log does not verify: ${(err as Error).message}`,
        { cause: err, details: { file: qcDir, roadIndex: qc.roadIndex } },
      );
    }
  }
  for (const [lane, loaded] of lanes) {
    for (const p of loaded.blocks) {
      try {
        verifyLaneProposal(p, committee);
      } catch (err) {
        const n = p.block.header.blockNumber;
        throw new CairnError(
          'CORRUPT',
          `${path.join(blocksDir, lane)}: lane ${shortLane(lane)} block ${n} loaded from the log does not verify: ${(err as Error).message}`,
          { cause: err, details: { file: path.join(blocksDir, lane), lane, blockNumber: n } },
        );
      }
    }
  }
}

/** Checks one loaded lane against the anchor; returns its blocks from the anchor's lane first. */
function reconcileLane(
  blocksDir: string,
  anchor: PruneAnchor | undefined,
  pruneQC: CommitQC | undefined,
  loaded: { lane: LaneId; first: number; next: number; blocks: SignedLaneProposal[] },
): { first: number; blocks: SignedLaneProposal[] } {
  const location = path.join(blocksDir, loaded.lane);
  const lr = pruneQC ? laneRangeOf(pruneQC, loaded.lane) : undefined;
  const start = lr?.first ?? 0;
  // Every truncation or re-positioning of a lane log happens at or below a durable anchor, and
  // anchors only move forward: a log that starts (or stands, when empty) past the anchor's lane
  // first has lost blocks.
  const lostFrom = loaded.blocks.length > 0 ? loaded.first : loaded.next;
  if (lostFrom > start) {
    throw new CairnError(
      'GAP',
      `${location}: lane ${shortLane(loaded.lane)} blocks [${start}, ${lostFrom}) are missing` +
        (anchor ? ` (prune anchor at road ${anchor.commitQC.roadIndex})` : ' (no prune anchor)'),
      { details: { file: location, lane: loaded.lane, blockNumber: start } },
    );
  }
  const kept = loaded.blocks.filter((p) => p.block.header.blockNumber >= start);
  if (lr && lr.next > lr.first) {
    const last = kept.find((p) => p.block.header.blockNumber === lr.next - 1);
    if (last && !bytesEqual(hashBlockHeader(last.block.header), lr.lastHash)) {
      throw new CairnError(
        'CORRUPT',
        `${location}: lane ${shortLane(loaded.lane)} block ${lr.next - 1} does not match the prune anchor's CommitQC`,
        { details: { file: location, lane: loaded.lane, blockNumber: lr.next - 1 } },
      );
    }
  }
  return { first: start, blocks: kept };
}
