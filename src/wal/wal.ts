import * as path from 'node:path';
import type { FileHandle, FileSystem } from '../io/fileSystem.ts';
import { writeFully } from '../io/fileSystem.ts';
import { assertIndex, assertPositiveInt } from '../lib/assert.ts';
import { CairnError, FatalLatch, ioFatal } from '../lib/errors.ts';
import { coalesceAdjacent, encodeFrameInto, FRAME_HEADER_BYTES, FrameArena } from './frame.ts';
import type { WalMeta } from './meta.ts';
import { type RecoveredLog, recoverLog, type SegmentState, segmentNextIndex } from './recovery.ts';
import { createSegmentFile, readFrame, SEGMENT_HEADER_BYTES, scanSegment } from './segmentFile.ts';
import { SpareSegment } from './spareSegment.ts';
import type { Durability, SegmentInfo, VerifyReport, WalOptions, WalRecord, WriteAheadLog } from './types.ts';

export const WAL_DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
export const WAL_DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024;
/** Buffered bytes that trigger a write to the OS from inside `append` (bounds memory). */
const WRITE_THRESHOLD_BYTES = 256 * 1024;
/** Upper bound of one writev: larger writes measured slower, and IOV_MAX is 1024. */
const MAX_WRITE_BYTES = 512 * 1024;
const MAX_WRITE_BUFFERS = 1024;
/** Open read handles kept for sealed segments. */
const READ_HANDLE_CACHE = 8;
/**
 * A full tail waits for the spare being prepared (instead of creating the next segment on the
 * spot) only while at most this much is buffered, so memory stays bounded.
 */
const SPARE_WAIT_MAX_PENDING_BYTES = 16 * 1024 * 1024;
/** Group-commit rounds chained as microtasks before one yields to the event loop. */
const MAX_CHAINED_ROUNDS = 4;

interface Waiter {
  /** Resolves once every record below this index is durable (or was truncated away). */
  target: number;
  /** Flush rounds started before this waiter was created; callers join it until the next starts. */
  round: number;
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * The segmented write-ahead log. One instance owns its directory.
 *
 * Writes are synchronous calls on the main thread (page-cache writes take microseconds); only the
 * fsync may run on the thread pool (`syncOffThread`). Appends are buffered and written with one
 * writev per flush; `sync()` callers of the same tick, and those arriving while an fsync is in
 * flight, share the next fsync. Truncations and reset run synchronously inside their call (with
 * synchronous fsyncs), so they take effect in call order relative to appends.
 *
 * Segments are preallocated with zeros (overwrites fsync cheaper than appends). So that writing a
 * segment of zeros never sits on the commit path, the next segment is prepared in the background
 * (`SpareSegment`) and sealing takes it with a rename; a tail that fills up before its spare is
 * ready waits for it inside the flush round (the records stay buffered and readable) rather than
 * zero-filling synchronously. A fresh log's first segment is zero-filled between event-loop turns.
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

