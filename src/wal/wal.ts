import * as path from 'node:path';
import type { FileHandle, FileSystem } from '../io/fileSystem.ts';
import { writeFully } from '../io/fileSystem.ts';
import { assertIndex, invariant } from '../lib/assert.ts';
import { CairnError, FatalLatch, ioFatal } from '../lib/errors.ts';
import { CommitScheduler, type SyncCallback } from './commitScheduler.ts';
import {
  CURRENT_FRAME_FORMAT,
  coalesceAdjacent,
  FrameArena,
  type FrameFormat,
  frameHeaderBytes,
  framePayload,
  layoutFrameInto,
  relayoutFrame,
  sealFrame,
} from './frame.ts';
import type { MetaState, WalMeta } from './meta.ts';
import { type ResolvedOptions, resolveOptions } from './options.ts';
import { type RecoveredLog, recoverLog } from './recovery.ts';
import {
  createSegmentFile,
  createSegmentFileAsync,
  drawSegmentSalt,
  readFrame,
  replaceEmptySegment,
  SEGMENT_HEADER_BYTES,
  scanSegment,
  segmentFileName,
} from './segmentFile.ts';
import { type SegmentState, SegmentTable, segmentNextIndex } from './segmentTable.ts';
import { SlowFsyncMonitor } from './slowFsync.ts';
import { SpareSegment } from './spareSegment.ts';
import type { Durability, SegmentInfo, VerifyReport, WalOptions, WalRecord, WriteAheadLog } from './types.ts';

export {
  WAL_DEFAULT_MAX_RECORD_BYTES,
  WAL_DEFAULT_SEGMENT_BYTES,
  WAL_DEFAULT_SLOW_FSYNC_WARN_INTERVAL_MS,
  WAL_DEFAULT_SLOW_FSYNC_WARN_MS,
} from './options.ts';

/** Buffered bytes that trigger a write to the OS from inside `append` (bounds memory). */
const WRITE_THRESHOLD_BYTES = 256 * 1024;
/** Upper bound of one writev: larger writes measured slower, and IOV_MAX is 1024. */
const MAX_WRITE_BYTES = 512 * 1024;
const MAX_WRITE_BUFFERS = 1024;
/**
 * A full tail waits for the spare being prepared (instead of creating the next segment on the
 * spot) only while at most this much is buffered, so memory stays bounded.
 */
const SPARE_WAIT_MAX_PENDING_BYTES = 16 * 1024 * 1024;

/**
 * The segmented write-ahead log. One instance owns its directory.
 *
 * Writes are synchronous calls on the main thread (page-cache writes take microseconds); only the
 * fsync may run on the thread pool (`syncOffThread`). Appends are buffered and written with one
 * writev per flush; `sync()` callers of the same tick, and those arriving while an fsync is in
 * flight, share the next fsync (the group-commit scheduler, `commitScheduler.ts`). Segment
 * bookkeeping (where each record lies, read handles) lives in `segmentTable.ts`.
 *
 * Truncations and reset change the log's range synchronously inside their call, so they take
 * effect in call order relative to appends; their disk work (meta writes with the fsyncs on the
 * thread pool, segment creation in slices, unlinks) runs as "maintenance": writes of records
 * appended meanwhile wait until it is done (they stay buffered and readable), so the disk always
 * sees the operations in call order.
 *
 * Segments are preallocated with zeros (overwrites fsync cheaper than appends). So that writing a
 * segment of zeros never sits on the commit path, the next segment is prepared in the background
 * (`SpareSegment`) and sealing takes it with a rename; a tail that fills up before its spare is
 * ready waits for it inside the flush round (the records stay buffered and readable) rather than
 * zero-filling synchronously. A fresh log's first segment is zero-filled between event-loop turns.
 * A clean close keeps a ready spare and records in the meta where the tail's data ends, so the next
 * open neither reads the preallocated zeros nor writes a spare again.
 *
 * After a failed write or fsync the log latches: every later call, reads included, throws the
 * original error. Reads of a latched log are refused because written-but-unsynced bytes may not
 * match what the OS will keep.
 */
export class Wal implements WriteAheadLog {
  private readonly fs: FileSystem;
  private readonly dir: string;
  private readonly segmentBytes: number;
  private readonly maxRecordBytes: number;
  private readonly durability: Durability;
  private readonly syncOffThread: boolean;
  private readonly preallocate: boolean;
  private readonly readOnly: boolean;
  private readonly warn: (message: string, details: Record<string, unknown>) => void;
  private readonly meta: WalMeta;
  private readonly latch = new FatalLatch();
  /** The next segment, prepared in the background (preallocated logs only). */
  private readonly spare: SpareSegment | undefined;
  /** 'always-ready' spare mode: prepare at open and after every seal, not at half full. */
  private readonly spareAlwaysReady: boolean = false;
  private readonly scheduler: CommitScheduler;
  private readonly slowFsync: SlowFsyncMonitor;

