import * as path from 'node:path';
import type { BlockStore } from '../blocks/blockStore.ts';
import { FlushGate } from '../blocks/flushGate.ts';
import { openBlockStore } from '../blocks/openBlockStore.ts';
import { ConsensusPersistence } from '../consensus/persistence.ts';
import type { CommitQC, Committee, LaneId } from '../domain/types.ts';
import { acquireDirLock, type DirLock } from '../io/dirLock.ts';
import { type FileSystem, mkdirDurable } from '../io/fileSystem.ts';
import { realFileSystem } from '../io/realFileSystem.ts';
import { CairnError, ioFatal } from '../lib/errors.ts';
import { runAllThenThrowFirst } from '../lib/lifecycle.ts';
import { Finalizer } from './finalizer.ts';

export const CONSENSUS_DIR = 'consensus';
export const BLOCKS_DIR = 'blocks';

export interface NodeOptions {
  dataDir: string;
  /** The committee, or a function that derives it once the directory is locked (e.g. from a file in it). */
  committee: Committee | (() => Committee);
  fs?: FileSystem;
  /** Value-log segment size of the block store (also the pruning granularity). */
  blockSegmentBytes?: number;
  /** Lane/CommitQC WAL segment size. */
  consensusSegmentBytes?: number;
  /** Admission window per lane above the durable anchor. */
  blocksPerLane?: number;
  /** Verify lane-block signatures at admission (default true). */
  verifySignatures?: boolean;
  onWarning?: (message: string, details: Record<string, unknown>) => void;
  /** Called once when any store latches a fatal error. */
  onFatal?: (err: Error) => void;
}

/** What a node found on disk when it opened: printed by the devnet after a restart. */
export interface RecoveryReport {
  fresh: boolean;
  /** Road of the durable prune anchor, if any. */
  anchorRoad: number | undefined;
  /** Durable CommitQC roads [first, next). */
  commitQCRoads: { first: number; next: number };
  /** Durable blocks per lane [first, next). */
  lanes: { lane: LaneId; first: number; next: number }[];
  /** Block store contents after recovery. */
  blocks: { first: number; next: number; floor: number };
  /** Finalized blocks rewritten into the block store from the lane WALs at startup. */
  refetchedBlocks: number;
}

/**
 * The composition root: one data directory, one process (kernel lock), consensus persistence and
 * the block store opened in dependency order and closed in reverse. The finalizer moves durable
 * CommitQCs and their blocks into the block store.
 */
export class CairnNode {
  private closing: Promise<void> | undefined;

  private constructor(
    readonly dataDir: string,
    readonly committee: Committee,
    readonly fs: FileSystem,
    readonly consensus: ConsensusPersistence,
    readonly blocks: BlockStore,
    readonly flushGate: FlushGate,
    readonly finalizer: Finalizer,
    private readonly lock: DirLock,
  ) {}

