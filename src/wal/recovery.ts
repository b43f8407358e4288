import * as path from 'node:path';
import type { FileHandle, FileSystem } from '../io/fileSystem.ts';
import { mkdirDurable, readAt } from '../io/fileSystem.ts';
import { invariant } from '../lib/assert.ts';
import { CairnError, errnoCode, ioFatal } from '../lib/errors.ts';
import { CURRENT_FRAME_FORMAT, type FrameFormat } from './frame.ts';
import { type MetaState, openWalMeta, type WalMeta } from './meta.ts';
import {
  createSegmentFileAsync,
  decodeSegmentHeader,
  drawSegmentSalt,
  findIntactFramesAfter,
  hasNonZeroBytes,
  type IntactFramesAfter,
  listSegments,
  replaceEmptySegmentAsync,
  SEGMENT_HEADER_BYTES,
  SEGMENT_REPLACEMENT_SUFFIX,
  scanSegment,
  segmentFileName,
} from './segmentFile.ts';
import { type SegmentState, segmentNextIndex } from './segmentTable.ts';
import { SPARE_SEGMENT_NAME } from './spareSegment.ts';

export { type SegmentState, segmentNextIndex } from './segmentTable.ts';

export interface TornTail {
  file: string;
  offset: number;
  reason: string;
}

export interface RecoveredLog {
  meta: WalMeta;
  /** Non-empty unless the log is read-only and has no segment at all. The last one is the tail. */
  segments: SegmentState[];
  firstIndex: number;
  nextIndex: number;
  /** A torn tail found at open: repaired unless read-only. */
  tornTail: TornTail | undefined;
  /** Records below this are known durable (the meta's durable marker, or what recovery synced). */
  durableNext: number;
  /** The log was closed cleanly and nothing was written since (its clean marker checked out). */
  cleanOpen: boolean;
  /** A fully zeroed, fsynced spare kept by a clean close, for the log to adopt. */
  keptSpare: string | undefined;
}

export interface RecoveryOptions {
  fs: FileSystem;
  dir: string;
  segmentBytes: number;
  preallocate: boolean;
  initialIndex: number;
  readOnly: boolean;
  warn: (message: string, details: Record<string, unknown>) => void;
}

function corrupt(
  file: string,
  offset: number,
  message: string,
  extra: Record<string, unknown> = {},
): CairnError {
  return new CairnError('WAL_CORRUPT', `${file} at offset ${offset}: ${message}`, {
    details: { file, offset, ...extra },
  });
}

/**
 * Opens the log directory: loads the durable first index, validates every segment still in use,
 * repairs a torn tail physically and removes leftovers of interrupted truncations. Corruption in
 * sealed data (bad frame, gap, overlap, bad header) fails with WAL_CORRUPT naming file and offset.
 * Async only because creating a fresh segment preallocates it between event-loop turns.
 */
export async function recoverLog(options: RecoveryOptions): Promise<RecoveredLog> {
  const { fs, dir, readOnly } = options;
  if (readOnly) {
    if (!fs.exists(dir))
      throw new CairnError('NOT_FOUND', `WAL directory ${dir} does not exist`, { details: { file: dir } });
  } else {
    mkdirDurable(fs, dir, path);
  }
  const meta = openWalMeta(fs, dir, readOnly);
  try {
    for (const w of meta.warnings) options.warn(w, { file: path.join(dir, 'wal.meta') });
    return await recoverSegments(options, meta);
  } catch (err) {
    meta.close();
    throw err;
  }
}

