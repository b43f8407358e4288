import { ClassicLevel } from 'classic-level';
import { CairnError, describe, errnoCode } from '../lib/errors.ts';
import type { KvBatch, KvEntry, KvRange, OrderedKv } from './orderedKv.ts';

export interface ClassicLevelKvOptions {
  /** LevelDB block cache; default 8 MiB (LevelDB's own default). */
  cacheBytes?: number;
  /** Memtable size before a flush to an L0 table; default 4 MiB. */
  writeBufferBytes?: number;
  /** Snappy compression of table blocks; default true. */
  compression?: boolean;
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
      createIfMissing: true,
      compression: options.compression ?? true,
      cacheSize: options.cacheBytes ?? 8 * 1024 * 1024,
      writeBufferSize: options.writeBufferBytes ?? 4 * 1024 * 1024,
    });
    try {
      await db.open();
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause ?? err;
      const text = `${describe(err)} ${describe(cause)}`;
      if (/lock/i.test(text)) {
        throw new CairnError('LOCKED', `key-value store ${location} is locked by another process`, {
          cause: err,
          details: { file: location },
        });
      }
      throw new CairnError('IO_FATAL', `opening key-value store ${location} failed: ${text}`, {
        cause: err,
        details: { file: location, errno: errnoCode(cause) },
      });
    }
    return new ClassicLevelKv(db, location);
  }

  get(key: Uint8Array): Uint8Array | undefined {
    const v = this.db.getSync(key);
    return v === undefined ? undefined : plainView(v);
  }

  async getMany(keys: readonly Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    const values = await this.db.getMany(keys as Uint8Array[]);
    return values.map((v) => (v === undefined ? undefined : plainView(v)));
  }

  batch(): KvBatch {
    return new ClassicLevelBatch(this.db);
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
    } finally {
      await it.close();
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
    this.closing ??= this.db.close();
    return this.closing;
  }
}

class ClassicLevelBatch implements KvBatch {
  private readonly chained;
  private ops = 0;

  constructor(db: Db) {
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
    return this.chained.write({ sync: options.sync });
  }
}

/** The engine may hand out Buffers; callers get plain Uint8Array views of the same memory. */
function plainView(bytes: Uint8Array): Uint8Array {
  return Buffer.isBuffer(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes;
}
