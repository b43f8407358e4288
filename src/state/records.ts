/**
 * Byte formats the state store writes besides the rows themselves (docs/DATA_FILES.md, "State"):
 *  - KV keys: one tag byte per family in front of the physical key, and a separate metadata keyspace
 *    (tag 0x00) that no data key can reach.
 *  - The meta record (version record and checkpoint record): height, per-family LtHash, stats, CRC.
 *  - The state WAL record of one block: the block's physical row changes plus the per-family LtHash
 *    after the block, CRC-protected by the WAL frame.
 */

import { crc32c } from '../lib/crc32c.ts';
import { CairnError } from '../lib/errors.ts';
import { FAMILIES, FAMILY_INDEX, type Family } from './encoding.ts';
import { LTHASH_BYTES, LtHash } from './ltHash.ts';

export const META_TAG = 0x00;
/** Family tags: 0x01 account, 0x02 code, 0x03 storage, 0x04 misc. */
export function familyTag(family: Family): number {
  return FAMILY_INDEX[family] + 1;
}
export function familyOfTag(tag: number): Family | undefined {
  return FAMILIES[tag - 1];
}

/** `tag ‖ physicalKey`. */
export function kvKey(family: Family, physicalKey: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + physicalKey.length);
  out[0] = familyTag(family);
  out.set(physicalKey, 1);
  return out;
}

/** Written in every block's batch (unsynced): the newest block whose batch the engine kept. */
export const VERSION_KEY = new Uint8Array([META_TAG, 0x76]); // 'v'
/** Written in a synced batch every K blocks, at snapshot and at close: everything ≤ it is durable. */
export const CHECKPOINT_KEY = new Uint8Array([META_TAG, 0x63]); // 'c'

export interface FamilyStats {
  keys: number;
  bytes: number;
}

/** Height plus everything needed to continue hashing from it. */
export interface MetaRecord {
  height: number;
  roots: LtHash[]; // per family, FAMILIES order
  stats: FamilyStats[];
}

const META_FORMAT = 1;
export const META_BYTES = 1 + 8 + 4 * LTHASH_BYTES + 4 * 16 + 4;

export function encodeMeta(m: MetaRecord): Uint8Array {
  const out = new Uint8Array(META_BYTES);
  const dv = new DataView(out.buffer);
  out[0] = META_FORMAT;
  dv.setBigUint64(1, BigInt(m.height), false);
  let off = 9;
  for (let f = 0; f < 4; f++) {
    out.set(m.roots[f]!.toBytes(), off);
    off += LTHASH_BYTES;
  }
  for (let f = 0; f < 4; f++) {
    dv.setBigUint64(off, BigInt(m.stats[f]!.keys), false);
    dv.setBigUint64(off + 8, BigInt(m.stats[f]!.bytes), false);
    off += 16;
  }
  dv.setUint32(off, crc32c(out.subarray(0, off)), false);
  return out;
}

