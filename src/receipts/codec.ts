import { crc32c, crc32cOfRange } from '../lib/crc32c.ts';
import { CairnError } from '../lib/errors.ts';
import type { BlockEntry, BlockReceiptsInput, LogInput, ReceiptInput, StoredReceipt } from './types.ts';

/**
 * Binary codecs of the receipt store. Every encoding ends with a CRC-32C of the bytes before it,
 * so a damaged WAL entry or hot-tier value is detected as corruption instead of being served.
 *
 * Receipt record (shared by the WAL block entry and the hot-tier body), little-endian:
 *   txHash 32 | txIndex u32 | type u8 | status u8 | flags u8 (bit0 to present, bit1 contract present)
 *   | from 20 | [to 20] | [contract 20] | gasUsed u64 | cumulativeGasUsed u64 | effectiveGasPrice u64
 *   | firstLogIndex u32 | logCount u32 | logs
 * Log: address 20 | topicCount u8 | topics 32 each | dataLength u32 | data
 */

export const BLOCK_ENTRY_VERSION = 1;
export const RECEIPT_BODY_VERSION = 1;

class ByteReader {
  private pos = 0;
  private readonly view: DataView;
  /** `copy`: slice out byte fields (the source buffer may be reused); otherwise return views. */
  constructor(
    private readonly buf: Uint8Array,
    private readonly what: string,
    private readonly copy = true,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw corrupt(this.what, `truncated at byte ${this.pos}`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64big(): bigint {
    this.need(8);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }
  u64(): number {
    this.need(8);
    const lo = this.view.getUint32(this.pos, true);
    const hi = this.view.getUint32(this.pos + 4, true);
    this.pos += 8;
    const v = hi * 0x100000000 + lo;
    if (hi >= 0x200000) throw corrupt(this.what, `u64 ${hi}:${lo} out of the safe range`);
    return v;
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const out = this.copy
      ? this.buf.slice(this.pos, this.pos + n)
      : this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  get remaining(): number {
    return this.buf.length - this.pos;
  }
}

function corrupt(what: string, why: string): CairnError {
  return new CairnError('CORRUPT', `${what}: ${why}`, { details: { what } });
}

/** Checks the trailing CRC and returns the payload before it (a view). */
function checkCrc(bytes: Uint8Array, what: string): Uint8Array {
  if (bytes.length < 5) throw corrupt(what, `${bytes.length} bytes is too short`);
  const body = bytes.subarray(0, bytes.length - 4);
  const stored = new DataView(bytes.buffer, bytes.byteOffset + body.length, 4).getUint32(0, true);
  if (crc32c(body) !== stored) throw corrupt(what, 'checksum mismatch');
  return body;
}

function readReceipt(r: ByteReader): StoredReceipt {
  const txHash = r.bytes(32);
  const txIndex = r.u32();
  const type = r.u8();
  const status = r.u8();
  const flags = r.u8();
  const from = r.bytes(20);
  const to = flags & 1 ? r.bytes(20) : undefined;
  const contractAddress = flags & 2 ? r.bytes(20) : undefined;
  const gasUsed = r.u64();
  const cumulativeGasUsed = r.u64();
  const effectiveGasPrice = r.u64big();
  const firstLogIndex = r.u32();
  const logCount = r.u32();
  const logs: LogInput[] = [];
  for (let i = 0; i < logCount; i++) {
    const address = r.bytes(20);
    const topicCount = r.u8();
    const topics: Uint8Array[] = [];
    for (let t = 0; t < topicCount; t++) topics.push(r.bytes(32));
    const data = r.bytes(r.u32());
    logs.push({ address, topics, data });
  }
  return {
    txHash,
    txIndex,
    type,
    status: status === 1 ? 1 : 0,
    from,
    to,
    contractAddress,
    gasUsed,
    cumulativeGasUsed,
    effectiveGasPrice,
    firstLogIndex,
    logs,
  };
}

/**
 * WAL payload of one block: version u8 | number u64 | hash 32 | receiptCount u32
 * | (bodyLength u32 | receipt body)* | crc. The bodies are exactly the hot tier's values, so a block
 * is encoded once and its bodies are stored in the hot tier without re-encoding.
 */
export function encodeBlockEntry(entry: BlockEntry): { payload: Uint8Array } {
  let bodiesBytes = 0;
  for (const r of entry.receipts) bodiesBytes += 4 + receiptBodySize(r);
  return { payload: writeEntry(entry.number, entry.hash, entry.receipts, bodiesBytes, true).out };
}

/**
 * Writes a block entry of `receipts`, in the order given, into one exact-size buffer (one allocation
 * per block, each body written in place; `bodiesBytes` is their bodies with length prefixes). A
 * receipt's first log index is its stored one (`storedLogIndex`: a StoredReceipt re-encoded) or the
 * count of the logs before it (a block encoded from its input).
 */
function writeEntry(
  number: number,
  hash: Uint8Array,
  receipts: readonly ReceiptInput[],
  bodiesBytes: number,
  storedLogIndex: boolean,
): { out: Uint8Array; crc: number } {
  const size = ENTRY_HEADER_BYTES + bodiesBytes + 4;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  const whole = Buffer.from(out.buffer, 0, size);
  out[0] = BLOCK_ENTRY_VERSION;
  view.setUint32(1, number >>> 0, true);
  view.setUint32(5, Math.floor(number / 0x100000000), true);
  out.set(hash, 9);
  view.setUint32(41, receipts.length, true);
  let pos = ENTRY_HEADER_BYTES;
  let logIndex = 0;
  for (let i = 0; i < receipts.length; i++) {
    const r = receipts[i]!;
    const bodyStart = pos + 4;
    const first = storedLogIndex ? (r as StoredReceipt).firstLogIndex : logIndex;
    const end = writeReceiptBody(out, view, whole, bodyStart, hash, r, first);
    view.setUint32(pos, end - bodyStart, true);
    logIndex += r.logs.length;
    pos = end;
  }
  const crc = crc32cOfRange(whole, 0, pos);
  view.setUint32(pos, crc, true);
  return { out, crc };
}

/** Encoded size of a hot-tier body (version, block hash, receipt record, CRC). */
function receiptBodySize(r: ReceiptInput): number {
  let n = 1 + 32 + 32 + 4 + 3 + 20 + (r.to ? 20 : 0) + (r.contractAddress ? 20 : 0) + 24 + 8;
  for (const log of r.logs) n += 20 + 1 + 32 * log.topics.length + 4 + log.data.length;
  return n + 4;
}

/** Writes a body (same bytes as encodeReceiptBody) at `start`; returns the offset after its CRC. */
function writeReceiptBody(
  out: Uint8Array,
  view: DataView,
  whole: Buffer,
  start: number,
  blockHash: Uint8Array,
  r: ReceiptInput,
  firstLogIndex: number,
): number {
  let pos = start;
  out[pos++] = RECEIPT_BODY_VERSION;
  out.set(blockHash, pos);
  pos += 32;
  out.set(r.txHash, pos);
  pos += 32;
  view.setUint32(pos, r.txIndex, true);
  pos += 4;
  out[pos++] = r.type;
  out[pos++] = r.status;
  out[pos++] = (r.to ? 1 : 0) | (r.contractAddress ? 2 : 0);
  out.set(r.from, pos);
  pos += 20;
  if (r.to) {
    out.set(r.to, pos);
    pos += 20;
  }
  if (r.contractAddress) {
    out.set(r.contractAddress, pos);
    pos += 20;
  }
  view.setUint32(pos, r.gasUsed >>> 0, true);
  view.setUint32(pos + 4, Math.floor(r.gasUsed / 0x100000000), true);
  view.setUint32(pos + 8, r.cumulativeGasUsed >>> 0, true);
  view.setUint32(pos + 12, Math.floor(r.cumulativeGasUsed / 0x100000000), true);
  view.setBigUint64(pos + 16, r.effectiveGasPrice, true);
  view.setUint32(pos + 24, firstLogIndex, true);
  view.setUint32(pos + 28, r.logs.length, true);
  pos += 32;
  for (const log of r.logs) {
    out.set(log.address, pos);
    pos += 20;
    out[pos++] = log.topics.length;
    for (const t of log.topics) {
      out.set(t, pos);
      pos += 32;
    }
    view.setUint32(pos, log.data.length, true);
    pos += 4;
    out.set(log.data, pos);
    pos += log.data.length;
  }
  view.setUint32(pos, crc32cOfRange(whole, start, pos), true);
  return pos + 4;
}

/**
 * Decodes a block entry after checking its CRC. That CRC covers every body, so the bodies' own CRCs
 * are not checked again here (each byte is checksummed once on this path). `views`: byte fields are
 * views into `bytes` (for a caller that owns the buffer, like the archive writer thread with the
 * entries transferred to it); by default each body is copied out once and its fields view the copy.
 */
export function decodeBlockEntry(bytes: Uint8Array, views = false): BlockEntry & { bodies: Uint8Array[] } {
  const what = 'receipt WAL entry';
  const r = new ByteReader(checkCrc(bytes, what), what, !views);
  const version = r.u8();
  if (version !== BLOCK_ENTRY_VERSION) throw corrupt(what, `unknown version ${version}`);
  const number = r.u64();
  const hash = r.bytes(32);
  const count = r.u32();
  const receipts: StoredReceipt[] = [];
  const bodies: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const body = r.bytes(r.u32());
    bodies.push(body);
    if (body.length < 5) throw corrupt(what, `receipt body ${i} is ${body.length} bytes`);
    receipts.push(readBodyFields(body.subarray(0, body.length - 4), what).receipt);
  }
  if (r.remaining !== 0) throw corrupt(what, `${r.remaining} trailing bytes`);
  return { number, hash, receipts, bodies };
}

/**
 * One row of a block entry as walkBlockEntry reports it: offsets into `bytes` (the entry) for the
 * byte fields and the decoded numbers. The walker reuses one object for every row of a walk, so a
 * visitor copies what it keeps.
 */
export interface EntryRow {
  /** The entry walked; every `...At` offset indexes into it. */
  bytes: Uint8Array;
  blockNumber: number;
  /** Block hash (32 bytes) in the entry's header. */
  blockHashAt: number;
  /** Receipt fields. `hashesAt`: the body's block hash then its tx hash (64 bytes together). */
  hashesAt: number;
  txHashAt: number;
  txIndex: number;
  type: number;
  status: number;
  fromAt: number;
  /** -1 when absent. */
  toAt: number;
  contractAt: number;
  /** End of the body's hashes and addresses: [hashesAt, headEnd) is block hash 32 | tx hash 32 |
   * tx index u32 | type u8 | status u8 | flags u8 | from 20 | [to 20] | [contract 20]. */
  headEnd: number;
  gasUsed: bigint;
  cumulativeGasUsed: bigint;
  effectiveGasPrice: bigint;
  firstLogIndex: number;
  logCount: number;
  /** Log fields (of the receipt above): its whole record [logAt, logEnd) as encoded, which is
   * address 20 | topicCount u8 | topics 32 each | dataLength u32 | data. */
  logIndex: number;
  logAt: number;
  logEnd: number;
  topicCount: number;
  dataLength: number;
}

/** Visitor of walkBlockEntry: called once per receipt (in tx index order), then once per log of it. */
export interface EntryRowVisitor {
  receipt(row: EntryRow): void;
  log(row: EntryRow): void;
}

/**
 * Walks a block entry once after checking its CRC, reporting each receipt and log to `visit` as
 * offsets and numbers (no receipt or log objects, no copies): the archive writer's staging path,
 * which turns rows into column values. Checks the same structure decodeBlockEntry does (versions,
 * lengths, nothing trailing) and, beyond it, that each body names the entry's block hash and that a
 * log has at most 4 topics, so it accepts no entry that decodeBlockEntry would reject. Returns the
 * block's number, the offset of its hash and its receipt count.
 */
export function walkBlockEntry(
  bytes: Uint8Array,
  visit: EntryRowVisitor,
  row: EntryRow = newEntryRow(bytes),
): { number: number; hashAt: number; receipts: number } {
  const what = 'receipt WAL entry';
  const end = checkCrc(bytes, what).length;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (end < ENTRY_HEADER_BYTES) throw corrupt(what, `truncated at byte ${end}`);
  if (bytes[0] !== BLOCK_ENTRY_VERSION) throw corrupt(what, `unknown version ${bytes[0]}`);
  const numberHi = view.getUint32(5, true);
  if (numberHi >= 0x200000)
    throw corrupt(what, `u64 ${numberHi}:${view.getUint32(1, true)} out of the safe range`);
  const number = numberHi * 0x100000000 + view.getUint32(1, true);
  const count = view.getUint32(41, true);
  row.bytes = bytes;
  row.blockNumber = number;
  row.blockHashAt = 9;
  let pos = ENTRY_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (pos + 4 > end) throw corrupt(what, `truncated at byte ${pos}`);
    const bodyLength = view.getUint32(pos, true);
    const bodyStart = pos + 4;
    const bodyEnd = bodyStart + bodyLength;
    if (bodyEnd > end) throw corrupt(what, `truncated at byte ${bodyStart}`);
    if (bodyLength < 5) throw corrupt(what, `receipt body ${i} is ${bodyLength} bytes`);
    walkBody(bytes, view, bodyStart, bodyEnd - 4, row, visit);
    pos = bodyEnd;
  }
  if (pos !== end) throw corrupt(what, `${end - pos} trailing bytes`);
  return { number, hashAt: 9, receipts: count };
}

export function newEntryRow(bytes: Uint8Array): EntryRow {
  return {
    bytes,
    blockNumber: 0,
    blockHashAt: 0,
    hashesAt: 0,
    txHashAt: 0,
    txIndex: 0,
    type: 0,
    status: 0,
    fromAt: 0,
    toAt: -1,
    contractAt: -1,
    headEnd: 0,
    gasUsed: 0n,
    cumulativeGasUsed: 0n,
    effectiveGasPrice: 0n,
    firstLogIndex: 0,
    logCount: 0,
    logIndex: 0,
    logAt: 0,
    logEnd: 0,
    topicCount: 0,
    dataLength: 0,
  };
}

function checkSafeU64(view: DataView, at: number, what: string): void {
  const hi = view.getUint32(at + 4, true);
  if (hi >= 0x200000) throw corrupt(what, `u64 ${hi}:${view.getUint32(at, true)} out of the safe range`);
}

/** Throws CORRUPT unless [at, at + n) lies inside a body ending at `end` (no closure: hot path). */
function needBody(at: number, n: number, start: number, end: number): void {
  if (at + n > end) throw corrupt('hot-tier receipt body', `truncated at byte ${at - start}`);
}

/** One receipt body [start, end) (its CRC excluded: the entry's covers it); see walkBlockEntry. */
function walkBody(
  bytes: Uint8Array,
  view: DataView,
  start: number,
  end: number,
  row: EntryRow,
  visit: EntryRowVisitor,
): void {
  const what = 'hot-tier receipt body';
  needBody(start, 1 + 32 + 32 + 4 + 3 + 20, start, end);
  if (bytes[start] !== RECEIPT_BODY_VERSION) throw corrupt(what, `unknown version ${bytes[start]}`);
  const hashAt = row.blockHashAt;
  for (let k = 0; k < 32; k++) {
    if (bytes[start + 1 + k] !== bytes[hashAt + k])
      throw corrupt(what, "block hash differs from its entry's");
  }
  row.hashesAt = start + 1;
  row.txHashAt = start + 33;
  row.txIndex = view.getUint32(start + 65, true);
  row.type = bytes[start + 69]!;
  row.status = bytes[start + 70] === 1 ? 1 : 0;
  const flags = bytes[start + 71]!;
  row.fromAt = start + 72;
  let pos = start + 92;
  if (flags & 1) {
    needBody(pos, 20, start, end);
    row.toAt = pos;
    pos += 20;
  } else row.toAt = -1;
  if (flags & 2) {
    needBody(pos, 20, start, end);
    row.contractAt = pos;
    pos += 20;
  } else row.contractAt = -1;
  row.headEnd = pos;
  needBody(pos, 32, start, end);
  // gasUsed and cumulativeGasUsed are safe integers (decodeBlockEntry rejects larger ones too).
  checkSafeU64(view, pos, what);
  checkSafeU64(view, pos + 8, what);
  row.gasUsed = view.getBigUint64(pos, true);
  row.cumulativeGasUsed = view.getBigUint64(pos + 8, true);
  row.effectiveGasPrice = view.getBigUint64(pos + 16, true);
  row.firstLogIndex = view.getUint32(pos + 24, true);
  const logCount = view.getUint32(pos + 28, true);
  row.logCount = logCount;
  pos += 32;
  visit.receipt(row);
  for (let i = 0; i < logCount; i++) {
    needBody(pos, 21, start, end);
    const topicCount = bytes[pos + 20]!;
    if (topicCount > 4) throw corrupt(what, `log ${i} has ${topicCount} topics`);
    const lengthAt = pos + 21 + 32 * topicCount;
    needBody(lengthAt, 4, start, end);
    const dataLength = view.getUint32(lengthAt, true);
    needBody(lengthAt + 4, dataLength, start, end);
    row.logIndex = row.firstLogIndex + i;
    row.logAt = pos;
    row.logEnd = lengthAt + 4 + dataLength;
    row.topicCount = topicCount;
    row.dataLength = dataLength;
    visit.log(row);
    pos = row.logEnd;
  }
  if (pos !== end) throw corrupt(what, `${end - pos} trailing bytes`);
}

/** Offset of the tx index inside a receipt body (version 1, block hash 32, tx hash 32). */
const BODY_TX_INDEX_OFFSET = 65;
/** Bytes of a block entry before its first body: version, number, hash, receipt count. */
const ENTRY_HEADER_BYTES = 45;

/**
 * The receipt bodies of a stored block entry (the hot tier keeps a block's entry as one value), as
 * views, WITHOUT checking the entry's CRC: each body carries its own CRC, checked when it is
 * decoded, and the framing is checked here (the bodies must end exactly at the entry's CRC), so
 * every byte a reader uses is covered by a checksum or a structural check.
 */
export function entryBodies(entry: Uint8Array, what = 'hot-tier block entry'): Uint8Array[] {
  const count = entryHeader(entry, what);
  const bodies: Uint8Array[] = new Array(count);
  let pos = ENTRY_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    const end = bodyEnd(entry, pos, what);
    bodies[i] = entry.subarray(pos + 4, end);
    pos = end;
  }
  if (pos !== entry.length - 4) throw corrupt(what, `${entry.length - 4 - pos} bytes after the last body`);
  return bodies;
}

