import { toHex } from '../lib/bytes.ts';
import { CairnError } from '../lib/errors.ts';
import { ByteReader, ByteWriter } from './byteCodec.ts';
import {
  type AppProposal,
  type AppQC,
  type Block,
  type BlockHeader,
  type CommitQC,
  type FullCommitQC,
  HASH_BYTES,
  type LaneId,
  type LaneRange,
  MAX_BLOCKS_PER_LANE_PER_COMMIT,
  MAX_COMMITTEE_SIZE,
  MAX_PAYLOAD_BYTES,
  type PruneAnchor,
  PUBLIC_KEY_BYTES,
  type QuorumSignature,
  SIGNATURE_BYTES,
  type SignedLaneProposal,
} from './types.ts';

/**
 * Deterministic, versioned binary encodings of the consensus records.
 *
 * Every top-level encoding starts with two bytes: a record tag (which type this is, so a record
 * filed in the wrong log is caught) and a format version (1). The rest is fixed-width little-endian
 * integers, fixed-size keys and hashes, and u32-length-prefixed byte strings. Decoding is strict:
 * unknown tag or version, out-of-bounds lengths, unsorted lanes, inconsistent ranges and trailing
 * bytes all throw `CairnError('DECODE')`; a decoder never returns a half-built object. Because the
 * decoder accepts exactly one encoding per value, re-encoding a decoded record yields the same bytes.
 */

export const FORMAT_VERSION = 1;

/** Record tags (first byte of every encoding). */
export const RecordTag = {
  blockHeader: 0x48, // 'H'
  block: 0x42, // 'B'
  signedLaneProposal: 0x50, // 'P'
  commitQC: 0x43, // 'C'
  appQC: 0x41, // 'A'
  fullCommitQC: 0x46, // 'F'
  pruneAnchor: 0x4e, // 'N'
} as const;

/** Encoded size of a header body (no tag/version): lane, number, parent hash, payload hash. */
export const HEADER_BODY_BYTES = PUBLIC_KEY_BYTES + 8 + HASH_BYTES + HASH_BYTES;
const LANE_RANGE_BYTES = PUBLIC_KEY_BYTES + 8 + 8 + HASH_BYTES;
const SIGNATURE_ENTRY_BYTES = PUBLIC_KEY_BYTES + SIGNATURE_BYTES;
/** Upper bound of the headers a FullCommitQC can carry (every lane at the per-commit maximum). */
export const MAX_FULL_QC_HEADERS = MAX_COMMITTEE_SIZE * MAX_BLOCKS_PER_LANE_PER_COMMIT;
/** Upper bound of an encoded CommitQC (used to bound nested lengths). */
export const MAX_COMMIT_QC_BYTES =
  2 + 8 * 4 + 2 + MAX_COMMITTEE_SIZE * (LANE_RANGE_BYTES + SIGNATURE_ENTRY_BYTES) + 2;
const MAX_APP_QC_BYTES = 2 + 8 + 8 + HASH_BYTES + 2 + MAX_COMMITTEE_SIZE * SIGNATURE_ENTRY_BYTES;

// ---------------------------------------------------------------- helpers

function writeKey(w: ByteWriter, hex: string, field: string): void {
  const cached = keyCache.get(hex);
  if (cached !== undefined) {
    w.fixed(cached);
    return;
  }
  if (hex.length !== PUBLIC_KEY_BYTES * 2 || !/^[0-9a-f]+$/.test(hex)) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `${field} must be ${PUBLIC_KEY_BYTES * 2} lowercase hex chars, got "${hex}"`,
    );
  }
  w.fixed(keyBytes(hex));
}

/**
 * Decoded keys, cached: a committee has a few hundred members at most, and every lane block
 * encodes its lane key (hex → bytes) at least twice on the hot path. Bounded, so arbitrary input
 * cannot grow it without limit.
 */
const keyCache = new Map<string, Uint8Array>();
const KEY_CACHE_MAX = 4096;

function keyBytes(hex: string): Uint8Array {
  let bytes = keyCache.get(hex);
  if (bytes === undefined) {
    bytes = new Uint8Array(Buffer.from(hex, 'hex'));
    if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
    keyCache.set(hex, bytes);
  }
  return bytes;
}

function readKey(r: ByteReader, field: string): string {
  return toHex(r.fixed(PUBLIC_KEY_BYTES, field));
}

