import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import type { FileHandle, FileSystem } from '../io/fileSystem.ts';
import { readAt, writeFully } from '../io/fileSystem.ts';
import { invariant } from '../lib/assert.ts';
import { padIndex } from '../lib/bytes.ts';
import { crc32c } from '../lib/crc32c.ts';
import { CairnError } from '../lib/errors.ts';
import {
  CURRENT_FRAME_FORMAT,
  carriesSyncedNext,
  decodeFrameHeader,
  FRAME_HEADER_BYTES,
  type FrameFormat,
  type FrameHeader,
  frameChecksumMatches,
  frameHeaderBytes,
  isZeroHeader,
} from './frame.ts';

/**
 * One segment file: `<20-digit first index>.wal`.
 *
 *   offset 0   magic        8 bytes  "CAIRNWAL"
 *   offset 8   version      u32 LE   3 (1 and 2: written by earlier builds; their frames have the
 *                                   version-1 / version-2 layout, see frame.ts)
 *   offset 12  salt         u32 LE   version 3: the seed of every frame CRC of this segment, drawn at
 *                                   random when the header is written; versions 1 and 2: 0
 *   offset 16  firstIndex   u64 LE   equals the number in the file name
 *   offset 24  headerCrc    u32 LE   crc32c of bytes [0, 24) (so it covers the salt)
 *   offset 28  reserved     u32      0
 *   offset 32  frames (see frame.ts), then zeros up to the preallocated size
 */
export const SEGMENT_HEADER_BYTES = 32;
/** The version of segments this build creates; it reads 1, 2 and 3 (the version is the frame format). */
export const SEGMENT_FORMAT_VERSION: FrameFormat = CURRENT_FRAME_FORMAT;

/** What a segment header says about the frames after it. */
export interface SegmentLayout {
  /** The frame format (frame.ts). */
  format: FrameFormat;
  /** The CRC seed of every frame of the segment: the salt (version 3), 0 for versions 1 and 2. */
  salt: number;
}

const ZERO_FRAME_HEADER_TAIL = new Uint8Array(FRAME_HEADER_BYTES - 4);

/**
 * A fresh salt for a version-3 segment header, from the operating system's CSPRNG: it must be
 * unpredictable to whoever chooses record payloads, and differ between two lives of the same file
 * name. Never 0 (the unseeded CRC, which anyone can compute) and never the one value under which an
 * all-zero frame header would pass its own checksum (the zero header must stay the end of data).
 */
export function drawSegmentSalt(): number {
  for (;;) {
    const salt = randomBytes(4).readUInt32LE(0);
    if (salt !== 0 && crc32c(ZERO_FRAME_HEADER_TAIL, salt) !== 0) return salt;
  }
}
const MAGIC = new TextEncoder().encode('CAIRNWAL');
const SEGMENT_NAME = /^(\d{20})\.wal$/;

export function segmentFileName(firstIndex: number): string {
  return `${padIndex(firstIndex)}.wal`;
}

