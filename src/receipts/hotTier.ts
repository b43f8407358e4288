import type { KvBatch, OrderedKv } from '../kv/orderedKv.ts';
import { bytesEqual } from '../lib/bytes.ts';
import { CairnError, describe } from '../lib/errors.ts';
import { ByteSlab } from './byteSlab.ts';
import {
  type BlockEntryVisitor,
  decodeReceiptBody,
  entryBlockNumber,
  entryBodies,
  findReceiptBody,
  readLogFromBody,
  visitBlockEntry,
} from './codec.ts';
import { logMatches, type NormalizedFilter } from './logFilter.ts';
import { decodePostings, dropBelow, type Posting, PostingBucket, postingsBytes } from './postings.ts';
import type { Log, LogInput, StoredReceipt } from './types.ts';

/**
 * The hot tier: receipts with their logs and the indexes that answer point reads and selective
 * log filters, in an ordered KV store (LevelDB in production). It is derived data: every block in
 * it came from the receipt WAL (or from an archive file), so it can be checked and rebuilt.
 *
 * Keys (block numbers and log indices big-endian so byte order is numeric order):
 *   '~' block u64                         → the block's entry as in the WAL (codec.ts): every receipt
 *                                           body with its logs, each body CRC-checked on read
 *   'A' address 20 bucket u64             → that address's postings in the bucket (postings.ts)
 *   'C' topic0 32 bucket u64              → that topic0's postings in the bucket
 *   't' txHash 32                         → block u64 txIndex u32   (tx-hash index)
 *   'k' block u64                         → blockHash 32 | entryCrc u32 | txCount u32 | logCount u32
 *   'H' blockHash 32                      → block u64
 *   'm' 'S'                               → u64: every block ≤ this is durable here (synced batch)
 *   'm' 'P'                               → u64: bodies and postings below this are deleted (synced)
 *   'm' 'V'                               → u32 layout version (4) | u32 blocks per posting bucket
 *
 * Bodies and postings live for the hot window ([hotFloor, latest]); the tx-hash and block-hash
 * indexes live as long as the archive keeps the block, so a hash lookup is one KV read for any
 * retained block and a miss is a definite not-found. The posting bucket that is still filling lives
 * in memory (see postings.ts); the synced checkpoint covers closed buckets only.
 */

/**
 * Block values use the highest prefix of all, and no other key may sort above them. Why: they are
 * ~85 % of the bytes and arrive in block order, while every batch also writes random keys (tx and
 * block hashes, postings) that make each level-0 table span the key space below the newest bodies.
 * With the bodies on top, a new body table lies above every older table's range, so LevelDB moves
 * it down a level without rewriting it (a "trivial move"); with the bodies in the middle ('r',
 * layout 3) older body tables overlapped and were rewritten at every level. Measured over 40,000
 * bench blocks: bytes rewritten by compaction 538 → 332 MiB, compaction CPU ~6.3 → ~4.5 s.
 */
const P_BODY = 0x7e; // '~'
const P_ADDR = 0x41; // 'A'
const P_TOPIC0 = 0x43; // 'C'
const P_TX = 0x74; // 't'
const P_BLOCK = 0x6b; // 'k'
const P_BLOCK_HASH = 0x48; // 'H'
const META_SYNCED = Uint8Array.of(0x6d, 0x53);
const META_PRUNED = Uint8Array.of(0x6d, 0x50);
const META_FORMAT = Uint8Array.of(0x6d, 0x56);
/**
 * Layout 1 had one posting key per log ('a', 'c'); layout 2 packs them per bucket of blocks;
 * layout 3 keeps a block's receipt bodies in one value (its WAL entry) instead of one key per
 * receipt ('r' block txIndex): about 8 fewer puts per block of 25 logs on the ingest path;
 * layout 4 moves those block values from 'r' to '~', above every other key (see P_BODY).
 */
const FORMAT_VERSION = 4;
/** Closed buckets read with synchronous point reads up to this many; an iterator beyond. */
const MAX_POINT_READ_BUCKETS = 32;

export interface BlockMeta {
  hash: Uint8Array;
  entryCrc: number;
  txCount: number;
  logCount: number;
}

export interface TxLocation {
  block: number;
  txIndex: number;
}

export interface HotQueryLimits {
  maxResults: number;
  maxBytes: number;
  signal: AbortSignal | undefined;
  /** Current floor of the hot tier; a body missing below it was pruned by a concurrent prune. */
  hotFloor: () => number;
}

