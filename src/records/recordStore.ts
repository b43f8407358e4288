import { type OrderedKv, readU64BE, u64Key, writeU64BE } from '../kv/orderedKv.ts';
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
 * durability follows issue order: a crash keeps a prefix of the appended records, never a gapped
 * subset. The log is the source of truth; the index is derived from it:
 *
 *  - the index for records [indexedNext, …) is written only after the log fsync covering them
 *    returned, so the index never points past the durable log;
 *  - index batches are not fsynced (LevelDB keeps a prefix of them); the high-water mark
 *    `indexedNext` rides in the same atomic batch, and on open the log tail beyond it is re-indexed;
 *  - records appended but not yet indexed are served from small in-memory maps (read-your-writes).
 *
 * The prune floor is written to the KV with a synced batch before any log data is dropped, and it
 * only moves up. Reads of a number below the floor report `pruned`, by number and by hash alike
 * (hash aliases of pruned records are kept as tombstones for exactly that reason).
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
  /** Ranged kinds only: every retained record, ascending. */
  spans: Location[];
  /** Oldest retained record (next > floor), if any. */
  oldest: Span | undefined;
  newest: Span | undefined;
}

const KEY_RECORD = 0x52; // 'R' kind first → next walIndex
const KEY_HASH = 0x48; // 'H' hash → kind first
const KEY_META = 0x4d; // 'M' name → u64
const META_INDEXED_NEXT = metaKey('indexedNext');
const META_FLOOR = metaKey('floor');
const LOAD_CHUNK = 10_000;

export class RecordStore {
  private readonly latch = new FatalLatch();
  private readonly kinds = new Map<number, KindState>();
  /** Appended but not yet in the KV index, in log order. */
  private pending: Pending[] = [];
  private readonly pendingByKey = new Map<string, Pending>();
  private readonly pendingByHash = new Map<string, Pending>();
  private indexedNext: number;
  private floorValue: number;
  /**
   * Floor of the prune being written, if any. Reads honour it at once: its KV batch drops index
   * entries below it, and a read landing between that and the durable floor must report `pruned`,
   * never `absent`. `floor` (what callers may rely on) moves only once the batch is durable.
   */
  private pruningFloor = 0;
  private serial: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;
  readonly maxValueBytes: number;

  private constructor(
    private readonly log: WriteAheadLog,
    private readonly kv: OrderedKv,
    readonly name: string,
    rangedKinds: readonly number[],
    pointKinds: readonly number[],
    indexedNext: number,
    floor: number,
    maxValueBytes: number,
  ) {
    this.indexedNext = indexedNext;
    this.floorValue = floor;
    this.maxValueBytes = maxValueBytes;
    for (const k of rangedKinds) this.kinds.set(k, newKindState(true));
    for (const k of pointKinds) this.kinds.set(k, newKindState(false));
  }

  /** Opens over an opened log and KV (the store owns both from here on and closes them). */
  static async open(options: RecordStoreOptions): Promise<RecordStore> {
    const { log, kv } = options;
    const indexedNext = readMeta(kv, META_INDEXED_NEXT) ?? log.firstIndex;
    const floor = readMeta(kv, META_FLOOR) ?? 0;
    if (indexedNext > log.nextIndex) {
      throw new CairnError(
        'DATA_LOSS',
        `record store ${options.name}: the index covers log records up to ${indexedNext} but the log ends at ` +
          `${log.nextIndex}; durable records were lost`,
        { details: { file: options.name, indexedNext, logNext: log.nextIndex } },
      );
    }
    const store = new RecordStore(
      log,
      kv,
      options.name,
      options.rangedKinds,
      options.pointKinds,
      Math.max(indexedNext, log.firstIndex),
      floor,
      options.maxValueBytes ?? 32 * 1024 * 1024,
    );
    await store.loadRangedSpans();
    await store.reindexTail();
    await store.loadPointBounds();
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
    this.pendingByKey.set(recordKeyString(kind, first), p);
    if (alias.byteLength > 0) this.pendingByHash.set(asBuffer(alias).toString('hex'), p);
    if (state.ranged) state.spans.push({ first, next, walIndex });
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
    const floor = this.readFloor();
    if (n < floor) return { status: 'pruned', floor };
    const state = this.kindState(kind);
    let loc: Location | undefined;
    if (state.ranged) {
      loc = findSpan(state.spans, n);
    } else {
      loc = this.pendingByKey.get(recordKeyString(kind, n)) ?? this.indexedLocation(kind, n);
    }
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
    if (n < this.readFloor()) return undefined;
    const state = this.kindState(kind);
    const loc = state.ranged
      ? findSpan(state.spans, n)
      : (this.pendingByKey.get(recordKeyString(kind, n)) ?? this.indexedLocation(kind, n));
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
      kind = v[0]!;
      first = readU64BE(v, 1);
    }
    const floor = this.readFloor();
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

