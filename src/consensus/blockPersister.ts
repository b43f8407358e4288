import * as path from 'node:path';
import { encodeSignedLaneProposal, shortLane, signedLaneProposalCodec } from '../domain/codecs.ts';
import { laneRangeOf } from '../domain/committee.ts';
import { hashBlockHeader } from '../domain/crypto.ts';
import type { CommitQC, Hash, LaneId, SignedLaneProposal } from '../domain/types.ts';
import { bytesEqual } from '../lib/bytes.ts';
import { CairnError, FatalLatch } from '../lib/errors.ts';
import type { LogOpener } from './logOpener.ts';
import type { PersistenceMetrics } from './metrics.ts';
import { pruneBelow, pruneTarget, resetThenAppend } from './truncateThenAppend.ts';
import { TypedLog } from './typedLog.ts';

/**
 * Block persister: one log per lane, in `<blocksDir>/<lane hex>/`, whose record `n` is the lane's
 * block number `n`. Rules:
 *  - strict contiguity: a lane's blocks are persisted in number order with no gap (GAP error);
 *  - an identical duplicate of a persisted block is a no-op; a different block at a used number is
 *    a CONFLICT error (two signed blocks at one height);
 *  - per-lane truncate-then-append driven by the prune anchor: when the anchor passes everything a
 *    lane holds, the lane is emptied and re-positioned at the anchor's first block before any append;
 *  - dropping records below the anchor can be lazy (only when a whole segment is freed), so it never
 *    puts an extra fsync in front of an append.
 *
 * Callers must only pass an anchor that is already durable (the anchor justifies every truncation),
 * and must not run two calls for the same lane at once (the persist loop has one pipeline per lane);
 * different lanes run fully in parallel. An I/O failure latches the persister: every later call
 * rejects with that first error. Bad input (gap, conflict, wrong lane) throws without writing.
 */

export interface LaneWriteOptions {
  /** Called synchronously once the appended blocks are durable, with the lane's new next number. */
  onDurable?: (next: number) => void;
  /**
   * Drop records below the anchor only when that frees at least one whole segment (default false:
   * truncate exactly). Either way the drop happens after the append is durable.
   */
  lazyPrune?: boolean;
  /**
   * Header hash of each proposal (same order), when the caller already has them: the in-flight
   * state hashes every header at admission, so the parent-chain check here need not hash again.
   */
  headerHashes?: readonly Hash[];
}

export interface LaneWriteResult {
  appended: number;
  duplicates: number;
  /** The lane was emptied and re-positioned at the anchor's first block. */
  repositioned: boolean;
  /** Records below the anchor were dropped. */
  pruned: boolean;
  /** The lane's next block number after the call. */
  next: number;
}

interface LaneLog {
  log: TypedLog<SignedLaneProposal> | undefined;
  /** Next block number when the lane has no log yet (the lane's start, 0 or an anchor's first). */
  reservedNext: number;
  /** Header hash of block `next - 1`, when known (parent check of the next append). */
  lastHash: Hash | undefined;
  busy: boolean;
  /** The lane's fast-path write (see `persistLaneBatch`), created on its first use. */
  fast?: FastLaneWrite;
}

/** What `persistLaneBatch` validated for one batch (the blocks to append and where they end). */
interface ValidatedBatch {
  /** The blocks to append, in order (the caller's list itself when it had no duplicate). */
  batch: readonly SignedLaneProposal[];
  duplicates: number;
  /** Header hash of the batch's last block (or the lane's previous one when nothing is appended). */
  lastHash: Hash | undefined;
}

const EMPTY_BATCH: readonly SignedLaneProposal[] = [];

/** Called once a `persistLaneBatch` call is done: durable (and pruned), or failed with `err`. */
export type LaneWriteDone = (err?: unknown) => void;

/**
 * The in-flight fast-path write of one lane (a lane has at most one write at a time): what its
 * completion needs, kept here with callbacks bound once per lane, so a batch allocates no closure.
 */