  private first: number;
  private next: number;
  private durable: number;
  /**
   * Every record below this index has been fsynced (unlike `durable`, never raised by a front
   * truncation: records it drops may still sit unsynced in the tail). Written into each frame as it
   * goes to the file, for recovery's torn-tail decision (frame.ts).
   */
  private syncedNext: number;
  /** Records below this index have been written to a segment file; the rest sit in `pending`. */
  private writtenNext: number;
  private pending: Buffer[] = [];
  /** Where buffered frames live until written (reset whenever nothing is buffered). */
  private readonly arena = new FrameArena();
  private pendingHead = 0;
  private pendingBytes = 0;
  private readonly table: SegmentTable;
  private tailHandle: FileHandle | undefined;
  /** Bumped by every truncation/reset: an fsync that started before it proves nothing after it. */
  private epoch = 0;
  private unsyncedWrites = false;
  /** fsyncs of the tail running on the thread pool (a seal must not rely on them). */
  private syncsInFlight = 0;
  /** The durable marker as last written to the meta (records below it are known acknowledged). */
  private persistedDurableNext: number;
  /**
   * Cut indexes of truncateBack calls whose cut is not yet fsynced. Every meta write carries the
   * lowest as CUT (see `metaState`): a meta written meanwhile by another call (a second rollback, a
   * front truncation) must not clear the flag while some cut can still leave stale frames behind.
   */
  private readonly cutsInFlight: number[] = [];
  /** Disk work of truncations and reset still running; record writes wait for it. */
  private maintenance: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Background segment deletions (truncateFront) still running. */
  private readonly deletions = new Set<Promise<void>>();
  private closePromise: Promise<void> | undefined;
  /** The round whose fsync is on the thread pool (rounds never overlap, so one reused record). */
  private readonly offThreadRound: {
    target: number;
    epoch: number;
    handle: FileHandle | undefined;
    startedMs: number;
    end: (() => void) | undefined;
  } = { target: 0, epoch: 0, handle: undefined, startedMs: 0, end: undefined };

  private constructor(options: WalOptions, recovered: RecoveredLog, resolved: ResolvedOptions) {
    this.fs = options.fs;
    this.dir = options.dir;
    this.segmentBytes = resolved.segmentBytes;
    this.maxRecordBytes = resolved.maxRecordBytes;
    this.durability = resolved.durability;
    this.syncOffThread = options.syncOffThread ?? false;
    this.preallocate = resolved.preallocate;
    this.readOnly = resolved.readOnly;
    this.warn = resolved.warn;
    this.meta = recovered.meta;
    this.first = recovered.firstIndex;
    this.next = recovered.nextIndex;
    // A writable open fsynced everything it recovered. A read-only one changed nothing: only the
    // durable marker vouches for records (the rest may sit in the page cache of a killed writer).
    this.durable = resolved.readOnly
      ? Math.min(recovered.nextIndex, Math.max(recovered.firstIndex, recovered.durableNext))
      : recovered.nextIndex;
    this.writtenNext = recovered.nextIndex;
    // Recovery fsynced the tail of a writable log; a read-only log writes nothing.
    this.syncedNext = recovered.nextIndex;
    this.persistedDurableNext = recovered.meta.state?.durableNext ?? 0;
    this.table = new SegmentTable(this.fs, recovered.segments);
    this.scheduler = new CommitScheduler({
      runRound: (end) => this.runRound(end),
      reached: () => (this.durability.mode === 'none' ? this.writtenNext : this.durable),
      closed: () => this.closed,
    });
    this.slowFsync = new SlowFsyncMonitor(
      resolved.slowFsyncWarnMs,
      resolved.slowFsyncWarnIntervalMs,
      this.warn,
    );
    if (resolved.preallocate && !resolved.readOnly) {
      this.spare = new SpareSegment(
        this.fs,
        this.dir,
        this.segmentBytes,
        (err) => this.latchInBackground(err),
        resolved.spareSegment === 'always-ready' ? 'paced' : 'fast',
      );
      this.spareAlwaysReady = resolved.spareSegment === 'always-ready';
      if (recovered.keptSpare !== undefined) this.spare.adopt();
    }
  }

  /**
   * Opens (creating if needed) the log in `options.dir`, recovering from any crash. Every failure
   * is a CairnError: OS errors (a failed readdir, mkdir, ...) become IO_FATAL naming the directory.
   */
  static async open(options: WalOptions): Promise<Wal> {
    const resolved = resolveOptions(options);
    try {
      return await Wal.openResolved(options, resolved);
    } catch (err) {
      if (err instanceof CairnError) throw err;
      throw ioFatal(`opening WAL ${options.dir}`, err, { file: options.dir });
    }
  }

  private static async openResolved(options: WalOptions, resolved: ResolvedOptions): Promise<Wal> {
    const recovered = await recoverLog({
      fs: options.fs,
      dir: options.dir,
      segmentBytes: resolved.segmentBytes,
      preallocate: resolved.preallocate,
      initialIndex: resolved.initialIndex,
      readOnly: resolved.readOnly,
      warn: resolved.warn,
    });
    const wal = new Wal(options, recovered, resolved);
    if (!resolved.readOnly) {
      try {
        const tail = recovered.segments.at(-1)!;
        wal.tailHandle = options.fs.open(tail.file);
      } catch (err) {
        recovered.meta.close();
        throw ioFatal(`opening WAL tail segment in ${options.dir}`, err, { file: options.dir });
      }
      // The clean marker vouches that nothing follows the data; it must be gone before anything
      // is written after it (on the thread pool; record writes wait for it). A CUT left by a crash
      // inside a truncateBack goes in the same write: recovery cut and fsynced the tail, so no stale
      // frame is left, and a CUT kept would disable the fsync proof for the records this session
      // writes at or above its index (damage to acknowledged ones would read as a torn tail).
      const leftover = recovered.meta.state;
      if (leftover?.clean !== undefined || leftover?.cutNext !== undefined) {
        const state: MetaState = {
          firstIndex: recovered.firstIndex,
          durableNext: recovered.durableNext,
          clean: undefined,
        };
        void wal
          .maintain('clearing the clean-close or cut marker', async () => {
            await wal.meta.writeAsync(state);
            wal.persistedDurableNext = state.durableNext;
          })
          .catch(() => undefined);
      }
      if (resolved.durability.mode === 'interval') wal.startTimer(resolved.durability.intervalMs);
      if (wal.spareAlwaysReady) wal.spare?.prepare();
    }
    return wal;
  }

  get firstIndex(): number {
    return this.first;
  }

  get nextIndex(): number {
    return this.next;
  }

  get count(): number {
    return this.next - this.first;
  }

  get durableIndex(): number {
    return this.durable;
  }