  private first: number;
  private next: number;
  private durable: number;
  /** Records below this index have been written to a segment file; the rest sit in `pending`. */
  private writtenNext: number;
  private pending: Uint8Array[] = [];
  /** Where buffered frames live until written (reset whenever nothing is buffered). */
  private readonly arena = new FrameArena();
  private pendingHead = 0;
  private pendingBytes = 0;
  /** Segment files in index order; the last one is the writable tail. */
  private segmentStates: SegmentState[];
  private tailHandle: FileHandle | undefined;
  private readonly readHandles = new Map<string, FileHandle>();
  /** Bumped by every truncation/reset: an fsync that started before it proves nothing after it. */
  private epoch = 0;
  private unsyncedWrites = false;
  /** fsyncs of the tail running on the thread pool (a seal must not rely on them). */
  private syncsInFlight = 0;
  private waiters: Waiter[] = [];
  private flushScheduled = false;
  private roundsStarted = 0;
  private roundInFlight: Promise<void> | undefined;
  /**
   * Rounds started as microtasks since the event loop last ran (a round started by setImmediate,
   * or one that waited for a thread-pool fsync). Only rounds that never leave the microtask queue
   * (synchronous fsyncs, no-sync mode) can reach the cap.
   */
  private chainedRounds = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Background segment deletions (truncateFront) still running. */
  private readonly deletions = new Set<Promise<void>>();
  private closePromise: Promise<void> | undefined;

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
    this.durable = recovered.nextIndex;
    this.writtenNext = recovered.nextIndex;
    this.segmentStates = recovered.segments;
    if (resolved.preallocate && !resolved.readOnly) {
      this.spare = new SpareSegment(
        this.fs,
        this.dir,
        this.segmentBytes,
        (err) => this.latchInBackground(err),
        resolved.spareSegment === 'always-ready' ? 'paced' : 'fast',
      );
      this.spareAlwaysReady = resolved.spareSegment === 'always-ready';
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
    for (const p of payloads) {
      const frame = encodeFrameInto(this.arena.alloc(FRAME_HEADER_BYTES + p.byteLength), this.next, p);
      this.pending.push(frame);
      this.pendingBytes += frame.byteLength;
      this.next++;
    }
    if (this.pendingBytes >= WRITE_THRESHOLD_BYTES) this.writeOrLatch();
    return firstAppended;
  }

  sync(): Promise<void> {
    try {
      this.assertOpen('sync');
    } catch (err) {
      return Promise.reject(err);
    }
    const target = this.next;
    if (this.satisfied(target)) return Promise.resolve();
    // Every caller until the next round starts shares one promise: that round covers them all,
    // and 64 callers cost one allocation and one resolution instead of 64.
    const last = this.waiters.at(-1);
    if (last !== undefined && last.round === this.roundsStarted) {
      last.target = target;
      return last.promise;
    }
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.waiters.push({ target, round: this.roundsStarted, promise, resolve, reject });
    this.requestFlush();
    return promise;
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
      const payload = new Uint8Array(frame.byteLength - FRAME_HEADER_BYTES);
      payload.set(frame.subarray(FRAME_HEADER_BYTES));
      return payload;
    }
    const seg = this.segmentFor(index);
    const slot = index - seg.firstIndex;
    const offset = seg.offsets[slot]!;
    const end = slot + 1 < seg.offsets.length ? seg.offsets[slot + 1]! : seg.endOffset;
    try {
      return readFrame(this.handleFor(seg), seg.file, offset, end - offset, index);
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
    const doomed: SegmentState[] = [];
    this.guarded('truncating the front', () => {
      // The new first index is durable before any file goes: from here on the doomed segments are
      // garbage that recovery recognises (wholly below the first index) and deletes itself. So they
      // are deleted on the thread pool, and their deletion need not be durable (no directory fsync).
      this.meta.write(newFirst);
      this.first = newFirst;
      while (this.segmentStates.length >= 2 && this.segmentStates[1]!.firstIndex <= newFirst) {
        doomed.push(this.segmentStates.shift()!);
      }
      for (const seg of doomed) this.dropReadHandle(seg.file);
    });
    // Records below the new first index are gone, durable or not: waiting for them means nothing.
    if (this.durable < newFirst) this.durable = newFirst;
    this.resolveWaiters();
    if (doomed.length > 0) await this.deleteSegments(doomed);
  }