/**
 * The body of receipt `txIndex` in a stored block entry (a view, its own CRC not yet checked), or
 * undefined when the block has no such receipt. Walks the length fields only: a point read does not
 * checksum the whole block.
 */
export function findReceiptBody(
  entry: Uint8Array,
  txIndex: number,
  what = 'hot-tier block entry',
): Uint8Array | undefined {
  const count = entryHeader(entry, what);
  let pos = ENTRY_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    const end = bodyEnd(entry, pos, what);
    const at = pos + 4 + BODY_TX_INDEX_OFFSET;
    if (at + 4 > end) throw corrupt(what, `body ${i} is ${end - pos - 4} bytes`);
    const bodyTxIndex =
      (entry[at]! | (entry[at + 1]! << 8) | (entry[at + 2]! << 16) | (entry[at + 3]! << 24)) >>> 0;
    if (bodyTxIndex === txIndex) return entry.subarray(pos + 4, end);
    pos = end;
  }
  return undefined;
}

/** Checks an entry's version and size; returns its receipt count. */
function entryHeader(entry: Uint8Array, what: string): number {
  if (entry.length < ENTRY_HEADER_BYTES + 4) throw corrupt(what, `${entry.length} bytes is too short`);
  if (entry[0] !== BLOCK_ENTRY_VERSION) throw corrupt(what, `unknown version ${entry[0]}`);
  return (entry[41]! | (entry[42]! << 8) | (entry[43]! << 16) | (entry[44]! << 24)) >>> 0;
}

