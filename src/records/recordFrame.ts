import { readU64BE, writeU64BE } from '../kv/orderedKv.ts';
import { crc32c } from '../lib/crc32c.ts';
import { CairnError } from '../lib/errors.ts';

/**
 * Framing of one record-layer record inside a value-log (WAL) entry. The WAL checksums its own
 * frames; this header adds the record's identity and a CRC32C over identity + value, so a read
 * through a stale or corrupted index can never return a different record than the one asked for.
 *
 *   0      u8       format version (1)
 *   1      u8       kind
 *   2      u64 BE   first number covered
 *   10     u64 BE   next number (exclusive): the record covers [first, next)
 *   18     u8       hash length h (0 = no hash alias)
 *   19     h bytes  hash alias
 *   19+h   u32 LE   CRC32C of bytes [0, 19+h) followed by the value
 *   23+h   ...      value (opaque to this layer)
 */
export const RECORD_FORMAT_VERSION = 1;
export const RECORD_HEADER_FIXED_BYTES = 23;
export const MAX_HASH_BYTES = 64;

export interface RecordIdentity {
  kind: number;
  first: number;
  next: number;
  /** Hash alias (empty when the record has none). */
  hash: Uint8Array;
}

export interface DecodedRecord extends RecordIdentity {
  value: Uint8Array;
}

const EMPTY = new Uint8Array(0);

/** Returns [header, value] so the value is written without being copied. */
export function encodeRecordFrame(id: RecordIdentity, value: Uint8Array): [Uint8Array, Uint8Array] {
  const h = id.hash.byteLength;
  const header = new Uint8Array(RECORD_HEADER_FIXED_BYTES + h);
  header[0] = RECORD_FORMAT_VERSION;
  header[1] = id.kind;
  writeU64BE(header, 2, id.first);
  writeU64BE(header, 10, id.next);
  header[18] = h;
  header.set(id.hash, 19);
  const crc = crc32c(value, crc32c(header.subarray(0, 19 + h)));
  new DataView(header.buffer).setUint32(19 + h, crc, true);
  return [header, value];
}

/** Joins the header and value into one WAL payload. */
export function recordFrameBytes(id: RecordIdentity, value: Uint8Array): Uint8Array {
  const [header, body] = encodeRecordFrame(id, value);
  const out = new Uint8Array(header.byteLength + body.byteLength);
  out.set(header, 0);
  out.set(body, header.byteLength);
  return out;
}

/**
 * Parses and checks a frame. `where` names the file/position for the error. Throws CORRUPT on a bad
 * version, a truncated header or a checksum mismatch.
 */
export function decodeRecordFrame(raw: Uint8Array, where: { file: string; walIndex: number }): DecodedRecord {
  // Plain Uint8Array views (a Buffer from the file layer would leak Buffer-typed fields to callers).
  const bytes = Buffer.isBuffer(raw) ? new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength) : raw;
  const fail = (why: string): never => {
    throw new CairnError('CORRUPT', `record at log index ${where.walIndex} in ${where.file}: ${why}`, {
      details: { file: where.file, walIndex: where.walIndex },
    });
  };
  if (bytes.byteLength < RECORD_HEADER_FIXED_BYTES)
    fail(`${bytes.byteLength} bytes is shorter than a record header`);
  if (bytes[0] !== RECORD_FORMAT_VERSION) fail(`unknown record format version ${bytes[0]}`);
  const h = bytes[18]!;
  if (h > MAX_HASH_BYTES || bytes.byteLength < RECORD_HEADER_FIXED_BYTES + h) {
    fail(`hash length ${h} does not fit in ${bytes.byteLength} bytes`);
  }
  const stored = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(19 + h, true);
  const value = bytes.subarray(RECORD_HEADER_FIXED_BYTES + h);
  const actual = crc32c(value, crc32c(bytes.subarray(0, 19 + h)));
  if (stored !== actual) {
    fail(`checksum mismatch (stored ${hex32(stored)}, computed ${hex32(actual)})`);
  }
  // A checksum only proves the bytes are the ones written: a number past 2^53 is still corrupt.
  for (const at of [2, 10]) {
    if (bytes[at]! !== 0 || bytes[at + 1]! > 0x1f) fail(`number at byte ${at} exceeds 2^53-1`);
  }
  const first = readU64BE(bytes, 2);
  const next = readU64BE(bytes, 10);
  if (next <= first) fail(`empty span [${first}, ${next})`);
  return {
    kind: bytes[1]!,
    first,
    next,
    hash: h === 0 ? EMPTY : bytes.slice(19, 19 + h),
    value,
  };
}

function hex32(v: number): string {
  return `0x${v.toString(16).padStart(8, '0')}`;
}