function writeHash(w: ByteWriter, hash: Uint8Array, field: string): void {
  if (hash.byteLength !== HASH_BYTES) {
    throw new CairnError('INVALID_ARGUMENT', `${field} must be ${HASH_BYTES} bytes, got ${hash.byteLength}`);
  }
  w.fixed(hash);
}

function writeNumber(w: ByteWriter, value: number, field: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new CairnError('INVALID_ARGUMENT', `${field} must be a non-negative safe integer, got ${value}`);
  }
  w.u64(value);
}

function writeHeader(w: ByteWriter, tag: number): void {
  w.u8(tag).u8(FORMAT_VERSION);
}

function readHeader(r: ByteReader, tag: number): void {
  const got = r.u8('record tag');
  if (got !== tag) {
    r.fail(`expected record tag 0x${tag.toString(16)}, got 0x${got.toString(16)}`, { tag: got });
  }
  const version = r.u8('format version');
  if (version !== FORMAT_VERSION)
    r.fail(`unsupported format version ${version} (this build reads ${FORMAT_VERSION})`);
}

function writeSignatures(w: ByteWriter, sigs: readonly QuorumSignature[], field: string): void {
  if (sigs.length > MAX_COMMITTEE_SIZE) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `${field}: ${sigs.length} signatures exceed the maximum ${MAX_COMMITTEE_SIZE}`,
    );
  }
  w.u16(sigs.length);
  let previous = '';
  for (const sig of sigs) {
    if (sig.signer <= previous) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `${field}: signers must be sorted and distinct (${sig.signer})`,
      );
    }
    previous = sig.signer;
    writeKey(w, sig.signer, `${field} signer`);
    if (sig.signature.byteLength !== SIGNATURE_BYTES) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `${field}: signature must be ${SIGNATURE_BYTES} bytes, got ${sig.signature.byteLength}`,
      );
    }
    w.fixed(sig.signature);
  }
}

function readSignatures(r: ByteReader, field: string): QuorumSignature[] {
  const n = r.count(`${field} count`, MAX_COMMITTEE_SIZE, SIGNATURE_ENTRY_BYTES);
  const out: QuorumSignature[] = [];
  let previous = '';
  for (let i = 0; i < n; i++) {
    const signer = readKey(r, `${field} signer`);
    if (signer <= previous) r.fail(`${field}: signer ${i} is not sorted after the previous one`);
    previous = signer;
    out.push({ signer, signature: r.fixed(SIGNATURE_BYTES, `${field} signature`) });
  }
  return out;
}

// ---------------------------------------------------------------- BlockHeader

/** Header fields without tag/version (used for hashing and inside other records). */
export function writeHeaderBody(w: ByteWriter, h: BlockHeader): void {
  writeKey(w, h.lane, 'header.lane');
  writeNumber(w, h.blockNumber, 'header.blockNumber');
  writeHash(w, h.parentHash, 'header.parentHash');
  writeHash(w, h.payloadHash, 'header.payloadHash');
}

export function readHeaderBody(r: ByteReader): BlockHeader {
  const lane = readKey(r, 'header.lane');
  const blockNumber = r.u64('header.blockNumber');
  const parentHash = r.fixed(HASH_BYTES, 'header.parentHash');
  const payloadHash = r.fixed(HASH_BYTES, 'header.payloadHash');
  return { lane, blockNumber, parentHash, payloadHash };
}

export function encodeBlockHeader(h: BlockHeader): Uint8Array {
  const w = new ByteWriter(2 + HEADER_BODY_BYTES);
  writeHeader(w, RecordTag.blockHeader);
  writeHeaderBody(w, h);
  return w.finish();
}

export function decodeBlockHeader(bytes: Uint8Array): BlockHeader {
  const r = new ByteReader(bytes, 'BlockHeader');
  readHeader(r, RecordTag.blockHeader);
  const h = readHeaderBody(r);
  r.expectEnd();
  return h;
}

// ---------------------------------------------------------------- Block / SignedLaneProposal

function writeBlockBody(w: ByteWriter, b: Block): void {
  writeHeaderBody(w, b.header);
  if (b.payload.byteLength > MAX_PAYLOAD_BYTES) {
    throw new CairnError(
      'RECORD_TOO_LARGE',
      `block ${b.header.lane.slice(0, 8)}/${b.header.blockNumber}: payload ${b.payload.byteLength} bytes exceeds ${MAX_PAYLOAD_BYTES}`,
    );
  }
  w.bytes(b.payload);
}