/** End offset of the length-prefixed body starting at `pos` (bounds-checked against the entry's CRC). */
function bodyEnd(entry: Uint8Array, pos: number, what: string): number {
  if (pos + 4 > entry.length - 4) throw corrupt(what, `truncated at byte ${pos}`);
  const length =
    (entry[pos]! | (entry[pos + 1]! << 8) | (entry[pos + 2]! << 16) | (entry[pos + 3]! << 24)) >>> 0;
  const end = pos + 4 + length;
  if (end > entry.length - 4)
    throw corrupt(what, `body at byte ${pos} runs past the entry (${length} bytes)`);
  return end;
}

/**
 * Checksum identifying an encoded entry: its trailing CRC-32C. (A CRC over the whole payload would
 * not do: a CRC over data followed by its own CRC is the same constant for every input.)
 */
export function entryChecksum(payload: Uint8Array): number {
  return new DataView(payload.buffer, payload.byteOffset + payload.length - 4, 4).getUint32(0, true);
}

/** Hot-tier body of one receipt with its logs: version u8 | blockHash 32 | receipt record | crc. */
export function encodeReceiptBody(blockHash: Uint8Array, receipt: StoredReceipt): Uint8Array {
  const out = new Uint8Array(receiptBodySize(receipt));
  writeReceiptBody(
    out,
    new DataView(out.buffer),
    Buffer.from(out.buffer, 0, out.length),
    0,
    blockHash,
    receipt,
    receipt.firstLogIndex,
  );
  return out;
}

