import { ClassicLevel } from 'classic-level';
import { engineError } from './engineErrors.ts';
import type { KvBatch, KvEntry, KvRange, OrderedKv } from './orderedKv.ts';

export interface ClassicLevelKvOptions {
  /** LevelDB block cache; default 8 MiB (LevelDB's own default). */
  cacheBytes?: number;
  /** Memtable size before a flush to an L0 table; default 4 MiB. */
  writeBufferBytes?: number;
  /** Snappy compression of table blocks; default true. */
  compression?: boolean;
  /** Create an empty database when the directory holds none; default true. */
  createIfMissing?: boolean;
}

type Db = ClassicLevel<Uint8Array, Uint8Array>;
/** An empty key range above any key Cairn writes (used only to trigger a memtable flush). */
const FLUSH_RANGE_START = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
const FLUSH_RANGE_END = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
const VIEW = { keyEncoding: 'view', valueEncoding: 'view' } as const;

/**
 * `OrderedKv` over classic-level (LevelDB). LevelDB owns its directory and files (they do not go
 * through Cairn's FileSystem interface); its crash safety is covered by real kill -9 tests. Its
 * LOCK file is an fcntl lock, so a second process opening the same directory fails with LOCKED.
 */
export class ClassicLevelKv implements OrderedKv {
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly db: Db,
    readonly location: string,
  ) {}

  static async open(location: string, options: ClassicLevelKvOptions = {}): Promise<ClassicLevelKv> {
    const db: Db = new ClassicLevel<Uint8Array, Uint8Array>(location, {
      ...VIEW,
      createIfMissing: options.createIfMissing ?? true,
      compression: options.compression ?? true,
      cacheSize: options.cacheBytes ?? 8 * 1024 * 1024,
      writeBufferSize: options.writeBufferBytes ?? 4 * 1024 * 1024,
    });
    try {
      await db.open();
    } catch (err) {
      // Classified by the engine's error code, never by message text: the message holds the path,
      // and a path such as `<data-dir>/blocks/index` contains "lock".
      throw engineError(err, `opening key-value store ${location}`, location);
    }
    return new ClassicLevelKv(db, location);
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
    return new ClassicLevelBatch(this.db, this.location);
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
  async flushMemtable(): Promise<void> {
    await this.db.compactRange(FLUSH_RANGE_START, FLUSH_RANGE_END);
  }

  close(): Promise<void> {
    this.closing ??= this.db.close().catch((err: unknown) => {
      throw engineError(err, `closing key-value store ${this.location}`, this.location);
    });
    return this.closing;
  }
}

class ClassicLevelBatch implements KvBatch {
  private readonly chained;
  private ops = 0;

  constructor(
    db: Db,
    private readonly location: string,
  ) {
    this.chained = db.batch();
  }

  get length(): number {
    return this.ops;
  }

  put(key: Uint8Array, value: Uint8Array): KvBatch {
    this.chained.put(key, value);
    this.ops++;
    return this;
  }

  del(key: Uint8Array): KvBatch {
    this.chained.del(key);
    this.ops++;
    return this;
  }

  write(options: { sync: boolean }): Promise<void> {
    return this.chained.write({ sync: options.sync }).catch((err: unknown) => {
      throw engineError(err, `writing key-value store ${this.location}`, this.location);
    });
  }
}

/** The engine may hand out Buffers; callers get plain Uint8Array views of the same memory. */
function plainView(bytes: Uint8Array): Uint8Array {
  return Buffer.isBuffer(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes;
}