  /** Unlinks segments that are no longer part of the log, off the main thread; close waits for it. */
  private deleteSegments(doomed: readonly SegmentState[]): Promise<void> {
    const deletion = Promise.all(doomed.map((seg) => this.fs.unlinkAsync(seg.file))).then(
      () => undefined,
      (err: unknown) => {
        const latched = this.latch.latch(
          ioFatal(`deleting truncated segments in ${this.dir}`, err, { file: this.dir }),
        );
        this.rejectWaiters(latched);
        throw latched;
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
      this.clampWaiters(newNext);
      if (this.waiters.length > 0) this.requestFlush();
      return;
    }
    this.dropPendingFrom(this.writtenNext);
    this.guarded('truncating the back', () => {
      // Later segments go highest first, each unlink made durable before the next: unsynced
      // directory operations may survive a power cut in any order, and a surviving later segment
      // behind a removed one would read as a gap (WAL_CORRUPT) instead of a shorter log.
      while (this.segmentStates.length >= 2 && this.segmentStates.at(-1)!.firstIndex > newNext) {
        const seg = this.segmentStates.pop()!;
        if (this.tailHandle?.path === seg.file) this.retireTail();
        this.dropReadHandle(seg.file);
        this.fs.unlink(seg.file);
        this.fs.syncDir(this.dir);
      }
      const holder = this.segmentStates.at(-1)!;
      const slot = newNext - holder.firstIndex;
      const cut = slot < holder.offsets.length ? holder.offsets[slot]! : holder.endOffset;
      if (this.tailHandle === undefined) {
        this.dropReadHandle(holder.file);
        this.tailHandle = this.fs.open(holder.file);
      }
      // Physically remove the bytes: with preallocated zeros a stale frame past the cut would
      // otherwise pass its checksum after a crash and come back as the same index.
      this.tailHandle.truncate(cut);
      this.tailHandle.sync();
      holder.offsets.length = slot;
      holder.endOffset = cut;
    });
    this.next = newNext;
    this.writtenNext = newNext;
    this.durable = newNext;
    this.unsyncedWrites = false;
    this.clampWaiters(newNext);
    this.resolveWaiters();
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
    this.guarded('resetting', () => {
      // Commit point: once the first index is durable at `target`, recovery treats every older
      // segment as garbage, and creates the segment at `target` itself if the crash came first.
      this.meta.write(target);
      const tail = this.segmentStates.at(-1)!;
      const reuseTail = tail.firstIndex === target && tail.offsets.length === 0;
      const old = reuseTail ? this.segmentStates.slice(0, -1) : this.segmentStates;
      if (!reuseTail) {
        this.retireTail();
        this.tailHandle = this.newSegmentFile(target);
      }
      for (const seg of old) {
        this.dropReadHandle(seg.file);
        this.fs.unlink(seg.file);
      }
      if (old.length > 0) this.fs.syncDir(this.dir);
      this.segmentStates = [
        reuseTail
          ? tail
          : {
              file: path.join(this.dir, path.basename(this.tailHandle!.path)),
              firstIndex: target,
              offsets: [],
              endOffset: SEGMENT_HEADER_BYTES,
            },
      ];
    });
    this.first = target;
    this.next = target;
    this.writtenNext = target;
    this.durable = target;
    this.unsyncedWrites = false;
    this.clampWaiters(target);
    this.resolveWaiters();
  }

  truncateFrontFreesSegment(newFirst: number): boolean {
    // The same condition as the deletion loop of truncateFront.
    return this.segmentStates.length >= 2 && this.segmentStates[1]!.firstIndex <= newFirst;
  }

  segments(): SegmentInfo[] {
    return this.segmentStates.map((seg, i) => ({
      file: seg.file,
      firstIndex: seg.firstIndex,
      nextIndex: segmentNextIndex(seg),
      bytes: seg.endOffset,
      sealed: i < this.segmentStates.length - 1,
    }));
  }

  verify(): VerifyReport {
    this.assertOpen('verify');
    let records = 0;
    let bytes = 0;
    let prevNext: number | undefined;
    for (const seg of this.segmentStates) {
      const handle = this.handleFor(seg);
      const scan = scanSegment(handle, seg.firstIndex, seg.endOffset);
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
      segments: this.segmentStates.length,
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
    while (this.roundInFlight) await this.roundInFlight;
    // Stop the spare first: a failure of its calls latches the log and is what close reports.
    await this.spare?.dispose();
    await Promise.all(this.deletions);
    while (this.roundInFlight) await this.roundInFlight;
    this.closed = true;
    let failure: unknown = this.latch.error;
    if (!this.readOnly && failure === undefined) {
      try {
        this.writePending();
        if (this.durability.mode !== 'none' && this.unsyncedWrites) {
          try {
            this.tailHandle!.sync();
          } catch (err) {
            throw ioFatal(`fsync of ${this.tailHandle!.path}`, err, { file: this.tailHandle!.path });
          }
          this.unsyncedWrites = false;
          this.durable = Math.max(this.durable, this.writtenNext);
        }
        this.resolveWaiters();
      } catch (err) {
        failure = this.latch.latch(err);
      }
    }
    this.rejectWaiters(
      failure ?? new CairnError('CLOSED', `WAL ${this.dir} closed before the sync completed`),
    );
    this.retireTail();
    for (const handle of this.readHandles.values()) handle.close();
    this.readHandles.clear();
    this.meta.close();
    if (failure !== undefined) throw failure;
  }

  private satisfied(target: number): boolean {
    return (this.durability.mode === 'none' ? this.writtenNext : this.durable) >= target;
  }

  private pendingCount(): number {
    return this.pending.length - this.pendingHead;
  }

  private requestFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    if (this.roundInFlight === undefined) this.scheduleRound();
  }

  /**
   * Starts the next round as a microtask: it runs once the current synchronous code and the
   * continuations already queued are done, so every append and sync of this turn joins it, without
   * paying an event-loop turn per commit. After a few rounds in a row it goes through setImmediate
   * instead, so a log under constant load cannot starve timers and I/O callbacks.
   */
  private scheduleRound(): void {
    if (this.chainedRounds < MAX_CHAINED_ROUNDS) {
      this.chainedRounds++;
      queueMicrotask(this.startRound);
    } else {
      setImmediate(this.startRoundFromLoop);
    }
  }

  /** A round started by the event loop: the microtask chain starts over. */
  private readonly startRoundFromLoop = (): void => {
    this.chainedRounds = 0;
    this.startRound();
  };

  private readonly startRound = (): void => {
    this.flushScheduled = false;
    if (this.closed) return;
    const round = this.flushRound();
    this.roundInFlight = round;
    void round.finally(() => {
      this.roundInFlight = undefined;
      // Callers released by the round that just ended have already appended and asked for the
      // next one: their continuations ran before this callback.
      if (this.flushScheduled) this.scheduleRound();
    });
  };

  /** One group commit: write everything buffered, fsync once, release the callers it covers. */
  private async flushRound(): Promise<void> {
    this.roundsStarted++;
    if (this.latch.error !== undefined) {
      this.rejectWaiters(this.latch.error);
      return;
    }
    if (!this.writeOrReject()) return;
    // The tail is full and its successor is being prepared: wait for it here, off the main
    // thread's critical path, rather than writing a whole segment of zeros synchronously.
    while (this.spare?.inProgress !== undefined && this.pendingCount() > 0) {
      await this.spare.inProgress;
      if (this.latch.error !== undefined) {
        this.rejectWaiters(this.latch.error);
        return;
      }
      if (!this.writeOrReject()) return;
    }
    if (this.durability.mode === 'none') {
      this.resolveWaiters();
      return;
    }
    const target = this.writtenNext;
    const epoch = this.epoch;
    if (this.unsyncedWrites) {
      this.unsyncedWrites = false;
      const handle = this.tailHandle!;
      try {
        if (this.syncOffThread) {
          this.syncsInFlight++;
          try {
            await handle.syncAsync();
          } finally {
            this.syncsInFlight--;
          }
          // Resumed from an I/O callback, i.e. a fresh event-loop task: the chain of rounds
          // started as microtasks is broken here, so the next round need not yield first.
          this.chainedRounds = 0;
        } else handle.sync();
      } catch (err) {
        this.rejectWaiters(this.latch.latch(ioFatal(`fsync of ${handle.path}`, err, { file: handle.path })));
        return;
      }
    }
    if (epoch === this.epoch && target > this.durable) this.durable = target;
    this.resolveWaiters();
  }

  private writeOrReject(): boolean {
    try {
      this.writePending();
      return true;
    } catch (err) {
      this.rejectWaiters(this.latch.latch(err));
      return false;
    }
  }

  private writeOrLatch(): void {
    try {
      this.writePending();
    } catch (err) {
      const latched = this.latch.latch(err);
      this.rejectWaiters(latched);
      throw latched;
    }
  }

  /** Writes every buffered frame to the tail, sealing and creating segments as they fill. */
  private writePending(): void {
    while (this.pendingCount() > 0) {
      const tail = this.segmentStates.at(-1)!;
      const batch: Uint8Array[] = [];
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
      try {
        writeFully(this.tailHandle!, coalesceAdjacent(batch), tail.endOffset);
      } catch (err) {
        throw ioFatal(`write to ${tail.file}`, err, { file: tail.file, offset: tail.endOffset });
      }
      this.unsyncedWrites = true;
      let offset = tail.endOffset;
      for (const frame of batch) {
        tail.offsets.push(offset);
        offset += frame.byteLength;
      }
      tail.endOffset = offset;
      // Past half of the segment: get the next one ready before this one fills up.
      if (this.spare !== undefined && offset * 2 >= this.segmentBytes) this.spare.prepare();
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
    const old = this.segmentStates.at(-1)!;
    const nextFirst = segmentNextIndex(old);
    try {
      // Skipped only when nothing was written since a sync that has completed.
      if (this.unsyncedWrites || this.syncsInFlight > 0) this.tailHandle!.sync();
    } catch (err) {
      throw ioFatal(`fsync of ${old.file} before sealing`, err, { file: old.file });
    }
    this.unsyncedWrites = false;
    if (this.durability.mode !== 'none' && this.durable < nextFirst) this.durable = nextFirst;
    let handle: FileHandle;
    try {
      handle = this.newSegmentFile(nextFirst);
    } catch (err) {
      throw ioFatal(`creating segment ${nextFirst} in ${this.dir}`, err, { file: this.dir });
    }
    this.retireTail();
    this.tailHandle = handle;
    if (this.spareAlwaysReady) this.spare?.prepare();
    this.segmentStates.push({
      file: path.join(this.dir, path.basename(handle.path)),
      firstIndex: nextFirst,
      offsets: [],
      endOffset: SEGMENT_HEADER_BYTES,
    });
  }

  private preallocateBytes(): number {
    return this.preallocate ? this.segmentBytes : 0;
  }

  /**
   * A durable, empty segment starting at `firstIndex`: the spare when one is ready (a header
   * write, an fdatasync, a rename), else created and preallocated here, synchronously.
   */
  private newSegmentFile(firstIndex: number): FileHandle {
    if (this.spare?.ready) return this.spare.take(firstIndex);
    return createSegmentFile(this.fs, this.dir, firstIndex, this.preallocateBytes());
  }

  /** A background step (spare preparation) failed: latch, as for any failed write or fsync. */
  private latchInBackground(err: CairnError): void {
    this.rejectWaiters(this.latch.latch(err));
  }

  /** Closes the tail handle, after any fsync still running on it. */
  private retireTail(): void {
    const handle = this.tailHandle;
    this.tailHandle = undefined;
    if (!handle) return;
    if (this.roundInFlight) void this.roundInFlight.finally(() => handle.close());
    else handle.close();
  }

  private dropPendingFrom(index: number): void {
    const keep = Math.max(0, index - this.writtenNext);
    const live = this.pending.slice(this.pendingHead, this.pendingHead + keep);
    this.pending = live;
    this.pendingHead = 0;
    this.pendingBytes = live.reduce((sum, f) => sum + f.byteLength, 0);
  }

  private clampWaiters(limit: number): void {
    for (const w of this.waiters) if (w.target > limit) w.target = limit;
  }

  private resolveWaiters(): void {
    if (this.waiters.length === 0) return;
    const reached = this.durability.mode === 'none' ? this.writtenNext : this.durable;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.target <= reached) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
    if (still.length > 0) this.requestFlush();
  }

  private rejectWaiters(err: unknown): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }

