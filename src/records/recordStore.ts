import type { AbSnapshotFile } from '../io/abFile.types.ts';
import { type KvBatch, type OrderedKv, readU64BE, u64Key, writeU64BE } from '../kv/orderedKv.ts';
import { asBuffer, bytesEqual, toHex } from '../lib/bytes.ts';
import { CairnError, FatalLatch, isCairnError } from '../lib/errors.ts';
import type { WriteAheadLog } from '../wal/types.ts';
import { type DecodedRecord, decodeRecordFrame, encodeRecordFrame, MAX_HASH_BYTES } from './recordFrame.ts';

/**
 * The record layer: type-agnostic durable storage of records keyed by (kind, number), with a
 * secondary hash index. It knows nothing of consensus types.
 *
 * Storage: record bodies are appended to ONE value log (a segmented WAL on Cairn's FileSystem);
 * an ordered KV (LevelDB) holds only the index. Because every record goes through the same log,
 * durability follows issue order: a crash keeps a prefix of the appended records. The log is the
 * source of truth; the index is DERIVED from it and never trusted beyond what was synced:
 *
 *  - the index entries of records are written only after the log fsync covering them returned;
 *  - index batches are mostly unsynced, and a power cut may keep ANY subset of them (LevelDB skips
 *    a damaged log block and replays later ones), so no high-water mark rides in them. The
 *    re-index CHECKPOINT (`M checkpoint`: every log record below it is indexed) is written only in
 *    synced batches (every `checkpointEveryRecords` records, at prune and at close); a synced
 *    LevelDB write makes every earlier batch durable too;
 *  - open re-indexes [checkpoint, log end) — idempotent puts that fill any gap a lost unsynced
 *    batch left — then spot-checks the index against the log (newest and oldest entry of each kind
 *    and the last log record must point at records with that identity): a mismatch is CORRUPT and
 *    `cairn blocks reindex` rebuilds the index from the log;
 *  - records appended but not yet indexed are served from a small in-memory map (read-your-writes).
 *
 * Every number a record covers has its own index entry (a ranged record of n numbers has n), so a
 * lookup is one point read and nothing per record is held in memory.
 *
 * The prune floor is written first to Cairn's own checksummed A/B file (when given), then to the
 * KV with a synced batch, and only then is log data dropped; it only moves up, and open takes the
 * higher of the two (a lost or rebuilt index cannot bring pruned numbers back as `absent`). Reads
 * below the floor report `pruned`, by number and by hash. Index entries below the floor are swept
 * afterwards in bounded chunks; hash aliases of the newest `hashTombstoneNumbers` pruned numbers
 * are kept so that a recently pruned hash still reads `pruned` (older ones read `absent`).
 */

export type Lookup =
  | { status: 'found'; walIndex: number; record: DecodedRecord }
  | { status: 'absent' }
  | { status: 'pruned'; floor: number };

export interface Span {
  first: number;
  next: number;
}

export interface RecordStoreOptions {
  log: WriteAheadLog;
  kv: OrderedKv;
  /** Name used in error messages (the log directory). */
  name: string;
  /**
   * Kinds whose records may cover more than one number; "the record covering n" is resolved by a
   * binary search over their spans, which are kept in memory (one small entry per record). Every
   * other kind has exactly one number per record and is looked up through the KV.
   */
  rangedKinds: readonly number[];
  /** Kinds with exactly one number per record (looked up through the KV index). */
  pointKinds: readonly number[];
  /** Largest value accepted (default 32 MiB). */
  maxValueBytes?: number;
  /**
   * Cairn's own copy of the prune floor (an A/B file), with the floor it loaded (undefined when
   * never written). Written before anything is deleted; open uses the higher of it and the KV's.
   */
  floorFile?: { file: AbSnapshotFile; floor: number | undefined } | undefined;
  /** Synced index checkpoint at least every this many records (default 4096). */
  checkpointEveryRecords?: number;
  /** Pruned numbers whose hash alias still reads `pruned` (default 100,000). */
  hashTombstoneNumbers?: number;
}

interface Location extends Span {
  walIndex: number;
}

interface Pending extends Location {
  kind: number;
  hash: Uint8Array;
}

interface KindState {
  ranged: boolean;
  /** Oldest retained record (next > floor), if any. */
  oldest: Span | undefined;
  newest: Span | undefined;
}