async function recoverSegments(options: RecoveryOptions, meta: WalMeta): Promise<RecoveredLog> {
  const { fs, dir, readOnly, warn } = options;
  const listed = listSegments(fs, dir).map((s) => ({ ...s, file: path.join(dir, s.name) }));
  const toDelete: string[] = [];
  const state: MetaState | undefined = meta.state;
  // Records [firstIndex, durableNext) were acknowledged; a marker at or below the first index
  // (a reset, a fresh log) requires nothing.
  const durableFloor = state !== undefined && state.durableNext > state.firstIndex ? state.durableNext : 0;
  // 0. A spare segment left by a crash: its unsynced bytes may be anything. Never data. One kept by
  //    a clean close (zeros, fsynced) is adopted if the clean marker checks out (decided below).
  const spare = path.join(dir, SPARE_SEGMENT_NAME);
  const spareExists = !readOnly && fs.exists(spare);
  // A replacement of an empty old-format tail interrupted before its rename (replaceEmptySegment):
  // the segment it was to replace is still there, so this is scratch.
  if (!readOnly) {
    for (const name of fs.readdir(dir)) {
      if (name.endsWith(SEGMENT_REPLACEMENT_SUFFIX)) toDelete.push(path.join(dir, name));
    }
  }

  // 1. A last segment whose header never became durable is an interrupted creation, not corruption:
  //    creation writes and syncs the header before any record goes in, so nothing else is lost.
  const last = listed.at(-1);
  if (last && isTornCreation(fs, last.file)) {
    warn('removing a segment whose creation was interrupted (torn header, no data)', { file: last.file });
    toDelete.push(last.file);
    listed.pop();
  }

  // 2. Segments wholly below the durable first index are leftovers of an interrupted front
  //    truncation or reset (the first index is written before any deletion). The last segment is
  //    never dropped here: it is the only one whose range is open-ended.
  const durableFirst = meta.firstIndex;
  while (durableFirst !== undefined && listed.length >= 2 && listed[1]!.firstIndex <= durableFirst) {
    toDelete.push(listed.shift()!.file);
  }

  if (listed.length === 0 && durableFirst !== undefined) {
    throw corrupt(dir, 0, `WAL meta holds first index ${durableFirst} but no segment file exists`, {
      firstIndex: durableFirst,
    });
  }

  // 3. Scan what remains; only the last segment may end in a torn frame.
  const segments: SegmentState[] = [];
  let tornTail: TornTail | undefined;
  let cleanOpen = false;
  for (let i = 0; i < listed.length; i++) {
    const entry = listed[i]!;
    const isLast = i === listed.length - 1;
    const scanned = scanOne(fs, entry.file, entry.firstIndex);
    const prev = segments.at(-1);
    if (prev) {
      const prevNext = prev.firstIndex + prev.offsets.length;
      if (prevNext < entry.firstIndex) {
        throw corrupt(
          prev.file,
          prev.endOffset,
          `segment ends before index ${prevNext} but the next segment ${entry.file} starts at ${entry.firstIndex}: ` +
            `records ${prevNext}..${entry.firstIndex - 1} are missing`,
          { expectedIndex: prevNext, nextSegmentFirst: entry.firstIndex },
        );
      }
      if (prevNext > entry.firstIndex) {
        throw corrupt(
          entry.file,
          0,
          `segment starts at index ${entry.firstIndex} but the previous segment already holds records up to ${prevNext - 1}`,
          { previousFile: prev.file },
        );
      }
    }
    const segNext = entry.firstIndex + scanned.offsets.length;
    if (scanned.defect) {
      if (!isLast) throw corrupt(entry.file, scanned.defect.offset, scanned.defect.reason);
      const damagedIndex = segNext;
      if (damagedIndex < durableFloor) {
        throw corrupt(
          entry.file,
          scanned.defect.offset,
          `${scanned.defect.reason} in record ${damagedIndex}, below the durable marker ${durableFloor}: ` +
            'damage to acknowledged data, not a torn write',
          { index: damagedIndex, durableNext: durableFloor },
        );
      }
      const defect = scanned.defect;
      const later = withHandle(fs, entry.file, (h) =>
        laterIntactFrames(h, entry.firstIndex, scanned, defect.offset + 1, damagedIndex + 1, damagedIndex),
      );
      const proof = damageToSyncedData(scanned.format, damagedIndex, later, state?.cutNext);
      if (proof !== undefined) {
        throw corrupt(
          entry.file,
          defect.offset,
          `${defect.reason} in record ${damagedIndex}, but ${proof}: damaged data, not a torn write`,
          { index: damagedIndex },
        );
      }
      tornTail = {
        file: entry.file,
        offset: defect.offset,
        reason: defect.reason + droppedNote(later.count),
      };
    } else if (isLast) {
      if (segNext < durableFloor) {
        // Data ends (zeros, or the end of the file) before records known to be durable.
        throw corrupt(
          entry.file,
          scanned.endOffset,
          `data ends before record ${segNext}, below the durable marker ${durableFloor}: ` +
            `acknowledged records ${segNext}..${durableFloor - 1} are missing or zeroed`,
          { index: segNext, durableNext: durableFloor },
        );
      }
      // A clean close recorded where the data ended; if the log still ends exactly there, nothing
      // was written since (a writable open clears the marker before its first write), so the
      // preallocated zeros after it need not be read.
      cleanOpen =
        state?.clean !== undefined &&
        state.clean.tailEndOffset === scanned.endOffset &&
        segNext === state.durableNext;
      if (!cleanOpen && scanned.fileBytes > scanned.endOffset) {
        // Bytes past the end of data come from writes that were not synced (page writes land out of
        // order), or from damage that zeroed a frame header in front of records that are still
        // there. An intact frame after the end is the second: loud. Otherwise erase the bytes, or
        // a stale frame could reappear after later appends.
        const from = scanned.endOffset;
        const later = withHandle(fs, entry.file, (h) =>
          hasNonZeroBytes(h, from, scanned.fileBytes)
            ? laterIntactFrames(h, entry.firstIndex, scanned, from, segNext, segNext)
            : undefined,
        );
        const proof =
          later === undefined
            ? undefined
            : damageToSyncedData(scanned.format, segNext, later, state?.cutNext);
        if (proof !== undefined) {
          throw corrupt(
            entry.file,
            from,
            `data ends at record ${segNext} (a zeroed frame header), but ${proof}: damaged data, not the end ` +
              'of the log',
            { index: segNext },
          );
        }
        if (later !== undefined) {
          tornTail = {
            file: entry.file,
            offset: from,
            reason: `non-zero bytes after the end of data${droppedNote(later.count)}`,
          };
        }
      }
    }
    segments.push({
      file: entry.file,
      firstIndex: entry.firstIndex,
      offsets: scanned.offsets,
      endOffset: scanned.endOffset,
      format: scanned.format,
      salt: scanned.salt,
    });
  }

  if (tornTail) {
    warn(`torn tail ${readOnly ? 'found (not repaired: read-only)' : 'truncated'}: ${tornTail.reason}`, {
      file: tornTail.file,
      offset: tornTail.offset,
    });
  }

  const firstIndex = durableFirst ?? segments[0]?.firstIndex ?? options.initialIndex;
  const head = segments[0];
  if (head && head.firstIndex > firstIndex) {
    throw corrupt(
      head.file,
      0,
      `the log's first index is ${firstIndex} but its oldest segment starts at ${head.firstIndex}: ` +
        `records ${firstIndex}..${head.firstIndex - 1} are missing`,
      { firstIndex },
    );
  }
  const tail = segments.at(-1);
  let nextIndex = tail ? segmentNextIndex(tail) : firstIndex;

  const keepSpare =
    spareExists &&
    cleanOpen &&
    state?.clean?.spareKept === true &&
    options.preallocate &&
    fileSize(fs, spare) === options.segmentBytes;
  if (spareExists && !keepSpare) toDelete.push(spare);

  if (readOnly) {
    if (nextIndex < firstIndex) nextIndex = firstIndex;
    return {
      meta,
      segments,
      firstIndex,
      nextIndex,
      tornTail,
      durableNext: Math.max(durableFloor, firstIndex),
      cleanOpen,
      keptSpare: undefined,
    };
  }

  // 4. Repairs, each safe at any crash point: the durable first index already covers them.
  try {
    if (toDelete.length > 0) {
      // The segment that carries the log on must be durable before anything older goes: one created
      // by a process killed before its fsync (header and directory entry still unsynced) would
      // otherwise vanish in a power cut after its predecessors' unlinks, leaving the durable first
      // index with no segment at all.
      const survivor = segments.at(-1);
      if (survivor !== undefined && fs.exists(survivor.file)) {
        const handle = fs.open(survivor.file);
        try {
          handle.sync();
        } finally {
          handle.close();
        }
        fs.syncDir(dir);
      }
      for (const file of toDelete) unlinkIfPresent(fs, file);
      fs.syncDir(dir);
    }
    if (tornTail && tail) repairTail(fs, tail, options);
    if (nextIndex < firstIndex || segments.length === 0) {
      // The log is empty at `firstIndex` and no segment continues there (fresh log, or records
      // between the old end and the durable first index were never synced). Start a segment at
      // that index so later appends stay contiguous inside their segment, then drop the old ones.
      const salt = drawSegmentSalt();
      const created = await createSegmentFileAsync(
        fs,
        dir,
        firstIndex,
        options.preallocate ? options.segmentBytes : 0,
        salt,
      );
      created.close();
      if (durableFirst === undefined)
        await meta.writeAsync({ firstIndex, durableNext: firstIndex, clean: undefined });
      if (segments.length > 0) {
        for (const s of segments) unlinkIfPresent(fs, s.file);
        fs.syncDir(dir);
      }
      segments.length = 0;
      segments.push({
        file: path.join(dir, segmentFileName(firstIndex)),
        firstIndex,
        offsets: [],
        endOffset: SEGMENT_HEADER_BYTES,
        format: CURRENT_FRAME_FORMAT,
        salt,
      });
      nextIndex = firstIndex;
    }
    // What recovery read may have come from the page cache of a process killed before its fsync.
    // Callers treat recovered records as durable (votes, published QCs), so make them so first. Only
    // the tail can hold unsynced data: a segment is fsynced before its successor is created.
    const tailSegment = segments[segments.length - 1];
    if (!readOnly && tailSegment !== undefined && fs.exists(tailSegment.file)) {
      const handle = fs.open(tailSegment.file);
      try {
        handle.sync();
      } finally {
        handle.close();
      }
    }
    // A tail written by an earlier build (frame format 1 or 2) is sealed here, now that it is
    // fsynced, and records go to a new version-3 segment: version-1 frames carry no syncedNext, so a
    // power cut in records appended to that tail would meet the old rule, which refuses an ordinary
    // torn tail whose pages reached the disk out of order; version-2 frames carry no salt, so a frame
    // forged inside a torn record's payload would pass as proof of damage to synced data. An empty
    // old tail has nothing to seal: it is replaced in place by a version-3 segment of the same name
    // (otherwise its first frames, possibly a whole segment of them, would follow its format).
    const last = segments[segments.length - 1];
    if (last !== undefined && last.format !== CURRENT_FRAME_FORMAT && last.offsets.length === 0) {
      const salt = drawSegmentSalt();
      await replaceEmptySegmentAsync(
        fs,
        dir,
        last.firstIndex,
        options.preallocate ? options.segmentBytes : 0,
        salt,
      );
      last.format = CURRENT_FRAME_FORMAT;
      last.salt = salt;
      last.endOffset = SEGMENT_HEADER_BYTES;
    }
    if (last !== undefined && last.format !== CURRENT_FRAME_FORMAT && last.offsets.length > 0) {
      const salt = drawSegmentSalt();
      const created = await createSegmentFileAsync(
        fs,
        dir,
        nextIndex,
        options.preallocate ? options.segmentBytes : 0,
        salt,
      );
      created.close();
      segments.push({
        file: path.join(dir, segmentFileName(nextIndex)),
        firstIndex: nextIndex,
        offsets: [],
        endOffset: SEGMENT_HEADER_BYTES,
        format: CURRENT_FRAME_FORMAT,
        salt,
      });
    }
  } catch (err) {
    if (err instanceof CairnError) throw err;
    throw ioFatal(`repairing WAL ${dir}`, err, { file: dir });
  }
  invariant(nextIndex >= firstIndex, 'recovery yields a log range [first, next)');
  invariant(nextIndex >= durableFloor || firstIndex > durableFloor, 'recovery keeps every durable record');
  return {
    meta,
    segments,
    firstIndex,
    nextIndex,
    tornTail,
    durableNext: nextIndex,
    cleanOpen: cleanOpen && tornTail === undefined,
    keptSpare: keepSpare ? spare : undefined,
  };
}