/** Decodes a body; byte fields are views into `bytes` (callers pass a buffer they own). */
export function decodeReceiptBody(bytes: Uint8Array): { blockHash: Uint8Array; receipt: StoredReceipt } {
  const what = 'hot-tier receipt body';
  return readBodyFields(checkCrc(bytes, what), what);
}

/** The fields of a body whose CRC was checked (or is covered by its entry's); views into `body`. */
function readBodyFields(body: Uint8Array, what: string): { blockHash: Uint8Array; receipt: StoredReceipt } {
  const r = new ByteReader(body, what, false);
  const version = r.u8();
  if (version !== RECEIPT_BODY_VERSION) throw corrupt(what, `unknown version ${version}`);
  const blockHash = r.bytes(32);
  const receipt = readReceipt(r);
  if (r.remaining !== 0) throw corrupt(what, `${r.remaining} trailing bytes`);
  return { blockHash, receipt };
}

function invalid(message: string, details: Record<string, unknown> = {}): CairnError {
  return new CairnError('INVALID_ARGUMENT', message, { details });
}

function checkLength(bytes: unknown, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    const got = bytes instanceof Uint8Array ? `${bytes.length} bytes` : typeof bytes;
    throw invalid(`${what} must be ${length} bytes, got ${got}`);
  }
}