  /** Ranged kinds: spans of retained records, ascending (read-only view). */
  spans(kind: number): readonly Span[] {
    return this.kindState(kind).spans;
  }

  /**
   * Raises the floor to `floor` (no-op if not higher). Flushes first, persists the floor with a
   * synced KV batch, and only then drops whole log segments that hold nothing at or above it.
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
      const batch = this.kv.batch();
      batch.put(META_FLOOR, u64Value(floor));
      // Point-kind index entries below the floor go; hash aliases stay as "pruned" tombstones.
      for (const [kind, state] of this.kinds) {
        if (state.ranged) continue;
        const dead = await this.kv.range({
          gte: u64KeyFor(kind, 0),
          lt: u64KeyFor(kind, floor),
          limit: 1_000_000,
        });
        for (const e of dead) batch.del(e.key);
      }
      for (const [kind, state] of this.kinds) {
        if (!state.ranged) continue;
        for (const s of state.spans) {
          if (s.next > floor) break;
          batch.del(u64KeyFor(kind, s.first));
        }
      }
      this.pruningFloor = floor;
      try {
        await batch.write({ sync: true });
      } catch (err) {
        this.pruningFloor = 0;
        throw this.fail(err, 'persisting the record store prune floor');
      }
      this.floorValue = floor;
      for (const state of this.kinds.values()) {
        if (state.ranged) {
          const keepFrom = state.spans.findIndex((s) => s.next > floor);
          state.spans = keepFrom < 0 ? [] : state.spans.slice(keepFrom);
        }
      }
      await this.refreshOldest();
      if (cut > this.log.firstIndex) {
        try {
          await this.log.truncateFront(cut);
        } catch (err) {
          throw this.fail(err, 'dropping pruned value log segments');
        }
      }
    });
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
      const state = this.kinds.get(rec.kind);
      if (state === undefined) {
        problems.push(`log index ${index}: unknown record kind ${rec.kind}`);
        continue;
      }
      const loc = state.ranged ? findSpan(state.spans, rec.first) : this.indexedLocation(rec.kind, rec.first);
      if (loc === undefined || loc.walIndex !== index) {
        problems.push(
          `log index ${index}: kind ${rec.kind} number ${rec.first} is indexed at ${loc?.walIndex ?? 'nothing'}`,
        );
      }
      if (rec.hash.byteLength > 0) {
        const v = this.kv.get(hashKey(rec.hash));
        if (v === undefined || v[0] !== rec.kind || readU64BE(v, 1) !== rec.first) {
          problems.push(`log index ${index}: hash ${toHex(rec.hash).slice(0, 16)}… is not indexed to it`);
        }
      }
    }
    return { records, problems };
  }

  /** Flushes (unless failed), then closes the log and the KV. Idempotent; every call gets the same result. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      let first: unknown;
      if (this.latch.error === undefined) {
        try {
          await this.flush();
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
      if (first !== undefined) throw first;
    })();
    return this.closing;
  }

  // ------------------------------------------------------------------ internals

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
    const batch = this.kv.batch();
    let taken = 0;
    for (const p of this.pending) {
      if (p.walIndex >= upto) break;
      putIndex(batch, p);
      taken++;
    }
    batch.put(META_INDEXED_NEXT, u64Value(upto));
    try {
      await batch.write({ sync: false });
    } catch (err) {
      throw this.fail(err, 'writing the record store index');
    }
    this.indexedNext = upto;
    for (const p of this.pending.slice(0, taken)) {
      this.pendingByKey.delete(recordKeyString(p.kind, p.first));
      if (p.hash.byteLength > 0) this.pendingByHash.delete(asBuffer(p.hash).toString('hex'));
    }
    this.pending = this.pending.slice(taken);
  }

  private indexedLocation(kind: number, n: number): Location | undefined {
    const v = this.kv.get(u64KeyFor(kind, n));
    if (v === undefined) return undefined;
    return { first: n, next: readU64BE(v, 0), walIndex: readU64BE(v, 8) };
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
    for (const [kind, state] of this.kinds) {
      if (state.ranged) {
        const s = state.spans.find((x) => x.next > floor);
        if (s !== undefined) cut = Math.min(cut, s.walIndex);
      } else {
        const [e] = await this.kv.range({
          gte: u64KeyFor(kind, floor),
          lt: u64KeyFor(kind + 1, 0),
          limit: 1,
        });
        if (e !== undefined) cut = Math.min(cut, readU64BE(e.value, 8));
      }
    }
    return cut;
  }

  private async loadRangedSpans(): Promise<void> {
    for (const [kind, state] of this.kinds) {
      if (!state.ranged) continue;
      let from = u64KeyFor(kind, 0);
      for (;;) {
        const chunk = await this.kv.range({ gte: from, lt: u64KeyFor(kind + 1, 0), limit: LOAD_CHUNK });
        for (const e of chunk) {
          const first = readU64BE(e.key, 2);
          state.spans.push({ first, next: readU64BE(e.value, 0), walIndex: readU64BE(e.value, 8) });
        }
        if (chunk.length < LOAD_CHUNK) break;
        from = successor(chunk[chunk.length - 1]!.key);
      }
      state.spans = state.spans.filter((s) => s.next > this.floorValue);
    }
  }

  /** Indexes the log records beyond the KV's high-water mark (lost unsynced index batches). */
  private async reindexTail(): Promise<void> {
    const from = this.indexedNext;
    const to = this.log.nextIndex;
    if (from >= to) return;
    let batch = this.kv.batch();
    for (const { index, payload } of this.log.iterate(from, to)) {
      const rec = decodeRecordFrame(payload, { file: this.name, walIndex: index });
      const state = this.kindState(rec.kind);
      putIndex(batch, { kind: rec.kind, first: rec.first, next: rec.next, walIndex: index, hash: rec.hash });
      if (state.ranged && rec.next > this.floorValue) {
        state.spans.push({ first: rec.first, next: rec.next, walIndex: index });
      }
      if (batch.length >= 4096) {
        batch.put(META_INDEXED_NEXT, u64Value(index + 1));
        await batch.write({ sync: false });
        batch = this.kv.batch();
      }
    }
    batch.put(META_INDEXED_NEXT, u64Value(to));
    await batch.write({ sync: false });
    this.indexedNext = to;
  }

