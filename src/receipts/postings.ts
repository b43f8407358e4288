import { crc32c } from '../lib/crc32c.ts';
import { CairnError } from '../lib/errors.ts';
import { ByteSlab } from './byteSlab.ts';

/**
 * Log postings of the hot tier, packed per (value, bucket of blocks): one KV entry holds every log
 * of one address (or topic0) in `span` consecutive aligned blocks (default 1,024; recorded with the
 * hot tier's layout version, so a different span rebuilds the tier). Compared with a key per
 * log this writes ~4× fewer LevelDB entries at ingest, and a short block range is answered by a few
 * synchronous point reads instead of an iterator (whose thread-pool round trip alone costs more
 * than the whole query should).
 *
 * A bucket is written once, when the first block after it is staged (blocks arrive in order). The
 * filling bucket lives only in memory: it is never a source of truth, and at open it is rebuilt from
 * the hot tier's own receipt bodies (the bucket of the block before the replay point).
 *
 * Value: n × (block offset in bucket u16 | tx index u32 | log index u32), little-endian, in
 * (block, log index) order, then CRC-32C u32 of those bytes.
 */
/**
 * 1,024 blocks: a 10,000-block query reads ~11 buckets with synchronous point reads (no iterator;
 * on a loaded machine the iterator's thread-pool hop cost more than the reads), and the filling
 * bucket holds ≤ 1,024 blocks of postings in memory (16 bytes a posting, two a log: ~0.8 MB at 25
 * logs a block).
 * Measured on the bench dataset against 64 and 256 (bench/receipts.ts, issue #11 report).
 */
export const DEFAULT_POSTING_BUCKET_BLOCKS = 1024;
/** The block offset inside a bucket is a u16. */
export const MAX_POSTING_BUCKET_BLOCKS = 65_536;
const ENTRY_BYTES = 10;

export interface Posting {
  block: number;
  logIndex: number;
  txIndex: number;
}

/** Postings of one value inside one bucket: a chain through the bucket's posting table. */
export interface ValuePostings {
  readonly value: Uint8Array;
  /** First and last posting of the chain (table rows; -1: none yet), and how many it has. */
  head: number;
  tail: number;
  count: number;
}

/** u32 fields per posting row: block offset in the bucket, tx index, log index, next row of the value. */
const ROW = 4;
const END = 0xffffffff;
const MIN_ROWS = 4096;

/**
 * The postings of one bucket for both kinds (address and topic0). Values are looked up by a small
 * integer hash of their bytes (no string per log on the ingest path); equal hashes are told apart by
 * comparing the bytes. The postings themselves are rows of one typed table in arrival order, each
 * value's rows chained in (block, log index) order: appending one allocates nothing on the JS heap
 * (a growing number array per value cost ~2-4 KB of garbage per 25-log block, measured with the
 * sampling heap profiler on the receipts bench dataset).
 */
export class PostingBucket {
  readonly addresses = new ValueMap();
  readonly topics = new ValueMap();
  private rows: Uint32Array;
  private used = 0;
  /** Postings of blocks below this offset were dropped (dropBelow); they are skipped on read. */
  private floorOffset = 0;

  constructor(
    readonly bucket: number,
    readonly span: number,
    /** Postings expected (the previous bucket's count): the table is sized once for them. */
    expected = 0,
  ) {
    this.rows = new Uint32Array(Math.max(MIN_ROWS, expected + (expected >>> 3)) * ROW);
  }

  /** Postings added to this bucket so far. */
  get size(): number {
    return this.used;
  }

  add(kind: 'address' | 'topic', value: Uint8Array, block: number, txIndex: number, logIndex: number): void {
    const p = (kind === 'address' ? this.addresses : this.topics).getOrAdd(value, 0, value.length);
    this.append(p, block - this.bucket * this.span, txIndex, logIndex);
  }

  /**
   * `add` of the value at bytes[at, at + length) (a log inside an encoded block entry): the bytes
   * are copied only when the value is new to this bucket.
   */
  addAt(
    kind: 'address' | 'topic',
    bytes: Uint8Array,
    at: number,
    length: number,
    block: number,
    txIndex: number,
    logIndex: number,
  ): void {
    const p = (kind === 'address' ? this.addresses : this.topics).getOrAdd(bytes, at, length);
    this.append(p, block - this.bucket * this.span, txIndex, logIndex);
  }