// Big-endian integer fields written byte by byte: cheaper than a DataView per key on the ingest path.
function setU32(out: Uint8Array, offset: number, value: number): void {
  out[offset] = value >>> 24;
  out[offset + 1] = (value >>> 16) & 255;
  out[offset + 2] = (value >>> 8) & 255;
  out[offset + 3] = value & 255;
}
function getU32(bytes: Uint8Array, offset: number): number {
  return (
    ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>>
    0
  );
}
function setU64(out: Uint8Array, offset: number, value: number): void {
  setU32(out, offset, Math.floor(value / 0x100000000));
  setU32(out, offset + 4, value >>> 0);
}
function getU64(bytes: Uint8Array, offset: number): number {
  return getU32(bytes, offset) * 0x100000000 + getU32(bytes, offset + 4);
}

function bodyKey(block: number): Uint8Array {
  const k = new Uint8Array(9);
  k[0] = P_BODY;
  setU64(k, 1, block);
  return k;
}
function postingKey(prefix: number, value: Uint8Array, bucket: number): Uint8Array {
  const k = new Uint8Array(1 + value.length + 8);
  k[0] = prefix;
  k.set(value, 1);
  setU64(k, 1 + value.length, bucket);
  return k;
}
function txKey(hash: Uint8Array): Uint8Array {
  const k = new Uint8Array(33);
  k[0] = P_TX;
  k.set(hash, 1);
  return k;
}
function blockKey(block: number): Uint8Array {
  const k = new Uint8Array(9);
  k[0] = P_BLOCK;
  setU64(k, 1, block);
  return k;
}
function blockHashKey(hash: Uint8Array): Uint8Array {
  const k = new Uint8Array(33);
  k[0] = P_BLOCK_HASH;
  k.set(hash, 1);
  return k;
}
/** Keys and values staged into write batches, as views into shared chunks (see byteSlab.ts). */
const staged = new ByteSlab();
function stagedBodyKey(block: number): Uint8Array {
  const k = staged.take(9);
  k[0] = P_BODY;
  setU64(k, 1, block);
  return k;
}
/** Copies `length` bytes (a hash) from `from` at `fromAt` to `to` at `toAt`. */
function copyBytes(to: Uint8Array, toAt: number, from: Uint8Array, fromAt: number, length: number): void {
  for (let i = 0; i < length; i++) to[toAt + i] = from[fromAt + i]!;
}

/**
 * Indexes the receipts and logs of one block entry as visitBlockEntry walks it: a tx-hash index
 * put per receipt, postings per log. One instance per hot tier, its fields set for each block.
 */
class BlockStager implements BlockEntryVisitor {
  batch: KvBatch | undefined;
  bucket: PostingBucket | undefined;
  block = 0;
  receipts = 0;

  receipt(entry: Uint8Array, txHashAt: number, txIndex: number): void {
    this.receipts++;
    const key = staged.take(33);
    key[0] = P_TX;
    copyBytes(key, 1, entry, txHashAt, 32);
    const v = staged.take(12);
    setU64(v, 0, this.block);
    setU32(v, 8, txIndex);
    this.batch!.put(key, v);
  }

  log(entry: Uint8Array, addressAt: number, topic0At: number, txIndex: number, logIndex: number): void {
    const bucket = this.bucket!;
    bucket.addAt('address', entry, addressAt, 20, this.block, txIndex, logIndex);
    if (topic0At >= 0) bucket.addAt('topic', entry, topic0At, 32, this.block, txIndex, logIndex);
  }
}
function u64Value(v: number): Uint8Array {
  const out = new Uint8Array(8);
  setU64(out, 0, v);
  return out;
}

/** Turns an engine failure into the fatal typed error a store latches. */
export function engineError(what: string, err: unknown): CairnError {
  if (err instanceof CairnError) return err;
  return new CairnError('IO_FATAL', `hot tier ${what} failed: ${describe(err)}`, { cause: err });
}

const PAGE = 1024;
/** Block values (all receipts of a block, a few KiB to MiBs) per page of a scan. */
const BLOCK_PAGE = 64;
/** Most receipt bodies one log query fetches at a time. */
const BODY_CHUNK = 1024;
/**
 * Most receipt bodies of one chunk read synchronously (a cached read is a few µs, the event-loop
 * stall stays ~1 ms); more come in one getMany. Measured in the receipts bench on a loaded machine:
 * 10k-block p50 1.1-1.2 ms synchronous versus 2.2 ms with getMany above 24 bodies.
 */