function readBlockBody(r: ByteReader): Block {
  const header = readHeaderBody(r);
  const payload = r.bytes('payload', MAX_PAYLOAD_BYTES);
  return { header, payload };
}

export function encodeBlock(b: Block): Uint8Array {
  const w = new ByteWriter(2 + HEADER_BODY_BYTES + 4 + b.payload.byteLength);
  writeHeader(w, RecordTag.block);
  writeBlockBody(w, b);
  return w.finish();
}

export function decodeBlock(bytes: Uint8Array): Block {
  const r = new ByteReader(bytes, 'Block');
  readHeader(r, RecordTag.block);
  const b = readBlockBody(r);
  r.expectEnd();
  return b;
}

export function encodeSignedLaneProposal(p: SignedLaneProposal): Uint8Array {
  const w = new ByteWriter(2 + HEADER_BODY_BYTES + 4 + p.block.payload.byteLength + SIGNATURE_BYTES);
  writeSignedLaneProposal(w, p);
  return w.finish();
}

/** Appends the encoding of `p` to `w` (the same bytes `encodeSignedLaneProposal` returns). */
export function writeSignedLaneProposal(w: ByteWriter, p: SignedLaneProposal): void {
  writeHeader(w, RecordTag.signedLaneProposal);
  writeBlockBody(w, p.block);
  if (p.signature.byteLength !== SIGNATURE_BYTES) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `lane proposal signature must be ${SIGNATURE_BYTES} bytes, got ${p.signature.byteLength}`,
    );
  }
  w.fixed(p.signature);
}

export function decodeSignedLaneProposal(bytes: Uint8Array): SignedLaneProposal {
  const r = new ByteReader(bytes, 'SignedLaneProposal');
  readHeader(r, RecordTag.signedLaneProposal);
  const block = readBlockBody(r);
  const signature = r.fixed(SIGNATURE_BYTES, 'signature');
  r.expectEnd();
  return { block, signature };
}

// ---------------------------------------------------------------- CommitQC

/** The signed part of a CommitQC (everything except the signatures). */
export function writeCommitQCBody(w: ByteWriter, qc: CommitQC): void {
  writeNumber(w, qc.roadIndex, 'commitQC.roadIndex');
  writeNumber(w, qc.viewNumber, 'commitQC.viewNumber');
  writeNumber(w, qc.createdAtMs, 'commitQC.createdAtMs');
  writeNumber(w, qc.globalFirst, 'commitQC.globalFirst');
  if (qc.laneRanges.length > MAX_COMMITTEE_SIZE) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `commitQC: ${qc.laneRanges.length} lane ranges exceed ${MAX_COMMITTEE_SIZE}`,
    );
  }
  w.u16(qc.laneRanges.length);
  let previous = '';
  let total = qc.globalFirst;
  for (const lr of qc.laneRanges) {
    if (lr.lane <= previous) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `commitQC ${qc.roadIndex}: lane ranges must be sorted and distinct`,
      );
    }
    previous = lr.lane;
    if (lr.next < lr.first) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `commitQC ${qc.roadIndex}: lane ${lr.lane.slice(0, 8)} range [${lr.first}, ${lr.next}) is inverted`,
      );
    }
    total += lr.next - lr.first;
    if (!Number.isSafeInteger(total))
      throw new CairnError('INVALID_ARGUMENT', 'commitQC global range overflows');
    writeKey(w, lr.lane, 'laneRange.lane');
    writeNumber(w, lr.first, 'laneRange.first');
    writeNumber(w, lr.next, 'laneRange.next');
    writeHash(w, lr.lastHash, 'laneRange.lastHash');
  }
}