/** Size of `file`, -1 if it is gone; any other failure is an I/O error (never a silent "no"). */
function fileSize(fs: FileSystem, file: string): number {
  try {
    return fs.stat(file).size;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return -1;
    throw ioFatal(`stat of ${file}`, err, { file });
  }
}

function scanOne(
  fs: FileSystem,
  file: string,
  nameIndex: number,
): {
  offsets: number[];
  endOffset: number;
  fileBytes: number;
  format: FrameFormat;
  salt: number;
  defect: { offset: number; reason: string } | undefined;
} {
  return withHandle(fs, file, (handle) => {
    const fileBytes = handle.size();
    const header = decodeSegmentHeader(readAt(handle, 0, SEGMENT_HEADER_BYTES));
    if ('problem' in header) throw corrupt(file, 0, `bad segment header: ${header.problem}`);
    if (header.firstIndex !== nameIndex) {
      throw corrupt(
        file,
        16,
        `header says first index ${header.firstIndex} but the file name says ${nameIndex}`,
      );
    }
    return {
      ...scanSegment(handle, nameIndex, fileBytes, header),
      fileBytes,
      format: header.format,
      salt: header.salt,
    };
  });
}

/**
 * Intact frames carrying index `minIndex` or above, from byte `from` of the tail segment on. The
 * search stops early once one proves that record `damagedIndex` was fsynced.
 */