const MAX_SYNC_BODY_READS = 256;

export class HotTier {
  /** The bucket still filling (memory only), and buckets staged in a batch not yet written. */
  private open: PostingBucket | undefined;
  private sealing: PostingBucket[] = [];
  private readonly stager = new BlockStager();

  constructor(
    readonly kv: OrderedKv,
    /** Blocks per posting bucket (part of the layout: another value rebuilds the tier). */
    private readonly span: number,
  ) {}

  private bucketOf(block: number): number {
    return Math.floor(block / this.span);
  }

  /**
   * Checks the layout version. A hot tier of another layout (or none: new, or older than the
   * version key) is emptied, so open rebuilds it from the archive and the WAL. Returns whether it was.
   */
  async ensureLayout(): Promise<boolean> {
    const v = this.get(META_FORMAT, 'layout version');
    if (v?.length === 8 && getU32(v, 0) === FORMAT_VERSION && getU32(v, 4) === this.span) return false;
    // Each page is read after the last key deleted, not from the first key again: on LevelDB that
    // scan would walk every tombstone of the pages before it (quadratic in the tier's size).
    let after: Uint8Array | undefined;
    for (;;) {
      const page = await this.range(
        'every key (layout change)',
        after === undefined ? { gte: new Uint8Array(0), limit: PAGE } : { gt: after, limit: PAGE },
      );
      if (page.length === 0) break;
      const batch = this.kv.batch();
      for (const e of page) batch.del(e.key);
      await this.writeBatch(batch, false, 'layout reset');
      after = page[page.length - 1]!.key;
    }
    const version = new Uint8Array(8);
    setU32(version, 0, FORMAT_VERSION);
    setU32(version, 4, this.span);
    await this.writeBatch(this.kv.batch().put(META_FORMAT, version), true, 'layout version');
    return true;
  }

  /**
   * Rebuilds the filling bucket before blocks from `next` on are (re)applied: the bucket of block
   * `next - 1` (which may never have been written: a bucket is written only once a later block
   * arrives), from the bodies of its blocks below `next` (durable here: below the replay point).
   */
  async resetPostings(next: number): Promise<void> {
    const bucket = this.bucketOf(Math.max(next - 1, 0));
    const open = new PostingBucket(bucket, this.span);
    const start = bucket * this.span;
    for (let from = start; from < next; ) {
      const page = await this.range('receipt bodies', {
        gte: bodyKey(from),
        lt: bodyKey(next),
        limit: BLOCK_PAGE,
      });
      for (const e of page) {
        const block = getU64(e.key, 1);
        for (const r of decodeBodies(e.value)) addPostings(open, block, r.txIndex, r.firstLogIndex, r.logs);
      }
      if (page.length < BLOCK_PAGE) break;
      from = getU64(page[page.length - 1]!.key, 1) + 1;
    }
    this.open = open;
    this.sealing = [];
  }

  /** The staged batch was written: its closed buckets are now read from the KV store. */
  postingsWritten(): void {
    this.sealing = [];
  }

  private get(key: Uint8Array, what: string): Uint8Array | undefined {
    try {
      return this.kv.get(key);
    } catch (err) {
      throw engineError(`read of ${what}`, err);
    }
  }

  private async range(
    what: string,
    r: Parameters<OrderedKv['range']>[0],
  ): Promise<Awaited<ReturnType<OrderedKv['range']>>> {
    try {
      return await this.kv.range(r);
    } catch (err) {
      throw engineError(`scan of ${what}`, err);
    }
  }

  syncedThrough(): number | undefined {
    const v = this.get(META_SYNCED, 'checkpoint');
    return v === undefined ? undefined : getU64(v, 0);
  }

  prunedTo(): number {
    const v = this.get(META_PRUNED, 'prune checkpoint');
    return v === undefined ? 0 : getU64(v, 0);
  }

  /** A synced batch recording that every block ≤ `block` is durable here (LevelDB syncs its whole log). */
  async writeSyncedCheckpoint(block: number): Promise<void> {
    const b = this.kv.batch().put(META_SYNCED, u64Value(block));
    try {
      await b.write({ sync: true });
    } catch (err) {
      throw engineError('checkpoint write', err);
    }
  }