  /** Runs a mutation; any failure latches the log (the on-disk state is no longer known). */
  private guarded(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      const latched = this.latch.latch(err instanceof CairnError ? err : ioFatal(`${what} ${this.dir}`, err));
      this.rejectWaiters(latched);
      throw latched;
    }
  }

  private segmentFor(index: number): SegmentState {
    const segs = this.segmentStates;
    let lo = 0;
    let hi = segs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (segs[mid]!.firstIndex <= index) lo = mid;
      else hi = mid - 1;
    }
    return segs[lo]!;
  }

  private handleFor(seg: SegmentState): FileHandle {
    if (this.tailHandle && seg === this.segmentStates.at(-1)) return this.tailHandle;
    let handle = this.readHandles.get(seg.file);
    if (handle) {
      // Refresh its position in the LRU order.
      this.readHandles.delete(seg.file);
      this.readHandles.set(seg.file, handle);
      return handle;
    }
    try {
      handle = this.fs.open(seg.file, { readOnly: true });
    } catch (err) {
      throw ioFatal(`opening ${seg.file}`, err, { file: seg.file });
    }
    this.readHandles.set(seg.file, handle);
    if (this.readHandles.size > READ_HANDLE_CACHE) {
      const [oldestFile, oldest] = this.readHandles.entries().next().value as [string, FileHandle];
      this.readHandles.delete(oldestFile);
      oldest.close();
    }
    return handle;
  }

  private dropReadHandle(file: string): void {
    const handle = this.readHandles.get(file);
    if (handle) {
      this.readHandles.delete(file);
      handle.close();
    }
  }

  private startTimer(intervalMs: number): void {
    this.timer = setInterval(() => {
      if (this.latch.error !== undefined || this.closed) return;
      if (this.pendingCount() > 0 || this.unsyncedWrites) this.requestFlush();
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

interface ResolvedOptions {
  segmentBytes: number;
  maxRecordBytes: number;
  durability: Durability;
  preallocate: boolean;
  initialIndex: number;
  readOnly: boolean;
  warn: (message: string, details: Record<string, unknown>) => void;
  spareSegment: 'at-half-full' | 'always-ready';
}

function resolveOptions(options: WalOptions): ResolvedOptions {
  if (typeof options.dir !== 'string' || options.dir === '') {
    throw new CairnError('INVALID_ARGUMENT', 'WAL options.dir must be a non-empty path');
  }
  const segmentBytes = options.segmentBytes ?? WAL_DEFAULT_SEGMENT_BYTES;
  assertPositiveInt(segmentBytes, 'segmentBytes');
  const minSegment = SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES;
  if (segmentBytes < minSegment) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `segmentBytes must be at least ${minSegment}, got ${segmentBytes}`,
    );
  }
  const maxRecordBytes = options.maxRecordBytes ?? WAL_DEFAULT_MAX_RECORD_BYTES;
  assertPositiveInt(maxRecordBytes, 'maxRecordBytes');
  if (maxRecordBytes > 0xffff_ffff) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `maxRecordBytes must fit the u32 length field, got ${maxRecordBytes}`,
    );
  }
  const durability = options.durability ?? { mode: 'on-request' };
  if (durability.mode === 'interval') assertPositiveInt(durability.intervalMs, 'durability.intervalMs');
  else if (durability.mode !== 'on-request' && durability.mode !== 'none') {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `unknown durability mode ${String((durability as Durability).mode)}`,
    );
  }
  const initialIndex = options.initialIndex ?? 0;
  assertIndex(initialIndex, 'initialIndex');
  const spareSegment = options.spareSegment ?? 'at-half-full';
  if (spareSegment !== 'at-half-full' && spareSegment !== 'always-ready') {
    throw new CairnError('INVALID_ARGUMENT', `unknown spareSegment mode ${String(spareSegment)}`);
  }
  return {
    segmentBytes,
    maxRecordBytes,
    durability,
    preallocate: options.preallocate ?? true,
    initialIndex,
    readOnly: options.readOnly ?? false,
    warn: options.onWarning ?? (() => {}),
    spareSegment,
  };
}