  append(payloads: readonly Uint8Array[], expectedIndex?: number): number {
    this.assertWritable('append');
    if (expectedIndex !== undefined) {
      assertIndex(expectedIndex, 'expectedIndex');
      if (expectedIndex !== this.next) {
        throw new CairnError(
          'OUT_OF_ORDER',
          `append expected to write index ${expectedIndex} but the log's next index is ${this.next}`,
          { details: { file: this.dir, expectedIndex, nextIndex: this.next } },
        );
      }
    }
    // Validate every payload before appending any, so a rejected batch leaves no partial append.
    for (let i = 0; i < payloads.length; i++) {
      const p = payloads[i];
      if (!(p instanceof Uint8Array)) {
        throw new CairnError('INVALID_ARGUMENT', `payload ${i} of the batch is not a Uint8Array`);
      }
      if (p.byteLength > this.maxRecordBytes) {
        throw new CairnError(
          'RECORD_TOO_LARGE',
          `record ${this.next + i} is ${p.byteLength} bytes, over the maximum of ${this.maxRecordBytes}`,
          {
            details: {
              file: this.dir,
              index: this.next + i,
              bytes: p.byteLength,
              maxBytes: this.maxRecordBytes,
            },
          },
        );
      }
    }
    const firstAppended = this.next;
    // Laid out for the tail's format; sealed (syncedNext, CRC) when written. Buffered frames always
    // match the current tail's format: a rotation to a segment of another format re-lays them out.
    const format = this.table.tail.format;
    const headerBytes = frameHeaderBytes(format);
    for (const p of payloads) {
      const frame = layoutFrameInto(this.arena.alloc(headerBytes + p.byteLength), this.next, p, format);
      this.pending.push(frame);
      this.pendingBytes += frame.byteLength;
      this.next++;
    }
    invariant(
      this.next - this.writtenNext === this.pendingCount(),
      'every record between the written and the next index is buffered',
    );
    if (this.pendingBytes >= WRITE_THRESHOLD_BYTES) this.writeOrLatch();
    return firstAppended;
  }

  sync(): Promise<void> {
    try {
      this.assertOpen('sync');
    } catch (err) {
      return Promise.reject(err);
    }
    return this.scheduler.waitFor(this.next);
  }

  /**
   * `sync()` with a callback instead of a promise (for hot paths: no allocation per call). `done`
   * runs in a microtask once everything appended before the call is durable, or with the error.
   */
  syncThen(done: SyncCallback, startNow = false): void {
    try {
      this.assertOpen('sync');
    } catch (err) {
      queueMicrotask(() => done(err));
      return;
    }
    this.scheduler.waitForCallback(this.next, done, startNow);
  }

  read(index: number): Uint8Array {
    this.assertOpen('read');
    assertIndex(index, 'index');
    if (index < this.first || index >= this.next) {
      throw new CairnError(
        'OUT_OF_RANGE',
        `read of index ${index} outside the log's range [${this.first}, ${this.next})`,
        { details: { file: this.dir, index, firstIndex: this.first, nextIndex: this.next } },
      );
    }
    if (index >= this.writtenNext) {
      const frame = this.pending[this.pendingHead + (index - this.writtenNext)]!;
      // Copy: frames are pooled Buffers (whose slice() is a view), and callers may mutate results.
      return new Uint8Array(framePayload(frame, this.table.tail.format));
    }
    const seg = this.table.segmentFor(index);
    const { offset, end } = this.table.frameRange(seg, index);
    try {
      return readFrame(this.handleFor(seg), seg.file, offset, end - offset, index, seg);
    } catch (err) {
      if (err instanceof CairnError) throw err;
      throw ioFatal(`reading record ${index} from ${seg.file}`, err, { file: seg.file, offset });
    }
  }

  *iterate(from?: number, to?: number): Iterable<WalRecord> {
    this.assertOpen('iterate');
    const start = from ?? this.first;
    const end = to ?? this.next;
    assertIndex(start, 'from');
    assertIndex(end, 'to');
    if (start < this.first || end > this.next || start > end) {
      throw new CairnError(
        'OUT_OF_RANGE',
        `iterate [${start}, ${end}) outside the log's range [${this.first}, ${this.next})`,
        { details: { file: this.dir, from: start, to: end, firstIndex: this.first, nextIndex: this.next } },
      );
    }
    // Reads go record by record through `read`, so a truncation during iteration surfaces as
    // OUT_OF_RANGE instead of returning records that no longer belong to the log.
    for (let index = start; index < end; index++) yield { index, payload: this.read(index) };
  }

  async truncateFront(newFirst: number): Promise<void> {
    this.assertWritable('truncateFront');
    assertIndex(newFirst, 'newFirst');
    this.assertInRange('truncateFront', newFirst);
    if (newFirst === this.first) return;
    invariant(newFirst > this.first, 'the first index only moves forward');
    // The new first index is durable before any file goes: from then on the doomed segments are
    // garbage that recovery recognises (wholly below the first index) and deletes itself. So they
    // are deleted on the thread pool, and their deletion need not be durable (no directory fsync).
    // The meta write's fsyncs run on the thread pool too; record writes need not wait for it.
    this.first = newFirst;
    const doomed = this.table.dropBelow(newFirst);
    const state = this.metaState();
    try {
      await this.meta.writeAsync(state);
    } catch (err) {
      throw this.latchFailure(err, 'truncating the front of');
    }
    // Records below the new first index are gone for good now, durable or not: waiting for them
    // means nothing. (Not before: until the meta is durable a crash brings them back, and a caller
    // released early would count on records that were never fsynced.)
    if (this.durable < newFirst) this.durable = newFirst;
    this.scheduler.settle();
    if (state.durableNext > this.persistedDurableNext) this.persistedDurableNext = state.durableNext;
    if (doomed.length > 0) await this.deleteSegments(doomed);
  }

