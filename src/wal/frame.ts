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
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.byteLength);
  frame.writeUInt32LE(payload.byteLength, 4);
  frame.writeUInt32LE(index % TWO_POW_32, 8);
  frame.writeUInt32LE(Math.floor(index / TWO_POW_32), 12);
  frame.set(payload, FRAME_HEADER_BYTES);
  frame.writeUInt32LE(crc32c(frame.subarray(4)), 0);
  return frame;
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
