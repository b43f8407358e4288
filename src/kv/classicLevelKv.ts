import * as path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { type FileSystem, syncDirChain } from '../io/fileSystem.ts';
import { realFileSystem } from '../io/realFileSystem.ts';
import { ioFatal } from '../lib/errors.ts';
import { engineError } from './engineErrors.ts';
import type { KvBatch, KvEntry, KvRange, OrderedKv } from './orderedKv.ts';

export interface ClassicLevelKvOptions {
  /** LevelDB block cache; default 8 MiB (LevelDB's own default). */
  cacheBytes?: number;
  /** Memtable size before a flush to an L0 table; default 4 MiB (LevelDB raises it to at least 64 KiB). */
  writeBufferBytes?: number;
  /** Snappy compression of table blocks; default true. */
  compression?: boolean;
  /** Create an empty database when the directory holds none; default true. */
  createIfMissing?: boolean;
  /**
   * File system used for the directory fsync after open (LevelDB's own files never go through it).
   * Default: the real one.
   */
  fs?: FileSystem;
}

type Db = ClassicLevel<Uint8Array, Uint8Array>;
/** An empty key range above any key Cairn writes (used only to trigger a memtable flush). */
const FLUSH_RANGE_START = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
const FLUSH_RANGE_END = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
const VIEW = { keyEncoding: 'view', valueEncoding: 'view' } as const;
const DEFAULT_WRITE_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * Bytes one batch operation is counted as, on top of its key and value, when estimating how full the
 * memtable can be. A memtable entry is the key, 8 bytes of sequence/type, the value and two varint
 * lengths (<= 10 bytes); its skip-list node is 8 + 8 * height bytes (height <= 12) plus up to 7 of
 * alignment: <= key + value + 129. Rounded up.
 */
export const OP_OVERHEAD_BYTES = 160;

/**
 * Share of `writeBufferBytes` that the batch bytes which may sit in the memtable ahead of a synced
 * batch may reach before that synced write also flushes the memtable. LevelDB switches the memtable
 * (and log) only when, before a write, the memtable's arena usage exceeds the write buffer. That
 * usage is at most the counted bytes (key + value + OP_OVERHEAD_BYTES per op, an upper bound of
 * entry + skip-list node) times the arena's waste: allocations of <= 1 KiB come from 4 KiB blocks and
 * a block is abandoned only for a request that no longer fits, so at least 3 KiB of each is used
 * (<= 4/3); larger ones get a block of their own. Add the first block and the block pointer list
 * (~0.5%, < 8 KiB at these sizes). Below 0.6 of the buffer counted, usage stays under
 * 0.81 x buffer + 8 KiB, which is under the buffer for every size LevelDB accepts (>= 64 KiB): no log
 * switch can have happened ahead of the synced batch.
 */
const SYNC_FLUSH_FRACTION = 0.6;

/**
 * `OrderedKv` over classic-level (LevelDB). LevelDB owns its directory and files (they do not go
 * through Cairn's FileSystem interface); its crash safety is covered by real kill -9 tests. Its
 * LOCK file is an fcntl lock, so a second process opening the same directory fails with LOCKED.
 *
 * Synced writes are made durable together with every batch before them (the `OrderedKv` model).
 * LevelDB alone does not promise that: when the memtable fills, it starts a new log file and closes
 * the old one WITHOUT fsync; the old memtable becomes a synced table only later, in the background.
 * A synced write in between fsyncs only the new log, so a power cut could keep it and lose unsynced
 * batches written before it (still only in the old log's page cache). The adapter therefore counts
 * the bytes of batches that may sit in the current memtable and, when a synced write completes while
 * that count could have filled a memtable (LevelDB could have switched logs ahead of it since the
 * last flush), flushes the memtable (`flushMemtable`) before the synced write resolves. See
 * `SYNC_FLUSH_FRACTION` for the bound.
 */
export class ClassicLevelKv implements OrderedKv {
  private closing: Promise<void> | undefined;
  /** Bytes (key + value + OP_OVERHEAD_BYTES per op) of every batch handed to the engine so far. */
  private issuedBytes = 0;
  /** Bytes of batches handed to the engine whose write has not completed yet. */
  private inFlightBytes = 0;
  /**
   * `issuedBytes` value below which every batch is known to be in a synced table: the batches that
   * had completed when the latest completed flush started (issued before it and not in flight).
   */
  private coveredBytes = 0;
  /** Batches handed to the engine so far (orders a batch against the start of a flush). */
  private issuedBatches = 0;
  /** The latest flush started for a synced write, shared by synced writes issued before it started. */
  private syncFlush: { startedAfterBatches: number; done: Promise<void> } | undefined;
  private forcedFlushes = 0;