class FastLaneWrite {
  done: LaneWriteDone | undefined;
  options: LaneWriteOptions = {};
  anchorFirst: number | undefined;
  validated: ValidatedBatch | undefined;
  /** Reused by every batch of the lane (a lane has one write at a time). */
  readonly validatedScratch: ValidatedBatch = { batch: EMPTY_BATCH, duplicates: 0, lastHash: undefined };
  startedMs = 0;
  /** The log's sync callback (bound once: a batch allocates no closure or promise for it). */
  readonly synced: (err?: unknown) => void;

  constructor(persister: BlockPersister, lane: LaneId, state: LaneLog) {
    this.synced = (err) => {
      if (err === undefined) persister.fastWriteSynced(lane, state, this);
      else persister.fastWriteEnded(state, this, persister.latchLaneError(err, lane));
    };
  }
}

export interface LoadedLane {
  lane: LaneId;
  /** First retained block number and next block number of the log. */
  first: number;
  next: number;
  blocks: SignedLaneProposal[];
}

export interface BlockPersisterOpenOptions {
  opener: LogOpener;
  blocksDir: string;
  /** Lanes to load; directories of other lanes are reported through `onWarning` and left alone. */
  lanes: readonly LaneId[];
  /** Initial position of a lane log that never held a record (the durable anchor's lane first). */
  startOf?: (lane: LaneId) => number;
  metrics: PersistenceMetrics;
  onWarning?: (message: string, details: Record<string, unknown>) => void;
}

const LANE_DIR_RE = /^[0-9a-f]{64}$/;

export class BlockPersister {
  private readonly lanes = new Map<LaneId, LaneLog>();
  private readonly latch = new FatalLatch();
  private closed: Promise<void> | undefined;
  /** `pruneAndPersistLane` calls under way (close waits for them before closing the logs). */
  private readonly writesInFlight = new Set<Promise<void>>();

  private constructor(
    private readonly opener: LogOpener,
    private readonly blocksDir: string,
    private readonly metrics: PersistenceMetrics,
  ) {}

  /**
   * Opens every existing lane log of `lanes` and reads it back: each record must decode, carry its
   * own lane and its log index as block number, and chain to its predecessor's header hash. Any
   * violation is a typed error naming the lane and block number; every log opened so far is closed.
   */
  static async open(
    options: BlockPersisterOpenOptions,
  ): Promise<{ persister: BlockPersister; loaded: LoadedLane[]; orphans: LaneId[] }> {
    const persister = new BlockPersister(options.opener, options.blocksDir, options.metrics);
    const wanted = new Set(options.lanes);
    const loaded: LoadedLane[] = [];
    const orphans: LaneId[] = [];
    try {
      for (const name of options.opener.listDirs(options.blocksDir)) {
        if (!LANE_DIR_RE.test(name)) {
          options.onWarning?.(`ignoring ${path.join(options.blocksDir, name)}: not a lane directory`, {
            name,
          });
          continue;
        }
        if (!wanted.has(name)) {
          orphans.push(name);
          continue;
        }
        const start = options.startOf?.(name) ?? 0;
        const wal = await options.opener.open(path.join(options.blocksDir, name), start);
        const log = new TypedLog(
          path.join(options.blocksDir, name),
          wal,
          signedLaneProposalCodec,
          blockNumberOf,
        );
        const lane: LaneLog = { log, reservedNext: log.nextIndex, lastHash: undefined, busy: false };
        persister.lanes.set(name, lane);
        // Seek to the prune point: what lies below it (kept until lazy pruning frees a whole
        // segment) is never needed again, so startup reads only what is above it.
        const blocks = log.readAll(Math.min(Math.max(start, log.firstIndex), log.nextIndex));
        lane.lastHash = checkLaneChain(name, log.location, blocks);
        loaded.push({ lane: name, first: log.firstIndex, next: log.nextIndex, blocks });
      }
    } catch (err) {
      await persister.close().catch(() => undefined);
      throw err;
    }
    return { persister, loaded, orphans };
  }

  /** Next block number the lane expects (its log's next index, or its reserved start). */
  nextBlockNumber(lane: LaneId): number {
    const l = this.lanes.get(lane);
    return l === undefined ? 0 : (l.log?.nextIndex ?? l.reservedNext);
  }

