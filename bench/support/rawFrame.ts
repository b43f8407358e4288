import { crc32c } from '../../src/lib/crc32c.ts';
import { FRAME_HEADER_BYTES } from '../../src/wal/frame.ts';

/**
 * The 16-byte frame header Cairn's WAL writes (crc32c over length, index and payload), built by
 * hand for the raw baselines so that both sides of a comparison write and checksum the same bytes.
 */
export function rawFrameHeader(index: number, payload: Uint8Array): Uint8Array {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h.writeUInt32LE(payload.byteLength, 4);
  h.writeUInt32LE(index >>> 0, 8);
  h.writeUInt32LE(Math.floor(index / 2 ** 32), 12);
  h.writeUInt32LE(crc32c(payload, crc32c(h.subarray(4))), 0);
  return h;
}