const KEY_RECORD = 0x52; // 'R' kind first → next walIndex
const KEY_HASH = 0x48; // 'H' hash → kind first
const KEY_META = 0x4d; // 'M' name → u64
/** Synced only: every log record below it is indexed. */
const META_CHECKPOINT = metaKey('checkpoint');
const META_FLOOR = metaKey('floor');
/** Index layout version; an index without it (or another) is rebuilt from the log at open. */
const META_FORMAT = metaKey('format');
const INDEX_FORMAT = 2;
/** Keys per index batch when re-indexing or sweeping (bounds a batch's memory). */
const BATCH_KEYS = 4096;
/** Largest span of a ranged record (each number gets an index entry). */
export const MAX_RECORD_SPAN = 1 << 16;
const FLOOR_FILE_VERSION = 1;

export class RecordStore {
  private readonly latch = new FatalLatch();
  private readonly kinds = new Map<number, KindState>();
  /** Appended but not yet in the KV index, in log order. */
  private pending: Pending[] = [];
  /** Every number of every pending record (a ranged record has one entry per number). */
  private readonly pendingByKey = new Map<string, Pending>();
  private readonly pendingByHash = new Map<string, Pending>();
  /** Log records below this are in the KV index (possibly only in unsynced batches). */
  private indexedNext: number;
  /** Log records below this are indexed in SYNCED batches. */
  private checkpoint: number;
  private floorValue: number;
  private serial: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;
  private sweepScheduled = false;
  /**
   * Per kind: every index entry below this number is deleted (a sweep finished there). The next
   * sweep of the kind starts here instead of at 0: on LevelDB a scan from 0 walks every tombstone
   * the earlier sweeps left until compaction drops them, so in steady state (a little pruned at a
   * time) each sweep would cost the sum of all before it. A put whose span starts lower (puts are
   * not refused below the floor) lowers it, so nothing it indexes is missed. Memory only: an open
   * starts from 0.
   */
  private readonly sweptBelow = new Map<number, number>();
  readonly maxValueBytes: number;
  private readonly checkpointEvery: number;
  private readonly tombstoneNumbers: number;
  private readonly floorFile: AbSnapshotFile | undefined;

  private constructor(
    private readonly log: WriteAheadLog,
    private readonly kv: OrderedKv,
    readonly name: string,
    options: RecordStoreOptions,
    checkpoint: number,
    floor: number,
  ) {
    this.indexedNext = checkpoint;
    this.checkpoint = checkpoint;
    this.floorValue = floor;
    this.maxValueBytes = options.maxValueBytes ?? 32 * 1024 * 1024;
    this.checkpointEvery = options.checkpointEveryRecords ?? 4096;
    this.tombstoneNumbers = options.hashTombstoneNumbers ?? 100_000;
    this.floorFile = options.floorFile?.file;
    for (const k of options.rangedKinds) this.kinds.set(k, newKindState(true));
    for (const k of options.pointKinds) this.kinds.set(k, newKindState(false));
  }

  /** Opens over an opened log and KV (the store owns both from here on and closes them). */
  static async open(options: RecordStoreOptions): Promise<RecordStore> {
    const { log, kv } = options;
    const format = readMeta(kv, META_FORMAT);
    const kvFloor = readMeta(kv, META_FLOOR) ?? 0;
    if (format !== INDEX_FORMAT) await wipe(kv);
    const floor = Math.max(kvFloor, options.floorFile?.floor ?? 0);
    const checkpoint = readMeta(kv, META_CHECKPOINT);
    if (checkpoint !== undefined && checkpoint > log.nextIndex) {
      throw new CairnError(
        'DATA_LOSS',
        `record store ${options.name}: the index covers log records up to ${checkpoint} but the log ends at ` +
          `${log.nextIndex}; durable records were lost`,
        { details: { file: options.name, indexedNext: checkpoint, logNext: log.nextIndex } },
      );
    }
    const from = Math.max(checkpoint ?? log.firstIndex, log.firstIndex);
    const store = new RecordStore(log, kv, options.name, options, from, floor);
    await store.reindexFrom(from);
    await store.loadBounds();
    store.spotCheck();
    return store;
  }

  get floor(): number {
    return this.floorValue;
  }

  /** Index the next appended record gets in the value log (for diagnostics). */
  get logNextIndex(): number {
    return this.log.nextIndex;
  }