  /** First retained block number of the lane (== next when it holds nothing). */
  firstBlockNumber(lane: LaneId): number {
    const l = this.lanes.get(lane);
    return l?.log?.firstIndex ?? this.nextBlockNumber(lane);
  }

  /** Whether the lane has a log on disk. */
  hasLog(lane: LaneId): boolean {
    return this.lanes.get(lane)?.log !== undefined;
  }

  /**
   * Whether `pruneAndPersistLane(lane, anchor, [])` would do anything: re-position the lane, or
   * drop records below the anchor (with `lazyPrune`, only when that frees a whole segment). Lets the
   * persist loop skip, synchronously, the lanes an anchor move leaves untouched.
   */
  anchorWorkNeeded(lane: LaneId, anchor: CommitQC | undefined, lazyPrune: boolean): boolean {
    if (anchor === undefined) return false;
    const anchorFirst = laneRangeOf(anchor, lane).first;
    const state = this.lanes.get(lane);
    const log = state?.log;
    if (anchorFirst > (log?.nextIndex ?? state?.reservedNext ?? 0)) return true;
    return log !== undefined && pruneTarget(log, anchorFirst, lazyPrune) !== undefined;
  }

  /**
   * Truncate-then-append for one lane. With `anchor` (a durable prune anchor's CommitQC), blocks
   * below the anchor's lane first are dropped; when that first is at or past the lane's next block,
   * the lane is emptied and re-positioned there (before any append, so the first new block must be
   * exactly the anchor's first). Then `proposals` are appended with one fsync for all of them.
   */
  async pruneAndPersistLane(
    lane: LaneId,
    anchor: CommitQC | undefined,
    proposals: readonly SignedLaneProposal[],
    options: LaneWriteOptions = {},
  ): Promise<LaneWriteResult> {
    this.checkUsable();
    const state = this.laneState(lane);
    if (state.busy) throw new Error(`invariant violated: concurrent writes to lane ${shortLane(lane)}`);
    state.busy = true;
    const write = this.writeLane(lane, state, anchor, proposals, options);
    // close() waits for it: a lane's first write opens its log across an await, and a log opened
    // after close() went past the lanes would stay open (and the write be acknowledged after close).
    const tracked = write.then(
      () => undefined,
      () => undefined,
    );
    this.writesInFlight.add(tracked);
    try {
      return await write;
    } finally {
      state.busy = false;
      this.writesInFlight.delete(tracked);
    }
  }

  /**
   * `pruneAndPersistLane` for the persist loop's hot path, with a callback instead of a chain of
   * async functions. A batch for a lane that has a log and needs no re-positioning is validated,
   * appended and handed to the log's group commit synchronously; `done` runs once it is durable
   * (and, when the anchor asks for it, pruned). Anything else (the lane's first log, a
   * re-positioning, an anchor-only call, a batch of duplicates) takes `pruneAndPersistLane`. Same
   * rules, same errors (given to `done`, never thrown), same latch. Measured on the consensus
   * bench: the four chained async functions per batch were about 3 KB of allocation per block.
   */
  persistLaneBatch(
    lane: LaneId,
    anchor: CommitQC | undefined,
    proposals: readonly SignedLaneProposal[],
    options: LaneWriteOptions,
    done: LaneWriteDone,
  ): void {
    const state = this.lanes.get(lane);
    const log = state?.log;
    const anchorFirst = anchor === undefined ? undefined : laneRangeOf(anchor, lane).first;
    if (
      state === undefined ||
      log === undefined ||
      state.busy ||
      proposals.length === 0 ||
      (anchorFirst !== undefined && anchorFirst > log.nextIndex) ||
      this.latch.error !== undefined ||
      this.closed !== undefined
    ) {
      this.pruneAndPersistLane(lane, anchor, proposals, options).then(() => done(), done);
      return;
    }
    let validated: ValidatedBatch;
    try {
      validated = this.validateBatch(
        lane,
        state,
        false,
        log.nextIndex,
        proposals,
        options.headerHashes,
        state.fast?.validatedScratch,
      );
    } catch (err) {
      done(err); // bad input: nothing was written
      return;
    }
    if (validated.batch.length === 0) {
      this.pruneAndPersistLane(lane, anchor, proposals, options).then(() => done(), done);
      return;
    }
    state.busy = true;
    if (state.fast === undefined) state.fast = new FastLaneWrite(this, lane, state);
    const fast = state.fast;
    fast.done = done;
    fast.options = options;
    fast.anchorFirst = anchorFirst;
    fast.validated = validated;
    try {
      log.append(validated.batch);
    } catch (err) {
      this.fastWriteEnded(state, fast, this.latchLaneError(err, lane));
      return;
    }
    fast.startedMs = performance.now();
    // The batch is everything the lane had: its write and fsync start now, not a microtask later.
    log.syncThen(fast.synced, true);
  }