  blockMeta(block: number): BlockMeta | undefined {
    const v = this.get(blockKey(block), `block ${block} metadata`);
    if (v === undefined) return undefined;
    if (v.length !== 44)
      throw new CairnError('CORRUPT', `hot tier: block ${block} metadata is ${v.length} bytes`);
    return { hash: v.slice(0, 32), entryCrc: getU32(v, 32), txCount: getU32(v, 36), logCount: getU32(v, 40) };
  }

  blockNumberByHash(hash: Uint8Array): number | undefined {
    const v = this.get(blockHashKey(hash), 'block-hash index');
    return v === undefined ? undefined : getU64(v, 0);
  }

  txLocation(hash: Uint8Array): TxLocation | undefined {
    const v = this.get(txKey(hash), 'tx-hash index');
    if (v === undefined) return undefined;
    if (v.length !== 12)
      throw new CairnError('CORRUPT', `hot tier: tx-hash index value is ${v.length} bytes`);
    return { block: getU64(v, 0), txIndex: getU32(v, 8) };
  }

  body(block: number, txIndex: number): { blockHash: Uint8Array; receipt: StoredReceipt } | undefined {
    const v = this.get(bodyKey(block), `receipts of block ${block}`);
    const body = v === undefined ? undefined : findReceiptBody(v, txIndex);
    return body === undefined ? undefined : decodeReceiptBody(body);
  }

  /**
   * Stages one block into `batch` from its encoded block entry (codec.ts: the write path's
   * encodeBlock, or a WAL record): the entry is stored as the block's value (none for a block
   * without receipts) and its receipts and logs are indexed by offset, without decoding them.
   * Re-staging a block already present is idempotent. When a tx hash appears in two blocks the
   * index points at the later one, as geth's lookup entries do: blocks are always (re)applied in
   * ascending order, so the outcome does not depend on what a crash kept.
   */
  stageBlock(batch: KvBatch, entry: Uint8Array, entryCrc: number): void {
    const number = entryBlockNumber(entry);
    let open = this.open;
    const bucket = this.bucketOf(number);
    if (open === undefined || open.bucket !== bucket) {
      if (open !== undefined) {
        if (bucket < open.bucket) {
          throw new Error(`invariant violated: block ${number} staged after posting bucket ${open.bucket}`);
        }
        this.sealBucket(batch, open);
      }
      open = new PostingBucket(bucket, this.span, open?.size);
      this.open = open;
    }
    const stager = this.stager;
    stager.batch = batch;
    stager.bucket = open;
    stager.block = number;
    let logCount: number;
    try {
      logCount = visitBlockEntry(entry, stager);
    } finally {
      stager.batch = undefined;
      stager.bucket = undefined;
    }
    const receipts = stager.receipts;
    stager.receipts = 0;
    if (receipts > 0) batch.put(stagedBodyKey(number), entry);
    const key = staged.take(9);
    key[0] = P_BLOCK;
    setU64(key, 1, number);
    const meta = staged.take(44);
    copyBytes(meta, 0, entry, 9, 32);
    setU32(meta, 32, entryCrc);
    setU32(meta, 36, receipts);
    setU32(meta, 40, logCount);
    batch.put(key, meta);
    const hashKey = staged.take(33);
    hashKey[0] = P_BLOCK_HASH;
    copyBytes(hashKey, 1, entry, 9, 32);
    const at = staged.take(8);
    setU64(at, 0, number);
    batch.put(hashKey, at);
  }

  /** Puts a filled bucket's postings into `batch`; readers use the memory copy until it is written. */
  private sealBucket(batch: KvBatch, b: PostingBucket): void {
    for (const [prefix, map] of [
      [P_ADDR, b.addresses],
      [P_TOPIC0, b.topics],
    ] as const) {
      for (const p of map.values()) {
        const count = b.keptCount(p);
        if (count === 0) continue;
        const key = staged.take(1 + p.value.length + 8);
        key[0] = prefix;
        key.set(p.value, 1);
        setU64(key, 1 + p.value.length, b.bucket);
        batch.put(key, b.encode(p, staged.take(postingsBytes(count))));
      }
    }
    this.sealing.push(b);
  }

