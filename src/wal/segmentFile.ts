import * as path from 'node:path';
import type { FileHandle, FileSystem } from '../io/fileSystem.ts';
import { readAt, writeFully } from '../io/fileSystem.ts';
import { padIndex } from '../lib/bytes.ts';
import { crc32c } from '../lib/crc32c.ts';
import { CairnError } from '../lib/errors.ts';
import {
  decodeFrameHeader,
  FRAME_HEADER_BYTES,
  type FrameHeader,
  frameChecksumMatches,
  isZeroHeader,
} from './frame.ts';

/**
 * One segment file: `<20-digit first index>.wal`.
 *
 *   offset 0   magic        8 bytes  "CAIRNWAL"
 *   offset 8   version      u32 LE   1
 *   offset 12  reserved     u32      0
 *   offset 16  firstIndex   u64 LE   equals the number in the file name
 *   offset 24  headerCrc    u32 LE   crc32c of bytes [0, 24)
 *   offset 28  reserved     u32      0
 *   offset 32  frames (see frame.ts), then zeros up to the preallocated size
 */
export const SEGMENT_HEADER_BYTES = 32;
export const SEGMENT_FORMAT_VERSION = 1;
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

export function encodeSegmentHeader(firstIndex: number): Uint8Array {
  const buf = new Uint8Array(SEGMENT_HEADER_BYTES);
  const view = new DataView(buf.buffer);
  buf.set(MAGIC, 0);
  view.setUint32(8, SEGMENT_FORMAT_VERSION, true);
  view.setBigUint64(16, BigInt(firstIndex), true);
  view.setUint32(24, crc32c(buf.subarray(0, 24)), true);
  return buf;
}

/** Returns the first index stored in a header, or a reason why the header is not valid. */
export function decodeSegmentHeader(buf: Uint8Array): { firstIndex: number } | { problem: string } {
  if (buf.byteLength < SEGMENT_HEADER_BYTES) {
    return { problem: `header is ${buf.byteLength} bytes, expected ${SEGMENT_HEADER_BYTES}` };
  }
  const view = new DataView(buf.buffer, buf.byteOffset, SEGMENT_HEADER_BYTES);
  if (crc32c(buf.subarray(0, 24)) !== view.getUint32(24, true))
    return { problem: 'header checksum mismatch' };
  for (let i = 0; i < MAGIC.length; i++) if (buf[i] !== MAGIC[i]) return { problem: 'bad magic' };
  // The reserved words are outside the checksum: they must be zero, so no header bit goes unchecked.
  if (view.getUint32(12, true) !== 0 || view.getUint32(28, true) !== 0) {
    return { problem: 'reserved header bytes are not zero' };
  }
  const version = view.getUint32(8, true);
  if (version !== SEGMENT_FORMAT_VERSION) {
    return { problem: `unsupported format version ${version} (this build reads ${SEGMENT_FORMAT_VERSION})` };
  }
  const first = view.getBigUint64(16, true);
  if (first > BigInt(Number.MAX_SAFE_INTEGER))
    return { problem: `first index ${first} is not a safe integer` };
  return { firstIndex: Number(first) };
}

/**
 * Creates a segment durably: header written, zeros preallocated, file fsynced, then the directory
 * fsynced so the entry survives power loss. Returns the open handle positioned for appends.
 */