  /** The fast-path batch is durable: publish it, then prune below the anchor if that is due. */
  fastWriteSynced(lane: LaneId, state: LaneLog, fast: FastLaneWrite): void {
    const log = state.log!;
    const v = fast.validated!;
    try {
      this.metrics.fsyncLatency.record(performance.now() - fast.startedMs);
      this.metrics.fsyncs++;
      this.metrics.blocksPersisted += v.batch.length;
      for (const p of v.batch) this.metrics.blockBytesPersisted += p.block.payload.byteLength;
      this.metrics.duplicatesIgnored += v.duplicates;
      state.lastHash = v.lastHash;
      fast.options.onDurable?.(log.nextIndex);
      const target =
        fast.anchorFirst === undefined
          ? undefined
          : pruneTarget(log, fast.anchorFirst, fast.options.lazyPrune ?? false);
      if (target !== undefined) {
        pruneBelow(log, target, this.opener.retainsRecords, this.metrics).then(
          () => this.fastWriteEnded(state, fast, undefined),
          (err) => this.fastWriteEnded(state, fast, this.latchLaneError(err, lane)),
        );
        return;
      }
    } catch (err) {
      this.fastWriteEnded(state, fast, err);
      return;
    }
    this.fastWriteEnded(state, fast, undefined);
  }

  /** Ends the lane's fast-path write: the lane is free again, then its caller hears the outcome. */
  fastWriteEnded(state: LaneLog, fast: FastLaneWrite, err: unknown): void {
    const done = fast.done!;
    fast.done = undefined;
    fast.validated = undefined;
    fast.validatedScratch.batch = EMPTY_BATCH;
    state.busy = false;
    if (err === undefined) done();
    else done(err);
  }

  /** An I/O failure on a lane: latched (caller errors pass through). */
  latchLaneError(err: unknown, lane: LaneId): CairnError {
    return this.fail(err, lane);
  }

  /** Appends blocks (no anchor). Same rules as `pruneAndPersistLane`. */
  persistBlocks(lane: LaneId, proposals: readonly SignedLaneProposal[], options: LaneWriteOptions = {}) {
    return this.pruneAndPersistLane(lane, undefined, proposals, options);
  }

  private laneState(lane: LaneId): LaneLog {
    let state = this.lanes.get(lane);
    if (state === undefined) {
      state = { log: undefined, reservedNext: 0, lastHash: undefined, busy: false };
      this.lanes.set(lane, state);
    }
    return state;
  }