function readCommitQCBody(r: ByteReader): Omit<CommitQC, 'signatures'> {
  const roadIndex = r.u64('roadIndex');
  const viewNumber = r.u64('viewNumber');
  const createdAtMs = r.u64('createdAtMs');
  const globalFirst = r.u64('globalFirst');
  const n = r.count('lane range count', MAX_COMMITTEE_SIZE, LANE_RANGE_BYTES);
  const laneRanges: LaneRange[] = [];
  let previous = '';
  let total = globalFirst;
  for (let i = 0; i < n; i++) {
    const lane = readKey(r, 'laneRange.lane');
    if (lane <= previous) r.fail(`lane range ${i} is not sorted after the previous one`);
    previous = lane;
    const first = r.u64('laneRange.first');
    const next = r.u64('laneRange.next');
    if (next < first) r.fail(`lane range ${i} [${first}, ${next}) is inverted`);
    total += next - first;
    if (!Number.isSafeInteger(total)) r.fail('global range overflows 2^53-1');
    laneRanges.push({ lane, first, next, lastHash: r.fixed(HASH_BYTES, 'laneRange.lastHash') });
  }
  return { roadIndex, viewNumber, createdAtMs, globalFirst, laneRanges };
}

export function encodeCommitQC(qc: CommitQC): Uint8Array {
  const w = new ByteWriter(
    64 + qc.laneRanges.length * LANE_RANGE_BYTES + qc.signatures.length * SIGNATURE_ENTRY_BYTES,
  );
  writeHeader(w, RecordTag.commitQC);
  writeCommitQCBody(w, qc);
  writeSignatures(w, qc.signatures, 'commitQC signatures');
  return w.finish();
}

function readCommitQC(r: ByteReader): CommitQC {
  readHeader(r, RecordTag.commitQC);
  const body = readCommitQCBody(r);
  const signatures = readSignatures(r, 'signatures');
  return { ...body, signatures };
}

export function decodeCommitQC(bytes: Uint8Array): CommitQC {
  const r = new ByteReader(bytes, 'CommitQC');
  const qc = readCommitQC(r);
  r.expectEnd();
  return qc;
}

// ---------------------------------------------------------------- AppQC

export function writeAppProposalBody(w: ByteWriter, p: AppProposal): void {
  writeNumber(w, p.roadIndex, 'appProposal.roadIndex');
  writeNumber(w, p.globalNumber, 'appProposal.globalNumber');
  writeHash(w, p.appHash, 'appProposal.appHash');
}

export function encodeAppQC(qc: AppQC): Uint8Array {
  const w = new ByteWriter(64 + qc.signatures.length * SIGNATURE_ENTRY_BYTES);
  writeHeader(w, RecordTag.appQC);
  writeAppProposalBody(w, qc.proposal);
  writeSignatures(w, qc.signatures, 'appQC signatures');
  return w.finish();
}

function readAppQC(r: ByteReader): AppQC {
  readHeader(r, RecordTag.appQC);
  const roadIndex = r.u64('roadIndex');
  const globalNumber = r.u64('globalNumber');
  const appHash = r.fixed(HASH_BYTES, 'appHash');
  const signatures = readSignatures(r, 'signatures');
  return { proposal: { roadIndex, globalNumber, appHash }, signatures };
}

export function decodeAppQC(bytes: Uint8Array): AppQC {
  const r = new ByteReader(bytes, 'AppQC');
  const qc = readAppQC(r);
  r.expectEnd();
  return qc;
}

// ---------------------------------------------------------------- FullCommitQC

/** Number of global blocks a CommitQC finalizes. */
function rangeLength(qc: CommitQC): number {
  let n = 0;
  for (const lr of qc.laneRanges) n += lr.next - lr.first;
  return n;
}

export function encodeFullCommitQC(full: FullCommitQC): Uint8Array {
  const expected = rangeLength(full.qc);
  if (full.headers.length !== expected) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `FullCommitQC ${full.qc.roadIndex}: ${full.headers.length} headers for a range of ${expected} blocks`,
    );
  }
  const qcBytes = encodeCommitQC(full.qc);
  const w = new ByteWriter(2 + 4 + qcBytes.byteLength + 4 + full.headers.length * HEADER_BODY_BYTES);
  writeHeader(w, RecordTag.fullCommitQC);
  w.bytes(qcBytes);
  w.u32(full.headers.length);
  for (const h of full.headers) writeHeaderBody(w, h);
  return w.finish();
}

