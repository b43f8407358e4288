import * as path from 'node:path';
import type { FileSystem } from '../io/fileSystem.ts';
import { mkdirDurable, readAt } from '../io/fileSystem.ts';
import { CairnError, errnoCode, ioFatal } from '../lib/errors.ts';
import { openWalMeta, type WalMeta } from './meta.ts';
import {
  createSegmentFileAsync,
  decodeSegmentHeader,
  findIntactFrameAfter,
  hasNonZeroBytes,
  listSegments,
  SEGMENT_HEADER_BYTES,
  scanSegment,
  segmentFileName,
} from './segmentFile.ts';
import { SPARE_SEGMENT_NAME } from './spareSegment.ts';

/** What the log knows about one segment file after recovery. */
export interface SegmentState {
  /** Full path. */
  file: string;
  firstIndex: number;
  /** Byte offset of each record's frame: offsets[i] holds record firstIndex + i. */
  offsets: number[];
  /** Offset just after the last frame (where the next frame goes in the tail). */
  endOffset: number;
}

export function segmentNextIndex(seg: SegmentState): number {
  return seg.firstIndex + seg.offsets.length;
}

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
  // 0. A spare segment left by a crash or a close: its unsynced bytes may be anything. Never data.
  const spare = path.join(dir, SPARE_SEGMENT_NAME);
  if (!readOnly && fs.exists(spare)) toDelete.push(spare);

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
    if (scanned.defect) {
      if (!isLast) throw corrupt(entry.file, scanned.defect.offset, scanned.defect.reason);
      const damagedIndex = entry.firstIndex + scanned.offsets.length;
      const later = withHandle(fs, entry.file, (h) =>
        findIntactFrameAfter(h, scanned.defect!.offset, damagedIndex, scanned.fileBytes),
      );
      if (later) {
        throw corrupt(
          entry.file,
          scanned.defect.offset,
          `${scanned.defect.reason} in record ${damagedIndex}, but record ${later.index} at offset ${later.offset} ` +
            'after it is intact: damaged data, not a torn write',
          { index: damagedIndex },
        );
      }
      tornTail = { file: entry.file, offset: scanned.defect.offset, reason: scanned.defect.reason };
    } else if (isLast && scanned.fileBytes > scanned.endOffset) {
      // Bytes past the end of data can only come from a write that was not synced (page writes can
      // land out of order). Erase them, or a stale frame could reappear after later appends.
      if (withHandle(fs, entry.file, (h) => hasNonZeroBytes(h, scanned.endOffset, scanned.fileBytes))) {
        tornTail = {
          file: entry.file,
          offset: scanned.endOffset,
          reason: 'non-zero bytes after the end of data',
        };
      }
    }
    segments.push({
      file: entry.file,
      firstIndex: entry.firstIndex,
      offsets: scanned.offsets,
      endOffset: scanned.endOffset,
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

  if (readOnly) {
    if (nextIndex < firstIndex) nextIndex = firstIndex;
    return { meta, segments, firstIndex, nextIndex, tornTail };
  }

  // 4. Repairs, each safe at any crash point: the durable first index already covers them.
  try {
    if (toDelete.length > 0) {
      for (const file of toDelete) unlinkIfPresent(fs, file);
      fs.syncDir(dir);
    }
    if (tornTail && tail) repairTail(fs, tail, options);
    if (nextIndex < firstIndex || segments.length === 0) {
      // The log is empty at `firstIndex` and no segment continues there (fresh log, or records
      // between the old end and the durable first index were never synced). Start a segment at
      // that index so later appends stay contiguous inside their segment, then drop the old ones.
      const created = await createSegmentFileAsync(
        fs,
        dir,
        firstIndex,
        options.preallocate ? options.segmentBytes : 0,
      );
      created.close();
      if (durableFirst === undefined) meta.write(firstIndex);
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
  } catch (err) {
    if (err instanceof CairnError) throw err;
    throw ioFatal(`repairing WAL ${dir}`, err, { file: dir });
  }
  return { meta, segments, firstIndex, nextIndex, tornTail };
}

function scanOne(
  fs: FileSystem,
  file: string,
  nameIndex: number,
): {
  offsets: number[];
  endOffset: number;
  fileBytes: number;
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
    return { ...scanSegment(handle, nameIndex, fileBytes), fileBytes };
  });
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