  private append(p: ValuePostings, offset: number, txIndex: number, logIndex: number): void {
    let rows = this.rows;
    const row = this.used;
    if ((row + 1) * ROW > rows.length) {
      const grown = new Uint32Array(rows.length * 2);
      grown.set(rows);
      this.rows = rows = grown;
    }
    const at = row * ROW;
    rows[at] = offset;
    rows[at + 1] = txIndex;
    rows[at + 2] = logIndex;
    rows[at + 3] = END;
    if (p.count === 0) p.head = row;
    else rows[p.tail * ROW + 3] = row;
    p.tail = row;
    p.count++;
    this.used = row + 1;
  }

  /** Forgets the postings of blocks below `floor` (a prune cut through this bucket). */
  dropBelow(floor: number): void {
    this.floorOffset = Math.max(this.floorOffset, floor - this.bucket * this.span);
  }

  /** Postings of `p` that are kept (not below a dropBelow floor); 0: nothing to write. */
  keptCount(p: ValuePostings): number {
    if (this.floorOffset <= 0) return p.count;
    let n = 0;
    for (let row = p.count === 0 ? END : p.head; row !== END; row = this.rows[row * ROW + 3]!) {
      if (this.rows[row * ROW]! >= this.floorOffset) n++;
    }
    return n;
  }

  /**
   * The kept postings of `p` in encodePostings' format, written into `out` (postingsBytes of
   * keptCount(p) long) and returned.
   */
  encode(p: ValuePostings, out: Uint8Array): Uint8Array {
    const rows = this.rows;
    const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
    let pos = 0;
    for (let row = p.count === 0 ? END : p.head; row !== END; row = rows[row * ROW + 3]!) {
      const at = row * ROW;
      if (rows[at]! < this.floorOffset) continue;
      view.setUint16(pos, rows[at]!, true);
      view.setUint32(pos + 2, rows[at + 1]!, true);
      view.setUint32(pos + 6, rows[at + 2]!, true);
      pos += ENTRY_BYTES;
    }
    view.setUint32(pos, crc32c(out.subarray(0, pos)), true);
    return out;
  }

  /** Postings of `value` with from ≤ block ≤ to, appended to `out` in order. */
  collect(kind: 'address' | 'topic', value: Uint8Array, from: number, to: number, out: Posting[]): void {
    const p = (kind === 'address' ? this.addresses : this.topics).get(value);
    if (p === undefined) return;
    const base = this.bucket * this.span;
    const rows = this.rows;
    for (let row = p.count === 0 ? END : p.head; row !== END; row = rows[row * ROW + 3]!) {
      const at = row * ROW;
      if (rows[at]! < this.floorOffset) continue;
      const block = base + rows[at]!;
      if (block >= from && block <= to) out.push({ block, txIndex: rows[at + 1]!, logIndex: rows[at + 2]! });
    }
  }
}

/** Encoded size of `count` postings (see encodePostings). */
export function postingsBytes(count: number): number {
  return count * ENTRY_BYTES + 4;
}

/** Encodes `flat` ([blockOffset, txIndex, logIndex]*) as a bucket value. */
export function encodePostings(flat: readonly number[]): Uint8Array {
  const out = new Uint8Array(postingsBytes(flat.length / 3));
  const n = flat.length / 3;
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0, pos = 0; i < flat.length; i += 3, pos += ENTRY_BYTES) {
    view.setUint16(pos, flat[i]!, true);
    view.setUint32(pos + 2, flat[i + 1]!, true);
    view.setUint32(pos + 6, flat[i + 2]!, true);
  }
  view.setUint32(n * ENTRY_BYTES, crc32c(out.subarray(0, n * ENTRY_BYTES)), true);
  return out;
}

/** Decodes a bucket value (checking its CRC) and appends the postings with from ≤ block ≤ to. */
export function decodePostings(
  bytes: Uint8Array,
  bucket: number,
  span: number,
  from: number,
  to: number,
  out: Posting[],
): void {
  const n = (bytes.length - 4) / ENTRY_BYTES;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (
    !Number.isInteger(n) ||
    n < 0 ||
    view.getUint32(n * ENTRY_BYTES, true) !== crc32c(bytes.subarray(0, n * ENTRY_BYTES))
  ) {
    throw new CairnError(
      'CORRUPT',
      `hot tier: posting bucket ${bucket} (${bytes.length} bytes) fails its checksum`,
      {
        details: { bucket },
      },
    );
  }
  const base = bucket * span;
  for (let pos = 0; pos < n * ENTRY_BYTES; pos += ENTRY_BYTES) {
    const block = base + view.getUint16(pos, true);
    if (block < from || block > to) continue;
    out.push({ block, txIndex: view.getUint32(pos + 2, true), logIndex: view.getUint32(pos + 6, true) });
  }
}

