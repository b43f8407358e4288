import { invariant } from '../lib/assert.ts';
import { crc32c } from '../lib/crc32c.ts';

/**
 * One WAL record on disk. The layout depends on the segment's format version (segmentFile.ts);
 * every frame of a segment has the same layout.
 *
 * Version 3 (every segment created by this build) and version 2, 24-byte header:
 *
 *   offset 0  crc32c      u32 LE  over bytes [4, 24 + payloadLength), seeded with the segment's salt
 *                                 (version 3) or 0 (version 2)
 *   offset 4  length      u32 LE  payload bytes
 *   offset 8  index       u64 LE  the record's log index
 *   offset 16 syncedNext  u64 LE  every record below this index had been fsynced when this frame
 *                                 was written (so syncedNext <= index)
 *   offset 24 payload
 *
 * Version 1 (segments of earlier builds; read, and sealed at the first writable open unless empty), 16-byte header:
 * the same without `syncedNext`, the CRC (unseeded) covering [4, 16 + payloadLength).
 *
 * The index sits inside the checksum so that a stale but intact frame left behind at the wrong
 * position (after a back truncation, or a reordered torn write) never passes as the expected record.
 * `syncedNext` lets recovery tell a torn tail from damage to synced data: a damaged record below the
 * `syncedNext` of an intact frame after it had been fsynced before that frame was written.
 *
 * The salt (version 3): a random u32 drawn when the segment file gets its header, stored in that
 * header and never anywhere else, used as the initial value of every frame CRC of the segment. A
 * payload is caller data; without the salt, bytes inside a payload can form a frame that passes every
 * check, and recovery's search for intact frames after a torn record would take it as proof that
 * synced data was damaged. With it, bytes nobody on the node wrote as a frame of this very segment
 * verify with probability 2^-32 whatever their content (the seed enters the CRC through an
 * invertible map, so a uniform salt gives a uniform CRC), the bound a 32-bit CRC has anyway.
 * Seeding costs nothing: the CRC starts from the salt instead of from 0.
 *
 * A header of zero bytes marks the end of data in a preallocated segment: no real frame can have
 * it, because the CRC of a zero length and zero index is not zero (unseeded), and a salt under which
 * it would be zero is never drawn (segmentFile.ts `drawSegmentSalt`).
 */
export type FrameFormat = 1 | 2 | 3;
/** The format of segments this build creates. */
export const CURRENT_FRAME_FORMAT: FrameFormat = 3;
export const FRAME_HEADER_BYTES_V1 = 16;
/** Header bytes of the current format (versions 2 and 3). */
export const FRAME_HEADER_BYTES = 24;

/** True if frames of this format carry `syncedNext` (versions 2 and 3). */
export function carriesSyncedNext(format: FrameFormat): boolean {
  return format !== 1;
}

const TWO_POW_32 = 2 ** 32;

export function frameHeaderBytes(format: FrameFormat): number {
  return format === 1 ? FRAME_HEADER_BYTES_V1 : FRAME_HEADER_BYTES;
}

/**
 * Encodes a complete record (checksummed) into one buffer. Tools and tests; the log itself lays a
 * frame out at append time and seals it (syncedNext, CRC) when it writes it.
 */
export function encodeFrame(
  index: number,
  payload: Uint8Array,
  syncedNext = 0,
  format: FrameFormat = CURRENT_FRAME_FORMAT,
  salt = 0,
): Uint8Array {
  const frame = layoutFrameInto(
    Buffer.allocUnsafe(frameHeaderBytes(format) + payload.byteLength),
    index,
    payload,
    format,
  );
  sealFrame(frame, format, syncedNext, salt);
  return frame;
}

/**
 * Writes length, index and payload into `frame` (exactly header + payload bytes long). The CRC and
 * `syncedNext` are left for `sealFrame`, called right before the frame is written, when the log
 * knows the most about what is already fsynced.
 */
export function layoutFrameInto(
  frame: Buffer,
  index: number,
  payload: Uint8Array,
  format: FrameFormat,
): Buffer {
  frame.writeUInt32LE(payload.byteLength, 4);
  frame.writeUInt32LE(index % TWO_POW_32, 8);
  frame.writeUInt32LE(Math.floor(index / TWO_POW_32), 12);
  frame.set(payload, frameHeaderBytes(format));
  return frame;
}

/**
 * Fills in `syncedNext` (versions 2 and 3) and the CRC of a laid-out frame. `salt` is the segment's
 * (0 for versions 1 and 2: an unseeded CRC).
 */
export function sealFrame(frame: Buffer, format: FrameFormat, syncedNext: number, salt: number): void {
  if (format !== 1) {
    const index = frame.readUInt32LE(12) * TWO_POW_32 + frame.readUInt32LE(8);
    if (syncedNext > index) invariant(false, `frame ${index} claims records up to ${syncedNext} synced`);
    frame.writeUInt32LE(syncedNext % TWO_POW_32, 16);
    frame.writeUInt32LE(Math.floor(syncedNext / TWO_POW_32), 20);
  }
  frame.writeUInt32LE(crc32c(frame.subarray(4), salt), 0);
}