  static async open(options: NodeOptions): Promise<{ node: CairnNode; recovery: RecoveryReport }> {
    const fs = options.fs ?? realFileSystem;
    checkDataDir(fs, options.dataDir);
    // Create the data directory (and missing parents) durably before the lock, whose own mkdir is a
    // plain one: a power cut soon after a first start must not drop the directory entry.
    try {
      mkdirDurable(fs, path.resolve(options.dataDir), path);
    } catch (err) {
      throw ioFatal(`creating data directory ${options.dataDir}`, err, { file: options.dataDir });
    }
    const lock = await acquireDirLock(options.dataDir);
    const opened: { close(): Promise<void> }[] = [];
    try {
      const fresh = !fs.exists(path.join(options.dataDir, CONSENSUS_DIR));
      const committee = typeof options.committee === 'function' ? options.committee() : options.committee;
      // The block store first: where it ends bounds consensus pruning (the prune anchor may be
      // ahead of what this node has flushed; the lane WALs must keep those roads' blocks).
      const blocks = await openBlockStore({
        dir: path.join(options.dataDir, BLOCKS_DIR),
        fs,
        ...(options.blockSegmentBytes !== undefined ? { segmentBytes: options.blockSegmentBytes } : {}),
        ...(options.onWarning ? { onWarning: options.onWarning } : {}),
        // Every FullCommitQC is checked against the committee (lanes, quorum) and its headers against
        // the QC's lane ranges before it is stored. Signatures were verified when consensus admitted
        // the QC (and again when it loads its logs), so they are not checked a third time here.
        committee,
        verifySignatures: false,
      });
      opened.push(blocks);
      const stored = blocks.ranges();
      const consensus = await ConsensusPersistence.open({
        fs,
        dir: path.join(options.dataDir, CONSENSUS_DIR),
        committee,
        finalizedGlobalNext: Math.min(stored.blocks.next, stored.qcs.next),
        ...(options.blocksPerLane !== undefined ? { blocksPerLane: options.blocksPerLane } : {}),
        ...(options.verifySignatures !== undefined ? { verifySignatures: options.verifySignatures } : {}),
        ...(options.consensusSegmentBytes !== undefined
          ? { segmentBytes: options.consensusSegmentBytes }
          : {}),
        ...(options.onWarning ? { onWarning: options.onWarning } : {}),
        ...(options.onFatal ? { onFatal: options.onFatal } : {}),
      });
      opened.push(consensus);
      const flushGate = new FlushGate(blocks);
      const finalizer = new Finalizer(consensus, flushGate, options.onFatal);
      const refetchedBlocks = await finalizer.catchUp();
      finalizer.start();
      const node = new CairnNode(
        options.dataDir,
        committee,
        fs,
        consensus,
        blocks,
        flushGate,
        finalizer,
        lock,
      );
      return { node, recovery: node.describeRecovery(fresh, refetchedBlocks) };
    } catch (err) {
      for (const store of opened.reverse()) await store.close().catch(() => undefined);
      await lock.release().catch(() => undefined);
      throw err;
    }
  }

  private describeRecovery(fresh: boolean, refetchedBlocks: number): RecoveryReport {
    const c = this.consensus;
    const anchor = c.durableAnchor();
    const last = c.lastCommitQC();
    const nextRoad = last ? last.roadIndex + 1 : (anchor?.commitQC.roadIndex ?? 0);
    const firstRoad = anchor ? anchor.commitQC.roadIndex : last ? firstHeldRoad(c, last) : 0;
    const r = this.blocks.ranges();
    return {
      fresh,
      anchorRoad: anchor?.commitQC.roadIndex,
      commitQCRoads: { first: firstRoad, next: nextRoad },
      lanes: this.committee.members.map((lane) => ({
        lane,
        first: c.firstBlock(lane),
        next: c.voteableNext(lane),
      })),
      blocks: { first: r.blocks.first, next: r.blocks.next, floor: r.floor },
      refetchedBlocks,
    };
  }

  /** Stops the finalizer and the flush gate, then closes the stores in reverse order of opening, then unlocks. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await runAllThenThrowFirst([
        () => this.finalizer.stop(),
        // Votes still waiting on a flush are told the node is closing (they would never settle).
        () => this.flushGate.close(),
        () => this.consensus.close(),
        () => this.blocks.close(),
        () => this.lock.release(),
      ]);
    })();
    return this.closing;
  }
}

/** A data directory that exists must be a directory: a caller error, named, before anything is created. */
function checkDataDir(fs: FileSystem, dataDir: string): void {
  let isDirectory: boolean;
  try {
    if (!fs.exists(dataDir)) return;
    isDirectory = fs.stat(dataDir).isDirectory;
  } catch (err) {
    throw ioFatal(`checking data directory ${dataDir}`, err, { file: dataDir });
  }
  if (!isDirectory) {
    throw new CairnError('INVALID_ARGUMENT', `data directory ${dataDir} exists and is not a directory`, {
      details: { file: dataDir },
    });
  }
}

function firstHeldRoad(c: ConsensusPersistence, last: CommitQC): number {
  let road = last.roadIndex;
  while (road > 0 && c.commitQC(road - 1) !== undefined) road--;
  return road;
}
