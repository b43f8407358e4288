import * as path from 'node:path';
import type { FileSystem } from '../io/fileSystem.ts';
import { readAt, syncDirChain, writeFully } from '../io/fileSystem.ts';
import { invariant } from '../lib/assert.ts';
import { CairnError, errnoCode, ioFatal } from '../lib/errors.ts';
import { openWalMeta } from './meta.ts';
import { damageToSyncedData } from './recovery.ts';
import {
  decodeSegmentHeader,
  findIntactFramesAfter,
  hasNonZeroBytes,
  type IntactFramesAfter,
  listSegments,
  SEGMENT_HEADER_BYTES,
  scanSegment,
} from './segmentFile.ts';

/**
 * The operator's way out of a WAL_CORRUPT whose damage lies past the last record known to be
 * acknowledged: cut the log at the first damaged record, after copying everything cut into a
 * `salvaged-<time>` directory beside the segments. Planning reads only; `applySalvage` acts.
 *
 * Refused when the cut would drop a record below the durable marker (records acknowledged to a
 * caller): that is data loss, and only a backup restores it.
 */
export interface SalvagePlan {
  dir: string;
  firstIndex: number;
  /** Records below this are known acknowledged (the meta's durable marker; 0 if unknown). */
  durableNext: number;
  /** Undefined when the log has no damage: nothing to do. */
  cut:
    | {
        /** The segment holding the first damaged record, and where that record starts. */
        file: string;
        offset: number;
        /** The first record cut; the log keeps [firstIndex, index). */
        index: number;
        reason: string;
        /** Intact frames found after the damage (evidence of what is being cut). */
        intactAfter: { index: number; offset: number } | undefined;
        /**
         * Why an intact later frame proves the damaged record was fsynced (a version-2/3 frame written
         * after an fsync that covered it), or undefined. A proven cut loses acknowledged records.
         */
        syncedProof: string | undefined;
        /** The whole file goes (its header is bad, or it does not continue the previous segment). */
        wholeFile: boolean;
        /** Whole segment files after `file`, cut as well. */
        laterSegments: string[];
        /** Bytes that will be copied aside. */
        bytesCut: number;
      }
    | undefined;
}

/** Reads the log and decides where a salvage would cut. Never writes. */
export function planSalvage(fs: FileSystem, dir: string): SalvagePlan {
  if (!fs.exists(dir))
    throw new CairnError('NOT_FOUND', `WAL directory ${dir} does not exist`, { details: { file: dir } });
  const meta = openWalMeta(fs, dir, true);
  const state = meta.state;
  meta.close();
  const firstIndex = state?.firstIndex ?? 0;
  const durableNext = state !== undefined && state.durableNext > state.firstIndex ? state.durableNext : 0;
  const listed = listSegments(fs, dir).map((s) => ({ ...s, file: path.join(dir, s.name) }));
  // Segments wholly below the first index are garbage recovery deletes anyway.
  while (listed.length >= 2 && listed[1]!.firstIndex <= firstIndex) listed.shift();
  let expected: number | undefined;
  for (let i = 0; i < listed.length; i++) {
    const entry = listed[i]!;
    const laterSegments = listed.slice(i + 1).map((s) => s.file);
    const handle = fs.open(entry.file, { readOnly: true });
    try {
      const fileBytes = handle.size();
      const later = laterSegments.reduce((sum, f) => sum + fs.stat(f).size, 0);
      const cutAt = (
        offset: number,
        index: number,
        reason: string,
        intactAfter?: { index: number; offset: number },
        syncedProof?: string,
      ) => ({
        file: entry.file,
        offset,
        index,
        reason,
        intactAfter,
        syncedProof,
        wholeFile: offset === 0,
        laterSegments,
        bytesCut: fileBytes - offset + later,
      });
      if (expected !== undefined && entry.firstIndex !== expected) {
        // A gap or overlap between segments: cut at the end of the previous segment's records.
        return {
          dir,
          firstIndex,
          durableNext,
          cut: cutAt(
            SEGMENT_HEADER_BYTES,
            entry.firstIndex,
            `segment starts at ${entry.firstIndex}, expected ${expected}`,
          ),
        };
      }
      const header = decodeSegmentHeader(readAt(handle, 0, SEGMENT_HEADER_BYTES));
      if ('problem' in header || header.firstIndex !== entry.firstIndex) {
        const reason =
          'problem' in header ? `bad segment header: ${header.problem}` : 'header and file name disagree';
        return { dir, firstIndex, durableNext, cut: cutAt(0, entry.firstIndex, reason) };
      }
      const scan = scanSegment(handle, entry.firstIndex, fileBytes, header);
      const next = entry.firstIndex + scan.offsets.length;
      const isLast = i === listed.length - 1;
      // The same search and decision as recovery's (recovery.ts). A version-1 frame proves nothing
      // about fsyncs (the old rule refuses on any intact later frame): that is what salvage is for.
      const proof = (found: IntactFramesAfter): string | undefined =>
        header.format !== 1 ? damageToSyncedData(header.format, next, found, state?.cutNext) : undefined;
      const laterFrames = (from: number, minIndex: number): IntactFramesAfter =>
        findIntactFramesAfter(handle, {
          from,
          minIndex,
          fileBytes,
          segmentFirstIndex: entry.firstIndex,
          format: header.format,
          salt: header.salt,
          stopAboveSyncedNext: next,
        });
      if (scan.defect) {
        const found = laterFrames(scan.defect.offset + 1, next + 1);
        return {
          dir,
          firstIndex,
          durableNext,
          cut: cutAt(
            scan.defect.offset,
            next,
            scan.defect.reason,
            found.first,
            isLast ? proof(found) : undefined,
          ),
        };
      }
      if (isLast && scan.endOffset < fileBytes && hasNonZeroBytes(handle, scan.endOffset, fileBytes)) {
        const found = laterFrames(scan.endOffset, next);
        if (found.first) {
          return {
            dir,
            firstIndex,
            durableNext,
            cut: cutAt(
              scan.endOffset,
              next,
              'zeroed frame header before intact records',
              found.first,
              proof(found),
            ),
          };
        }
      }
      expected = next;
    } finally {
      handle.close();
    }
  }
  return { dir, firstIndex, durableNext, cut: undefined };
}