  /** Unlinks segments that are no longer part of the log, off the main thread; close waits for it. */
  private deleteSegments(doomed: readonly SegmentState[]): Promise<void> {
    const deletion = Promise.all(doomed.map((seg) => this.fs.unlinkAsync(seg.file))).then(
      () => undefined,
      (err: unknown) => {
        throw this.latchFailure(
          ioFatal(`deleting truncated segments in ${this.dir}`, err, { file: this.dir }),
        );
      },
    );
    const tracked = deletion.catch(() => undefined);
    this.deletions.add(tracked);
    void tracked.finally(() => this.deletions.delete(tracked));
    return deletion;
  }

  async truncateBack(newNext: number): Promise<void> {
    this.assertWritable('truncateBack');
    assertIndex(newNext, 'newNext');
    this.assertInRange('truncateBack', newNext);
    if (newNext === this.next) return;
    this.epoch++;
    if (newNext >= this.writtenNext) {
      // Only buffered records go: nothing on disk changes.
      this.dropPendingFrom(newNext);
      this.next = newNext;
      this.scheduler.clamp(newNext);
      if (this.scheduler.waiting > 0) this.scheduler.requestRound();
      return;
    }
    this.dropPendingFrom(this.writtenNext);
    // The range changes now; the files change in the maintenance step below, before any later write.
    const popped = this.table.popAbove(newNext);
    const holder = this.table.tail;
    if (popped.length > 0) this.retireTail();
    const slot = newNext - holder.firstIndex;
    invariant(slot >= 0 && slot <= holder.offsets.length, 'the cut lies inside the remaining tail');
    const cut = slot < holder.offsets.length ? holder.offsets[slot]! : holder.endOffset;
    holder.offsets.length = slot;
    holder.endOffset = cut;
    this.next = newNext;
    this.writtenNext = newNext;
    // Records below the cut that were written but not yet fsynced become durable only with the
    // tail fsync of the maintenance step below (a round waits for that step before it settles).
    if (this.durable > newNext) this.durable = newNext;
    // Frames written from here on are re-appended records, which no fsync has covered yet.
    if (this.syncedNext > newNext) this.syncedNext = newNext;
    this.unsyncedWrites = false;
    this.scheduler.clamp(newNext);
    this.scheduler.settle();
    const epoch = this.epoch;
    // Before the cut, the meta records it (CUT): until the cut's fsync, a power cut may keep any
    // subset of the cut pages, i.e. stale but intact frames past zeroed ones, and their syncedNext
    // must not make recovery call that damage to synced data. The same write lowers the durable
    // marker: acknowledged records are about to go on purpose, and a crash right after the cut
    // would otherwise read as damage to acknowledged data. (A rollback's cost: one mirrored meta
    // write. Until the next meta write, damage at or above the cut index reads as a torn tail.)
    this.cutsInFlight.push(newNext);
    const cutState = this.metaState();
    const metaWrite = this.meta.writeAsync(cutState);
    metaWrite.catch(() => undefined);
    await this.maintain('truncating the back of', async () => {
      await metaWrite;
      this.persistedDurableNext = cutState.durableNext;
      // Later segments go highest first, each unlink made durable before the next: unsynced
      // directory operations may survive a power cut in any order, and a surviving later segment
      // behind a removed one would read as a gap (WAL_CORRUPT) instead of a shorter log.
      for (const seg of popped) {
        this.fs.unlink(seg.file);
        this.fs.syncDir(this.dir);
      }
      // A reset called meanwhile may already have replaced the table: then the holder is no longer
      // the tail, and is cut through a handle of its own (the reset deletes it afterwards).
      const stillTail = this.table.isTail(holder);
      let handle = stillTail ? this.tailHandle : undefined;
      if (handle === undefined) {
        this.table.dropReadHandle(holder.file);
        handle = this.fs.open(holder.file);
        if (stillTail) this.tailHandle = handle;
      }
      try {
        // Physically remove the bytes: with preallocated zeros a stale frame past the cut would
        // otherwise pass its checksum after a crash and come back as the same index.
        handle.truncate(cut);
        handle.sync();
      } finally {
        if (!stillTail) handle.close();
      }
      // The cut is durable: no stale frame is left above it, so the fsync proofs of frames written
      // from now on count again, unless another cut queued behind this one is still to run (its
      // index then stays in the meta: metaState carries the lowest cut still in flight).
      const inFlight = this.cutsInFlight.indexOf(newNext);
      invariant(inFlight >= 0, 'a cut is in flight until its own maintenance step ends');
      this.cutsInFlight.splice(inFlight, 1);
      await this.meta.writeAsync(this.metaState());
      if (epoch === this.epoch && this.durability.mode !== 'none' && this.durable < newNext) {
        this.durable = newNext;
      }
      // The cut's fsync covered every record left below it (earlier segments are sealed).
      if (epoch === this.epoch && this.syncedNext < newNext) this.syncedNext = newNext;
      // A segment of an earlier build (version 1 or 2) became the tail again: seal it (just fsynced)
      // so new records go to a version-3 segment, whose frames carry syncedNext and the salt the
      // torn-tail decision relies on.
      if (epoch === this.epoch && stillTail && holder.format !== CURRENT_FRAME_FORMAT) {
        // Cut back to its very start it holds nothing to seal: it is replaced by a version-3 segment
        // of the same name instead (records appended meanwhile are laid out again for it).
        if (holder.offsets.length > 0) this.rotate();
        else this.replaceEmptyOldTail(holder);
      }
      this.scheduler.settle();
    });
  }