export function createSegmentFile(
  fs: FileSystem,
  dir: string,
  firstIndex: number,
  preallocateBytes: number,
): FileHandle {
  const file = path.join(dir, segmentFileName(firstIndex));
  const handle = fs.open(file, { create: true, exclusive: true });
  try {
    writeFully(handle, [encodeSegmentHeader(firstIndex)], 0);
    if (preallocateBytes > SEGMENT_HEADER_BYTES) handle.allocate(preallocateBytes);
    handle.sync();
    fs.syncDir(dir);
    return handle;
  } catch (err) {
    handle.close();
    throw err;
  }
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
): Promise<FileHandle> {
  const file = path.join(dir, segmentFileName(firstIndex));
  const handle = fs.open(file, { create: true, exclusive: true });
  try {
    writeFully(handle, [encodeSegmentHeader(firstIndex)], 0);
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
export function scanSegment(handle: FileHandle, firstIndex: number, fileBytes: number): SegmentScan {
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
    if (!ensure(offset, FRAME_HEADER_BYTES)) {
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
    if (isZeroHeader(buf, local)) return { offsets, endOffset: offset, defect: undefined };
    const header: FrameHeader = decodeFrameHeader(buf, local);
    const frameBytes = FRAME_HEADER_BYTES + header.payloadBytes;
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
    if (!frameChecksumMatches(buf, offset - bufStart, header)) {
      return { offsets, endOffset: offset, defect: { offset, reason: 'frame checksum mismatch' } };
    }
    if (header.index !== expected) {
      return {
        offsets,
        endOffset: offset,
        defect: { offset, reason: `frame holds index ${header.index}, expected ${expected}` },
      };
    }
    offsets.push(offset);
    offset += frameBytes;
    expected++;
  }
}

/**
 * Looks for an intact frame carrying an index above `afterIndex` anywhere in (from, fileBytes).
 * A torn write can only damage the last frames written, so an intact later frame behind a bad one
 * means the damage hit data that was already there (bit rot, a bad sector), not a torn tail.
 * Only runs on recovery's error path; scans up to the last non-zero byte of the file.
 */
export function findIntactFrameAfter(
  handle: FileHandle,
  from: number,
  afterIndex: number,
  fileBytes: number,
): { offset: number; index: number } | undefined {
  // Everything from `end` to the end of the file is zero, so only positions before `end` can start a
  // frame; a frame may still run past `end` (zero high index bytes, a payload ending in zeros), and
  // its checksum then continues over those known zeros without reading them.
  const end = lastNonZeroEnd(handle, from, fileBytes);
  if (end <= from + 1) return undefined;
  const buf = readAt(handle, from, Math.min(fileBytes, end + FRAME_HEADER_BYTES) - from);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const candidatesEnd = end - from;
  for (let at = 1; at < candidatesEnd && at + FRAME_HEADER_BYTES <= buf.byteLength; at++) {
    // Cheap filters first: a plausible index (a safe integer above afterIndex), a length that fits.
    const high = view.getUint32(at + 12, true);
    if (high >= 0x20_0000) continue;
    const index = high * 2 ** 32 + view.getUint32(at + 8, true);
    if (index <= afterIndex) continue;
    const payloadBytes = view.getUint32(at + 4, true);
    const frameEnd = at + FRAME_HEADER_BYTES + payloadBytes;
    if (from + frameEnd > fileBytes) continue;
    const expected = view.getUint32(at, true);
    const covered = buf.subarray(at + 4, Math.min(frameEnd, buf.byteLength));
    let crc = crc32c(covered);
    if (frameEnd > buf.byteLength) crc = crc32c(new Uint8Array(frameEnd - buf.byteLength), crc);
    if (crc === expected) return { offset: from + at, index };
  }
  return undefined;
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
): Uint8Array {
  const buf = readAt(handle, offset, frameBytes);
  const corrupt = (reason: string): CairnError =>
    new CairnError('WAL_CORRUPT', `record ${expectedIndex} in ${file} at offset ${offset}: ${reason}`, {
      details: { file, offset, index: expectedIndex },
    });
  if (buf.byteLength < frameBytes) throw corrupt(`file ends after ${buf.byteLength} of ${frameBytes} bytes`);
  const header = decodeFrameHeader(buf, 0);
  if (FRAME_HEADER_BYTES + header.payloadBytes !== frameBytes) {
    throw corrupt(
      `length field says ${header.payloadBytes} payload bytes, expected ${frameBytes - FRAME_HEADER_BYTES}`,
    );
  }
  if (!frameChecksumMatches(buf, 0, header)) throw corrupt('checksum mismatch');
  if (header.index !== expectedIndex) throw corrupt(`frame holds index ${header.index}`);
  return buf.subarray(FRAME_HEADER_BYTES);
}