  get failure(): CairnError | undefined {
    return this.latch.error;
  }

  /**
   * Appends a record covering [first, next). Visible to readers on return; durable after a later
   * `flush()`. Ordering rules belong to the caller; this layer only checks shapes.
   */
  append(kind: number, first: number, next: number, value: Uint8Array, hash?: Uint8Array): void {
    this.checkUsable();
    const state = this.kindState(kind);
    if (!Number.isSafeInteger(first) || first < 0 || !Number.isSafeInteger(next) || next <= first) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `record span [${first}, ${next}) must be non-empty and non-negative`,
      );
    }
    if (!state.ranged && next !== first + 1) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `kind ${kind} records cover one number, got [${first}, ${next})`,
      );
    }
    if (next - first > MAX_RECORD_SPAN) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `record span [${first}, ${next}) covers more than ${MAX_RECORD_SPAN} numbers`,
      );
    }
    if (value.byteLength > this.maxValueBytes) {
      throw new CairnError(
        'RECORD_TOO_LARGE',
        `record value of ${value.byteLength} bytes exceeds the limit of ${this.maxValueBytes}`,
      );
    }
    const alias = hash ?? new Uint8Array(0);
    if (alias.byteLength > MAX_HASH_BYTES) {
      throw new CairnError('INVALID_ARGUMENT', `hash of ${alias.byteLength} bytes exceeds ${MAX_HASH_BYTES}`);
    }
    let walIndex: number;
    try {
      walIndex = this.log.append([concat(encodeRecordFrame({ kind, first, next, hash: alias }, value))]);
    } catch (err) {
      throw this.fail(err, 'appending to the value log');
    }
    const p: Pending = { kind, first, next, walIndex, hash: alias };
    this.pending.push(p);
    for (let n = first; n < next; n++) this.pendingByKey.set(recordKeyString(kind, n), p);
    if (alias.byteLength > 0) this.pendingByHash.set(asBuffer(alias).toString('hex'), p);
    if (first < (this.sweptBelow.get(kind) ?? 0)) this.sweptBelow.set(kind, first);
    state.newest = { first, next };
    state.oldest ??= { first, next };
  }

  /**
   * Resolves when every record appended before the call is durable (one fsync of the value log,
   * shared by concurrent callers), then indexes them. Rejects with the latched error on failure.
   */
  flush(): Promise<void> {
    try {
      this.checkUsable();
    } catch (err) {
      return Promise.reject(err);
    }
    const target = this.log.nextIndex;
    return this.enqueue(async () => {
      if (target <= this.indexedNext) return;
      await this.syncAndIndex();
    });
  }

  /** The record of `kind` covering number `n`. */
  get(kind: number, n: number): Lookup {
    this.checkOpen();
    checkNumber(n, 'record number');
    const floor = this.floorValue;
    if (n < floor) return { status: 'pruned', floor };
    this.kindState(kind);
    const loc = this.pendingByKey.get(recordKeyString(kind, n)) ?? this.indexedLocation(kind, n);
    if (loc === undefined) return { status: 'absent' };
    return {
      status: 'found',
      walIndex: loc.walIndex,
      record: this.readRecord(loc.walIndex, kind, loc.first),
    };
  }

  /**
   * Where the record of `kind` covering `n` sits, from the index alone (no value-log read, so no
   * read error): its span, or undefined when no retained record covers n.
   */
  locate(kind: number, n: number): Span | undefined {
    this.checkOpen();
    checkNumber(n, 'record number');
    if (n < this.floorValue) return undefined;
    this.kindState(kind);
    const loc = this.pendingByKey.get(recordKeyString(kind, n)) ?? this.indexedLocation(kind, n);
    return loc && { first: loc.first, next: loc.next };
  }

  /** The record whose hash alias is `hash`. A record below the floor reports `pruned`. */
  getByHash(hash: Uint8Array): Lookup {
    this.checkOpen();
    const hexHash = asBuffer(hash).toString('hex');
    let kind: number;
    let first: number;
    const p = this.pendingByHash.get(hexHash);
    if (p !== undefined) {
      kind = p.kind;
      first = p.first;
    } else {
      const v = this.kv.get(hashKey(hash));
      if (v === undefined) return { status: 'absent' };
      if (v.byteLength !== 9) throw this.indexCorrupt(`hash entry of ${v.byteLength} bytes`);
      kind = v[0]!;
      first = this.readIndexNumber(v, 1);
    }
    const floor = this.floorValue;
    if (first < floor) return { status: 'pruned', floor };
    const found = this.get(kind, first);
    if (found.status !== 'found') return found;
    if (!bytesEqual(found.record.hash, hash)) {
      throw new CairnError(
        'CORRUPT',
        `record store ${this.name}: hash index maps ${hexHash.slice(0, 16)}… to kind ${kind} number ${first}, ` +
          `whose record carries hash ${toHex(found.record.hash).slice(0, 16)}…`,
        { details: { file: this.name, walIndex: found.walIndex } },
      );
    }
    return found;
  }

  /** Newest record of `kind` (highest span), retained or not. */
  newest(kind: number): Span | undefined {
    return this.kindState(kind).newest;
  }

  /** Oldest record of `kind` that is not entirely below the floor. */
  oldest(kind: number): Span | undefined {
    return this.kindState(kind).oldest;
  }

  /**
   * Raises the floor to `floor` (no-op if not higher). Flushes first, persists the floor (A/B file,
   * then a synced KV batch), and only then drops whole log segments that hold nothing at or above
   * it. Index entries below the floor are swept afterwards in bounded chunks.
   */
  pruneBefore(floor: number): Promise<void> {
    try {
      this.checkUsable();
      // A floor that is not a safe integer would be persisted and then fail every later open.
      checkNumber(floor, 'prune floor');
    } catch (err) {
      return Promise.reject(err);
    }
    return this.enqueue(async () => {
      if (floor <= this.floorValue) return;
      await this.syncAndIndex();
      const cut = await this.firstWalIndexAtOrAbove(floor);
      if (this.floorFile !== undefined) {
        try {
          await this.floorFile.writeAsync(encodeFloorFile(floor));
        } catch (err) {
          throw this.fail(err, 'writing the prune floor file');
        }
      }
      const batch = this.kv.batch();
      batch.put(META_FLOOR, u64Value(floor));
      batch.put(META_CHECKPOINT, u64Value(this.indexedNext));
      try {
        await batch.write({ sync: true });
      } catch (err) {
        throw this.fail(err, 'persisting the record store prune floor');
      }
      this.checkpoint = this.indexedNext;
      this.floorValue = floor;
      await this.refreshOldest();
      if (cut > this.log.firstIndex) {
        try {
          await this.log.truncateFront(cut);
        } catch (err) {
          throw this.fail(err, 'dropping pruned value log segments');
        }
      }
      this.scheduleSweep();
    });
  }

  /** Resolves once index entries below the floor (minus the tombstone window) are swept. */
  async sweepIdle(): Promise<void> {
    while (this.sweepScheduled) await this.serial;
  }

  /**
   * Re-reads every record of the log and checks its checksum and that the index agrees with it.
   * Returns problems found (empty when healthy); throws only if the log itself cannot be read.
   */
  async verify(): Promise<{ records: number; problems: string[] }> {
    this.checkOpen();
    await this.flush().catch(() => undefined);
    const problems: string[] = [];
    let records = 0;
    for (const { index, payload } of this.log.iterate()) {
      records++;
      let rec: DecodedRecord;
      try {
        rec = decodeRecordFrame(payload, { file: this.name, walIndex: index });
      } catch (err) {
        problems.push(String((err as Error).message));
        continue;
      }
      if (rec.next <= this.floorValue) continue;
      if (!this.kinds.has(rec.kind)) {
        problems.push(`log index ${index}: unknown record kind ${rec.kind}`);
        continue;
      }
      for (const n of new Set([Math.max(rec.first, this.floorValue), rec.next - 1])) {
        let loc: Location | undefined;
        try {
          loc = this.indexedLocation(rec.kind, n);
        } catch (err) {
          problems.push(`log index ${index}: ${(err as Error).message}`);
          continue;
        }
        if (loc === undefined || loc.walIndex !== index || loc.first !== rec.first) {
          problems.push(
            `log index ${index}: kind ${rec.kind} number ${n} is indexed at ${loc?.walIndex ?? 'nothing'}`,
          );
        }
      }
      if (rec.hash.byteLength > 0) {
        const v = this.kv.get(hashKey(rec.hash));
        if (v === undefined || v.byteLength !== 9 || v[0] !== rec.kind || readU64BE(v, 1) !== rec.first) {
          problems.push(`log index ${index}: hash ${toHex(rec.hash).slice(0, 16)}… is not indexed to it`);
        }
      }
    }
    return { records, problems };
  }

  /**
   * Flushes (unless failed), writes a synced checkpoint (the next open re-indexes nothing), then
   * closes the log and the KV. Idempotent; every call gets the same result.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      let first: unknown;
      if (this.latch.error === undefined) {
        try {
          await this.flushForClose();
        } catch (err) {
          first = err;
        }
      }
      await this.serial.catch(() => undefined);
      try {
        await this.log.close();
      } catch (err) {
        first ??= err;
      }
      try {
        await this.kv.close();
      } catch (err) {
        first ??= err;
      }
      try {
        this.floorFile?.close();
      } catch (err) {
        first ??= err;
      }
      if (first !== undefined) throw first;
    })();
    return this.closing;
  }

  // ------------------------------------------------------------------ internals

  private flushForClose(): Promise<void> {
    return this.enqueue(async () => {
      await this.syncAndIndex();
      if (this.checkpoint < this.indexedNext) await this.writeCheckpoint();
    });
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    const run = this.serial.then(() => {
      this.latch.check();
      return step();
    });
    this.serial = run.catch(() => undefined);
    return run;
  }

  private async syncAndIndex(): Promise<void> {
    const upto = this.log.nextIndex;
    if (upto <= this.indexedNext) return;
    try {
      await this.log.sync();
    } catch (err) {
      throw this.fail(err, 'syncing the value log');
    }
    let taken = 0;
    let batch = this.kv.batch();
    for (const p of this.pending) {
      if (p.walIndex >= upto) break;
      putIndex(batch, p);
      taken++;
      if (batch.length >= BATCH_KEYS) {
        await this.writeIndexBatch(batch, false);
        batch = this.kv.batch();
      }
    }
    // Unsynced batches carry no high-water mark: a power cut may keep a later one and lose an
    // earlier one. The checkpoint moves only with a synced write.
    const sync = upto - this.checkpoint >= this.checkpointEvery;
    if (sync) batch.put(META_CHECKPOINT, u64Value(upto));
    if (batch.length > 0) await this.writeIndexBatch(batch, sync);
    if (sync) this.checkpoint = upto;
    this.indexedNext = upto;
    for (const p of this.pending.slice(0, taken)) {
      for (let n = p.first; n < p.next; n++) this.pendingByKey.delete(recordKeyString(p.kind, n));
      if (p.hash.byteLength > 0) this.pendingByHash.delete(asBuffer(p.hash).toString('hex'));
    }
    this.pending = this.pending.slice(taken);
  }

  private async writeIndexBatch(batch: KvBatch, sync: boolean): Promise<void> {
    try {
      await batch.write({ sync });
    } catch (err) {
      throw this.fail(err, 'writing the record store index');
    }
  }

  private async writeCheckpoint(): Promise<void> {
    const batch = this.kv.batch().put(META_CHECKPOINT, u64Value(this.indexedNext));
    await this.writeIndexBatch(batch, true);
    this.checkpoint = this.indexedNext;
  }

  private indexedLocation(kind: number, n: number): Location | undefined {
    const v = this.kv.get(u64KeyFor(kind, n));
    if (v === undefined) return undefined;
    if (v.byteLength < 24)
      throw this.indexCorrupt(`entry of kind ${kind} number ${n} has ${v.byteLength} bytes`);
    const loc = {
      next: this.readIndexNumber(v, 0),
      walIndex: this.readIndexNumber(v, 8),
      first: this.readIndexNumber(v, 16),
    };
    if (!(loc.first <= n && n < loc.next)) {
      throw this.indexCorrupt(`entry of kind ${kind} number ${n} names the span [${loc.first}, ${loc.next})`);
    }
    return loc;
  }

  private readIndexNumber(v: Uint8Array, offset: number): number {
    try {
      return readU64BE(v, offset);
    } catch {
      throw this.indexCorrupt(`a number above 2^53 in an index entry`);
    }
  }

  private indexCorrupt(what: string): CairnError {
    return new CairnError(
      'CORRUPT',
      `record store ${this.name}: the index is damaged (${what}); rebuild it from the value log ` +
        '(`cairn blocks reindex --data-dir <dir>` for a block store)',
      { details: { file: this.name, reason: 'index-damaged' } },
    );
  }

  private readRecord(walIndex: number, kind: number, first: number): DecodedRecord {
    let payload: Uint8Array;
    try {
      payload = this.log.read(walIndex);
    } catch (err) {
      if (isCairnError(err) && err.kind === 'fatal') throw err;
      throw new CairnError(
        'CORRUPT',
        `record store ${this.name}: index points kind ${kind} number ${first} at log index ${walIndex}, which cannot be read`,
        { cause: err, details: { file: this.name, walIndex } },
      );
    }
    const rec = decodeRecordFrame(payload, { file: this.name, walIndex });
    if (rec.kind !== kind || rec.first !== first) {
      throw new CairnError(
        'CORRUPT',
        `record store ${this.name}: log index ${walIndex} holds kind ${rec.kind} number ${rec.first}, ` +
          `but the index says kind ${kind} number ${first}`,
        { details: { file: this.name, walIndex } },
      );
    }
    return rec;
  }

  private async firstWalIndexAtOrAbove(floor: number): Promise<number> {
    let cut = this.log.nextIndex;
    // Records appended since the last index batch are not in the KV yet (appends do not wait for
    // a running prune): the oldest of them at or above the floor bounds the cut as well.
    const unindexed = this.pending.find((p) => p.next > floor);
    if (unindexed !== undefined) cut = unindexed.walIndex;
    for (const kind of this.kinds.keys()) {
      const [e] = await this.kv.range({
        gte: u64KeyFor(kind, floor),
        lt: u64KeyFor(kind + 1, 0),
        limit: 1,
      });
      if (e !== undefined) cut = Math.min(cut, this.readIndexNumber(e.value, 8));
    }
    return cut;
  }

  /**
   * Indexes the log records [from, log end): idempotent puts that also fill a gap left by a lost
   * unsynced batch. Ends with a synced batch carrying the new checkpoint, the floor and the format.
   */
  private async reindexFrom(from: number): Promise<void> {
    const to = this.log.nextIndex;
    let batch = this.kv.batch();
    for (const { index, payload } of this.log.iterate(from, to)) {
      const rec = decodeRecordFrame(payload, { file: this.name, walIndex: index });
      this.kindState(rec.kind);
      if (rec.next <= this.floorValue) continue;
      putIndex(batch, { kind: rec.kind, first: rec.first, next: rec.next, walIndex: index, hash: rec.hash });
      if (batch.length >= BATCH_KEYS) {
        await batch.write({ sync: false });
        batch = this.kv.batch();
      }
    }
    const known = {
      format: readMeta(this.kv, META_FORMAT),
      checkpoint: readMeta(this.kv, META_CHECKPOINT),
      floor: readMeta(this.kv, META_FLOOR),
    };
    if (
      batch.length > 0 ||
      known.format !== INDEX_FORMAT ||
      known.checkpoint !== to ||
      known.floor !== this.floorValue
    ) {
      batch.put(META_FORMAT, u64Value(INDEX_FORMAT));
      batch.put(META_CHECKPOINT, u64Value(to));
      batch.put(META_FLOOR, u64Value(this.floorValue));
      await batch.write({ sync: true });
    }
    this.indexedNext = to;
    this.checkpoint = to;
  }

  /**
   * The cheap open-time check of the index against the log: the last log record, and the newest
   * and oldest index entry of each kind, must name records with that identity. A few log reads.
   */
  private spotCheck(): void {
    const last = this.log.nextIndex - 1;
    if (last >= this.log.firstIndex) {
      const rec = decodeRecordFrame(this.log.read(last), { file: this.name, walIndex: last });
      if (rec.next > this.floorValue) {
        const loc = this.indexedLocation(rec.kind, rec.next - 1);
        if (loc === undefined || loc.walIndex !== last) {
          throw this.indexCorrupt(
            `the last log record ${last} (kind ${rec.kind} [${rec.first}, ${rec.next})) is not indexed`,
          );
        }
      }
    }
    for (const [kind, state] of this.kinds) {
      for (const span of [state.oldest, state.newest]) {
        if (span === undefined) continue;
        const loc = this.indexedLocation(kind, Math.max(span.first, this.floorValue));
        if (loc === undefined || loc.walIndex < this.log.firstIndex || loc.walIndex >= this.log.nextIndex) {
          throw this.indexCorrupt(`kind ${kind} [${span.first}, ${span.next}) points outside the log`);
        }
        this.readRecord(loc.walIndex, kind, loc.first);
      }
    }
  }

  private async loadBounds(): Promise<void> {
    for (const [kind, state] of this.kinds) {
      const [newest] = await this.kv.range({
        gte: u64KeyFor(kind, 0),
        lt: u64KeyFor(kind + 1, 0),
        limit: 1,
        reverse: true,
      });
      state.newest = newest && this.spanOf(newest.value);
    }
    await this.refreshOldest();
  }

  private spanOf(value: Uint8Array): Span {
    if (value.byteLength < 24) throw this.indexCorrupt(`entry of ${value.byteLength} bytes`);
    return { first: this.readIndexNumber(value, 16), next: this.readIndexNumber(value, 0) };
  }

  private async refreshOldest(): Promise<void> {
    for (const [kind, state] of this.kinds) {
      const [e] = await this.kv.range({
        gte: u64KeyFor(kind, this.floorValue),
        lt: u64KeyFor(kind + 1, 0),
        limit: 1,
      });
      const fromPending = this.pending.find((p) => p.kind === kind && p.next > this.floorValue);
      state.oldest = e
        ? this.spanOf(e.value)
        : fromPending && { first: fromPending.first, next: fromPending.next };
    }
  }

  /** Sweeps index entries below (floor - tombstone window), one bounded batch per queued step. */
  private scheduleSweep(): void {
    if (this.sweepScheduled || this.closing !== undefined) return;
    const limit = this.floorValue - this.tombstoneNumbers;
    if (limit <= 0) return;
    this.sweepScheduled = true;
    const step = async (): Promise<void> => {
      let more = false;
      try {
        if (this.closing === undefined) more = await this.sweepChunk(limit);
      } finally {
        this.sweepScheduled = more && this.closing === undefined;
      }
      if (this.sweepScheduled) void this.enqueue(step).catch(() => undefined);
    };
    void this.enqueue(step).catch(() => {
      this.sweepScheduled = false;
    });
  }

  /** Deletes up to BATCH_KEYS/2 index entries (and their hash aliases) below `limit`; true if more remain. */
  private async sweepChunk(limit: number): Promise<boolean> {
    const chunk = BATCH_KEYS / 2;
    const batch = this.kv.batch();
    let entries = 0;
    const advanced: { kind: number; from: number; to: number }[] = [];
    for (const kind of this.kinds.keys()) {
      const from = this.sweptBelow.get(kind) ?? 0;
      if (from >= limit) continue;
      const want = chunk - entries;
      const dead = await this.kv.range({
        gte: u64KeyFor(kind, from),
        lt: u64KeyFor(kind, limit),
        limit: want,
      });
      for (const e of dead) {
        batch.del(e.key);
        if (e.value.byteLength > 24) batch.del(hashKey(e.value.subarray(24)));
      }
      entries += dead.length;
      // A short page means [from, limit) is now empty; a full one, that everything up to its last key is.
      const to = dead.length < want ? limit : readU64BE(dead[dead.length - 1]!.key, 2) + 1;
      advanced.push({ kind, from, to });
      if (entries >= chunk) break;
    }
    const more = entries >= chunk;
    if (batch.length > 0) await this.writeIndexBatch(batch, false);
    // A put that indexed below a cursor while this chunk ran has lowered it: keep that.
    for (const a of advanced) {
      if ((this.sweptBelow.get(a.kind) ?? 0) === a.from) this.sweptBelow.set(a.kind, a.to);
    }
    return more;
  }

  private kindState(kind: number): KindState {
    if (!Number.isInteger(kind) || kind < 0 || kind > 254) {
      throw new CairnError('INVALID_ARGUMENT', `record kind must be an integer in [0, 254], got ${kind}`);
    }
    const s = this.kinds.get(kind);
    if (s === undefined) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `record kind ${kind} is not declared for record store ${this.name}`,
      );
    }
    return s;
  }

  private fail(err: unknown, what: string): CairnError {
    return this.latch.passCallerErrors(err, what);
  }

  private checkOpen(): void {
    if (this.closing !== undefined) throw new CairnError('CLOSED', `record store ${this.name} is closed`);
  }

  /** Throws CLOSED after close, or the latched fatal error after a failed write or fsync. */
  assertUsable(): void {
    this.checkUsable();
  }

  private checkUsable(): void {
    this.checkOpen();
    this.latch.check();
  }
}

