import { crc32c } from '../lib/crc32c.ts';

/**
 * One WAL record on disk:
 *
 *   offset 0  crc32c  u32 LE  over bytes [4, 16 + payloadLength)
 *   offset 4  length  u32 LE  payload bytes
 *   offset 8  index   u64 LE  the record's log index
 *   offset 16 payload
 *
 * The index sits inside the checksum so that a stale but intact frame left behind at the wrong
 * position (after a back truncation, or a reordered torn write) never passes as the expected record.
 * A header of 16 zero bytes marks the end of data in a preallocated segment: no real frame can have
 * it, because the CRC of a zero length and zero index is not zero.
 */
export const FRAME_HEADER_BYTES = 16;

const TWO_POW_32 = 2 ** 32;

/** Encodes a record into one buffer (header and payload contiguous: one iovec per record). */
export function encodeFrame(index: number, payload: Uint8Array): Uint8Array {
  // allocUnsafe draws small frames from Node's shared pool; every byte is overwritten below.
  return encodeFrameInto(Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.byteLength), index, payload);
}

/** Encodes a record into `frame`, which must be exactly FRAME_HEADER_BYTES + payload bytes long. */
export function encodeFrameInto(frame: Buffer, index: number, payload: Uint8Array): Buffer {
  frame.writeUInt32LE(payload.byteLength, 4);
  frame.writeUInt32LE(index % TWO_POW_32, 8);
  frame.writeUInt32LE(Math.floor(index / TWO_POW_32), 12);
  frame.set(payload, FRAME_HEADER_BYTES);
  frame.writeUInt32LE(crc32c(frame.subarray(4)), 0);
  return frame;
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
}

/** Reads the 16-byte header at `offset` of `buf` (caller guarantees it is in bounds). */
export function decodeFrameHeader(buf: Uint8Array, offset: number): FrameHeader {
  const view = new DataView(buf.buffer, buf.byteOffset + offset, FRAME_HEADER_BYTES);
  const index = view.getBigUint64(8, true);
  return {
    crc: view.getUint32(0, true),
    payloadBytes: view.getUint32(4, true),
    // Indices above 2^53 cannot be produced by this log; map them to NaN so they never match.
    index: index <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(index) : Number.NaN,
  };
}

export function isZeroHeader(buf: Uint8Array, offset: number): boolean {
  for (let i = offset; i < offset + FRAME_HEADER_BYTES; i++) if (buf[i] !== 0) return false;
  return true;
}

/** True if the frame occupying `buf[offset, offset + 16 + header.payloadBytes)` has a matching CRC. */
export function frameChecksumMatches(buf: Uint8Array, offset: number, header: FrameHeader): boolean {
  const end = offset + FRAME_HEADER_BYTES + header.payloadBytes;
  return crc32c(buf.subarray(offset + 4, end)) === header.crc;
}