function isBytes(bytes: unknown, length: number): boolean {
  return bytes instanceof Uint8Array && bytes.length === length;
}

/** `what` (of receipt `i` of `block` when `block` is given: the label is built only for an error). */
function checkU64(value: unknown, what: string, block?: number, i = 0): void {
  if (typeof value === 'bigint') {
    if (value >= 0n && value <= 0xffffffffffffffffn) return;
  } else if (Number.isSafeInteger(value) && (value as number) >= 0) {
    return;
  }
  if (block !== undefined) what = `${receiptLabel(block, i)} ${what}`;
  if (typeof value === 'bigint') {
    if (value < 0n || value > 0xffffffffffffffffn) throw invalid(`${what} ${value} is outside u64`);
    return;
  }
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw invalid(`${what} must be a non-negative safe integer, got ${String(value)}`);
  }
}

/** A validated block, encoded once as its WAL entry (encodeBlock). */
export interface EncodedBlock {
  number: number;
  /** A copy of the block hash (the caller's arrays are not kept). */
  hash: Uint8Array;
  /** The block entry (encodeBlockEntry's layout): the WAL record and the hot tier's block value. */
  payload: Uint8Array;
  /** entryChecksum(payload). */
  crc: number;
}

/**
 * Validates a block and encodes it as its canonical entry: receipts ordered by txIndex, log indices
 * assigned block-wide in that order (the bytes encodeBlockEntry writes for the normalized block).
 * Throws INVALID_ARGUMENT (a caller error) naming the bad field; the input is not modified and not
 * referenced afterwards, so a caller may reuse its arrays once this returns. Encoding straight from
 * the input, without a normalized copy of every receipt and log, keeps ~70 short-lived objects per
 * block of 25 logs off the write path.
 */