  async reset(nextIndex?: number): Promise<void> {
    this.assertWritable('reset');
    const target = nextIndex ?? this.next;
    assertIndex(target, 'nextIndex');
    if (target < this.next) {
      throw new CairnError(
        'OUT_OF_RANGE',
        `reset to ${target} would move the log backwards (next index is ${this.next})`,
        { details: { file: this.dir, nextIndex: this.next, requested: target } },
      );
    }
    this.epoch++;
    this.dropPendingFrom(this.writtenNext);
    const tail = this.table.tail;
    const reuseTail = tail.firstIndex === target && tail.offsets.length === 0;
    const newTail: SegmentState = reuseTail
      ? tail
      : {
          file: path.join(this.dir, segmentFileName(target)),
          firstIndex: target,
          offsets: [],
          endOffset: SEGMENT_HEADER_BYTES,
          format: CURRENT_FRAME_FORMAT,
          salt: drawSegmentSalt(),
        };
    const old = this.table.replaceAll([newTail]);
    if (!reuseTail) this.retireTail();
    this.first = target;
    this.next = target;
    this.writtenNext = target;
    // `durable` moves to `target` only once the reset is durable (end of the maintenance step): a
    // sync() waiting for records the reset drops must not return while a crash can still bring
    // back the old log without them being fsynced.
    this.unsyncedWrites = false;
    this.scheduler.clamp(target);
    const epoch = this.epoch;
    // Commit point: once the first index is durable at `target`, recovery treats every older
    // segment as garbage, and creates the segment at `target` itself if the crash came first.
    const state = this.metaState();
    const metaWrite = this.meta.writeAsync(state);
    metaWrite.catch(() => undefined);
    await this.maintain('resetting', async () => {
      await metaWrite;
      this.persistedDurableNext = state.durableNext;
      if (!reuseTail) {
        this.tailHandle = await this.newSegmentFileAsync(target, newTail.salt);
        if (this.spareAlwaysReady) this.spare?.prepare();
      }
      if (epoch === this.epoch && this.durable < target) this.durable = target;
      // The log is empty at `target`: no record below it is in any segment it will write to.
      if (epoch === this.epoch && this.syncedNext < target) this.syncedNext = target;
      this.scheduler.settle();
      if (old.length > 0) {
        await Promise.all(old.map((seg) => this.fs.unlinkAsync(seg.file)));
        this.fs.syncDir(this.dir);
      }
    });
  }

  truncateFrontFreesSegment(newFirst: number): boolean {
    return this.table.frontTruncationFreesSegment(newFirst);
  }

  segments(): SegmentInfo[] {
    return this.table.info();
  }

  verify(): VerifyReport {
    this.assertOpen('verify');
    let records = 0;
    let bytes = 0;
    let prevNext: number | undefined;
    for (const seg of this.table.all) {
      const handle = this.handleFor(seg);
      const scan = scanSegment(handle, seg.firstIndex, seg.endOffset, seg);
      if (scan.defect) {
        throw new CairnError(
          'WAL_CORRUPT',
          `${seg.file} at offset ${scan.defect.offset}: ${scan.defect.reason}`,
          {
            details: { file: seg.file, offset: scan.defect.offset },
          },
        );
      }
      if (scan.offsets.length !== seg.offsets.length) {
        throw new CairnError(
          'WAL_CORRUPT',
          `${seg.file} at offset ${scan.endOffset}: holds ${scan.offsets.length} records, expected ${seg.offsets.length}`,
          { details: { file: seg.file, offset: scan.endOffset } },
        );
      }
      if (prevNext !== undefined && prevNext !== seg.firstIndex) {
        throw new CairnError(
          'WAL_CORRUPT',
          `${seg.file} at offset 0: starts at index ${seg.firstIndex}, previous segment ends before ${prevNext}`,
          { details: { file: seg.file, offset: 0 } },
        );
      }
      prevNext = segmentNextIndex(seg);
      records += scan.offsets.length;
      bytes += seg.endOffset;
    }
    return {
      segments: this.table.length,
      records,
      bytes,
      firstIndex: this.first,
      nextIndex: this.next,
    };
  }

  close(): Promise<void> {
    this.closePromise ??= this.doClose();
    return this.closePromise;
  }

  // ---------------------------------------------------------------------------------------------

  private async doClose(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    // Let an fsync already on the thread pool finish before the final write and close.
    while (this.scheduler.roundInFlight) await this.scheduler.roundInFlight;
    await this.settleMaintenance();
    // Stop the spare first: a failure of its calls latches the log and is what close reports. A
    // ready spare is kept for the next open when this close can be recorded as clean.
    const cleanPossible = !this.readOnly && this.durability.mode !== 'none' && this.latch.error === undefined;
    const spareKept = (await this.spare?.dispose(cleanPossible)) ?? false;
    await Promise.all(this.deletions);
    await this.settleMaintenance();
    while (this.scheduler.roundInFlight) await this.scheduler.roundInFlight;
    this.closed = true;
    let failure: unknown = this.latch.error;
    if (!this.readOnly && failure === undefined) {
      try {
        this.writePending();
        if (this.durability.mode !== 'none' && this.unsyncedWrites) {
          this.timedTailSync();
          this.unsyncedWrites = false;
          this.durable = Math.max(this.durable, this.writtenNext);
        }
        this.scheduler.settle();
        if (this.durability.mode !== 'none' && this.durable >= this.next) {
          // Everything is durable and nothing follows the tail's data: record it, so the next open
          // reads only the data (not the preallocated zeros) and knows every record is acknowledged.
          invariant(this.pendingCount() === 0 && this.writtenNext === this.next, 'close wrote every record');
          await this.meta.writeAsync({
            firstIndex: this.first,
            durableNext: this.next,
            clean: { tailEndOffset: this.table.tail.endOffset, spareKept },
          });
        }
      } catch (err) {
        failure = this.latch.latch(err instanceof CairnError ? err : ioFatal(`closing WAL ${this.dir}`, err));
      }
    }
    this.scheduler.rejectAll(
      failure ?? new CairnError('CLOSED', `WAL ${this.dir} closed before the sync completed`),
    );
    this.retireTail();
    this.table.closeReadHandles();
    this.meta.close();
    if (failure !== undefined) throw failure;
  }