function laterIntactFrames(
  handle: FileHandle,
  segmentFirstIndex: number,
  scanned: { fileBytes: number; format: FrameFormat; salt: number },
  from: number,
  minIndex: number,
  damagedIndex: number,
): IntactFramesAfter {
  return findIntactFramesAfter(handle, {
    from,
    minIndex,
    fileBytes: scanned.fileBytes,
    segmentFirstIndex,
    format: scanned.format,
    salt: scanned.salt,
    stopAboveSyncedNext: damagedIndex,
  });
}

/**
 * The torn-tail-or-corruption decision for damage to record `damagedIndex` (at or above the durable
 * marker) in the tail segment, given the intact frames found after it. Returns why it is damage to
 * synced data, or undefined for a torn tail.
 *
 * Versions 2 and 3: a frame records `syncedNext`, the index below which every record had been
 * fsynced when the frame was written (and in version 3 only a frame sealed with the segment's salt
 * is intact: bytes inside a payload cannot pose as one). If an intact later frame has syncedNext > damagedIndex, an fsync covering
 * the damaged record completed before that frame was written: the damage hit synced data. Otherwise
 * every intact later frame was written before any fsync covered the damaged record, so none of them
 * was acknowledged either (an acknowledged one would need that fsync): they are part of the torn,
 * unsynced tail that page writeback persisted out of order, and go with it.
 *
 * Version 1 frames carry no such index: any intact later frame counts as proof (the old rule, which
 * can refuse a log whose unsynced pages reached the disk out of order).
 */