/** First index encoded in a segment file name, or undefined if the name is not a segment's. */
export function parseSegmentFileName(name: string): number | undefined {
  const m = SEGMENT_NAME.exec(name);
  if (!m) return undefined;
  const value = Number(m[1]);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** Segment files of `dir`, sorted by first index. */
export function listSegments(fs: FileSystem, dir: string): { name: string; firstIndex: number }[] {
  const out: { name: string; firstIndex: number }[] = [];
  for (const name of fs.readdir(dir)) {
    const firstIndex = parseSegmentFileName(name);
    if (firstIndex !== undefined) out.push({ name, firstIndex });
  }
  return out.sort((a, b) => a.firstIndex - b.firstIndex);
}

/**
 * The header of a new segment. `salt` is only stored by version 3 (callers draw it with
 * `drawSegmentSalt` and keep it: every frame of the segment is sealed with it).
 */
export function encodeSegmentHeader(
  firstIndex: number,
  format: FrameFormat = SEGMENT_FORMAT_VERSION,
  salt = 0,
): Uint8Array {
  invariant(format === 3 || salt === 0, `a version-${format} segment header has no salt`);
  const buf = new Uint8Array(SEGMENT_HEADER_BYTES);
  const view = new DataView(buf.buffer);
  buf.set(MAGIC, 0);
  view.setUint32(8, format, true);
  view.setUint32(12, salt, true);
  view.setBigUint64(16, BigInt(firstIndex), true);
  view.setUint32(24, crc32c(buf.subarray(0, 24)), true);
  return buf;
}

/**
 * Returns the first index, format and salt stored in a header, or a reason why the header is not
 * valid.
 */
export function decodeSegmentHeader(
  buf: Uint8Array,
): ({ firstIndex: number } & SegmentLayout) | { problem: string } {
  if (buf.byteLength < SEGMENT_HEADER_BYTES) {
    return { problem: `header is ${buf.byteLength} bytes, expected ${SEGMENT_HEADER_BYTES}` };
  }
  const view = new DataView(buf.buffer, buf.byteOffset, SEGMENT_HEADER_BYTES);
  if (crc32c(buf.subarray(0, 24)) !== view.getUint32(24, true))
    return { problem: 'header checksum mismatch' };
  for (let i = 0; i < MAGIC.length; i++) if (buf[i] !== MAGIC[i]) return { problem: 'bad magic' };
  // Bytes 28-31 are outside the checksum: they must be zero, so no header bit goes unchecked.
  if (view.getUint32(28, true) !== 0) return { problem: 'reserved header bytes are not zero' };
  const version = view.getUint32(8, true);
  if (version !== 1 && version !== 2 && version !== 3) {
    return { problem: `unsupported format version ${version} (this build reads 1, 2 and 3)` };
  }
  // Bytes 12-15: the salt of version 3, reserved (zero) before it.
  const salt = view.getUint32(12, true);
  if (version !== 3 && salt !== 0) return { problem: 'reserved header bytes are not zero' };
  const first = view.getBigUint64(16, true);
  if (first > BigInt(Number.MAX_SAFE_INTEGER))
    return { problem: `first index ${first} is not a safe integer` };
  return { firstIndex: Number(first), format: version, salt };
}

/**
 * Creates a segment (current format, with `salt`, see `drawSegmentSalt`) durably: header written,
 * zeros preallocated, file fsynced, then the directory fsynced so the entry survives power loss.
 * Returns the open handle positioned for appends.
 */
export function createSegmentFile(
  fs: FileSystem,
  dir: string,
  firstIndex: number,
  preallocateBytes: number,
  salt: number,
): FileHandle {
  const file = path.join(dir, segmentFileName(firstIndex));
  const handle = fs.open(file, { create: true, exclusive: true });
  try {
    writeFully(handle, [encodeSegmentHeader(firstIndex, SEGMENT_FORMAT_VERSION, salt)], 0);
    if (preallocateBytes > SEGMENT_HEADER_BYTES) handle.allocate(preallocateBytes);
    handle.sync();
    fs.syncDir(dir);
    return handle;
  } catch (err) {
    handle.close();
    throw err;
  }
}

/**
 * Suffix of the temporary file `replaceEmptySegment` writes before renaming it over the segment (it
 * does not match the segment name pattern: a leftover of a crash is never read, and open deletes it).
 */
export const SEGMENT_REPLACEMENT_SUFFIX = '.replacement';

/**
 * Replaces the EMPTY segment `firstIndex` (an earlier build's format: header, then nothing but zeros)
 * by a current-format one with `salt`, atomically: the new file is written, preallocated and fsynced
 * under a temporary name, renamed over the old one, and the directory fsynced. A crash leaves the old
 * empty segment or the new one, both empty at the same index, never neither (deleting first and
 * creating after could leave a log with no segment at its first index). Synchronous: the log calls
 * it inside a maintenance step, where no other call may change its segments in between. The caller
 * opens the file by its name.
 */
export function replaceEmptySegment(
  fs: FileSystem,
  dir: string,
  firstIndex: number,
  preallocateBytes: number,
  salt: number,
): void {
  const { handle, temporary, target } = startReplacement(fs, dir, firstIndex, salt);
  try {
    if (preallocateBytes > SEGMENT_HEADER_BYTES) handle.allocate(preallocateBytes);
    handle.sync();
  } finally {
    handle.close();
  }
  fs.rename(temporary, target);
  fs.syncDir(dir);
}

/**
 * `replaceEmptySegment` for recovery: the zeros are written between event-loop turns and the fsync
 * runs on the thread pool (as createSegmentFileAsync), so other logs of the process keep running.
 */
export async function replaceEmptySegmentAsync(
  fs: FileSystem,
  dir: string,
  firstIndex: number,
  preallocateBytes: number,
  salt: number,
): Promise<void> {
  const { handle, temporary, target } = startReplacement(fs, dir, firstIndex, salt);
  try {
    if (preallocateBytes > SEGMENT_HEADER_BYTES) await allocateInSlices(handle, preallocateBytes);
    await handle.syncAsync();
  } finally {
    handle.close();
  }
  fs.rename(temporary, target);
  fs.syncDir(dir);
}

/** The temporary file of a replacement, created with its header written (not yet fsynced). */
function startReplacement(
  fs: FileSystem,
  dir: string,
  firstIndex: number,
  salt: number,
): { handle: FileHandle; temporary: string; target: string } {
  const target = path.join(dir, segmentFileName(firstIndex));
  const temporary = `${target}${SEGMENT_REPLACEMENT_SUFFIX}`;
  if (fs.exists(temporary)) fs.unlink(temporary);
  const handle = fs.open(temporary, { create: true, exclusive: true });
  try {
    writeFully(handle, [encodeSegmentHeader(firstIndex, SEGMENT_FORMAT_VERSION, salt)], 0);
  } catch (err) {
    handle.close();
    throw err;
  }
  return { handle, temporary, target };
}

/** Zeros written per event-loop turn when preallocating in the background (bounds each stall). */
export const ALLOCATE_SLICE_BYTES = 1 << 20;

/** Resolves on the next event-loop turn, so timers, I/O callbacks and other logs run in between. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Extends `handle` with zeros up to `length` one slice per event-loop turn, so preallocating a
 * segment of many MiB never blocks the main thread for more than one slice's write.
 * `stopped()` is checked between slices; returns false if preallocation was abandoned.
 */
export async function allocateInSlices(
  handle: FileHandle,
  length: number,
  stopped: () => boolean = () => false,
): Promise<boolean> {
  let size = handle.size();
  while (size < length) {
    if (stopped()) return false;
    size = Math.min(length, size + ALLOCATE_SLICE_BYTES);
    handle.allocate(size);
    if (size < length) await nextTurn();
  }
  return true;
}

/**
 * `createSegmentFile` for paths that may wait: the same durable result (header, zeros, file and
 * directory fsynced), but the zeros are written in slices between event-loop turns and the file
 * fsync runs on the thread pool, so opening a log does not stall every other log of the process.
 */
export async function createSegmentFileAsync(
  fs: FileSystem,
  dir: string,
  firstIndex: number,
  preallocateBytes: number,
  salt: number,
): Promise<FileHandle> {
  const file = path.join(dir, segmentFileName(firstIndex));
  const handle = fs.open(file, { create: true, exclusive: true });
  try {
    writeFully(handle, [encodeSegmentHeader(firstIndex, SEGMENT_FORMAT_VERSION, salt)], 0);
    if (preallocateBytes > SEGMENT_HEADER_BYTES) await allocateInSlices(handle, preallocateBytes);
    await handle.syncAsync();
    fs.syncDir(dir);
    return handle;
  } catch (err) {
    handle.close();
    throw err;
  }
}

/** Why a scan stopped before the end of the file's data region. */
export interface ScanDefect {
  offset: number;
  reason: string;
}

export interface SegmentScan {
  /** Byte offset of each valid frame, in index order (offsets[i] holds record firstIndex + i). */
  offsets: number[];
  /** Offset just after the last valid frame: where the next frame goes. */
  endOffset: number;
  /** Undefined when the data ended cleanly (zero header or end of file at a frame boundary). */
  defect: ScanDefect | undefined;
}

const SCAN_CHUNK_BYTES = 1 << 20;
/**
 * First read of a scan: a log holding little data in a big preallocated segment costs a small read,
 * not a 1 MiB one; each further read doubles, up to SCAN_CHUNK_BYTES.
 */
const SCAN_FIRST_CHUNK_BYTES = 64 * 1024;
const ZERO_CHUNK = Buffer.alloc(SCAN_CHUNK_BYTES);

/** True if every byte of `bytes` is zero (a native compare, not a byte loop in JS). */
export function isAllZero(bytes: Uint8Array): boolean {
  for (let at = 0; at < bytes.byteLength; at += SCAN_CHUNK_BYTES) {
    const n = Math.min(SCAN_CHUNK_BYTES, bytes.byteLength - at);
    const view = Buffer.from(bytes.buffer, bytes.byteOffset + at, n);
    if (view.compare(ZERO_CHUNK, 0, n) !== 0) return false;
  }
  return true;
}

/**
 * Reads frames from the segment's data region in large sequential chunks and checks each one:
 * framing inside the file, checksum, and the expected index. Stops at the first frame that fails
 * (reported as a defect; the caller decides whether that is a torn tail or corruption).
 */
export function scanSegment(
  handle: FileHandle,
  firstIndex: number,
  fileBytes: number,
  layout: SegmentLayout,
): SegmentScan {
  const { format, salt } = layout;
  const headerBytes = frameHeaderBytes(format);
  const offsets: number[] = [];
  let buf: Uint8Array = new Uint8Array(0);
  let bufStart = 0;
  let chunkBytes = SCAN_FIRST_CHUNK_BYTES;
  const ensure = (offset: number, length: number): boolean => {
    if (offset + length > fileBytes) return false;
    if (offset >= bufStart && offset + length <= bufStart + buf.byteLength) return true;
    const want = Math.min(Math.max(length, chunkBytes), fileBytes - offset);
    chunkBytes = Math.min(SCAN_CHUNK_BYTES, chunkBytes * 2);
    buf = readAt(handle, offset, want);
    bufStart = offset;
    return buf.byteLength >= length;
  };

  let offset = SEGMENT_HEADER_BYTES;
  let expected = firstIndex;
  for (;;) {
    if (offset === fileBytes) return { offsets, endOffset: offset, defect: undefined };
    if (!ensure(offset, headerBytes)) {
      // Fewer than a header's worth of bytes left: zeros are the unused end of a full
      // preallocated segment; anything else is a header torn by the end of the file.
      const rest = readAt(handle, offset, fileBytes - offset);
      if (isAllZero(rest)) return { offsets, endOffset: offset, defect: undefined };
      return {
        offsets,
        endOffset: offset,
        defect: { offset, reason: 'frame header cut off by end of file' },
      };
    }
    const local = offset - bufStart;
    if (isZeroHeader(buf, local, format)) return { offsets, endOffset: offset, defect: undefined };
    const header: FrameHeader = decodeFrameHeader(buf, local, format);
    const frameBytes = headerBytes + header.payloadBytes;
    if (!ensure(offset, frameBytes)) {
      return {
        offsets,
        endOffset: offset,
        defect: {
          offset,
          reason: `frame of ${header.payloadBytes} payload bytes runs past end of file (${fileBytes} bytes)`,
        },
      };
    }
    if (!frameChecksumMatches(buf, offset - bufStart, header, format, salt)) {
      return { offsets, endOffset: offset, defect: { offset, reason: 'frame checksum mismatch' } };
    }
    if (header.index !== expected) {
      return {
        offsets,
        endOffset: offset,
        defect: { offset, reason: `frame holds index ${header.index}, expected ${expected}` },
      };
    }
    if (!(header.syncedNext <= header.index)) {
      // Only reachable by bytes that pass the CRC: a bug or a deliberate write, never a torn one.
      return {
        offsets,
        endOffset: offset,
        defect: { offset, reason: `frame ${header.index} claims records up to ${header.syncedNext} synced` },
      };
    }
    offsets.push(offset);
    offset += frameBytes;
    expected++;
  }
}

/** An intact frame found past damage: where it is, its index, and its `syncedNext` (0 in version 1). */
export interface IntactFrame {
  offset: number;
  index: number;
  syncedNext: number;
}

export interface IntactFramesAfter {
  /** The first intact frame found after the damage (evidence for messages). */
  first: IntactFrame | undefined;
  /** The intact frame with the highest `syncedNext` among those examined. */
  highest: IntactFrame | undefined;
  /** Intact frames examined (the scan stops early once `stopAboveSyncedNext` is exceeded). */
  count: number;
}

export interface IntactFrameSearch {
  /** First byte offset where a frame may start. */
  from: number;
  /** Only frames carrying an index at or above this count. */
  minIndex: number;
  fileBytes: number;
  /** The segment's first index and format: frame i of a segment lies at or after 32 + (i - first) * header. */
  segmentFirstIndex: number;
  format: FrameFormat;
  /** The segment's CRC seed (its salt; 0 for versions 1 and 2): only frames sealed with it are intact. */
  salt: number;
  /**
   * Stop as soon as a frame's `syncedNext` exceeds this (the proof recovery looks for). Version 1
   * frames carry no such field: their search stops at the first intact frame.
   */
  stopAboveSyncedNext: number;
}

/**
 * Looks for intact frames (checksum holds, plausible index) anywhere in [from, fileBytes) of a
 * segment, past a damaged or zeroed frame. Recovery decides with them whether the damage is a torn
 * tail or damage to synced data (recovery.ts). After an intact frame the search continues right after
 * it (frames are written back to back); elsewhere it tries every byte offset. Reads in chunks of at
 * most 1 MiB, so memory stays bounded whatever the segment size, and checks a candidate's checksum
 * at a cost independent of the length it claims (PrefixCrc), so time stays bounded too. Only positions before the last non-zero byte can start a frame; a frame may run
 * past it (zero high index bytes, a payload ending in zeros), and its checksum then continues over
 * those known zeros without reading them.
 */
export function findIntactFramesAfter(handle: FileHandle, search: IntactFrameSearch): IntactFramesAfter {
  const { from, fileBytes, format, stopAboveSyncedNext } = search;
  const headerBytes = frameHeaderBytes(format);
  const result: IntactFramesAfter = { first: undefined, highest: undefined, count: 0 };
  const end = lastNonZeroEnd(handle, from, fileBytes);
  const prefix = new PrefixCrc(handle, from, end);
  let win: Uint8Array = new Uint8Array(0);
  let winStart = from;
  let view = new DataView(win.buffer);
  let at = from;
  while (at < end && at + headerBytes <= fileBytes) {
    if (at < winStart || at + headerBytes > winStart + win.byteLength) {
      win = readAt(handle, at, Math.min(SCAN_CHUNK_BYTES, fileBytes - at));
      winStart = at;
      view = new DataView(win.buffer, win.byteOffset, win.byteLength);
    }
    const found = intactFrameAt(prefix, view, winStart, at - winStart, search, headerBytes);
    if (found === undefined) {
      at++;
      continue;
    }
    result.count++;
    result.first ??= found.frame;
    if (result.highest === undefined || found.frame.syncedNext > result.highest.syncedNext) {
      result.highest = found.frame;
    }
    if (format === 1 || found.frame.syncedNext > stopAboveSyncedNext) return result;
    at = found.frameEnd;
  }
  return result;
}

/** The intact frame starting at `winStart + local`, if there is one. */
function intactFrameAt(
  prefix: PrefixCrc,
  view: DataView,
  winStart: number,
  local: number,
  search: IntactFrameSearch,
  headerBytes: number,
): { frame: IntactFrame; frameEnd: number } | undefined {
  const at = winStart + local;
  // Cheap filters first: an index a frame at this position can carry, a length that fits.
  const high = view.getUint32(local + 12, true);
  if (high >= 0x20_0000) return undefined;
  const index = high * 2 ** 32 + view.getUint32(local + 8, true);
  if (index < search.minIndex) return undefined;
  if (index > search.segmentFirstIndex + Math.floor((at - SEGMENT_HEADER_BYTES) / headerBytes))
    return undefined;
  const payloadBytes = view.getUint32(local + 4, true);
  const frameEnd = at + headerBytes + payloadBytes;
  if (frameEnd > search.fileBytes) return undefined;
  let syncedNext = 0;
  if (carriesSyncedNext(search.format)) {
    const syncedHigh = view.getUint32(local + 20, true);
    if (syncedHigh >= 0x20_0000) return undefined;
    syncedNext = syncedHigh * 2 ** 32 + view.getUint32(local + 16, true);
    if (syncedNext > index) return undefined;
  }
  if (prefix.range(at + 4, frameEnd, search.salt) !== view.getUint32(local, true)) return undefined;
  return { frame: { offset: at, index, syncedNext }, frameEnd };
}

/** Bytes between two stored prefix checksums: a candidate costs at most this much reading. */
const PREFIX_CRC_STEP_BYTES = 512;

/**
 * CRC32C of any byte range [a, b) of a file at a cost independent of its length. Candidate frames in
 * damaged data carry arbitrary lengths (up to the end of the file); checksumming each one's claimed
 * length would make the search quadratic in the segment size. Instead, with C(x) = crc32c of bytes
 * [base, x), the CRC register algebra gives crc32c([a, b)) = C(b) xor Z(b - a, C(a)), where Z(n, c)
 * is the register change of n zero bytes (a linear map over GF(2), applied by repeated squaring).
 * A seeded CRC (a version-3 frame: crc32c continuing from the salt s) differs from the unseeded one
 * by Z(b - a, s), by the same linearity, so crc32c([a, b), s) = C(b) xor Z(b - a, C(a) xor s): the
 * prefix table stays unseeded, and a seed costs one xor per candidate.
 * C is kept at every PREFIX_CRC_STEP_BYTES, extended lazily as far as asked; bytes from `dataEnd` on
 * are known zeros, handled by Z too. Memory: one number per step of data actually reached.
 */
class PrefixCrc {
  private readonly steps: number[] = [0];

  constructor(
    private readonly handle: FileHandle,
    private readonly base: number,
    private readonly dataEnd: number,
  ) {}

  /** crc32c of file bytes [a, b), continuing from `seed` (0: a plain CRC). */
  range(a: number, b: number, seed: number): number {
    return (this.at(b) ^ zeroBytesShift((this.at(a) ^ seed) >>> 0, b - a)) >>> 0;
  }

  /** crc32c of file bytes [base, x). */
  private at(x: number): number {
    if (x > this.dataEnd) {
      // Appending n zero bytes to a message whose CRC is c gives crc32c = ~Z(n, ~c).
      const c = this.at(this.dataEnd);
      return ~zeroRegisterShift(~c >>> 0, x - this.dataEnd) >>> 0;
    }
    const step = Math.floor((x - this.base) / PREFIX_CRC_STEP_BYTES);
    this.extendTo(step);
    const stepStart = this.base + step * PREFIX_CRC_STEP_BYTES;
    if (x === stepStart) return this.steps[step]!;
    return crc32c(readAt(this.handle, stepStart, x - stepStart), this.steps[step]!);
  }

  private extendTo(step: number): void {
    while (this.steps.length <= step) {
      const known = this.steps.length - 1;
      const start = this.base + known * PREFIX_CRC_STEP_BYTES;
      const wanted = Math.min(SCAN_CHUNK_BYTES, (step - known) * PREFIX_CRC_STEP_BYTES);
      const chunk = readAt(this.handle, start, Math.min(wanted, this.dataEnd - start));
      let crc = this.steps[known]!;
      for (let off = 0; off + PREFIX_CRC_STEP_BYTES <= chunk.byteLength; off += PREFIX_CRC_STEP_BYTES) {
        crc = crc32c(chunk.subarray(off, off + PREFIX_CRC_STEP_BYTES), crc);
        this.steps.push(crc);
      }
      if (chunk.byteLength < PREFIX_CRC_STEP_BYTES) {
        invariant(false, `prefix CRC step ${step} lies past the data end ${this.dataEnd}`);
      }
    }
  }
}

const CRC32C_REFLECTED_POLY = 0x82f63b78;
/** ZERO_SHIFT[k][j]: the register after 2^k zero bytes, starting from the register 1 << j. */
const ZERO_SHIFT: Uint32Array[] = [];

function applyMatrix(matrix: Uint32Array, value: number): number {
  let out = 0;
  for (let j = 0; value !== 0; j++, value >>>= 1) if (value & 1) out ^= matrix[j]!;
  return out >>> 0;
}

function zeroShiftMatrix(k: number): Uint32Array {
  while (ZERO_SHIFT.length <= k) {
    const m = new Uint32Array(32);
    if (ZERO_SHIFT.length === 0) {
      for (let j = 0; j < 32; j++) {
        let v = (1 << j) >>> 0;
        for (let bit = 0; bit < 8; bit++) v = v & 1 ? (v >>> 1) ^ CRC32C_REFLECTED_POLY : v >>> 1;
        m[j] = v >>> 0;
      }
    } else {
      const prev = ZERO_SHIFT[ZERO_SHIFT.length - 1]!;
      for (let j = 0; j < 32; j++) m[j] = applyMatrix(prev, prev[j]!);
    }
    ZERO_SHIFT.push(m);
  }
  return ZERO_SHIFT[k]!;
}

/** The CRC register after `n` zero bytes fed to register `register`. */
function zeroRegisterShift(register: number, n: number): number {
  let value = register >>> 0;
  for (let k = 0; n > 0; k++, n = Math.floor(n / 2)) {
    if (n % 2 === 1) value = applyMatrix(zeroShiftMatrix(k), value);
  }
  return value;
}

/** Z(n, c) of PrefixCrc: the same linear map, applied to a CRC value. */
function zeroBytesShift(crc: number, n: number): number {
  return zeroRegisterShift(crc, n);
}

/** Offset just past the last non-zero byte in [from, to) (== from if all zeros). */
function lastNonZeroEnd(handle: FileHandle, from: number, to: number): number {
  for (let chunkEnd = to; chunkEnd > from; ) {
    const chunkStart = Math.max(from, chunkEnd - SCAN_CHUNK_BYTES);
    const chunk = readAt(handle, chunkStart, chunkEnd - chunkStart);
    if (isAllZero(chunk)) {
      chunkEnd = chunkStart;
      continue;
    }
    for (let i = chunk.byteLength - 1; i >= 0; i--) if (chunk[i] !== 0) return chunkStart + i + 1;
    chunkEnd = chunkStart;
  }
  return from;
}

/** True if any byte in [from, to) of the file is not zero (stale or torn data past the end). */
export function hasNonZeroBytes(handle: FileHandle, from: number, to: number): boolean {
  for (let pos = from; pos < to; pos += SCAN_CHUNK_BYTES) {
    const chunk = readAt(handle, pos, Math.min(SCAN_CHUNK_BYTES, to - pos));
    if (!isAllZero(chunk)) return true;
    if (chunk.byteLength === 0) break;
  }
  return false;
}

/** Reads one frame known to lie at [offset, offset + frameBytes) and returns its payload, verified. */
export function readFrame(
  handle: FileHandle,
  file: string,
  offset: number,
  frameBytes: number,
  expectedIndex: number,
  layout: SegmentLayout,
): Uint8Array {
  const { format, salt } = layout;
  const headerBytes = frameHeaderBytes(format);
  const corrupt = (reason: string): CairnError =>
    new CairnError('WAL_CORRUPT', `record ${expectedIndex} in ${file} at offset ${offset}: ${reason}`, {
      details: { file, offset, index: expectedIndex },
    });
  if (frameBytes < headerBytes) throw corrupt(`a frame of ${frameBytes} bytes is shorter than its header`);
  const buf = readAt(handle, offset, frameBytes);
  if (buf.byteLength < frameBytes) throw corrupt(`file ends after ${buf.byteLength} of ${frameBytes} bytes`);
  const header = decodeFrameHeader(buf, 0, format);
  if (headerBytes + header.payloadBytes !== frameBytes) {
    throw corrupt(
      `length field says ${header.payloadBytes} payload bytes, expected ${frameBytes - headerBytes}`,
    );
  }
  if (!frameChecksumMatches(buf, 0, header, format, salt)) throw corrupt('checksum mismatch');
  if (header.index !== expectedIndex) throw corrupt(`frame holds index ${header.index}`);
  return buf.subarray(headerBytes);
}