  /** Deletes bodies and postings of blocks in [from, to) (the tx/block indexes stay), then syncs 'P'. */
  async pruneBodies(from: number, to: number): Promise<void> {
    if (this.open !== undefined && this.open.bucket === this.bucketOf(to)) this.open.dropBelow(to);
    for (let start = from; start < to; ) {
      const entries = await this.range('receipt bodies', {
        gte: bodyKey(start),
        lt: bodyKey(to),
        limit: BLOCK_PAGE,
      });
      const batch = this.kv.batch();
      let last = start;
      // Posting buckets of the pruned logs: deleted when they end below `to`; the bucket `to` falls
      // in keeps its postings of blocks ≥ `to` (rewritten), so no posting outlives its body.
      const buckets = new Map<string, { key: Uint8Array; bucket: number }>();
      const note = (prefix: number, value: Uint8Array, bucket: number): void => {
        const key = postingKey(prefix, value, bucket);
        const id = key.join();
        if (!buckets.has(id)) buckets.set(id, { key, bucket });
      };
      for (const e of entries) {
        const block = getU64(e.key, 1);
        last = block;
        batch.del(e.key);
        const bucket = this.bucketOf(block);
        for (const r of decodeBodies(e.value)) {
          for (const log of r.logs) {
            note(P_ADDR, log.address, bucket);
            const t0 = log.topics[0];
            if (t0 !== undefined) note(P_TOPIC0, t0, bucket);
          }
        }
      }
      for (const { key, bucket } of buckets.values()) {
        if ((bucket + 1) * this.span <= to) {
          batch.del(key);
          continue;
        }
        const v = this.get(key, 'posting bucket');
        if (v === undefined) continue; // the filling bucket (memory only) or already rewritten
        const kept = dropBelow(v, bucket, this.span, to);
        if (kept === undefined) batch.del(key);
        else batch.put(key, kept);
      }
      if (entries.length < BLOCK_PAGE) {
        batch.put(META_PRUNED, u64Value(to));
        await this.writeBatch(batch, true, 'prune');
        return;
      }
      await this.writeBatch(batch, false, 'prune');
      start = last + 1;
    }
    await this.writeBatch(this.kv.batch().put(META_PRUNED, u64Value(to)), true, 'prune');
  }

  /**
   * Removes the tx-hash and block-hash index entries of blocks in [first, last] (an archive file
   * that is being retired). Only tx entries that point into that range are removed.
   */
  async pruneIndexes(first: number, last: number, txHashes: readonly Uint8Array[]): Promise<void> {
    let batch = this.kv.batch();
    for (const h of txHashes) {
      const loc = this.txLocation(h);
      if (loc !== undefined && loc.block >= first && loc.block <= last) batch.del(txKey(h));
      if (batch.length >= 4096) {
        await this.writeBatch(batch, false, 'index prune');
        batch = this.kv.batch();
      }
    }
    for (let start = first; start <= last; ) {
      const metas = await this.range('block metadata', {
        gte: blockKey(start),
        lte: blockKey(last),
        limit: PAGE,
      });
      for (const m of metas) {
        batch.del(m.key);
        const blockHash = m.value.subarray(0, 32);
        const at = this.blockNumberByHash(blockHash);
        if (at === getU64(m.key, 1)) batch.del(blockHashKey(blockHash));
      }
      if (metas.length < PAGE) break;
      start = getU64(metas[metas.length - 1]!.key, 1) + 1;
    }
    await this.writeBatch(batch, true, 'index prune');
  }

  async writeBatch(batch: KvBatch, sync: boolean, what: string): Promise<void> {
    try {
      await batch.write({ sync });
    } catch (err) {
      throw engineError(`${what} batch`, err);
    }
  }

  /** Postings of `value` in [f.fromBlock, f.toBlock] from the closed buckets first..last (KV store). */
  private async storedPostings(
    prefix: number,
    value: Uint8Array,
    first: number,
    last: number,
    f: NormalizedFilter,
    out: Posting[],
  ): Promise<void> {
    if (last < first) return;
    if (last - first + 1 <= MAX_POINT_READ_BUCKETS) {
      for (let b = first; b <= last; b++) {
        const v = this.get(postingKey(prefix, value, b), 'posting bucket');
        if (v !== undefined) decodePostings(v, b, this.span, f.fromBlock, f.toBlock, out);
      }
      return;
    }
    let gte = postingKey(prefix, value, first);
    const lte = postingKey(prefix, value, last);
    for (;;) {
      const page = await this.range('posting buckets', { gte, lte, limit: PAGE });
      for (const e of page) {
        decodePostings(e.value, getU64(e.key, 1 + value.length), this.span, f.fromBlock, f.toBlock, out);
      }
      if (page.length < PAGE) return;
      const lastKey = page[page.length - 1]!.key;
      gte = new Uint8Array(lastKey.length + 1);
      gte.set(lastKey);
    }
  }