  private constructor(
    private readonly db: Db,
    readonly location: string,
    /** Uncovered bytes at which a synced write flushes the memtable first. */
    private readonly syncFlushThresholdBytes: number,
  ) {}

  static async open(location: string, options: ClassicLevelKvOptions = {}): Promise<ClassicLevelKv> {
    const db: Db = new ClassicLevel<Uint8Array, Uint8Array>(location, {
      ...VIEW,
      createIfMissing: options.createIfMissing ?? true,
      compression: options.compression ?? true,
      cacheSize: options.cacheBytes ?? 8 * 1024 * 1024,
      writeBufferSize: options.writeBufferBytes ?? DEFAULT_WRITE_BUFFER_BYTES,
    });
    try {
      await db.open();
    } catch (err) {
      // Classified by the engine's error code, never by message text: the message holds the path,
      // and a path such as `<data-dir>/blocks/index` contains "lock".
      throw engineError(err, `opening key-value store ${location}`, location);
    }
    // Every LevelDB 1.20 open creates a new log and a new MANIFEST, renames CURRENT to name that
    // MANIFEST and unlinks the old log and MANIFEST, but fsyncs the directory only inside the
    // MANIFEST's own sync, before the rename and the unlinks. Until a later table write syncs a
    // MANIFEST again, a power cut may keep the unlink of the old log (whose data the open moved into
    // a table that only the new MANIFEST lists) and lose the rename: the next open would follow
    // CURRENT to the old MANIFEST and silently miss that data, or find CURRENT naming a deleted file.
    // So the directory (and the chain of entries to it: classic-level may just have created it) is
    // fsynced before the store is handed out.
    try {
      syncDirChain(options.fs ?? realFileSystem, path.resolve(location), path);
    } catch (err) {
      await db.close().catch(() => undefined);
      throw ioFatal(`fsync of key-value store directory ${location}`, err, { file: location });
    }
    // LevelDB's open replays any old log into tables and starts an empty memtable on a new log, so
    // nothing written before this open is in an unsynced log: the count starts at zero.
    // LevelDB clips the write buffer to [64 KiB, 1 GiB]; the threshold follows the size it uses.
    const writeBufferBytes = Math.min(
      Math.max(options.writeBufferBytes ?? DEFAULT_WRITE_BUFFER_BYTES, 64 * 1024),
      1024 * 1024 * 1024,
    );
    return new ClassicLevelKv(db, location, Math.floor(writeBufferBytes * SYNC_FLUSH_FRACTION));
  }

  get(key: Uint8Array): Uint8Array | undefined {
    let v: Uint8Array | undefined;
    try {
      v = this.db.getSync(key);
    } catch (err) {
      throw engineError(err, `reading key-value store ${this.location}`, this.location);
    }
    return v === undefined ? undefined : plainView(v);
  }

  async getMany(keys: readonly Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    let values: (Uint8Array | undefined)[];
    try {
      values = await this.db.getMany(keys as Uint8Array[]);
    } catch (err) {
      throw engineError(err, `reading key-value store ${this.location}`, this.location);
    }
    return values.map((v) => (v === undefined ? undefined : plainView(v)));
  }

  batch(): KvBatch {
    let chained: ReturnType<Db['batch']>;
    try {
      chained = this.db.batch();
    } catch (err) {
      throw engineError(err, `writing key-value store ${this.location}`, this.location);
    }
    return new ClassicLevelBatch(chained, this);
  }

  /** Memtable flushes synced writes started since open (not counting direct `flushMemtable` calls). */
  get syncForcedFlushes(): number {
    return this.forcedFlushes;
  }