  private async writeLane(
    lane: LaneId,
    state: LaneLog,
    anchor: CommitQC | undefined,
    proposals: readonly SignedLaneProposal[],
    options: LaneWriteOptions,
  ): Promise<LaneWriteResult> {
    const anchorFirst = anchor === undefined ? undefined : laneRangeOf(anchor, lane).first;
    const log = state.log;
    const currentNext = log?.nextIndex ?? state.reservedNext;
    // 1. Plan the re-positioning (anchor at or past everything the lane holds).
    // (An anchor exactly at the lane's next block needs no re-positioning: the prune step below
    // drops every record and the lane continues from there.)
    const reposition = anchorFirst !== undefined && anchorFirst > currentNext;
    const expectedStart = reposition ? anchorFirst : currentNext;
    // 2. Validate every proposal before touching the disk.
    const { batch, duplicates, lastHash } = this.validateBatch(
      lane,
      state,
      reposition,
      expectedStart,
      proposals,
      options.headerHashes,
    );
    // 3. Re-position (durable before any append that depends on it), then 4. append the whole
    // batch with one fsync. A lane without a log yet only moves its reserved position.
    let activeLog = log;
    try {
      if (reposition) {
        if (activeLog === undefined) state.reservedNext = anchorFirst;
        state.lastHash = undefined;
      }
      const resetTo = reposition && activeLog !== undefined ? anchorFirst : undefined;
      if (batch.length > 0 && activeLog === undefined) {
        const dir = path.join(this.blocksDir, lane);
        const wal = await this.opener.open(dir, expectedStart);
        activeLog = new TypedLog(dir, wal, signedLaneProposalCodec, blockNumberOf);
        state.log = activeLog;
        if (activeLog.nextIndex !== expectedStart) {
          throw new CairnError(
            'CORRUPT',
            `lane ${shortLane(lane)}: new log in ${dir} starts at ${activeLog.nextIndex}, expected ${expectedStart}`,
            { details: { file: dir, lane } },
          );
        }
      }
      if (activeLog !== undefined) await resetThenAppend(activeLog, resetTo, batch, this.metrics);
      if (batch.length > 0) {
        this.metrics.blocksPersisted += batch.length;
        for (const p of batch) this.metrics.blockBytesPersisted += p.block.payload.byteLength;
        state.lastHash = lastHash;
      }
    } catch (err) {
      throw this.fail(err, lane);
    }
    this.metrics.duplicatesIgnored += duplicates;
    const newNext = activeLog?.nextIndex ?? state.reservedNext;
    if (batch.length > 0 || reposition) options.onDurable?.(newNext);
    // 5. Drop what the anchor made obsolete, after the append (never an fsync in front of it).
    let pruned = false;
    const target =
      activeLog === undefined || anchorFirst === undefined || reposition
        ? undefined
        : pruneTarget(activeLog, anchorFirst, options.lazyPrune ?? false);
    if (activeLog !== undefined && target !== undefined) {
      try {
        await pruneBelow(activeLog, target, this.opener.retainsRecords, this.metrics);
      } catch (err) {
        throw this.fail(err, lane);
      }
      pruned = true;
    }
    return { appended: batch.length, duplicates, repositioned: reposition, pruned, next: newNext };
  }

  /**
   * Checks a batch against the lane before anything is written: every block belongs to the lane,
   * duplicates of held blocks are identical (CONFLICT otherwise), the rest continue the lane
   * without a gap (GAP) and chain to its last header hash (CONFLICT).
   */
  private validateBatch(
    lane: LaneId,
    state: LaneLog,
    reposition: boolean,
    expectedStart: number,
    proposals: readonly SignedLaneProposal[],
    headerHashes: readonly Hash[] | undefined,
    into?: ValidatedBatch,
  ): ValidatedBatch {
    // The blocks to append are `proposals` itself unless a duplicate is skipped: only then a list
    // of their own (a list per batch was measurable on the lane hot path).
    let batch: SignedLaneProposal[] | undefined;
    let appended = 0;
    let duplicates = 0;
    let next = expectedStart;
    let lastHash = reposition ? undefined : state.lastHash;
    for (let i = 0; i < proposals.length; i++) {
      const p = proposals[i]!;
      const h = p.block.header;
      if (h.lane !== lane) {
        throw new CairnError(
          'INVALID_ARGUMENT',
          `block ${shortLane(h.lane)}/${h.blockNumber} offered to lane ${shortLane(lane)}`,
          {
            details: { lane, blockNumber: h.blockNumber },
          },
        );
      }
      if (h.blockNumber < next) {
        batch ??= proposals.slice(0, appended);
        this.checkDuplicate(lane, state, reposition, batch, expectedStart, p);
        duplicates++;
        continue;
      }
      if (h.blockNumber > next) {
        throw new CairnError(
          'GAP',
          `lane ${shortLane(lane)}: block ${h.blockNumber} would leave a gap (next expected ${next})`,
          { details: { lane, blockNumber: h.blockNumber, expected: next } },
        );
      }
      if (lastHash !== undefined && !bytesEqual(h.parentHash, lastHash)) {
        throw new CairnError(
          'CONFLICT',
          `lane ${shortLane(lane)}: block ${h.blockNumber} does not extend block ${h.blockNumber - 1} (parent hash mismatch)`,
          { details: { lane, blockNumber: h.blockNumber } },
        );
      }
      batch?.push(p);
      appended++;
      lastHash = headerHashes?.[i] ?? hashBlockHeader(h);
      next++;
    }
    const out = into ?? { batch: EMPTY_BATCH, duplicates: 0, lastHash: undefined };
    out.batch = batch ?? proposals;
    out.duplicates = duplicates;
    out.lastHash = lastHash;
    return out;
  }