/** Throws unless the plan's cut leaves every known-acknowledged record in place. */
export function checkSalvageable(plan: SalvagePlan): void {
  const cut = plan.cut;
  if (cut === undefined) return;
  const keptNext = Math.max(cut.index, plan.firstIndex);
  if (keptNext < plan.durableNext) {
    throw new CairnError(
      'WAL_CORRUPT',
      `${cut.file} at offset ${cut.offset}: the damage (${cut.reason}) is in record ${cut.index}, below the durable ` +
        `marker ${plan.durableNext}: records ${cut.index}..${plan.durableNext - 1} were acknowledged, and cutting ` +
        'them loses acknowledged data. Restore this log from a backup instead.',
      { details: { file: cut.file, offset: cut.offset, index: cut.index, durableNext: plan.durableNext } },
    );
  }
  if (cut.syncedProof !== undefined) {
    throw new CairnError(
      'WAL_CORRUPT',
      `${cut.file} at offset ${cut.offset}: the damage (${cut.reason}) is in record ${cut.index}, but ` +
        `${cut.syncedProof}: the damaged record was fsynced, and records after it may have been acknowledged. ` +
        'Cutting them could lose acknowledged data. Restore this log from a backup instead.',
      { details: { file: cut.file, offset: cut.offset, index: cut.index } },
    );
  }
}

/**
 * Copies what the plan cuts into `<dir>/salvaged-<stamp>/` (durably), then cuts: truncates the
 * damaged segment at the cut and removes later segments, newest first, each removal made durable
 * before the next (a surviving later segment behind a removed one would read as a gap). Returns the
 * directory holding the copies.
 */
export function applySalvage(fs: FileSystem, plan: SalvagePlan, stamp: string): string {
  checkSalvageable(plan);
  const cut = plan.cut;
  invariant(cut !== undefined, 'apply is only called with a cut');
  const aside = path.join(plan.dir, `salvaged-${stamp}`);
  try {
    fs.mkdir(aside);
    const copyName = cut.wholeFile
      ? path.basename(cut.file)
      : `${path.basename(cut.file)}.from-${cut.offset}`;
    copyRange(fs, cut.file, cut.offset, path.join(aside, copyName));
    for (const file of cut.laterSegments) copyRange(fs, file, 0, path.join(aside, path.basename(file)));
    syncDirChain(fs, aside, path);
    const doomed = cut.wholeFile ? [cut.file, ...cut.laterSegments] : cut.laterSegments;
    for (const file of [...doomed].reverse()) {
      try {
        fs.unlink(file);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
      fs.syncDir(plan.dir);
    }
    if (cut.wholeFile) return aside;
    const handle = fs.open(cut.file);
    try {
      handle.truncate(cut.offset);
      handle.sync();
    } finally {
      handle.close();
    }
    return aside;
  } catch (err) {
    if (err instanceof CairnError) throw err;
    throw ioFatal(`salvaging WAL ${plan.dir}`, err, { file: plan.dir });
  }
}

/** Copies bytes [from, end) of `source` into a new file `target`, fsynced. */
function copyRange(fs: FileSystem, source: string, from: number, target: string): void {
  const input = fs.open(source, { readOnly: true });
  const output = fs.open(target, { create: true, exclusive: true });
  try {
    const size = input.size();
    const chunk = 1 << 20;
    for (let at = from; at < size; at += chunk) {
      writeFully(output, [readAt(input, at, Math.min(chunk, size - at))], at - from);
    }
    output.sync();
  } finally {
    input.close();
    output.close();
  }
}