  private async loadPointBounds(): Promise<void> {
    for (const [kind, state] of this.kinds) {
      if (state.ranged) {
        const last = state.spans[state.spans.length - 1];
        state.newest = last && { first: last.first, next: last.next };
        const head = state.spans[0];
        state.oldest = head && { first: head.first, next: head.next };
        continue;
      }
      const [newest] = await this.kv.range({
        gte: u64KeyFor(kind, 0),
        lt: u64KeyFor(kind + 1, 0),
        limit: 1,
        reverse: true,
      });
      state.newest = newest && { first: readU64BE(newest.key, 2), next: readU64BE(newest.value, 0) };
    }
    await this.refreshOldest();
  }

  private async refreshOldest(): Promise<void> {
    for (const [kind, state] of this.kinds) {
      if (state.ranged) {
        const head = state.spans[0];
        state.oldest = head && { first: head.first, next: head.next };
        continue;
      }
      const [e] = await this.kv.range({
        gte: u64KeyFor(kind, this.floorValue),
        lt: u64KeyFor(kind + 1, 0),
        limit: 1,
      });
      const fromPending = this.pending.find((p) => p.kind === kind && p.next > this.floorValue);
      state.oldest = e
        ? { first: readU64BE(e.key, 2), next: readU64BE(e.value, 0) }
        : fromPending && { ...fromPending };
    }
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

  private readFloor(): number {
    return Math.max(this.floorValue, this.pruningFloor);
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

function checkNumber(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new CairnError('INVALID_ARGUMENT', `${what} must be a non-negative safe integer, got ${n}`);
  }
}

function newKindState(ranged: boolean): KindState {
  return { ranged, spans: [], oldest: undefined, newest: undefined };
}

function findSpan(spans: readonly Location[], n: number): Location | undefined {
  let lo = 0;
  let hi = spans.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const s = spans[mid]!;
    if (n < s.first) hi = mid - 1;
    else if (n >= s.next) lo = mid + 1;
    else return s;
  }
  return undefined;
}

function putIndex(batch: ReturnType<OrderedKv['batch']>, p: Pending): void {
  const v = new Uint8Array(16);
  writeU64BE(v, 0, p.next);
  writeU64BE(v, 8, p.walIndex);
  batch.put(u64KeyFor(p.kind, p.first), v);
  if (p.hash.byteLength > 0) {
    const h = new Uint8Array(9);
    h[0] = p.kind;
    writeU64BE(h, 1, p.first);
    batch.put(hashKey(p.hash), h);
  }
}

/** [KEY_RECORD][kind][first BE] */
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
  return v === undefined ? undefined : readU64BE(v, 0);
}

function u64Value(n: number): Uint8Array {
  const v = new Uint8Array(8);
  writeU64BE(v, 0, n);
  return v;
}

function recordKeyString(kind: number, first: number): string {
  return `${kind}:${first}`;
}

function successor(key: Uint8Array): Uint8Array {
  const out = new Uint8Array(key.byteLength + 1);
  out.set(key, 0);
  return out;
}

function concat(parts: [Uint8Array, Uint8Array]): Uint8Array {
  const out = new Uint8Array(parts[0].byteLength + parts[1].byteLength);
  out.set(parts[0], 0);
  out.set(parts[1], parts[0].byteLength);
  return out;
}