export function decodeMeta(bytes: Uint8Array, what: string): MetaRecord {
  const bad = (reason: string) =>
    new CairnError('CORRUPT', `state ${what} record is damaged: ${reason}`, {
      details: { length: bytes.length },
    });
  if (bytes.length !== META_BYTES) throw bad(`expected ${META_BYTES} bytes, got ${bytes.length}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(META_BYTES - 4, false) !== crc32c(bytes.subarray(0, META_BYTES - 4)))
    throw bad('checksum mismatch');
  if (bytes[0] !== META_FORMAT) throw bad(`unknown format ${bytes[0]}`);
  const h = dv.getBigUint64(1, false);
  if (h > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`height ${h} overflows`);
  let off = 9;
  const roots: LtHash[] = [];
  for (let f = 0; f < 4; f++) {
    roots.push(LtHash.fromBytes(bytes.subarray(off, off + LTHASH_BYTES)));
    off += LTHASH_BYTES;
  }
  const stats: FamilyStats[] = [];
  for (let f = 0; f < 4; f++) {
    stats.push({ keys: Number(dv.getBigUint64(off, false)), bytes: Number(dv.getBigUint64(off + 8, false)) });
    off += 16;
  }
  return { height: Number(h), roots, stats };
}

export function emptyMeta(height: number): MetaRecord {
  return {
    height,
    roots: FAMILIES.map(() => new LtHash()),
    stats: FAMILIES.map(() => ({ keys: 0, bytes: 0 })),
  };
}

// ---- state WAL record ------------------------------------------------------------------------

/** One physical row change: the full new encoded value, or a delete. */
export interface RowChange {
  family: Family;
  key: Uint8Array; // physical key
  value: Uint8Array | null; // null = delete
}

export interface BlockRecord {
  height: number;
  rows: RowChange[];
  /** Per-family state after the block. */
  after: MetaRecord;
}

const BLOCK_FORMAT = 1;
const OP_PUT = 0;
const OP_DEL = 1;

/**
 * `u8 format=1 ‖ u32 rowCount ‖ rows ‖ meta record (height, roots, stats, crc)`; each row is
 * `u8 familyTag ‖ u8 op ‖ u32 keyLen ‖ key ‖ [u32 valueLen ‖ value]` (value only for puts). All
 * integers big-endian. The WAL frame's CRC covers the whole payload; the embedded meta record has
 * its own CRC as well, so a decoder bug cannot hand back wrong roots silently.
 */
/** Bytes of a block record besides its rows (format, row count, the roots and stats after it). */
export const BLOCK_RECORD_FIXED_BYTES = 1 + 4 + META_BYTES;

/** Bytes one row takes in a block record. */
export function blockRecordRowBytes(r: Pick<RowChange, 'key' | 'value'>): number {
  return 2 + 4 + r.key.length + (r.value ? 4 + r.value.length : 0);
}

export function encodeBlockRecord(rows: readonly RowChange[], after: MetaRecord): Uint8Array {
  let size = BLOCK_RECORD_FIXED_BYTES;
  for (const r of rows) size += blockRecordRowBytes(r);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  out[0] = BLOCK_FORMAT;
  dv.setUint32(1, rows.length, false);
  let off = 5;
  for (const r of rows) {
    out[off] = familyTag(r.family);
    out[off + 1] = r.value ? OP_PUT : OP_DEL;
    dv.setUint32(off + 2, r.key.length, false);
    out.set(r.key, off + 6);
    off += 6 + r.key.length;
    if (r.value) {
      dv.setUint32(off, r.value.length, false);
      out.set(r.value, off + 4);
      off += 4 + r.value.length;
    }
  }
  out.set(encodeMeta(after), off);
  return out;
}

export function decodeBlockRecord(bytes: Uint8Array, index: number): BlockRecord {
  const bad = (reason: string) =>
    new CairnError('CORRUPT', `state WAL record ${index} is malformed: ${reason}`, { details: { index } });
  if (bytes.length < 5 + META_BYTES) throw bad('too short');
  if (bytes[0] !== BLOCK_FORMAT) throw bad(`unknown format ${bytes[0]}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = dv.getUint32(1, false);
  const end = bytes.length - META_BYTES;
  let off = 5;
  const rows: RowChange[] = [];
  for (let i = 0; i < count; i++) {
    if (off + 6 > end) throw bad('row header past the end');
    const family = familyOfTag(bytes[off]!);
    const op = bytes[off + 1];
    if (!family || (op !== OP_PUT && op !== OP_DEL)) throw bad(`bad row tag at ${off}`);
    const keyLen = dv.getUint32(off + 2, false);
    if (off + 6 + keyLen > end) throw bad('key past the end');
    const key = bytes.subarray(off + 6, off + 6 + keyLen);
    off += 6 + keyLen;
    let value: Uint8Array | null = null;
    if (op === OP_PUT) {
      if (off + 4 > end) throw bad('value length past the end');
      const valueLen = dv.getUint32(off, false);
      if (off + 4 + valueLen > end) throw bad('value past the end');
      value = bytes.subarray(off + 4, off + 4 + valueLen);
      off += 4 + valueLen;
    }
    rows.push({ family, key, value });
  }
  if (off !== end) throw bad(`${end - off} stray bytes after the rows`);
  const after = decodeMeta(bytes.subarray(end), `WAL record ${index} meta`);
  if (after.height !== index) throw bad(`carries height ${after.height}`);
  return { height: index, rows, after };
}