  /**
   * eth_getLogs over [f.fromBlock, f.toBlock] (all inside the hot window), in (block, logIndex)
   * order. A selective filter walks the address (or topic0) postings; otherwise the bodies of the
   * range are scanned. Every candidate is re-checked against the full filter.
   */
  async queryLogs(f: NormalizedFilter, limits: HotQueryLimits): Promise<Log[]> {
    const out: Log[] = [];
    let bytes = 0;
    const emit = (block: number, blockHash: Uint8Array, r: StoredReceipt, i: number): void =>
      emitLog(block, blockHash, r.txHash, r.txIndex, r.firstLogIndex + i, r.logs[i]!);
    const emitLog = (
      block: number,
      blockHash: Uint8Array,
      txHash: Uint8Array,
      txIndex: number,
      logIndex: number,
      log: LogInput,
    ): void => {
      if (!logMatches(f, log)) return;
      if (out.length >= limits.maxResults) {
        throw new CairnError(
          'LIMIT_EXCEEDED',
          `log query over blocks ${f.fromBlock}..${f.toBlock} matches more than ${limits.maxResults} logs; narrow the range or the filter`,
          { details: { maxResults: limits.maxResults } },
        );
      }
      bytes += 20 + 32 * log.topics.length + log.data.length + 128;
      if (bytes > limits.maxBytes) {
        throw new CairnError(
          'LIMIT_EXCEEDED',
          `log query over blocks ${f.fromBlock}..${f.toBlock} returns more than ${limits.maxBytes} bytes; narrow the range or the filter`,
          { details: { maxBytes: limits.maxBytes } },
        );
      }
      out.push({
        address: log.address,
        topics: log.topics as Uint8Array[],
        data: log.data,
        blockNumber: block,
        blockHash,
        txHash,
        txIndex,
        logIndex,
        removed: false,
      });
    };

    const postingValues = f.addresses ?? f.topics[0];
    if (postingValues !== undefined) {
      const kind = f.addresses ? 'address' : 'topic';
      const candidates: Posting[] = [];
      const candidateCap = Math.max(limits.maxResults * 16, 100_000);
      // Buckets still in memory are the newest ones; everything below them is in the KV store.
      const memory = [...this.sealing];
      if (this.open) memory.push(this.open);
      const firstMemoryBucket = memory.length > 0 ? memory[0]!.bucket : Number.POSITIVE_INFINITY;
      const firstBucket = this.bucketOf(f.fromBlock);
      const lastStoredBucket = Math.min(this.bucketOf(f.toBlock), firstMemoryBucket - 1);
      for (const value of postingValues) {
        checkAbort(limits.signal);
        await this.storedPostings(
          kind === 'address' ? P_ADDR : P_TOPIC0,
          value,
          firstBucket,
          lastStoredBucket,
          f,
          candidates,
        );
        for (const b of memory) b.collect(kind, value, f.fromBlock, f.toBlock, candidates);
        if (candidates.length > candidateCap) {
          throw new CairnError(
            'LIMIT_EXCEEDED',
            `log query over blocks ${f.fromBlock}..${f.toBlock} scans more than ${candidateCap} index entries; narrow the range or the filter`,
          );
        }
      }
      // Buckets are read one key at a time, so a concurrent prune may have removed some: the floor
      // it raised first tells.
      if (f.fromBlock < limits.hotFloor()) throw prunedDuringRead(f.fromBlock);
      if (postingValues.length > 1) {
        candidates.sort((a, b) => a.block - b.block || a.logIndex - b.logIndex);
      }
      // Block values are fetched in chunks sized to what the result may still take, so a query that
      // matches far more logs than maxResults reads about maxResults values before the guard fires,
      // not every candidate's. Within a chunk, distinct blocks are read one by one synchronously
      // (a thread-pool hop costs more than ~100 cached reads on a busy machine), or in one engine
      // call when there are so many that the event loop would stall.
      for (let c = 0; c < candidates.length; ) {
        checkAbort(limits.signal);
        const want = Math.min(BODY_CHUNK, Math.max(32, limits.maxResults - out.length + 1));
        const blockKeys: Uint8Array[] = [];
        const blockAt: number[] = [];
        let end = c;
        for (; end < candidates.length; end++) {
          const cand = candidates[end]!;
          const prev = end > c ? candidates[end - 1] : undefined;
          if (prev && prev.block === cand.block) {
            blockAt.push(blockKeys.length - 1);
            continue;
          }
          if (blockKeys.length >= want) break;
          blockAt.push(blockKeys.length);
          blockKeys.push(bodyKey(cand.block));
        }
        let values: (Uint8Array | undefined)[];
        if (blockKeys.length > MAX_SYNC_BODY_READS) {
          try {
            values = await this.kv.getMany(blockKeys);
          } catch (err) {
            throw engineError('read of receipt bodies', err);
          }
        } else {
          values = blockKeys.map((k) => this.get(k, 'receipt bodies'));
        }
        let body: Uint8Array | undefined;
        for (let i = c; i < end; i++) {
          const cand = candidates[i]!;
          const prev = i > 0 ? candidates[i - 1]! : undefined;
          if (prev && prev.block === cand.block && prev.logIndex === cand.logIndex) continue; // duplicate value in the OR list
          if (!(prev && i > c && prev.block === cand.block && prev.txIndex === cand.txIndex)) {
            const value = values[blockAt[i - c]!];
            body = value === undefined ? undefined : findReceiptBody(value, cand.txIndex);
          }
          if (body === undefined) {
            if (cand.block < limits.hotFloor()) throw prunedDuringRead(cand.block);
            throw new CairnError(
              'CORRUPT',
              `hot tier: posting for block ${cand.block} log ${cand.logIndex} points to missing receipt ${cand.txIndex}`,
            );
          }
          const at = readLogFromBody(body, cand.logIndex);
          if (at.log === undefined) {
            throw new CairnError(
              'CORRUPT',
              `hot tier: posting for block ${cand.block} log ${cand.logIndex} is outside its receipt`,
            );
          }
          emitLog(cand.block, at.blockHash, at.txHash, at.txIndex, cand.logIndex, at.log);
        }
        c = end;
      }
      return out;
    }

    let gte = bodyKey(f.fromBlock);
    const lt = bodyKey(f.toBlock + 1);
    for (;;) {
      checkAbort(limits.signal);
      const page = await this.range('receipt bodies', { gte, lt, limit: BLOCK_PAGE });
      for (const e of page) {
        const block = getU64(e.key, 1);
        for (const body of entryBodies(e.value)) {
          const { blockHash, receipt } = decodeReceiptBody(body);
          for (let i = 0; i < receipt.logs.length; i++) emit(block, blockHash, receipt, i);
        }
      }
      if (page.length < BLOCK_PAGE) break;
      const lastKey = page[page.length - 1]!.key;
      gte = new Uint8Array(lastKey.length + 1);
      gte.set(lastKey);
    }
    return out;
  }