export function damageToSyncedData(
  format: FrameFormat,
  damagedIndex: number,
  later: IntactFramesAfter,
  cutNext?: number,
): string | undefined {
  // A truncateBack to cutNext was started (meta CUT): frames at or above it may be stale copies that
  // survived the cut in any subset of pages, so nothing past the cut proves an fsync of the log as it is.
  if (cutNext !== undefined && damagedIndex >= cutNext) return undefined;
  if (format === 1) {
    const first = later.first;
    return first === undefined
      ? undefined
      : `record ${first.index} at offset ${first.offset} after it is intact`;
  }
  const highest = later.highest;
  if (highest === undefined || highest.syncedNext <= damagedIndex) return undefined;
  return (
    `record ${highest.index} at offset ${highest.offset} after it is intact and was written after records ` +
    `below ${highest.syncedNext} were fsynced`
  );
}

function droppedNote(intactFramesDropped: number): string {
  return intactFramesDropped === 0
    ? ''
    : ` (${intactFramesDropped} intact later frame(s) written before any fsync covered it are dropped with it)`;
}

/** A segment whose header is invalid and which holds nothing but zeros after it. */
function isTornCreation(fs: FileSystem, file: string): boolean {
  return withHandle(fs, file, (handle) => {
    const size = handle.size();
    const header = decodeSegmentHeader(readAt(handle, 0, SEGMENT_HEADER_BYTES));
    if (!('problem' in header)) return false;
    return size <= SEGMENT_HEADER_BYTES || !hasNonZeroBytes(handle, SEGMENT_HEADER_BYTES, size);
  });
}

function repairTail(fs: FileSystem, tail: SegmentState, options: RecoveryOptions): void {
  const handle = fs.open(tail.file);
  try {
    handle.truncate(tail.endOffset);
    if (options.preallocate && tail.endOffset < options.segmentBytes) handle.allocate(options.segmentBytes);
    handle.sync();
  } finally {
    handle.close();
  }
}

function unlinkIfPresent(fs: FileSystem, file: string): void {
  try {
    fs.unlink(file);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}

function withHandle<T>(fs: FileSystem, file: string, fn: (handle: ReturnType<FileSystem['open']>) => T): T {
  let handle: ReturnType<FileSystem['open']>;
  try {
    handle = fs.open(file, { readOnly: true });
  } catch (err) {
    throw ioFatal(`opening ${file}`, err, { file });
  }
  try {
    return fn(handle);
  } catch (err) {
    if (err instanceof CairnError) throw err;
    throw ioFatal(`reading ${file}`, err, { file });
  } finally {
    handle.close();
  }
}