/** The same postings minus those of blocks below `floor`, re-encoded (undefined: none left). */
export function dropBelow(
  bytes: Uint8Array,
  bucket: number,
  span: number,
  floor: number,
): Uint8Array | undefined {
  const kept: Posting[] = [];
  decodePostings(bytes, bucket, span, floor, Number.MAX_SAFE_INTEGER, kept);
  if (kept.length === 0) return undefined;
  const base = bucket * span;
  const flat: number[] = [];
  for (const p of kept) flat.push(p.block - base, p.txIndex, p.logIndex);
  return encodePostings(flat);
}

/** Postings per value, keyed by a number derived from the value's bytes (collisions chained). */
class ValueMap {
  private readonly byKey = new Map<number, ValuePostings | ValuePostings[]>();
  private readonly all: ValuePostings[] = [];

  values(): readonly ValuePostings[] {
    return this.all;
  }

  get(value: Uint8Array): ValuePostings | undefined {
    const slot = this.byKey.get(numberKey(value, 0, value.length));
    if (slot === undefined) return undefined;
    if (!Array.isArray(slot)) return sameBytes(slot.value, value) ? slot : undefined;
    return slot.find((p) => sameBytes(p.value, value));
  }

  /** The postings of bytes[at, at + length), added (with a copy of those bytes) when absent. */
  getOrAdd(bytes: Uint8Array, at: number, length: number): ValuePostings {
    const key = numberKey(bytes, at, length);
    const slot = this.byKey.get(key);
    if (slot !== undefined && !Array.isArray(slot) && sameBytesAt(slot.value, bytes, at, length)) return slot;
    // A loop, not find() with a closure: a closure over the arguments makes V8 allocate a context
    // for them on every call (~56 bytes a lookup, two lookups a log), collision or not.
    if (Array.isArray(slot)) {
      for (const p of slot) if (sameBytesAt(p.value, bytes, at, length)) return p;
    }
    const value = valueCopies.take(length);
    for (let i = 0; i < length; i++) value[i] = bytes[at + i]!;
    const p: ValuePostings = { value, head: -1, tail: -1, count: 0 };
    this.all.push(p);
    if (slot === undefined) this.byKey.set(key, p);
    else if (Array.isArray(slot)) slot.push(p);
    else this.byKey.set(key, [slot, p]);
    return p;
  }
}

/** Copies of the values new to a bucket: views into shared chunks, not an array buffer each. */
const valueCopies = new ByteSlab();

/**
 * Multipliers of the value hash, drawn per process: a chain of colliding values costs a byte compare
 * per member on every lookup, so the hash must not be one that an address can be ground against
 * offline (a CREATE2 salt search finds a given 30-bit value quickly).
 */
const MIX_A = (Math.floor(Math.random() * 0x40000000) * 2 + 1) | 0;
const MIX_B = (Math.floor(Math.random() * 0x40000000) * 2 + 1) | 0;

/**
 * A 30-bit hash of three words of the value (its first, second and last 4 bytes; values are ≥ 20
 * bytes). 30 bits keep it a small integer, which a Map hashes without allocating: a 56-bit double key
 * cost a heap number per log on the ingest path.
 */
function numberKey(v: Uint8Array, at: number, length: number): number {
  const e = at + length;
  const w0 = v[at]! | (v[at + 1]! << 8) | (v[at + 2]! << 16) | (v[at + 3]! << 24);
  const w1 = v[at + 4]! | (v[at + 5]! << 8) | (v[at + 6]! << 16) | (v[at + 7]! << 24);
  const w2 = v[e - 4]! | (v[e - 3]! << 8) | (v[e - 2]! << 16) | (v[e - 1]! << 24);
  const h = Math.imul(w0 ^ Math.imul(w1, MIX_A), MIX_B) ^ w2;
  return (h ^ (h >>> 15)) & 0x3fffffff;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return sameBytesAt(a, b, 0, b.length);
}

/** Whether `a` equals bytes[at, at + length). */
function sameBytesAt(a: Uint8Array, bytes: Uint8Array, at: number, length: number): boolean {
  if (a.length !== length) return false;
  for (let i = length - 1; i >= 0; i--) if (a[i] !== bytes[at + i]) return false;
  return true;
}