export function encodeBlock(input: BlockReceiptsInput): EncodedBlock {
  checkU64(input.number, 'block number');
  checkLength(input.hash, 32, 'block hash');
  if (!Array.isArray(input.receipts)) throw invalid('receipts must be an array');
  // Receipts usually arrive in txIndex order: copied and sorted only when they do not.
  let inOrder = true;
  for (let i = 1; i < input.receipts.length && inOrder; i++) {
    inOrder = !(input.receipts[i - 1]!.txIndex > input.receipts[i]!.txIndex);
  }
  const sorted = inOrder ? input.receipts : [...input.receipts].sort((a, b) => a.txIndex - b.txIndex);
  let bodiesBytes = 0;
  for (let i = 0; i < sorted.length; i++) {
    checkReceipt(input.number, sorted, i);
    bodiesBytes += 4 + receiptBodySize(sorted[i]!);
  }
  const { out, crc } = writeEntry(input.number, input.hash, sorted, bodiesBytes, false);
  return { number: input.number, hash: out.slice(9, 41), payload: out, crc };
}

/**
 * Validates a block and turns it into the canonical entry: receipts sorted by txIndex, log indices
 * assigned block-wide in that order (the decoded form of encodeBlock's bytes). Same checks and
 * errors as encodeBlock; the input is not modified.
 */