  private async settleMaintenance(): Promise<void> {
    while (this.maintenance) await this.maintenance;
  }

  /** The meta state as of now (the clean marker is only ever written by close). */
  private metaState(): MetaState {
    const state: MetaState = {
      firstIndex: this.first,
      durableNext: Math.max(this.first, this.durable),
      clean: undefined,
    };
    // A cut not yet fsynced keeps CUT set, whichever call writes the meta (see cutsInFlight).
    if (this.cutsInFlight.length > 0) state.cutNext = Math.min(...this.cutsInFlight);
    return state;
  }

  /**
   * Queues disk work of a truncation or reset behind the work queued before it. Until it is done no
   * record is written (they stay buffered); a failure latches the log.
   */
  private maintain(what: string, work: () => Promise<void>): Promise<void> {
    const previous = this.maintenance ?? Promise.resolve();
    const run = previous.then(async () => {
      this.latch.check();
      try {
        await work();
      } catch (err) {
        throw this.latchFailure(err, what);
      }
    });
    const tracked = run.then(
      () => undefined,
      () => undefined,
    );
    this.maintenance = tracked;
    void tracked.then(() => {
      if (this.maintenance !== tracked) return;
      this.maintenance = undefined;
      // Records appended meanwhile were held back: write them now if anyone waits.
      if (this.pendingCount() > 0 || this.scheduler.waiting > 0) this.scheduler.requestRound();
    });
    return run;
  }

  /** Latches `err` (wrapped as IO_FATAL unless typed), rejects every waiter, returns the latched error. */
  private latchFailure(err: unknown, what?: string): CairnError {
    const typed =
      err instanceof CairnError
        ? err
        : ioFatal(`${what ?? 'operating on'} WAL ${this.dir}`, err, { file: this.dir });
    const latched = this.latch.latch(typed);
    this.scheduler.rejectAll(latched);
    return latched as CairnError;
  }

  private pendingCount(): number {
    return this.pending.length - this.pendingHead;
  }

  /**
   * One group commit (the scheduler's round): write everything buffered, fsync once, release the
   * callers it covers, then `end()`. The common round (no maintenance, no wait for a spare) runs
   * with callbacks and fields rather than an async function: one round per lane batch, and an
   * async function's frame and promises were a measured share of the allocation per block.
   */
  private runRound(end: () => void): void {
    if (this.maintenance !== undefined || this.latch.error !== undefined) {
      void this.flushRound().finally(end);
      return;
    }
    if (!this.writeOrReject()) {
      end();
      return;
    }
    if (this.spare?.inProgress !== undefined && this.pendingCount() > 0) {
      void this.flushRound().finally(end);
      return;
    }
    if (this.durability.mode === 'none') {
      this.scheduler.settle();
      end();
      return;
    }
    const target = this.writtenNext;
    const epoch = this.epoch;
    if (this.unsyncedWrites && this.syncOffThread) {
      this.unsyncedWrites = false;
      this.syncsInFlight++;
      const round = this.offThreadRound;
      round.target = target;
      round.epoch = epoch;
      round.handle = this.tailHandle!;
      round.startedMs = performance.now();
      round.end = end;
      const handle = round.handle;
      try {
        if (handle.syncThen !== undefined) handle.syncThen(this.roundSyncDone);
        else handle.syncAsync().then(this.roundSynced, this.roundSyncFailed);
      } catch (err) {
        // Refused before it started (a handle that throws instead of rejecting): the same failure.
        this.roundSyncFailed(err);
      }
      return;
    }
    if (this.unsyncedWrites) {
      this.unsyncedWrites = false;
      try {
        this.timedTailSync();
      } catch (err) {
        this.scheduler.rejectAll(this.latch.latch(err));
        end();
        return;
      }
    }
    this.roundDurable(target, epoch);
    end();
  }

  private readonly roundSyncDone = (err: Error | null): void => {
    if (err === null) this.roundSynced();
    else this.roundSyncFailed(err);
  };

  /** The off-thread fsync of the round in `offThreadRound` returned. */
  private readonly roundSynced = (): void => {
    const round = this.offThreadRound;
    const end = round.end!;
    const handle = round.handle!;
    round.end = undefined;
    round.handle = undefined;
    this.syncsInFlight--;
    this.slowFsync.record(performance.now() - round.startedMs, handle.path);
    // Resumed from an I/O callback, i.e. a fresh event-loop task: the chain of rounds started as
    // microtasks is broken here, so the next round need not yield first.
    this.scheduler.resumedFromEventLoop();
    this.roundDurable(round.target, round.epoch, true);
    end();
  };

  private readonly roundSyncFailed = (err: unknown): void => {
    const round = this.offThreadRound;
    const end = round.end!;
    const path = round.handle!.path;
    round.end = undefined;
    round.handle = undefined;
    this.syncsInFlight--;
    this.scheduler.rejectAll(this.latch.latch(ioFatal(`fsync of ${path}`, err, { file: path })));
    end();
  };

  /**
   * Records below `target` are durable (unless a truncation or reset came in between): release.
   * `now`: from the fsync's completion callback, the round's last step (see `settle`).
   */
  private roundDurable(target: number, epoch: number, now = false): void {
    if (epoch === this.epoch && target > this.durable) {
      invariant(target <= this.writtenNext, 'only written records become durable');
      this.durable = target;
    }
    // Frames written from now on carry the proof that these records were fsynced (frame.ts).
    if (epoch === this.epoch && target > this.syncedNext) this.syncedNext = target;
    this.scheduler.settle(now);
  }