/** Payload of the prune floor A/B file: u8 version (1), u64 BE floor. The A/B slot adds seq + CRC32C. */
export function encodeFloorFile(floor: number): Uint8Array {
  const out = new Uint8Array(9);
  out[0] = FLOOR_FILE_VERSION;
  writeU64BE(out, 1, floor);
  return out;
}

export function decodeFloorFile(payload: Uint8Array | undefined, file: string): number | undefined {
  if (payload === undefined) return undefined;
  if (payload.byteLength !== 9 || payload[0] !== FLOOR_FILE_VERSION) {
    throw new CairnError(
      'CORRUPT',
      `prune floor file ${file}: unknown layout (${payload.byteLength} bytes, version ${payload[0]})`,
      {
        details: { file },
      },
    );
  }
  try {
    return readU64BE(payload, 1);
  } catch {
    throw new CairnError('CORRUPT', `prune floor file ${file}: floor above 2^53`, { details: { file } });
  }
}

/** Deletes every key (an index of another layout), in bounded batches. */
async function wipe(kv: OrderedKv): Promise<void> {
  // Each batch is read after the last key deleted, not from the first key again: on LevelDB that
  // scan would walk every tombstone of the batches before it (quadratic in the index's size).
  let after: Uint8Array | undefined;
  for (;;) {
    const keys = await kv.range(
      after === undefined ? { limit: BATCH_KEYS } : { gt: after, limit: BATCH_KEYS },
    );
    if (keys.length === 0) return;
    const batch = kv.batch();
    for (const e of keys) batch.del(e.key);
    await batch.write({ sync: false });
    after = keys[keys.length - 1]!.key;
  }
}