export function normalizeBlock(input: BlockReceiptsInput): BlockEntry {
  checkU64(input.number, 'block number');
  checkLength(input.hash, 32, 'block hash');
  if (!Array.isArray(input.receipts)) throw invalid('receipts must be an array');
  const sorted = [...input.receipts].sort((a, b) => a.txIndex - b.txIndex);
  const receipts: StoredReceipt[] = [];
  let logIndex = 0;
  for (let i = 0; i < sorted.length; i++) {
    checkReceipt(input.number, sorted, i);
    const r = sorted[i]!;
    const logs = r.logs.map((l: LogInput) => ({
      address: l.address,
      topics: l.topics.slice(),
      data: l.data,
    }));
    receipts.push({
      txHash: r.txHash,
      txIndex: r.txIndex,
      type: r.type,
      status: r.status,
      from: r.from,
      to: r.to,
      contractAddress: r.contractAddress,
      gasUsed: r.gasUsed,
      cumulativeGasUsed: r.cumulativeGasUsed,
      effectiveGasPrice: r.effectiveGasPrice,
      firstLogIndex: logIndex,
      logs,
    });
    logIndex += logs.length;
  }
  return { number: input.number, hash: input.hash, receipts };
}

/** Checks receipt `i` of a block's receipts (sorted by txIndex). */
function checkReceipt(block: number, sorted: readonly ReceiptInput[], i: number): void {
  // Labels are built only on failure (no closure per receipt: this runs for every receipt).
  const at = receiptLabel;
  const r = sorted[i]!;
  if (!isBytes(r.txHash, 32)) checkLength(r.txHash, 32, `${at(block, i)} txHash`);
  if (!Number.isInteger(r.txIndex) || r.txIndex < 0 || r.txIndex > 0xffffffff) {
    throw invalid(`${at(block, i)} txIndex must be a u32, got ${r.txIndex}`);
  }
  if (i > 0 && sorted[i - 1]!.txIndex === r.txIndex) {
    throw invalid(`block ${block} has two receipts with txIndex ${r.txIndex}`);
  }
  if (!Number.isInteger(r.type) || r.type < 0 || r.type > 255)
    throw invalid(`${at(block, i)} type ${r.type}`);
  if (r.status !== 0 && r.status !== 1)
    throw invalid(`${at(block, i)} status must be 0 or 1, got ${r.status}`);
  if (!isBytes(r.from, 20)) checkLength(r.from, 20, `${at(block, i)} from`);
  if (r.to !== undefined && !isBytes(r.to, 20)) checkLength(r.to, 20, `${at(block, i)} to`);
  if (r.contractAddress !== undefined && !isBytes(r.contractAddress, 20)) {
    checkLength(r.contractAddress, 20, `${at(block, i)} contractAddress`);
  }
  checkU64(r.gasUsed, 'gasUsed', block, i);
  checkU64(r.cumulativeGasUsed, 'cumulativeGasUsed', block, i);
  checkU64(r.effectiveGasPrice, 'effectiveGasPrice', block, i);
  if (typeof r.effectiveGasPrice !== 'bigint')
    throw invalid(`${at(block, i)} effectiveGasPrice must be a bigint`);
  if (!Array.isArray(r.logs)) throw invalid(`${at(block, i)} logs must be an array`);
  for (let j = 0; j < r.logs.length; j++) {
    const log = r.logs[j]!;
    if (!isBytes(log.address, 20)) checkLength(log.address, 20, `${at(block, i)} log ${j} address`);
    const topics = log.topics;
    if (topics.length > 4) throw invalid(`${at(block, i)} log ${j} has ${topics.length} topics (max 4)`);
    for (let t = 0; t < topics.length; t++) {
      if (!isBytes(topics[t], 32)) checkLength(topics[t], 32, `${at(block, i)} log ${j} topic`);
    }
    if (!(log.data instanceof Uint8Array)) throw invalid(`${at(block, i)} log ${j} data must be bytes`);
  }
}

function receiptLabel(block: number, i: number): string {
  return `block ${block} receipt ${i}`;
}

/** Block number of an encoded block entry (its framing checked by visitBlockEntry). */
export function entryBlockNumber(entry: Uint8Array): number {
  return (
    ((entry[5]! | (entry[6]! << 8) | (entry[7]! << 16) | (entry[8]! << 24)) >>> 0) * 0x100000000 +
    ((entry[1]! | (entry[2]! << 8) | (entry[3]! << 16) | (entry[4]! << 24)) >>> 0)
  );
}