  private checkDuplicate(
    lane: LaneId,
    state: LaneLog,
    reposition: boolean,
    batch: readonly SignedLaneProposal[],
    batchStart: number,
    p: SignedLaneProposal,
  ): void {
    const n = p.block.header.blockNumber;
    let stored: Uint8Array | undefined;
    const retainedFrom = reposition || state.log === undefined ? batchStart : state.log.firstIndex;
    if (n < retainedFrom) {
      // Below what the lane retains: it was pruned (or never kept), so it cannot be compared.
      throw new CairnError(
        'PRUNED',
        `lane ${shortLane(lane)}: block ${n} is below the lane's first block ${retainedFrom}`,
        {
          details: { lane, blockNumber: n, first: retainedFrom },
        },
      );
    }
    if (n >= batchStart) {
      stored = encodeSignedLaneProposal(batch[n - batchStart]!);
    } else if (this.opener.retainsRecords) {
      try {
        stored = state.log!.readRaw(n);
      } catch (err) {
        throw this.fail(err, lane);
      }
    }
    // In no-op mode nothing is retained, so there is nothing to compare with.
    if (stored !== undefined && !bytesEqual(stored, encodeSignedLaneProposal(p))) {
      throw new CairnError(
        'CONFLICT',
        `lane ${shortLane(lane)}: a different block ${n} is already persisted`,
        {
          details: { lane, blockNumber: n },
        },
      );
    }
  }

  private fail(err: unknown, lane: LaneId): CairnError {
    // Bad input (gap, conflict) was rejected before any write; anything thrown from here on came
    // from the log and may have left it half-written: latch.
    return this.latch.passCallerErrors(err, `persisting lane ${shortLane(lane)}`, ['CLOSED']);
  }

  private checkUsable(): void {
    this.latch.check();
    if (this.closed) throw new CairnError('CLOSED', `block persister ${this.blocksDir} is closed`);
  }

  /** The latched error, if an I/O failure happened. */
  get failure(): CairnError | undefined {
    return this.latch.error;
  }

  /** Closes every lane log (all of them, even if some fail); idempotent, same result to every caller. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      // New calls are refused from now on (checkUsable); the ones under way finish first.
      while (this.writesInFlight.size > 0) await Promise.all(this.writesInFlight);
      const errors: unknown[] = [];
      for (const state of this.lanes.values()) {
        try {
          await state.log?.close();
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length > 0) throw errors[0];
    })();
    return this.closed;
  }
}

function blockNumberOf(p: SignedLaneProposal): number {
  return p.block.header.blockNumber;
}

/**
 * Checks lane ownership and the parent-hash chain of a lane's loaded blocks; returns the last
 * header hash. Cheap (one SHA-256 per header), so it always runs at load.
 */
function checkLaneChain(
  lane: LaneId,
  location: string,
  blocks: readonly SignedLaneProposal[],
): Hash | undefined {
  let previous: Hash | undefined;
  for (const p of blocks) {
    const h = p.block.header;
    if (h.lane !== lane) {
      throw new CairnError(
        'CORRUPT',
        `${location}: block ${h.blockNumber} belongs to lane ${shortLane(h.lane)}, not ${shortLane(lane)}`,
        {
          details: { file: location, lane, blockNumber: h.blockNumber },
        },
      );
    }
    if (previous !== undefined && !bytesEqual(h.parentHash, previous)) {
      throw new CairnError(
        'CORRUPT',
        `${location}: lane ${shortLane(lane)} block ${h.blockNumber} breaks the parent-hash chain`,
        {
          details: { file: location, lane, blockNumber: h.blockNumber },
        },
      );
    }
    previous = hashBlockHeader(h);
  }
  return previous;
}
