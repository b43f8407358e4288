import { crc32c } from '../../src/lib/crc32c.ts';
import { FRAME_HEADER_BYTES } from '../../src/wal/frame.ts';

export { FRAME_HEADER_BYTES };

/**
 * The frame header Cairn's WAL writes (format 2, 24 bytes: crc32c over length, index, synced index
 * and payload), built by hand for the raw baselines so that both sides of a comparison write and
 * checksum the same bytes.
 */
export function rawFrameHeader(index: number, payload: Uint8Array): Uint8Array {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.writeUInt32LE(payload.byteLength, 4);
  h.writeUInt32LE(index >>> 0, 8);
  h.writeUInt32LE(Math.floor(index / 2 ** 32), 12);
  h.writeUInt32LE(crc32c(payload, crc32c(h.subarray(4))), 0);
  return h;
}