  /** Every receipt body of a block, in txIndex order (verification, archive rebuild). */
  async blockBodies(block: number): Promise<StoredReceipt[]> {
    // A scan, not a synchronous get: a verification of many blocks yields between them.
    const key = bodyKey(block);
    const [e] = await this.range('receipt bodies', { gte: key, lte: key, limit: 1 });
    return e === undefined ? [] : decodeBodies(e.value);
  }

  sameHash(a: Uint8Array, b: Uint8Array): boolean {
    return bytesEqual(a, b);
  }
}

/** Every receipt of a stored block value, each body's CRC checked. */
function decodeBodies(value: Uint8Array): StoredReceipt[] {
  return entryBodies(value).map((b) => decodeReceiptBody(b).receipt);
}

function addPostings(
  bucket: PostingBucket,
  block: number,
  txIndex: number,
  firstLogIndex: number,
  logs: readonly LogInput[],
): void {
  for (let i = 0; i < logs.length; i++) {
    const log = logs[i]!;
    bucket.add('address', log.address, block, txIndex, firstLogIndex + i);
    const t0 = log.topics[0];
    if (t0 !== undefined) bucket.add('topic', t0, block, txIndex, firstLogIndex + i);
  }
}

export function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw new CairnError('ABORTED', 'the log query was aborted by its AbortSignal', { cause: signal.reason });
  }
}

function prunedDuringRead(block: number): CairnError {
  return new CairnError('PRUNED', `block ${block} was pruned while the query ran`, { details: { block } });
}