/** Receives the receipts and logs of an encoded block entry as offsets into it (visitBlockEntry). */
export interface BlockEntryVisitor {
  /** A receipt: its 32-byte tx hash starts at `txHashAt`. */
  receipt(entry: Uint8Array, txHashAt: number, txIndex: number): void;
  /** A log: its 20-byte address at `addressAt`, its 32-byte topic0 at `topic0At` (-1: no topics). */
  log(entry: Uint8Array, addressAt: number, topic0At: number, txIndex: number, logIndex: number): void;
}

/**
 * Walks an encoded block entry (the write path's own encoding, or a WAL record whose frame CRC was
 * checked) and hands each receipt and log to `visitor` by offset: no object per receipt or log.
 * Every length is bounds-checked against the entry; returns the entry's log count.
 */
export function visitBlockEntry(entry: Uint8Array, visitor: BlockEntryVisitor): number {
  const what = 'receipt block entry';
  const count = entryHeader(entry, what);
  let pos = ENTRY_HEADER_BYTES;
  let logs = 0;
  for (let i = 0; i < count; i++) {
    const end = bodyEnd(entry, pos, what);
    // Body: version 1 | blockHash 32 | txHash 32 | txIndex 4 | type 1 | status 1 | flags 1 | from 20 ...
    const body = pos + 4;
    if (body + 112 > end) throw corrupt(what, `receipt body ${i} is ${end - body} bytes`);
    const txIndex = readU32(entry, body + 65);
    visitor.receipt(entry, body + 33, txIndex);
    const flags = entry[body + 71]!;
    let at = body + 92 + (flags & 1 ? 20 : 0) + (flags & 2 ? 20 : 0) + 24;
    if (at + 8 > end) throw corrupt(what, `receipt body ${i} is ${end - body} bytes`);
    let logIndex = readU32(entry, at);
    const logCount = readU32(entry, at + 4);
    at += 8;
    for (let j = 0; j < logCount; j++, logIndex++) {
      if (at + 21 > end) throw corrupt(what, `log ${j} of receipt body ${i} runs past it`);
      const addressAt = at;
      const topicCount = entry[at + 20]!;
      at += 21 + 32 * topicCount;
      if (at + 4 > end) throw corrupt(what, `log ${j} of receipt body ${i} runs past it`);
      at += 4 + readU32(entry, at);
      if (at > end - 4) throw corrupt(what, `log ${j} of receipt body ${i} runs past it`);
      visitor.log(entry, addressAt, topicCount > 0 ? addressAt + 21 : -1, txIndex, logIndex);
    }
    logs += logCount;
    pos = end;
  }
  if (pos !== entry.length - 4) throw corrupt(what, `${entry.length - 4 - pos} bytes after the last body`);
  return logs;
}

function readU32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}

/** One log read out of an encoded body without decoding the rest (the log-query hot path). */
export interface BodyLog {
  blockHash: Uint8Array;
  txHash: Uint8Array;
  txIndex: number;
  firstLogIndex: number;
  logCount: number;
  log: LogInput | undefined;
}

/**
 * Checks the body's CRC, then walks to log `logIndex` (block-wide) and decodes only that one; byte
 * fields are views into `bytes`. `log` is undefined when the index is outside this receipt.
 */
export function readLogFromBody(bytes: Uint8Array, logIndex: number): BodyLog {
  const what = 'hot-tier receipt body';
  const body = checkCrc(bytes, what);
  if (body[0] !== RECEIPT_BODY_VERSION) throw corrupt(what, `unknown version ${body[0]}`);
  const r = new ByteReader(body, what, false);
  r.u8();
  const blockHash = r.bytes(32);
  const txHash = r.bytes(32);
  const txIndex = r.u32();
  r.u8();
  r.u8();
  const flags = r.u8();
  r.bytes(20 + (flags & 1 ? 20 : 0) + (flags & 2 ? 20 : 0) + 24);
  const firstLogIndex = r.u32();
  const logCount = r.u32();
  const target = logIndex - firstLogIndex;
  if (target < 0 || target >= logCount)
    return { blockHash, txHash, txIndex, firstLogIndex, logCount, log: undefined };
  for (let i = 0; i < target; i++) {
    r.bytes(20);
    r.bytes(32 * r.u8());
    r.bytes(r.u32());
  }
  const address = r.bytes(20);
  const topicCount = r.u8();
  const topics: Uint8Array[] = [];
  for (let t = 0; t < topicCount; t++) topics.push(r.bytes(32));
  const data = r.bytes(r.u32());
  return { blockHash, txHash, txIndex, firstLogIndex, logCount, log: { address, topics, data } };
}