  /** One group commit: write everything buffered, fsync once, release the callers it covers. */
  private async flushRound(): Promise<void> {
    // Truncation or reset disk work first: records appended after it go to disk after it.
    while (this.maintenance !== undefined) await this.maintenance;
    if (this.latch.error !== undefined) {
      this.scheduler.rejectAll(this.latch.error);
      return;
    }
    // Taken before the wait for the spare below: a truncateBack or reset during that wait changes
    // the epoch and clears unsyncedWrites (its maintenance step fsyncs the cut tail later), so this
    // round must then not call the records it wrote before the wait durable: they were never
    // fsynced. (Taken after the wait, a cut of a round that had written records and was waiting for
    // the spare acknowledged them without any fsync.)
    const epoch = this.epoch;
    if (!this.writeOrReject()) return;
    // The tail is full and its successor is being prepared: wait for it here, off the main
    // thread's critical path, rather than writing a whole segment of zeros synchronously.
    while (this.spare?.inProgress !== undefined && this.pendingCount() > 0) {
      await this.spare.inProgress;
      if (this.latch.error !== undefined) {
        this.scheduler.rejectAll(this.latch.error);
        return;
      }
      if (!this.writeOrReject()) return;
    }
    if (this.durability.mode === 'none') {
      this.scheduler.settle();
      return;
    }
    const target = this.writtenNext;
    if (this.unsyncedWrites) {
      this.unsyncedWrites = false;
      const handle = this.tailHandle!;
      try {
        if (this.syncOffThread) {
          this.syncsInFlight++;
          const started = performance.now();
          try {
            await handle.syncAsync();
          } finally {
            this.syncsInFlight--;
          }
          this.slowFsync.record(performance.now() - started, handle.path);
          // Resumed from an I/O callback, i.e. a fresh event-loop task: the chain of rounds
          // started as microtasks is broken here, so the next round need not yield first.
          this.scheduler.resumedFromEventLoop();
        } else {
          this.timedTailSync();
        }
      } catch (err) {
        this.scheduler.rejectAll(
          this.latch.latch(
            err instanceof CairnError ? err : ioFatal(`fsync of ${handle.path}`, err, { file: handle.path }),
          ),
        );
        return;
      }
    }
    this.roundDurable(target, epoch);
  }

  /** fsync of the tail on this thread, timed for the slow-fsync warning; OS errors become IO_FATAL. */
  private timedTailSync(): void {
    const handle = this.tailHandle!;
    const started = performance.now();
    try {
      handle.sync();
    } catch (err) {
      throw ioFatal(`fsync of ${handle.path}`, err, { file: handle.path });
    }
    this.slowFsync.record(performance.now() - started, handle.path);
  }

  private writeOrReject(): boolean {
    try {
      this.writePending();
      return true;
    } catch (err) {
      this.scheduler.rejectAll(this.latch.latch(err));
      return false;
    }
  }

  private writeOrLatch(): void {
    try {
      this.writePending();
    } catch (err) {
      const latched = this.latch.latch(err);
      this.scheduler.rejectAll(latched);
      throw latched;
    }
  }

  /** Writes every buffered frame to the tail, sealing and creating segments as they fill. */
  private writePending(): void {
    // Truncation or reset disk work is running: the frames stay buffered until it is done.
    if (this.maintenance !== undefined) return;
    while (this.pendingCount() > 0) {
      const tail = this.table.tail;
      const batch: Buffer[] = [];
      let batchBytes = 0;
      let i = this.pendingHead;
      while (i < this.pending.length && batch.length < MAX_WRITE_BUFFERS) {
        const frame = this.pending[i]!;
        const segmentEmpty = tail.offsets.length === 0 && batch.length === 0;
        // The first record of a segment always fits: an oversized record gets a segment of its own.
        if (!segmentEmpty && tail.endOffset + batchBytes + frame.byteLength > this.segmentBytes) break;
        if (batch.length > 0 && batchBytes + frame.byteLength > MAX_WRITE_BYTES) break;
        batch.push(frame);
        batchBytes += frame.byteLength;
        i++;
      }
      if (batch.length === 0) {
        if (this.shouldWaitForSpare()) break;
        this.rotate();
        continue;
      }
      invariant(segmentNextIndex(tail) === this.writtenNext, 'the tail segment ends at the written index');
      // Sealed now rather than at append: an fsync that completed since then is recorded too.
      for (const frame of batch) sealFrame(frame, tail.format, this.syncedNext, tail.salt);
      try {
        writeFully(this.tailHandle!, coalesceAdjacent(batch), tail.endOffset);
      } catch (err) {
        throw ioFatal(`write to ${tail.file}`, err, { file: tail.file, offset: tail.endOffset });
      }
      this.unsyncedWrites = true;
      this.table.recordWrites(batch);
      // Past half of the segment: get the next one ready before this one fills up.
      if (this.spare !== undefined && tail.endOffset * 2 >= this.segmentBytes) this.spare.prepare();
      this.writtenNext += batch.length;
      this.pendingBytes -= batchBytes;
      this.pendingHead = i;
    }
    if (this.pendingCount() > 0) {
      // Stopped at a full tail (see shouldWaitForSpare): keep the rest for the next round.
      this.pending = this.pending.slice(this.pendingHead);
    } else {
      this.pending = [];
      this.pendingBytes = 0;
      // Every frame was copied to the kernel: the arena's memory can be reused.
      this.arena.reset();
    }
    this.pendingHead = 0;
  }

  /** A full tail waits for the spare being prepared while little is buffered and the log is open. */
  private shouldWaitForSpare(): boolean {
    return (
      this.spare?.inProgress !== undefined &&
      !this.closed &&
      this.pendingBytes <= SPARE_WAIT_MAX_PENDING_BYTES
    );
  }