export function decodeFullCommitQC(bytes: Uint8Array): FullCommitQC {
  const r = new ByteReader(bytes, 'FullCommitQC');
  readHeader(r, RecordTag.fullCommitQC);
  const qc = decodeCommitQC(r.bytes('commitQC', MAX_COMMIT_QC_BYTES));
  const n = r.count('header count', MAX_FULL_QC_HEADERS, HEADER_BODY_BYTES, 4);
  const expected = rangeLength(qc);
  if (n !== expected) r.fail(`${n} headers for a CommitQC range of ${expected} blocks`);
  const headers: BlockHeader[] = [];
  for (let i = 0; i < n; i++) headers.push(readHeaderBody(r));
  r.expectEnd();
  // Headers must follow the QC's lane ranges in canonical order: lane by lane, numbers ascending.
  let i = 0;
  for (const lr of qc.laneRanges) {
    for (let number = lr.first; number < lr.next; number++, i++) {
      const h = headers[i]!;
      if (h.lane !== lr.lane || h.blockNumber !== number) {
        r.fail(
          `header ${i} is ${h.lane.slice(0, 8)}/${h.blockNumber}, expected ${lr.lane.slice(0, 8)}/${number}`,
        );
      }
    }
  }
  return { qc, headers };
}

// ---------------------------------------------------------------- PruneAnchor

export function encodePruneAnchor(anchor: PruneAnchor): Uint8Array {
  if (anchor.appQC.proposal.roadIndex !== anchor.commitQC.roadIndex) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `prune anchor: AppQC road ${anchor.appQC.proposal.roadIndex} != CommitQC road ${anchor.commitQC.roadIndex}`,
    );
  }
  const app = encodeAppQC(anchor.appQC);
  const qc = encodeCommitQC(anchor.commitQC);
  const w = new ByteWriter(2 + 8 + app.byteLength + qc.byteLength);
  writeHeader(w, RecordTag.pruneAnchor);
  w.bytes(app);
  w.bytes(qc);
  return w.finish();
}

export function decodePruneAnchor(bytes: Uint8Array): PruneAnchor {
  const r = new ByteReader(bytes, 'PruneAnchor');
  readHeader(r, RecordTag.pruneAnchor);
  const appQC = decodeAppQC(r.bytes('appQC', MAX_APP_QC_BYTES));
  const commitQC = decodeCommitQC(r.bytes('commitQC', MAX_COMMIT_QC_BYTES));
  r.expectEnd();
  if (appQC.proposal.roadIndex !== commitQC.roadIndex) {
    r.fail(`AppQC road ${appQC.proposal.roadIndex} does not match CommitQC road ${commitQC.roadIndex}`);
  }
  return { appQC, commitQC };
}

// ---------------------------------------------------------------- codec objects

export interface Codec<T> {
  readonly name: string;
  encode(value: T): Uint8Array;
  /**
   * Optional: appends the same bytes as `encode` to a writer. Logs that copy records straight
   * into their own buffers use it to encode into one reused scratch buffer instead of allocating
   * a new one per record (the lane block hot path).
   */
  encodeInto?(w: ByteWriter, value: T): void;
  /** Throws CairnError('DECODE') on malformed input. */
  decode(bytes: Uint8Array): T;
}

export const signedLaneProposalCodec: Codec<SignedLaneProposal> = {
  name: 'SignedLaneProposal',
  encode: encodeSignedLaneProposal,
  encodeInto: writeSignedLaneProposal,
  decode: decodeSignedLaneProposal,
};
export const commitQCCodec: Codec<CommitQC> = {
  name: 'CommitQC',
  encode: encodeCommitQC,
  decode: decodeCommitQC,
};
export const appQCCodec: Codec<AppQC> = { name: 'AppQC', encode: encodeAppQC, decode: decodeAppQC };
export const fullCommitQCCodec: Codec<FullCommitQC> = {
  name: 'FullCommitQC',
  encode: encodeFullCommitQC,
  decode: decodeFullCommitQC,
};
export const pruneAnchorCodec: Codec<PruneAnchor> = {
  name: 'PruneAnchor',
  encode: encodePruneAnchor,
  decode: decodePruneAnchor,
};
export const blockHeaderCodec: Codec<BlockHeader> = {
  name: 'BlockHeader',
  encode: encodeBlockHeader,
  decode: decodeBlockHeader,
};
export const blockCodec: Codec<Block> = { name: 'Block', encode: encodeBlock, decode: decodeBlock };

/** Shortened lane id for messages. */
export function shortLane(lane: LaneId): string {
  return lane.slice(0, 12);
}
