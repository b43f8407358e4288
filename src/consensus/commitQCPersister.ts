import { commitQCCodec, encodeCommitQC } from '../domain/codecs.ts';
import type { CommitQC } from '../domain/types.ts';
import { bytesEqual } from '../lib/bytes.ts';
import { CairnError, FatalLatch } from '../lib/errors.ts';
import type { LogOpener } from './logOpener.ts';
import type { PersistenceMetrics } from './metrics.ts';
import { pruneBelow, pruneTarget, resetThenAppend } from './truncateThenAppend.ts';
import { TypedLog } from './typedLog.ts';

/**
 * CommitQC persister: one log in `<dir>/`, record `r` = the CommitQC of road `r`. Rules:
 *  - duplicates are ignored when identical (never re-published), a different QC at a used road is
 *    a CONFLICT error; a road past the next one is a GAP error;
 *  - driven by the prune anchor: roads below it are dropped; when the anchor is at or past the
 *    log's end the log is emptied, re-positioned at the anchor's road and the anchor's own QC is
 *    written back first, so the log always holds the anchor QC and a crash there recovers;
 *  - one fsync per call however many QCs it appends.
 *
 * Callers pass only durable anchors and serialize calls (one pipeline). An I/O failure latches.
 */

export interface CommitQCWriteOptions {
  /** Called synchronously once the appended QCs are durable, with the newest of them. */
  onDurable?: (latest: CommitQC) => void;
  /** Drop roads below the anchor only when a whole segment is freed (default false). */
  lazyPrune?: boolean;
}

export interface CommitQCWriteResult {
  appended: number;
  duplicates: number;
  repositioned: boolean;
  pruned: boolean;
  next: number;
}

export class CommitQCPersister {
  private readonly latch = new FatalLatch();
  private closed: Promise<void> | undefined;
  private busy = false;

  private constructor(
    private readonly log: TypedLog<CommitQC>,
    private readonly retainsRecords: boolean,
    private readonly metrics: PersistenceMetrics,
  ) {}

  /**
   * Opens the log (a brand-new one starts at `initialRoad`) and reads it back, checking that each
   * record decodes and carries its own road index. Returns the loaded QCs in road order.
   */
  static async open(options: {
    opener: LogOpener;
    dir: string;
    initialRoad?: number;
    /** Read back only roads from this one (the prune anchor's): startup cost follows what is above it. */
    readFrom?: number;
    metrics: PersistenceMetrics;
  }): Promise<{ persister: CommitQCPersister; loaded: CommitQC[] }> {
    const wal = await options.opener.open(options.dir, options.initialRoad ?? 0);
    const log = new TypedLog(options.dir, wal, commitQCCodec, roadOf);
    try {
      const from = Math.min(Math.max(options.readFrom ?? 0, log.firstIndex), log.nextIndex);
      const loaded = log.readAll(from);
      return {
        persister: new CommitQCPersister(log, options.opener.retainsRecords, options.metrics),
        loaded,
      };
    } catch (err) {
      await log.close().catch(() => undefined);
      throw err;
    }
  }

  /** Road index the next appended QC must carry. */
  get next(): number {
    return this.log.nextIndex;
  }
  /** The QC of a retained road below what `open` read back (startup only), or undefined. */
  readRetained(road: number): CommitQC | undefined {
    if (!this.retainsRecords || road < this.log.firstIndex || road >= this.log.nextIndex) return undefined;
    return this.log.read(road);
  }

  /** Oldest retained road (== next when empty). */
  get first(): number {
    return this.log.firstIndex;
  }

  async pruneAndPersist(
    anchor: CommitQC | undefined,
    qcs: readonly CommitQC[],
    options: CommitQCWriteOptions = {},
  ): Promise<CommitQCWriteResult> {
    this.latch.check();
    if (this.closed) throw new CairnError('CLOSED', `CommitQC persister ${this.log.location} is closed`);
    if (this.busy) throw new Error('invariant violated: concurrent CommitQC persister calls');
    this.busy = true;
    try {
      return await this.write(anchor, qcs, options);
    } finally {
      this.busy = false;
    }
  }

  /** Appends QCs without an anchor. */
  persist(qcs: readonly CommitQC[], options: CommitQCWriteOptions = {}): Promise<CommitQCWriteResult> {
    return this.pruneAndPersist(undefined, qcs, options);
  }

  private async write(
    anchor: CommitQC | undefined,
    qcs: readonly CommitQC[],
    options: CommitQCWriteOptions,
  ): Promise<CommitQCWriteResult> {
    const log = this.log;
    const road = anchor?.roadIndex;
    const reposition = road !== undefined && road > log.nextIndex;
    const writesAnchorBack = road !== undefined && road >= log.nextIndex;
    const batch: CommitQC[] = writesAnchorBack ? [anchor!] : [];
    const start = writesAnchorBack ? road : log.nextIndex;
    let next = start + batch.length;
    let duplicates = 0;
    for (const qc of qcs) {
      if (qc.roadIndex < next) {
        this.checkDuplicate(qc, batch, start, reposition);
        duplicates++;
        continue;
      }
      if (qc.roadIndex > next) {
        throw new CairnError('GAP', `CommitQC ${qc.roadIndex} would leave a gap (next expected ${next})`, {
          details: { roadIndex: qc.roadIndex, expected: next },
        });
      }
      batch.push(qc);
      next++;
    }
    try {
      await resetThenAppend(log, reposition ? road : undefined, batch, this.metrics);
    } catch (err) {
      throw this.fail(err);
    }
    this.metrics.commitQCsPersisted += batch.length;
    this.metrics.duplicatesIgnored += duplicates;
    if (batch.length > 0) options.onDurable?.(batch[batch.length - 1]!);
    let pruned = false;
    const target = road === undefined ? undefined : pruneTarget(log, road, options.lazyPrune ?? false);
    if (target !== undefined) {
      try {
        await pruneBelow(log, target, this.retainsRecords, this.metrics);
      } catch (err) {
        throw this.fail(err);
      }
      pruned = true;
    }
    return { appended: batch.length, duplicates, repositioned: reposition, pruned, next: log.nextIndex };
  }

  private checkDuplicate(
    qc: CommitQC,
    batch: readonly CommitQC[],
    batchStart: number,
    reposition: boolean,
  ): void {
    let stored: Uint8Array | undefined;
    const retainedFrom = reposition ? batchStart : this.log.firstIndex;
    if (qc.roadIndex < retainedFrom) {
      // Below the anchor: pruned. A replay of an old road is harmless and never re-published.
      return;
    }
    if (qc.roadIndex >= batchStart) {
      stored = encodeCommitQC(batch[qc.roadIndex - batchStart]!);
    } else if (this.retainsRecords) {
      try {
        stored = this.log.readRaw(qc.roadIndex);
      } catch (err) {
        throw this.fail(err);
      }
    }
    if (stored !== undefined && !bytesEqual(stored, encodeCommitQC(qc))) {
      throw new CairnError('CONFLICT', `a different CommitQC ${qc.roadIndex} is already persisted`, {
        details: { roadIndex: qc.roadIndex },
      });
    }
  }

  private fail(err: unknown): CairnError {
    return this.latch.passCallerErrors(err, 'persisting CommitQCs', ['CLOSED']);
  }

  get failure(): CairnError | undefined {
    return this.latch.error;
  }

  close(): Promise<void> {
    this.closed ??= this.log.close();
    return this.closed;
  }
}

function roadOf(qc: CommitQC): number {
  return qc.roadIndex;
}