  /**
   * Seals the tail and starts the next segment. The old tail is fsynced before the new file exists,
   * so a sealed segment is always complete on disk (in every durability mode): a crash can only
   * tear the newest segment, which recovery treats as a torn tail.
   */
  private rotate(): void {
    const old = this.table.tail;
    const nextFirst = segmentNextIndex(old);
    invariant(nextFirst === this.writtenNext, 'a segment is sealed after its last written record');
    // Skipped only when nothing was written since a sync that has completed.
    if (this.unsyncedWrites || this.syncsInFlight > 0) {
      try {
        this.timedTailSync();
      } catch (err) {
        throw ioFatal(`fsync of ${old.file} before sealing`, err, { file: old.file });
      }
    }
    this.unsyncedWrites = false;
    if (this.durability.mode !== 'none' && this.durable < nextFirst) this.durable = nextFirst;
    if (this.syncedNext < nextFirst) this.syncedNext = nextFirst;
    let handle: FileHandle;
    const salt = drawSegmentSalt();
    try {
      handle = this.newSegmentFile(nextFirst, salt);
    } catch (err) {
      throw ioFatal(`creating segment ${nextFirst} in ${this.dir}`, err, { file: this.dir });
    }
    this.retireTail();
    this.tailHandle = handle;
    if (this.spareAlwaysReady) this.spare?.prepare();
    this.table.pushTail({
      file: path.join(this.dir, path.basename(handle.path)),
      firstIndex: nextFirst,
      offsets: [],
      endOffset: SEGMENT_HEADER_BYTES,
      format: CURRENT_FRAME_FORMAT,
      salt,
    });
    if (old.format !== CURRENT_FRAME_FORMAT) this.relayoutPending(old.format);
  }

  /**
   * The tail is an empty segment of an earlier format (a truncateBack cut it back to its start):
   * it becomes a salted version-3 segment of the same name (replaceEmptySegment, atomic).
   */
  private replaceEmptyOldTail(tail: SegmentState): void {
    invariant(tail.offsets.length === 0 && this.table.isTail(tail), 'only an empty tail is replaced');
    const from = tail.format;
    const salt = drawSegmentSalt();
    this.retireTail();
    this.table.dropReadHandle(tail.file);
    // Synchronous, like rotate: no call can change the segments between the rename and the reopen.
    replaceEmptySegment(this.fs, this.dir, tail.firstIndex, this.preallocateBytes(), salt);
    this.tailHandle = this.fs.open(tail.file);
    tail.format = CURRENT_FRAME_FORMAT;
    tail.salt = salt;
    tail.endOffset = SEGMENT_HEADER_BYTES;
    this.unsyncedWrites = false;
    this.relayoutPending(from);
  }

  /**
   * The tail was a segment of an earlier format (a log written by an earlier build, sealed now):
   * buffered frames were laid out for it and are laid out again for the new tail. Happens once.
   */
  private relayoutPending(from: FrameFormat): void {
    const live = this.pending
      .slice(this.pendingHead)
      .map((f) => relayoutFrame(f, from, CURRENT_FRAME_FORMAT));
    this.pending = live;
    this.pendingHead = 0;
    this.pendingBytes = live.reduce((sum, f) => sum + f.byteLength, 0);
  }

  private preallocateBytes(): number {
    return this.preallocate ? this.segmentBytes : 0;
  }

  /**
   * A durable, empty segment starting at `firstIndex`: the spare when one is ready (a header
   * write, an fdatasync, a rename), else created and preallocated here, synchronously.
   */
  private newSegmentFile(firstIndex: number, salt: number): FileHandle {
    if (this.spare?.ready) return this.spare.take(firstIndex, salt);
    return createSegmentFile(this.fs, this.dir, firstIndex, this.preallocateBytes(), salt);
  }

  /** As `newSegmentFile`, but zeros are written between event-loop turns and fsynced off-thread. */
  private async newSegmentFileAsync(firstIndex: number, salt: number): Promise<FileHandle> {
    if (this.spare?.ready) return this.spare.take(firstIndex, salt);
    return createSegmentFileAsync(this.fs, this.dir, firstIndex, this.preallocateBytes(), salt);
  }

  /** A background step (spare preparation) failed: latch, as for any failed write or fsync. */
  private latchInBackground(err: CairnError): void {
    this.scheduler.rejectAll(this.latch.latch(err));
  }

  /** Closes the tail handle, after any fsync still running on it. */
  private retireTail(): void {
    const handle = this.tailHandle;
    this.tailHandle = undefined;
    if (!handle) return;
    const round = this.scheduler.roundInFlight;
    if (round) void round.finally(() => handle.close());
    else handle.close();
  }

  private dropPendingFrom(index: number): void {
    const keep = Math.max(0, index - this.writtenNext);
    const live = this.pending.slice(this.pendingHead, this.pendingHead + keep);
    this.pending = live;
    this.pendingHead = 0;
    this.pendingBytes = live.reduce((sum, f) => sum + f.byteLength, 0);
  }

  private handleFor(seg: SegmentState): FileHandle {
    if (this.tailHandle && this.table.isTail(seg)) return this.tailHandle;
    return this.table.readHandle(seg);
  }

  private startTimer(intervalMs: number): void {
    this.timer = setInterval(() => {
      if (this.latch.error !== undefined || this.closed) return;
      if (this.pendingCount() > 0 || this.unsyncedWrites) this.scheduler.requestRound();
    }, intervalMs);
    this.timer.unref();
  }

  private assertOpen(op: string): void {
    this.latch.check();
    if (this.closed || this.closePromise !== undefined) {
      throw new CairnError('CLOSED', `${op} on closed WAL ${this.dir}`, { details: { file: this.dir } });
    }
  }

  private assertWritable(op: string): void {
    this.assertOpen(op);
    if (this.readOnly) {
      throw new CairnError('INVALID_ARGUMENT', `${op} on WAL ${this.dir} opened read-only`, {
        details: { file: this.dir },
      });
    }
  }

  private assertInRange(op: string, index: number): void {
    if (index < this.first || index > this.next) {
      throw new CairnError(
        'OUT_OF_RANGE',
        `${op}(${index}) outside [${this.first}, ${this.next}] (first index, next index)`,
        { details: { file: this.dir, index, firstIndex: this.first, nextIndex: this.next } },
      );
    }
  }
}