/** The payload bytes of a laid-out frame (a view). */
export function framePayload(frame: Uint8Array, format: FrameFormat): Uint8Array {
  return frame.subarray(frameHeaderBytes(format));
}

/** The same record laid out for another format (not sealed): the log's one-time upgrade path. */
export function relayoutFrame(frame: Uint8Array, from: FrameFormat, to: FrameFormat): Buffer {
  const payload = framePayload(frame, from);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const index = view.getUint32(12, true) * TWO_POW_32 + view.getUint32(8, true);
  return layoutFrameInto(Buffer.allocUnsafe(frameHeaderBytes(to) + payload.byteLength), index, payload, to);
}

const ARENA_CHUNK_BYTES = 1 << 20;
const ARENA_MAX_FRAME_BYTES = ARENA_CHUNK_BYTES / 4;

/**
 * Bump allocator for frames waiting to be written. Frames are carved out of 1 MiB chunks instead
 * of one allocation each: a 4 KiB frame is above Node's pooled size, and one ArrayBuffer per
 * record (plus the GC work for that much external memory) measured as the main cost of a group
 * commit of 4 KiB records. Frames that follow each other in a chunk are contiguous, so a batch of
 * them goes to the kernel as a few iovecs. `reset` may only be called once no frame handed out
 * is needed any more (everything buffered was written: writes are synchronous copies).
 */
export class FrameArena {
  private chunk: Buffer | undefined;
  private used = 0;

  alloc(bytes: number): Buffer {
    if (bytes > ARENA_MAX_FRAME_BYTES) return Buffer.allocUnsafeSlow(bytes);
    if (this.chunk === undefined || this.used + bytes > this.chunk.byteLength) {
      this.chunk = Buffer.allocUnsafeSlow(ARENA_CHUNK_BYTES);
      this.used = 0;
    }
    const frame = this.chunk.subarray(this.used, this.used + bytes);
    this.used += bytes;
    return frame;
  }

  reset(): void {
    this.used = 0;
  }
}

/**
 * Merges buffers that are adjacent in memory (same ArrayBuffer, one ending where the next
 * starts) into single views, so a batch of arena frames costs a few iovecs instead of one each.
 */
export function coalesceAdjacent(buffers: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let runStart: Uint8Array | undefined;
  let runBytes = 0;
  for (const b of buffers) {
    if (
      runStart !== undefined &&
      b.buffer === runStart.buffer &&
      runStart.byteOffset + runBytes === b.byteOffset
    ) {
      runBytes += b.byteLength;
      continue;
    }
    if (runStart !== undefined) out.push(viewOf(runStart, runBytes));
    runStart = b;
    runBytes = b.byteLength;
  }
  if (runStart !== undefined) out.push(viewOf(runStart, runBytes));
  return out;
}

function viewOf(start: Uint8Array, bytes: number): Uint8Array {
  return bytes === start.byteLength ? start : new Uint8Array(start.buffer, start.byteOffset, bytes);
}

export interface FrameHeader {
  crc: number;
  payloadBytes: number;
  index: number;
  /** Versions 2 and 3 (0 in version 1). NaN above 2^53, like the index. */
  syncedNext: number;
}

function u64At(view: DataView, at: number): number {
  const value = view.getUint32(at + 4, true) * TWO_POW_32 + view.getUint32(at, true);
  // Values above 2^53 cannot be produced by this log; map them to NaN so they never match.
  return value <= Number.MAX_SAFE_INTEGER ? value : Number.NaN;
}

/** Reads the header at `offset` of `buf` (caller guarantees it is in bounds). */
export function decodeFrameHeader(buf: Uint8Array, offset: number, format: FrameFormat): FrameHeader {
  const view = new DataView(buf.buffer, buf.byteOffset + offset, frameHeaderBytes(format));
  return {
    crc: view.getUint32(0, true),
    payloadBytes: view.getUint32(4, true),
    index: u64At(view, 8),
    syncedNext: format !== 1 ? u64At(view, 16) : 0,
  };
}

export function isZeroHeader(buf: Uint8Array, offset: number, format: FrameFormat): boolean {
  const end = offset + frameHeaderBytes(format);
  for (let i = offset; i < end; i++) if (buf[i] !== 0) return false;
  return true;
}

/**
 * True if the frame occupying `buf[offset, offset + header + payload)` has a matching CRC under the
 * segment's `salt` (0 for versions 1 and 2).
 */
export function frameChecksumMatches(
  buf: Uint8Array,
  offset: number,
  header: FrameHeader,
  format: FrameFormat,
  salt: number,
): boolean {
  const end = offset + frameHeaderBytes(format) + header.payloadBytes;
  return crc32c(buf.subarray(offset + 4, end), salt) === header.crc;
}