  /**
   * Writes one batch. A synced batch resolves only once every batch that completed before it was
   * issued is durable: either no log switch can have happened ahead of it since the last completed
   * flush (the bytes not covered by that flush, other than its own, stay under the threshold), so
   * they are in synced tables or in the log its fsync covered; or a flush that started after it was
   * issued has completed. The check runs after the write, not before: the engine runs writes on a
   * thread pool, so a batch issued later can still land ahead of this one and fill the memtable;
   * every batch issued before this one completes is counted. Called by the batches of this store only.
   *
   * @internal
   */
  async writeBatch(chained: ReturnType<Db['batch']>, bytes: number, sync: boolean): Promise<void> {
    this.issuedBytes += bytes;
    this.inFlightBytes += bytes;
    const batchNumber = ++this.issuedBatches;
    try {
      await chained.write({ sync });
    } catch (err) {
      throw engineError(err, `writing key-value store ${this.location}`, this.location);
    } finally {
      this.inFlightBytes -= bytes;
    }
    if (sync && this.issuedBytes - bytes - this.coveredBytes >= this.syncFlushThresholdBytes) {
      // A flush covers this batch's predecessors if it started after this batch was issued.
      if (this.syncFlush === undefined || this.syncFlush.startedAfterBatches < batchNumber) {
        const flush = { startedAfterBatches: this.issuedBatches, done: this.startFlush(true) };
        this.syncFlush = flush;
        flush.done
          .finally(() => {
            if (this.syncFlush === flush) this.syncFlush = undefined;
          })
          .catch(() => undefined);
      }
      await this.syncFlush.done;
    }
  }

  async range(range: KvRange): Promise<KvEntry[]> {
    const it = this.db.iterator({
      ...(range.gt !== undefined ? { gt: range.gt } : {}),
      ...(range.gte !== undefined ? { gte: range.gte } : {}),
      ...(range.lt !== undefined ? { lt: range.lt } : {}),
      ...(range.lte !== undefined ? { lte: range.lte } : {}),
      limit: range.limit,
      reverse: range.reverse ?? false,
    });
    try {
      const out: KvEntry[] = [];
      while (out.length < range.limit) {
        const chunk = await it.nextv(Math.min(1000, range.limit - out.length));
        if (chunk.length === 0) break;
        for (const [key, value] of chunk) out.push({ key: plainView(key), value: plainView(value) });
      }
      return out;
    } catch (err) {
      throw engineError(err, `scanning key-value store ${this.location}`, this.location);
    } finally {
      await it.close().catch(() => undefined);
    }
  }

  /**
   * Writes the memtable out to a table file now (LevelDB flushes it before any range compaction; the
   * range used here holds no keys, so nothing else is compacted). Runs on LevelDB's background
   * thread while writes continue; afterwards the log is short, so a close + reopen replays little.
   */
  flushMemtable(): Promise<void> {
    return this.startFlush(false);
  }

  private async startFlush(forcedBySync: boolean): Promise<void> {
    // Batches that completed before LevelDB sees the flush are in the memtable it writes out (or in
    // an older one it waits for); the ones still in flight may land on either side, so they stay
    // counted.
    const coveredAtStart = this.issuedBytes - this.inFlightBytes;
    if (forcedBySync) this.forcedFlushes++;
    try {
      await this.db.compactRange(FLUSH_RANGE_START, FLUSH_RANGE_END);
    } catch (err) {
      throw engineError(err, `flushing the memtable of key-value store ${this.location}`, this.location);
    }
    // Flushes may overlap; one that started later covers more, so only ever move forward.
    this.coveredBytes = Math.max(this.coveredBytes, coveredAtStart);
  }

  /** The text of a LevelDB property (e.g. `leveldb.sstables`; see compactionBacklog.ts). */
  engineProperty(name: string): string {
    try {
      return this.db.getProperty(name);
    } catch (err) {
      throw engineError(err, `reading property ${name} of key-value store ${this.location}`, this.location);
    }
  }

  close(): Promise<void> {
    this.closing ??= this.db.close().catch((err: unknown) => {
      throw engineError(err, `closing key-value store ${this.location}`, this.location);
    });
    return this.closing;
  }
}

class ClassicLevelBatch implements KvBatch {
  private ops = 0;
  private bytes = 0;

  constructor(
    private readonly chained: ReturnType<Db['batch']>,
    private readonly kv: ClassicLevelKv,
  ) {}

  get length(): number {
    return this.ops;
  }

  put(key: Uint8Array, value: Uint8Array): KvBatch {
    this.chained.put(key, value);
    this.ops++;
    this.bytes += key.byteLength + value.byteLength + OP_OVERHEAD_BYTES;
    return this;
  }

  del(key: Uint8Array): KvBatch {
    this.chained.del(key);
    this.ops++;
    this.bytes += key.byteLength + OP_OVERHEAD_BYTES;
    return this;
  }

  write(options: { sync: boolean }): Promise<void> {
    return this.kv.writeBatch(this.chained, this.bytes, options.sync);
  }
}

/** The engine may hand out Buffers; callers get plain Uint8Array views of the same memory. */
function plainView(bytes: Uint8Array): Uint8Array {
  return Buffer.isBuffer(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes;
}
