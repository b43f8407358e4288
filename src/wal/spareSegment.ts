import * as path from 'node:path';
import type { FileHandle, FileSystem } from '../io/fileSystem.ts';
import { writeFully } from '../io/fileSystem.ts';
import { type CairnError, ioFatal } from '../lib/errors.ts';
import {
  allocateInSlices,
  encodeSegmentHeader,
  SEGMENT_FORMAT_VERSION,
  segmentFileName,
} from './segmentFile.ts';
import { runZeroFillSlice } from './zeroFillGate.ts';

/**
 * Slice of a paced preparation: written, then fsynced on the thread pool before the next one, so
 * the disk never holds more than this much of the spare's dirty data. A device cache flush (any
 * file's fsync) waits for the writes queued before it; with big unflushed slices every other
 * log's fsync would wait for megabytes of zeros.
 */
const PACED_SLICE_BYTES = 256 * 1024;

/**
 * Name of the spare segment: a preallocated, fsynced file of zeros waiting to become the next
 * segment. It does not match the segment name pattern, so recovery never reads it as log data;
 * a leftover of a crash is deleted at open, because its unsynced bytes cannot be trusted. One kept by
 * a clean close (recorded in the WAL meta) is adopted by the next open.
 */
export const SPARE_SEGMENT_NAME = 'next-segment.spare';

/**
 * Prepares the next segment ahead of time so that sealing a full segment does not write and
 * fsync MiBs of zeros on the commit path. Preparation runs in the background, one slice of zeros
 * per event-loop turn, with the fsync on the thread pool. Taking the spare costs a 32-byte header
 * write, one fdatasync of an already allocated file, a rename and a directory fsync.
 *
 * Crash safety of `take`: the header is durable before the rename, and the rename is durable
 * (directory fsync) before the caller writes any record to the new segment. A crash before the
 * rename leaves only the spare (deleted at open); after it, a valid empty segment.
 *
 * A failure while preparing is reported through `onFailure` (the log latches: it never trusts a
 * file system that failed a write or an fsync); no record is at risk, since the spare holds none.
 */
export class SpareSegment {
  private handle: FileHandle | undefined;
  private preparing: Promise<void> | undefined;
  private disposed = false;
  private readonly file: string;

  constructor(
    private readonly fs: FileSystem,
    private readonly dir: string,
    private readonly bytes: number,
    private readonly onFailure: (err: CairnError) => void,
    /** 'fast': 1 MiB per event-loop turn, one fsync at the end. 'paced': see PACED_SLICE_BYTES. */
    private readonly pace: 'fast' | 'paced' = 'fast',
  ) {
    this.file = path.join(dir, SPARE_SEGMENT_NAME);
  }

  /** True when a spare is allocated and durable, ready for `take`. */
  get ready(): boolean {
    return this.handle !== undefined;
  }

  /** Settles when the preparation under way ends (ready, abandoned or failed); undefined if none. */
  get inProgress(): Promise<void> | undefined {
    return this.preparing;
  }

  /** Starts preparing a spare in the background, unless one is ready or already on its way. */
  prepare(): void {
    if (this.disposed || this.handle !== undefined || this.preparing !== undefined) return;
    this.preparing = this.build().finally(() => {
      this.preparing = undefined;
    });
  }

  private async build(): Promise<void> {
    let handle: FileHandle | undefined;
    try {
      handle = this.fs.open(this.file, { create: true, exclusive: true });
      const complete =
        this.pace === 'paced'
          ? await allocateFlushedSlices(handle, this.bytes, () => this.disposed)
          : await allocateInSlices(handle, this.bytes, () => this.disposed);
      // (A paced preparation already flushed its last slice.)
      if (complete && !this.disposed && this.pace === 'fast') await handle.syncAsync();
      if (!complete || this.disposed) {
        const abandoned = handle;
        handle = undefined;
        abandoned.close();
        this.fs.unlink(this.file);
        return;
      }
      this.handle = handle;
    } catch (err) {
      handle?.close();
      // Reported even while closing: a failed call is never swallowed (the log latches on it).
      this.onFailure(ioFatal(`preparing spare segment ${this.file}`, err, { file: this.file }));
    }
  }

  /**
   * Turns the ready spare into segment `firstIndex` with CRC seed `salt` (durably, see the class
   * comment) and returns a handle on it opened by its new name. The caller must have checked
   * `ready`. The header, and so the salt, is written only now: a spare kept across a clean close
   * and adopted gets a fresh salt like any other.
   */
  take(firstIndex: number, salt: number): FileHandle {
    const spare = this.handle!;
    this.handle = undefined;
    const target = path.join(this.dir, segmentFileName(firstIndex));
    try {
      writeFully(spare, [encodeSegmentHeader(firstIndex, SEGMENT_FORMAT_VERSION, salt)], 0);
      spare.sync();
    } finally {
      spare.close();
    }
    this.fs.rename(this.file, target);
    this.fs.syncDir(this.dir);
    return this.fs.open(target);
  }

  /**
   * Takes over a spare kept by a clean close (recovery checked the clean marker and the size): its
   * zeros were fsynced before it was ever reported ready, so it is ready at once.
   */
  adopt(): void {
    if (this.disposed || this.handle !== undefined || this.preparing !== undefined) return;
    try {
      this.handle = this.fs.open(this.file);
    } catch (err) {
      this.onFailure(ioFatal(`opening kept spare segment ${this.file}`, err, { file: this.file }));
    }
  }

  /**
   * Stops any preparation. A ready spare is kept on disk when `keep` (a clean close records it, and
   * the next open adopts it instead of writing a segment of zeros again) and removed otherwise.
   * Returns whether a spare was kept. Failures go to `onFailure` like any other. (The unlink need
   * not be durable: open deletes a spare it does not adopt.)
   */
  async dispose(keep = false): Promise<boolean> {
    this.disposed = true;
    while (this.preparing) await this.preparing;
    const handle = this.handle;
    if (handle === undefined) return false;
    this.handle = undefined;
    try {
      handle.close();
      if (keep) return true;
      this.fs.unlink(this.file);
    } catch (err) {
      this.onFailure(ioFatal(`removing spare segment ${this.file}`, err, { file: this.file }));
    }
    return false;
  }
}

/**
 * Zeros up to `length`, PACED_SLICE_BYTES at a time, each slice fsynced on the thread pool, one
 * slice at a time across every log of the process (zeroFillGate).
 */
async function allocateFlushedSlices(
  handle: FileHandle,
  length: number,
  stopped: () => boolean,
): Promise<boolean> {
  let size = handle.size();
  while (size < length) {
    if (stopped()) return false;
    const target = Math.min(length, size + PACED_SLICE_BYTES);
    await runZeroFillSlice(async () => {
      handle.allocate(target);
      await handle.syncAsync();
    });
    size = target;
  }
  return true;
}