function checkNumber(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new CairnError('INVALID_ARGUMENT', `${what} must be a non-negative safe integer, got ${n}`);
  }
}

function newKindState(ranged: boolean): KindState {
  return { ranged, oldest: undefined, newest: undefined };
}

/** One entry per number n of the record: [R][kind][n] → next, walIndex, first (u64 BE), hash alias. */
function putIndex(batch: KvBatch, p: Pending): void {
  const v = new Uint8Array(24 + p.hash.byteLength);
  writeU64BE(v, 0, p.next);
  writeU64BE(v, 8, p.walIndex);
  writeU64BE(v, 16, p.first);
  v.set(p.hash, 24);
  for (let n = p.first; n < p.next; n++) batch.put(u64KeyFor(p.kind, n), v);
  if (p.hash.byteLength > 0) {
    const h = new Uint8Array(9);
    h[0] = p.kind;
    writeU64BE(h, 1, p.first);
    batch.put(hashKey(p.hash), h);
  }
}

/** [KEY_RECORD][kind][number BE] */
function u64KeyFor(kind: number, first: number): Uint8Array {
  const inner = u64Key(kind, first);
  const out = new Uint8Array(10);
  out[0] = KEY_RECORD;
  out.set(inner, 1);
  return out;
}

function hashKey(hash: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + hash.byteLength);
  out[0] = KEY_HASH;
  out.set(hash, 1);
  return out;
}

function metaKey(name: string): Uint8Array {
  const text = new TextEncoder().encode(name);
  const out = new Uint8Array(1 + text.byteLength);
  out[0] = KEY_META;
  out.set(text, 1);
  return out;
}

function readMeta(kv: OrderedKv, key: Uint8Array): number | undefined {
  const v = kv.get(key);
  if (v === undefined) return undefined;
  if (v.byteLength !== 8) {
    throw new CairnError(
      'CORRUPT',
      `index meta entry of ${v.byteLength} bytes; rebuild the index from the value log`,
    );
  }
  try {
    return readU64BE(v, 0);
  } catch {
    throw new CairnError('CORRUPT', 'index meta entry above 2^53; rebuild the index from the value log');
  }
}

function u64Value(n: number): Uint8Array {
  const v = new Uint8Array(8);
  writeU64BE(v, 0, n);
  return v;
}

function recordKeyString(kind: number, first: number): string {
  return `${kind}:${first}`;
}

function concat(parts: [Uint8Array, Uint8Array]): Uint8Array {
  const out = new Uint8Array(parts[0].byteLength + parts[1].byteLength);
  out.set(parts[0], 0);
  out.set(parts[1], parts[0].byteLength);
  return out;
}
